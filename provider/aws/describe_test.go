package aws

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/podsecrets/podsecrets/provider"
	"github.com/podsecrets/podsecrets/test/awsfake/store"
)

func TestDescribe(t *testing.T) {
	pl, err := Describe(map[string]string{
		"regoin":  "us-east-1",
		"objects": sm("db", "objectAlias: db.json", "jmesPath: [{path: user, objectAlias: user, filePermission: '0400'}]", "optional: true", "objectAlais: x") + ssmObj("/app/url", "objectVersion: 3"),
	}, "", "app/c")
	if err != nil {
		t.Fatal(err)
	}
	if pl.Region != "" || pl.Audience != AudienceSTS || pl.PodIdentity {
		t.Errorf("region %q, audience %q, pod identity %v; want no region yet and IRSA", pl.Region, pl.Audience, pl.PodIdentity)
	}
	got := fmt.Sprint(pl.Objects)
	want := `[{0 db secretsmanager   true [{db.json -rw-r--r--} {user -r--------}]} {1 /app/url ssmparameter 3  false [{_app_url -rw-r--r--}]}]`
	if got != want {
		t.Errorf("objects\n%s\nwant\n%s", got, want)
	}
	wantWarnings := []provider.Warning{
		{Reason: ReasonUnknownParameterKey, Message: `SecretProviderClass app/c: parameters["regoin"]: unknown key, ignored; did you mean "region"?`},
		{Reason: ReasonUnknownParameterKey, Message: `SecretProviderClass app/c: objects[0].objectAlais: unknown key, ignored; did you mean "objectAlias"?`},
	}
	if fmt.Sprint(pl.Warnings) != fmt.Sprint(wantWarnings) {
		t.Errorf("warnings %q\nwant %q", pl.Warnings, wantWarnings)
	}

	pl, err = Describe(map[string]string{"usePodIdentity": "true", "objects": sm("db")}, "eu-west-1", "app/c")
	if err != nil || pl.Region != "eu-west-1" || pl.Audience != AudiencePodIdentity {
		t.Errorf("pod identity with a default region: %+v, %v", pl, err)
	}
	// The checks a mount makes once the region is known.
	if _, err := Describe(map[string]string{"objects": sm("arn:aws:secretsmanager:us-west-2:111122223333:secret:db-AbCdEf")}, "us-east-1", "app/c"); !errors.Is(err, provider.ErrInvalid) ||
		!strings.Contains(err.Error(), `the ARN names region "us-west-2"`) {
		t.Errorf("an ARN of another region: %v", err)
	}
	if _, err := Describe(map[string]string{"objects": sm("db", "filePermission: 0600")}, "", "app/c"); !errors.Is(err, provider.ErrInvalid) {
		t.Errorf("a bad object: %v", err)
	}
}

// TestDryRun: every object is read and reported on its own, found or not,
// with versions and sizes, never a value.
func TestDryRun(t *testing.T) {
	e := newEnv(t)
	e.st.AddRole(store.Role{ARN: roleWeb, Subjects: []string{"system:serviceaccount:app:web"}, Allow: []string{
		"arn:aws:secretsmanager:*:*:secret:app-*", "arn:aws:ssm:*:*:parameter/app/*"}})
	_, v := e.secret(east, "app-db", `{"user":"u-value","password":"p-value"}`)
	e.secret(east, "app-plain", "plain-value")
	e.secret(east, "denied", "denied-value")
	e.st.PutParameter(east, "/app/url", "url-value", "String")
	req := e.request(map[string]string{"objects": sm("app-db", "jmesPath: [{path: user, objectAlias: user}]") + sm("app-absent") + sm("denied") +
		sm("app-absent-too", "optional: true") + ssmObj("/app/url") + sm("app-plain", "objectAlias: plain-json", "jmesPath: [{path: x, objectAlias: x}]")})
	dr, err := e.p.DryRun(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if dr.Region != east || dr.Identity != "role "+roleWeb || len(dr.Objects) != 6 {
		t.Fatalf("dry run %+v", dr)
	}
	db := dr.Objects[0]
	if !db.Found || db.Version != v || !strings.Contains(db.ID, ":secret:app-db-") || fmt.Sprint(db.Bytes) != "[39 7]" || db.Err != nil {
		t.Errorf("app-db: %+v", db)
	}
	for i, kind := range map[int]error{1: provider.ErrNotFound, 2: provider.ErrPermissionDenied, 3: provider.ErrNotFound, 5: provider.ErrInvalid} {
		if o := dr.Objects[i]; o.Found || !errors.Is(o.Err, kind) || !strings.Contains(o.Err.Error(), fmt.Sprintf("objects[%d]", i)) {
			t.Errorf("objects[%d]: %+v, want %v naming it", i, o, kind)
		}
	}
	if u := dr.Objects[4]; !u.Found || u.Version != "1" || fmt.Sprint(u.Bytes) != "[9]" {
		t.Errorf("/app/url: %+v", u)
	}
	for _, o := range dr.Objects {
		for _, val := range []string{"u-value", "p-value", "plain-value", "denied-value", "url-value"} {
			if o.Err != nil && strings.Contains(o.Err.Error(), val) {
				t.Errorf("objects[%d]: error %q holds a value", o.Index, o.Err)
			}
		}
	}

	// What fails every object fails the dry run.
	e.sas.set(testNS, testSA, map[string]string{})
	e.p.roles = roleCache{}
	if _, err := e.p.DryRun(context.Background(), req); !errors.Is(err, provider.ErrPermissionDenied) {
		t.Errorf("no role: %v", err)
	}
}
