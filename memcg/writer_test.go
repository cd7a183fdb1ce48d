package memcg

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/podsecrets/podsecrets/mount"
)

// fakeWriter is a Writer over a fake v1 tree holding the test pod's cgroup:
// "joining" writes the PID to a plain file, so the whole path runs without
// privileges, and the charging is left to the real-cgroup tests.
func fakeWriter(t *testing.T) (*Writer, string) {
	t.Helper()
	root, base := fakeTree(t, false, "kubepods/besteffort/pod"+testUID)
	return &Writer{Root: root}, filepath.Join(base, "kubepods", "besteffort", "pod"+testUID)
}

func readVolume(t *testing.T, dir, name string) (string, fs.FileInfo) {
	t.Helper()
	p := filepath.Join(dir, name)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b), fi
}

func TestWriterWrites(t *testing.T) {
	w, pod := fakeWriter(t)
	dir := t.TempDir()
	gid := int64(os.Getgid())
	files := []mount.File{
		{Path: "db-password", Mode: 0o440, Data: []byte("hunter2")},
		{Path: "tls/key.pem", Mode: 0o400, Data: []byte("key")},
	}
	if err := w.WriteFileSet(context.Background(), testUID, dir, files, &gid); err != nil {
		t.Fatal(err)
	}
	got, fi := readVolume(t, dir, "db-password")
	if got != "hunter2" || fi.Mode().Perm() != 0o440 || fi.Sys().(*syscall.Stat_t).Gid != uint32(gid) {
		t.Errorf("db-password = %q %v gid %d", got, fi.Mode(), fi.Sys().(*syscall.Stat_t).Gid)
	}
	if got, _ := readVolume(t, dir, "tls/key.pem"); got != "key" {
		t.Errorf("tls/key.pem = %q", got)
	}
	procs, err := os.ReadFile(filepath.Join(pod, "cgroup.procs"))
	if err != nil || len(procs) == 0 {
		t.Errorf("the child's PID was not written to the pod's cgroup.procs: %q %v", procs, err)
	}

	// A second write replaces the set, as mount.WriteFileSet does.
	if err := w.WriteFileSet(context.Background(), testUID, dir, files[:1], nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "tls")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("tls after the second write: %v, want gone", err)
	}
}

func TestWriterChildError(t *testing.T) {
	w, _ := fakeWriter(t)
	missing := filepath.Join(t.TempDir(), "missing")
	files := []mount.File{{Path: "a", Mode: 0o400}}
	err := w.WriteFileSet(context.Background(), testUID, missing, files, nil)
	if err == nil {
		t.Fatal("wrote into a missing directory")
	}
	// The child's text is mount's, passed through as it is.
	want := mount.WriteFileSet(missing, files, nil)
	if want == nil || err.Error() != want.Error() {
		t.Errorf("err = %q, want mount's own %q", err, want)
	}
	if errors.Is(err, ErrPodMemory) {
		t.Errorf("err = %v wraps ErrPodMemory", err)
	}
}

func TestWriterRefusesBeforeForking(t *testing.T) {
	w := &Writer{Root: t.TempDir(), Exe: "/nonexistent"}
	dir := t.TempDir()
	// An invalid set is refused with mount's typed error, before a cgroup
	// is looked up or a child started.
	err := w.WriteFileSet(context.Background(), testUID, dir, []mount.File{{Path: "../x"}}, nil)
	var ne *mount.NameError
	if !errors.As(err, &ne) {
		t.Errorf("bad name: err = %v, want a *mount.NameError", err)
	}
	if err := w.WriteFileSet(context.Background(), testUID, "", nil, nil); err == nil {
		t.Error("empty directory: no error")
	}
	if err := w.WriteFileSet(context.Background(), "../x", dir, nil, nil); err == nil || !strings.Contains(err.Error(), "invalid pod UID") {
		t.Errorf("bad UID: err = %v", err)
	}
	if err := w.WriteFileSet(context.Background(), testUID, dir, nil, nil); !errors.Is(err, ErrNoMemoryController) {
		t.Errorf("no cgroup hierarchy: err = %v, want ErrNoMemoryController", err)
	}
}

func TestWriterNoPodCgroup(t *testing.T) {
	root, _ := fakeTree(t, false, "kubepods")
	w := &Writer{Root: root}
	err := w.WriteFileSet(context.Background(), testUID, t.TempDir(), nil, nil)
	if !errors.Is(err, ErrNoPodCgroup) {
		t.Fatalf("err = %v, want ErrNoPodCgroup", err)
	}
}

func TestWriterStartFails(t *testing.T) {
	w, _ := fakeWriter(t)
	w.Exe = filepath.Join(t.TempDir(), "missing")
	err := w.WriteFileSet(context.Background(), testUID, t.TempDir(), nil, nil)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("err = %v, want a start error wrapping ErrNotExist", err)
	}
}

func TestWriterJoinFails(t *testing.T) {
	w, pod := fakeWriter(t)
	// A directory without cgroup.procs is not a cgroup; the child must be
	// killed and reaped, never left waiting.
	if err := os.Remove(filepath.Join(pod, "cgroup.procs")); err != nil {
		t.Fatal(err)
	}
	w.Exe = testChild(t, hangChild)
	err := w.WriteFileSet(context.Background(), testUID, t.TempDir(), nil, nil)
	if err == nil || !strings.Contains(err.Error(), "join pod cgroup") {
		t.Fatalf("err = %v, want a join error", err)
	}
}

func TestWriterCancel(t *testing.T) {
	w, _ := fakeWriter(t)
	w.Exe = testChild(t, hangChild)
	// The child never exits by itself, so WriteFileSet returns only if the
	// cancellation kills it, whenever the deadline falls.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := w.WriteFileSet(ctx, testUID, t.TempDir(), []mount.File{{Path: "a", Mode: 0o400}}, nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want DeadlineExceeded", err)
	}
	if errors.Is(err, ErrPodMemory) {
		t.Errorf("a cancelled write reported as %v", err)
	}
}

// TestWriterDiesWithDriver kills a stand-in driver while its writer runs:
// Pdeathsig must take the writer with it, or a crashed driver would leave
// writers holding pods' cgroups.
func TestWriterDiesWithDriver(t *testing.T) {
	w, _ := fakeWriter(t)
	fifo := filepath.Join(t.TempDir(), "pid")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	driver := exec.Command(testChild(t, driverChild))
	driver.Env = append(os.Environ(), "MEMCG_TEST_ROOT="+w.Root, "MEMCG_TEST_EXE="+testChild(t, hangChild),
		"MEMCG_TEST_DIR="+t.TempDir(), "MEMCG_TEST_FIFO="+fifo)
	driver.Stdout, driver.Stderr = &out, &out
	if err := driver.Start(); err != nil {
		t.Fatal(err)
	}
	pidc := make(chan []byte, 1)
	go func() {
		b, _ := os.ReadFile(fifo)
		pidc <- b
	}()
	exited := make(chan error, 1)
	go func() { exited <- driver.Wait() }()
	var pidText []byte
	select {
	case pidText = <-pidc:
	case err := <-exited:
		// Unblock the reader, then report why the writer never started.
		os.WriteFile(fifo, nil, 0)
		t.Fatalf("stand-in driver exited before its writer started: %v: %s", err, out.String())
	}
	pid, err := strconv.Atoi(string(pidText))
	if err != nil {
		t.Fatalf("writer PID %q: %v", pidText, err)
	}
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(pidfd)
	driver.Process.Kill()
	<-exited
	// A pidfd turns readable when its process exits; the timeout only bounds
	// how long a failure takes to show.
	fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, 10_000)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			unix.PidfdSendSignal(pidfd, unix.SIGKILL, nil, 0)
			t.Fatal("the writer outlived its driver by 10 s")
		}
		return
	}
}

func TestResult(t *testing.T) {
	// result only turns statuses into errors; the OOM verdict comes from the
	// cgroup's counter, so SIGKILL without one is not blamed on the pod.
	ctx := context.Background()
	if err := result(ctx, nil, "", true, 1); err != nil {
		t.Errorf("success: %v", err)
	}
	exe := testChild(t, hangChild)
	killed := func() error {
		t.Helper()
		cmd := execHang(t, exe)
		cmd.Process.Kill()
		return cmd.Wait()
	}
	if err := result(ctx, killed(), "", true, 42); !errors.Is(err, ErrPodMemory) || !strings.Contains(err.Error(), "42 bytes") {
		t.Errorf("OOM kill: err = %v", err)
	}
	if err := result(ctx, killed(), "", false, 42); err == nil || errors.Is(err, ErrPodMemory) {
		t.Errorf("SIGKILL without an OOM kill: err = %v", err)
	}
}

// TestWriterSpare writes through a spare child started ahead, and through a
// fresh one when the spare died while it waited.
func TestWriterSpare(t *testing.T) {
	w, pod := fakeWriter(t)
	w.Spare = true
	w.refill()
	w.mu.Lock()
	spare := w.spare
	w.mu.Unlock()
	if spare == nil {
		t.Fatal("refill started no spare")
	}
	dir := t.TempDir()
	files := []mount.File{{Path: "a", Mode: 0o400, Data: []byte("1")}}
	if err := w.WriteFileSet(context.Background(), testUID, dir, files, nil); err != nil {
		t.Fatal(err)
	}
	procs, _ := os.ReadFile(filepath.Join(pod, "cgroup.procs"))
	if string(procs) != strconv.Itoa(spare.cmd.Process.Pid) {
		t.Fatalf("pod cgroup got PID %s, want the spare's %d", procs, spare.cmd.Process.Pid)
	}

	// The next spare dies before it is used: the write starts its own.
	w.mu.Lock()
	next := w.spare
	w.mu.Unlock()
	if next == nil {
		next, _ = w.start()
		w.mu.Lock()
		w.spare = next
		w.mu.Unlock()
	}
	next.kill()
	<-next.done
	if err := w.WriteFileSet(context.Background(), testUID, dir, []mount.File{{Path: "a", Mode: 0o400, Data: []byte("2")}}, nil); err != nil {
		t.Fatal(err)
	}
	if got, _ := readVolume(t, dir, "a"); got != "2" {
		t.Fatalf("a = %q after a write past a dead spare", got)
	}
}

// TestWriterNoSpace: a full volume is ENOSPC to the caller, as in process.
func TestWriterNoSpace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting tmpfs needs root; make test runs as root")
	}
	w, _ := fakeWriter(t)
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=64k"); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(dir, unix.MNT_DETACH)
	err := w.WriteFileSet(context.Background(), testUID, dir, []mount.File{{Path: "big", Mode: 0o400, Data: make([]byte, 128<<10)}}, nil)
	if !errors.Is(err, unix.ENOSPC) || err.Error() != "write big: no space left on device" {
		t.Fatalf("WriteFileSet into a full volume = %v, want ENOSPC with the in-process text", err)
	}
}
