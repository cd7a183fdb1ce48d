package store_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/credentials/endpointcreds"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"

	"github.com/podsecrets/podsecrets/test/awsfake/store"
)

const (
	acct             = store.DefaultAccountID
	east             = "us-east-1"
	west             = "eu-west-1"
	appSA            = "system:serviceaccount:app:reader"
	appRole          = "arn:aws:iam::" + acct + ":role/app-reader"
	smAllowAnyRegion = "arn:aws:secretsmanager:*:" + acct + ":secret:app/*"
)

// env is one fake behind a real HTTP server plus a trusted token issuer.
type env struct {
	t   *testing.T
	s   *store.Store
	srv *httptest.Server
	iss *store.Issuer
}

func newEnv(t *testing.T, opts store.Options) *env {
	t.Helper()
	s := store.New(opts)
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	iss := sharedIssuer(t)
	if err := s.TrustJWKS(iss.JWKS()); err != nil {
		t.Fatal(err)
	}
	return &env{t: t, s: s, srv: srv, iss: iss}
}

var issuers = sync.OnceValues(func() ([2]*store.Issuer, error) {
	var out [2]*store.Issuer
	var err [2]error
	out[0], err[0] = store.NewIssuer("https://oidc.test.example/cluster")
	out[1], err[1] = store.NewIssuer("https://evil.example")
	return out, errors.Join(err[:]...)
})

// sharedIssuer is the issuer every env trusts, and untrustedIssuer one none
// does: generating 2048-bit keys under -race is slow, so tests share them.
func sharedIssuer(t *testing.T) *store.Issuer    { return issuer(t, 0) }
func untrustedIssuer(t *testing.T) *store.Issuer { return issuer(t, 1) }

func issuer(t *testing.T, i int) *store.Issuer {
	t.Helper()
	iss, err := issuers()
	if err != nil {
		t.Fatal(err)
	}
	return iss[i]
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// role adds a role trusted by appSA reading the given patterns.
func (e *env) role(arn string, allow ...string) {
	e.s.AddRole(store.Role{ARN: arn, Subjects: []string{appSA}, Allow: allow})
}

func (e *env) awsConfig(region string, p aws.CredentialsProvider) aws.Config {
	return aws.Config{
		Region:           region,
		Credentials:      p,
		RetryMaxAttempts: 1,
		HTTPClient:       awshttp.NewBuildableClient(),
		BaseEndpoint:     aws.String(e.srv.URL),
	}
}

func (e *env) stsClient() *sts.Client {
	return sts.NewFromConfig(e.awsConfig(east, nil))
}

func assumeInput(roleARN, token string) *sts.AssumeRoleWithWebIdentityInput {
	return &sts.AssumeRoleWithWebIdentityInput{RoleArn: aws.String(roleARN), RoleSessionName: aws.String("test-session"), WebIdentityToken: aws.String(token)}
}

// assume obtains credentials through the real STS client.
func (e *env) assume(roleARN, subject string) aws.Credentials {
	e.t.Helper()
	out, err := e.stsClient().AssumeRoleWithWebIdentity(ctx(e.t), assumeInput(roleARN, e.iss.Token(subject, store.AudienceSTS, time.Hour)))
	if err != nil {
		e.t.Fatalf("AssumeRoleWithWebIdentity: %v", err)
	}
	c := out.Credentials
	return aws.Credentials{AccessKeyID: *c.AccessKeyId, SecretAccessKey: *c.SecretAccessKey, SessionToken: *c.SessionToken}
}

// issued mints credentials for roleARN without an STS call, so call counters
// stay untouched.
func (e *env) issued(roleARN string) aws.Credentials {
	e.t.Helper()
	c, err := e.s.IssueCredentials(roleARN, "issued", time.Hour)
	if err != nil {
		e.t.Fatal(err)
	}
	return aws.Credentials{AccessKeyID: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey, SessionToken: c.SessionToken}
}

func static(c aws.Credentials) aws.CredentialsProvider {
	return credentials.NewStaticCredentialsProvider(c.AccessKeyID, c.SecretAccessKey, c.SessionToken)
}

func (e *env) sm(region string, c aws.Credentials) *secretsmanager.Client {
	return secretsmanager.NewFromConfig(e.awsConfig(region, static(c)))
}

func (e *env) ssm(region string, c aws.Credentials) *ssm.Client {
	return ssm.NewFromConfig(e.awsConfig(region, static(c)))
}

func (e *env) podCreds(token string) (aws.Credentials, error) {
	return endpointcreds.New(e.srv.URL+"/v1/credentials", func(o *endpointcreds.Options) {
		o.AuthorizationToken = token
		o.Retryer = aws.NopRetryer{}
	}).Retrieve(ctx(e.t))
}

// getSecret reads id's value (of stage, "" for AWSCURRENT) and version, or
// the error code.
func getSecret(t *testing.T, c *secretsmanager.Client, id, stage string) (value, version, code string) {
	t.Helper()
	in := &secretsmanager.GetSecretValueInput{SecretId: aws.String(id)}
	if stage != "" {
		in.VersionStage = aws.String(stage)
	}
	out, err := c.GetSecretValue(ctx(t), in)
	if err != nil {
		return "", "", errCode(t, err)
	}
	return aws.ToString(out.SecretString), aws.ToString(out.VersionId), ""
}

// errCode returns the AWS error code of err ("" for nil).
func errCode(t *testing.T, err error) string {
	t.Helper()
	if err == nil {
		return ""
	}
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("not an AWS API error: %v", err)
	}
	return ae.ErrorCode()
}

func httpStatus(err error) int {
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}
