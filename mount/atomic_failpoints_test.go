//go:build failpoints

package mount

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/podsecrets/podsecrets/internal/failpoint"
)

// TestWriteFileSetFailsAtEveryStep fails each step of a write over a
// previous version: before the "..data" switch the previous set stays and
// nothing new is left; after it the new set is readable. Either way the
// next write leaves exactly one version and the right links.
func TestWriteFileSetFailsAtEveryStep(t *testing.T) {
	prev := files("a", "1", "gone", "x")
	next := files("a", "2", "sub/b", "3", "c", "4")
	for _, tc := range []struct {
		point   string
		swapped bool
	}{
		{FailAfterFile + "=error@1", false},
		{FailAfterFile + "=error@2", false},
		{FailBeforeSwap + "=error", false},
		{FailAfterSwap + "=error", true},
		{FailAfterLinks + "=error", true},
	} {
		t.Run(tc.point, func(t *testing.T) {
			dir := t.TempDir()
			if err := WriteFileSet(dir, prev, nil); err != nil {
				t.Fatal(err)
			}
			before := visible(t, dir)
			name, action, _ := strings.Cut(tc.point, "=")
			disarm := failpoint.Set(name, action)
			err := WriteFileSet(dir, next, nil)
			disarm()
			if err == nil || !strings.Contains(err.Error(), "failpoint "+name) {
				t.Fatalf("WriteFileSet = %v, want the failpoint's error", err)
			}
			want := "map[a:1 gone:x]"
			if tc.swapped {
				want = "map[a:2 c:4 sub/b:3]"
			}
			if got := readSet(t, dir); fmt.Sprint(got) != want {
				t.Fatalf("after the failure the set reads %v, want %v", got, want)
			}
			if !tc.swapped {
				if after := visible(t, dir); fmt.Sprint(after) != fmt.Sprint(before) {
					t.Fatalf("failed write left %v, had %v", after, before)
				}
			}
			if err := WriteFileSet(dir, next, nil); err != nil {
				t.Fatal(err)
			}
			names := visible(t, dir)
			if len(names) != 5 || names[0] != DataDir || !strings.HasPrefix(names[1], versionPrefix) ||
				fmt.Sprint(names[2:]) != "[a c sub]" {
				t.Fatalf("after the repairing write the volume holds %v", names)
			}
			for _, p := range []string{"a", "c", "sub/b"} {
				if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
					t.Fatalf("%s: %v", p, err)
				}
			}
		})
	}
}
