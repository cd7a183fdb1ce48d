package store_test

import (
	"context"
	"errors"
	"maps"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/ssm"

	"github.com/podsecrets/podsecrets/test/awsfake/store"
)

func TestFaultInjection(t *testing.T) {
	t.Parallel()
	e := newEnv(t, store.Options{})
	e.role(appRole, smAllowAnyRegion, "arn:aws:ssm:*:"+acct+":parameter/*")
	e.s.AddPodIdentityAssociation("app", "reader", appRole)
	e.s.CreateSecret(east, "app/f", store.Value{String: "v"})
	e.s.CreateSecret(west, "app/f", store.Value{String: "v"})
	creds := e.assume(appRole, appSA)

	call := map[string]func(t *testing.T) error{
		"sm-east": func(t *testing.T) error {
			_, err := e.sm(east, creds).GetSecretValue(ctx(t), &secretsmanager.GetSecretValueInput{SecretId: aws.String("app/f")})
			return err
		},
		"sm-west": func(t *testing.T) error {
			_, err := e.sm(west, creds).GetSecretValue(ctx(t), &secretsmanager.GetSecretValueInput{SecretId: aws.String("app/f")})
			return err
		},
		"ssm-east": func(t *testing.T) error {
			_, err := e.ssm(east, creds).GetParameters(ctx(t), ssmNames("/x"))
			return err
		},
		"sts": func(t *testing.T) error {
			_, err := e.stsClient().AssumeRoleWithWebIdentity(ctx(t), assumeInput(appRole, e.iss.Token(appSA, store.AudienceSTS, time.Hour)))
			return err
		},
		"pod": func(t *testing.T) error {
			_, err := e.podCreds(e.iss.Token(appSA, store.AudiencePodIdentity, time.Hour))
			return err
		},
	}
	tests := []struct {
		name       string
		region     string
		fault      store.Fault
		target     string
		wantCode   string
		wantStatus int
		unaffected string
	}{
		{"throttling everywhere", "", store.Fault{Rate: 1}, "sm-east", "ThrottlingException", 400, ""},
		{"internal error", "", store.Fault{Rate: 1, Code: store.FaultInternal}, "sm-east", "InternalServiceError", 500, ""},
		{"ssm throttled", "", store.Fault{Rate: 1, Code: store.FaultThrottling}, "ssm-east", "ThrottlingException", 400, ""},
		{"sts throttled", "", store.Fault{Rate: 1}, "sts", "ThrottlingException", 400, ""},
		{"sts internal", "", store.Fault{Rate: 1, Code: store.FaultInternal}, "sts", "InternalServiceError", 500, ""},
		{"pod identity throttled", "", store.Fault{Rate: 1}, "pod", "ThrottlingException", 429, ""},
		{"pod identity internal", "", store.Fault{Rate: 1, Code: store.FaultInternal}, "pod", "InternalServiceError", 500, ""},
		{"one region only", west, store.Fault{Rate: 1}, "sm-west", "ThrottlingException", 400, "sm-east"},
		{"regional fault spares STS", east, store.Fault{Rate: 1}, "sm-east", "ThrottlingException", 400, "sts"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e.s.SetFault(tc.region, tc.fault)
			defer e.s.SetFault(tc.region, store.Fault{})
			e.s.ResetCalls()
			for i := 0; i < 3; i++ { // rate 1 is deterministic
				err := call[tc.target](t)
				if got := errCode(t, err); got != tc.wantCode {
					t.Fatalf("attempt %d: error code %q, want %q (%v)", i, got, tc.wantCode, err)
				}
				var hs interface{ HTTPStatusCode() int }
				if !errors.As(err, &hs) || hs.HTTPStatusCode() != tc.wantStatus {
					t.Fatalf("status: %v", err)
				}
			}
			if n := sum(e.s.CallCounts()); n != 3 {
				t.Errorf("faulted calls counted %d times, want 3", n)
			}
			if tc.unaffected != "" {
				if err := call[tc.unaffected](t); err != nil {
					t.Errorf("%s should be unaffected: %v", tc.unaffected, err)
				}
			}
		})
	}
	t.Run("cleared fault", func(t *testing.T) {
		e.s.SetFault("", store.Fault{Rate: 1})
		e.s.SetFault("", store.Fault{Rate: 0})
		if err := call["sm-east"](t); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("partial rate", func(t *testing.T) {
		e.s.SetFault(east, store.Fault{Rate: 0.5})
		defer e.s.SetFault(east, store.Fault{})
		failed := 0
		const n = 60
		for i := 0; i < n; i++ {
			if err := call["sm-east"](t); err != nil {
				if errCode(t, err) != "ThrottlingException" {
					t.Fatal(err)
				}
				failed++
			}
		}
		if failed == 0 || failed == n { // probability 2^-59
			t.Fatalf("%d of %d calls failed at rate 0.5", failed, n)
		}
	})
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func TestLatency(t *testing.T) {
	t.Parallel()
	e := newEnv(t, store.Options{})
	e.s.SetLatency(time.Millisecond)
	e.role(appRole, smAllowAnyRegion)
	e.s.CreateSecret(east, "app/slow", store.Value{String: "v"})
	c := e.sm(east, e.assume(appRole, appSA))
	get := func(ctx context.Context) error {
		_, err := c.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("app/slow")})
		return err
	}
	e.s.ResetCalls()
	if err := get(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if got := e.s.Calls("secretsmanager.GetSecretValue"); got != 1 {
		t.Fatalf("calls = %d", got)
	}

	// A latency far beyond the caller's deadline must surface as the
	// caller's timeout, proving the sleep happens and honours the context.
	e.s.SetLatency(time.Hour)
	short, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := get(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("call under 1h latency: %v", err)
	}
	if got := e.s.Calls("secretsmanager.GetSecretValue"); got != 2 {
		t.Fatalf("calls = %d after the timed-out call", got)
	}
	e.s.SetLatency(0)
	if err := get(ctx(t)); err != nil {
		t.Fatal(err)
	}
}

func TestCallCounters(t *testing.T) {
	t.Parallel()
	e := newEnv(t, store.Options{})
	e.role(appRole, smAllowAnyRegion, "arn:aws:ssm:*:"+acct+":parameter/*")
	e.s.CreateSecret(east, "app/c", store.Value{String: "v"})
	e.s.PutParameter(east, "/p", "v", "String")
	creds := e.assume(appRole, appSA)
	sm, ps := e.sm(east, creds), e.ssm(east, creds)
	c := ctx(t)
	_, _ = sm.GetSecretValue(c, &secretsmanager.GetSecretValueInput{SecretId: aws.String("app/c")})
	_, _ = sm.GetSecretValue(c, &secretsmanager.GetSecretValueInput{SecretId: aws.String("app/missing")})
	_, _ = sm.BatchGetSecretValue(c, &secretsmanager.BatchGetSecretValueInput{SecretIdList: []string{"app/c"}})
	_, _ = sm.DescribeSecret(c, &secretsmanager.DescribeSecretInput{SecretId: aws.String("app/c")})
	_, _ = ps.GetParameters(c, ssmNames("/p"))
	// A call the driver never sends is refused, and counted.
	if _, err := ps.GetParameter(c, &ssm.GetParameterInput{Name: aws.String("/p")}); errCode(t, err) != "UnknownOperationException" {
		t.Fatalf("GetParameter: %v", err)
	}
	want := map[string]int{
		"sts.AssumeRoleWithWebIdentity":      1,
		"secretsmanager.GetSecretValue":      2,
		"secretsmanager.BatchGetSecretValue": 1,
		"secretsmanager.DescribeSecret":      1,
		"ssm.GetParameters":                  1,
		"ssm.GetParameter":                   1,
	}
	if got := e.s.CallCounts(); !maps.Equal(got, want) {
		t.Fatalf("CallCounts = %v, want %v", got, want)
	}
	if e.s.Calls("secretsmanager.GetSecretValue") != 2 || e.s.Calls("never.Called") != 0 {
		t.Fatal("Calls disagrees with CallCounts")
	}
	e.s.ResetCalls()
	if got := e.s.CallCounts(); len(got) != 0 {
		t.Fatalf("after ResetCalls: %v", got)
	}
}
