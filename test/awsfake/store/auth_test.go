package store_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/ssm"

	"github.com/podsecrets/podsecrets/test/awsfake/store"
)

func TestSignedRequestAuthentication(t *testing.T) {
	t.Parallel()
	var clock atomic.Int64
	e := newEnv(t, store.Options{Now: func() time.Time { return time.Now().Add(time.Duration(clock.Load())) }})
	e.role(appRole, smAllowAnyRegion)
	e.s.CreateSecret(east, "app/auth", store.Value{String: "v"})
	good := e.assume(appRole, appSA)
	mod := func(f func(*aws.Credentials)) aws.Credentials { c := good; f(&c); return c }
	tests := map[string]struct {
		creds    aws.CredentialsProvider
		wantCode string
	}{
		"valid STS credentials":     {creds: static(good)},
		"IssueCredentials":          {creds: static(e.issued(appRole))},
		"wrong secret key":          {creds: static(mod(func(c *aws.Credentials) { c.SecretAccessKey += "x" })), wantCode: "InvalidSignatureException"},
		"unknown access key":        {creds: static(mod(func(c *aws.Credentials) { c.AccessKeyID = "ASIAUNKNOWNUNKNOWN00" })), wantCode: "UnrecognizedClientException"},
		"wrong session token":       {creds: static(mod(func(c *aws.Credentials) { c.SessionToken += "x" })), wantCode: "UnrecognizedClientException"},
		"missing session token":     {creds: static(mod(func(c *aws.Credentials) { c.SessionToken = "" })), wantCode: "UnrecognizedClientException"},
		"anonymous (unsigned) call": {creds: aws.AnonymousCredentials{}, wantCode: "MissingAuthenticationTokenException"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			c := secretsmanager.NewFromConfig(e.awsConfig(east, tc.creds))
			_, err := c.GetSecretValue(ctx(t), &secretsmanager.GetSecretValueInput{SecretId: aws.String("app/auth")})
			if got := errCode(t, err); got != tc.wantCode {
				t.Fatalf("error code %q, want %q (%v)", got, tc.wantCode, err)
			}
			if err != nil && httpStatus(err) != 400 {
				t.Errorf("HTTP status %d, want 400", httpStatus(err))
			}
		})
	}

	t.Run("expired credentials", func(t *testing.T) {
		clock.Store(int64(2 * time.Hour))
		defer clock.Store(0)
		if _, _, got := getSecret(t, e.sm(east, good), "app/auth", ""); got != "ExpiredTokenException" {
			t.Fatalf("error code %q", got)
		}
	})

	// Hand-signed requests, altered after signing.
	raw := func(t *testing.T, service, target string, body []byte, alter func(*http.Request)) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/x-amz-json-1.1")
		req.Header.Set("X-Amz-Target", target)
		req.Header.Set("Amz-Sdk-Request", "attempt=1;  max=1")
		sum := sha256.Sum256(body)
		if err := v4.NewSigner().SignHTTP(ctx(t), good, req, hex.EncodeToString(sum[:]), service, east, time.Now()); err != nil {
			t.Fatal(err)
		}
		if alter != nil {
			alter(req)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out struct {
			Type string `json:"__type"`
		}
		b, _ := io.ReadAll(resp.Body)
		_ = json.Unmarshal(b, &out)
		return resp.StatusCode, out.Type
	}
	body := []byte(`{"SecretId":"app/auth"}`)
	rawTests := map[string]struct {
		service, target string
		alter           func(*http.Request)
		wantStatus      int
		wantType        string
	}{
		"unaltered":             {"secretsmanager", "secretsmanager.GetSecretValue", nil, 200, ""},
		"body swapped":          {"secretsmanager", "secretsmanager.GetSecretValue", func(r *http.Request) { r.Body = io.NopCloser(bytes.NewReader([]byte(`{"SecretId":"app/xxxx"}`))) }, 400, "InvalidSignatureException"},
		"signed header changed": {"secretsmanager", "secretsmanager.GetSecretValue", func(r *http.Request) { r.Header.Set("X-Amz-Target", "secretsmanager.DescribeSecret") }, 400, "InvalidSignatureException"},
		"signed for SSM":        {"ssm", "secretsmanager.GetSecretValue", nil, 400, "InvalidSignatureException"},
		"date changed": {"secretsmanager", "secretsmanager.GetSecretValue", func(r *http.Request) {
			d := r.Header.Get("X-Amz-Date") // same day, other second: only the signature can object
			ss := "00"
			if d[13:15] == ss {
				ss = "01"
			}
			r.Header.Set("X-Amz-Date", d[:13]+ss+"Z")
		}, 400, "InvalidSignatureException"},
		"garbled authorization":         {"secretsmanager", "secretsmanager.GetSecretValue", func(r *http.Request) { r.Header.Set("Authorization", "AWS4-HMAC-SHA256 nonsense") }, 400, "IncompleteSignatureException"},
		"unsigned header added":         {"secretsmanager", "secretsmanager.GetSecretValue", func(r *http.Request) { r.Header.Set("X-Extra", "fine") }, 200, ""},
		"a call the driver never makes": {"secretsmanager", "secretsmanager.PutSecretValue", nil, 400, "UnknownOperationException"},
	}
	for name, tc := range rawTests {
		t.Run("raw "+name, func(t *testing.T) {
			status, typ := raw(t, tc.service, tc.target, body, tc.alter)
			if status != tc.wantStatus || typ != tc.wantType {
				t.Fatalf("got %d %q, want %d %q", status, typ, tc.wantStatus, tc.wantType)
			}
		})
	}
}

// TestDefaultSDKConfig uses config.LoadDefaultConfig, i.e. exactly the
// middleware (accept-encoding, amz-sdk-invocation-id, amz-sdk-request, user
// agent, ...) the driver's clients will send.
func TestDefaultSDKConfig(t *testing.T) {
	t.Parallel()
	e := newEnv(t, store.Options{})
	e.role(appRole, smAllowAnyRegion, "arn:aws:ssm:*:"+acct+":parameter/app/*")
	e.s.CreateSecret(east, "app/cfg", store.Value{String: "from-default-config"})
	e.s.PutParameter(east, "/app/cfg", "param", "SecureString")
	cfg, err := config.LoadDefaultConfig(ctx(t),
		config.WithRegion(east),
		config.WithBaseEndpoint(e.srv.URL),
		config.WithCredentialsProvider(static(e.assume(appRole, appSA))),
	)
	if err != nil {
		t.Fatal(err)
	}
	out, err := secretsmanager.NewFromConfig(cfg).GetSecretValue(ctx(t), &secretsmanager.GetSecretValueInput{SecretId: aws.String("app/cfg")})
	if err != nil || aws.ToString(out.SecretString) != "from-default-config" {
		t.Fatalf("secretsmanager: %v", err)
	}
	p, err := ssm.NewFromConfig(cfg).GetParameters(ctx(t), &ssm.GetParametersInput{Names: []string{"/app/cfg"}, WithDecryption: aws.Bool(true)})
	if err != nil || len(p.Parameters) != 1 || aws.ToString(p.Parameters[0].Value) != "param" {
		t.Fatalf("ssm: %v", err)
	}
}
