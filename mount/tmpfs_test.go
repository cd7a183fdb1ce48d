package mount

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting tmpfs needs root (CAP_SYS_ADMIN)")
	}
}

func TestSystemTmpfs(t *testing.T) {
	requireRoot(t)
	m := System{}
	target := filepath.Join(t.TempDir(), "mount")
	if err := os.Mkdir(target, 0o750); err != nil {
		t.Fatal(err)
	}
	if s, err := m.Status(target); err != nil || s != (Status{}) {
		t.Fatalf("Status before mount = %+v, %v", s, err)
	}
	gid := int64(2000)
	if err := m.MountTmpfs(target, TmpfsOptions{SizeBytes: 1 << 20, GID: &gid}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(target, unix.MNT_DETACH) })
	for _, name := range []string{target, target + "/", filepath.Dir(target) + "/./mount"} {
		if s, err := m.Status(name); err != nil || s != (Status{Mounted: true, Ours: true}) {
			t.Fatalf("Status(%q) after mount = %+v, %v; want mounted, ours, writable", name, s, err)
		}
	}
	var st unix.Statfs_t
	if err := unix.Statfs(target, &st); err != nil {
		t.Fatal(err)
	}
	if st.Type != unix.TMPFS_MAGIC {
		t.Fatalf("file system type %#x, want tmpfs", st.Type)
	}
	if got := uint64(st.Blocks) * uint64(st.Bsize); got != 1<<20 {
		t.Fatalf("tmpfs size %d, want %d", got, 1<<20)
	}
	info, err := os.Stat(target)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o750 || statGID(info) != 2000 {
		t.Fatalf("volume root mode %v group %d, want 0750 group 2000", info.Mode().Perm(), statGID(info))
	}
	// Too big for the size limit: fails cleanly instead of eating node memory.
	big := []File{{Path: "big", Mode: 0o600, Data: make([]byte, 2<<20)}}
	err = WriteFileSet(target, big, nil)
	if !errors.Is(err, unix.ENOSPC) {
		t.Fatalf("writing 2 MiB into a 1 MiB tmpfs = %v, want ENOSPC", err)
	}
	// Stable for kubelet's event merging: no node path, no version name.
	if msg := err.Error(); msg != "write big: no space left on device" {
		t.Fatalf("error %q, want %q", msg, "write big: no space left on device")
	}
	if err := WriteFileSet(target, files("a", "1"), nil); err != nil {
		t.Fatal(err)
	}

	if err := m.SetReadOnly(target, true); err != nil {
		t.Fatal(err)
	}
	if s, err := m.Status(target); err != nil || !s.ReadOnly || s.FSReadOnly {
		t.Fatalf("Status after SetReadOnly = %+v, %v; want a read-only mount of a writable file system", s, err)
	}
	if mounts, err := Mounts(filepath.Dir(target)); err != nil || len(mounts) != 1 || mounts[0] != target {
		t.Fatalf("Mounts = %v, %v; want only %s", mounts, err, target)
	}
	// A bind of the read-only mount (kubelet's into a container) copies
	// its flag; the driver's writable bind writes into the same files.
	view := filepath.Join(t.TempDir(), "view")
	stage := filepath.Join(t.TempDir(), "stage")
	for _, d := range []string{view, stage} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Bind(target, view); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(view, unix.MNT_DETACH) })
	if err := m.BindWritable(target, stage); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(stage, unix.MNT_DETACH) })
	for _, dir := range []string{target, view} {
		if err := os.WriteFile(filepath.Join(dir, "x"), nil, 0o600); !errors.Is(err, unix.EROFS) {
			t.Fatalf("write to %s of a read-only volume = %v, want EROFS", dir, err)
		}
	}
	if err := WriteFileSet(stage, files("a", "2"), nil); err != nil {
		t.Fatalf("write through the writable bind: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(view, "a")); err != nil || string(b) != "2" {
		t.Fatalf("the read-only bind reads %q, %v; want the new version", b, err)
	}
	if s, err := m.Status(target); err != nil || !s.ReadOnly {
		t.Fatalf("the writable bind changed the target's mount: %+v, %v", s, err)
	}
	// The file system's flag holds every mount of it, the writable bind
	// too; through the bind it leaves the target's own flag alone.
	if err := m.SetFSReadOnly(stage, true); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(stage, "x"), nil, 0o600); !errors.Is(err, unix.EROFS) {
		t.Fatalf("write through the writable bind of a read-only file system = %v, want EROFS", err)
	}
	if err := m.SetFSReadOnly(stage, false); err != nil {
		t.Fatal(err)
	}
	if s, err := m.Status(target); err != nil || !s.ReadOnly || s.FSReadOnly {
		t.Fatalf("Status after the file system's round trip = %+v, %v", s, err)
	}
	unix.Unmount(stage, 0)
	st = unix.Statfs_t{}
	if err := unix.Statfs(target, &st); err != nil || uint64(st.Blocks)*uint64(st.Bsize) != 1<<20 {
		t.Fatalf("remounts changed the size limit (%d blocks, %v)", st.Blocks, err)
	}
	unix.Unmount(view, 0)

	if err := m.Unmount(target); err != nil {
		t.Fatal(err)
	}
	if s, err := m.Status(target); err != nil || s.Mounted {
		t.Fatalf("Status after unmount = %+v, %v", s, err)
	}
	if err := m.Unmount(target); err != nil {
		t.Fatalf("second unmount = %v, want nil", err)
	}
}
