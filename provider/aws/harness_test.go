package aws

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"

	"github.com/podsecrets/podsecrets/provider"
	"github.com/podsecrets/podsecrets/test/awsfake/store"
	"github.com/podsecrets/podsecrets/test/fakeclock"
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

// fakeSAs is an in-memory ServiceAccountGetter.
type fakeSAs struct {
	mu   sync.Mutex
	anns map[string]map[string]string // "ns/name" → annotations
	n    int                          // reads
}

func (f *fakeSAs) reads() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n
}

func (f *fakeSAs) ServiceAccountAnnotations(_ context.Context, namespace, name string) (map[string]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n++
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
	clock *fakeclock.Clock
	sas   *fakeSAs
	logs  *logbuf.Buffer
	p     *Provider
}

// newEnv starts a fake store trusting the test issuer, with role "web"
// (allowed everything, trusting app/web) wired to ServiceAccount app/web.
func newEnv(t *testing.T, opts ...func(*Options)) *env {
	t.Helper()
	return newEnvWith(t, false, nil, opts...)
}

// newMemEnv is newEnv with the store served in process (handlerTransport)
// instead of over a socket, so it works inside a synctest bubble. wrap, if
// set, wraps the store's handler (a gate, a fault).
func newMemEnv(t *testing.T, wrap func(http.Handler) http.Handler, opts ...func(*Options)) *env {
	t.Helper()
	return newEnvWith(t, true, wrap, opts...)
}

func newEnvWith(t *testing.T, inMemory bool, wrap func(http.Handler) http.Handler, opts ...func(*Options)) *env {
	t.Helper()
	iss, err := testIssuer()
	if err != nil {
		t.Fatal(err)
	}
	// The clock runs a minute ahead so tokens minted now (nbf = now, in
	// whole seconds) are valid at once.
	e := &env{t: t, iss: iss, clock: fakeclock.New(time.Now().Add(time.Minute)), logs: &logbuf.Buffer{}}
	e.st = store.New(store.Options{AccountID: testAccount, Now: e.clock.Now})
	if err := e.st.TrustJWKS(iss.JWKS()); err != nil {
		t.Fatal(err)
	}
	e.st.AddRole(store.Role{ARN: roleWeb, Subjects: []string{"system:serviceaccount:app:web"}, Allow: []string{"*"}})
	h := e.st.Handler()
	if wrap != nil {
		h = wrap(h)
	}
	url := memStoreURL
	var client *http.Client
	if inMemory {
		client = &http.Client{Transport: handlerTransport{h}}
	} else {
		e.srv = httptest.NewServer(h)
		t.Cleanup(e.srv.Close)
		url = e.srv.URL
	}
	e.sas = &fakeSAs{anns: map[string]map[string]string{testNS + "/" + testSA: {RoleARNAnnotation: roleWeb}}}
	o := Options{
		Region:              east,
		ServiceAccounts:     e.sas,
		EndpointURL:         url,
		HTTPClient:          client,
		PodIdentityEndpoint: url + "/v1/credentials",
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

// memStoreURL is the store's address with handlerTransport.
const memStoreURL = "http://store.test"

// handlerTransport serves requests with a handler in process. Without
// sockets a test can run inside a synctest bubble: there, time advances and
// synctest.Wait returns only when every goroutine is blocked on something
// the bubble controls, which a network read is not.
type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	sr := r.Clone(r.Context()) // the server's view of the request
	if sr.Body == nil {
		sr.Body = http.NoBody
	}
	if sr.Host == "" {
		sr.Host = r.URL.Host
	}
	sr.RequestURI, sr.RemoteAddr = r.URL.RequestURI(), "192.0.2.1:40000"
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, sr)
	if err := r.Context().Err(); err != nil {
		// As a real transport: a caller that gave up gets its
		// context's error, not what the server wrote meanwhile.
		return nil, err
	}
	resp := rec.Result()
	resp.Request = r
	return resp, nil
}

// gate holds the store calls of some operations (op names as the store
// counts them, e.g. opGetSecret, opSTS) until it is opened or the caller
// gives up, so that a test can have every Fetch in flight before the store
// answers. It also records the size of each BatchGetSecretValue call.
type gate struct {
	next http.Handler
	ops  map[string]bool
	open chan struct{}

	mu      sync.Mutex
	arrived int   // calls held so far
	batches []int // SecretIdList lengths, in arrival order
}

func newGate(ops ...string) *gate {
	g := &gate{ops: map[string]bool{}, open: make(chan struct{})}
	for _, op := range ops {
		g.ops[op] = true
	}
	return g
}

func (g *gate) wrap(next http.Handler) http.Handler { g.next = next; return g }

func (g *gate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	op := opOf(r)
	if op == opBatch {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		var in struct{ SecretIdList []string }
		json.Unmarshal(body, &in)
		g.mu.Lock()
		g.batches = append(g.batches, len(in.SecretIdList))
		g.mu.Unlock()
	}
	if g.ops[op] {
		g.mu.Lock()
		g.arrived++
		g.mu.Unlock()
		select {
		case <-g.open:
		case <-r.Context().Done():
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
	}
	g.next.ServeHTTP(w, r)
}

// opOf names the operation of r as the store counts it: the X-Amz-Target
// of Secrets Manager and SSM (whose "AmazonSSM" prefix the store counts as
// "ssm"), the form's Action of STS.
func opOf(r *http.Request) string {
	if t := r.Header.Get("X-Amz-Target"); t != "" {
		if op, ok := strings.CutPrefix(t, "AmazonSSM."); ok {
			return "ssm." + op
		}
		return t
	}
	if r.Method != http.MethodPost {
		return ""
	}
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	form, _ := url.ParseQuery(string(body))
	return "sts." + form.Get("Action")
}

// held returns how many calls arrived at the gate.
func (g *gate) held() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.arrived
}

// batchSizes returns the SecretIdList length of each BatchGetSecretValue.
func (g *gate) batchSizes() []int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.batches)
}

// throttle answers every call of the ops it was given with
// ThrottlingException, as AWS does when that API's quota is spent. The
// store never sees those calls: throttle counts them.
type throttle struct {
	next http.Handler
	ops  map[string]bool

	mu    sync.Mutex
	calls map[string]int
}

func newThrottle(ops ...string) *throttle {
	t := &throttle{ops: map[string]bool{}, calls: map[string]int{}}
	for _, op := range ops {
		t.ops[op] = true
	}
	return t
}

func (t *throttle) wrap(next http.Handler) http.Handler { t.next = next; return t }

func (t *throttle) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if op := r.Header.Get("X-Amz-Target"); t.ops[op] {
		t.mu.Lock()
		t.calls[op]++
		t.mu.Unlock()
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, `{"__type":"ThrottlingException","message":"Rate exceeded"}`)
		return
	}
	t.next.ServeHTTP(w, r)
}

// allCalls is e.calls plus the calls t answered.
func (e *env) allCalls(t *throttle) map[string]int {
	got := e.calls()
	t.mu.Lock()
	defer t.mu.Unlock()
	for op, n := range t.calls {
		got[op] += n
	}
	return got
}
