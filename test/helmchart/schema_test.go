package helmchart

import (
	"strings"
	"testing"
)

// values.schema.json is checked by helm install, template and upgrade
// before any template runs; ToRenderValues is where Helm does it.
func TestSchemaRefuses(t *testing.T) {
	for name, tc := range map[string]struct {
		values map[string]any
		// want names the offending value in Helm's message
		want string
	}{
		"unknown key":              {map[string]any{"tmpfsSzie": "16Mi"}, "tmpfsSzie"},
		"unknown nested key":       {map[string]any{"image": map[string]any{"repository": "r", "tag": "t", "digest": "sha256:0"}}, "digest"},
		"quantity with a space":    {map[string]any{"tmpfsSize": "8 Mi"}, "/tmpfsSize"},
		"quantity unit":            {map[string]any{"maxNodeVolumeBytes": "1GB"}, "/maxNodeVolumeBytes"},
		"negative quantity":        {map[string]any{"publishMemory": "-48Mi"}, "/publishMemory"},
		"zero tmpfs":               {map[string]any{"tmpfsSize": "0Mi"}, "/tmpfsSize"},
		"zero tmpfs number":        {map[string]any{"tmpfsSize": 0}, "/tmpfsSize"},
		"duration without unit":    {map[string]any{"minPollInterval": "30"}, "/minPollInterval"},
		"duration in days":         {map[string]any{"minPollInterval": "1d"}, "/minPollInterval"},
		"log level":                {map[string]any{"logLevel": "verbose"}, "/logLevel"},
		"log format":               {map[string]any{"logFormat": "xml"}, "/logFormat"},
		"volume memory":            {map[string]any{"volumeMemory": "node"}, "/volumeMemory"},
		"pull policy":              {map[string]any{"image": map[string]any{"repository": "r", "tag": "t", "pullPolicy": "Sometimes"}}, "/image/pullPolicy"},
		"port":                     {map[string]any{"httpPort": 70000}, "/httpPort"},
		"port as string":           {map[string]any{"httpPort": "9808"}, "/httpPort"},
		"writers":                  {map[string]any{"maxConcurrentWrites": 0}, "/maxConcurrentWrites"},
		"region":                   {map[string]any{"region": "EU West"}, "/region"},
		"relative kubelet dir":     {map[string]any{"kubeletRootDir": "var/lib/kubelet"}, "/kubeletRootDir"},
		"relative plugin dir":      {map[string]any{"pluginDirs": []any{"run/plugins"}}, "/pluginDirs/0"},
		"no audience":              {map[string]any{"tokenAudiences": []any{}}, "/tokenAudiences"},
		"audience twice":           {map[string]any{"tokenAudiences": []any{"vault", "vault"}}, "/tokenAudiences"},
		"taint key with an effect": {map[string]any{"startupTaint": map[string]any{"enabled": true, "key": "podsecrets.dev/x:NoSchedule"}}, "/startupTaint/key"},
		"taint enabled as string":  {map[string]any{"startupTaint": map[string]any{"enabled": "yes"}}, "/startupTaint/enabled"},
		"strategy type":            {map[string]any{"updateStrategy": map[string]any{"type": "Recreate"}}, "/updateStrategy/type"},
		"surge":                    {map[string]any{"updateStrategy": map[string]any{"rollingUpdate": map[string]any{"maxUnavailable": 1, "maxSurge": 1}}}, "maxSurge"},
		"no unavailable":           {map[string]any{"updateStrategy": map[string]any{"rollingUpdate": map[string]any{"maxUnavailable": 0}}}, "/updateStrategy/rollingUpdate/maxUnavailable"},
		"unavailable percent":      {map[string]any{"updateStrategy": map[string]any{"rollingUpdate": map[string]any{"maxUnavailable": "150%"}}}, "/updateStrategy/rollingUpdate/maxUnavailable"},
		"resource quantity":        {map[string]any{"resources": map[string]any{"limits": map[string]any{"memory": "128MB"}}}, "/resources/limits/memory"},
		"resource section":         {map[string]any{"resources": map[string]any{"limit": map[string]any{"memory": "128Mi"}}}, "limit"},
		"toleration operator":      {map[string]any{"tolerations": []any{map[string]any{"operator": "Any"}}}, "/tolerations/0/operator"},
		"env value and valueFrom":  {map[string]any{"extraEnv": []any{map[string]any{"name": "A", "value": "1", "valueFrom": map[string]any{}}}}, "/extraEnv/0"},
		"monitor interval":         {map[string]any{"metrics": map[string]any{"podMonitor": map[string]any{"enabled": true, "interval": "30"}}}, "/metrics/podMonitor/interval"},
		"dashboard namespace":      {map[string]any{"metrics": map[string]any{"dashboard": map[string]any{"enabled": true, "namespace": "Monitoring"}}}, "/metrics/dashboard/namespace"},
		"dashboard label value":    {map[string]any{"metrics": map[string]any{"dashboard": map[string]any{"enabled": true, "labels": map[string]any{"grafana_dashboard": 1}}}}, "/metrics/dashboard/labels/grafana_dashboard"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := tryRender(t, tc.values)
			if err == nil {
				t.Fatalf("values %v rendered; the schema must refuse them", tc.values)
			}
			if !strings.Contains(err.Error(), "values don't meet the specifications of the schema") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q: want the schema's, naming %q", err, tc.want)
			}
		})
	}
}

// What the schema must let through: every form the flags and the
// Kubernetes fields take.
func TestSchemaAccepts(t *testing.T) {
	for name, values := range map[string]map[string]any{
		"defaults":            nil,
		"quantities":          {"tmpfsSize": "1.5Mi", "maxNodeVolumeBytes": "0", "publishMemory": "64M"},
		"integer quantities":  {"tmpfsSize": 16777216, "maxNodeVolumeBytes": 0},
		"durations":           {"minPollInterval": "1h30m"},
		"region":              {"region": "us-gov-west-1"},
		"unavailable percent": {"updateStrategy": map[string]any{"rollingUpdate": map[string]any{"maxUnavailable": "25%"}}},
		"api server audience": {"tokenAudiences": []any{"sts.amazonaws.com", ""}},
		"env from field":      {"extraEnv": []any{map[string]any{"name": "A", "valueFrom": map[string]any{"fieldRef": map[string]any{"fieldPath": "spec.nodeName"}}}}},
		"tolerations":         {"tolerations": []any{map[string]any{"key": "k", "operator": "Equal", "value": "v", "effect": "NoExecute", "tolerationSeconds": 30}}},
		"extended resources":  {"resources": map[string]any{"limits": map[string]any{"memory": "128Mi", "ephemeral-storage": "1Gi", "cpu": 1}}},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := tryRender(t, values); err != nil {
				t.Fatalf("values %v refused: %v", values, err)
			}
		})
	}
}
