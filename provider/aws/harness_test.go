package aws

import (
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"

	"github.com/podsecrets/podsecrets/provider"
	"github.com/podsecrets/podsecrets/test/awsfake/store"
	"github.com/podsecrets/podsecrets/test/logbuf"
)

const (
	testAccount = "111122223333"
	east        = "us-east-1"
	west        = "us-west-2"
	testNS      = "app"
	testSA      = "web"
	testPod     = "web-0"
	roleWeb     = "arn:aws:iam::111122223333:role/web"
	roleOther   = "arn:aws:iam::111122223333:role/other"
	// Op names of the fake's call counters.
	opBatch      = "secretsmanager.BatchGetSecretValue"
	opGetSecret  = "secretsmanager.GetSecretValue"
	opGetParams  = "ssm.GetParameters"
	opSTS        = "sts.AssumeRoleWithWebIdentity"
	opPodIdentiy = "eks-auth.PodIdentity"
)

// testIssuer is the cluster's service-account token issuer (an RSA key is
// slow to make: share one).
var testIssuer = sync.OnceValues(func() (*store.Issuer, error) {
	return store.NewIssuer("https://oidc.podsecrets.test/cluster")
})

// fakeClock is a settable clock shared by the store and the provider.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// fakeSAs is an in-memory ServiceAccountGetter.
type fakeSAs struct {
	mu   sync.Mutex
	anns map[string]map[string]string // "ns/name" → annotations
}

func (f *fakeSAs) ServiceAccountAnnotations(_ context.Context, namespace, name string) (map[string]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a, ok := f.anns[namespace+"/"+name]
	if !ok {
		return nil, fmt.Errorf("serviceaccount %s/%s: %w", namespace, name, provider.ErrNotFound)
	}
	return a, nil
}

func (f *fakeSAs) set(namespace, name string, anns map[string]string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.anns[namespace+"/"+name] = anns
}

// fastRetryer is the standard retryer (3 attempts) without backoff delays or
// a retry quota, so fault tests run fast and independently.
func fastRetryer() aws.Retryer {
	return retry.NewStandard(func(o *retry.StandardOptions) {
		o.MaxAttempts = retryMaxAttempts
		o.Backoff = retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) { return 0, nil })
		o.RateLimiter = ratelimit.None
	})
}

// env is a provider wired to a fresh fake store.
type env struct {
	t     *testing.T
	st    *store.Store
	srv   *httptest.Server
	iss   *store.Issuer
	clock *fakeClock
	sas   *fakeSAs
	logs  *logbuf.Buffer
	p     *Provider
}

// newEnv starts a fake store trusting the test issuer, with role "web"
// (allowed everything, trusting app/web) wired to ServiceAccount app/web.
func newEnv(t *testing.T, opts ...func(*Options)) *env {
	t.Helper()
	iss, err := testIssuer()
	if err != nil {
		t.Fatal(err)
	}
	// The clock runs a minute ahead so tokens minted now (nbf = now, in
	// whole seconds) are valid at once.
	e := &env{t: t, iss: iss, clock: &fakeClock{t: time.Now().Add(time.Minute)}, logs: &logbuf.Buffer{}}
	e.st = store.New(store.Options{AccountID: testAccount, Now: e.clock.Now})
	if err := e.st.TrustJWKS(iss.JWKS()); err != nil {
		t.Fatal(err)
	}
	e.st.AddRole(store.Role{ARN: roleWeb, Subjects: []string{"system:serviceaccount:app:web"}, Allow: []string{"*"}})
	e.srv = httptest.NewServer(e.st.Handler())
	t.Cleanup(e.srv.Close)
	e.sas = &fakeSAs{anns: map[string]map[string]string{testNS + "/" + testSA: {RoleARNAnnotation: roleWeb}}}
	o := Options{
		Region:              east,
		ServiceAccounts:     e.sas,
		EndpointURL:         e.srv.URL,
		PodIdentityEndpoint: e.srv.URL + "/v1/credentials",
		Logger:              slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now:                 e.clock.Now,
		retryer:             fastRetryer,
	}
	for _, fn := range opts {
		fn(&o)
	}
	if e.p, err = New(o); err != nil {
		t.Fatal(err)
	}
	return e
}

// token mints a pod token for namespace/sa and audience.
func (e *env) token(namespace, sa, aud string) provider.Token {
	return provider.Token{
		Value:     e.iss.Token("system:serviceaccount:"+namespace+":"+sa, aud, 2*time.Hour),
		ExpiresAt: time.Now().Add(2 * time.Hour),
	}
}

// podRequest is a request for pod namespace/pod running as sa, with tokens
// for both audiences.
func (e *env) podRequest(namespace, pod, sa string, params map[string]string) *provider.Request {
	return &provider.Request{
		Pod: provider.Pod{
			Namespace: namespace, Name: pod, UID: "uid-" + pod, ServiceAccount: sa,
			Tokens: map[string]provider.Token{
				AudienceSTS:         e.token(namespace, sa, AudienceSTS),
				AudiencePodIdentity: e.token(namespace, sa, AudiencePodIdentity),
			},
		},
		Parameters: params,
		Class:      namespace + "/test-class",
	}
}

func (e *env) request(params map[string]string) *provider.Request {
	return e.podRequest(testNS, testPod, testSA, params)
}

func (e *env) fetch(params map[string]string) (*provider.Response, error) {
	return e.p.Fetch(context.Background(), e.request(params))
}

func (e *env) mustFetch(params map[string]string) *provider.Response {
	e.t.Helper()
	resp, err := e.fetch(params)
	if err != nil {
		e.t.Fatalf("Fetch: %v", err)
	}
	return resp
}

func (e *env) secret(region, name, value string) (arn, version string) {
	return e.st.CreateSecret(region, name, store.Value{String: value})
}

// calls snapshots the counters of the ops the provider uses.
func (e *env) calls() map[string]int {
	out := map[string]int{}
	for _, op := range []string{opBatch, opGetSecret, opGetParams, opSTS, opPodIdentiy} {
		if n := e.st.Calls(op); n > 0 {
			out[op] = n
		}
	}
	return out
}

func (e *env) wantCalls(want map[string]int) {
	e.t.Helper()
	got := e.calls()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		e.t.Errorf("store calls = %v, want %v", got, want)
	}
}
