package plugin

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/protobuf/proto"

	"github.com/podsecrets/podsecrets/provider"
	"github.com/podsecrets/podsecrets/provider/plugin/v1alpha1"
	"github.com/podsecrets/podsecrets/test/pluginfake"
)

const canaryToken = "CANARY-token-eyJhbGciOiJSUzI1NiJ9.payload.sig"

// serve starts the conformance plugin on dir/name.sock and returns it and
// a Finder looking in dir.
func serve(t *testing.T, name string, maxFileBytes int64) (*pluginfake.Server, *Finder, *grpc.Server) {
	t.Helper()
	dir := t.TempDir()
	l, err := net.Listen("unix", filepath.Join(dir, name+".sock"))
	if err != nil {
		t.Fatal(err)
	}
	fake := &pluginfake.Server{}
	g := grpc.NewServer()
	v1alpha1.RegisterCSIDriverProviderServer(g, fake)
	go g.Serve(l)
	t.Cleanup(g.Stop)
	f := NewFinder(Options{Dirs: []string{filepath.Join(dir, "missing"), dir}, MaxFileBytes: maxFileBytes})
	t.Cleanup(func() { f.Close() })
	return fake, f, g
}

func request(params map[string]string) *provider.Request {
	return &provider.Request{
		Pod: provider.Pod{Namespace: "ns", Name: "web-0", UID: "uid-1", ServiceAccount: "web",
			Tokens: map[string]provider.Token{"vault": {Value: canaryToken, ExpiresAt: time.Date(2026, 12, 2, 3, 0, 0, 0, time.UTC)}}},
		Parameters: params,
		Class:      "ns/db",
		Attributes: map[string]string{
			"csi.storage.k8s.io/pod.name":            "web-0",
			"csi.storage.k8s.io/pod.namespace":       "ns",
			"csi.storage.k8s.io/pod.uid":             "uid-1",
			"csi.storage.k8s.io/serviceAccount.name": "web",
			"csi.storage.k8s.io/ephemeral":           "true",
			"secretProviderClass":                    "db",
			"roleName":                               "from-the-pod",
		},
		Target: "/var/lib/kubelet/pods/uid-1/volumes/kubernetes.io~csi/secrets/mount",
	}
}

func fetch(t *testing.T, f *Finder, name string, req *provider.Request) (*provider.Response, error) {
	t.Helper()
	p, err := f.Find(name)
	if err != nil {
		t.Fatalf("Find(%s): %v", name, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return p.Fetch(ctx, req)
}

// TestMountRequestFields checks every field of the request as the Secrets
// Store CSI Driver fills it: the class's parameters overlaid with every
// volume attribute, the tokens as kubelet's JSON map, the node-publish
// secrets (null without any), the target, the default mode as JSON, and
// no current versions on a first mount.
func TestMountRequestFields(t *testing.T) {
	fake, f, _ := serve(t, "vault", 0)
	fake.SeedWith(pluginfake.Seed{Objects: map[string]pluginfake.Object{"db": {Version: "3", Contents: "pw"}}})
	req := request(map[string]string{"objects": "db", "roleName": "from-the-class", "vaultAddress": "https://vault:8200"})
	if _, err := fetch(t, f, "vault", req); err != nil {
		t.Fatal(err)
	}
	req.Secrets = provider.Secrets{"username": "u"}
	req.Held = &provider.Held{Objects: []provider.ObjectVersion{{ID: "db", Version: "3", Path: "db", Source: "plugin:vault"}}}
	if _, err := fetch(t, f, "vault", req); err != nil {
		t.Fatal(err)
	}
	calls := fake.Calls()
	if len(calls) != 2 {
		t.Fatalf("%d calls, want 2", len(calls))
	}
	var attrs map[string]string
	if err := json.Unmarshal([]byte(calls[0].GetAttributes()), &attrs); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"objects": "db", "vaultAddress": "https://vault:8200",
		"roleName":                               "from-the-pod", // the volume attribute wins, as in the Secrets Store CSI Driver
		"csi.storage.k8s.io/pod.name":            "web-0",
		"csi.storage.k8s.io/pod.namespace":       "ns",
		"csi.storage.k8s.io/pod.uid":             "uid-1",
		"csi.storage.k8s.io/serviceAccount.name": "web",
		"csi.storage.k8s.io/ephemeral":           "true",
		"secretProviderClass":                    "db",
		keyTokens:                                `{"vault":{"token":"` + canaryToken + `","expirationTimestamp":"2026-12-02T03:00:00Z"}}`,
	}
	if len(attrs) != len(want) {
		t.Errorf("attributes have %d keys, want %d: %v", len(attrs), len(want), keys(attrs))
	}
	for k, v := range want {
		if attrs[k] != v {
			t.Errorf("attributes[%s] = %q, want %q", k, attrs[k], v)
		}
	}
	first, second := calls[0], calls[1]
	switch {
	case first.GetSecrets() != "null":
		t.Errorf("secrets without nodePublishSecretRef = %q, want null", first.GetSecrets())
	case second.GetSecrets() != `{"username":"u"}`:
		t.Errorf("secrets = %q", second.GetSecrets())
	case first.GetTargetPath() != req.Target:
		t.Errorf("target_path = %q, want %q", first.GetTargetPath(), req.Target)
	case first.GetPermission() != "420":
		t.Errorf("permission = %q, want 420 (0644 as JSON)", first.GetPermission())
	case len(first.GetCurrentObjectVersion()) != 0:
		t.Errorf("a first mount sent current versions %v", first.GetCurrentObjectVersion())
	case len(second.GetCurrentObjectVersion()) != 1 || second.GetCurrentObjectVersion()[0].GetId() != "db" || second.GetCurrentObjectVersion()[0].GetVersion() != "3":
		t.Errorf("a check sent current versions %v, want db@3", second.GetCurrentObjectVersion())
	}
}

func keys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestFilesAndVersions(t *testing.T) {
	fake, f, _ := serve(t, "gcp", 0)
	fake.SeedWith(pluginfake.Seed{Objects: map[string]pluginfake.Object{
		"projects/p/secrets/db/versions/7": {Version: "7", Contents: "pw", Mode: 0o400},
		"api":                              {Version: "v2", Contents: "key"},
	}})
	resp, err := fetch(t, f, "gcp", request(map[string]string{"objects": "projects/p/secrets/db/versions/7=db/password,api"}))
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Files) != 2 || resp.Files[0].Path != "db/password" || string(resp.Files[0].Data) != "pw" || resp.Files[0].Mode != 0o400 ||
		resp.Files[1].Path != "api" || resp.Files[1].Mode != defaultMode {
		t.Errorf("files = %v; want db/password 0400 and api with the default mode", resp.Files)
	}
	want := []provider.ObjectVersion{{ID: "projects/p/secrets/db/versions/7", Version: "7", Source: "plugin:gcp"}, {ID: "api", Version: "v2", Source: "plugin:gcp"}}
	if len(resp.Versions) != 2 || resp.Versions[0] != want[0] || resp.Versions[1] != want[1] {
		t.Errorf("versions = %v, want %v", resp.Versions, want)
	}
}

// TestErrors drives every failing answer of the conformance plugin and
// checks the kind, that the message names the plugin, and that neither the
// token nor the target path reaches the message.
func TestErrors(t *testing.T) {
	fake, f, _ := serve(t, "vault", 1<<20)
	fake.SeedWith(pluginfake.Seed{Objects: map[string]pluginfake.Object{"db": {Version: "1", Contents: "pw"}}})
	tests := map[string]struct {
		answer   string
		kind     error
		contains string
	}{
		"not found":       {"grpc:NotFound:secret db not found", provider.ErrNotFound, "secret db not found"},
		"denied":          {"grpc:PermissionDenied:403 permission denied for token $token", provider.ErrPermissionDenied, "[redacted token]"},
		"unauthenticated": {"grpc:Unauthenticated:bad jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln", provider.ErrPermissionDenied, "bad jwt [redacted token]"},
		"invalid":         {"grpc:InvalidArgument:missing roleName at $target", provider.ErrInvalid, "missing roleName at <target>"},
		"internal":        {"grpc:Internal:vault sealed", provider.ErrUnavailable, "vault sealed"},
		"unavailable":     {"grpc:Unavailable:vault down", provider.ErrUnavailable, "vault down"},
		"throttled":       {"grpc:ResourceExhausted:rate limited", provider.ErrUnavailable, "rate limited"},
		"unimplemented":   {"grpc:Unimplemented:no", provider.ErrInvalid, "does not serve v1alpha1.CSIDriverProvider/Mount"},
		"error code":      {"code:AccessDenied", provider.ErrUnavailable, `error code "AccessDenied"`},
		"no files":        {"nofiles", provider.ErrInvalid, "--driver-writes-secrets=true"},
		"huge":            {"huge:3000000", provider.ErrInvalid, "more than a volume can hold"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := fetch(t, f, "vault", request(map[string]string{"objects": "db", "answer": tc.answer}))
			if !errors.Is(err, tc.kind) {
				t.Fatalf("err = %v, want kind %v", err, tc.kind)
			}
			msg := err.Error()
			if !strings.Contains(msg, "provider plugin vault") || !strings.Contains(msg, tc.contains) {
				t.Errorf("err = %q, want it to name the plugin and contain %q", msg, tc.contains)
			}
			if strings.Contains(msg, "CANARY") || strings.Contains(msg, "/var/lib/kubelet") {
				t.Errorf("err leaks the token or the target: %q", msg)
			}
		})
	}
}

func TestSlowAnswerEndsWithTheRequest(t *testing.T) {
	_, f, _ := serve(t, "slow", 0)
	p, err := f.Find("slow")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := p.Fetch(ctx, request(map[string]string{"answer": "slow"}))
		done <- err
	}()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want the request's own end (context.Canceled)", err)
	}
}

// TestCrashMidCall stops the plugin while it holds a call: the mount fails
// as unavailable (kubelet retries), and once a plugin serves the socket
// again the same Finder reaches it.
func TestCrashMidCall(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "crashy.sock")
	start := func(fake *pluginfake.Server) *grpc.Server {
		l, err := net.Listen("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		g := grpc.NewServer()
		v1alpha1.RegisterCSIDriverProviderServer(g, fake)
		go g.Serve(l)
		return g
	}
	var g *grpc.Server
	fake := &pluginfake.Server{Crash: func() { go g.Stop() }}
	g = start(fake)
	f := NewFinder(Options{Dirs: []string{dir}})
	defer f.Close()
	_, err := fetch(t, f, "crashy", request(map[string]string{"answer": "crash"}))
	if !errors.Is(err, provider.ErrUnavailable) || !strings.Contains(err.Error(), "provider plugin crashy") {
		t.Fatalf("err = %v, want ErrUnavailable naming the plugin", err)
	}
	again := &pluginfake.Server{}
	again.SeedWith(pluginfake.Seed{Objects: map[string]pluginfake.Object{"db": {Version: "1", Contents: "pw"}}})
	g2 := start(again)
	defer g2.Stop()
	p, _ := f.Find("crashy")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The reconnect is gRPC's: wait for it rather than fail fast.
	var resp *provider.Response
	for ctx.Err() == nil {
		if resp, err = p.Fetch(ctx, request(map[string]string{"objects": "db"})); err == nil {
			break
		}
		p.(*Plugin).conn.Connect()
		waitState(ctx, p.(*Plugin).conn)
	}
	if err != nil || len(resp.Files) != 1 {
		t.Fatalf("after the restart: %v, %v", resp, err)
	}
}

// waitState waits for conn to leave the state it is in, unless it is ready.
func waitState(ctx context.Context, conn *grpc.ClientConn) {
	if s := conn.GetState(); s != connectivity.Ready {
		conn.WaitForStateChange(ctx, s)
	}
}

func TestFind(t *testing.T) {
	_, f, _ := serve(t, "vault", 0)
	if p, err := f.Find("vault"); err != nil || p.Name() != "vault" || provider.CanPin(p) {
		t.Errorf("Find(vault) = %v, %v; want the plugin, which cannot pin", p, err)
	}
	if p1, _ := f.Find("vault"); p1 != mustFind(t, f, "vault") {
		t.Error("two Finds made two clients for one socket")
	}
	for _, name := range []string{"../etc/x", "a/b", "", strings.Repeat("a", 31), "vault.sock"} {
		if _, err := f.Find(name); !errors.Is(err, provider.ErrInvalid) {
			t.Errorf("Find(%q) = %v, want ErrInvalid", name, err)
		}
	}
	_, err := f.Find("azure")
	if !errors.Is(err, provider.ErrUnavailable) || !strings.Contains(err.Error(), "azure.sock") {
		t.Errorf("Find(azure) = %v, want ErrUnavailable naming azure.sock", err)
	}
	// A file that is not a socket is no plugin.
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "x.sock"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := NewFinder(Options{Dirs: []string{dir}}).Find("x"); !errors.Is(err, provider.ErrUnavailable) {
		t.Errorf("Find(x) on a regular file = %v, want ErrUnavailable", err)
	}
}

func mustFind(t *testing.T, f *Finder, name string) provider.Provider {
	p, err := f.Find(name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAnswerValidation(t *testing.T) {
	req := request(nil)
	file := []*v1alpha1.File{{Path: "a", Contents: []byte("x")}}
	tests := map[string]*v1alpha1.MountResponse{
		"setuid":              {Files: []*v1alpha1.File{{Path: "a", Mode: 0o4755}}},
		"negative mode":       {Files: []*v1alpha1.File{{Path: "a", Mode: -1}}},
		"newline in version":  {Files: file, ObjectVersion: []*v1alpha1.ObjectVersion{{Id: "a", Version: "1\nINFO forged"}}},
		"empty id":            {Files: file, ObjectVersion: []*v1alpha1.ObjectVersion{{Id: "", Version: "1"}}},
		"long id":             {Files: file, ObjectVersion: []*v1alpha1.ObjectVersion{{Id: strings.Repeat("a", maxVersionLen+1), Version: "1"}}},
		"error code redacted": {Error: &v1alpha1.Error{Code: canaryToken}},
	}
	for name, resp := range tests {
		_, err := answer("p", req, resp)
		if err == nil || strings.Contains(err.Error(), "CANARY") || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: err = %v, want a one-line error without the token", name, err)
		}
	}
}

// FuzzAnswer feeds arbitrary bytes as a plugin's Mount answer: the parser
// never panics, and what it accepts or refuses never quotes the request's
// token or spans lines.
func FuzzAnswer(f *testing.F) {
	for _, m := range []*v1alpha1.MountResponse{
		{Files: []*v1alpha1.File{{Path: "a", Mode: 0o644, Contents: []byte("x")}}, ObjectVersion: []*v1alpha1.ObjectVersion{{Id: "a", Version: "1"}}},
		{Error: &v1alpha1.Error{Code: "E"}},
		{ObjectVersion: []*v1alpha1.ObjectVersion{{Id: canaryToken, Version: "\n"}}},
	} {
		b, _ := proto.Marshal(m)
		f.Add(b)
	}
	req := request(nil)
	f.Fuzz(func(t *testing.T, b []byte) {
		var m v1alpha1.MountResponse
		if proto.Unmarshal(b, &m) != nil {
			return
		}
		resp, err := answer("p", req, &m)
		if err != nil {
			if strings.Contains(err.Error(), canaryToken) || strings.ContainsAny(err.Error(), "\n\r") {
				t.Fatalf("error %q quotes the token or spans lines", err)
			}
			return
		}
		for _, v := range resp.Versions {
			if strings.ContainsAny(v.ID+v.Version, "\n\r") {
				t.Fatalf("accepted version %q@%q spans lines", v.ID, v.Version)
			}
		}
	})
}
