package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/podsecrets/podsecrets/test/awsfake/store"
	"github.com/podsecrets/podsecrets/test/logbuf"
)

// TestServe runs the command's server the way e2e.sh does: started empty,
// seeded over HTTP with the cluster's JWKS, a role and a secret, then read
// with the real SDK; its log names calls but never values or tokens.
func TestServe(t *testing.T) {
	const (
		roleARN = "arn:aws:iam::111122223333:role/app"
		subject = "system:serviceaccount:app:reader"
	)
	iss, err := store.NewIssuer("https://kubernetes.default.svc")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var logs logbuf.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- serve(ctx, ln, slog.New(slog.NewTextHandler(&logs, nil))) }()
	url := "http://" + ln.Addr().String()

	seed, _ := json.Marshal(store.Seed{
		JWKS:    iss.JWKS(),
		Roles:   []store.Role{{ARN: roleARN, Subjects: []string{subject}, Allow: []string{"arn:aws:secretsmanager:*:111122223333:secret:app/*"}}},
		Secrets: []store.SeedSecret{{Region: "us-east-1", Name: "app/db", Value: "hunter2"}},
	})
	resp, err := http.Post(url+store.PathSeed, "application/json", bytes.NewReader(seed))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("seed: %d %s", resp.StatusCode, body)
	}

	cfg := aws.Config{Region: "us-east-1", RetryMaxAttempts: 1, HTTPClient: awshttp.NewBuildableClient(), BaseEndpoint: aws.String(url)}
	token := iss.Token(subject, store.AudienceSTS, time.Hour)
	out, err := sts.NewFromConfig(cfg).AssumeRoleWithWebIdentity(ctx, &sts.AssumeRoleWithWebIdentityInput{
		RoleArn: aws.String(roleARN), RoleSessionName: aws.String("main-test"), WebIdentityToken: aws.String(token),
	})
	if err != nil {
		t.Fatalf("AssumeRoleWithWebIdentity: %v", err)
	}
	c := out.Credentials
	cfg.Credentials = credentials.NewStaticCredentialsProvider(*c.AccessKeyId, *c.SecretAccessKey, *c.SessionToken)
	v, err := secretsmanager.NewFromConfig(cfg).GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("app/db")})
	if err != nil || aws.ToString(v.SecretString) != "hunter2" {
		t.Fatalf("GetSecretValue: %v", err)
	}

	cancel()
	if err := <-done; err != nil && !errors.Is(err, http.ErrServerClosed) {
		t.Fatalf("serve: %v", err)
	}
	log := logs.String()
	if !strings.Contains(log, "op=sts.AssumeRoleWithWebIdentity") || !strings.Contains(log, "role="+roleARN) || !strings.Contains(log, "op=secretsmanager.GetSecretValue") {
		t.Errorf("request log lacks operations or role:\n%s", log)
	}
	for _, secret := range []string{"hunter2", token, *c.SessionToken} {
		if strings.Contains(log, secret) {
			t.Errorf("log leaks %q", secret[:min(len(secret), 12)])
		}
	}
}
