package volume

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/podsecrets/podsecrets/mount"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting tmpfs needs root (CAP_SYS_ADMIN); make test runs as root")
	}
}

// pods returns a kubelet-like pods directory and a target maker below it,
// and unmounts whatever a test leaves there.
func pods(t *testing.T) (dir string, target func(pod string) string) {
	dir = filepath.Join(t.TempDir(), "pods")
	t.Cleanup(func() {
		ms, _ := mount.Mounts(dir)
		for _, m := range ms {
			unix.Unmount(m, unix.MNT_DETACH)
		}
	})
	return dir, func(pod string) string {
		parent := filepath.Join(dir, pod, "volumes", "kubernetes.io~csi", "secrets")
		if err := os.MkdirAll(parent, 0o750); err != nil {
			t.Fatal(err)
		}
		return filepath.Join(parent, "mount")
	}
}

func set(sizes ...int) []mount.File {
	var fs []mount.File
	for i, n := range sizes {
		fs = append(fs, mount.File{Path: string(rune('a' + i)), Mode: 0o644, Data: make([]byte, n)})
	}
	return fs
}

// fixed is a Volume.Fetch that returns files.
func fixed(files []mount.File) func(context.Context) ([]mount.File, error) {
	return func(context.Context) ([]mount.File, error) { return files, nil }
}

func TestInspectStates(t *testing.T) {
	requireRoot(t)
	_, target := pods(t)
	m := mount.System{}
	check := func(t *testing.T, p string, want State) {
		t.Helper()
		got, why, err := Inspect(m, p)
		if err != nil || got != want {
			t.Fatalf("Inspect = %v (%s), %v; want %v", got, why, err, want)
		}
	}
	absent := target("absent")
	check(t, absent, Absent)
	if err := os.Mkdir(absent, 0o750); err != nil {
		t.Fatal(err)
	}
	check(t, absent, Absent) // a directory with nothing mounted

	writable := target("writable")
	os.Mkdir(writable, 0o750)
	if err := m.MountTmpfs(writable, mount.TmpfsOptions{SizeBytes: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	if err := mount.WriteFileSet(writable, set(10), nil); err != nil {
		t.Fatal(err)
	}
	check(t, writable, Incomplete) // all files, but never made read-only

	noData := target("nodata")
	os.Mkdir(noData, 0o750)
	if err := m.MountTmpfs(noData, mount.TmpfsOptions{SizeBytes: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	if err := m.SetReadOnly(noData, true); err != nil {
		t.Fatal(err)
	}
	check(t, noData, Incomplete) // read-only, but no ..data

	complete := target("complete")
	mgr := New(Options{Mounter: m, TmpfsSize: 1 << 20})
	if _, err := mgr.Publish(context.Background(), Absent, Volume{Target: complete, Fetch: fixed(set(10))}); err != nil {
		t.Fatal(err)
	}
	check(t, complete, Complete)

	foreign := target("foreign")
	os.Mkdir(foreign, 0o750)
	if err := unix.Mount("other", foreign, "tmpfs", 0, "size=64k"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(foreign, unix.MNT_DETACH) })
	check(t, foreign, Foreign)
}

func TestNodeLimit(t *testing.T) {
	requireRoot(t)
	dir, target := pods(t)
	m := New(Options{Mounter: mount.System{}, TmpfsSize: 1 << 20, NodeLimit: 3 * 4096})
	ctx := context.Background()
	a, b, c := target("a"), target("b"), target("c")
	if _, err := m.Publish(ctx, Absent, Volume{Target: a, Fetch: fixed(set(4096, 1))}); err != nil {
		t.Fatal(err)
	}
	_, err := m.Publish(ctx, Absent, Volume{Target: b, Fetch: fixed(set(4097))})
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("publish over the node limit = %v, want ErrTooLarge", err)
	}
	for _, part := range []string{"needs 8192 bytes", "hold 8192 of the 12288", "--max-node-volume-bytes", "maxNodeVolumeBytes"} {
		if !strings.Contains(err.Error(), part) {
			t.Fatalf("error %q lacks %q", err, part)
		}
	}
	if _, err := os.Lstat(b); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused volume left its target (%v)", err)
	}
	if _, err := m.Publish(ctx, Absent, Volume{Target: c, Fetch: fixed(set(100))}); err != nil {
		t.Fatalf("a volume inside the limit = %v", err)
	}
	// Unpublish gives the bytes back.
	if err := m.Unpublish(a); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Publish(ctx, Absent, Volume{Target: b, Fetch: fixed(set(4097))}); err != nil {
		t.Fatalf("after unpublish = %v", err)
	}

	// A new driver learns the bytes from the node.
	fresh := New(Options{Mounter: mount.System{}, TmpfsSize: 1 << 20, NodeLimit: 3 * 4096})
	found, err := fresh.Recover(dir)
	if err != nil || len(found) != 2 {
		t.Fatalf("Recover = %v, %v; want the two volumes", found, err)
	}
	for _, f := range found {
		if f.State != Complete || f.Bytes == 0 {
			t.Fatalf("found %+v, want complete with its bytes", f)
		}
	}
	if _, err := fresh.Publish(ctx, Absent, Volume{Target: target("d"), Fetch: fixed(set(4096))}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("a fresh driver let a volume over the node limit in: %v", err)
	}
}

func TestTooLargeForVolume(t *testing.T) {
	requireRoot(t)
	_, target := pods(t)
	m := New(Options{Mounter: mount.System{}, TmpfsSize: 64 << 10})
	tgt := target("p")
	_, err := m.Publish(context.Background(), Absent, Volume{Target: tgt, Fetch: fixed(set(64<<10, 1))})
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "needs 69632 bytes for 2 files, more than the 65536") ||
		strings.Contains(err.Error(), tgt) {
		t.Fatalf("publish of a too-large set = %v", err)
	}
	// Exactly the size fits: SpaceNeeded is what tmpfs counts.
	if _, err := m.Publish(context.Background(), Absent, Volume{Target: tgt, Fetch: fixed(set(60<<10, 4<<10))}); err != nil {
		t.Fatalf("a set of exactly the tmpfs size = %v", err)
	}
}

// TestCompleteClearsLeftovers: an incomplete volume nearly full of what a
// killed writer left is completed with a set that fits only without it.
func TestCompleteClearsLeftovers(t *testing.T) {
	requireRoot(t)
	_, target := pods(t)
	tgt := target("p")
	os.Mkdir(tgt, 0o750)
	m := New(Options{Mounter: mount.System{}, TmpfsSize: 64 << 10, NodeLimit: 64 << 10, StagingDir: t.TempDir()})
	if err := (mount.System{}).MountTmpfs(tgt, mount.TmpfsOptions{SizeBytes: 64 << 10}); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(tgt, "..v_dead"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tgt, "..v_dead", "half"), make([]byte, 40<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Publish(context.Background(), Incomplete, Volume{Target: tgt, Fetch: fixed(set(40 << 10))}); err != nil {
		t.Fatalf("completing the volume = %v", err)
	}
	if st, why, _ := Inspect(mount.System{}, tgt); st != Complete {
		t.Fatalf("volume %v (%s) after completion", st, why)
	}
	if _, err := os.Stat(filepath.Join(tgt, "..v_dead")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("leftover still there (%v)", err)
	}
	// The completed volume's bytes count against the node's limit.
	if _, err := m.Publish(context.Background(), Absent, Volume{Target: target("q"), Fetch: fixed(set(40 << 10))}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("a second 40 KiB volume beside the completed one within a 64 KiB node limit = %v, want ErrTooLarge", err)
	}
}

// TestFailedFetchLeavesNoStray: what a provider wrote into the target before
// failing (a plugin told to write files itself) is removed, so that no
// secret stays on the node's disk; a target with a mount below it is left
// alone.
func TestFailedFetchLeavesNoStray(t *testing.T) {
	requireRoot(t)
	_, target := pods(t)
	m := New(Options{Mounter: mount.System{}, TmpfsSize: 1 << 20, StagingDir: t.TempDir()})
	other := t.TempDir()
	if err := os.WriteFile(filepath.Join(other, "keep"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	failed := errors.New("no files")
	writesItself := func(tgt string, bind bool) func(context.Context) ([]mount.File, error) {
		return func(context.Context) ([]mount.File, error) {
			for _, d := range []string{tgt, filepath.Join(tgt, "sub"), filepath.Join(tgt, "bound")} {
				if err := os.Mkdir(d, 0o750); err != nil {
					return nil, err
				}
			}
			if err := os.WriteFile(filepath.Join(tgt, "sub", "password"), []byte("SECRET"), 0o600); err != nil {
				return nil, err
			}
			if bind {
				if err := unix.Mount(other, filepath.Join(tgt, "bound"), "", unix.MS_BIND, ""); err != nil {
					return nil, err
				}
				t.Cleanup(func() { unix.Unmount(filepath.Join(tgt, "bound"), unix.MNT_DETACH) })
			}
			return nil, failed
		}
	}
	plain := target("plain")
	if _, err := m.Publish(context.Background(), Absent, Volume{Target: plain, Fetch: writesItself(plain, false)}); !errors.Is(err, failed) {
		t.Fatalf("publish = %v", err)
	}
	if _, err := os.Lstat(plain); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the provider's files are still at the target (%v)", err)
	}
	bound := target("bound")
	if _, err := m.Publish(context.Background(), Absent, Volume{Target: bound, Fetch: writesItself(bound, true)}); !errors.Is(err, failed) {
		t.Fatalf("publish = %v", err)
	}
	if _, err := os.Stat(filepath.Join(other, "keep")); err != nil {
		t.Errorf("a file beyond a mount point was removed: %v", err)
	}
}

// TestPublishClearsAStrayTarget: files an earlier attempt left in a target
// podsecrets never mounted are removed before the volume is mounted over
// them, and the volume then unpublishes cleanly.
func TestPublishClearsAStrayTarget(t *testing.T) {
	requireRoot(t)
	_, target := pods(t)
	m := New(Options{Mounter: mount.System{}, TmpfsSize: 1 << 20, StagingDir: t.TempDir()})
	tgt := target("p")
	if err := os.MkdirAll(filepath.Join(tgt, "sub"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tgt, "sub", "password"), []byte("SECRET"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Publish(context.Background(), Absent, Volume{Target: tgt, Fetch: fixed(set(10))}); err != nil {
		t.Fatal(err)
	}
	if err := m.Unpublish(tgt); err != nil {
		t.Fatalf("unpublish = %v", err)
	}
	if _, err := os.Lstat(tgt); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the target or the stray file below it is still there (%v)", err)
	}
}
