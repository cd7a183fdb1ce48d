// Package helmchart checks that the Helm chart in deploy/helm renders, with
// its default values, exactly the objects of deploy/ (what `kubectl apply -k
// deploy/` installs), and that its values change what they claim to. It is
// a module of its own so that Helm's dependencies stay out of the driver's.
package helmchart

import (
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"sigs.k8s.io/yaml"
)

const deployDir = "../../deploy"

// objects splits YAML documents into decoded objects keyed by kind/name.
func objects(t *testing.T, docs ...string) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	for _, doc := range docs {
		for _, part := range strings.Split(doc, "\n---") {
			var m map[string]any
			if err := yaml.Unmarshal([]byte(part), &m); err != nil {
				t.Fatalf("decode: %v\n%s", err, part)
			}
			if len(m) == 0 {
				continue
			}
			md, _ := m["metadata"].(map[string]any)
			out[m["kind"].(string)+"/"+md["name"].(string)] = m
		}
	}
	return out
}

func render(t *testing.T, values map[string]any) map[string]map[string]any {
	t.Helper()
	got, err := tryRender(t, values)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// tryRender renders the chart as helm install does: the values are checked
// against values.schema.json first, then the templates run.
func tryRender(t *testing.T, values map[string]any) (map[string]map[string]any, error) {
	t.Helper()
	ch, err := loader.Load(filepath.Join(deployDir, "helm", "podsecrets"))
	if err != nil {
		t.Fatal(err)
	}
	vals, err := chartutil.ToRenderValues(ch, values, chartutil.ReleaseOptions{Name: "podsecrets", Namespace: "kube-system"}, chartutil.DefaultCapabilities)
	if err != nil {
		return nil, err
	}
	files, err := engine.Render(ch, vals)
	if err != nil {
		return nil, err
	}
	var docs []string
	for name, content := range files {
		if strings.HasSuffix(name, ".yaml") {
			docs = append(docs, content)
		}
	}
	for _, crd := range ch.CRDObjects() {
		docs = append(docs, string(crd.File.Data))
	}
	return objects(t, docs...), nil
}

func TestDefaultsMatchDeploy(t *testing.T) {
	var docs []string
	for _, f := range []string{"crd.yaml", "csidriver.yaml", "rbac.yaml", "daemonset.yaml"} {
		b, err := os.ReadFile(filepath.Join(deployDir, f))
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, string(b))
	}
	sameObjects(t, render(t, nil), objects(t, docs...), "deploy/")
}

// sameObjects fails unless the chart rendered (got) exactly the objects of
// the manifests (want, from where).
func sameObjects(t *testing.T, got, want map[string]map[string]any, where string) {
	t.Helper()
	if keys(got) != keys(want) {
		t.Fatalf("chart renders %s, %s has %s", keys(got), where, keys(want))
	}
	// The chart's default pull policy is explicit; deploy/ leaves it to the
	// API server's default for a :latest tag (Always). Align before comparing.
	c := container(want["DaemonSet/podsecrets"])
	c["imagePullPolicy"] = container(got["DaemonSet/podsecrets"])["imagePullPolicy"]
	for k, w := range want {
		if !reflect.DeepEqual(got[k], w) {
			g, _ := yaml.Marshal(got[k])
			wy, _ := yaml.Marshal(w)
			t.Errorf("%s differs:\nchart:\n%s\n%s:\n%s", k, g, where, wy)
		}
	}
}

func TestValues(t *testing.T) {
	got := render(t, map[string]any{
		"image":                        map[string]any{"repository": "registry.example/podsecrets", "tag": "v9", "pullPolicy": "Never"},
		"kubeletRootDir":               "/data/kubelet",
		"region":                       "eu-west-1",
		"logLevel":                     "debug",
		"minPollInterval":              "2m",
		"serviceAccountTokenInSecrets": false,
		"extraEnv":                     []any{map[string]any{"name": "AWS_ENDPOINT_URL", "value": "http://store:4566"}},
	})
	c := container(got["DaemonSet/podsecrets"])
	if c["image"] != "registry.example/podsecrets:v9" || c["imagePullPolicy"] != "Never" {
		t.Errorf("image %v %v", c["image"], c["imagePullPolicy"])
	}
	args := strings.Join(toStrings(c["args"]), " ")
	for _, want := range []string{"--region=eu-west-1", "--log-level=debug", "--kubelet-root-dir=/data/kubelet",
		"--endpoint=unix:///data/kubelet/plugins/csi.podsecrets.dev/csi.sock", "--min-poll-interval=2m"} {
		if !strings.Contains(args, want) {
			t.Errorf("args %q lack %s", args, want)
		}
	}
	if env := c["env"].([]any); len(env) != 2 || env[1].(map[string]any)["name"] != "AWS_ENDPOINT_URL" {
		t.Errorf("env %v lacks the extra variable", env)
	}
	if spec := got["CSIDriver/csi.podsecrets.dev"]["spec"].(map[string]any); spec["serviceAccountTokenInSecrets"] != nil {
		t.Error("serviceAccountTokenInSecrets still set with the value false")
	}
	if !strings.Contains(mustYAML(t, got["DaemonSet/podsecrets"]), "path: /data/kubelet/pods") {
		t.Error("hostPaths do not follow kubeletRootDir")
	}
}

// Rotation needs kubelet's republish and the class metadata watch, whatever
// the values.
func TestRotation(t *testing.T) {
	for name, values := range map[string]map[string]any{
		"defaults":    nil,
		"old-cluster": {"serviceAccountTokenInSecrets": false},
	} {
		t.Run(name, func(t *testing.T) {
			got := render(t, values)
			if spec := got["CSIDriver/csi.podsecrets.dev"]["spec"].(map[string]any); spec["requiresRepublish"] != true {
				t.Errorf("requiresRepublish = %v, want true", spec["requiresRepublish"])
			}
			var verbs []string
			for _, r := range got["ClusterRole/podsecrets"]["rules"].([]any) {
				rule := r.(map[string]any)
				if res := toStrings(rule["resources"]); len(res) == 1 && res[0] == "secretproviderclasses" {
					verbs = append(verbs, toStrings(rule["verbs"])...)
				}
			}
			sort.Strings(verbs)
			if strings.Join(verbs, ",") != "get,list,watch" {
				t.Errorf("secretproviderclasses verbs %v, want get, list, watch", verbs)
			}
			crd := mustYAML(t, got["CustomResourceDefinition/secretproviderclasses.podsecrets.dev"])
			if !strings.Contains(crd, "pollInterval:") || !strings.Contains(crd, "jsonPath: .spec.rotation.pollInterval") {
				t.Error("the chart's CRD lacks spec.rotation.pollInterval or its printer column")
			}
		})
	}
}

func container(ds map[string]any) map[string]any {
	spec := ds["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)
	return spec["containers"].([]any)[0].(map[string]any)
}

func toStrings(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}

func keys(m map[string]map[string]any) string {
	var k []string
	for n := range m {
		k = append(k, n)
	}
	sort.Strings(k)
	return strings.Join(k, ", ")
}

func mustYAML(t *testing.T, v any) string {
	b, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
