package store

import (
	"maps"
	"math"
	"net/http"
	"sync"
	"time"
)

// Account-level request quotas. AWS throttles each API (or group of APIs
// sharing one quota) per account and region with a token bucket; the fake,
// which is one account, models the quotas the driver's reads run into, so a
// benchmark or test can see which strategy a fleet-wide burst of mounts
// throttles. Quotas are off unless SetQuotas is called with a positive
// scale.

// Names of the modelled quotas (the keys of DefaultQuotas and
// QuotaConfig.Quotas).
const (
	// QuotaGetSecretValue is secretsmanager:GetSecretValue.
	QuotaGetSecretValue = "secretsmanager.GetSecretValue"
	// QuotaBatchGetSecretValue is secretsmanager:BatchGetSecretValue.
	QuotaBatchGetSecretValue = "secretsmanager.BatchGetSecretValue"
	// QuotaDescribeSecret is secretsmanager:DescribeSecret.
	QuotaDescribeSecret = "secretsmanager.DescribeSecret"
	// QuotaSSMGetParameters is the quota GetParameter, GetParameters and
	// GetParametersByPath share.
	QuotaSSMGetParameters = "ssm.GetParameter+GetParameters+GetParametersByPath"
	// QuotaSTSAssumeRoleWithWebIdentity is sts:AssumeRoleWithWebIdentity.
	QuotaSTSAssumeRoleWithWebIdentity = "sts.AssumeRoleWithWebIdentity"
)

// Quota is one token bucket: Rate calls per second refill it, Burst calls
// fit in it (it starts full).
type Quota struct {
	Rate  float64 `json:"rate"`
	Burst float64 `json:"burst"`
}

// DefaultQuotas are AWS's default rate quotas per account and region, in
// calls per second, each with a burst of one second of its rate (AWS
// documents no other burst for these):
//
//   - Secrets Manager ("AWS Secrets Manager quotas", 2025–2026):
//     GetSecretValue 10,000/s (adjustable), BatchGetSecretValue 100/s (not
//     adjustable), DescribeSecret 40,000/s;
//   - SSM Parameter Store ("AWS Systems Manager endpoints and quotas"):
//     GetParameter, GetParameters and GetParametersByPath share 40/s
//     (3,000/s with the paid higher throughput setting);
//   - STS AssumeRoleWithWebIdentity: 600/s, the request quota the IAM User
//     Guide ("IAM and AWS STS quotas") gives the AssumeRole* family per
//     account and region. It is the least certain of these values: override
//     it with QuotaConfig.Quotas when modelling an account whose quota is
//     known.
var DefaultQuotas = map[string]Quota{
	QuotaGetSecretValue:               {Rate: 10000, Burst: 10000},
	QuotaBatchGetSecretValue:          {Rate: 100, Burst: 100},
	QuotaDescribeSecret:               {Rate: 40000, Burst: 40000},
	QuotaSSMGetParameters:             {Rate: 40, Burst: 40},
	QuotaSTSAssumeRoleWithWebIdentity: {Rate: 600, Burst: 600},
}

// quotaOf maps the counter name of an AWS call to the quota it draws on;
// pod identity calls are never throttled.
var quotaOf = map[string]string{
	"secretsmanager.GetSecretValue":      QuotaGetSecretValue,
	"secretsmanager.BatchGetSecretValue": QuotaBatchGetSecretValue,
	"secretsmanager.DescribeSecret":      QuotaDescribeSecret,
	"ssm.GetParameters":                  QuotaSSMGetParameters,
	"sts.AssumeRoleWithWebIdentity":      QuotaSTSAssumeRoleWithWebIdentity,
}

// QuotaConfig switches quota enforcement on (Scale > 0) or off.
type QuotaConfig struct {
	// Scale multiplies every quota's rate and burst, so tests and
	// benchmarks can make the quotas bind with fewer calls: a fleet of 10
	// simulated nodes standing for 1,000 takes Scale 0.01
	// (BatchGetSecretValue: 1/s). A scaled burst is at least 1 call, so
	// every quota lets some calls through. 0 turns quotas off.
	Scale float64 `json:"scale"`
	// Quotas replaces DefaultQuotas entries by name before scaling (a Burst
	// of 0 is one second of Rate). Unknown names are ignored.
	Quotas map[string]Quota `json:"quotas,omitempty"`
}

// quotaState is the enforcement state: the effective (scaled) quotas and a
// bucket per region and quota.
type quotaState struct {
	mu      sync.Mutex
	on      bool
	quotas  map[string]Quota // effective, after scaling
	buckets map[bucketKey]*bucket
}

type bucketKey struct{ region, quota string }

type bucket struct {
	tokens float64
	last   time.Time
}

// take refills b for the time since its last use and takes one token if
// there is one. A clock that goes backwards refills nothing.
func (b *bucket) take(q Quota, now time.Time) bool {
	if dt := now.Sub(b.last).Seconds(); dt > 0 {
		b.tokens = math.Min(q.Burst, b.tokens+dt*q.Rate)
		b.last = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return true
	}
	return false
}

// SetQuotas configures quota enforcement (see QuotaConfig) and refills every
// bucket. It returns the effective quotas (nil when off).
func (s *Store) SetQuotas(c QuotaConfig) map[string]Quota {
	eff := effectiveQuotas(c)
	s.quota.mu.Lock()
	defer s.quota.mu.Unlock()
	s.quota.on = eff != nil
	s.quota.quotas = eff
	s.quota.buckets = map[bucketKey]*bucket{}
	return maps.Clone(eff)
}

func effectiveQuotas(c QuotaConfig) map[string]Quota {
	if !(c.Scale > 0) || math.IsInf(c.Scale, 0) {
		return nil
	}
	eff := make(map[string]Quota, len(DefaultQuotas))
	for name, q := range DefaultQuotas {
		if o, ok := c.Quotas[name]; ok && o.Rate > 0 {
			q = o
			if q.Burst <= 0 {
				q.Burst = q.Rate
			}
		}
		eff[name] = Quota{Rate: q.Rate * c.Scale, Burst: math.Max(1, q.Burst*c.Scale)}
	}
	return eff
}

// admit takes a token for call op in region; false means the
// call is over its quota. Calls without a quota, and every call while
// quotas are off, are admitted.
func (s *Store) admit(op, region string) bool {
	name, ok := quotaOf[op]
	if !ok {
		return true
	}
	s.quota.mu.Lock()
	defer s.quota.mu.Unlock()
	if !s.quota.on {
		return true
	}
	q := s.quota.quotas[name]
	k := bucketKey{region, name}
	b := s.quota.buckets[k]
	now := s.now()
	if b == nil {
		b = &bucket{tokens: q.Burst, last: now}
		s.quota.buckets[k] = b
	}
	return b.take(q, now)
}

// ThrottleCounts returns how many calls of each op (named as for Calls) were
// answered with a throttling error because they were over their quota,
// since the last ResetCalls. Injected faults (SetFault) are not counted here.
func (s *Store) ThrottleCounts() map[string]int {
	s.callMu.Lock()
	defer s.callMu.Unlock()
	return maps.Clone(s.throttles)
}

func (s *Store) countThrottle(op string) {
	s.callMu.Lock()
	s.throttles[op]++
	s.callMu.Unlock()
}

// throttleError is what AWS answers a call over its quota: HTTP 400 with
// the protocol's throttling code and "Rate exceeded". The awsJson1.1
// services (Secrets Manager, SSM) say ThrottlingException; STS (awsQuery)
// says Throttling. Both are in the Go SDK's retry.DefaultThrottleErrorCodes.
func throttleError(op string) *apiError {
	code := "ThrottlingException"
	if quotaOf[op] == QuotaSTSAssumeRoleWithWebIdentity {
		code = "Throttling"
	}
	return &apiError{http.StatusBadRequest, code, "Rate exceeded"}
}
