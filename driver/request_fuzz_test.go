package driver

import (
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
)

// FuzzParsePublish feeds kubelet's request fields, the tokens JSON among
// them, to parsePublish: it must never panic, and no token may reach an
// error message.
func FuzzParsePublish(f *testing.F) {
	f.Add("db", "1234", `{"sts.amazonaws.com":{"token":"tkn-secret","expirationTimestamp":"2030-01-01T00:00:00Z"}}`, "")
	f.Add("ns/db", "", `{"a":{"token":"tkn-secret"`, `{"b":{"token":"tkn-secret","expirationTimestamp":"x"}}`)
	f.Add("", "-1", "", "null")
	f.Fuzz(func(t *testing.T, class, group, ctxTokens, secretTokens string) {
		req := kubeletRequest("/target", "p", class, func(r *csi.NodePublishVolumeRequest) {
			r.VolumeCapability.GetMount().VolumeMountGroup = group
			r.VolumeContext[keyTokens] = ctxTokens
			r.Secrets = map[string]string{keyTokens: secretTokens}
		})
		pr, err := parsePublish(req)
		if err != nil {
			if strings.Contains(err.Error(), "tkn-secret") {
				t.Fatalf("error %q quotes a token", err)
			}
			return
		}
		if pr.class != class || strings.Contains(pr.class, "/") {
			t.Fatalf("class %q parsed as %q", class, pr.class)
		}
	})
}
