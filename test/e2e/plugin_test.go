//go:build e2e

package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/podsecrets/podsecrets/test/pluginfake"
)

// pluginDir is where the driver looks for plugin sockets by default, the
// Secrets Store CSI Driver's directory; the DaemonSet mounts it from the
// host.
const pluginDir = "/var/run/secrets-store-csi-providers"

// confPlugin is the conformance plugin running on the host as its own
// process, serving <pluginDir>/<name>.sock, seeded from a file.
type confPlugin struct {
	t    *testing.T
	name string
	bin  string
	seed string
	cmd  *exec.Cmd
}

func newConfPlugin(t *testing.T, name string) *confPlugin {
	t.Helper()
	dir := t.TempDir()
	p := &confPlugin{t: t, name: name, bin: filepath.Join(dir, "pluginfake"), seed: filepath.Join(dir, "seed.json")}
	build := exec.Command("go", "build", "-o", p.bin, "github.com/podsecrets/podsecrets/test/pluginfake/cmd/pluginfake")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the conformance plugin: %v\n%s", err, out)
	}
	if err := os.MkdirAll(pluginDir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.stop)
	return p
}

// start runs the plugin and returns once its socket exists.
func (p *confPlugin) start() {
	p.t.Helper()
	sock := filepath.Join(pluginDir, p.name+".sock")
	p.cmd = exec.Command(p.bin, "-socket", sock, "-seed", p.seed)
	r, w, err := os.Pipe()
	if err != nil {
		p.t.Fatal(err)
	}
	p.cmd.Stderr = w
	if err := p.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	w.Close()
	// The plugin says it serves once it listens: read up to that line.
	buf := make([]byte, 4096)
	var got strings.Builder
	for !strings.Contains(got.String(), "serving") {
		n, err := r.Read(buf)
		if err != nil {
			p.t.Fatalf("conformance plugin exited before serving: %v\n%s", err, got.String())
		}
		got.Write(buf[:n])
	}
	go func() { // keep draining, so the plugin never blocks on stderr
		for {
			if _, err := r.Read(buf); err != nil {
				r.Close()
				return
			}
		}
	}()
}

// stop ends the plugin (its socket goes with it) and waits for it.
func (p *confPlugin) stop() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	p.cmd.Process.Signal(os.Interrupt)
	p.cmd.Wait()
	p.cmd = nil
}

// waitExit waits for a plugin that is to exit by itself (a scripted crash).
func (p *confPlugin) waitExit() {
	p.cmd.Wait()
	p.cmd = nil
}

func (p *confPlugin) seedWith(s pluginfake.Seed) {
	p.t.Helper()
	b, err := json.Marshal(s)
	if err != nil {
		p.t.Fatal(err)
	}
	tmp := p.seed + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		p.t.Fatal(err)
	}
	if err := os.Rename(tmp, p.seed); err != nil {
		p.t.Fatal(err)
	}
}

func createPluginClass(t *testing.T, ns, name, provider string, params map[string]any, rotate bool) {
	t.Helper()
	spec := map[string]any{"provider": provider, "parameters": params}
	if rotate {
		spec["rotation"] = map[string]any{"pollInterval": pollInterval}
	}
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "podsecrets.dev/v1", "kind": "SecretProviderClass",
		"metadata": map[string]any{"name": name, "namespace": ns}, "spec": spec,
	}}
	if _, err := dyn.Resource(classes).Namespace(ns).Create(ctxT(t), u, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestPluginOnTheNode: pods mount through a v1alpha1 plugin running as its
// own process with its socket in the plugin directory, as Vault's or GCP's
// does: the driver sends what the Secrets Store CSI Driver sends, writes the
// files itself, rotates them by the versions the plugin reports, and a
// plugin that crashes mid-call or is not running yet fails mounts that
// succeed once it serves again.
func TestPluginOnTheNode(t *testing.T) {
	tn := newTenant(t, "plugin")
	ns := tn.ns
	p := newConfPlugin(t, "e2econf")
	p.seedWith(pluginfake.Seed{Objects: map[string]pluginfake.Object{
		"db":  {Version: "1", Contents: "db-pw-1", Mode: 0o440},
		"api": {Version: "a", Contents: "api-key"},
	}})
	p.start()
	createPluginClass(t, ns, "conf", "e2econf", map[string]any{"objects": "db=db.txt,api=api.txt", "echo": "true"}, true)
	createPod(t, ns, podSpec("plug", podOpts{class: "conf"}))
	waitRunning(t, ns, "plug")
	r := readReport(t, ns, "plug")
	if got := r.files["db.txt"]; got.content != "db-pw-1" || got.mode != "440" {
		t.Errorf("db.txt = %+v, want db-pw-1 with the plugin's mode 440", got)
	}
	if r.write != "denied" {
		t.Errorf("the pod could write into its volume (%q)", r.write)
	}
	var echo pluginfake.Echo
	if err := json.Unmarshal([]byte(r.files["request.json"].content), &echo); err != nil {
		t.Fatalf("request.json: %v", err)
	}
	if echo.Attributes["csi.storage.k8s.io/pod.name"] != "plug" || echo.Attributes["csi.storage.k8s.io/pod.namespace"] != ns ||
		echo.Attributes["csi.storage.k8s.io/serviceAccount.name"] != "reader" || echo.Attributes["secretProviderClass"] != "conf" ||
		echo.Permission != "420" || !strings.HasSuffix(echo.TargetPath, "/volumes/kubernetes.io~csi/secrets/mount") || len(echo.TokenAudiences) == 0 {
		t.Errorf("the plugin was sent %+v", echo)
	}
	waitEvent(t, ns, "plug", "SecretsMounted", "mounted db@1, api@a")

	// A new version reported by the plugin rotates the files whole.
	p.seedWith(pluginfake.Seed{Objects: map[string]pluginfake.Object{
		"db":  {Version: "2", Contents: "db-pw-2", Mode: 0o440},
		"api": {Version: "a", Contents: "api-key"},
	}})
	waitEvent(t, ns, "plug", "SecretsRotated", "db@1→2")

	// A crash mid-call fails the mount as retryable ...
	createPluginClass(t, ns, "crashy", "e2econf", map[string]any{"objects": "db", "answer": "crash"}, false)
	createPod(t, ns, podSpec("crashy", podOpts{class: "crashy"}))
	waitEvent(t, ns, "crashy", "FailedMount", "provider plugin e2econf: Unavailable")
	p.waitExit()
	deletePodAndWait(t, ns, "crashy") // its retries would crash the plugin again
	// ... and a pod scheduled while no plugin serves (its crash left the
	// socket file, which refuses connections) waits for one.
	createPluginClass(t, ns, "late", "e2econf", map[string]any{"objects": "api"}, false)
	createPod(t, ns, podSpec("late", podOpts{class: "late"}))
	waitEvent(t, ns, "late", "FailedMount", "SecretProviderClass "+ns+"/late: unavailable: provider plugin e2econf: Unavailable")
	p.start()
	waitRunning(t, ns, "late")
	if got := readReport(t, ns, "late").files["api"].content; got != "api-key" {
		t.Errorf("late pod's api = %q", got)
	}
}
