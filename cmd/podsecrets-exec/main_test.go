package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestStandardLibraryOnly: the binary is copied into every pod that uses
// it, so it stays small: nothing of Kubernetes, gRPC or AWS, no cgo.
func TestStandardLibraryOnly(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, pkg := range strings.Fields(string(out)) {
		switch pkg {
		case "github.com/podsecrets/podsecrets/cmd/podsecrets-exec", "github.com/podsecrets/podsecrets/envexec":
		default:
			t.Errorf("podsecrets-exec imports %s; it may import only the standard library and envexec", pkg)
		}
	}
}
