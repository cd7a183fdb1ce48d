package integration

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"

	"github.com/podsecrets/podsecrets/driver"
	"github.com/podsecrets/podsecrets/kube"
	"github.com/podsecrets/podsecrets/mount"
	"github.com/podsecrets/podsecrets/provider"
	"github.com/podsecrets/podsecrets/provider/plugin"
	"github.com/podsecrets/podsecrets/provider/plugin/v1alpha1"
	"github.com/podsecrets/podsecrets/rotation"
	"github.com/podsecrets/podsecrets/test/fakeclock"
	"github.com/podsecrets/podsecrets/test/logbuf"
	"github.com/podsecrets/podsecrets/test/pluginfake"
	"github.com/podsecrets/podsecrets/volume"
)

// pluginToken is the pod's token for the plugin's audience: it must reach
// the plugin and nothing else.
const pluginToken = "CANARY-plugin-token"

// pluginEnv is the real CSI server, over its socket, with the plugin client
// and the conformance plugin serving a socket in a plugin directory.
type pluginEnv struct {
	t      *testing.T
	fake   *pluginfake.Server
	plugin *grpc.Server
	node   csi.NodeClient
	clock  *fakeclock.Clock
	logs   *logbuf.Buffer
	root   string
}

func pluginClass(name string, params map[string]any, spec map[string]any) *unstructured.Unstructured {
	s := map[string]any{"provider": "conformance", "parameters": params}
	for k, v := range spec {
		s[k] = v
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "podsecrets.dev/v1", "kind": "SecretProviderClass",
		"metadata": map[string]any{"namespace": "default", "name": name}, "spec": s,
	}}
}

func newPluginEnv(t *testing.T) *pluginEnv {
	t.Helper()
	requireRoot(t)
	e := &pluginEnv{t: t, fake: &pluginfake.Server{}, logs: &logbuf.Buffer{}, root: t.TempDir(), clock: fakeclock.New(time.Now())}
	e.fake.SeedWith(pluginfake.Seed{Objects: map[string]pluginfake.Object{
		"db/password": {Version: "1", Contents: "pw-1", Mode: 0o440},
		"api-key":     {Version: "a", Contents: "key-a"},
	}})
	pluginDir := filepath.Join(e.root, "providers")
	if err := os.Mkdir(pluginDir, 0o700); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("unix", filepath.Join(pluginDir, "conformance.sock"))
	if err != nil {
		t.Fatal(err)
	}
	e.plugin = grpc.NewServer()
	v1alpha1.RegisterCSIDriverProviderServer(e.plugin, e.fake)
	go e.plugin.Serve(l)
	t.Cleanup(e.plugin.Stop)

	objects := map[string]any{"objects": "db/password=db/password,api-key"}
	with := func(k, v string) map[string]any {
		m := map[string]any{k: v}
		for k, v := range objects {
			m[k] = v
		}
		return m
	}
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{kube.ClassGVR: "SecretProviderClassList"},
		pluginClass("ok", with("echo", "true"), nil),
		pluginClass("rotating", objects, map[string]any{"rotation": map[string]any{"pollInterval": "2m"}}),
		pluginClass("revision", objects, map[string]any{"versionPolicy": "Revision"}),
		pluginClass("notfound", with("answer", "grpc:NotFound:secret db/password not found"), nil),
		pluginClass("denied", with("answer", "grpc:PermissionDenied:token $token may not read db at $target"), nil),
		pluginClass("writes-itself", with("answer", "nofiles:write"), nil),
		pluginClass("huge", with("answer", "huge:4000000"), nil),
		pluginClass("crash", with("answer", "crash"), nil),
		pluginClass("slow", with("answer", "slow"), nil),
		pluginClass("badpath", map[string]any{"objects": "api-key=../escape"}, nil))
	log := slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	finder := plugin.NewFinder(plugin.Options{Dirs: []string{pluginDir}, MaxFileBytes: 1 << 20})
	t.Cleanup(func() { finder.Close() })
	e.node = serve(t, e.root, driver.Options{
		NodeID: "n", Version: "test", Providers: provider.NewRegistry().WithFinder(finder), Classes: kube.Classes{Client: dyn},
		Volumes:  volume.New(volume.Options{Mounter: mount.System{}, TmpfsSize: 1 << 20, StagingDir: t.TempDir()}),
		Rotation: &rotation.Tracker{Now: e.clock.Now},
		Logger:   log,
	})
	return e
}

// publish sends what kubelet sends for pod default/<pod> with an inline
// volume of class, with a token for the plugin's audience.
func (e *pluginEnv) publish(ctx context.Context, pod, class string) (string, error) {
	req := kubeletRequest(e.t, e.root, pod, class, "")
	req.VolumeContext["csi.storage.k8s.io/serviceAccount.tokens"] = `{"vault":{"token":"` + pluginToken + `","expirationTimestamp":"2030-01-01T00:00:00Z"}}`
	req.Secrets = map[string]string{"username": "node-publish-user"}
	_, err := e.node.NodePublishVolume(ctx, req)
	return req.TargetPath, err
}

func (e *pluginEnv) read(target, name string) string {
	e.t.Helper()
	b, err := os.ReadFile(filepath.Join(target, name))
	if err != nil {
		e.t.Fatal(err)
	}
	return string(b)
}

// TestPluginMount: the driver mounts what the plugin returns, read-only and
// with the plugin's modes, sends what the Secrets Store CSI Driver sends,
// and logs the plugin's object versions.
func TestPluginMount(t *testing.T) {
	e := newPluginEnv(t)
	target, err := e.publish(context.Background(), "p1", "ok")
	if err != nil {
		t.Fatal(err)
	}
	if got := e.read(target, "db/password"); got != "pw-1" {
		t.Errorf("db/password = %q", got)
	}
	if fi, err := os.Stat(filepath.Join(target, "db/password")); err != nil || fi.Mode().Perm() != 0o440 {
		t.Errorf("db/password mode = %v, %v; want the plugin's 0440", fi.Mode(), err)
	}
	if err := os.WriteFile(filepath.Join(target, "x"), nil, 0o600); !errors.Is(err, unix.EROFS) {
		t.Errorf("writing into the volume = %v, want EROFS", err)
	}
	var echo pluginfake.Echo
	if err := json.Unmarshal([]byte(e.read(target, "request.json")), &echo); err != nil {
		t.Fatal(err)
	}
	if echo.TargetPath != target || echo.Permission != "420" || len(echo.TokenAudiences) != 1 || echo.TokenAudiences[0] != "vault" ||
		len(echo.SecretKeys) != 1 || echo.SecretKeys[0] != "username" || echo.Attributes["csi.storage.k8s.io/pod.name"] != "p1" ||
		echo.Attributes["secretProviderClass"] != "ok" || echo.Attributes["objects"] == "" {
		t.Errorf("the plugin was sent %+v", echo)
	}
	logs := e.logs.String()
	if !strings.Contains(logs, `"objects":["db/password@1","api-key@a"]`) {
		t.Errorf("audit line lacks the plugin's versions:\n%s", logs)
	}
	if strings.Contains(logs, pluginToken) || strings.Contains(logs, "node-publish-user") {
		t.Error("a token or a node-publish secret reached the logs")
	}
}

// TestPluginErrors: each failing answer maps to its gRPC code, names the
// class and the plugin, keeps the token and the target path out, and
// leaves nothing at the target.
func TestPluginErrors(t *testing.T) {
	e := newPluginEnv(t)
	// The crash goes last: it stops the plugin.
	tests := []struct {
		class    string
		code     codes.Code
		contains string
	}{
		{"notfound", codes.NotFound, "secret db/password not found"},
		{"denied", codes.PermissionDenied, "token [redacted token] may not read db at <target>"},
		{"writes-itself", codes.InvalidArgument, "returned no files"},
		{"huge", codes.InvalidArgument, "more than a volume can hold"},
		{"badpath", codes.InvalidArgument, `provider conformance returned an unusable file set: file name "../escape"`},
		{"revision", codes.InvalidArgument, "provider conformance cannot"},
		{"crash", codes.Unavailable, "provider plugin conformance: Unavailable"},
	}
	for _, tc := range tests {
		class := tc.class
		t.Run(class, func(t *testing.T) {
			if class == "crash" {
				e.fake.Crash = func() { go e.plugin.Stop() }
			}
			target, err := e.publish(context.Background(), "p-"+class, class)
			if status.Code(err) != tc.code || !strings.Contains(err.Error(), tc.contains) ||
				!strings.Contains(err.Error(), "SecretProviderClass default/"+class) {
				t.Fatalf("publish = %v; want %v containing %q and naming the class", err, tc.code, tc.contains)
			}
			if strings.Contains(err.Error(), pluginToken) || strings.Contains(err.Error(), e.root) {
				t.Errorf("the error quotes the token or a path: %v", err)
			}
			if _, err := os.Lstat(target); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the target exists after a failed publish (%v)", err)
			}
		})
	}
}

// TestPluginSlowAnswer: a plugin that does not answer fails the mount when
// kubelet's request ends, as DeadlineExceeded.
func TestPluginSlowAnswer(t *testing.T) {
	e := newPluginEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err := e.publish(ctx, "p-slow", "slow")
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("publish = %v, want DeadlineExceeded", err)
	}
}

func TestPluginNotInstalled(t *testing.T) {
	e := newPluginEnv(t)
	e.plugin.Stop() // removes the socket
	_, err := e.publish(context.Background(), "p-none", "ok")
	// The directories are the driver's configuration, the same in every
	// message: kubelet merges the repeated events.
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "no plugin serves conformance.sock in "+filepath.Join(e.root, "providers")) {
		t.Fatalf("publish = %v; want Unavailable naming conformance.sock and the directory", err)
	}
}

// TestPluginRotation: a rotating plugin class is checked with a Mount that
// carries the held versions; new versions swap the files whole, and an
// answer with the same files writes nothing.
func TestPluginRotation(t *testing.T) {
	e := newPluginEnv(t)
	target, err := e.publish(context.Background(), "p-rot", "rotating")
	if err != nil {
		t.Fatal(err)
	}
	republish := func() {
		t.Helper()
		if _, err := e.publish(context.Background(), "p-rot", "rotating"); err != nil {
			t.Fatal(err)
		}
	}
	calls := len(e.fake.Calls())
	republish() // inside the interval: no call
	if n := len(e.fake.Calls()); n != calls {
		t.Fatalf("a republish inside the interval called the plugin (%d calls, want %d)", n, calls)
	}
	before, err := os.Readlink(filepath.Join(target, "..data"))
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(3 * time.Minute)
	republish() // unchanged: one call, nothing written
	if got, _ := os.Readlink(filepath.Join(target, "..data")); got != before {
		t.Errorf("an unchanged answer swapped the files (%s → %s)", before, got)
	}
	last := e.fake.Calls()[len(e.fake.Calls())-1]
	if cv := last.GetCurrentObjectVersion(); len(cv) != 2 || cv[0].GetId() != "db/password" || cv[0].GetVersion() != "1" {
		t.Errorf("the check sent current versions %v, want db/password@1 and api-key@a", cv)
	}
	e.fake.SeedWith(pluginfake.Seed{Objects: map[string]pluginfake.Object{
		"db/password": {Version: "2", Contents: "pw-2", Mode: 0o440},
		"api-key":     {Version: "a", Contents: "key-a"},
	}})
	e.clock.Advance(3 * time.Minute)
	republish()
	if got := e.read(target, "db/password"); got != "pw-2" {
		t.Errorf("after the rotation db/password = %q, want pw-2", got)
	}
	if logs := e.logs.String(); !strings.Contains(logs, "volume rotated") || !strings.Contains(logs, `"db/password@1→2"`) || strings.Contains(logs, "api-key@a→") {
		t.Errorf("the audit line of the rotation does not name db/password@1→2 alone:\n%s", logs)
	}
}
