package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"

	"github.com/podsecrets/podsecrets/test/awsfake/store"
)

func TestParseFlags(t *testing.T) {
	tests := map[string]struct {
		args    []string
		want    config
		wantErr bool
	}{
		"defaults": {args: nil, want: config{addr: "127.0.0.1:4566", faultCode: "ThrottlingException", accountID: "111122223333"}},
		"everything": {
			args: []string{"-addr", ":9000", "-seed", "s.json", "-latency", "20ms", "-fault-rate", "0.25", "-fault-code", "InternalServiceError",
				"-jwks-file", "k.json", "-jwks-url", "https://kubernetes.default.svc/openid/v1/jwks", "-jwks-ca", "ca.crt", "-jwks-bearer-file", "tok", "-account-id", "123456789012"},
			want: config{addr: ":9000", seed: "s.json", latency: 20 * time.Millisecond, faultRate: 0.25, faultCode: "InternalServiceError",
				jwksFile: "k.json", jwksURL: "https://kubernetes.default.svc/openid/v1/jwks", jwksCA: "ca.crt", jwksBearerFile: "tok", accountID: "123456789012"},
		},
		"quota scale":          {args: []string{"-quota-scale", "0.01"}, want: config{addr: "127.0.0.1:4566", faultCode: "ThrottlingException", accountID: "111122223333", quotaScale: 0.01}},
		"negative quota scale": {args: []string{"-quota-scale", "-1"}, wantErr: true},
		"fault rate above 1":   {args: []string{"-fault-rate", "1.5"}, wantErr: true},
		"negative fault rate":  {args: []string{"-fault-rate", "-0.1"}, wantErr: true},
		"unknown fault code":   {args: []string{"-fault-code", "Boom"}, wantErr: true},
		"negative latency":     {args: []string{"-latency", "-1s"}, wantErr: true},
		"bad latency":          {args: []string{"-latency", "soon"}, wantErr: true},
		"CA without URL":       {args: []string{"-jwks-ca", "ca.crt"}, wantErr: true},
		"bearer without URL":   {args: []string{"-jwks-bearer-file", "tok"}, wantErr: true},
		"short account":        {args: []string{"-account-id", "123"}, wantErr: true},
		"non-numeric account":  {args: []string{"-account-id", "12345678901x"}, wantErr: true},
		"positional arguments": {args: []string{"extra"}, wantErr: true},
		"unknown flag":         {args: []string{"-nope"}, wantErr: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := parseFlags(tc.args, io.Discard)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v", err)
			}
			if err == nil && got != tc.want {
				t.Fatalf("config %+v, want %+v", got, tc.want)
			}
		})
	}
}

func writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const (
	roleARN = "arn:aws:iam::111122223333:role/app"
	subject = "system:serviceaccount:app:reader"
)

func seedFile(t *testing.T) string {
	seed := `{
  "secrets": [{"region": "us-east-1", "name": "app/db", "string": "hunter2-current", "previous": "hunter1-previous"}],
  "parameters": [{"region": "us-east-1", "name": "/app/flag", "value": "on", "type": "String"}],
  "roles": [{"arn": "` + roleARN + `", "subjects": ["` + subject + `"], "allow": ["arn:aws:secretsmanager:*:111122223333:secret:app/*"]}],
  "podIdentity": [{"namespace": "app", "serviceAccount": "reader", "roleArn": "` + roleARN + `"}]
}`
	return writeFile(t, "seed.json", []byte(seed))
}

func TestNewStoreErrors(t *testing.T) {
	iss, err := store.NewIssuerES256("https://x")
	if err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		cfg     config
		wantErr bool
	}{
		"seed and JWKS file":  {cfg: config{accountID: "111122223333", seed: seedFile(t), jwksFile: writeFile(t, "k.json", iss.JWKS())}},
		"missing seed file":   {cfg: config{accountID: "111122223333", seed: filepath.Join(t.TempDir(), "absent.json")}, wantErr: true},
		"invalid seed":        {cfg: config{accountID: "111122223333", seed: writeFile(t, "bad.json", []byte(`{"secrets":[{"name":"x"}]}`))}, wantErr: true},
		"invalid JWKS file":   {cfg: config{accountID: "111122223333", jwksFile: writeFile(t, "k.json", []byte(`{}`))}, wantErr: true},
		"missing JWKS CA":     {cfg: config{accountID: "111122223333", jwksURL: "https://127.0.0.1:1/jwks", jwksCA: filepath.Join(t.TempDir(), "absent.pem")}, wantErr: true},
		"unreachable JWKS ok": {cfg: config{accountID: "111122223333", jwksURL: "http://127.0.0.1:1/jwks"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := newStore(context.Background(), tc.cfg, slog.New(slog.DiscardHandler))
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v", err)
			}
		})
	}
}

// TestServe runs the command's server with a seed file and a TLS JWKS URL
// that demands a bearer token, then drives it with the real SDK.
func TestServe(t *testing.T) {
	iss, err := store.NewIssuer("https://kubernetes.default.svc")
	if err != nil {
		t.Fatal(err)
	}
	var sawBearer atomic.Bool
	jwksSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer sa-token" {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		sawBearer.Store(true)
		_, _ = w.Write(iss.JWKS())
	}))
	defer jwksSrv.Close()
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: jwksSrv.Certificate().Raw})

	tests := map[string]struct {
		extra    []string
		wantCode string
	}{
		"healthy":       {},
		"fault flag":    {extra: []string{"-fault-rate", "1"}, wantCode: "ThrottlingException"},
		"latency flag":  {extra: []string{"-latency", "1ms"}},
		"internal code": {extra: []string{"-fault-rate", "1", "-fault-code", "InternalServiceError"}, wantCode: "InternalServiceError"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			args := append([]string{"-seed", seedFile(t), "-jwks-url", jwksSrv.URL + "/openid/v1/jwks",
				"-jwks-ca", writeFile(t, "ca.pem", caPEM), "-jwks-bearer-file", writeFile(t, "token", []byte("sa-token\n"))}, tc.extra...)
			cfg, err := parseFlags(args, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			var logs bytes.Buffer
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- serve(ctx, cfg, ln, slog.New(slog.NewTextHandler(&logs, nil))) }()
			url := "http://" + ln.Addr().String()

			awsCfg := aws.Config{Region: "us-east-1", RetryMaxAttempts: 1, HTTPClient: awshttp.NewBuildableClient(), BaseEndpoint: aws.String(url)}
			token := iss.Token(subject, store.AudienceSTS, time.Hour)
			out, err := sts.NewFromConfig(awsCfg).AssumeRoleWithWebIdentity(context.Background(), &sts.AssumeRoleWithWebIdentityInput{
				RoleArn: aws.String(roleARN), RoleSessionName: aws.String("main-test"), WebIdentityToken: aws.String(token),
			})
			if code := apiCode(err); code != tc.wantCode {
				t.Fatalf("AssumeRoleWithWebIdentity: %v", err)
			}
			if err == nil {
				c := out.Credentials
				awsCfg.Credentials = credentials.NewStaticCredentialsProvider(*c.AccessKeyId, *c.SecretAccessKey, *c.SessionToken)
				v, err := secretsmanager.NewFromConfig(awsCfg).GetSecretValue(context.Background(), &secretsmanager.GetSecretValueInput{SecretId: aws.String("app/db"), VersionStage: aws.String("AWSPREVIOUS")})
				if err != nil || aws.ToString(v.SecretString) != "hunter1-previous" {
					t.Fatalf("GetSecretValue: %v", err)
				}
			}
			resp, err := http.Get(url + store.PathCalls)
			if err != nil {
				t.Fatal(err)
			}
			var calls map[string]int
			_ = json.NewDecoder(resp.Body).Decode(&calls)
			resp.Body.Close()
			if calls["sts.AssumeRoleWithWebIdentity"] != 1 {
				t.Fatalf("calls %v", calls)
			}

			cancel()
			if err := <-done; err != nil && !errors.Is(err, http.ErrServerClosed) {
				t.Fatalf("serve: %v", err)
			}
			if !sawBearer.Load() {
				t.Fatal("JWKS URL was never fetched with the bearer token")
			}
			log := logs.String()
			if !strings.Contains(log, "op=sts.AssumeRoleWithWebIdentity") || !strings.Contains(log, "role="+roleARN) {
				t.Errorf("request log lacks operation or role:\n%s", log)
			}
			for _, secret := range []string{"hunter1", "hunter2", token, "sa-token"} {
				if strings.Contains(log, secret) {
					t.Errorf("log leaks %q", secret[:min(len(secret), 12)])
				}
			}
		})
	}
}

func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	if err != nil {
		return "non-API error: " + err.Error()
	}
	return ""
}

func TestQuotaScaleFlag(t *testing.T) {
	for scale, wantBatch := range map[float64]float64{0: 0, 0.01: 1} {
		s, err := newStore(context.Background(), config{accountID: store.DefaultAccountID, quotaScale: scale}, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		if got := s.Quotas()[store.QuotaBatchGetSecretValue].Rate; got != wantBatch {
			t.Errorf("-quota-scale %v: BatchGetSecretValue quota %v/s, want %v/s", scale, got, wantBatch)
		}
	}
}
