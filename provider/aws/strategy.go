package aws

import (
	"fmt"
	"math"
)

// Default request quotas, per account and region, from "AWS Secrets Manager
// quotas" (https://docs.aws.amazon.com/secretsmanager/latest/userguide/reference_limits.html,
// GetSecretValue raised to 10,000/s in March 2025). SSM's GetParameter and
// GetParameters share one quota, 40/s by default (3,000/s with the paid
// higher throughput; "AWS Systems Manager endpoints and quotas",
// https://docs.aws.amazon.com/general/latest/gr/ssm.html), so for SSM a
// call of 10 names always costs less than 10 calls of one and there is
// nothing to choose: parameters are always read with GetParameters.
const (
	// DefaultGetSecretValueQuota is GetSecretValue's default rate quota in
	// calls per second. It is adjustable: set Quotas.GetSecretValue when
	// the account's was raised.
	DefaultGetSecretValueQuota = 10000
	// DefaultBatchGetSecretValueQuota is BatchGetSecretValue's rate quota
	// in calls per second (of up to 20 secrets each). AWS does not adjust
	// it.
	DefaultBatchGetSecretValueQuota = 100
)

// Quotas are the request quotas, in calls per second, that a read plan is
// weighed against. Zero fields take the defaults above.
type Quotas struct {
	// GetSecretValue is the GetSecretValue quota; default
	// DefaultGetSecretValueQuota.
	GetSecretValue float64
	// BatchGetSecretValue is the BatchGetSecretValue quota; default
	// DefaultBatchGetSecretValueQuota.
	BatchGetSecretValue float64
}

func (q Quotas) withDefaults() (Quotas, error) {
	for _, v := range []struct {
		name string
		p    *float64
		def  float64
	}{
		{"GetSecretValue", &q.GetSecretValue, DefaultGetSecretValueQuota},
		{"BatchGetSecretValue", &q.BatchGetSecretValue, DefaultBatchGetSecretValueQuota},
	} {
		switch {
		case *v.p == 0:
			*v.p = v.def
		case *v.p < 0 || math.IsNaN(*v.p) || math.IsInf(*v.p, 0):
			return q, fmt.Errorf("aws: Options.Quotas.%s is %v: want a positive number of calls per second", v.name, *v.p)
		}
	}
	return q, nil
}

// batchCheaper reports whether one BatchGetSecretValue call for n current
// secrets uses a smaller fraction of its per-second quota than n
// GetSecretValue calls use of theirs. The quotas are separate buckets, so
// the cost of a plan is the sum of the fractions it takes of each; reads of
// pinned versions are GetSecretValue calls in either plan and cancel out.
//
// With the default quotas a full batch of 20 takes 1/100 = 1 % of the batch
// quota while 20 GetSecretValue calls take 20/10,000 = 0.2 % of theirs: the
// batch only pays off below a GetSecretValue quota of 20 × 100 = 2,000/s,
// which AWS no longer has anywhere. The call count (1 instead of 20) does
// not matter for latency either: all calls go out in parallel.
func (q Quotas) batchCheaper(n int) bool {
	return 1/q.BatchGetSecretValue < float64(n)/q.GetSecretValue
}

// ReadStrategy selects the API that reads current (AWSCURRENT) Secrets
// Manager values.
type ReadStrategy int

const (
	// ReadByQuota, the default, weighs each group of up to 20 current
	// secrets by quota headroom (see Quotas) and reads it with one
	// BatchGetSecretValue call or with parallel GetSecretValue calls,
	// whichever uses less of its quota: parallel GetSecretValue with
	// AWS's default quotas. Reads throttled after the SDK's retries are
	// tried once with the other API.
	ReadByQuota ReadStrategy = iota
	// ReadBatch always reads current secrets with BatchGetSecretValue (a
	// lone one with GetSecretValue) and does not fall back on throttling:
	// the strategy before ReadByQuota, kept as a benchmark baseline.
	ReadBatch
)

// Names of the strategies, as the --aws-read-strategy flag spells them.
var readStrategyNames = map[ReadStrategy]string{ReadByQuota: "quota", ReadBatch: "batch"}

// String returns "quota" or "batch".
func (s ReadStrategy) String() string {
	if n, ok := readStrategyNames[s]; ok {
		return n
	}
	return fmt.Sprintf("ReadStrategy(%d)", int(s))
}

// MarshalText returns the strategy's name.
func (s ReadStrategy) MarshalText() ([]byte, error) {
	if _, ok := readStrategyNames[s]; !ok {
		return nil, fmt.Errorf("aws: unknown read strategy %d", int(s))
	}
	return []byte(s.String()), nil
}

// UnmarshalText accepts "quota" or "batch".
func (s *ReadStrategy) UnmarshalText(b []byte) error {
	for v, n := range readStrategyNames {
		if string(b) == n {
			*s = v
			return nil
		}
	}
	return fmt.Errorf("read strategy %q: want quota or batch", b)
}
