package helmchart

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chartutil"
)

func podSpec(ds map[string]any) map[string]any {
	return ds["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)
}

func audiences(t *testing.T, got map[string]map[string]any) []string {
	t.Helper()
	var out []string
	for _, tr := range got["CSIDriver/csi.podsecrets.dev"]["spec"].(map[string]any)["tokenRequests"].([]any) {
		out = append(out, tr.(map[string]any)["audience"].(string))
	}
	return out
}

func TestTokenAudiences(t *testing.T) {
	if got, want := audiences(t, render(t, nil)), []string{"sts.amazonaws.com", "pods.eks.amazonaws.com"}; !slices.Equal(got, want) {
		t.Errorf("default audiences %v, want %v (IRSA and Pod Identity)", got, want)
	}
	want := []string{"sts.amazonaws.com", "pods.eks.amazonaws.com", "vault", "my-project.svc.id.goog"}
	if got := audiences(t, render(t, map[string]any{"tokenAudiences": toAny(want)})); !slices.Equal(got, want) {
		t.Errorf("audiences %v, want %v", got, want)
	}
}

// rulesFor returns the verbs the ClusterRole grants on resource, per rule.
func rulesFor(got map[string]map[string]any, resource string) [][]string {
	var out [][]string
	for _, r := range got["ClusterRole/podsecrets"]["rules"].([]any) {
		rule := r.(map[string]any)
		if slices.Contains(toStrings(rule["resources"]), resource) {
			out = append(out, toStrings(rule["verbs"]))
		}
	}
	return out
}

func TestStartupTaint(t *testing.T) {
	off := render(t, nil)
	if args := toStrings(container(off["DaemonSet/podsecrets"])["args"]); slices.ContainsFunc(args, func(a string) bool {
		return strings.HasPrefix(a, "--startup-taint")
	}) {
		t.Errorf("startup taint flag by default: %v", args)
	}
	if got := rulesFor(off, "nodes"); !reflect.DeepEqual(got, [][]string{{"get"}}) {
		t.Errorf("nodes verbs by default %v, want only get (the region label)", got)
	}

	for name, tc := range map[string]struct {
		values map[string]any
		key    string
		// tolerations wanted on the DaemonSet's pods
		tolerations []any
	}{
		"default key": {
			values:      map[string]any{"startupTaint": map[string]any{"enabled": true}},
			key:         "podsecrets.dev/agent-not-ready",
			tolerations: []any{map[string]any{"operator": "Exists"}, map[string]any{"key": "podsecrets.dev/agent-not-ready", "operator": "Exists"}},
		},
		// Tolerations narrowed by the operator still let the driver onto
		// the nodes it is to untaint.
		"own key, no catch-all": {
			values: map[string]any{"startupTaint": map[string]any{"enabled": true, "key": "example.com/secrets-not-ready"},
				"tolerations": []any{}},
			key:         "example.com/secrets-not-ready",
			tolerations: []any{map[string]any{"key": "example.com/secrets-not-ready", "operator": "Exists"}},
		},
	} {
		t.Run(name, func(t *testing.T) {
			got := render(t, tc.values)
			ds := got["DaemonSet/podsecrets"]
			if args := toStrings(container(ds)["args"]); !slices.Contains(args, "--startup-taint="+tc.key) {
				t.Errorf("args %v lack --startup-taint=%s", args, tc.key)
			}
			if tol := podSpec(ds)["tolerations"]; !reflect.DeepEqual(tol, tc.tolerations) {
				t.Errorf("tolerations %v, want %v", tol, tc.tolerations)
			}
			// Patch is added for nodes, and nothing else.
			if got := rulesFor(got, "nodes"); !reflect.DeepEqual(got, [][]string{{"get"}, {"patch"}}) {
				t.Errorf("nodes verbs %v, want get and patch", got)
			}
			if n, m := len(got["ClusterRole/podsecrets"]["rules"].([]any)), len(off["ClusterRole/podsecrets"]["rules"].([]any)); n != m+1 {
				t.Errorf("%d rules, want the %d of the defaults plus one", n, m)
			}
		})
	}
}

// The kustomize component of the startup taint installs what the chart
// does with startupTaint.enabled.
func TestStartupTaintComponentMatchesChart(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl not found; it builds the kustomize overlay")
	}
	dir := t.TempDir()
	abs, err := filepath.Abs(deployDir)
	if err != nil {
		t.Fatal(err)
	}
	// kustomize takes relative paths only.
	rel, err := filepath.Rel(dir, abs)
	if err != nil {
		t.Fatal(err)
	}
	overlay := "resources: [" + rel + "]\ncomponents: [" + filepath.Join(rel, "components", "startup-taint") + "]\n"
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(overlay), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(kubectl, "kustomize", dir).Output()
	if err != nil {
		t.Fatalf("kubectl kustomize: %v\n%s", err, stderr(err))
	}
	sameObjects(t, render(t, map[string]any{"startupTaint": map[string]any{"enabled": true}}), objects(t, string(out)),
		"deploy/ with components/startup-taint")
}

func stderr(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}

func TestUpdateStrategy(t *testing.T) {
	strategy := func(values map[string]any) any {
		return render(t, values)["DaemonSet/podsecrets"]["spec"].(map[string]any)["updateStrategy"]
	}
	for name, tc := range map[string]struct {
		values map[string]any
		want   any
	}{
		"percentage": {
			values: map[string]any{"updateStrategy": map[string]any{"rollingUpdate": map[string]any{"maxUnavailable": "10%"}}},
			want:   map[string]any{"type": "RollingUpdate", "rollingUpdate": map[string]any{"maxUnavailable": "10%"}},
		},
		"number": {
			values: map[string]any{"updateStrategy": map[string]any{"rollingUpdate": map[string]any{"maxUnavailable": 5}}},
			want:   map[string]any{"type": "RollingUpdate", "rollingUpdate": map[string]any{"maxUnavailable": float64(5)}},
		},
		// OnDelete takes no rollingUpdate, which the API server refuses
		// beside it.
		"on delete": {
			values: map[string]any{"updateStrategy": map[string]any{"type": "OnDelete"}},
			want:   map[string]any{"type": "OnDelete"},
		},
	} {
		t.Run(name, func(t *testing.T) {
			if got := strategy(tc.values); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("updateStrategy %v, want %v", got, tc.want)
			}
		})
	}
}

func TestResources(t *testing.T) {
	want := map[string]any{
		"requests": map[string]any{"cpu": "50m", "memory": "64Mi"},
		"limits":   map[string]any{"memory": "256Mi"},
	}
	got := render(t, map[string]any{"resources": want})
	if r := container(got["DaemonSet/podsecrets"])["resources"]; !reflect.DeepEqual(r, want) {
		t.Errorf("resources %v, want %v", r, want)
	}
}

// Numbers in a values file reach the chart as floats; the flags must get
// integers, not exponent notation.
func TestQuantitiesFromValuesFile(t *testing.T) {
	vals, err := chartutil.ReadValues([]byte("tmpfsSize: 16777216\nmaxNodeVolumeBytes: 0\npublishMemory: 100663296\nkubeApiQps: 50.5\n"))
	if err != nil {
		t.Fatal(err)
	}
	args := toStrings(container(render(t, vals.AsMap())["DaemonSet/podsecrets"])["args"])
	for _, want := range []string{"--tmpfs-size=16777216", "--max-node-volume-bytes=0", "--publish-memory=100663296", "--kube-api-qps=50.5"} {
		if !slices.Contains(args, want) {
			t.Errorf("args %v lack %s", args, want)
		}
	}
}

func toAny(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

// pluginMounts returns the container's mount paths and the pod's hostPath
// volumes named plugins-N.
func pluginMounts(ds map[string]any) (mounts, hostPaths []string) {
	for _, m := range container(ds)["volumeMounts"].([]any) {
		if mm := m.(map[string]any); strings.HasPrefix(mm["name"].(string), "plugins-") {
			mounts = append(mounts, mm["mountPath"].(string))
		}
	}
	for _, v := range podSpec(ds)["volumes"].([]any) {
		if vv := v.(map[string]any); strings.HasPrefix(vv["name"].(string), "plugins-") {
			hostPaths = append(hostPaths, vv["hostPath"].(map[string]any)["path"].(string))
		}
	}
	return mounts, hostPaths
}

func TestPluginDirs(t *testing.T) {
	for name, tc := range map[string]struct {
		dirs     []any
		wantFlag string // "" for none
		want     []string
	}{
		"defaults": {dirs: nil, want: []string{"/var/run/secrets-store-csi-providers", "/etc/kubernetes/secrets-store-csi-providers"}},
		"own":      {dirs: []any{"/run/plugins"}, wantFlag: "--plugin-dirs=/run/plugins", want: []string{"/run/plugins"}},
		"none":     {dirs: []any{}, wantFlag: "--plugin-dirs="},
	} {
		t.Run(name, func(t *testing.T) {
			var values map[string]any
			if tc.dirs != nil {
				values = map[string]any{"pluginDirs": tc.dirs}
			}
			ds := render(t, values)["DaemonSet/podsecrets"]
			args := toStrings(container(ds)["args"])
			flags := slices.DeleteFunc(slices.Clone(args), func(a string) bool { return !strings.HasPrefix(a, "--plugin-dirs") })
			if tc.wantFlag == "" && len(flags) > 0 || tc.wantFlag != "" && !slices.Equal(flags, []string{tc.wantFlag}) {
				t.Errorf("plugin flags %v, want %q", flags, tc.wantFlag)
			}
			// Each directory is mounted at the path the driver looks in.
			mounts, hostPaths := pluginMounts(ds)
			if !slices.Equal(mounts, tc.want) || !slices.Equal(hostPaths, tc.want) {
				t.Errorf("plugin mounts %v from host %v, want %v", mounts, hostPaths, tc.want)
			}
		})
	}
}
