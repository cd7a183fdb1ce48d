package aws

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/podsecrets/podsecrets/provider"
)

func TestReadPlan(t *testing.T) {
	current := func(n int) []fetchKey {
		var ks []fetchKey
		for i := range n {
			ks = append(ks, fetchKey{typ: typeSecretsManager, ref: ref{Name: fmt.Sprintf("s%02d", i)}})
		}
		return ks
	}
	pinned := fetchKey{typ: typeSecretsManager, ref: ref{Name: "p", Label: "AWSPREVIOUS"}}
	tests := map[string]struct {
		strategy ReadStrategy
		quotas   Quotas
		keys     []fetchKey
		// batch sizes, current secrets read one by one (with a batch
		// fallback), reads without fallback
		batches          []int
		current, singles int
	}{
		// 25/10,000 = 0.25 % against 2/100 = 2 %.
		"default quotas: GetSecretValue": {keys: current(25), current: 25},
		"default quotas, 1 secret":       {keys: current(1), current: 1},
		// A GetSecretValue quota of 50/s: 20/50 = 40 % against 1 %.
		"low GetSecretValue quota: batch": {quotas: Quotas{GetSecretValue: 50}, keys: current(25), batches: []int{20, 5}},
		// 1,000/s: a full batch (1 %) beats 20 calls (2 %); a remainder
		// of 5 (0.5 %) does not.
		"weighed per chunk": {quotas: Quotas{GetSecretValue: 1000}, keys: current(25), batches: []int{20}, current: 5},
		// A raised quota only pushes further to GetSecretValue.
		"raised GetSecretValue quota": {quotas: Quotas{GetSecretValue: 50000}, keys: current(40), current: 40},
		"pinned versions never batch": {quotas: Quotas{GetSecretValue: 50}, keys: append(current(2), pinned), batches: []int{2}, singles: 1},
		"batch strategy":              {strategy: ReadBatch, keys: append(current(21), pinned), batches: []int{20}, singles: 2},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			q, err := tc.quotas.withDefaults()
			if err != nil {
				t.Fatal(err)
			}
			pl := makePlan(tc.keys, tc.strategy, q)
			var sizes []int
			for _, b := range pl.smBatches {
				sizes = append(sizes, len(b))
			}
			if fmt.Sprint(sizes) != fmt.Sprint(tc.batches) || len(pl.smCurrent) != tc.current || len(pl.smSingles) != tc.singles {
				t.Errorf("plan: batches %v, current %d, singles %d; want %v, %d, %d", sizes, len(pl.smCurrent), len(pl.smSingles), tc.batches, tc.current, tc.singles)
			}
		})
	}
}

func TestReadByQuotaBatchesWhenCheaper(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Quotas = Quotas{GetSecretValue: 50} })
	objs, want := e.secrets(10)
	checkFiles(t, e.mustFetch(map[string]string{"objects": objs}), want)
	e.wantCalls(map[string]int{opBatch: 1, opSTS: 1})
}

func TestThrottleFallback(t *testing.T) {
	batchFirst := func(o *Options) { o.Quotas = Quotas{GetSecretValue: 50} }
	tests := map[string]struct {
		opts      []func(*Options)
		throttled []string // ops the account's quota is spent for
		objects   func(objs string) string
		calls     map[string]int // attempts: the SDK tries 3 times
		kind      error          // nil: success
		errHas    []string
	}{
		"GetSecretValue throttled: batch": {
			throttled: []string{opGetSecret},
			calls:     map[string]int{opGetSecret: 3 * 25, opBatch: 2, opSTS: 1},
		},
		"BatchGetSecretValue throttled: GetSecretValue": {
			opts:      []func(*Options){batchFirst},
			throttled: []string{opBatch},
			calls:     map[string]int{opBatch: 3 * 2, opGetSecret: 25, opSTS: 1},
		},
		"both throttled, GetSecretValue first": {
			throttled: []string{opGetSecret, opBatch},
			calls:     map[string]int{opGetSecret: 3 * 25, opBatch: 3 * 2, opSTS: 1},
			kind:      provider.ErrUnavailable,
			errHas:    []string{"ThrottlingException", "then BatchGetSecretValue: ThrottlingException", roleWeb},
		},
		"both throttled, batch first": {
			opts:      []func(*Options){batchFirst},
			throttled: []string{opGetSecret, opBatch},
			calls:     map[string]int{opBatch: 3 * 2, opGetSecret: 3 * 25, opSTS: 1},
			kind:      provider.ErrUnavailable,
			errHas:    []string{"ThrottlingException", "then GetSecretValue: ThrottlingException"},
		},
		"pinned version: no batch to fall back to": {
			throttled: []string{opGetSecret},
			objects:   func(string) string { return sm("s00", "objectVersionLabel: AWSPREVIOUS") },
			calls:     map[string]int{opGetSecret: 3, opSTS: 1},
			kind:      provider.ErrUnavailable,
			errHas:    []string{`"s00" label "AWSPREVIOUS" (objects[0])`, "ThrottlingException"},
		},
		"batch strategy: no fallback": {
			opts:      []func(*Options){func(o *Options) { o.ReadStrategy = ReadBatch }},
			throttled: []string{opBatch},
			calls:     map[string]int{opBatch: 3 * 2, opSTS: 1},
			kind:      provider.ErrUnavailable,
			errHas:    []string{"BatchGetSecretValue", "ThrottlingException"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			// Shared reads run to their end even after the Fetch failed
			// (share.go), and in a bubble synctest.Wait waits for them:
			// the counts are of every read, not of a race with the
			// cancellation of the others.
			synctest.Test(t, func(t *testing.T) {
				testThrottleFallback(t, tc.opts, tc.throttled, tc.objects, tc.calls, tc.kind, tc.errHas)
			})
		})
	}
}

func testThrottleFallback(t *testing.T, opts []func(*Options), throttled []string, objects func(string) string, calls map[string]int, kind error, errHas []string) {
	th := newThrottle(throttled...)
	e := newMemEnv(t, th.wrap, append(opts, sharing(time.Second, nil))...)
	objs, want := e.secrets(25)
	if objects != nil {
		objs = objects(objs)
	}
	resp, err := e.fetch(map[string]string{"objects": objs})
	if kind == nil {
		if err != nil {
			t.Fatal(err)
		}
		checkFiles(t, resp, want)
	} else {
		if !errors.Is(err, kind) {
			t.Fatalf("Fetch = %v, want kind %v", err, kind)
		}
		for _, w := range errHas {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("error %q does not contain %q", err, w)
			}
		}
	}
	synctest.Wait()
	if got := e.allCalls(th); fmt.Sprint(got) != fmt.Sprint(calls) {
		t.Errorf("calls = %v, want %v", got, calls)
	}
}

func TestThrottledFallbackDeniedStaysUnavailable(t *testing.T) {
	// The role may not call BatchGetSecretValue (a policy written for the
	// incumbent): a throttled read stays a throttle, retryable and
	// eligible for the failover region, not PermissionDenied.
	th := newThrottle(opGetSecret)
	var denied atomic.Int32
	e := newMemEnv(t, func(h http.Handler) http.Handler { return th.wrap(denyBatch(h, &denied)) })
	e.secret(east, "db", "v")
	_, err := e.fetch(map[string]string{"objects": sm("db")})
	if !errors.Is(err, provider.ErrUnavailable) || errors.Is(err, provider.ErrPermissionDenied) ||
		!strings.Contains(err.Error(), "ThrottlingException") || !strings.Contains(err.Error(), "then BatchGetSecretValue: AccessDeniedException") {
		t.Errorf("Fetch = %v, want Unavailable naming the throttle and the denied fallback", err)
	}
	if denied.Load() != 1 {
		t.Errorf("BatchGetSecretValue called %d times, want 1", denied.Load())
	}
}

func TestReadStrategyText(t *testing.T) {
	for _, s := range []ReadStrategy{ReadByQuota, ReadBatch} {
		b, err := s.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		var back ReadStrategy
		if err := back.UnmarshalText(b); err != nil || back != s {
			t.Errorf("%v: round trip gave %v, %v", s, back, err)
		}
	}
	var s ReadStrategy
	if err := s.UnmarshalText([]byte("fast")); err == nil || !strings.Contains(err.Error(), "want quota or batch") {
		t.Errorf("UnmarshalText(fast) = %v", err)
	}
	if _, err := ReadStrategy(7).MarshalText(); err == nil {
		t.Error("MarshalText of an unknown strategy succeeded")
	}
	if ReadByQuota.String() != "quota" || ReadBatch.String() != "batch" {
		t.Errorf("names: %v %v", ReadByQuota, ReadBatch)
	}
}

func TestNewValidatesReadOptions(t *testing.T) {
	for name, o := range map[string]Options{
		"negative window":          {ShareWindow: -time.Second},
		"window too long":          {ShareWindow: MaxShareWindow + time.Second},
		"unknown strategy":         {ReadStrategy: 9},
		"negative quota":           {Quotas: Quotas{GetSecretValue: -1}},
		"batch quota not a number": {Quotas: Quotas{BatchGetSecretValue: math.NaN()}},
	} {
		o.ServiceAccounts = &fakeSAs{}
		if _, err := New(o); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
	p, err := New(Options{ServiceAccounts: &fakeSAs{}, ShareWindow: MaxShareWindow, Quotas: Quotas{GetSecretValue: 20000}})
	if err != nil {
		t.Fatal(err)
	}
	if p.quotas != (Quotas{GetSecretValue: 20000, BatchGetSecretValue: DefaultBatchGetSecretValueQuota}) || p.share == nil || p.strategy != ReadByQuota {
		t.Errorf("quotas %+v, share %v, strategy %v", p.quotas, p.share != nil, p.strategy)
	}
}
