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
	"sync/atomic"
	"testing"
	"testing/synctest"
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
			kind: provider.ErrPermissionDenied,
			want: []string{`secretsmanager "db" (objects[1])`, "AccessDeniedException", roleWeb},
			// No call count: the denial cancels the parallel read of
			// allowed-1, which may or may not have reached the store.
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
				other, err := store.NewIssuer("https://other.test")
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

func TestMaxConcurrency(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGate(opGetSecret)
		e := newMemEnv(t, g.wrap, func(o *Options) { o.MaxConcurrency = 3 })
		e.secret(east, "db", "v")
		var objs strings.Builder
		for i := range 12 { // 12 distinct versions: 12 GetSecretValue calls
			v, err := e.st.PutSecretValue(east, "db", store.Value{String: fmt.Sprint(i)})
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&objs, "- {objectName: db, objectType: secretsmanager, objectVersion: %q, objectAlias: v%d}\n", v, i)
		}
		done := make(chan error, 1)
		go func() {
			_, err := e.fetch(map[string]string{"objects": objs.String()})
			done <- err
		}()
		synctest.Wait() // the calls in flight are at the gate, the others wait for a slot
		if n := g.held(); n != 3 {
			t.Errorf("%d calls in flight at once, want 3 (parallel, bounded by MaxConcurrency)", n)
		}
		close(g.open)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		e.wantCalls(map[string]int{opGetSecret: 12, opSTS: 1})
	})
}

// TestCallTimeout: a store call that outlives the call timeout while the
// Fetch still has time fails as the store being slow, Unavailable, and
// not as the request's deadline (see contextErr), shared or not.
func TestCallTimeout(t *testing.T) {
	for name, window := range map[string]time.Duration{"own reads": 0, "shared reads": time.Second} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				const timeout = 200 * time.Millisecond
				g := newGate(opGetSecret) // never opened: the store never answers
				e := newMemEnv(t, g.wrap, sharing(window, nil), func(o *Options) { o.callTimeout = timeout })
				e.secret(east, "db", "v")
				start := time.Now()
				_, err := e.fetch(map[string]string{"objects": sm("db")})
				if !errors.Is(err, provider.ErrUnavailable) || !strings.Contains(err.Error(), `"db"`) || !strings.Contains(err.Error(), "timed out") {
					t.Errorf("Fetch = %v, want ErrUnavailable naming the object and the timeout", err)
				}
				if errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("Fetch = %v wraps context.DeadlineExceeded, which the driver reports as the request's deadline", err)
				}
				if d := time.Since(start); d != timeout {
					t.Errorf("Fetch took %v, want the call timeout %v", d, timeout)
				}
			})
		})
	}
}

// TestFetchEndsWithItsContext: a Fetch whose own context ends while the
// store holds its calls fails wrapping that context's error (the driver's
// DeadlineExceeded or Canceled), shared or not.
func TestFetchEndsWithItsContext(t *testing.T) {
	for name, tc := range map[string]struct {
		window time.Duration
		cancel bool
	}{
		"deadline, own reads":    {},
		"deadline, shared reads": {window: time.Second},
		"canceled, own reads":    {cancel: true},
		"canceled, shared reads": {window: time.Second, cancel: true},
	} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				g := newGate(opGetSecret) // opened only once the Fetch failed
				e := newMemEnv(t, g.wrap, sharing(tc.window, nil))
				e.secret(east, "db", "v")
				// Well inside the call timeout: the request ends first.
				ctx, cancel := context.WithTimeout(context.Background(), defaultCallTimeout/2)
				defer cancel()
				done := make(chan error, 1)
				go func() {
					_, err := e.p.Fetch(ctx, e.request(map[string]string{"objects": sm("db")}))
					done <- err
				}()
				want, other := context.DeadlineExceeded, context.Canceled
				if tc.cancel {
					synctest.Wait() // the call is at the gate
					cancel()
					want, other = other, want
				}
				err := <-done
				if !errors.Is(err, want) || errors.Is(err, other) || !errors.Is(err, provider.ErrUnavailable) {
					t.Errorf("Fetch = %v, want ErrUnavailable wrapping %v only", err, want)
				}
				// A shared read runs on, detached; let it end inside the
				// bubble.
				close(g.open)
				synctest.Wait()
			})
		})
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

// idVersions renders versions as "id@version", one per object.
func idVersions(vs []provider.ObjectVersion) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = v.ID + "@" + v.Version
	}
	return out
}
