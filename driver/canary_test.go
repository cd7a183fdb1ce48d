package driver

import (
	"fmt"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/podsecrets/podsecrets/provider"
)

const (
	tokenCanary  = "eyJhbGciOiJSUzI1NiJ9.TOKEN-CANARY-7f3a.sig"
	secretCanary = "SECRET-CANARY-91c2"
)

// TestNoSecretsInLogsErrorsMetrics drives publishes that succeed, fail in the
// provider, fail validation and republish, all carrying a token canary and a
// secret canary, then searches everything the driver logged, returned and
// exported for either.
func TestNoSecretsInLogsErrorsMetrics(t *testing.T) {
	h := newHarness(t, classObject("default", "db", "fake", nil))
	h.provider.SetFiles(provider.File{Path: "password", Mode: 0o600, Data: []byte(secretCanary)})
	tokens := fmt.Sprintf(`{"sts.amazonaws.com":{"token":%q,"expirationTimestamp":"2030-01-01T00:00:00Z"}}`, tokenCanary)
	withTokens := func(r *csi.NodePublishVolumeRequest) {
		r.VolumeContext[keyTokens] = tokens
		r.Secrets = map[string]string{keyTokens: tokens}
	}
	var returned []string
	record := func(err error) {
		if err != nil {
			returned = append(returned, err.Error())
		}
	}

	ok := h.target("ok")
	record(h.publish(kubeletRequest(ok, "ok", "db", withTokens)))
	record(h.publish(kubeletRequest(ok, "ok", "db", withTokens))) // republish
	record(h.unpublish("csi-ok", ok))

	// Malformed token JSON whose text holds the canary: the parse error
	// must not quote it.
	record(h.publish(kubeletRequest(h.target("bad"), "bad", "db", func(r *csi.NodePublishVolumeRequest) {
		r.VolumeContext[keyTokens] = `{"sts.amazonaws.com":{"token":` + tokenCanary + `}}`
	})))
	record(h.publish(kubeletRequest(h.target("bad2"), "bad2", "db", func(r *csi.NodePublishVolumeRequest) {
		r.Secrets = map[string]string{keyTokens: `["` + tokenCanary + `"`}
	})))

	h.provider.SetError(fmt.Errorf("object %q: %w", "password", provider.ErrPermissionDenied))
	record(h.publish(kubeletRequest(h.target("denied"), "denied", "db", withTokens)))

	if len(returned) != 3 {
		t.Fatalf("got %d errors (%q), want 3: the scenario did not run as planned", len(returned), returned)
	}
	logs := h.logs.String()
	if !strings.Contains(logs, "volume published") || !strings.Contains(logs, "publish failed") {
		t.Fatalf("logs lack the expected records, the test saw nothing:\n%s", logs)
	}
	for what, text := range map[string]string{
		"logs":    logs,
		"errors":  strings.Join(returned, "\n"),
		"metrics": h.metricsText(),
	} {
		for _, canary := range []string{"TOKEN-CANARY-7f3a", secretCanary} {
			if strings.Contains(text, canary) {
				t.Errorf("%s contain canary %q:\n%s", what, canary, text)
			}
		}
	}
	// Neither pod names nor namespaces are metric label values.
	if m := h.metricsText(); strings.Contains(m, `"denied"`) || strings.Contains(m, `"default"`) {
		t.Errorf("metrics carry pod or namespace names:\n%s", m)
	}
}
