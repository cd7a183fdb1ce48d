package helmchart

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
)

func metricsValues(m map[string]any) map[string]any { return map[string]any{"metrics": m} }

func enabled(extra map[string]any) map[string]any {
	v := map[string]any{"enabled": true}
	for k, x := range extra {
		v[k] = x
	}
	return v
}

// selects reports whether matchLabels selects an object with labels.
func selects(matchLabels, labels any) bool {
	l, _ := labels.(map[string]any)
	m, _ := matchLabels.(map[string]any)
	for k, v := range m {
		if l[k] != v {
			return false
		}
	}
	return len(m) > 0
}

func podLabels(got map[string]map[string]any) any {
	return got["DaemonSet/podsecrets"]["spec"].(map[string]any)["template"].(map[string]any)["metadata"].(map[string]any)["labels"]
}

func meta(obj map[string]any) map[string]any { return obj["metadata"].(map[string]any) }

func TestMonitorsOffByDefault(t *testing.T) {
	got := render(t, nil)
	for _, k := range []string{"PodMonitor/podsecrets", "ServiceMonitor/podsecrets", "Service/podsecrets-metrics", "ConfigMap/podsecrets-dashboard"} {
		if got[k] != nil {
			t.Errorf("%s rendered by default", k)
		}
	}
}

func TestPodMonitor(t *testing.T) {
	got := render(t, metricsValues(map[string]any{"podMonitor": enabled(map[string]any{"interval": "15s", "labels": map[string]any{"release": "prom"}})}))
	pm := got["PodMonitor/podsecrets"]
	if pm == nil {
		t.Fatalf("no PodMonitor in %s", keys(got))
	}
	if pm["apiVersion"] != "monitoring.coreos.com/v1" || meta(pm)["namespace"] != "kube-system" || meta(pm)["labels"].(map[string]any)["release"] != "prom" {
		t.Errorf("PodMonitor %v", pm)
	}
	spec := pm["spec"].(map[string]any)
	if !selects(spec["selector"].(map[string]any)["matchLabels"], podLabels(got)) {
		t.Errorf("PodMonitor selector %v does not select the driver's pods (%v)", spec["selector"], podLabels(got))
	}
	ep := spec["podMetricsEndpoints"].([]any)[0].(map[string]any)
	if ep["port"] != containerPortName(got) || ep["path"] != "/metrics" || ep["interval"] != "15s" {
		t.Errorf("endpoint %v, want port %s, /metrics, 15s", ep, containerPortName(got))
	}
	if got["ServiceMonitor/podsecrets"] != nil || got["Service/podsecrets-metrics"] != nil {
		t.Error("a ServiceMonitor with the PodMonitor")
	}
}

func containerPortName(got map[string]map[string]any) string {
	return container(got["DaemonSet/podsecrets"])["ports"].([]any)[0].(map[string]any)["name"].(string)
}

func TestServiceMonitor(t *testing.T) {
	got := render(t, map[string]any{"httpPort": 9900,
		"metrics": map[string]any{"serviceMonitor": enabled(map[string]any{"labels": map[string]any{"release": "prom"}})}})
	svc, sm := got["Service/podsecrets-metrics"], got["ServiceMonitor/podsecrets"]
	if svc == nil || sm == nil {
		t.Fatalf("no Service or ServiceMonitor in %s", keys(got))
	}
	ss := svc["spec"].(map[string]any)
	if ss["clusterIP"] != "None" || !selects(ss["selector"], podLabels(got)) {
		t.Errorf("Service spec %v: want headless, selecting the driver's pods", ss)
	}
	port := ss["ports"].([]any)[0].(map[string]any)
	if port["targetPort"] != containerPortName(got) || port["port"] != float64(9900) {
		t.Errorf("Service port %v, want 9900 to the container's %s", port, containerPortName(got))
	}
	spec := sm["spec"].(map[string]any)
	if !selects(spec["selector"].(map[string]any)["matchLabels"], meta(svc)["labels"]) {
		t.Errorf("ServiceMonitor selector %v does not select the Service (%v)", spec["selector"], meta(svc)["labels"])
	}
	ep := spec["endpoints"].([]any)[0].(map[string]any)
	if ep["port"] != port["name"] || ep["path"] != "/metrics" || ep["interval"] != "30s" {
		t.Errorf("endpoint %v, want the Service's port %v, /metrics, 30s", ep, port["name"])
	}
	if meta(sm)["labels"].(map[string]any)["release"] != "prom" {
		t.Errorf("ServiceMonitor labels %v lack release: prom", meta(sm)["labels"])
	}
	if got["PodMonitor/podsecrets"] != nil {
		t.Error("a PodMonitor with the ServiceMonitor")
	}
}

func TestMonitorsExclusive(t *testing.T) {
	_, err := tryRender(t, metricsValues(map[string]any{"podMonitor": enabled(nil), "serviceMonitor": enabled(nil)}))
	if err == nil || !strings.Contains(err.Error(), "both enabled") {
		t.Fatalf("error %v, want one saying both monitors are enabled", err)
	}
}

// collectorMetrics are the Go runtime and process collectors' metrics the
// dashboard may use beside the driver's own (driver.NewMetrics registers
// both collectors).
var collectorMetrics = []string{"go_goroutines", "go_memstats_heap_inuse_bytes", "process_cpu_seconds_total",
	"process_resident_memory_bytes", "process_start_time_seconds"}

// driverMetrics reads the names of the driver's metrics from its source, so
// that a metric renamed or added without its panel fails here.
func driverMetrics(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "driver", "metrics.go"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range regexp.MustCompile(`Name:\s+"(podsecrets_[a-z_]+)"`).FindAllStringSubmatch(string(b), -1) {
		names = append(names, m[1])
	}
	if len(names) == 0 {
		t.Fatal("no metric names found in driver/metrics.go")
	}
	return names
}

func TestDashboard(t *testing.T) {
	got := render(t, metricsValues(map[string]any{"dashboard": enabled(map[string]any{
		"namespace": "monitoring", "annotations": map[string]any{"grafana_folder": "Platform"}})}))
	cm := got["ConfigMap/podsecrets-dashboard"]
	if cm == nil {
		t.Fatalf("no dashboard ConfigMap in %s", keys(got))
	}
	md := meta(cm)
	if md["namespace"] != "monitoring" || md["labels"].(map[string]any)["grafana_dashboard"] != "1" ||
		md["annotations"].(map[string]any)["grafana_folder"] != "Platform" {
		t.Errorf("ConfigMap metadata %v: want namespace monitoring, label grafana_dashboard: \"1\", the annotation", md)
	}
	var dash struct {
		UID    string `json:"uid"`
		Panels []struct {
			ID      int    `json:"id"`
			Type    string `json:"type"`
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal([]byte(cm["data"].(map[string]any)["podsecrets.json"].(string)), &dash); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	if dash.UID == "" {
		t.Error("dashboard without a uid: Grafana would import a copy at every sidecar reload")
	}
	known := append(driverMetrics(t), collectorMetrics...)
	used := map[string]bool{}
	ids := map[int]bool{}
	metricRE := regexp.MustCompile(`\b((?:podsecrets|go|process)_[a-z_]+)\b`)
	for _, p := range dash.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d twice", p.ID)
		}
		ids[p.ID] = true
		if p.Type != "row" && len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			for _, m := range metricRE.FindAllStringSubmatch(tg.Expr, -1) {
				name := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(m[1], "_bucket"), "_sum"), "_count")
				if !slices.Contains(known, name) {
					t.Errorf("panel %q queries %s, which the driver does not export", p.Title, m[1])
				}
				used[name] = true
			}
		}
	}
	var missing []string
	for _, m := range driverMetrics(t) {
		if !used[m] {
			missing = append(missing, m)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("no panel shows %v", missing)
	}
	// The dashboard is a file of the chart; the ConfigMap carries it whole.
	file, err := os.ReadFile(filepath.Join(deployDir, "helm", "podsecrets", "files", "dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var a, b any
	if json.Unmarshal(file, &a) != nil || json.Unmarshal([]byte(cm["data"].(map[string]any)["podsecrets.json"].(string)), &b) != nil || !reflect.DeepEqual(a, b) {
		t.Error("the ConfigMap's dashboard differs from files/dashboard.json")
	}
}

func TestDashboardDefaultNamespace(t *testing.T) {
	got := render(t, metricsValues(map[string]any{"dashboard": enabled(nil)}))
	if ns := meta(got["ConfigMap/podsecrets-dashboard"])["namespace"]; ns != "kube-system" {
		t.Errorf("namespace %v, want the release's", ns)
	}
}
