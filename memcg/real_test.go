package memcg

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/podsecrets/podsecrets/mount"
)

// The tests here run against the kernel's real cgroups when they can: as
// root, on cgroup v1 with the memory hierarchy at /sys/fs/cgroup/memory or on
// cgroup v2 with the memory controller at /sys/fs/cgroup. Each builds a
// scratch "<name>/kubepods/besteffort/pod<uid>" below the hierarchy's root,
// outside the test's own cgroup, and removes it again.

const mib = 1 << 20

type hierarchy struct {
	root string // Writer.Root
	base string // the hierarchy's root directory
	v2   bool
}

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates cgroups and mounts tmpfs")
	}
}

// memoryHierarchy returns the machine's memory cgroup hierarchy or skips.
func realMemoryHierarchy(t testing.TB) hierarchy {
	t.Helper()
	requireRoot(t)
	const root = "/sys/fs/cgroup"
	if b, err := os.ReadFile(filepath.Join(root, "cgroup.controllers")); err == nil {
		if !strings.Contains(" "+string(bytes.TrimSpace(b))+" ", " memory ") {
			t.Skip("cgroup v2 at /sys/fs/cgroup has no memory controller")
		}
		if b, _ := os.ReadFile(filepath.Join(root, "cgroup.subtree_control")); !bytes.Contains(b, []byte("memory")) {
			t.Skip("cgroup v2 root does not delegate the memory controller (cgroup.subtree_control)")
		}
		return hierarchy{root: root, base: root, v2: true}
	}
	if _, err := os.Stat(filepath.Join(root, "memory", "cgroup.procs")); err == nil {
		return hierarchy{root: root, base: filepath.Join(root, "memory")}
	}
	t.Skip("neither a cgroup v1 memory hierarchy at /sys/fs/cgroup/memory nor cgroup v2 at /sys/fs/cgroup")
	return hierarchy{}
}

// scratchPod creates the test pod's cgroup below a fresh scratch cgroup of
// the hierarchy at base and returns the Writer.Parent that finds it and its
// directory. With memory, every level, the pod's included, hands the v2
// memory controller down, as kubelet's do, so v2's rule against processes in
// inner cgroups applies.
func scratchPod(t testing.TB, base string, memory bool) (parent, pod string) {
	t.Helper()
	var r [4]byte
	rand.Read(r[:])
	name := fmt.Sprintf("podsecrets-test-%x", r)
	rels := []string{name, name + "/kubepods", name + "/kubepods/besteffort", name + "/kubepods/besteffort/pod" + testUID}
	t.Cleanup(func() {
		for i := len(rels) - 1; i >= 0; i-- {
			if err := unix.Rmdir(filepath.Join(base, rels[i])); err != nil && !errors.Is(err, unix.ENOENT) {
				t.Errorf("remove scratch cgroup: %v", err)
			}
		}
	})
	for _, rel := range rels {
		dir := filepath.Join(base, rel)
		if err := unix.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if memory {
			if err := os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte("+memory"), 0); err != nil {
				t.Fatal(err)
			}
		}
	}
	return name + "/kubepods", filepath.Join(base, rels[len(rels)-1])
}

// tmpfsDir mounts a tmpfs on a new directory; unmounting frees its pages and
// drops their charge, which the scratch cgroups' removal needs.
func tmpfsDir(t testing.TB) (dir string, unmount func()) {
	t.Helper()
	dir = t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=64m,mode=0755"); err != nil {
		t.Fatal(err)
	}
	mounted := true
	unmount = func() {
		if mounted {
			mounted = false
			if err := unix.Unmount(dir, 0); err != nil {
				t.Errorf("unmount: %v", err)
			}
		}
	}
	t.Cleanup(unmount)
	return dir, unmount
}

// memStat returns key of the cgroup's memory.stat, hierarchical on v1
// ("total_" key), where the test's own cgroup may have children.
func memStat(t testing.TB, dir, key string) int64 {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, "memory.stat"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	vals := map[string]int64{}
	s := bufio.NewScanner(f)
	for s.Scan() {
		k, v, _ := strings.Cut(s.Text(), " ")
		n, _ := strconv.ParseInt(v, 10, 64)
		vals[k] = n
	}
	if v, ok := vals["total_"+key]; ok {
		return v
	}
	v, ok := vals[key]
	if !ok {
		t.Fatalf("%s/memory.stat has no %s", dir, key)
	}
	return v
}

// peak returns the cgroup's peak usage, which the kernel keeps for us.
func peak(t testing.TB, h hierarchy, dir string) int64 {
	t.Helper()
	name := "memory.max_usage_in_bytes"
	if h.v2 {
		name = "memory.peak"
	}
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return -1
	}
	n, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return n
}

// ownMemcg returns the memory cgroup of the test process.
func ownMemcg(t testing.TB, h hierarchy) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if h.v2 && parts[0] == "0" || !h.v2 && strings.Contains(","+parts[1]+",", ",memory,") {
			return filepath.Join(h.base, parts[2])
		}
	}
	t.Fatal("no memory cgroup in /proc/self/cgroup")
	return ""
}

func randomFiles(t testing.TB, n, size int) []mount.File {
	t.Helper()
	files := make([]mount.File, n)
	for i := range files {
		data := make([]byte, size)
		rand.Read(data)
		files[i] = mount.File{Path: fmt.Sprintf("secret-%d", i), Mode: 0o400, Data: data}
	}
	return files
}

func TestWriterChargesPod(t *testing.T) {
	h := realMemoryHierarchy(t)
	parent, pod := scratchPod(t, h.base, h.v2)
	own := ownMemcg(t, h)
	vol, unmount := tmpfsDir(t)
	files := randomFiles(t, 8, mib)
	const size = 8 * mib
	// memory.stat is batched per CPU; a few hundred KiB of slack covers
	// that and whatever else the test's cgroup does meanwhile.
	const slack = mib

	// Control: written in-process, the volume is charged to the writer,
	// which is the driver's problem and shows the measurement sees it.
	ctl, unmountCtl := tmpfsDir(t)
	before := memStat(t, own, "shmem")
	if err := mount.WriteFileSet(ctl, files, nil); err != nil {
		t.Fatal(err)
	}
	if got := memStat(t, own, "shmem") - before; got < size-slack {
		t.Fatalf("in-process write: own cgroup's shmem grew %d, want about %d", got, size)
	}
	unmountCtl()

	w := &Writer{Root: h.root, Parent: parent}
	before = memStat(t, own, "shmem")
	if err := w.WriteFileSet(context.Background(), testUID, vol, files, nil); err != nil {
		t.Fatal(err)
	}
	podShmem := memStat(t, pod, "shmem")
	if podShmem < size {
		t.Errorf("pod cgroup's shmem = %d, want at least %d", podShmem, size)
	}
	if got := memStat(t, own, "shmem") - before; got > slack {
		t.Errorf("own cgroup's shmem grew %d: the volume was charged to the driver", got)
	}
	got, err := os.ReadFile(filepath.Join(vol, "secret-3"))
	if err != nil || !bytes.Equal(got, files[3].Data) {
		t.Errorf("secret-3: %d bytes, %v", len(got), err)
	}
	if h.v2 {
		assertNoLeaf(t, pod)
	}
	t.Logf("pod cgroup: shmem %d, peak %d while writing %d bytes", podShmem, peak(t, h, pod), size)

	// The charge lives as long as the pages: unmounting returns it.
	unmount()
	if got := memStat(t, pod, "shmem"); got > slack {
		t.Errorf("pod cgroup's shmem after unmount = %d, want about 0", got)
	}
}

// TestWriterJoinsBeforeWriting runs a child that, once it has read the whole
// payload, reports its cgroup instead of writing: the point where a real
// child starts writing must be inside the pod's cgroup.
func TestWriterJoinsBeforeWriting(t *testing.T) {
	h := realMemoryHierarchy(t)
	parent, pod := scratchPod(t, h.base, h.v2)
	w := &Writer{Root: h.root, Parent: parent, Exe: testChild(t, cgroupChild)}
	err := w.WriteFileSet(context.Background(), testUID, t.TempDir(), nil, nil)
	if err == nil {
		t.Fatal("the cgroup-reporting child succeeded")
	}
	want := strings.TrimPrefix(pod, h.base)
	if h.v2 {
		want += "/" + leafPrefix
	}
	if !strings.Contains(err.Error(), want) {
		t.Errorf("child reported %q, want membership of %s", err, want)
	}
	if h.v2 {
		assertNoLeaf(t, pod)
	}
}

func TestWriterPodOOM(t *testing.T) {
	// 4 MiB is below the payload, so the child dies reading it; 12 MiB
	// holds the payload but not the payload and the volume, so it dies
	// writing the tmpfs (in a non-race build; the race detector's shadow
	// pages make the child bigger). Both are OOM kills in the pod's cgroup:
	// the kernel does not fail a tmpfs write over the memory limit with
	// ENOSPC or ENOMEM, it kills the writer.
	for _, limit := range []int64{4 * mib, 12 * mib} {
		t.Run(fmt.Sprintf("limit %d MiB", limit/mib), func(t *testing.T) {
			h := realMemoryHierarchy(t)
			parent, pod := scratchPod(t, h.base, h.v2)
			vol, _ := tmpfsDir(t)
			w := &Writer{Root: h.root, Parent: parent}
			small := []mount.File{{Path: "small", Mode: 0o400, Data: []byte("previous")}}
			if err := w.WriteFileSet(context.Background(), testUID, vol, small, nil); err != nil {
				t.Fatal(err)
			}
			setLimit(t, h, pod, limit)

			err := w.WriteFileSet(context.Background(), testUID, vol, randomFiles(t, 8, mib), nil)
			if !errors.Is(err, ErrPodMemory) {
				t.Fatalf("err = %v, want ErrPodMemory", err)
			}
			if msg := err.Error(); !strings.Contains(msg, strconv.Itoa(8*mib)+" bytes") || strings.Contains(msg, "/") {
				t.Errorf("message %q: want the volume's size and no path", msg)
			}
			if got, err := os.ReadFile(filepath.Join(vol, "small")); err != nil || string(got) != "previous" {
				t.Errorf("previous version after the OOM kill: %q, %v", got, err)
			}
			if h.v2 {
				assertNoLeaf(t, pod)
			}
			// A SIGKILL gives mount.WriteFileSet no chance to remove its
			// half-written version directory: its pages stay in the
			// tmpfs, charged to the pod, until the volume is unmounted.
			entries, _ := os.ReadDir(vol)
			var names []string
			for _, e := range entries {
				names = append(names, e.Name())
			}
			t.Logf("volume after the OOM kill: %v; pod shmem %d, peak %d", names, memStat(t, pod, "shmem"), peak(t, h, pod))
		})
	}
}

func setLimit(t testing.TB, h hierarchy, dir string, limit int64) {
	t.Helper()
	name := "memory.limit_in_bytes"
	if h.v2 {
		name = "memory.max"
		// Swap would let the kernel push the volume out instead of
		// killing; the test wants the kill.
		os.WriteFile(filepath.Join(dir, "memory.swap.max"), []byte("0"), 0)
	}
	if err := os.WriteFile(filepath.Join(dir, name), []byte(strconv.FormatInt(limit, 10)), 0); err != nil {
		t.Fatal(err)
	}
}

func assertNoLeaf(t testing.TB, pod string) {
	t.Helper()
	entries, err := os.ReadDir(pod)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), leafPrefix) {
			t.Errorf("writer leaf %s left in the pod's cgroup", e.Name())
		}
	}
}

// TestWriterCgroup2Leaf drives the v2 leaf (mkdir, move, rmdir right after
// the child is reaped) on a real cgroup2 mount, which on a hybrid host is
// /sys/fs/cgroup/unified without the memory controller: no charging, but
// the same kernel rules for moving processes and removing cgroups.
func TestWriterCgroup2Leaf(t *testing.T) {
	requireRoot(t)
	var root string
	for _, r := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
		if _, err := os.Stat(filepath.Join(r, "cgroup.controllers")); err == nil {
			root = r
			break
		}
	}
	if root == "" {
		t.Skip("no cgroup2 mount at /sys/fs/cgroup or /sys/fs/cgroup/unified")
	}
	b, _ := os.ReadFile(filepath.Join(root, "cgroup.subtree_control"))
	parent, pod := scratchPod(t, root, bytes.Contains(b, []byte("memory")))
	vol, _ := tmpfsDir(t)
	w := &Writer{Root: root, Parent: parent}
	// A leaf a writer left when its driver was killed: the next write of
	// the pod removes it, or kubelet could not remove the pod's cgroup.
	if err := os.Mkdir(filepath.Join(pod, leafPrefix+"999999999"), 0o755); err != nil {
		t.Fatal(err)
	}
	// Repeated, because an rmdir racing the child's exit would fail only
	// now and then.
	for i := range 20 {
		files := []mount.File{{Path: "n", Mode: 0o400, Data: []byte(strconv.Itoa(i))}}
		if err := w.WriteFileSet(context.Background(), testUID, vol, files, nil); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		assertNoLeaf(t, pod)
	}
	reporter := &Writer{Root: root, Parent: parent, Exe: testChild(t, cgroupChild)}
	err := reporter.WriteFileSet(context.Background(), testUID, vol, nil, nil)
	if want := "0::" + strings.TrimPrefix(pod, root) + "/" + leafPrefix; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("child reported %v, want membership of %s", err, want)
	}
	assertNoLeaf(t, pod)
}

// BenchmarkWriter measures one write of a small set (10 files of 1 KiB)
// through a child, against the same write in-process. maxrss-KiB is the
// largest child's peak RSS (getrusage RUSAGE_CHILDREN), pod-peak-KiB the
// pod cgroup's peak charge. Run it on its own (-run '^$'): earlier tests'
// children count in maxrss.
func BenchmarkWriter(b *testing.B) {
	h := realMemoryHierarchy(b)
	parent, pod := scratchPod(b, h.base, h.v2)
	files := randomFiles(b, 10, 1<<10)
	b.Run("child", func(b *testing.B) {
		vol, _ := tmpfsDir(b)
		w := &Writer{Root: h.root, Parent: parent}
		for b.Loop() {
			if err := w.WriteFileSet(context.Background(), testUID, vol, files, nil); err != nil {
				b.Fatal(err)
			}
		}
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru); err == nil {
			b.ReportMetric(float64(ru.Maxrss), "maxrss-KiB")
		}
		b.ReportMetric(float64(peak(b, h, pod))/1024, "pod-peak-KiB")
	})
	// A spare child started ahead: the exec and runtime start leave the
	// write's path (waiting for the next spare is not measured apart: each
	// iteration may find it still starting).
	b.Run("child-spare", func(b *testing.B) {
		vol, _ := tmpfsDir(b)
		w := &Writer{Root: h.root, Parent: parent, Spare: true}
		w.refill()
		for b.Loop() {
			if err := w.WriteFileSet(context.Background(), testUID, vol, files, nil); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			w.refill()
			b.StartTimer()
		}
	})
	b.Run("in-process", func(b *testing.B) {
		vol, _ := tmpfsDir(b)
		for b.Loop() {
			if err := mount.WriteFileSet(vol, files, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
}
