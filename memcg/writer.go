package memcg

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/podsecrets/podsecrets/mount"
)

// ChildArg is the first argument that turns the driver binary into a volume
// writer; see MaybeRunChild.
const ChildArg = "__podsecrets-write-volume"

// ErrPodMemory means the volume writer was OOM-killed inside the pod's
// memory cgroup: the pod's memory limit leaves too little room for its
// secrets volume, which needs about twice its size free while it is written.
// Mounting again fails the same way until the limit grows or the volume
// shrinks.
var ErrPodMemory = errors.New("pod memory limit is too small for its secrets volume")

// outputLimit bounds how much of the child's stdout and stderr is kept. The
// child prints one line; a Go crash prints far more, and its first line says
// what happened.
const outputLimit = 4 << 10

// leafPrefix names the cgroup v2 leaf a writer runs in below the pod's
// cgroup; the child's PID follows.
const leafPrefix = "podsecrets-write-"

// Writer writes file sets from a child process in the pod's memory cgroup.
// The zero value uses DefaultRoot, DefaultParent and the running binary. A
// Writer is safe for concurrent use.
type Writer struct {
	// Root is where the host's cgroup file system is mounted; DefaultRoot
	// when empty.
	Root string
	// Parent is kubelet's pod parent cgroup; DefaultParent when empty.
	Parent string
	// Exe is the binary started as the child; it must call MaybeRunChild
	// first thing. "/proc/self/exe" when empty, which stays the running
	// binary even if its file is replaced on disk.
	Exe string
	// Spare keeps one child started ahead of need, waiting for its payload
	// in the driver's cgroup, and starts the next as soon as one is taken.
	// A child's exec and runtime start take about 10 ms of the 11 ms a small
	// write costs; a spare takes them off the publish and costs one idle
	// process (a few MiB, charged to the driver).
	Spare bool

	mu    sync.Mutex
	spare *child
}

// child is a started writer process that waits for its payload.
type child struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	out    *headBuffer
	done   chan struct{} // closed once the process has exited
	wait   error         // its Wait error, once done
	killed chan struct{} // closed to kill it (cancelled write)
}

// WriteFileSet does what mount.WriteFileSet(dir, files, gid) does, from a
// child process that has joined the memory cgroup of the pod with UID
// podUID, so the volume's pages are charged to that pod.
//
// While it runs the pod is charged the volume's size twice (the child's copy
// of the data and the tmpfs pages) plus what the child's runtime and the
// kernel touch after joining, about 256 KiB; once it returns, the volume's
// size. The child's start-up, before it joins, is charged to the driver. An
// OOM kill of the child returns an error wrapping ErrPodMemory, a pod
// without a cgroup one wrapping ErrNoPodCgroup. A failed write returns the
// child's error text. Cancelling ctx kills the child; what it wrote is then
// left as mount.WriteFileSet leaves a failed write.
func (w *Writer) WriteFileSet(ctx context.Context, podUID, dir string, files []mount.File, gid *int64) error {
	// Checked here too so that a bad set costs no fork, and its error keeps
	// its type instead of becoming the child's text.
	if err := mount.ValidateWritten(files); err != nil {
		return err
	}
	p := payload{dir: dir, gid: gid, files: files}
	b, err := encodePayload(p)
	if err != nil {
		return err
	}
	cg, err := findPodCgroup(w.Root, w.Parent, podUID)
	if err != nil {
		return err
	}
	return w.run(ctx, cg, b, p.dataLen())
}

// Prestart starts the spare child if Spare is set, so that the first write
// does not wait for it either.
func (w *Writer) Prestart() {
	if w.Spare {
		go w.refill()
	}
}

// take returns the spare child, or a new one. Either way a new spare is on
// its way.
func (w *Writer) take() (*child, error) {
	w.mu.Lock()
	c := w.spare
	w.spare = nil
	w.mu.Unlock()
	if w.Spare {
		go w.refill()
	}
	if c != nil {
		select {
		case <-c.done: // died while it waited; start another
		default:
			return c, nil
		}
	}
	return w.start()
}

// refill starts a spare child unless there is one.
func (w *Writer) refill() {
	w.mu.Lock()
	have := w.spare != nil
	w.mu.Unlock()
	if have {
		return
	}
	c, err := w.start()
	if err != nil {
		return // the next write starts its own and reports the error
	}
	w.mu.Lock()
	if w.spare == nil {
		w.spare, c = c, nil
	}
	w.mu.Unlock()
	if c != nil {
		c.stdin.Close() // a concurrent refill won: this one exits unused
	}
}

// start starts a child process that waits for its payload on stdin.
func (w *Writer) start() (*child, error) {
	exe := w.Exe
	if exe == "" {
		exe = "/proc/self/exe"
	}
	c := &child{cmd: exec.Command(exe, ChildArg), out: &headBuffer{max: outputLimit}, done: make(chan struct{}), killed: make(chan struct{})}
	// No Setpgid: the writer stays in the driver's process group, so whoever
	// kills that group kills both.
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	c.cmd.Stdout, c.cmd.Stderr = c.out, c.out
	stdin, err := c.cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("volume writer stdin: %w", err)
	}
	c.stdin = stdin
	started := make(chan error, 1)
	go func() {
		// The kernel sends Pdeathsig when the thread that forked the child
		// exits, not the process. The Go runtime ends a thread when a
		// goroutine exits while locked to it; holding this thread until
		// Wait returns keeps another goroutine from doing that to it and
		// killing a healthy writer. It costs one pinned thread per child.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := c.cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		exited := make(chan struct{})
		go func() {
			select {
			case <-c.killed:
				c.cmd.Process.Kill()
			case <-exited:
			}
		}()
		c.wait = c.cmd.Wait()
		close(exited)
		close(c.done)
	}()
	if err := <-started; err != nil {
		stdin.Close()
		return nil, fmt.Errorf("start volume writer: %w", err)
	}
	return c, nil
}

func (c *child) kill() {
	select {
	case <-c.killed:
	default:
		close(c.killed)
	}
}

// run takes a child, moves it into cg, and only then sends it b: the child
// writes nothing before it has read all of b, so every page it writes is
// charged to cg.
func (w *Writer) run(ctx context.Context, cg podCgroup, b []byte, size int64) error {
	c, err := w.take()
	if err != nil {
		return err
	}
	// On v1 the child joins the pod's cgroup itself, which may have OOM
	// kills already; on v2 it gets a fresh leaf whose count starts at 0.
	var killsBefore uint64
	killsKnown := true
	if !cg.v2 {
		killsBefore, killsKnown = oomKills(cg.dir)
	}
	member, err := join(cg, c.cmd.Process.Pid)
	if err != nil {
		c.stdin.Close()
		c.kill()
		<-c.done
		return err
	}
	stop := context.AfterFunc(ctx, c.kill)
	// A write error means the child died early; its exit status says why.
	c.stdin.Write(b)
	c.stdin.Close()
	<-c.done
	stop()

	killsAfter, known := oomKills(member)
	oomKilled := !killsKnown || !known || killsAfter > killsBefore
	err = result(ctx, c.wait, c.out.String(), oomKilled, size)
	if cg.v2 {
		if rerr := unix.Rmdir(member); rerr != nil {
			err = errors.Join(err, fmt.Errorf("remove volume writer cgroup: %w", rerr))
		}
	}
	return err
}

// join moves pid into cg and returns the cgroup it is now in. On v2 that is
// a new leaf below the pod's cgroup: v2 refuses processes in a cgroup that
// hands controllers to children, which kubelet's pod cgroups do.
func join(cg podCgroup, pid int) (string, error) {
	member := cg.dir
	if cg.v2 {
		sweepLeaves(cg.dir)
		member = filepath.Join(cg.dir, leafPrefix+strconv.Itoa(pid))
		err := unix.Mkdir(member, 0o755)
		if errors.Is(err, unix.EEXIST) {
			// PIDs of live processes are unique, so a leaf with this
			// child's PID is left over from a writer that died with its
			// driver; an rmdir of a populated cgroup fails, so nothing
			// live is lost.
			if err = unix.Rmdir(member); err == nil {
				err = unix.Mkdir(member, 0o755)
			}
		}
		if err != nil {
			return "", fmt.Errorf("create volume writer cgroup in %s: %w", cg.dir, err)
		}
	}
	if err := writeProcs(member, pid); err != nil {
		if cg.v2 {
			unix.Rmdir(member)
		}
		return "", err
	}
	return member, nil
}

// sweepLeaves removes the leaves of writers that died with their driver
// below pod cgroup dir: kubelet cannot remove a pod's cgroup while one is
// left. A leaf in use is populated, and its rmdir fails harmlessly.
func sweepLeaves(dir string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if e.IsDir() && strings.HasPrefix(e.Name(), leafPrefix) {
			unix.Rmdir(filepath.Join(dir, e.Name()))
		}
	}
}

func writeProcs(dir string, pid int) error {
	// O_WRONLY without O_CREATE: cgroup.procs exists in every cgroup, and a
	// missing one means dir is not a cgroup.
	f, err := os.OpenFile(filepath.Join(dir, "cgroup.procs"), os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("join pod cgroup: %w", err)
	}
	_, err = f.WriteString(strconv.Itoa(pid))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("join pod cgroup %s: %w", dir, err)
	}
	return nil
}

// oomKills returns the number of OOM kills of processes in the memory cgroup
// dir (v1 memory.oom_control, v2 memory.events), and false when it cannot
// be read, e.g. a v2 cgroup without the memory controller.
func oomKills(dir string) (uint64, bool) {
	for _, name := range []string{"memory.events", "memory.oom_control"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return 0, false
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "oom_kill "); ok {
				n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
				return n, err == nil
			}
		}
		return 0, false
	}
	return 0, false
}

// result turns how the child ended into WriteFileSet's error.
func result(ctx context.Context, waitErr error, out string, oomKilled bool, size int64) error {
	if waitErr == nil {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("volume writer: %w", err)
	}
	var ee *exec.ExitError
	if !errors.As(waitErr, &ee) {
		return fmt.Errorf("volume writer: %w", waitErr)
	}
	ws, _ := ee.Sys().(syscall.WaitStatus)
	if ws.Signaled() && ws.Signal() == syscall.SIGKILL {
		if oomKilled {
			return fmt.Errorf("%w (%d bytes)", ErrPodMemory, size)
		}
		return errors.New("volume writer was killed")
	}
	line, _, _ := strings.Cut(strings.TrimSpace(out), "\n")
	if line = strings.TrimSpace(line); line != "" {
		if ee.ExitCode() == exitNoSpace {
			// The text says it already; the errno lets callers tell a
			// full volume from other failures.
			return &noSpaceError{msg: line}
		}
		return errors.New(line)
	}
	return fmt.Errorf("volume writer: %s", ee.ProcessState)
}

// exitNoSpace is the writer's exit status when the volume is full.
const exitNoSpace = 3

// noSpaceError is a writer's report of a full volume: its own text, and
// unix.ENOSPC for errors.Is.
type noSpaceError struct{ msg string }

func (e *noSpaceError) Error() string        { return e.msg }
func (e *noSpaceError) Is(target error) bool { return target == unix.ENOSPC }

// headBuffer keeps the first max bytes written to it and drops the rest,
// still reporting them written so the child never blocks on a full pipe.
type headBuffer struct {
	buf bytes.Buffer
	max int
}

func (h *headBuffer) Write(p []byte) (int, error) {
	if room := h.max - h.buf.Len(); room > 0 {
		h.buf.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

func (h *headBuffer) String() string { return h.buf.String() }

// MaybeRunChild returns at once unless this process was started by a Writer
// (os.Args[1] is ChildArg). In a writer it reads the payload from stdin,
// writes the file set and exits: status 0 on success, otherwise 1 with the
// error on one line of stderr. See the package documentation for where to
// call it.
func MaybeRunChild() {
	if len(os.Args) < 2 || os.Args[1] != ChildArg {
		return
	}
	if err := runChild(os.Stdin); err != nil {
		fmt.Fprintln(os.Stderr, strings.ReplaceAll(err.Error(), "\n", " "))
		if errors.Is(err, unix.ENOSPC) {
			os.Exit(exitNoSpace)
		}
		os.Exit(1)
	}
	os.Exit(0)
}

func runChild(stdin io.Reader) error {
	// The child inherits the driver's oom_score_adj, often -997 for a
	// node-critical DaemonSet. In the pod's cgroup that would make the OOM
	// killer pick the pod's containers over the writer, killing a running
	// application to make room for a secret rotation; 1000 makes the writer
	// the first victim, and the write fails instead. Raising it needs no
	// privilege.
	if err := os.WriteFile("/proc/self/oom_score_adj", []byte("1000"), 0); err != nil {
		return fmt.Errorf("volume writer: set oom_score_adj: %w", err)
	}
	b, err := readPayload(stdin)
	if err != nil {
		return fmt.Errorf("volume writer: %w", err)
	}
	p, err := decodePayload(b)
	if err != nil {
		return fmt.Errorf("volume writer: %w", err)
	}
	return mount.WriteFileSet(p.dir, p.files, p.gid)
}
