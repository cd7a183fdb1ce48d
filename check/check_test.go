package check

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/podsecrets/podsecrets/provider"
	"github.com/podsecrets/podsecrets/provider/aws"
	"github.com/podsecrets/podsecrets/test/awsfake/store"
)

// class is a podsecrets class of provider aws with objects, namespace app.
func class(name, objects string, extra ...string) string {
	s := fmt.Sprintf("apiVersion: podsecrets.dev/v1\nkind: SecretProviderClass\nmetadata: {name: %s, namespace: app}\nspec:\n  provider: aws\n", name)
	for _, x := range extra {
		s += "  " + x + "\n"
	}
	s += "  parameters:\n    region: us-east-1\n    objects: |\n"
	for _, l := range strings.Split(strings.TrimRight(objects, "\n"), "\n") {
		s += "      " + l + "\n"
	}
	return s
}

func offline(t *testing.T, files ...string) *Report {
	t.Helper()
	var in []Input
	for i, f := range files {
		in = append(in, Input{Name: fmt.Sprintf("f%d.yaml", i), Data: []byte(f)})
	}
	return Run(context.Background(), in, Options{TmpfsSize: 8 << 20})
}

// messages joins what the report says of its classes.
func messages(r *Report) string {
	var b strings.Builder
	for _, c := range r.Classes {
		for _, e := range c.Errors {
			b.WriteString("error: " + e + "\n")
		}
		for _, w := range c.Warnings {
			b.WriteString("warning " + w.Reason + ": " + w.Message + "\n")
		}
		for _, n := range c.Notes {
			b.WriteString("note: " + n + "\n")
		}
	}
	for _, u := range r.Usage {
		b.WriteString("usage: " + u + "\n")
	}
	return b.String()
}

func TestOffline(t *testing.T) {
	db := "- {objectName: db, objectType: secretsmanager, objectAlias: db.json, jmesPath: [{path: password, objectAlias: password, filePermission: '0400'}]}\n- {objectName: /app/url, objectType: ssmparameter, optional: true}"
	tests := map[string]struct {
		files []string
		code  int
		want  []string // lines of messages(r)
	}{
		"a valid class": {
			files: []string{class("c", db)},
			want:  []string{"note: offline: the objects were not read; --as namespace/serviceaccount reads them and checks their size"},
		},
		"the Secrets Store CSI Driver's apiVersion": {
			files: []string{strings.Replace(class("c", db), "podsecrets.dev/v1", "secrets-store.csi.x-k8s.io/v1", 1) + "  secretObjects: []\n"},
			want: []string{
				"warning UnknownParameterKey: SecretProviderClass app/c: spec.secretObjects (syncing into Kubernetes Secrets) has no equivalent in podsecrets, by design; ignored",
				"note: a class of the Secrets Store CSI Driver: for podsecrets, change its apiVersion to podsecrets.dev/v1",
				"note: offline: the objects were not read; --as namespace/serviceaccount reads them and checks their size",
			},
		},
		"another apiVersion": {
			files: []string{strings.Replace(class("c", db), "podsecrets.dev/v1", "podsecrets.dev/v2", 1)},
			code:  ExitProblems,
			want:  []string{`error: apiVersion "podsecrets.dev/v2": want podsecrets.dev/v1 (or secrets-store.csi.x-k8s.io/v1, the Secrets Store CSI Driver's)`},
		},
		"unknown keys, everywhere, with the closest known one": {
			files: []string{class("c", "- {objectName: db, objectType: secretsmanager, objectAlais: x}", "rotaton: {pollInterval: 1m}", "rotation: {pollIntreval: 1m}") +
				"    regoin: us-east-1\n"},
			want: []string{
				`warning UnknownParameterKey: SecretProviderClass app/c: spec["rotaton"]: unknown key, dropped by the API server; did you mean "rotation"?`,
				`warning UnknownParameterKey: SecretProviderClass app/c: spec.rotation["pollIntreval"]: unknown key, dropped by the API server; did you mean "pollInterval"?`,
				`warning UnknownParameterKey: SecretProviderClass app/c: parameters["regoin"]: unknown key, ignored; did you mean "region"?`,
				`warning UnknownParameterKey: SecretProviderClass app/c: objects[0].objectAlais: unknown key, ignored; did you mean "objectAlias"?`,
				"note: offline: the objects were not read; --as namespace/serviceaccount reads them and checks their size",
			},
		},
		"the driver's parse of the class": {
			files: []string{class("c", db, "versionPolicy: Revision", "rotation: {pollInterval: 1m}")},
			code:  ExitProblems,
			want:  []string{"error: SecretProviderClass invalid: app/c: spec.versionPolicy Revision and spec.rotation exclude each other: pin versions per rollout (Revision) or follow the store under running pods (rotation), not both"},
		},
		"a parameter that is not a string": {
			files: []string{strings.Replace(class("c", db), "region: us-east-1", "region: 5", 1)},
			code:  ExitProblems,
			want:  []string{"error: SecretProviderClass invalid: app/c: spec.parameters must map strings to strings: .spec.parameters accessor error: contains non-string value in the map under key \"region\": 5 is of the type float64, expected string"},
		},
		"the provider's parse of the parameters": {
			files: []string{class("c", "- {objectName: db, objectType: secretsmanager, objectAlias: ..data}")},
			code:  ExitProblems,
			want:  []string{`error: SecretProviderClass app/c: objects[0] (objectName "db"): objectAlias "..data": file name "..data" starts with "..", reserved for the volume's "..data" layout`},
		},
		"a bad name": {
			files: []string{strings.Replace(class("c", db), "name: c", "name: C_1", 1)},
			code:  ExitProblems,
			want: []string{
				`error: metadata.name "C_1": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`,
				"note: offline: the objects were not read; --as namespace/serviceaccount reads them and checks their size",
			},
		},
		"a plugin class": {
			files: []string{"apiVersion: podsecrets.dev/v1\nkind: SecretProviderClass\nmetadata: {name: v, namespace: app}\nspec: {provider: vault, parameters: {roleName: x}, versionPolicy: Revision}\n"},
			code:  ExitProblems,
			want: []string{
				`error: spec.versionPolicy Revision: refused for plugin classes, whose protocol cannot ask for a version (see README, "Any store")`,
				`note: provider "vault" is not built in: a provider plugin of that name serves the class on the node, so its parameters cannot be checked offline; the rest of the class was`,
			},
		},
		"a provider name that no plugin can have": {
			files: []string{"apiVersion: podsecrets.dev/v1\nkind: SecretProviderClass\nmetadata: {name: v, namespace: app}\nspec: {provider: ../vault}\n"},
			code:  ExitProblems,
			want:  []string{`error: SecretProviderClass app/v: spec.provider: invalid: provider "../vault" is neither built in nor a plugin name (letters, digits, '-' and '_', at most 30)`},
		},
		"no class": {
			files: []string{"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n"},
			code:  ExitUsage,
			want:  []string{"usage: no SecretProviderClass in the input"},
		},
		"not YAML": {
			files: []string{class("c", db), "a: [b\n"},
			code:  ExitUsage,
			want: []string{
				"note: offline: the objects were not read; --as namespace/serviceaccount reads them and checks their size",
				"usage: f1.yaml: document 1: not YAML: yaml: line 1: did not find expected ',' or ']'",
			},
		},
		"not an object": {
			files: []string{"- a\n"},
			code:  ExitUsage,
			want:  []string{"usage: f0.yaml: document 1: not an object"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r := offline(t, tc.files...)
			got := strings.Split(strings.TrimSuffix(messages(r), "\n"), "\n")
			if !slices.Equal(got, tc.want) {
				t.Errorf("messages:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
			if r.Code() != tc.code {
				t.Errorf("exit code %d, want %d", r.Code(), tc.code)
			}
		})
	}
}

// TestOfflineDocuments: multi-document files and Lists; other kinds are
// skipped by name, never printed.
func TestOfflineDocuments(t *testing.T) {
	secret := "apiVersion: v1\nkind: Secret\nmetadata: {name: creds, namespace: app}\nstringData: {password: hunter2}\n"
	list := `{"apiVersion": "v1", "kind": "List", "items": [` + mustJSON(t, class("in-list", "- {objectName: a, objectType: secretsmanager}")) + `]}`
	r := offline(t, "# comment\n---\n"+class("one", "- {objectName: a, objectType: secretsmanager}")+"---\n"+secret+"---\n---\n"+class("two", "- {objectName: b, objectType: ssmparameter}"), list)
	var got []string
	for _, c := range r.Classes {
		got = append(got, c.Source+" "+c.Name)
	}
	if want := []string{"f0.yaml#1 one", "f0.yaml#3 two", "f1.yaml#1.items[0] in-list"}; !slices.Equal(got, want) {
		t.Errorf("classes %q, want %q", got, want)
	}
	if want := []string{"f0.yaml#2: v1/Secret app/creds"}; !slices.Equal(r.Skipped, want) {
		t.Errorf("skipped %q, want %q", r.Skipped, want)
	}
	var out bytes.Buffer
	if err := r.WriteText(&out); err != nil {
		t.Fatal(err)
	}
	if err := r.WriteJSON(&out); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "hunter2") {
		t.Fatalf("the output holds a Secret's value:\n%s", out.String())
	}
	if r.Code() != ExitOK {
		t.Errorf("exit code %d", r.Code())
	}
}

func mustJSON(t *testing.T, y string) string {
	t.Helper()
	j, err := yaml.YAMLToJSON([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	return string(j)
}

// TestKnownSpecKeysAreTheCRDs: the keys a check knows are those the CRD
// defines, so that a field added to the CRD is not reported unknown.
func TestKnownSpecKeysAreTheCRDs(t *testing.T) {
	b, err := os.ReadFile("../deploy/crd.yaml")
	if err != nil {
		t.Fatal(err)
	}
	docs, err := Documents(b)
	if err != nil {
		t.Fatal(err)
	}
	type props struct {
		Properties map[string]struct {
			Properties map[string]any `json:"properties"`
		} `json:"properties"`
	}
	for _, d := range docs {
		if d.GetName() != "secretproviderclasses.podsecrets.dev" {
			continue
		}
		var crd struct {
			Spec struct {
				Versions []struct {
					Schema struct {
						OpenAPIV3Schema struct {
							Properties struct {
								Spec props `json:"spec"`
							} `json:"properties"`
						} `json:"openAPIV3Schema"`
					} `json:"schema"`
				} `json:"versions"`
			} `json:"spec"`
		}
		j, _ := json.Marshal(d.Object)
		if err := json.Unmarshal(j, &crd); err != nil {
			t.Fatal(err)
		}
		spec := crd.Spec.Versions[0].Schema.OpenAPIV3Schema.Properties.Spec
		var keys, rot []string
		for k := range spec.Properties {
			keys = append(keys, k)
		}
		for k := range spec.Properties["rotation"].Properties {
			rot = append(rot, k)
		}
		slices.Sort(keys)
		slices.Sort(rot)
		if want := slices.Sorted(slices.Values(knownSpec)); !slices.Equal(keys, want) {
			t.Errorf("the CRD's spec has %q, the check knows %q", keys, want)
		}
		if !slices.Equal(rot, knownRotation) {
			t.Errorf("the CRD's spec.rotation has %q, the check knows %q", rot, knownRotation)
		}
		return
	}
	t.Fatal("no SecretProviderClass CRD in deploy/crd.yaml")
}

// fakeTokens mints tokens with the test issuer, as TokenRequest would.
type fakeTokens struct {
	iss *store.Issuer
	err error

	mu        sync.Mutex
	audiences []string
}

func (f *fakeTokens) Token(_ context.Context, namespace, sa, audience string) (provider.Token, error) {
	f.mu.Lock()
	f.audiences = append(f.audiences, audience)
	f.mu.Unlock()
	if f.err != nil {
		return provider.Token{}, f.err
	}
	return provider.Token{Value: f.iss.Token("system:serviceaccount:"+namespace+":"+sa, audience, time.Hour), ExpiresAt: time.Now().Add(time.Hour)}, nil
}

type fakeSAs map[string]map[string]string

func (f fakeSAs) ServiceAccountAnnotations(_ context.Context, namespace, name string) (map[string]string, error) {
	a, ok := f[namespace+"/"+name]
	if !ok {
		return nil, fmt.Errorf("ServiceAccount %s/%s: %w", namespace, name, provider.ErrNotFound)
	}
	return a, nil
}

var testIssuer = sync.OnceValues(func() (*store.Issuer, error) { return store.NewIssuer("https://oidc.check.test") })

const roleApp = "arn:aws:iam::111122223333:role/app"

// storeEnv is a fake store with role app (for app/reader, allowed app-*
// secrets and /app/* parameters) and the options of a dry run as
// app/reader against it.
func storeEnv(t *testing.T) (*store.Store, *fakeTokens, Options) {
	t.Helper()
	iss, err := testIssuer()
	if err != nil {
		t.Fatal(err)
	}
	st := store.New(store.Options{AccountID: "111122223333"})
	if err := st.TrustJWKS(iss.JWKS()); err != nil {
		t.Fatal(err)
	}
	st.AddRole(store.Role{ARN: roleApp, Subjects: []string{"system:serviceaccount:app:reader"},
		Allow: []string{"arn:aws:secretsmanager:*:*:secret:app-*", "arn:aws:ssm:*:*:parameter/app/*"}})
	srv := httptest.NewServer(st.Handler())
	t.Cleanup(srv.Close)
	tokens := &fakeTokens{iss: iss}
	return st, tokens, Options{TmpfsSize: 8 << 20, DryRun: &DryRunOptions{
		Namespace: "app", ServiceAccount: "reader", Tokens: tokens,
		ServiceAccounts: fakeSAs{"app/reader": {aws.RoleARNAnnotation: roleApp}},
		AWS:             aws.Options{EndpointURL: srv.URL},
	}}
}

const (
	dbValue  = `{"user":"u-value","password":"p-value"}`
	urlValue = "https://url-value"
)

func TestDryRun(t *testing.T) {
	st, tokens, o := storeEnv(t)
	_, v := st.CreateSecret("us-east-1", "app-db", store.Value{String: dbValue})
	st.CreateSecret("us-east-1", "denied", store.Value{String: "denied-value"})
	pv := st.PutParameter("us-east-1", "/app/url", urlValue, "String")
	objects := "- {objectName: app-db, objectType: secretsmanager, objectAlias: db.json, jmesPath: [{path: password, objectAlias: password}]}\n" +
		"- {objectName: /app/url, objectType: ssmparameter, objectAlias: url}\n" +
		"- {objectName: app-absent, objectType: secretsmanager, optional: true}\n"
	r := Run(context.Background(), []Input{{Name: "c.yaml", Data: []byte(class("c", objects))}}, o)
	if r.Code() != ExitOK {
		t.Fatalf("exit code %d:\n%s", r.Code(), messages(r))
	}
	c := r.Classes[0]
	if c.DryRun == nil || c.DryRun.As != "app/reader" || c.DryRun.Identity != "role "+roleApp || c.DryRun.Region != "us-east-1" ||
		c.DryRun.VolumeBytes != 4*4096 || c.DryRun.VolumeLimit != 8<<20 {
		t.Fatalf("dry run %+v", c.DryRun)
	}
	if !slices.Equal(tokens.audiences, []string{aws.AudienceSTS}) {
		t.Errorf("token audiences %q, want IRSA's", tokens.audiences)
	}
	reads := func(c Class) []string {
		var out []string
		for _, o := range c.Objects {
			s := o.Read.Status + " " + o.Read.Version
			for _, f := range o.Files {
				if f.Bytes != nil {
					s += fmt.Sprintf(" %s:%d", f.Path, *f.Bytes)
				}
			}
			out = append(out, s)
		}
		return out
	}
	if got, want := reads(c), []string{"found " + v + " db.json:39 password:7", fmt.Sprintf("found %d url:17", pv), "skipped "}; !slices.Equal(got, want) {
		t.Errorf("reads %q, want %q", got, want)
	}
	if e := c.Objects[2].Read.Error; !strings.Contains(e, `secretsmanager "app-absent" (objects[2])`) || !strings.Contains(e, "ResourceNotFoundException") {
		t.Errorf("skipped object: error %q", e)
	}
	var out bytes.Buffer
	r.WriteText(&out)
	r.WriteJSON(&out)
	for _, val := range []string{"u-value", "p-value", "url-value", "eyJ"} {
		if strings.Contains(out.String(), val) {
			t.Fatalf("the output holds %q:\n%s", val, out.String())
		}
	}
	for _, line := range []string{
		"c.yaml#1: SecretProviderClass app/c (podsecrets.dev/v1, provider aws): ok\n",
		"  read as app/reader (role " + roleApp + ") in us-east-1; the volume needs 16384 of 8388608 bytes\n",
		`    objects[0] secretsmanager "app-db": found, version ` + v + "\n      db.json   0644  39 bytes\n      password  0644  7 bytes\n",
		`    objects[2] secretsmanager "app-absent" (optional): not in the store: optional, left out: `,
	} {
		if !strings.Contains(out.String(), line) {
			t.Errorf("text output lacks %q:\n%s", line, out.String())
		}
	}

	// A required object the store does not have, one the role may not
	// read: the mount would fail, and each is named.
	objects += "- {objectName: app-gone, objectType: secretsmanager}\n- {objectName: denied, objectType: secretsmanager}\n"
	r = Run(context.Background(), []Input{{Name: "c.yaml", Data: []byte(class("c", objects))}}, o)
	if r.Code() != ExitProblems {
		t.Fatalf("exit code %d, want %d", r.Code(), ExitProblems)
	}
	got := reads(r.Classes[0])
	if got[3] != "failed " || got[4] != "failed " || !strings.Contains(r.Classes[0].Objects[3].Read.Error, "ResourceNotFoundException") ||
		!strings.Contains(r.Classes[0].Objects[4].Read.Error, "AccessDeniedException") {
		t.Errorf("reads %q: %+v", got, r.Classes[0].Objects[3:])
	}
}

func TestDryRunFailures(t *testing.T) {
	db := "- {objectName: app-db, objectType: secretsmanager}"
	tests := map[string]struct {
		edit func(o *Options)
		file string
		code int
		want string
	}{
		"another namespace": {
			file: strings.Replace(class("c", db), "namespace: app", "namespace: other", 1),
			code: ExitProblems,
			want: "error: the class is in namespace other, but a pod of app/reader reads classes from its own namespace",
		},
		"no such service account": {
			edit: func(o *Options) {
				o.DryRun.Tokens.(*fakeTokens).err = fmt.Errorf("ServiceAccount app/reader: %w", provider.ErrNotFound)
			},
			code: ExitProblems,
			want: "error: dry run as app/reader: ServiceAccount app/reader: not found",
		},
		"no token for the check": {
			edit: func(o *Options) {
				o.DryRun.Tokens.(*fakeTokens).err = fmt.Errorf("the kubeconfig's user may not create serviceaccounts/token there: %w", provider.ErrUnavailable)
			},
			code: ExitIncomplete,
			want: "note: dry run as app/reader: the kubeconfig's user may not create serviceaccounts/token there: unavailable",
		},
		"no role annotation": {
			edit: func(o *Options) { o.DryRun.ServiceAccounts = fakeSAs{"app/reader": {}} },
			code: ExitProblems,
			want: `error: dry run as app/reader: service account app/reader has no "eks.amazonaws.com/role-arn" annotation: IRSA needs it to name the IAM role (or set usePodIdentity: "true")`,
		},
		"no region": {
			file: strings.Replace(class("c", db), "region: us-east-1", "pathTranslation: _", 1),
			code: ExitIncomplete,
			want: "note: no dry run: the class has no region parameter; give --region (the driver takes its node's region label)",
		},
		"too large": {
			edit: func(o *Options) { o.TmpfsSize = 4096 },
			code: ExitProblems,
			want: "error: the volume needs 8192 bytes, more than the 4096 each volume may hold (--tmpfs-size; the driver's flag, Helm value tmpfsSize)",
		},
		"too large to rotate": {
			file: class("c", db, "rotation: {pollInterval: 1m}"),
			edit: func(o *Options) { o.TmpfsSize = 12288 },
			want: "warning VolumeTooFullToRotate: SecretProviderClass app/c: the volume needs 8192 bytes, more than half of the 12288 it may hold: a rotation needs room for the old and the new set at once and would fail",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			st, _, o := storeEnv(t)
			st.CreateSecret("us-east-1", "app-db", store.Value{String: "v"})
			if tc.edit != nil {
				tc.edit(&o)
			}
			file := tc.file
			if file == "" {
				file = class("c", db)
			}
			r := Run(context.Background(), []Input{{Name: "c.yaml", Data: []byte(file)}}, o)
			if r.Code() != tc.code || !strings.Contains(messages(r), tc.want) {
				t.Errorf("exit code %d, messages:\n%s\nwant %d and %q", r.Code(), messages(r), tc.code, tc.want)
			}
		})
	}
}

func TestCommandLine(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/c.yaml"
	if err := os.WriteFile(path, []byte(class("c", "- {objectName: db, objectType: secretsmanager}")), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		args   []string
		stdin  string
		code   int
		stdout string
		stderr string
	}{
		"text":            {args: []string{"-f", path}, code: ExitOK, stdout: "SecretProviderClass app/c (podsecrets.dev/v1, provider aws): ok"},
		"json from stdin": {args: []string{"-f", "-", "-o", "json"}, stdin: class("c", "- {objectName: db, objectType: secretsmanager}"), code: ExitOK, stdout: `"source": "-#1"`},
		"no -f":           {args: nil, code: ExitUsage, stderr: "podsecrets check: -f FILE is required"},
		"bad -o":          {args: []string{"-f", path, "-o", "yaml"}, code: ExitUsage, stderr: `-o "yaml": want text or json`},
		"bad --as":        {args: []string{"-f", path, "--as", "reader"}, code: ExitUsage, stderr: `--as "reader": want NAMESPACE/SERVICEACCOUNT`},
		"bad size":        {args: []string{"-f", path, "--tmpfs-size", "lots"}, code: ExitUsage, stderr: `--tmpfs-size "lots": want a positive quantity such as 8Mi`},
		"missing file":    {args: []string{"-f", dir + "/absent.yaml"}, code: ExitUsage, stderr: "no such file or directory"},
		"an invalid class": {args: []string{"-f", "-"}, stdin: class("c", "- {objectName: db}"), code: ExitProblems,
			stdout: `objects[0] (objectName "db"): objectType: required unless objectName is an ARN`},
		"help": {args: []string{"-h"}, code: ExitOK, stderr: "Exit codes: 0 every class would mount"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := Main(tc.args, strings.NewReader(tc.stdin), &stdout, &stderr)
			if code != tc.code || !strings.Contains(stdout.String(), tc.stdout) || !strings.Contains(stderr.String(), tc.stderr) {
				t.Errorf("code %d\nstdout %s\nstderr %s\nwant %d, %q, %q", code, stdout.String(), stderr.String(), tc.code, tc.stdout, tc.stderr)
			}
		})
	}
}

// FuzzCheck feeds the offline check arbitrary files: it reports, never
// panics, and a file it calls a class it parsed as one.
func FuzzCheck(f *testing.F) {
	f.Add([]byte(class("c", "- {objectName: db, objectType: secretsmanager, optional: true}")))
	f.Add([]byte("apiVersion: v1\nkind: List\nitems:\n- {apiVersion: podsecrets.dev/v1, kind: SecretProviderClass, metadata: {name: a}, spec: {provider: x}}\n- 3\n"))
	f.Add([]byte("---\n---\napiVersion: secrets-store.csi.x-k8s.io/v1\nkind: SecretProviderClass\nmetadata: {name: a}\nspec: {provider: aws, parameters: {objects: '- a'}, rotation: [1]}\n"))
	f.Add([]byte("{\"apiVersion\":\"v1\",\"kind\":\"Secret\"}\n---\n- x\n"))
	f.Add([]byte("apiVersion: podsecrets.dev/v1\nkind: SecretProviderClass\nmetadata: {name: [a], namespace: 5}\nspec: 7\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		docs, err := Documents(data)
		if err == nil {
			for _, d := range docs {
				if d.GetKind() == "" || d.GetAPIVersion() == "" {
					t.Fatalf("a document without kind or apiVersion: %v", d.Object)
				}
			}
		}
		r := Run(context.Background(), []Input{{Name: "f", Data: data}}, Options{TmpfsSize: 8 << 20})
		if code := r.Code(); code != ExitOK && code != ExitProblems && code != ExitUsage {
			t.Fatalf("exit code %d offline", code)
		}
		for _, c := range r.Classes {
			if len(c.Errors) == 0 && c.Provider == "" {
				t.Fatalf("class %s passed without a provider", c.Source)
			}
		}
		var out bytes.Buffer
		if err := r.WriteText(&out); err != nil {
			t.Fatal(err)
		}
		if err := r.WriteJSON(&out); err != nil {
			t.Fatal(err)
		}
	})
}
