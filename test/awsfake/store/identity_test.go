package store_test

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/podsecrets/podsecrets/test/awsfake/store"
)

func TestAssumeRoleWithWebIdentity(t *testing.T) {
	t.Parallel()
	base := time.Now().Truncate(time.Second)
	e := newEnv(t, store.Options{Now: func() time.Time { return base }})
	e.role(appRole, smAllowAnyRegion)
	e.s.CreateSecret(east, "app/db", store.Value{String: "v"})
	wildRole := "arn:aws:iam::" + acct + ":role/path/any-app"
	e.s.AddRole(store.Role{ARN: wildRole, Subjects: []string{"system:serviceaccount:app:*"}, Allow: []string{"*"}})
	good := e.iss.Token(appSA, store.AudienceSTS, time.Hour)
	p := strings.Split(good, ".")
	tampered := func() string {
		body, _ := base64.RawURLEncoding.DecodeString(p[1])
		var m map[string]any
		_ = json.Unmarshal(body, &m)
		m["sub"] = "system:serviceaccount:kube-system:admin"
		body, _ = json.Marshal(m)
		return p[0] + "." + base64.RawURLEncoding.EncodeToString(body) + "." + p[2]
	}()
	hdr, _ := base64.RawURLEncoding.DecodeString(p[0])
	noneAlg := base64.RawURLEncoding.EncodeToString([]byte(strings.Replace(string(hdr), "RS256", "none", 1))) + "." + p[1] + "."

	tests := map[string]struct {
		role, token, session string
		wantCode             string
	}{
		"valid token":          {role: appRole, token: good},
		"wildcard subject":     {role: wildRole, token: e.iss.Token("system:serviceaccount:app:other", store.AudienceSTS, time.Hour)},
		"untrusted signer":     {role: appRole, token: untrustedIssuer(t).Token(appSA, store.AudienceSTS, time.Hour), wantCode: "InvalidIdentityToken"},
		"tampered claims":      {role: appRole, token: tampered, wantCode: "InvalidIdentityToken"},
		"alg none":             {role: appRole, token: noneAlg, wantCode: "InvalidIdentityToken"},
		"not a JWT":            {role: appRole, token: "not-a-jwt", wantCode: "InvalidIdentityToken"},
		"wrong audience":       {role: appRole, token: e.iss.Token(appSA, store.AudiencePodIdentity, time.Hour), wantCode: "InvalidIdentityToken"},
		"expired token":        {role: appRole, token: e.iss.Token(appSA, store.AudienceSTS, -time.Minute), wantCode: "ExpiredTokenException"},
		"wrong subject":        {role: appRole, token: e.iss.Token("system:serviceaccount:app:other", store.AudienceSTS, time.Hour), wantCode: "AccessDenied"},
		"unknown role":         {role: "arn:aws:iam::" + acct + ":role/nope", token: good, wantCode: "AccessDenied"},
		"invalid session name": {role: appRole, token: good, session: "a b", wantCode: "ValidationError"},
	}
	c := e.stsClient()
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			in := assumeInput(tc.role, tc.token)
			if tc.session != "" {
				in.RoleSessionName = aws.String(tc.session)
			}
			out, err := c.AssumeRoleWithWebIdentity(ctx(t), in)
			if got := errCode(t, err); got != tc.wantCode {
				t.Fatalf("error code %q, want %q (%v)", got, tc.wantCode, err)
			}
			if err != nil {
				if st := httpStatus(err); st != 400 && st != 403 {
					t.Errorf("HTTP status %d", st)
				}
				return
			}
			cr := out.Credentials
			if !strings.HasPrefix(aws.ToString(cr.AccessKeyId), "ASIA") || !cr.Expiration.Equal(base.Add(time.Hour)) {
				t.Errorf("credentials %+v", cr)
			}
			creds := aws.Credentials{AccessKeyID: *cr.AccessKeyId, SecretAccessKey: *cr.SecretAccessKey, SessionToken: *cr.SessionToken}
			if _, _, code := getSecret(t, e.sm(east, creds), "app/db", ""); code != "" {
				t.Errorf("reading with the credentials: %s", code)
			}
		})
	}
}

func TestPodIdentity(t *testing.T) {
	t.Parallel()
	base := time.Now().Truncate(time.Second)
	var clock atomic.Int64
	e := newEnv(t, store.Options{Now: func() time.Time { return base.Add(time.Duration(clock.Load())) }})
	e.role(appRole, smAllowAnyRegion)
	e.s.AddPodIdentityAssociation("app", "reader", appRole)
	e.s.AddPodIdentityAssociation("app", "ghost", "arn:aws:iam::"+acct+":role/not-added")
	e.s.CreateSecret(east, "app/pod", store.Value{String: "from-pod"})
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
			creds, err := e.podCreds(tc.token)
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
			if !creds.CanExpire || !creds.Expires.Equal(base.Add(store.PodIdentityCredentialTTL)) || !strings.HasPrefix(creds.AccessKeyID, "ASIA") {
				t.Errorf("credentials %+v", creds)
			}
			if val, _, code := getSecret(t, e.sm(east, creds), "app/pod", ""); val != "from-pod" {
				t.Fatalf("GetSecretValue with pod identity credentials: %q %s", val, code)
			}
		})
	}
	if got := e.s.Calls("eks-auth.PodIdentity"); got != len(tests) {
		t.Errorf("eks-auth.PodIdentity calls = %d, want %d", got, len(tests))
	}

	t.Run("credentials expire", func(t *testing.T) {
		creds, err := e.podCreds(e.iss.Token(appSA, store.AudiencePodIdentity, time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		clock.Store(int64(store.PodIdentityCredentialTTL))
		t.Cleanup(func() { clock.Store(0) })
		if _, _, code := getSecret(t, e.sm(east, creds), "app/pod", ""); code != "ExpiredTokenException" {
			t.Fatalf("expired credentials: %q", code)
		}
	})
}
