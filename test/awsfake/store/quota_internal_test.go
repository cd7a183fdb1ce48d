package store

import (
	"math"
	"testing"
	"time"
)

// manualClock is a clock tests move by hand: no sleeps.
type manualClock struct{ t time.Time }

func (c *manualClock) now() time.Time          { return c.t }
func (c *manualClock) advance(d time.Duration) { c.t = c.t.Add(d) }

// takeN takes n tokens for op and returns how many were admitted.
func takeN(s *Store, op, region string, n int) int {
	ok := 0
	for range n {
		if s.admit(op, region) {
			ok++
		}
	}
	return ok
}

func TestQuotasOffByDefault(t *testing.T) {
	s := New(Options{})
	if got := takeN(s, "secretsmanager.BatchGetSecretValue", "us-east-1", 10000); got != 10000 {
		t.Fatalf("%d of 10000 admitted with quotas off", got)
	}
	s.SetQuotas(QuotaConfig{Scale: 0.01})
	s.SetQuotas(QuotaConfig{}) // off again
	if got := takeN(s, "secretsmanager.BatchGetSecretValue", "us-east-1", 50); got != 50 {
		t.Fatalf("%d of 50 admitted after turning quotas off", got)
	}
}

func TestEffectiveQuotas(t *testing.T) {
	eff := effectiveQuotas(QuotaConfig{Scale: 0.01})
	want := map[string]Quota{
		QuotaGetSecretValue:               {100, 100},
		QuotaBatchGetSecretValue:          {1, 1},
		QuotaDescribeSecret:               {400, 400},
		QuotaSSMGetParameters:             {0.4, 1}, // the burst is at least one call
		QuotaSTSAssumeRoleWithWebIdentity: {6, 6},
	}
	for name, w := range want {
		g := eff[name]
		if math.Abs(g.Rate-w.Rate) > 1e-9 || math.Abs(g.Burst-w.Burst) > 1e-9 {
			t.Errorf("%s at scale 0.01 = %+v, want %+v", name, g, w)
		}
	}
	over := effectiveQuotas(QuotaConfig{Scale: 1, Quotas: map[string]Quota{QuotaSTSAssumeRoleWithWebIdentity: {Rate: 50}}})
	if g := over[QuotaSTSAssumeRoleWithWebIdentity]; g != (Quota{50, 50}) {
		t.Errorf("overridden STS quota = %+v, want rate 50 with a one-second burst", g)
	}
	for _, scale := range []float64{0, -1, math.NaN(), math.Inf(1)} {
		if effectiveQuotas(QuotaConfig{Scale: scale}) != nil {
			t.Errorf("scale %v turned quotas on", scale)
		}
	}
}

func TestBucketRefill(t *testing.T) {
	clk := &manualClock{t: time.Unix(1_700_000_000, 0)}
	s := New(Options{Now: clk.now})
	s.SetQuotas(QuotaConfig{Scale: 0.01}) // GetSecretValue 100/s burst 100; Batch 1/s burst 1
	const get, batch = "secretsmanager.GetSecretValue", "secretsmanager.BatchGetSecretValue"
	const reg = "us-east-1"

	// Full at the start: the burst, then nothing without time passing.
	if got := takeN(s, get, reg, 150); got != 100 {
		t.Fatalf("burst: %d of 150 admitted, want 100", got)
	}
	// 10 ms refill 1 token at 100/s; 250 ms refill 25.
	clk.advance(10 * time.Millisecond)
	if got := takeN(s, get, reg, 5); got != 1 {
		t.Fatalf("after 10 ms: %d admitted, want 1", got)
	}
	clk.advance(250 * time.Millisecond)
	if got := takeN(s, get, reg, 50); got != 25 {
		t.Fatalf("after 250 ms: %d admitted, want 25", got)
	}
	// Refill stops at the burst, however long the bucket was idle.
	clk.advance(time.Hour)
	if got := takeN(s, get, reg, 500); got != 100 {
		t.Fatalf("after an idle hour: %d admitted, want the burst of 100", got)
	}
	// Fractions accumulate up to the burst: Batch at 1/s, burst 1, polled
	// every 400 ms.
	if got := takeN(s, batch, reg, 3); got != 1 {
		t.Fatalf("batch burst: %d admitted, want 1", got)
	}
	var pattern []bool
	for range 6 {
		clk.advance(400 * time.Millisecond)
		pattern = append(pattern, s.admit(batch, reg))
	}
	// Tokens at each step: 0.4, 0.8, 1 (1.2 capped at the burst) → 0, 0.4,
	// 0.8, 1 → 0.
	want := []bool{false, false, true, false, false, true}
	for i := range want {
		if pattern[i] != want[i] {
			t.Fatalf("batch every 400 ms: admitted %v, want %v", pattern, want)
		}
	}
	// A clock going backwards refills nothing and does not break the bucket.
	clk.advance(-time.Minute)
	if s.admit(batch, reg) {
		t.Fatal("admitted after the clock went back")
	}
	clk.advance(time.Minute + time.Second)
	if !s.admit(batch, reg) {
		t.Fatal("not admitted one second after the clock came back")
	}
}

func TestBucketsPerRegionAndQuota(t *testing.T) {
	clk := &manualClock{t: time.Unix(1_700_000_000, 0)}
	s := New(Options{Now: clk.now})
	s.SetQuotas(QuotaConfig{Scale: 0.025}) // SSM 1/s burst 1
	if got := takeN(s, "ssm.GetParameters", "us-east-1", 5); got != 1 {
		t.Fatalf("GetParameters: %d admitted, want 1", got)
	}
	if !s.admit("ssm.GetParameters", "eu-west-1") {
		t.Fatal("another region shares the bucket")
	}
	// Secrets Manager's quotas are independent of SSM's and of each other.
	if !s.admit("secretsmanager.GetSecretValue", "us-east-1") || !s.admit("secretsmanager.DescribeSecret", "us-east-1") {
		t.Fatal("a Secrets Manager call was refused by SSM's bucket")
	}
	// Calls without a modelled quota are never refused.
	if got := takeN(s, "eks-auth.PodIdentity", "", 1000); got != 1000 {
		t.Fatalf("PodIdentity: %d of 1000 admitted", got)
	}
	// SetQuotas refills every bucket.
	s.SetQuotas(QuotaConfig{Scale: 0.025})
	if !s.admit("ssm.GetParameters", "us-east-1") {
		t.Fatal("not refilled by SetQuotas")
	}
}

func TestThrottleErrorShape(t *testing.T) {
	for op, code := range map[string]string{
		"secretsmanager.GetSecretValue":      "ThrottlingException",
		"secretsmanager.BatchGetSecretValue": "ThrottlingException",
		"ssm.GetParameters":                  "ThrottlingException",
		"sts.AssumeRoleWithWebIdentity":      "Throttling",
	} {
		e := throttleError(op)
		if e.status != 400 || e.code != code || e.msg != "Rate exceeded" {
			t.Errorf("%s: %d %s %q, want 400 %s \"Rate exceeded\"", op, e.status, e.code, e.msg, code)
		}
	}
}
