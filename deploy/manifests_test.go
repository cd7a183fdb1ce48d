// Package deploy holds the manifests that install podsecrets; its test keeps
// them honest about what the driver relies on.
package deploy

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	storagev1 "k8s.io/api/storage/v1"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"

	"github.com/podsecrets/podsecrets/kube"
	"github.com/podsecrets/podsecrets/provider/plugin"
)

// decode reads the documents of a manifest file into their kinds.
func decode(t *testing.T, file string, into ...any) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	docs := strings.Split(string(b), "\n---\n")
	if len(docs) < len(into) {
		t.Fatalf("%s has %d documents, want %d", file, len(docs), len(into))
	}
	for i, obj := range into {
		if obj == nil {
			continue
		}
		if err := yaml.UnmarshalStrict([]byte(docs[i]), obj); err != nil {
			t.Fatalf("%s document %d: %v", file, i, err)
		}
	}
}

func TestCSIDriver(t *testing.T) {
	var d storagev1.CSIDriver
	decode(t, "csidriver.yaml", &d)
	s := d.Spec
	switch {
	case d.Name != "csi.podsecrets.dev":
		t.Errorf("name %q", d.Name)
	case s.AttachRequired == nil || *s.AttachRequired:
		t.Error("attachRequired must be false")
	case s.PodInfoOnMount == nil || !*s.PodInfoOnMount:
		t.Error("podInfoOnMount must be true: the driver needs the pod's namespace and service account")
	case len(s.VolumeLifecycleModes) != 1 || s.VolumeLifecycleModes[0] != storagev1.VolumeLifecycleEphemeral:
		t.Errorf("volumeLifecycleModes %v, want [Ephemeral]", s.VolumeLifecycleModes)
	case s.FSGroupPolicy == nil || *s.FSGroupPolicy != storagev1.FileFSGroupPolicy:
		t.Error("fsGroupPolicy must be File so kubelet delegates the fsGroup")
	case s.ServiceAccountTokenInSecrets == nil || !*s.ServiceAccountTokenInSecrets:
		t.Error("serviceAccountTokenInSecrets must be true")
	case s.RequiresRepublish == nil || !*s.RequiresRepublish:
		t.Error("requiresRepublish must be true: rotation happens on kubelet's periodic NodePublishVolume")
	}
	auds := map[string]bool{}
	for _, tr := range s.TokenRequests {
		auds[tr.Audience] = true
	}
	if !auds["sts.amazonaws.com"] || !auds["pods.eks.amazonaws.com"] {
		t.Errorf("tokenRequests %v must cover IRSA and Pod Identity", s.TokenRequests)
	}
}

func TestRBACIsLeast(t *testing.T) {
	var role rbacv1.ClusterRole
	decode(t, "rbac.yaml", nil, &role, nil)
	var classVerbs []string
	for _, r := range role.Rules {
		only := func(res string) bool { return len(r.Resources) == 1 && r.Resources[0] == res }
		if only("secretproviderclasses") {
			classVerbs = append(classVerbs, r.Verbs...)
		}
		for _, v := range r.Verbs {
			// Events and its own version records are the only things the
			// driver writes; records are created, never updated. Classes
			// are the one thing it lists and watches (their metadata, for
			// rotation).
			events := only("events") && (v == "create" || v == "patch")
			records := only("secretversionrecords") && v == "create"
			classes := only("secretproviderclasses") && (v == "list" || v == "watch")
			if v != "get" && !events && !records && !classes {
				t.Errorf("rule %v grants %q; the driver only gets objects by name, watches classes, creates its records and writes events", r, v)
			}
		}
		for _, res := range r.Resources {
			if res == "secrets" || res == "*" {
				t.Errorf("rule %v reaches Kubernetes Secrets", r)
			}
		}
	}
	slices.Sort(classVerbs)
	if !slices.Equal(classVerbs, []string{"get", "list", "watch"}) {
		t.Errorf("secretproviderclasses verbs %v, want [get list watch]: GetClass and the class metadata watch", classVerbs)
	}
}

func TestDaemonSet(t *testing.T) {
	var ds appsv1.DaemonSet
	decode(t, "daemonset.yaml", &ds)
	spec := ds.Spec.Template.Spec
	if spec.PriorityClassName != "system-node-critical" {
		t.Errorf("priorityClassName %q", spec.PriorityClassName)
	}
	if len(spec.Containers) != 1 {
		t.Fatalf("%d containers, want one: registration is served by the driver, no sidecars", len(spec.Containers))
	}
	c := spec.Containers[0]
	if c.SecurityContext == nil || c.SecurityContext.Privileged == nil || !*c.SecurityContext.Privileged {
		t.Error("the plugin container must be privileged to mount")
	}
	if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" {
		t.Error("liveness must probe /healthz")
	}
	mounts := map[string]string{}
	for _, m := range c.VolumeMounts {
		prop := ""
		if m.MountPropagation != nil {
			prop = string(*m.MountPropagation)
		}
		mounts[m.MountPath] = prop
	}
	if mounts["/var/lib/kubelet/pods"] != "Bidirectional" {
		t.Error("the kubelet pods dir must be mounted with Bidirectional propagation")
	}
	if _, ok := mounts["/var/lib/kubelet/plugins_registry"]; !ok {
		t.Error("the plugins_registry dir must be mounted for registration")
	}
	// Provider plugins' sockets are looked for where the host has them.
	hostPaths := map[string]string{}
	for _, v := range spec.Volumes {
		if v.HostPath != nil {
			hostPaths[v.Name] = v.HostPath.Path
		}
	}
	for _, dir := range plugin.DefaultDirs {
		found := false
		for _, m := range c.VolumeMounts {
			found = found || m.MountPath == dir && hostPaths[m.Name] == dir
		}
		if !found {
			t.Errorf("the plugin directory %s is not mounted from the same host path", dir)
		}
	}
}

func TestCRD(t *testing.T) {
	var crd apiextv1.CustomResourceDefinition
	decode(t, "crd.yaml", &crd)
	if crd.Name != "secretproviderclasses.podsecrets.dev" || crd.Spec.Group != "podsecrets.dev" {
		t.Fatalf("CRD %s group %s", crd.Name, crd.Spec.Group)
	}
	v := crd.Spec.Versions[0]
	if v.Name != "v1" || v.Schema == nil {
		t.Fatal("v1 with a schema is required")
	}
	spec := v.Schema.OpenAPIV3Schema.Properties["spec"]
	params := spec.Properties["parameters"]
	if spec.Properties["provider"].Type != "string" || params.AdditionalProperties == nil ||
		params.AdditionalProperties.Schema.Type != "string" {
		t.Error("spec.provider must be a string and spec.parameters a map of strings")
	}
	rotation := spec.Properties["rotation"]
	if rotation.Type != "object" || slices.Contains(spec.Required, "rotation") || len(rotation.Required) != 0 {
		t.Error("spec.rotation must be an optional object with optional fields: absent means never rotate")
	}
	pi := rotation.Properties["pollInterval"]
	if pi.Type != "string" || pi.Pattern == "" {
		t.Fatalf("spec.rotation.pollInterval: type %q, pattern %q; want a string with a pattern", pi.Type, pi.Pattern)
	}
	var col bool
	for _, c := range v.AdditionalPrinterColumns {
		col = col || c.Name == "Rotation" && c.JSONPath == ".spec.rotation.pollInterval"
	}
	if !col {
		t.Errorf("printer columns %v lack Rotation (.spec.rotation.pollInterval)", v.AdditionalPrinterColumns)
	}
}

// The API server checks a pattern with Go's regexp, as here. What the
// pattern accepts must parse with time.ParseDuration, as the driver parses
// it; what it refuses would otherwise fail only at mount time.
func TestCRDPollIntervalPattern(t *testing.T) {
	var crd apiextv1.CustomResourceDefinition
	decode(t, "crd.yaml", &crd)
	pi := crd.Spec.Versions[0].Schema.OpenAPIV3Schema.Properties["spec"].Properties["rotation"].Properties["pollInterval"]
	re, err := regexp.Compile(pi.Pattern)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"30s", "2m", "1h30m", "1.5h", "500ms", "10us", "10µs", "10μs", "100ns", "1h0m0s", "0s"} {
		if !re.MatchString(v) {
			t.Errorf("pattern refuses %q", v)
		}
		if _, err := time.ParseDuration(v); err != nil {
			t.Errorf("pattern accepts %q, which the driver cannot parse: %v", v, err)
		}
	}
	for _, v := range []string{"", "30", "-1m", "+1m", "1d", "1 m", "1m ", "m", ".5s", "1.s", "1S", "PT30S", "30s\n"} {
		if re.MatchString(v) {
			t.Errorf("pattern accepts %q", v)
		}
	}
}

// The startup-taint component names the key the driver documents and
// grants nothing beyond patch on nodes; test/helmchart checks that it
// installs what the chart's startupTaint.enabled does.
func TestStartupTaintComponent(t *testing.T) {
	var c struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Patches    []struct {
			Target struct{ Kind, Name string } `json:"target"`
			Patch  string                      `json:"patch"`
		} `json:"patches"`
	}
	decode(t, "components/startup-taint/kustomization.yaml", &c)
	if c.Kind != "Component" || len(c.Patches) != 2 {
		t.Fatalf("kind %q with %d patches, want a Component with two", c.Kind, len(c.Patches))
	}
	type op struct {
		Op    string `json:"op"`
		Path  string `json:"path"`
		Value any    `json:"value"`
	}
	var ops []op
	for _, p := range c.Patches {
		var these []op
		if err := yaml.UnmarshalStrict([]byte(p.Patch), &these); err != nil {
			t.Fatalf("patch of %s/%s: %v", p.Target.Kind, p.Target.Name, err)
		}
		ops = append(ops, these...)
	}
	var flag, toleration, rule bool
	for _, op := range ops {
		switch v := op.Value.(type) {
		case string:
			flag = flag || v == "--startup-taint="+kube.DefaultStartupTaint
		case map[string]any:
			toleration = toleration || v["key"] == kube.DefaultStartupTaint && v["operator"] == "Exists"
			if res, ok := v["resources"].([]any); ok {
				verbs := v["verbs"].([]any)
				rule = len(res) == 1 && res[0] == "nodes" && len(verbs) == 1 && verbs[0] == "patch"
			}
		}
	}
	if !flag || !toleration || !rule {
		t.Errorf("component: flag %v, toleration %v, nodes patch rule %v; want --startup-taint=%s, its toleration and patch on nodes only",
			flag, toleration, rule, kube.DefaultStartupTaint)
	}
}
