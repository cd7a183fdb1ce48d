package store_test

import (
	"errors"
	"maps"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"

	"github.com/podsecrets/podsecrets/test/awsfake/store"
)

// isSDKThrottle is how the SDK's standard retryer decides that an error is
// a throttle (retried with the throttle cost and backoff).
func isSDKThrottle(err error) bool {
	return retry.IsErrorThrottles(retry.DefaultThrottles).IsErrorThrottle(err) == aws.TrueTernary
}

func TestQuotaThrottlingThroughTheSDK(t *testing.T) {
	t.Parallel()
	// A clock that only moves when told: the buckets never refill by
	// themselves during the test. It starts ahead of the wall clock so the
	// issuer's tokens (nbf = mint time) are valid.
	base := time.Now().Add(2 * time.Second)
	var offset atomic.Int64
	e := newEnv(t, store.Options{Now: func() time.Time { return base.Add(time.Duration(offset.Load())) }})
	e.role(appRole, smAllowAnyRegion, "arn:aws:ssm:*:"+acct+":parameter/*")
	e.s.CreateSecret(east, "app/a", store.Value{String: "a"})
	e.s.PutParameter(east, "/p", "v", "String")
	creds := e.assume(appRole, appSA) // before quotas: not counted against them

	// Scale 0.001: BatchGetSecretValue 0.1/s, SSM 0.04/s, STS 0.6/s, each
	// with a burst of one call; GetSecretValue 10/s burst 10.
	eff := e.s.SetQuotas(store.QuotaConfig{Scale: 0.001})
	if q := eff[store.QuotaBatchGetSecretValue]; q.Burst != 1 || q.Rate != 0.1 {
		t.Fatalf("effective BatchGetSecretValue quota %+v", q)
	}
	e.s.ResetCalls()
	c := ctx(t)
	sm, ps := e.sm(east, creds), e.ssm(east, creds)

	check := func(what string, err error, wantCode string) {
		t.Helper()
		if err == nil {
			t.Fatalf("%s: no error over the quota", what)
		}
		if code := errCode(t, err); code != wantCode {
			t.Fatalf("%s: code %q, want %s (%v)", what, code, wantCode, err)
		}
		var ae smithy.APIError
		errors.As(err, &ae)
		if ae.ErrorMessage() != "Rate exceeded" || httpStatus(err) != http.StatusBadRequest {
			t.Fatalf("%s: %d %q, want 400 \"Rate exceeded\"", what, httpStatus(err), ae.ErrorMessage())
		}
		if _, ok := retry.DefaultThrottleErrorCodes[wantCode]; !ok || !isSDKThrottle(err) {
			t.Fatalf("%s: the SDK does not classify %v as a throttle", what, err)
		}
	}

	batch := &secretsmanager.BatchGetSecretValueInput{SecretIdList: []string{"app/a"}}
	if _, err := sm.BatchGetSecretValue(c, batch); err != nil {
		t.Fatalf("first BatchGetSecretValue (the burst): %v", err)
	}
	_, err := sm.BatchGetSecretValue(c, batch)
	check("second BatchGetSecretValue", err, "ThrottlingException")

	// GetSecretValue has a bucket of its own.
	for i := range 10 {
		if _, err := sm.GetSecretValue(c, &secretsmanager.GetSecretValueInput{SecretId: aws.String("app/a")}); err != nil {
			t.Fatalf("GetSecretValue %d within its burst of 10: %v", i, err)
		}
	}
	_, err = sm.GetSecretValue(c, &secretsmanager.GetSecretValueInput{SecretId: aws.String("app/a")})
	check("11th GetSecretValue", err, "ThrottlingException")

	if _, err := ps.GetParameters(c, ssmNames("/p")); err != nil {
		t.Fatalf("GetParameters: %v", err)
	}
	_, err = ps.GetParameters(c, ssmNames("/p"))
	check("second GetParameters", err, "ThrottlingException")

	// STS (awsQuery) says Throttling.
	stsIn := func() *sts.AssumeRoleWithWebIdentityInput {
		return assumeInput(appRole, e.iss.Token(appSA, store.AudienceSTS, time.Hour))
	}
	if _, err := e.stsClient().AssumeRoleWithWebIdentity(c, stsIn()); err != nil {
		t.Fatalf("AssumeRoleWithWebIdentity: %v", err)
	}
	_, err = e.stsClient().AssumeRoleWithWebIdentity(c, stsIn())
	check("second AssumeRoleWithWebIdentity", err, "Throttling")

	// The SDK's standard retryer retries a throttle: three attempts, all
	// over the quota, all counted.
	retrying := secretsmanager.NewFromConfig(e.awsConfig(east, static(creds)), func(o *secretsmanager.Options) {
		o.RetryMaxAttempts = 0 // the config's 1 would cap the retryer below
		o.Retryer = retry.NewStandard(func(so *retry.StandardOptions) {
			so.MaxAttempts = 3
			so.Backoff = retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) { return 0, nil })
		})
	})
	_, err = retrying.BatchGetSecretValue(c, batch)
	check("BatchGetSecretValue with retries", err, "ThrottlingException")
	var me *retry.MaxAttemptsError
	if !errors.As(err, &me) || me.Attempt != 3 {
		t.Fatalf("want the retryer to give up after 3 attempts, got %v", err)
	}

	wantCalls := map[string]int{
		"secretsmanager.BatchGetSecretValue": 5,
		"secretsmanager.GetSecretValue":      11,
		"ssm.GetParameters":                  2,
		"sts.AssumeRoleWithWebIdentity":      2,
	}
	wantThrottles := map[string]int{
		"secretsmanager.BatchGetSecretValue": 4,
		"secretsmanager.GetSecretValue":      1,
		"ssm.GetParameters":                  1,
		"sts.AssumeRoleWithWebIdentity":      1,
	}
	if got := e.s.CallCounts(); !maps.Equal(got, wantCalls) {
		t.Fatalf("CallCounts = %v, want %v", got, wantCalls)
	}
	if got := e.s.ThrottleCounts(); !maps.Equal(got, wantThrottles) {
		t.Fatalf("ThrottleCounts = %v, want %v", got, wantThrottles)
	}

	// Ten seconds refill one BatchGetSecretValue call at 0.1/s.
	offset.Add(int64(10 * time.Second))
	if _, err := sm.BatchGetSecretValue(c, batch); err != nil {
		t.Fatalf("BatchGetSecretValue after the refill: %v", err)
	}

	// Injected throttling faults are answered the same way but are not
	// quota throttles.
	e.s.SetQuotas(store.QuotaConfig{})
	e.s.ResetCalls()
	e.s.SetFault(east, store.Fault{Rate: 1})
	_, err = sm.GetSecretValue(c, &secretsmanager.GetSecretValueInput{SecretId: aws.String("app/a")})
	check("injected fault", err, "ThrottlingException")
	e.s.SetFault(east, store.Fault{})
	if len(e.s.ThrottleCounts()) != 0 {
		t.Fatalf("an injected fault counted as a quota throttle: %v", e.s.ThrottleCounts())
	}
}
