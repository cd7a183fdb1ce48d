package aws

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/podsecrets/podsecrets/provider"
	"github.com/podsecrets/podsecrets/test/awsfake/store"
)

func TestNewAndName(t *testing.T) {
	if _, err := New(Options{}); err == nil {
		t.Error("New without ServiceAccounts succeeded")
	}
	if _, err := New(Options{ServiceAccounts: &fakeSAs{}, Region: "not a region"}); err == nil {
		t.Error("New with a bad region succeeded")
	}
	p, err := New(Options{ServiceAccounts: &fakeSAs{}})
	if err != nil {
		t.Fatal(err)
	}
	if p.Name() != "aws" || p.podIdentityEndpoint != DefaultPodIdentityEndpoint || p.maxConcurrency != 32 {
		t.Errorf("defaults: name %q endpoint %q concurrency %d", p.Name(), p.podIdentityEndpoint, p.maxConcurrency)
	}
	if _, err := p.Fetch(context.Background(), nil); !errors.Is(err, provider.ErrInvalid) {
		t.Errorf("Fetch(nil) = %v, want ErrInvalid", err)
	}
	var _ provider.Provider = p
	reg := provider.NewRegistry(p)
	if got, err := reg.Get("aws"); err != nil || got != provider.Provider(p) {
		t.Errorf("registry lookup: %v %v", got, err)
	}
}

func TestEndpointFromEnvironment(t *testing.T) {
	// Not parallel: t.Setenv.
	e := newEnv(t)
	e.secret(east, "db", "from-env-endpoint")
	e.st.PutParameter(east, "p", "param", "String")
	tests := map[string]map[string]string{
		"AWS_ENDPOINT_URL": {"AWS_ENDPOINT_URL": e.srv.URL},
		"per service": {
			"AWS_ENDPOINT_URL":                 "http://127.0.0.1:1", // overridden by each service's variable
			"AWS_ENDPOINT_URL_SECRETS_MANAGER": e.srv.URL,
			"AWS_ENDPOINT_URL_SSM":             e.srv.URL,
			"AWS_ENDPOINT_URL_STS":             e.srv.URL,
		},
	}
	for name, vars := range tests {
		t.Run(name, func(t *testing.T) {
			for k, v := range vars {
				t.Setenv(k, v)
			}
			p, err := New(Options{Region: east, ServiceAccounts: e.sas, Now: e.clock.Now, retryer: fastRetryer})
			if err != nil {
				t.Fatal(err)
			}
			resp, err := p.Fetch(context.Background(), e.request(map[string]string{"objects": sm("db") + ssmObj("p")}))
			if err != nil {
				t.Fatal(err)
			}
			checkFiles(t, resp, []wantFile{{"db", 0o644, "from-env-endpoint"}, {"p", 0o644, "param"}})
		})
	}
}

func TestNeverUsesAmbientCredentials(t *testing.T) {
	// Not parallel: t.Setenv.
	e := newEnv(t)
	e.secret(east, "db", "v")
	// Valid credentials for an all-powerful role sit in the node's
	// environment; the pod's own role may read nothing.
	e.st.AddRole(store.Role{ARN: roleOther, Allow: []string{"*"}})
	node, err := e.st.IssueCredentials(roleOther, "node", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_ACCESS_KEY_ID", node.AccessKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", node.SecretAccessKey)
	t.Setenv("AWS_SESSION_TOKEN", node.SessionToken)
	e.st.AddRole(store.Role{ARN: roleWeb, Subjects: []string{"system:serviceaccount:app:web"}})
	p, err := New(Options{Region: east, ServiceAccounts: e.sas, EndpointURL: e.srv.URL, Now: e.clock.Now, retryer: fastRetryer})
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.Fetch(context.Background(), e.request(map[string]string{"objects": sm("db")}))
	if !errors.Is(err, provider.ErrPermissionDenied) || !strings.Contains(err.Error(), roleWeb) {
		t.Errorf("Fetch = %v, want the pod role's AccessDenied", err)
	}
	req := e.request(map[string]string{"objects": sm("db")})
	req.Pod.Tokens = nil
	if _, err := p.Fetch(context.Background(), req); !errors.Is(err, provider.ErrPermissionDenied) {
		t.Errorf("Fetch without a pod token = %v, want ErrPermissionDenied", err)
	}
}
