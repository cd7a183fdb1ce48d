package store_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/podsecrets/podsecrets/test/awsfake/store"
)

func TestControlEndpoints(t *testing.T) {
	t.Parallel()
	e := newEnv(t, store.Options{})
	other, err := store.NewIssuerES256("https://control.example")
	if err != nil {
		t.Fatal(err)
	}
	do := func(method, path, body string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		return resp.StatusCode, m
	}
	var arn, firstVersion string
	steps := []struct {
		name, method, path, body string
		wantStatus               int
		check                    func(t *testing.T, reply map[string]any)
	}{
		{"role", "POST", store.PathRoles, `{"arn":"` + appRole + `","subjects":["` + appSA + `"],"allow":["` + smAllowAnyRegion + `","arn:aws:ssm:*:` + acct + `:parameter/*"]}`, 200, nil},
		{"role with bad ARN", "POST", store.PathRoles, `{"arn":"not-an-arn"}`, 400, nil},
		{"create secret", "POST", store.PathSecrets, `{"region":"us-east-1","name":"app/ctl","string":"one"}`, 200, func(t *testing.T, r map[string]any) {
			arn, _ = r["arn"].(string)
			firstVersion, _ = r["versionId"].(string)
			if !strings.HasPrefix(arn, "arn:aws:secretsmanager:us-east-1:"+acct+":secret:app/ctl-") || firstVersion == "" {
				t.Fatalf("reply %v", r)
			}
		}},
		{"new secret version", "POST", store.PathSecrets, `{"region":"us-east-1","name":"app/ctl","string":"two"}`, 200, func(t *testing.T, r map[string]any) {
			if r["arn"] != arn || r["versionId"] == firstVersion {
				t.Fatalf("reply %v", r)
			}
			e.expectSecret(t, "app/ctl", "AWSCURRENT", "two")
			e.expectSecret(t, "app/ctl", "AWSPREVIOUS", "one")
		}},
		{"binary secret", "POST", store.PathSecrets, `{"region":"us-east-1","name":"app/bin","binaryBase64":"` + base64.StdEncoding.EncodeToString([]byte{0, 1, 2}) + `"}`, 200, nil},
		{"secret with both forms", "POST", store.PathSecrets, `{"region":"us-east-1","name":"app/x","string":"a","binaryBase64":"AA=="}`, 400, nil},
		{"secret without region", "POST", store.PathSecrets, `{"name":"app/x","string":"a"}`, 400, nil},
		{"misspelt field", "POST", store.PathSecrets, `{"region":"us-east-1","nmae":"app/x","string":"a"}`, 400, nil},
		{"malformed JSON", "POST", store.PathSecrets, `{`, 400, nil},
		{"stage move", "POST", store.PathSecretStage, ``, 0, nil}, // body filled in below
		{"parameter", "POST", store.PathParameters, `{"region":"us-east-1","name":"/app/p","value":"v","type":"SecureString"}`, 200, func(t *testing.T, r map[string]any) {
			if r["version"] != float64(1) {
				t.Fatalf("reply %v", r)
			}
		}},
		{"parameter bad type", "POST", store.PathParameters, `{"region":"us-east-1","name":"/app/p","value":"v","type":"Number"}`, 400, nil},
		{"parameter label", "POST", store.PathParameterLabels, `{"region":"us-east-1","name":"/app/p","version":1,"labels":["live"]}`, 200, nil},
		{"pod identity", "POST", store.PathPodIdentity, `{"namespace":"app","serviceAccount":"reader","roleArn":"` + appRole + `"}`, 200, nil},
		{"pod identity incomplete", "POST", store.PathPodIdentity, `{"namespace":"app"}`, 400, nil},
		{"trust another JWKS", "POST", store.PathJWKS, string(other.JWKS()), 200, nil},
		{"bad JWKS", "POST", store.PathJWKS, `{"keys":[]}`, 400, nil},
		{"seed", "POST", store.PathSeed, `{"secrets":[{"region":"eu-west-1","name":"app/seeded","string":"s"}]}`, 200, nil},
		{"reset calls before counting", "POST", store.PathCallsReset, ``, 200, nil},
		{"fault", "POST", store.PathFault, `{"region":"us-east-1","rate":1,"code":"InternalServiceError"}`, 200, func(t *testing.T, _ map[string]any) {
			_, err := e.sm(east, e.assume(appRole, appSA)).GetSecretValue(ctx(t), &secretsmanager.GetSecretValueInput{SecretId: aws.String("app/ctl")})
			if got := errCode(t, err); got != "InternalServiceError" {
				t.Fatalf("after fault: %q", got)
			}
		}},
		{"fault rate out of range", "POST", store.PathFault, `{"rate":2}`, 400, nil},
		{"clear fault", "POST", store.PathFault, `{"region":"us-east-1","rate":0}`, 200, nil},
		{"latency", "POST", store.PathLatency, `{"latency":"20ms"}`, 200, func(t *testing.T, _ map[string]any) {
			if e.s.Latency() != 20*time.Millisecond {
				t.Fatalf("latency %v", e.s.Latency())
			}
		}},
		{"bad latency", "POST", store.PathLatency, `{"latency":"soon"}`, 400, nil},
		{"no latency", "POST", store.PathLatency, `{"latency":"0s"}`, 200, nil},
		{"calls", "GET", store.PathCalls, ``, 200, func(t *testing.T, r map[string]any) {
			// Only the AWS calls made by the fault check; control calls are not counted.
			want := map[string]any{"sts.AssumeRoleWithWebIdentity": float64(1), "secretsmanager.GetSecretValue": float64(1)}
			if len(r) != len(want) || r["sts.AssumeRoleWithWebIdentity"] != want["sts.AssumeRoleWithWebIdentity"] || r["secretsmanager.GetSecretValue"] != want["secretsmanager.GetSecretValue"] {
				t.Fatalf("calls %v, want %v", r, want)
			}
		}},
		{"reset calls", "POST", store.PathCallsReset, ``, 200, func(t *testing.T, _ map[string]any) {
			if n := len(e.s.CallCounts()); n != 0 {
				t.Fatalf("%d counters left", n)
			}
		}},
		{"delete secret", "POST", store.PathSecretDelete, `{"region":"us-east-1","name":"app/bin"}`, 200, func(t *testing.T, _ map[string]any) {
			if _, ok := e.s.Secret(east, "app/bin"); ok {
				t.Fatal("secret survived")
			}
		}},
		{"delete missing secret", "POST", store.PathSecretDelete, `{"region":"us-east-1","name":"app/bin"}`, 400, nil},
		{"health", "GET", store.PathHealth, ``, 200, nil},
		{"unknown endpoint", "POST", "/_fake/nope", `{}`, 404, nil},
		{"wrong method", "GET", store.PathSecrets, ``, 404, nil},
	}
	for _, st := range steps {
		if st.name == "stage move" {
			st.body = `{"region":"us-east-1","name":"app/ctl","stage":"AWSCURRENT","versionId":"` + firstVersion + `"}`
			st.wantStatus = 200
			st.check = func(t *testing.T, _ map[string]any) { e.expectSecret(t, "app/ctl", "AWSCURRENT", "one") }
		}
		status, reply := do(st.method, st.path, st.body)
		if status != st.wantStatus {
			t.Fatalf("%s: status %d, want %d (%v)", st.name, status, st.wantStatus, reply)
		}
		if status != 200 && status != 404 && reply["error"] == "" {
			t.Errorf("%s: error reply without message: %v", st.name, reply)
		}
		if st.check != nil {
			t.Run(st.name, func(t *testing.T) { st.check(t, reply) })
		}
	}

	// Effects visible through the library API.
	if info, ok := e.s.Secret(west, "app/seeded"); !ok || info.Name != "app/seeded" {
		t.Error("seeded secret missing")
	}
	creds, err := e.s.IssueCredentials(appRole, "ctl", 0)
	if err != nil {
		t.Fatal(err)
	}
	p, err := e.ssm(east, aws.Credentials{AccessKeyID: creds.AccessKeyID, SecretAccessKey: creds.SecretAccessKey, SessionToken: creds.SessionToken}).GetParameters(ctx(t), &ssmGetParametersDecrypt)
	if err != nil || len(p.Parameters) != 1 || aws.ToString(p.Parameters[0].Value) != "v" {
		t.Fatalf("labelled parameter: %v %v", p, err)
	}
	if _, err := e.s.IssueCredentials("arn:aws:iam::"+acct+":role/missing", "", 0); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("IssueCredentials for a missing role: %v", err)
	}
}

var ssmGetParametersDecrypt = func() (in ssmGetParametersInput) {
	in.Names = []string{"/app/p:live"}
	in.WithDecryption = aws.Bool(true)
	return
}()

func (e *env) expectSecret(t *testing.T, id, stage, want string) {
	t.Helper()
	out, err := e.sm(east, e.assumeQuiet()).GetSecretValue(ctx(t), &secretsmanager.GetSecretValueInput{SecretId: aws.String(id), VersionStage: aws.String(stage)})
	if err != nil || aws.ToString(out.SecretString) != want {
		t.Fatalf("%s@%s: %v (%v), want %q", id, stage, out, err, want)
	}
}

// assumeQuiet issues credentials without an STS call so call counters stay
// untouched.
func (e *env) assumeQuiet() aws.Credentials {
	c, err := e.s.IssueCredentials(appRole, "quiet", 0)
	if err != nil {
		e.t.Fatal(err)
	}
	return aws.Credentials{AccessKeyID: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey, SessionToken: c.SessionToken}
}

func TestLoadSeed(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t)
	seed := map[string]any{
		"secrets": []any{
			map[string]any{"region": east, "name": "app/seed", "string": "current", "previous": "older"},
			map[string]any{"region": east, "name": "app/seed-bin", "binaryBase64": base64.StdEncoding.EncodeToString([]byte("\x00bin"))},
			map[string]any{"region": west, "name": "app/seed", "string": "west"},
		},
		"parameters": []any{
			map[string]any{"region": east, "name": "/app/seed", "value": "p", "type": "SecureString"},
			map[string]any{"region": east, "name": "/app/plain", "value": "q"},
		},
		"roles":       []any{map[string]any{"arn": appRole, "subjects": []string{appSA}, "allow": []string{smAllowAnyRegion, "arn:aws:ssm:*:" + acct + ":parameter/app/*"}}},
		"podIdentity": []any{map[string]any{"namespace": "app", "serviceAccount": "reader", "roleArn": appRole}},
		"jwks":        json.RawMessage(iss.JWKS()),
	}
	data, _ := json.Marshal(seed)
	s := store.New(store.Options{})
	if err := s.LoadSeed(data); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, s: s, srv: newServer(t, s), iss: iss}
	creds := e.assume(appRole, appSA) // role + jwks from the seed
	sm := e.sm(east, creds)
	for stage, want := range map[string]string{"AWSCURRENT": "current", "AWSPREVIOUS": "older"} {
		out, err := sm.GetSecretValue(ctx(t), &secretsmanager.GetSecretValueInput{SecretId: aws.String("app/seed"), VersionStage: aws.String(stage)})
		if err != nil || aws.ToString(out.SecretString) != want {
			t.Fatalf("%s: %v %v", stage, out, err)
		}
	}
	out, err := sm.GetSecretValue(ctx(t), &secretsmanager.GetSecretValueInput{SecretId: aws.String("app/seed-bin")})
	if err != nil || !bytes.Equal(out.SecretBinary, []byte("\x00bin")) {
		t.Fatalf("binary: %v %v", out, err)
	}
	out, err = e.sm(west, creds).GetSecretValue(ctx(t), &secretsmanager.GetSecretValueInput{SecretId: aws.String("app/seed")})
	if err != nil || aws.ToString(out.SecretString) != "west" {
		t.Fatalf("west: %v %v", out, err)
	}
	ps, err := e.ssm(east, creds).GetParameters(ctx(t), &ssmGetParametersInput{Names: []string{"/app/seed", "/app/plain"}, WithDecryption: aws.Bool(true)})
	if err != nil || len(ps.Parameters) != 2 || aws.ToString(ps.Parameters[0].Value) != "p" || ps.Parameters[1].Type != "String" {
		t.Fatalf("parameters: %+v %v", ps, err)
	}
	if _, err := podCreds(e, appSA); err != nil {
		t.Fatalf("seeded pod identity: %v", err)
	}

	bad := map[string]string{
		"not JSON":            `{`,
		"unknown field":       `{"secret":[]}`,
		"secret no region":    `{"secrets":[{"name":"a","string":"x"}]}`,
		"secret both forms":   `{"secrets":[{"region":"r","name":"a","string":"x","binaryBase64":"AA=="}]}`,
		"secret no value":     `{"secrets":[{"region":"r","name":"a"}]}`,
		"bad base64":          `{"secrets":[{"region":"r","name":"a","binaryBase64":"!!"}]}`,
		"bad parameter type":  `{"parameters":[{"region":"r","name":"a","value":"v","type":"Int"}]}`,
		"parameter no region": `{"parameters":[{"name":"a","value":"v"}]}`,
		"bad role ARN":        `{"roles":[{"arn":"arn:aws:iam::1:user/bob"}]}`,
		"pod identity gaps":   `{"podIdentity":[{"namespace":"a"}]}`,
		"empty JWKS":          `{"jwks":{"keys":[]}}`,
		"later entry invalid": `{"secrets":[{"region":"r","name":"first","string":"x"}],"roles":[{"arn":"bad"}]}`,
	}
	for name, doc := range bad {
		t.Run(name, func(t *testing.T) {
			s := store.New(store.Options{})
			if err := s.LoadSeed([]byte(doc)); err == nil {
				t.Fatal("seed accepted")
			}
			if _, ok := s.Secret("r", "first"); ok {
				t.Fatal("a rejected seed was partly applied")
			}
		})
	}
}

func podCreds(e *env, sub string) (aws.Credentials, error) {
	return endpointcredsProvider(e, e.iss.Token(sub, store.AudiencePodIdentity, time.Hour)).Retrieve(ctx(e.t))
}

func TestSeedSecretsAreIndependentOfCallers(t *testing.T) {
	t.Parallel()
	// Values handed to the store are copied: mutating the caller's slice
	// must not change the stored secret.
	s := store.New(store.Options{})
	b := []byte("abc")
	s.CreateSecret(east, "x", store.Value{Binary: b})
	b[0] = 'X'
	e := &env{t: t, s: s, srv: newServer(t, s), iss: newIssuer(t)}
	s.AddRole(store.Role{ARN: appRole, Allow: []string{"*"}})
	out, err := e.sm(east, e.assumeQuiet()).GetSecretValue(ctx(t), &secretsmanager.GetSecretValueInput{SecretId: aws.String("x")})
	if err != nil || !slices.Equal(out.SecretBinary, []byte("abc")) {
		t.Fatalf("%v %v", out, err)
	}
}
