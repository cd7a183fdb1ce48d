//go:build e2e

package e2e

import (
	"encoding/base64"
	"testing"
)

func decodeB64(t *testing.T, s string) string {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatalf("bad base64 from pod: %v", err)
	}
	return string(b)
}
