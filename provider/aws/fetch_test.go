package aws

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/podsecrets/podsecrets/provider"
	"github.com/podsecrets/podsecrets/test/awsfake/store"
)

type wantFile struct {
	path string
	mode fs.FileMode
	data string
}

func (f wantFile) String() string { return fmt.Sprintf("{%s %v %q}", f.path, f.mode, f.data) }

func checkFiles(t *testing.T, resp *provider.Response, want []wantFile) {
	t.Helper()
	var got []wantFile
	for _, f := range resp.Files {
		got = append(got, wantFile{f.Path, f.Mode, string(f.Data)})
	}
	if !slices.Equal(got, want) {
		t.Errorf("files:\n got %v\nwant %v", got, want)
	}
}

func sm(name string, extra ...string) string {
	s := fmt.Sprintf("- objectName: %q\n  objectType: secretsmanager\n", name)
	for _, x := range extra {
		s += "  " + x + "\n"
	}
	return s
}

func ssmObj(name string, extra ...string) string {
	s := fmt.Sprintf("- objectName: %q\n  objectType: ssmparameter\n", name)
	for _, x := range extra {
		s += "  " + x + "\n"
	}
	return s
}

func TestFetch(t *testing.T) {
	binary := []byte{0x00, 0xff, 0xfe, 'k', 'e', 'y', 0x80, '\n'}
	tests := map[string]struct {
		// setup seeds the store and returns the parameters and the expected
		// versions (nil: not checked).
		setup func(e *env) (map[string]string, []provider.ObjectVersion)
		want  []wantFile
		calls map[string]int
	}{
		"secret by name": {
			setup: func(e *env) (map[string]string, []provider.ObjectVersion) {
				arn, v := e.secret(east, "db", "s3cret")
				return map[string]string{"objects": sm("db")}, []provider.ObjectVersion{{ID: arn, Version: v}}
			},
			want:  []wantFile{{"db", 0o644, "s3cret"}},
			calls: map[string]int{opGetSecret: 1, opSTS: 1},
		},
		"alias and filePermission": {
			setup: func(e *env) (map[string]string, []provider.ObjectVersion) {
				e.secret(east, "db", "s3cret")
				return map[string]string{"objects": sm("db", "objectAlias: creds.txt", `filePermission: "0600"`)}, nil
			},
			want: []wantFile{{"creds.txt", 0o600, "s3cret"}},
		},
		"objectVersion": {
			setup: func(e *env) (map[string]string, []provider.ObjectVersion) {
				arn, v1 := e.secret(east, "db", "one")
				if _, err := e.st.PutSecretValue(east, "db", store.Value{String: "two"}); err != nil {
					e.t.Fatal(err)
				}
				return map[string]string{"objects": sm("db", "objectVersion: "+v1)}, []provider.ObjectVersion{{ID: arn, Version: v1}}
			},
			want: []wantFile{{"db", 0o644, "one"}},
		},
		"objectVersionLabel": {
			setup: func(e *env) (map[string]string, []provider.ObjectVersion) {
				e.secret(east, "db", "one")
				if _, err := e.st.PutSecretValue(east, "db", store.Value{String: "two"}); err != nil {
					e.t.Fatal(err)
				}
				return map[string]string{"objects": sm("db", "objectVersionLabel: AWSPREVIOUS")}, nil
			},
			want: []wantFile{{"db", 0o644, "one"}},
		},
		"AWSCURRENT and AWSPREVIOUS side by side": {
			setup: func(e *env) (map[string]string, []provider.ObjectVersion) {
				arn, v1 := e.secret(east, "jwt-key", "old-key")
				v2, err := e.st.PutSecretValue(east, "jwt-key", store.Value{String: "new-key"})
				if err != nil {
					e.t.Fatal(err)
				}
				return map[string]string{"objects": sm("jwt-key", "objectAlias: current", "objectVersionLabel: AWSCURRENT") +
						sm("jwt-key", "objectAlias: previous", "objectVersionLabel: AWSPREVIOUS")},
					[]provider.ObjectVersion{{ID: arn, Version: v2}, {ID: arn, Version: v1}}
			},
			want:  []wantFile{{"current", 0o644, "new-key"}, {"previous", 0o644, "old-key"}},
			calls: map[string]int{opGetSecret: 2, opSTS: 1},
		},
		"binary secret raw bytes": {
			setup: func(e *env) (map[string]string, []provider.ObjectVersion) {
				e.st.CreateSecret(east, "tls.key", store.Value{Binary: binary})
				return map[string]string{"objects": sm("tls.key")}, nil
			},
			want: []wantFile{{"tls.key", 0o644, string(binary)}},
		},
		"jmesPath": {
			setup: func(e *env) (map[string]string, []provider.ObjectVersion) {
				e.secret(east, "db", `{"username":"admin","password":"hunter2","nested":{"host":"db.local"}}`)
				return map[string]string{"objects": sm("db", "jmesPath:",
					"  - {path: username, objectAlias: user}",
					`  - {path: password, objectAlias: pass, filePermission: "0400"}`,
					"  - {path: nested.host, objectAlias: host}")}, nil
			},
			want: []wantFile{
				{"db", 0o644, `{"username":"admin","password":"hunter2","nested":{"host":"db.local"}}`},
				{"user", 0o644, "admin"}, {"pass", 0o400, "hunter2"}, {"host", 0o644, "db.local"},
			},
		},
		"ssm parameters: plain, SecureString, version, label": {
			setup: func(e *env) (map[string]string, []provider.ObjectVersion) {
				e.st.PutParameter(east, "/app/url", "https://v1", "String")
				e.st.PutParameter(east, "/app/url", "https://v2", "")
				e.st.PutParameter(east, "/app/token", "tok-value", "SecureString")
				if err := e.st.LabelParameterVersion(east, "/app/url", 1, "stable"); err != nil {
					e.t.Fatal(err)
				}
				arnURL := "arn:aws:ssm:us-east-1:111122223333:parameter/app/url"
				return map[string]string{"objects": ssmObj("/app/url") + ssmObj("/app/token") +
						ssmObj("/app/url", "objectVersion: 1", "objectAlias: url-v1") +
						ssmObj("/app/url", "objectVersionLabel: stable", "objectAlias: url-stable")},
					[]provider.ObjectVersion{{ID: arnURL, Version: "2"}, {ID: "arn:aws:ssm:us-east-1:111122223333:parameter/app/token", Version: "1"}, {ID: arnURL, Version: "1"}, {ID: arnURL, Version: "1"}}
			},
			want: []wantFile{
				{"_app_url", 0o644, "https://v2"}, {"_app_token", 0o644, "tok-value"},
				{"url-v1", 0o644, "https://v1"}, {"url-stable", 0o644, "https://v1"},
			},
			calls: map[string]int{opGetParams: 1, opSTS: 1},
		},
		"ssm parameter by ARN": {
			setup: func(e *env) (map[string]string, []provider.ObjectVersion) {
				e.st.PutParameter(east, "/app/url", "https://v1", "String")
				return map[string]string{"objects": "- {objectName: 'arn:aws:ssm:us-east-1:111122223333:parameter/app/url', objectAlias: url}"}, nil
			},
			want: []wantFile{{"url", 0o644, "https://v1"}},
		},
		"secret by ARN": {
			setup: func(e *env) (map[string]string, []provider.ObjectVersion) {
				arn, _ := e.secret(east, "db", "by-arn")
				return map[string]string{"objects": fmt.Sprintf("- {objectName: %q, objectAlias: db}", arn)}, nil
			},
			want: []wantFile{{"db", 0o644, "by-arn"}},
		},
		"pathTranslation default": {
			setup: func(e *env) (map[string]string, []provider.ObjectVersion) {
				e.secret(east, "team/app/db", "v")
				return map[string]string{"objects": sm("team/app/db")}, nil
			},
			want: []wantFile{{"team_app_db", 0o644, "v"}},
		},
		"pathTranslation custom character": {
			setup: func(e *env) (map[string]string, []provider.ObjectVersion) {
				e.secret(east, "team/app/db", "v")
				return map[string]string{"pathTranslation": "-", "objects": sm("team/app/db")}, nil
			},
			want: []wantFile{{"team-app-db", 0o644, "v"}},
		},
		"pathTranslation False makes directories": {
			setup: func(e *env) (map[string]string, []provider.ObjectVersion) {
				e.secret(east, "team/app/db", "v")
				return map[string]string{"pathTranslation": "False", "objects": sm("team/app/db")}, nil
			},
			want: []wantFile{{"team/app/db", 0o644, "v"}},
		},
		"region parameter overrides the default": {
			setup: func(e *env) (map[string]string, []provider.ObjectVersion) {
				e.secret(east, "db", "from-east")
				e.secret("eu-west-1", "db", "from-eu")
				return map[string]string{"region": "eu-west-1", "objects": sm("db")}, nil
			},
			want: []wantFile{{"db", 0o644, "from-eu"}},
		},
		"default region without a region parameter": {
			setup: func(e *env) (map[string]string, []provider.ObjectVersion) {
				e.secret(east, "db", "from-east")
				e.secret("eu-west-1", "db", "from-eu")
				return map[string]string{"objects": sm("db")}, nil
			},
			want: []wantFile{{"db", 0o644, "from-east"}},
		},
		"mixed stores keep the objects order": {
			setup: func(e *env) (map[string]string, []provider.ObjectVersion) {
				e.secret(east, "a", "A")
				e.st.PutParameter(east, "b", "B", "String")
				e.secret(east, "c", "C")
				return map[string]string{"objects": sm("a") + ssmObj("b") + sm("c")}, nil
			},
			want: []wantFile{{"a", 0o644, "A"}, {"b", 0o644, "B"}, {"c", 0o644, "C"}},
			// Current secrets: one GetSecretValue each (quota headroom,
			// see TestReadPlan), all in parallel.
			calls: map[string]int{opGetSecret: 2, opGetParams: 1, opSTS: 1},
		},
		"same secret twice is read once": {
			setup: func(e *env) (map[string]string, []provider.ObjectVersion) {
				arn, v := e.secret(east, "db", "v")
				return map[string]string{"objects": sm("db", "objectAlias: one") + sm("db", "objectAlias: two")}, []provider.ObjectVersion{{ID: arn, Version: v}, {ID: arn, Version: v}}
			},
			want:  []wantFile{{"one", 0o644, "v"}, {"two", 0o644, "v"}},
			calls: map[string]int{opGetSecret: 1, opSTS: 1},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			params, versions := tc.setup(e)
			resp := e.mustFetch(params)
			checkFiles(t, resp, tc.want)
			if versions != nil && fmt.Sprint(idVersions(resp.Versions)) != fmt.Sprint(idVersions(versions)) {
				t.Errorf("versions:\n got %v\nwant %v", idVersions(resp.Versions), idVersions(versions))
			}
			for _, v := range resp.Versions {
				if v.ID == "" || v.Version == "" {
					t.Errorf("incomplete version %+v", v)
				}
			}
			if tc.calls != nil {
				e.wantCalls(tc.calls)
			}
		})
	}
}

func TestFetchFilesAreIndependentCopies(t *testing.T) {
	e := newEnv(t)
	e.secret(east, "db", "value")
	resp := e.mustFetch(map[string]string{"objects": sm("db", "objectAlias: a") + sm("db", "objectAlias: b")})
	clear(resp.Files[0].Data) // a driver may zero what it wrote
	if string(resp.Files[1].Data) != "value" {
		t.Errorf("zeroing one file changed another: %q", resp.Files[1].Data)
	}
}

func TestFetchPodIdentity(t *testing.T) {
	e := newEnv(t)
	e.st.AddPodIdentityAssociation(testNS, testSA, roleWeb)
	e.secret(east, "db", "via-pod-identity")
	// The ServiceAccount has no IRSA annotation: pod identity doesn't need it.
	e.sas.set(testNS, testSA, nil)
	resp := e.mustFetch(map[string]string{"usePodIdentity": "true", "objects": sm("db")})
	checkFiles(t, resp, []wantFile{{"db", 0o644, "via-pod-identity"}})
	e.wantCalls(map[string]int{opPodIdentiy: 1, opGetSecret: 1})

	e.mustFetch(map[string]string{"usePodIdentity": "true", "objects": sm("db")})
	e.wantCalls(map[string]int{opPodIdentiy: 1, opGetSecret: 2}) // cached
}

func TestFetchErrors(t *testing.T) {
	batch := func(o *Options) { o.ReadStrategy = ReadBatch }
	tests := map[string]struct {
		opts  []func(*Options)
		setup func(e *env) (*provider.Request, context.Context)
		kind  error
		want  []string // substrings of the message
		calls map[string]int
	}{
		"access denied in a batch": {
			opts: []func(*Options){batch},
			setup: func(e *env) (*provider.Request, context.Context) {
				e.st.AddRole(store.Role{ARN: roleWeb, Subjects: []string{"system:serviceaccount:app:web"}, Allow: []string{"arn:aws:secretsmanager:*:*:secret:allowed-*"}})
				e.secret(east, "allowed-1", "v")
				e.secret(east, "db", "v")
				return e.request(map[string]string{"objects": sm("allowed-1") + sm("db")}), nil
			},
			kind:  provider.ErrPermissionDenied,
			want:  []string{`secretsmanager "db" (objects[1])`, "AccessDeniedException", roleWeb},
			calls: map[string]int{opBatch: 1, opSTS: 1},
		},
		"secret not found in a batch": {
			opts: []func(*Options){batch},
			setup: func(e *env) (*provider.Request, context.Context) {
				e.secret(east, "present", "v")
				return e.request(map[string]string{"objects": sm("present") + sm("missing")}), nil
			},
			kind:  provider.ErrNotFound,
			want:  []string{`"missing" (objects[1])`, "ResourceNotFoundException"},
			calls: map[string]int{opBatch: 1, opSTS: 1},
		},
		"access denied": {
			setup: func(e *env) (*provider.Request, context.Context) {
				e.st.AddRole(store.Role{ARN: roleWeb, Subjects: []string{"system:serviceaccount:app:web"}, Allow: []string{"arn:aws:secretsmanager:*:*:secret:allowed-*"}})
				e.secret(east, "db", "v")
				return e.request(map[string]string{"objects": sm("db")}), nil
			},
			kind: provider.ErrPermissionDenied,
			want: []string{`"db"`, "AccessDeniedException", roleWeb, "us-east-1"},
		},
		"access denied among several secrets": {
			setup: func(e *env) (*provider.Request, context.Context) {
				e.st.AddRole(store.Role{ARN: roleWeb, Subjects: []string{"system:serviceaccount:app:web"}, Allow: []string{"arn:aws:secretsmanager:*:*:secret:allowed-*"}})
				e.secret(east, "allowed-1", "v")
				e.secret(east, "db", "v")
				return e.request(map[string]string{"objects": sm("allowed-1") + sm("db")}), nil
			},
			kind:  provider.ErrPermissionDenied,
			want:  []string{`secretsmanager "db" (objects[1])`, "AccessDeniedException", roleWeb},
			calls: map[string]int{opGetSecret: 2, opSTS: 1},
		},
		"secret not found": {
			setup: func(e *env) (*provider.Request, context.Context) {
				return e.request(map[string]string{"objects": sm("missing")}), nil
			},
			kind: provider.ErrNotFound,
			want: []string{`"missing"`, "ResourceNotFoundException", roleWeb},
		},
		"secret not found among several": {
			setup: func(e *env) (*provider.Request, context.Context) {
				e.secret(east, "present", "v")
				return e.request(map[string]string{"objects": sm("present") + sm("missing")}), nil
			},
			kind: provider.ErrNotFound,
			want: []string{`"missing" (objects[1])`, "ResourceNotFoundException"},
		},
		"secret version not found": {
			setup: func(e *env) (*provider.Request, context.Context) {
				e.secret(east, "db", "v")
				return e.request(map[string]string{"objects": sm("db", "objectVersionLabel: AWSPREVIOUS")}), nil
			},
			kind: provider.ErrNotFound,
			want: []string{`"db" label "AWSPREVIOUS"`},
		},
		"parameter not found": {
			setup: func(e *env) (*provider.Request, context.Context) {
				e.st.PutParameter(east, "present", "v", "String")
				return e.request(map[string]string{"objects": ssmObj("present") + ssmObj("/missing")}), nil
			},
			kind: provider.ErrNotFound,
			want: []string{`ssmparameter "/missing" (objects[1])`, "InvalidParameters"},
		},
		"parameter version not found": {
			setup: func(e *env) (*provider.Request, context.Context) {
				e.st.PutParameter(east, "p", "v", "String")
				return e.request(map[string]string{"objects": ssmObj("p", "objectVersion: 7")}), nil
			},
			kind: provider.ErrNotFound,
			want: []string{`"p" version "7"`},
		},
		"throttling after retries": {
			setup: func(e *env) (*provider.Request, context.Context) {
				e.secret(east, "db", "v")
				e.st.SetFault(east, store.Fault{Rate: 1, Code: store.FaultThrottling})
				return e.request(map[string]string{"objects": sm("db")}), nil
			},
			kind: provider.ErrUnavailable,
			want: []string{`"db"`, "ThrottlingException", roleWeb, "then BatchGetSecretValue: ThrottlingException"},
			// Standard retry mode: 3 attempts, then 3 of the other API.
			calls: map[string]int{opGetSecret: 3, opBatch: 3, opSTS: 1},
		},
		"server errors after retries": {
			setup: func(e *env) (*provider.Request, context.Context) {
				e.st.PutParameter(east, "p", "v", "String")
				e.st.SetFault(east, store.Fault{Rate: 1, Code: store.FaultInternal})
				return e.request(map[string]string{"objects": ssmObj("p")}), nil
			},
			kind:  provider.ErrUnavailable,
			want:  []string{`"p"`, "InternalServiceError"},
			calls: map[string]int{opGetParams: 3, opSTS: 1},
		},
		"STS rejects a token from an untrusted issuer": {
			setup: func(e *env) (*provider.Request, context.Context) {
				other, err := store.NewIssuerES256("https://other.test")
				if err != nil {
					e.t.Fatal(err)
				}
				req := e.request(map[string]string{"objects": sm("db")})
				req.Pod.Tokens[AudienceSTS] = provider.Token{Value: other.Token("system:serviceaccount:app:web", AudienceSTS, time.Hour)}
				return req, nil
			},
			kind: provider.ErrPermissionDenied,
			want: []string{"sts AssumeRoleWithWebIdentity", "InvalidIdentityToken", roleWeb},
		},
		"STS: the role does not trust the service account": {
			setup: func(e *env) (*provider.Request, context.Context) {
				e.st.AddRole(store.Role{ARN: roleOther, Subjects: []string{"system:serviceaccount:other:*"}, Allow: []string{"*"}})
				e.sas.set(testNS, testSA, map[string]string{RoleARNAnnotation: roleOther})
				return e.request(map[string]string{"objects": sm("db")}), nil
			},
			kind: provider.ErrPermissionDenied,
			want: []string{"AccessDenied", roleOther},
		},
		"no role annotation": {
			setup: func(e *env) (*provider.Request, context.Context) {
				e.sas.set(testNS, testSA, map[string]string{"other": "x"})
				return e.request(map[string]string{"objects": sm("db")}), nil
			},
			kind:  provider.ErrPermissionDenied,
			want:  []string{"service account app/web", `"eks.amazonaws.com/role-arn"`},
			calls: map[string]int{},
		},
		"role annotation not an ARN": {
			setup: func(e *env) (*provider.Request, context.Context) {
				e.sas.set(testNS, testSA, map[string]string{RoleARNAnnotation: "web"})
				return e.request(map[string]string{"objects": sm("db")}), nil
			},
			kind: provider.ErrInvalid,
			want: []string{"not an IAM role ARN"},
		},
		"service account not found": {
			setup: func(e *env) (*provider.Request, context.Context) {
				return e.podRequest(testNS, "p", "ghost", map[string]string{"objects": sm("db")}), nil
			},
			kind: provider.ErrNotFound,
			want: []string{"reading service account app/ghost"},
		},
		"no STS token": {
			setup: func(e *env) (*provider.Request, context.Context) {
				req := e.request(map[string]string{"objects": sm("db")})
				delete(req.Pod.Tokens, AudienceSTS)
				return req, nil
			},
			kind:  provider.ErrPermissionDenied,
			want:  []string{`no service account token for audience "sts.amazonaws.com"`, "tokenRequests"},
			calls: map[string]int{},
		},
		"no pod identity token": {
			setup: func(e *env) (*provider.Request, context.Context) {
				req := e.request(map[string]string{"usePodIdentity": "true", "objects": sm("db")})
				req.Pod.Tokens = nil
				return req, nil
			},
			kind: provider.ErrPermissionDenied,
			want: []string{`audience "pods.eks.amazonaws.com"`, "tokenRequests"},
		},
		"expired token": {
			setup: func(e *env) (*provider.Request, context.Context) {
				req := e.request(map[string]string{"objects": sm("db")})
				tok := req.Pod.Tokens[AudienceSTS]
				tok.ExpiresAt = e.clock.Now().Add(-time.Second)
				req.Pod.Tokens[AudienceSTS] = tok
				return req, nil
			},
			kind: provider.ErrPermissionDenied,
			want: []string{"expired"},
		},
		"no service account in the request": {
			setup: func(e *env) (*provider.Request, context.Context) {
				return e.podRequest(testNS, "p", "", map[string]string{"objects": sm("db")}), nil
			},
			kind: provider.ErrPermissionDenied,
			want: []string{"podInfoOnMount"},
		},
		"pod identity without association": {
			setup: func(e *env) (*provider.Request, context.Context) {
				return e.request(map[string]string{"usePodIdentity": "true", "objects": sm("db")}), nil
			},
			kind: provider.ErrPermissionDenied,
			want: []string{"pod identity", "AccessDeniedException", "app/web"},
		},
		"no region": {
			setup: func(e *env) (*provider.Request, context.Context) {
				e.p.parsed.region = ""
				return e.request(map[string]string{"objects": sm("db")}), nil
			},
			kind: provider.ErrInvalid,
			want: []string{"no region: set the region parameter of SecretProviderClass app/test-class or the driver's default region"},
		},
		"failoverRegion equal to the default region": {
			setup: func(e *env) (*provider.Request, context.Context) {
				return e.request(map[string]string{"failoverRegion": east, "objects": sm("db")}), nil
			},
			kind: provider.ErrInvalid,
			want: []string{`failoverRegion "us-east-1": must differ`},
		},
		"bad parameters": {
			setup: func(e *env) (*provider.Request, context.Context) {
				return e.request(map[string]string{"objects": sm("db", `filePermission: "0999"`)}), nil
			},
			kind:  provider.ErrInvalid,
			want:  []string{`objects[0] (objectName "db"): filePermission "0999"`},
			calls: map[string]int{},
		},
		"jmesPath result not a string": {
			setup: func(e *env) (*provider.Request, context.Context) {
				e.secret(east, "db", `{"port":5432,"user":"u"}`)
				return e.request(map[string]string{"objects": sm("db", "jmesPath: [{path: user, objectAlias: u}, {path: port, objectAlias: port}]")}), nil
			},
			kind: provider.ErrInvalid,
			want: []string{`objects[0] (objectName "db"): jmesPath[1] path "port": result is a number; want a string`},
		},
		"jmesPath matches nothing": {
			setup: func(e *env) (*provider.Request, context.Context) {
				e.secret(east, "db", `{"user":"u"}`)
				return e.request(map[string]string{"objects": sm("db", "jmesPath: [{path: password, objectAlias: p}]")}), nil
			},
			kind: provider.ErrInvalid,
			want: []string{`path "password": matched nothing`},
		},
		"jmesPath on a value that is not JSON": {
			setup: func(e *env) (*provider.Request, context.Context) {
				e.secret(east, "db", "plain text")
				return e.request(map[string]string{"objects": sm("db", "jmesPath: [{path: user, objectAlias: u}]")}), nil
			},
			kind: provider.ErrInvalid,
			want: []string{`objects[0] (objectName "db"): jmesPath needs a JSON value`},
		},
		"one missing object fails the volume": {
			setup: func(e *env) (*provider.Request, context.Context) {
				e.secret(east, "a", "A")
				e.st.PutParameter(east, "b", "B", "String")
				return e.request(map[string]string{"objects": sm("a") + ssmObj("b") + sm("c", "objectVersionLabel: AWSPENDING")}), nil
			},
			kind: provider.ErrNotFound,
			want: []string{`"c" label "AWSPENDING"`},
		},
		"canceled context": {
			setup: func(e *env) (*provider.Request, context.Context) {
				e.secret(east, "db", "v")
				ctx, cancel := context.WithCancel(context.Background())
				cancel()
				return e.request(map[string]string{"objects": sm("db")}), ctx
			},
			kind: provider.ErrUnavailable,
			want: []string{"cancel"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, tc.opts...)
			req, ctx := tc.setup(e)
			if ctx == nil {
				ctx = context.Background()
			}
			resp, err := e.p.Fetch(ctx, req)
			if err == nil {
				t.Fatalf("Fetch succeeded with %d files, want an error", len(resp.Files))
			}
			if resp != nil {
				t.Errorf("Fetch returned a response with its error")
			}
			if !errors.Is(err, tc.kind) {
				t.Errorf("error %q: want kind %v", err, tc.kind)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if tc.calls != nil {
				e.wantCalls(tc.calls)
			}
		})
	}
}

func TestFailover(t *testing.T) {
	params := map[string]string{"region": east, "failoverRegion": west, "objects": sm("db")}
	tests := map[string]struct {
		setup  func(e *env) map[string]string
		want   string // file content; "" when an error is expected
		kind   error
		errHas []string
		calls  map[string]int
	}{
		"primary succeeds: failover region not called": {
			setup: func(e *env) map[string]string {
				e.st.SetFault(west, store.Fault{Rate: 1, Code: store.FaultInternal})
				return params
			},
			want:  "east-value",
			calls: map[string]int{opGetSecret: 1, opSTS: 1},
		},
		"primary throttled: failover region answers": {
			setup: func(e *env) map[string]string {
				e.st.SetFault(east, store.Fault{Rate: 1, Code: store.FaultThrottling})
				return params
			},
			want: "west-value",
			// 3 attempts in the primary region and 3 of the other API
			// there, then 1 in the failover region; credentials are
			// fetched per region.
			calls: map[string]int{opGetSecret: 4, opBatch: 3, opSTS: 2},
		},
		"primary 5xx: failover region answers": {
			setup: func(e *env) map[string]string {
				e.st.SetFault(east, store.Fault{Rate: 1, Code: store.FaultInternal})
				return params
			},
			want:  "west-value",
			calls: map[string]int{opGetSecret: 4, opSTS: 2},
		},
		"primary denied: no failover": {
			setup: func(e *env) map[string]string {
				e.st.AddRole(store.Role{ARN: roleWeb, Subjects: []string{"system:serviceaccount:app:web"}, Allow: []string{"arn:aws:secretsmanager:us-west-2:*"}})
				return params
			},
			kind:   provider.ErrPermissionDenied,
			errHas: []string{"AccessDeniedException", "us-east-1"},
			calls:  map[string]int{opGetSecret: 1, opSTS: 1},
		},
		"primary not found: no failover": {
			setup: func(e *env) map[string]string {
				e.st.CreateSecret(west, "only-west", store.Value{String: "w"})
				return map[string]string{"region": east, "failoverRegion": west, "objects": sm("only-west")}
			},
			kind:   provider.ErrNotFound,
			errHas: []string{"ResourceNotFoundException", "us-east-1"},
			calls:  map[string]int{opGetSecret: 1, opSTS: 1},
		},
		"failoverObject is used in the failover region": {
			setup: func(e *env) map[string]string {
				e.st.CreateSecret(west, "db-replica", store.Value{String: "replica-value"})
				e.st.SetFault(east, store.Fault{Rate: 1, Code: store.FaultInternal})
				return map[string]string{"region": east, "failoverRegion": west, "objects": sm("db", "objectAlias: db", "failoverObject: {objectName: db-replica}")}
			},
			want: "replica-value",
		},
		"failoverObject is not used in the primary region": {
			setup: func(e *env) map[string]string {
				e.st.CreateSecret(west, "db-replica", store.Value{String: "replica-value"})
				return map[string]string{"region": east, "failoverRegion": west, "objects": sm("db", "objectAlias: db", "failoverObject: {objectName: db-replica}")}
			},
			want:  "east-value",
			calls: map[string]int{opGetSecret: 1, opSTS: 1},
		},
		"both regions fail": {
			setup: func(e *env) map[string]string {
				e.st.SetFault(east, store.Fault{Rate: 1, Code: store.FaultInternal})
				e.st.SetFault(west, store.Fault{Rate: 1, Code: store.FaultThrottling})
				return params
			},
			kind:   provider.ErrUnavailable,
			errHas: []string{"us-west-2", "ThrottlingException", "after region us-east-1 failed", "InternalServiceError"},
			// Throttled in the failover region: the other API is tried
			// there (3 attempts); a 5xx in the primary is not a throttle.
			calls: map[string]int{opGetSecret: 6, opBatch: 3, opSTS: 2},
		},
		"failover region not found after primary outage": {
			setup: func(e *env) map[string]string {
				e.st.SetFault(east, store.Fault{Rate: 1, Code: store.FaultInternal})
				return map[string]string{"region": east, "failoverRegion": west, "objects": sm("db", "objectAlias: db", "failoverObject: {objectName: nope}")}
			},
			kind:   provider.ErrNotFound,
			errHas: []string{`"nope"`, "us-west-2"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			e.secret(east, "db", "east-value")
			e.secret(west, "db", "west-value")
			resp, err := e.fetch(tc.setup(e))
			if tc.kind != nil {
				if err == nil || !errors.Is(err, tc.kind) {
					t.Fatalf("Fetch error = %v, want kind %v", err, tc.kind)
				}
				for _, w := range tc.errHas {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not contain %q", err, w)
					}
				}
			} else {
				if err != nil {
					t.Fatalf("Fetch: %v", err)
				}
				checkFiles(t, resp, []wantFile{{"db", 0o644, tc.want}})
			}
			if tc.calls != nil {
				e.wantCalls(tc.calls)
			}
		})
	}
}

func TestCredentialCache(t *testing.T) {
	e := newEnv(t)
	e.secret(east, "db", "v")
	e.secret(west, "db", "v")
	params := map[string]string{"objects": sm("db")}

	e.mustFetch(params)
	e.wantCalls(map[string]int{opSTS: 1, opGetSecret: 1})

	e.mustFetch(params) // cached
	e.wantCalls(map[string]int{opSTS: 1, opGetSecret: 2})

	// Another pod of the same ServiceAccount shares the credentials.
	if _, err := e.p.Fetch(context.Background(), e.podRequest(testNS, "web-1", testSA, params)); err != nil {
		t.Fatal(err)
	}
	e.wantCalls(map[string]int{opSTS: 1, opGetSecret: 3})

	// Another ServiceAccount, even with the same role, gets its own.
	e.st.AddRole(store.Role{ARN: roleWeb, Subjects: []string{"system:serviceaccount:app:*"}, Allow: []string{"*"}})
	e.sas.set(testNS, "worker", map[string]string{RoleARNAnnotation: roleWeb})
	if _, err := e.p.Fetch(context.Background(), e.podRequest(testNS, "worker-0", "worker", params)); err != nil {
		t.Fatal(err)
	}
	e.wantCalls(map[string]int{opSTS: 2, opGetSecret: 4})

	// Another region gets its own.
	e.mustFetch(map[string]string{"region": west, "objects": sm("db")})
	e.wantCalls(map[string]int{opSTS: 3, opGetSecret: 5})

	// Credentials last an hour: refreshed 5 minutes before they expire.
	e.clock.Advance(54 * time.Minute)
	e.mustFetch(params)
	e.wantCalls(map[string]int{opSTS: 3, opGetSecret: 6})
	e.clock.Advance(2 * time.Minute)
	e.mustFetch(params)
	e.wantCalls(map[string]int{opSTS: 4, opGetSecret: 7})
	e.mustFetch(params)
	e.wantCalls(map[string]int{opSTS: 4, opGetSecret: 8})

	// A changed role annotation is a new key.
	e.st.AddRole(store.Role{ARN: roleOther, Subjects: []string{"system:serviceaccount:app:web"}, Allow: []string{"*"}})
	e.sas.set(testNS, testSA, map[string]string{RoleARNAnnotation: roleOther})
	e.mustFetch(params)
	e.wantCalls(map[string]int{opSTS: 5, opGetSecret: 9})
}

func TestCredentialCacheFailuresAreNotCached(t *testing.T) {
	e := newEnv(t)
	e.secret(east, "db", "v")
	e.sas.set(testNS, testSA, map[string]string{RoleARNAnnotation: roleOther}) // role not in the store
	if _, err := e.fetch(map[string]string{"objects": sm("db")}); !errors.Is(err, provider.ErrPermissionDenied) {
		t.Fatalf("Fetch = %v, want ErrPermissionDenied", err)
	}
	e.st.AddRole(store.Role{ARN: roleOther, Subjects: []string{"system:serviceaccount:app:web"}, Allow: []string{"*"}})
	e.mustFetch(map[string]string{"objects": sm("db")})
	e.wantCalls(map[string]int{opSTS: 2, opGetSecret: 1})
}

func TestConcurrentFetchesShareOneSTSCall(t *testing.T) {
	e := newEnv(t)
	e.secret(east, "db", "v")
	e.st.SetLatency(100 * time.Millisecond) // keep the STS call in flight while the others arrive
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for i := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := e.p.Fetch(context.Background(), e.podRequest(testNS, fmt.Sprintf("web-%d", i), testSA, map[string]string{"objects": sm("db")}))
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	e.wantCalls(map[string]int{opSTS: 1, opGetSecret: 10})
}

func TestCallCounts(t *testing.T) {
	tests := map[string]struct {
		strategy        ReadStrategy
		secrets, params int
		want            map[string]int
	}{
		// With AWS's quotas every current secret is its own
		// GetSecretValue call (TestReadPlan), all in parallel.
		"10 secrets":    {secrets: 10, want: map[string]int{opGetSecret: 10, opSTS: 1}},
		"25 secrets":    {secrets: 25, want: map[string]int{opGetSecret: 25, opSTS: 1}},
		"12 parameters": {params: 12, want: map[string]int{opGetParams: 2, opSTS: 1}},
		"mixed":         {secrets: 21, params: 10, want: map[string]int{opGetSecret: 21, opGetParams: 1, opSTS: 1}},
		// ReadBatch, the strategy before: 20 per batch, a lone
		// remainder with GetSecretValue.
		"batch: 10 secrets":    {strategy: ReadBatch, secrets: 10, want: map[string]int{opBatch: 1, opSTS: 1}},
		"batch: 25 secrets":    {strategy: ReadBatch, secrets: 25, want: map[string]int{opBatch: 2, opSTS: 1}},
		"batch: 40 secrets":    {strategy: ReadBatch, secrets: 40, want: map[string]int{opBatch: 2, opSTS: 1}},
		"batch: 12 parameters": {strategy: ReadBatch, params: 12, want: map[string]int{opGetParams: 2, opSTS: 1}},
		"batch: mixed":         {strategy: ReadBatch, secrets: 21, params: 10, want: map[string]int{opBatch: 1, opGetSecret: 1, opGetParams: 1, opSTS: 1}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, func(o *Options) { o.ReadStrategy = tc.strategy })
			var objs strings.Builder
			var want []wantFile
			for i := range tc.secrets {
				n := fmt.Sprintf("secret-%02d", i)
				e.secret(east, n, "value-"+n)
				objs.WriteString(sm(n))
				want = append(want, wantFile{n, 0o644, "value-" + n})
			}
			for i := range tc.params {
				n := fmt.Sprintf("/params/p%02d", i)
				e.st.PutParameter(east, n, "value-"+n, "SecureString")
				objs.WriteString(ssmObj(n))
				want = append(want, wantFile{translatePath(n, '_'), 0o644, "value-" + n})
			}
			resp := e.mustFetch(map[string]string{"objects": objs.String()})
			checkFiles(t, resp, want)
			if len(resp.Versions) != tc.secrets+tc.params {
				t.Errorf("got %d versions, want %d", len(resp.Versions), tc.secrets+tc.params)
			}
			e.wantCalls(tc.want)

			e.st.ResetCalls()
			e.mustFetch(map[string]string{"objects": objs.String()})
			delete(tc.want, opSTS) // cached now
			e.wantCalls(tc.want)
		})
	}
}

// denyBatch answers every BatchGetSecretValue with AccessDeniedException, as
// AWS does for a role whose policy allows only GetSecretValue.
func denyBatch(next http.Handler, denied *atomic.Int32) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Amz-Target") == opBatch {
			denied.Add(1)
			w.Header().Set("Content-Type", "application/x-amz-json-1.1")
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `{"__type":"AccessDeniedException","message":"not authorized to perform: secretsmanager:BatchGetSecretValue"}`)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func TestBatchDeniedFallsBackToGetSecretValue(t *testing.T) {
	for name, opt := range map[string]func(*Options){
		"batch strategy": func(o *Options) { o.ReadStrategy = ReadBatch },
		// Quotas under which a batch is cheaper: chosen by quota, then
		// denied.
		"quota strategy": func(o *Options) { o.Quotas.GetSecretValue = 50 },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			var denied atomic.Int32
			srv := httptest.NewServer(denyBatch(e.st.Handler(), &denied))
			t.Cleanup(srv.Close)
			o := Options{Region: east, ServiceAccounts: e.sas, EndpointURL: srv.URL, Now: e.clock.Now, retryer: fastRetryer, MaxConcurrency: 2}
			opt(&o)
			p, err := New(o)
			if err != nil {
				t.Fatal(err)
			}
			var objs string
			var want []wantFile
			for i := range 5 {
				n := fmt.Sprintf("s%d", i)
				e.secret(east, n, "v"+n)
				objs += sm(n)
				want = append(want, wantFile{n, 0o644, "v" + n})
			}
			resp, err := p.Fetch(context.Background(), e.request(map[string]string{"objects": objs}))
			if err != nil {
				t.Fatal(err)
			}
			checkFiles(t, resp, want)
			if denied.Load() != 1 {
				t.Errorf("BatchGetSecretValue was called %d times, want 1", denied.Load())
			}
			e.wantCalls(map[string]int{opGetSecret: 5, opSTS: 1})
		})
	}
}

// concurrencyProbe records the most requests in flight at once.
type concurrencyProbe struct {
	next     http.Handler
	now, max atomic.Int32
}

func (c *concurrencyProbe) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("X-Amz-Target") != "" {
		n := c.now.Add(1)
		defer c.now.Add(-1)
		for {
			m := c.max.Load()
			if n <= m || c.max.CompareAndSwap(m, n) {
				break
			}
		}
	}
	c.next.ServeHTTP(w, r)
}

func TestMaxConcurrency(t *testing.T) {
	e := newEnv(t)
	probe := &concurrencyProbe{next: e.st.Handler()}
	srv := httptest.NewServer(probe)
	t.Cleanup(srv.Close)
	p, err := New(Options{Region: east, ServiceAccounts: e.sas, EndpointURL: srv.URL, Now: e.clock.Now, retryer: fastRetryer, MaxConcurrency: 3})
	if err != nil {
		t.Fatal(err)
	}
	e.secret(east, "db", "v")
	var objs strings.Builder
	for i := range 12 { // 12 distinct versions: 12 GetSecretValue calls
		v, err := e.st.PutSecretValue(east, "db", store.Value{String: fmt.Sprint(i)})
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&objs, "- {objectName: db, objectType: secretsmanager, objectVersion: %q, objectAlias: v%d}\n", v, i)
	}
	e.st.SetLatency(20 * time.Millisecond)
	if _, err := p.Fetch(context.Background(), e.request(map[string]string{"objects": objs.String()})); err != nil {
		t.Fatal(err)
	}
	if m := probe.max.Load(); m > 3 || m < 2 {
		t.Errorf("at most %d calls were in flight at once, want 2..3 (parallel, bounded by MaxConcurrency)", m)
	}
	e.wantCalls(map[string]int{opGetSecret: 12, opSTS: 1})
}

func TestCallTimeout(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.callTimeout = 200 * time.Millisecond })
	e.secret(east, "db", "v")
	e.mustFetch(map[string]string{"objects": sm("db")}) // credentials cached
	// The fake sleeps before reading the request, so it can't notice the
	// client going away: keep the latency short, as the server's Close
	// waits for it.
	e.st.SetLatency(1500 * time.Millisecond)
	start := time.Now()
	_, err := e.fetch(map[string]string{"objects": sm("db")})
	if !errors.Is(err, provider.ErrUnavailable) || !strings.Contains(err.Error(), `"db"`) || !strings.Contains(err.Error(), "timed out") {
		t.Errorf("Fetch = %v, want ErrUnavailable naming the object and the timeout", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Fetch took %v despite a 200ms call timeout", d)
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

func TestCanaryNeverLeaks(t *testing.T) {
	const canary = "CANARY-7f3a9c-SECRET"
	garbageToken := "CANARY-TOKEN-" + canary
	withToken := func(req *provider.Request, aud, tok string) *provider.Request {
		req.Pod.Tokens[aud] = provider.Token{Value: tok}
		return req
	}
	tests := map[string]struct {
		req     func(e *env) *provider.Request
		success bool
	}{
		"success": {success: true, req: func(e *env) *provider.Request {
			return e.request(map[string]string{"objects": sm("ok") + sm("json", "jmesPath: [{path: a.b, objectAlias: ab}]")})
		}},
		"jmesPath non-string result": {req: func(e *env) *provider.Request {
			return e.request(map[string]string{"objects": sm("json", "jmesPath: [{path: a, objectAlias: x}]")})
		}},
		"jmesPath function error": {req: func(e *env) *provider.Request {
			return e.request(map[string]string{"objects": sm("json", "jmesPath: [{path: 'length(n)', objectAlias: x}]")})
		}},
		"value is not JSON": {req: func(e *env) *provider.Request {
			return e.request(map[string]string{"objects": sm("notjson", "jmesPath: [{path: a, objectAlias: x}]")})
		}},
		"bad STS token": {req: func(e *env) *provider.Request {
			return withToken(e.request(map[string]string{"objects": sm("ok")}), AudienceSTS, garbageToken)
		}},
		"bad pod identity token": {req: func(e *env) *provider.Request {
			return withToken(e.request(map[string]string{"usePodIdentity": "true", "objects": sm("ok")}), AudiencePodIdentity, garbageToken)
		}},
		"STS token sent to pod identity": {req: func(e *env) *provider.Request {
			req := e.request(map[string]string{"usePodIdentity": "true", "objects": sm("ok")})
			return withToken(req, AudiencePodIdentity, req.Pod.Tokens[AudienceSTS].Value)
		}},
		"pod identity token sent to STS": {req: func(e *env) *provider.Request {
			req := e.request(map[string]string{"objects": sm("ok")})
			return withToken(req, AudienceSTS, req.Pod.Tokens[AudiencePodIdentity].Value)
		}},
		"denied": {req: func(e *env) *provider.Request {
			e.st.AddRole(store.Role{ARN: roleWeb, Subjects: []string{"system:serviceaccount:app:web"}})
			return e.request(map[string]string{"objects": sm("ok")})
		}},
		"throttled": {req: func(e *env) *provider.Request {
			e.st.SetFault(east, store.Fault{Rate: 1})
			return e.request(map[string]string{"objects": sm("ok")})
		}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, func(o *Options) { o.ShareWindow = DefaultShareWindow })
			e.st.AddPodIdentityAssociation(testNS, testSA, roleWeb)
			e.secret(east, "json", `{"a":{"b":"`+canary+`"},"n":1}`)
			e.secret(east, "notjson", canary+" {not json")
			e.secret(east, "ok", canary)
			req := tc.req(e)
			resp, err := e.p.Fetch(context.Background(), req)
			if tc.success != (err == nil) {
				t.Fatalf("Fetch error = %v, want success=%v", err, tc.success)
			}
			if tc.success && (len(resp.Files) == 0 || string(resp.Files[0].Data) != canary) {
				t.Fatalf("the canary was not fetched: %v", resp.Files)
			}
			var leak []string
			for _, tok := range req.Pod.Tokens {
				leak = append(leak, tok.Value)
			}
			leak = append(leak, canary)
			logs := e.logs.String()
			if !strings.Contains(logs, "level=DEBUG") {
				t.Fatalf("no debug logs were captured: %q", logs)
			}
			for _, l := range leak {
				if err != nil && (strings.Contains(err.Error(), l) || strings.Contains(fmt.Sprintf("%+v %#v", err, err), l)) {
					t.Errorf("the error leaks %.20s…: %v", l, err)
				}
				if strings.Contains(logs, l) {
					t.Errorf("the logs leak %.20s…:\n%s", l, logs)
				}
			}
		})
	}
}

func TestFailoverLogs(t *testing.T) {
	e := newEnv(t)
	e.secret(east, "db", "e")
	e.secret(west, "db", "w")
	e.st.SetFault(east, store.Fault{Rate: 1})
	e.mustFetch(map[string]string{"failoverRegion": west, "objects": sm("db")})
	if logs := e.logs.String(); !strings.Contains(logs, "trying the failover region") || !strings.Contains(logs, "failover_region=us-west-2") {
		t.Errorf("no failover log line:\n%s", logs)
	}
}

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

func TestSessionName(t *testing.T) {
	tests := map[string]struct{ ns, pod, want string }{
		"plain":       {"app", "web-0", "podsecrets-app-web-0"},
		"long":        {strings.Repeat("n", 40), strings.Repeat("p", 40), ("podsecrets-" + strings.Repeat("n", 40) + "-" + strings.Repeat("p", 40))[:64]},
		"odd symbols": {"a", "b:c/d e", "podsecrets-a-b-c-d-e"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := sessionName(tc.ns, tc.pod)
			if got != tc.want || len(got) > 64 || sessionNameRE.MatchString(got) {
				t.Errorf("sessionName(%q, %q) = %q, want %q", tc.ns, tc.pod, got, tc.want)
			}
		})
	}
}

// idVersions renders versions as "id@version", one per object.
func idVersions(vs []provider.ObjectVersion) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = v.ID + "@" + v.Version
	}
	return out
}
