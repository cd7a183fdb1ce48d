package store_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials/endpointcreds"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/podsecrets/podsecrets/test/awsfake/store"
)

type tokenString string

func (t tokenString) GetIdentityToken() ([]byte, error) { return []byte(t), nil }

func TestAssumeRoleWithWebIdentity(t *testing.T) {
	t.Parallel()
	// Ahead of the wall clock: tokens minted during the test (nbf = the
	// second they are minted) must be valid at this fixed time.
	base := time.Now().Add(2 * time.Second).Truncate(time.Second)
	e := newEnv(t, store.Options{Now: func() time.Time { return base }})
	e.role(appRole, smAllowAnyRegion)
	wildRole := "arn:aws:iam::" + acct + ":role/path/any-app"
	e.s.AddRole(store.Role{ARN: wildRole, Subjects: []string{"system:serviceaccount:app:*"}})
	ec, err := store.NewIssuerES256("https://oidc.test.example/ec")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.s.TrustJWKS(ec.JWKS()); err != nil {
		t.Fatal(err)
	}
	untrusted, err := store.NewIssuerES256("https://evil.example")
	if err != nil {
		t.Fatal(err)
	}
	good := e.iss.Token(appSA, store.AudienceSTS, time.Hour)
	claims := func(mod func(map[string]any)) string {
		c := map[string]any{"iss": e.iss.URL(), "sub": appSA, "aud": store.AudienceSTS, "exp": base.Add(time.Hour).Unix()}
		mod(c)
		return e.iss.Sign(c)
	}
	tampered := func() string {
		p := strings.Split(good, ".")
		body, _ := base64.RawURLEncoding.DecodeString(p[1])
		var m map[string]any
		_ = json.Unmarshal(body, &m)
		m["sub"] = "system:serviceaccount:kube-system:admin"
		body, _ = json.Marshal(m)
		return p[0] + "." + base64.RawURLEncoding.EncodeToString(body) + "." + p[2]
	}()
	noneAlg := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","kid":"`+e.iss.KeyID()+`"}`)) + "." + strings.Split(good, ".")[1] + "."

	tests := map[string]struct {
		role, token string
		duration    int32
		wantCode    string
		wantRoleARN string
		wantExpiry  time.Duration
	}{
		"valid RS256 token":      {role: appRole, token: good, wantRoleARN: "arn:aws:sts::" + acct + ":assumed-role/app-reader/test-session", wantExpiry: time.Hour},
		"custom duration":        {role: appRole, token: good, duration: 900, wantExpiry: 15 * time.Minute},
		"valid ES256 token":      {role: appRole, token: ec.Token(appSA, store.AudienceSTS, time.Hour)},
		"string aud claim":       {role: appRole, token: claims(func(map[string]any) {})},
		"wildcard subject":       {role: wildRole, token: e.iss.Token("system:serviceaccount:app:other", store.AudienceSTS, time.Hour), wantRoleARN: "arn:aws:sts::" + acct + ":assumed-role/any-app/test-session"},
		"untrusted signer":       {role: appRole, token: untrusted.Token(appSA, store.AudienceSTS, time.Hour), wantCode: "InvalidIdentityToken"},
		"tampered claims":        {role: appRole, token: tampered, wantCode: "InvalidIdentityToken"},
		"alg none":               {role: appRole, token: noneAlg, wantCode: "InvalidIdentityToken"},
		"not a JWT":              {role: appRole, token: "not-a-jwt", wantCode: "InvalidIdentityToken"},
		"wrong audience":         {role: appRole, token: e.iss.Token(appSA, store.AudiencePodIdentity, time.Hour), wantCode: "InvalidIdentityToken"},
		"expired token":          {role: appRole, token: e.iss.Token(appSA, store.AudienceSTS, -time.Minute), wantCode: "ExpiredTokenException"},
		"not yet valid":          {role: appRole, token: claims(func(c map[string]any) { c["nbf"] = base.Add(time.Hour).Unix() }), wantCode: "InvalidIdentityToken"},
		"no exp":                 {role: appRole, token: claims(func(c map[string]any) { delete(c, "exp") }), wantCode: "InvalidIdentityToken"},
		"wrong subject":          {role: appRole, token: e.iss.Token("system:serviceaccount:app:other", store.AudienceSTS, time.Hour), wantCode: "AccessDenied"},
		"unknown role":           {role: "arn:aws:iam::" + acct + ":role/nope", token: good, wantCode: "AccessDenied"},
		"duration below minimum": {role: appRole, token: good, duration: 100, wantCode: "ValidationError"},
	}
	c := e.stsClient()
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			in := &sts.AssumeRoleWithWebIdentityInput{RoleArn: aws.String(tc.role), RoleSessionName: aws.String("test-session"), WebIdentityToken: aws.String(tc.token)}
			if tc.duration != 0 {
				in.DurationSeconds = aws.Int32(tc.duration)
			}
			out, err := c.AssumeRoleWithWebIdentity(ctx(t), in)
			if got := errCode(t, err); got != tc.wantCode {
				t.Fatalf("error code %q, want %q (%v)", got, tc.wantCode, err)
			}
			if err != nil {
				if st := httpStatus(err); st < 400 || st > 403 {
					t.Errorf("HTTP status %d", st)
				}
				return
			}
			cr := out.Credentials
			if !strings.HasPrefix(aws.ToString(cr.AccessKeyId), "ASIA") || aws.ToString(cr.SecretAccessKey) == "" || aws.ToString(cr.SessionToken) == "" {
				t.Errorf("credentials %+v", cr)
			}
			if tc.wantExpiry != 0 && !cr.Expiration.Equal(base.Add(tc.wantExpiry)) {
				t.Errorf("Expiration %v, want %v", cr.Expiration, base.Add(tc.wantExpiry))
			}
			if tc.wantRoleARN != "" && aws.ToString(out.AssumedRoleUser.Arn) != tc.wantRoleARN {
				t.Errorf("AssumedRoleUser.Arn %q, want %q", aws.ToString(out.AssumedRoleUser.Arn), tc.wantRoleARN)
			}
			if !strings.HasSuffix(aws.ToString(out.AssumedRoleUser.AssumedRoleId), ":test-session") || aws.ToString(out.SubjectFromWebIdentityToken) == "" {
				t.Errorf("AssumedRoleUser %+v subject %q", out.AssumedRoleUser, aws.ToString(out.SubjectFromWebIdentityToken))
			}
		})
	}

	t.Run("stscreds provider feeds a working client", func(t *testing.T) {
		p := stscreds.NewWebIdentityRoleProvider(c, appRole, tokenString(good), func(o *stscreds.WebIdentityRoleOptions) { o.RoleSessionName = "sdk" })
		e.s.CreateSecret(east, "app/via-provider", store.Value{String: "ok"})
		sm := secretsmanager.NewFromConfig(e.awsConfig(east, aws.NewCredentialsCache(p)))
		out, err := sm.GetSecretValue(ctx(t), &secretsmanager.GetSecretValueInput{SecretId: aws.String("app/via-provider")})
		if err != nil || aws.ToString(out.SecretString) != "ok" {
			t.Fatalf("GetSecretValue with stscreds: %v %v", out, err)
		}
		bad := stscreds.NewWebIdentityRoleProvider(c, appRole, tokenString(untrusted.Token(appSA, store.AudienceSTS, time.Hour)))
		if _, err := bad.Retrieve(ctx(t)); errCode(t, err) != "InvalidIdentityToken" {
			t.Fatalf("provider with untrusted token: %v", err)
		}
	})
}

func TestPodIdentity(t *testing.T) {
	t.Parallel()
	// Ahead of the wall clock: tokens minted during the test (nbf = the
	// second they are minted) must be valid at this fixed time.
	base := time.Now().Add(2 * time.Second).Truncate(time.Second)
	var clock atomic.Int64
	e := newEnv(t, store.Options{Now: func() time.Time { return base.Add(time.Duration(clock.Load())) }})
	e.role(appRole, smAllowAnyRegion)
	e.s.AddPodIdentityAssociation("app", "reader", appRole)
	e.s.AddPodIdentityAssociation("app", "ghost", "arn:aws:iam::"+acct+":role/not-added")
	e.s.CreateSecret(east, "app/pod", store.Value{String: "from-pod"})
	provider := func(token string) *endpointcreds.Provider {
		return endpointcreds.New(e.srv.URL+"/v1/credentials", func(o *endpointcreds.Options) {
			o.AuthorizationToken = token
			o.Retryer = aws.NopRetryer{}
		})
	}
	tests := map[string]struct {
		token      string
		wantCode   string
		wantStatus int
	}{
		"associated service account":  {token: e.iss.Token(appSA, store.AudiencePodIdentity, time.Hour)},
		"STS audience rejected":       {token: e.iss.Token(appSA, store.AudienceSTS, time.Hour), wantCode: "InvalidTokenException", wantStatus: 401},
		"expired token":               {token: e.iss.Token(appSA, store.AudiencePodIdentity, -time.Second), wantCode: "ExpiredTokenException", wantStatus: 401},
		"no token":                    {token: "", wantCode: "InvalidTokenException", wantStatus: 401},
		"not a service account":       {token: e.iss.Token("user:alice", store.AudiencePodIdentity, time.Hour), wantCode: "InvalidTokenException", wantStatus: 401},
		"no association":              {token: e.iss.Token("system:serviceaccount:app:other", store.AudiencePodIdentity, time.Hour), wantCode: "AccessDeniedException", wantStatus: 403},
		"association to unknown role": {token: e.iss.Token("system:serviceaccount:app:ghost", store.AudiencePodIdentity, time.Hour), wantCode: "AccessDeniedException", wantStatus: 403},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			creds, err := provider(tc.token).Retrieve(ctx(t))
			if got := errCode(t, err); got != tc.wantCode {
				t.Fatalf("error code %q, want %q (%v)", got, tc.wantCode, err)
			}
			if err != nil {
				var hs interface{ HTTPStatusCode() int }
				if !errors.As(err, &hs) || hs.HTTPStatusCode() != tc.wantStatus {
					t.Errorf("status: %v", err)
				}
				return
			}
			if creds.AccountID != acct || !creds.CanExpire || !creds.Expires.Equal(base.Add(store.PodIdentityCredentialTTL)) || !strings.HasPrefix(creds.AccessKeyID, "ASIA") {
				t.Errorf("credentials %+v", creds)
			}
			out, err := e.sm(east, creds).GetSecretValue(ctx(t), &secretsmanager.GetSecretValueInput{SecretId: aws.String("app/pod")})
			if err != nil || aws.ToString(out.SecretString) != "from-pod" {
				t.Fatalf("GetSecretValue with pod identity credentials: %v", err)
			}
		})
	}
	if got := e.s.Calls("eks-auth.PodIdentity"); got != len(tests) {
		t.Errorf("eks-auth.PodIdentity calls = %d, want %d", got, len(tests))
	}

	t.Run("credentials expire", func(t *testing.T) {
		creds, err := provider(e.iss.Token(appSA, store.AudiencePodIdentity, time.Hour)).Retrieve(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		clock.Store(int64(store.PodIdentityCredentialTTL + time.Second))
		t.Cleanup(func() { clock.Store(0) })
		_, err = e.sm(east, creds).GetSecretValue(ctx(t), &secretsmanager.GetSecretValueInput{SecretId: aws.String("app/pod")})
		if got := errCode(t, err); got != "ExpiredTokenException" {
			t.Fatalf("expired credentials: %q", got)
		}
	})
}

func TestJWKSRefreshOnUnknownKid(t *testing.T) {
	t.Parallel()
	s := store.New(store.Options{})
	s.AddRole(store.Role{ARN: appRole, Subjects: []string{appSA}})
	iss := newIssuer(t) // not trusted up front
	var fetches atomic.Int32
	s.SetJWKSSource(func(context.Context) ([]byte, error) {
		fetches.Add(1)
		return iss.JWKS(), nil
	})
	e := &env{t: t, s: s, iss: iss}
	e.srv = newServer(t, s)
	for i := 0; i < 3; i++ {
		e.assume(appRole, appSA)
	}
	if got := fetches.Load(); got != 1 {
		t.Fatalf("JWKS fetched %d times, want 1 (only for the first unknown kid)", got)
	}
	other, err := store.NewIssuerES256("https://rotated.example")
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.stsClient().AssumeRoleWithWebIdentity(ctx(t), &sts.AssumeRoleWithWebIdentityInput{
		RoleArn: aws.String(appRole), RoleSessionName: aws.String("s1"), WebIdentityToken: aws.String(other.Token(appSA, store.AudienceSTS, time.Hour)),
	})
	if got := errCode(t, err); got != "InvalidIdentityToken" {
		t.Fatalf("token from a key the source does not publish: %q", got)
	}
	if got := fetches.Load(); got > 2 {
		t.Fatalf("JWKS fetched %d times; refreshes must be rate-limited", got)
	}
}
