package store_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/ssm"

	"github.com/podsecrets/podsecrets/test/awsfake/store"
)

// control calls a control endpoint, posting body as JSON unless it is nil,
// decodes the JSON reply into out and returns the HTTP status.
func (e *env) control(path string, body, out any) int {
	e.t.Helper()
	method, r := http.MethodGet, io.Reader(nil)
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			e.t.Fatal(err)
		}
		method, r = http.MethodPost, bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, e.srv.URL+path, r)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		e.t.Fatalf("%s %s: reply: %v", method, path, err)
	}
	return resp.StatusCode
}

// seed posts doc to PathSeed and fails the test unless it is applied.
func (e *env) seed(doc store.Seed) store.SeedReply {
	e.t.Helper()
	var reply store.SeedReply
	if status := e.control(store.PathSeed, doc, &reply); status != http.StatusOK {
		e.t.Fatalf("seed %+v: status %d", doc, status)
	}
	return reply
}

// TestSeedState: a seed alone, on an empty store, sets up what an
// out-of-process test needs: trust, roles, pod identity, secrets with
// rotated versions, parameters, and deletes.
func TestSeedState(t *testing.T) {
	t.Parallel()
	s := store.New(store.Options{})
	e := &env{t: t, s: s, srv: httptest.NewServer(s.Handler()), iss: sharedIssuer(t)}
	t.Cleanup(e.srv.Close)
	reply := e.seed(store.Seed{
		JWKS: e.iss.JWKS(),
		Roles: []store.Role{{ARN: appRole, Subjects: []string{appSA},
			Allow: []string{smAllowAnyRegion, "arn:aws:ssm:*:" + acct + ":parameter/app/*"}}},
		PodIdentity: []store.SeedPodIdentity{{Namespace: "app", ServiceAccount: "reader", RoleARN: appRole}},
		Secrets: []store.SeedSecret{
			{Region: east, Name: "app/s", Value: "one"},
			{Region: east, Name: "app/s", Value: "two"},
			{Region: east, Name: "app/gone", Value: "old"},
		},
		Parameters: []store.SeedParameter{
			{Region: east, Name: "/app/p", Value: "p1", Type: "SecureString"},
			{Region: east, Name: "/app/p", Value: "p2"},
		},
	})
	sec := reply.Secrets
	if len(sec) != 3 || sec[0].ARN != sec[1].ARN || !strings.HasPrefix(sec[0].ARN, "arn:aws:secretsmanager:us-east-1:"+acct+":secret:app/s-") ||
		sec[0].VersionID == "" || sec[0].VersionID == sec[1].VersionID || len(reply.Parameters) != 2 || reply.Parameters[1] != 2 {
		t.Fatalf("reply %+v", reply)
	}
	sm := e.sm(east, e.assume(appRole, appSA)) // trust and role from the seed
	for stage, want := range map[string]string{"AWSCURRENT": "two", "AWSPREVIOUS": "one"} {
		if val, _, code := getSecret(t, sm, "app/s", stage); val != want {
			t.Errorf("%s = %q (%s), want %q", stage, val, code, want)
		}
	}
	ps, err := e.ssm(east, e.issued(appRole)).GetParameters(ctx(t), &ssm.GetParametersInput{Names: []string{"/app/p"}, WithDecryption: aws.Bool(true)})
	if err != nil || len(ps.Parameters) != 1 || aws.ToString(ps.Parameters[0].Value) != "p2" || ps.Parameters[0].Type != "SecureString" {
		t.Fatalf("parameter: %+v %v", ps, err)
	}
	if _, err := e.podCreds(e.iss.Token(appSA, store.AudiencePodIdentity, time.Hour)); err != nil {
		t.Fatalf("seeded pod identity: %v", err)
	}

	// A delete, then a put: the same name, a new ARN, none of the old
	// versions.
	again := e.seed(store.Seed{Secrets: []store.SeedSecret{
		{Region: east, Name: "app/gone", Delete: true},
		{Region: east, Name: "app/gone", Value: "new"},
		{Region: east, Name: "app/never-made", Delete: true},
	}}).Secrets
	if again[0] != (store.SeededSecret{}) || again[1].ARN == sec[2].ARN || again[1].ARN == "" {
		t.Fatalf("reply %+v after %+v", again, sec[2])
	}
	if _, _, code := getSecret(t, sm, sec[2].ARN, ""); code != "ResourceNotFoundException" {
		t.Errorf("the deleted secret's ARN: %q", code)
	}
	_, err = sm.GetSecretValue(ctx(t), &secretsmanager.GetSecretValueInput{SecretId: aws.String("app/gone"), VersionId: aws.String(sec[2].VersionID)})
	if code := errCode(t, err); code != "ResourceNotFoundException" {
		t.Errorf("the deleted secret's version: %q", code)
	}
	if val, _, _ := getSecret(t, sm, "app/gone", ""); val != "new" {
		t.Errorf("recreated secret = %q", val)
	}
}

// TestSeedKnobs: faults, latency and quotas set through a seed take effect
// and are cleared by the next; control calls are never counted.
func TestSeedKnobs(t *testing.T) {
	t.Parallel()
	e := newEnv(t, store.Options{})
	e.role(appRole, smAllowAnyRegion)
	e.s.CreateSecret(east, "app/a", store.Value{String: "a"})
	sm := e.sm(east, e.issued(appRole))
	code := func(c context.Context) string {
		t.Helper()
		_, err := sm.GetSecretValue(c, &secretsmanager.GetSecretValueInput{SecretId: aws.String("app/a")})
		if errors.Is(err, context.DeadlineExceeded) {
			return "deadline"
		}
		return errCode(t, err)
	}

	e.seed(store.Seed{Faults: map[string]store.Fault{east: {Rate: 1, Code: store.FaultInternal}}})
	if got := code(ctx(t)); got != store.FaultInternal {
		t.Errorf("with a fault: %q", got)
	}
	e.seed(store.Seed{Faults: map[string]store.Fault{east: {}}})
	if got := code(ctx(t)); got != "" {
		t.Errorf("fault cleared: %q", got)
	}

	e.seed(store.Seed{Latency: "1h"})
	short, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if got := code(short); got != "deadline" {
		t.Errorf("under an hour's latency: %q", got)
	}
	e.seed(store.Seed{Latency: "0s"})

	e.seed(store.Seed{Quotas: &store.QuotaConfig{Scale: 0.0001}}) // GetSecretValue 1/s, burst 1
	if got := code(ctx(t)) + "," + code(ctx(t)); got != ",ThrottlingException" {
		t.Errorf("over a quota of 1: %q", got)
	}
	e.seed(store.Seed{Quotas: &store.QuotaConfig{}})
	if got := code(ctx(t)); got != "" {
		t.Errorf("quotas off: %q", got)
	}

	calls := map[string]int{}
	if e.control(store.PathCalls, nil, &calls) != http.StatusOK || !maps.Equal(calls, map[string]int{"secretsmanager.GetSecretValue": 6}) {
		t.Errorf("GET %s = %v, want only the 6 AWS calls", store.PathCalls, calls)
	}
	var empty map[string]any
	if status := e.control(store.PathHealth, nil, &empty); status != http.StatusOK {
		t.Errorf("GET %s: %d", store.PathHealth, status)
	}
	if status := e.control(store.PathSeed, nil, &empty); status != http.StatusNotFound {
		t.Errorf("GET %s: %d, want 404", store.PathSeed, status)
	}
}

// TestSeedRejected: a seed with any bad part is answered 400 with a reason
// and changes nothing, not even its good parts.
func TestSeedRejected(t *testing.T) {
	t.Parallel()
	e := newEnv(t, store.Options{})
	e.role(appRole, smAllowAnyRegion)
	sm := e.sm(east, e.issued(appRole))
	good := `{"region":"us-east-1","name":"app/never","value":"x"}`
	for name, part := range map[string]string{
		"malformed":            `"roles":[`,
		"unknown field":        `"secret":[]`,
		"secret without name":  `"secrets":[` + good + `,{"region":"us-east-1","value":"x"}]`,
		"delete with a value":  `"secrets":[` + good + `,{"region":"us-east-1","name":"app/x","value":"x","delete":true}]`,
		"bad parameter type":   `"parameters":[{"region":"us-east-1","name":"/p","value":"v","type":"Int"}]`,
		"parameter no region":  `"parameters":[{"name":"/p","value":"v"}]`,
		"bad role ARN":         `"roles":[{"arn":"arn:aws:iam::1:user/bob"}]`,
		"pod identity gaps":    `"podIdentity":[{"namespace":"a"}]`,
		"fault rate above 1":   `"faults":{"":{"rate":2}}`,
		"not a duration":       `"latency":"soon"`,
		"negative latency":     `"latency":"-1s"`,
		"negative quota scale": `"quotas":{"scale":-1}`,
		"unknown quota":        `"quotas":{"scale":1,"quotas":{"nope":{"rate":1}}}`,
		"quota rate 0":         `"quotas":{"scale":1,"quotas":{"` + store.QuotaGetSecretValue + `":{"rate":0}}}`,
		"JWKS without keys":    `"jwks":{"keys":[]}`,
	} {
		t.Run(name, func(t *testing.T) {
			doc := "{" + part + "}"
			if !strings.Contains(part, `"secrets"`) {
				doc = `{"secrets":[` + good + "]," + part + "}"
			}
			resp, err := http.Post(e.srv.URL+store.PathSeed, "application/json", strings.NewReader(doc))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var reply struct{ Error string }
			_ = json.NewDecoder(resp.Body).Decode(&reply)
			if resp.StatusCode != http.StatusBadRequest || !strings.HasPrefix(reply.Error, "seed: ") {
				t.Fatalf("%s: %d %q, want 400 with a reason", doc, resp.StatusCode, reply.Error)
			}
			if _, _, code := getSecret(t, sm, "app/never", ""); code != "ResourceNotFoundException" {
				t.Fatalf("a rejected seed was partly applied: %q", code)
			}
		})
	}
}
