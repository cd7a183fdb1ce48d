package memcg

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const testUID = "0b7c6f2e-8d4a-4c1e-9f3b-2a5d6e7f8a9b"

// fakeTree makes root look like a cgroup v1 or v2 mount holding the cgroup
// directories dirs (slash-separated, relative to the memory hierarchy).
func fakeTree(t *testing.T, v2 bool, dirs ...string) (root, base string) {
	t.Helper()
	root = t.TempDir()
	base = filepath.Join(root, "memory")
	marker := filepath.Join(base, "cgroup.procs")
	if v2 {
		base = root
		marker = filepath.Join(root, "cgroup.controllers")
	}
	if err := os.MkdirAll(base, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(marker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs {
		p := filepath.Join(base, filepath.FromSlash(d))
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(p, "cgroup.procs"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root, base
}

func TestPodCgroupLayouts(t *testing.T) {
	suid := strings.ReplaceAll(testUID, "-", "_")
	for _, tc := range []struct {
		name, parent, dir string
	}{
		{"cgroupfs guaranteed", "", "kubepods/pod" + testUID},
		{"cgroupfs burstable", "kubepods", "kubepods/burstable/pod" + testUID},
		{"cgroupfs besteffort", "/kubepods/", "kubepods/besteffort/pod" + testUID},
		{"systemd guaranteed", "", "kubepods.slice/kubepods-pod" + suid + ".slice"},
		{"systemd burstable", "", "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + suid + ".slice"},
		{"systemd besteffort", "", "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + suid + ".slice"},
		{"systemd parent given as slice", "kubepods.slice", "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + suid + ".slice"},
		{"nested cgroupfs parent", "test-root/kubepods", "test-root/kubepods/besteffort/pod" + testUID},
		{"nested systemd parent", "test-root/kubepods", "test_root.slice/test_root-kubepods.slice/test_root-kubepods-besteffort.slice/test_root-kubepods-besteffort-pod" + suid + ".slice"},
	} {
		for _, v2 := range []bool{false, true} {
			name := tc.name + " v1"
			if v2 {
				name = tc.name + " v2"
			}
			t.Run(name, func(t *testing.T) {
				root, base := fakeTree(t, v2, tc.dir, "kubepods/burstable/podother")
				got, err := PodCgroup(root, tc.parent, testUID)
				if err != nil {
					t.Fatal(err)
				}
				if want := filepath.Join(base, filepath.FromSlash(tc.dir)); got != want {
					t.Errorf("PodCgroup = %s, want %s", got, want)
				}
				cg, err := findPodCgroup(root, tc.parent, testUID)
				if err != nil || cg.v2 != v2 {
					t.Errorf("findPodCgroup v2 = %v (%v), want %v", cg.v2, err, v2)
				}
			})
		}
	}
}

func TestPodCgroupNotFound(t *testing.T) {
	root, _ := fakeTree(t, false, "kubepods/burstable/pod1111")
	_, err := PodCgroup(root, "", testUID)
	if !errors.Is(err, ErrNoPodCgroup) {
		t.Fatalf("err = %v, want ErrNoPodCgroup", err)
	}
	msg := err.Error()
	for _, want := range []string{testUID, "kubepods", "kubepods.slice"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q does not name %q", msg, want)
		}
	}
	if strings.Contains(msg, root) {
		t.Errorf("message %q names the cgroup root", msg)
	}
}

func TestPodCgroupIgnoresFiles(t *testing.T) {
	root, base := fakeTree(t, true, "kubepods/burstable")
	if err := os.WriteFile(filepath.Join(base, "kubepods", "burstable", "pod"+testUID), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := PodCgroup(root, "", testUID); !errors.Is(err, ErrNoPodCgroup) {
		t.Fatalf("a file named like the pod's cgroup: err = %v, want ErrNoPodCgroup", err)
	}
}

func TestPodCgroupNoController(t *testing.T) {
	if _, err := PodCgroup(t.TempDir(), "", testUID); !errors.Is(err, ErrNoMemoryController) {
		t.Fatalf("err = %v, want ErrNoMemoryController", err)
	}
}

func TestPodCgroupBadUID(t *testing.T) {
	// The tree holds a directory every bad UID below would reach if it were
	// put in a path unchecked.
	root, _ := fakeTree(t, false, "kubepods/pod", "kubepods/podx", "kubepods/pod../escape", "escape")
	for _, uid := range []string{
		"", "..", "../..", "/", "x", "a/b", "abc/../../escape", "abc def", "abc\x00", "abc\n",
		"g0000000", "ABCDEF-é", strings.Repeat("a", maxUIDLen+1),
	} {
		_, err := PodCgroup(root, "", uid)
		if err == nil || errors.Is(err, ErrNoPodCgroup) || !strings.Contains(err.Error(), "invalid pod UID") {
			t.Errorf("uid %q: err = %v, want an invalid pod UID error", uid, err)
		}
	}
	if _, err := PodCgroup(root, "", "ABCDEF-0123"); !errors.Is(err, ErrNoPodCgroup) {
		t.Errorf("upper-case UID: err = %v, want ErrNoPodCgroup", err)
	}
}

func TestPodCgroupBadParent(t *testing.T) {
	root, _ := fakeTree(t, false, "kubepods/pod"+testUID)
	for _, parent := range []string{"..", "a/../kubepods", "a//b", "./kubepods", "/"} {
		if _, err := PodCgroup(root, parent, testUID); err == nil || errors.Is(err, ErrNoPodCgroup) {
			t.Errorf("parent %q: err = %v, want an invalid parent error", parent, err)
		}
	}
}
