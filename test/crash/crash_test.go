//go:build failpoints && linux

package crash

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"

	"github.com/podsecrets/podsecrets/driver"
	"github.com/podsecrets/podsecrets/internal/failpoint"
	"github.com/podsecrets/podsecrets/kube"
	"github.com/podsecrets/podsecrets/memcg"
	"github.com/podsecrets/podsecrets/mount"
	"github.com/podsecrets/podsecrets/provider"
	"github.com/podsecrets/podsecrets/provider/fake"
	"github.com/podsecrets/podsecrets/volume"
)

// Environment of a driver process: this test binary, started by the test.
const (
	envSocket  = "CRASH_TEST_SOCKET"  // serve the driver here
	envRoot    = "CRASH_TEST_ROOT"    // kubelet's root: pods/ is below it
	envCgroups = "CRASH_TEST_CGROUPS" // "root:parent" of pod cgroups; empty writes in process
	envGen     = "CRASH_TEST_GEN"     // "2": the store holds the rotated files; "down": it fails
)

const (
	podName = "p"
	podUID  = "0b5e7c1e-6f0e-4bd4-9c2b-1c0de0c0ffee"
)

// files is what the fake store holds: several files, one nested, so that
// "after some of the files" has something before and after it.
func files() []provider.File { return filesOf(1) }

// filesOf is what the store holds in generation gen: every file changes
// from one to the next, as a rotated set does.
func filesOf(gen int) []provider.File {
	var fs []provider.File
	base := byte('a')
	if gen == 2 {
		base = 'A'
	}
	for i, name := range []string{"username", "password", "tls/cert.pem", "tls/key.pem", "config.json"} {
		fs = append(fs, provider.File{Path: name, Mode: 0o440, Data: bytes.Repeat([]byte{base + byte(i)}, 3000+i*1000)})
	}
	return fs
}

func TestMain(m *testing.M) {
	memcg.MaybeRunChild()
	if sock := os.Getenv(envSocket); sock != "" {
		if err := serveDriver(sock); err != nil {
			fmt.Fprintln(os.Stderr, "driver:", err)
			os.Exit(1)
		}
		return
	}
	os.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	os.Exit(m.Run())
}

// serveDriver is the driver process: the real driver, server and volume
// code on real tmpfs, with the in-memory provider and class store in place
// of AWS and the API server. It says "ready" on stdout once it serves.
func serveDriver(sock string) error {
	class := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "podsecrets.dev/v1", "kind": "SecretProviderClass",
		"metadata": map[string]any{"namespace": "default", "name": "db"},
		"spec": map[string]any{"provider": "fake", "parameters": map[string]any{},
			"rotation": map[string]any{"pollInterval": "30s"}},
	}}
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{kube.ClassGVR: "SecretProviderClassList"}, class)
	p := &fake.Provider{}
	p.SetFiles(files()...)
	switch os.Getenv(envGen) {
	case "2":
		p.SetFiles(filesOf(2)...)
	case "down":
		p.SetError(fmt.Errorf("%w: the store is down", provider.ErrUnavailable))
	}
	var w volume.Writer = volume.InProcess{}
	if cg := os.Getenv(envCgroups); cg != "" {
		root, parent, _ := strings.Cut(cg, ":")
		w = &memcg.Writer{Root: root, Parent: parent}
	}
	d, err := driver.New(driver.Options{
		NodeID:    "crash",
		Providers: provider.NewRegistry(p),
		Classes:   kube.Classes{Client: dyn},
		Volumes:   volume.New(volume.Options{Mounter: mount.System{}, Writer: w, TmpfsSize: 1 << 20, StagingDir: os.Getenv(envRoot)}),
		Logger:    slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		return err
	}
	if err := d.Recover(filepath.Join(os.Getenv(envRoot), "pods")); err != nil {
		return err
	}
	lis, err := driver.ListenUnix(sock)
	if err != nil {
		return err
	}
	d.SetReady(true)
	fmt.Println("ready")
	return driver.NewGRPCServer(d).Serve(lis)
}

// node is one test's kubelet root, pod and volume target.
type node struct {
	t      *testing.T
	root   string
	target string
	cg     string // envCgroups value
}

func newNode(t *testing.T, cgroups string) *node {
	if os.Geteuid() != 0 {
		t.Skip("mounting tmpfs needs root (CAP_SYS_ADMIN); make test runs as root")
	}
	root := t.TempDir()
	parent := filepath.Join(root, "pods", podUID, "volumes", "kubernetes.io~csi", "secrets")
	if err := os.MkdirAll(parent, 0o750); err != nil {
		t.Fatal(err)
	}
	n := &node{t: t, root: root, target: filepath.Join(parent, "mount"), cg: cgroups}
	t.Cleanup(func() {
		for {
			mounts, _ := mount.Mounts(root)
			if len(mounts) == 0 {
				return
			}
			for _, m := range mounts {
				unix.Unmount(m, unix.MNT_DETACH)
			}
		}
	})
	return n
}

// proc is a running driver process.
type proc struct {
	cmd    *exec.Cmd
	conn   *grpc.ClientConn
	node   csi.NodeClient
	stderr logFile
	done   chan struct{} // closed when the process has exited
	err    error         // its Wait error, once done
}

// start runs a driver process with failpoints (a PODSECRETS_FAILPOINTS
// value, or "") and waits for it to serve.
func (n *node) start(failpoints string) *proc { return n.startGen(failpoints, 1) }

// startGen is start with the store at generation gen (see filesOf), or
// failing every read for storeDown.
func (n *node) startGen(failpoints string, gen int) *proc {
	n.t.Helper()
	exe, err := os.Executable()
	if err != nil {
		n.t.Fatal(err)
	}
	sock := filepath.Join(n.root, "csi.sock")
	os.Remove(sock)
	// The log is a file the driver writes itself: a line it logged before
	// answering an RPC is in the file when the answer arrives, which a pipe
	// copied by a goroutine would not promise.
	f, err := os.CreateTemp(n.root, "driver-*.log")
	if err != nil {
		n.t.Fatal(err)
	}
	defer f.Close()
	p := &proc{cmd: exec.Command(exe), stderr: logFile(f.Name()), done: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), envSocket+"="+sock, envRoot+"="+n.root, envCgroups+"="+n.cg, failpoint.Env+"="+failpoints, envGen+"="+genValue(gen))
	p.cmd.Stderr = f
	// Its own process group: a failpoint kills the group, as the OOM
	// killer takes the driver's container, writer children included.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		n.t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "ready\n" {
		p.cmd.Process.Kill()
		n.t.Fatalf("driver did not start (%q, %v): %s", line, err, p.stderr)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	n.t.Cleanup(func() { syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL); <-p.done })
	p.conn, err = grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		n.t.Fatal(err)
	}
	n.t.Cleanup(func() { p.conn.Close() })
	p.node = csi.NewNodeClient(p.conn)
	return p
}

// storeDown is the generation of a store that fails every read.
const storeDown = -1

func genValue(gen int) string {
	if gen == storeDown {
		return "down"
	}
	return fmt.Sprint(gen)
}

// logFile is a driver process's log.
type logFile string

// String returns what the driver has logged so far.
func (l logFile) String() string {
	b, _ := os.ReadFile(string(l))
	return string(b)
}

// killedBy waits for the process to die and checks that SIGKILL did it.
func (p *proc) killedBy(t *testing.T) {
	t.Helper()
	select {
	case <-p.done:
		var ee *exec.ExitError
		if err := p.err; !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("driver exited with %v, want killed by its failpoint; log:\n%s", p.err, p.stderr)
		}
	case <-time.After(time.Minute):
		t.Fatalf("driver still running after its failpoint; log:\n%s", p.stderr)
	}
}

func (n *node) publishRequest() *csi.NodePublishVolumeRequest {
	return &csi.NodePublishVolumeRequest{
		VolumeId:   "csi-crash",
		TargetPath: n.target,
		VolumeCapability: &csi.VolumeCapability{
			AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{VolumeMountGroup: "2000"}},
			AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
		},
		VolumeContext: map[string]string{
			"secretProviderClass":                    "db",
			"csi.storage.k8s.io/ephemeral":           "true",
			"csi.storage.k8s.io/pod.name":            podName,
			"csi.storage.k8s.io/pod.namespace":       "default",
			"csi.storage.k8s.io/pod.uid":             podUID,
			"csi.storage.k8s.io/serviceAccount.name": "app",
		},
	}
}

func (p *proc) publish(n *node) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := p.node.NodePublishVolume(ctx, n.publishRequest())
	return err
}

func (p *proc) unpublish(n *node) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := p.node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: "csi-crash", TargetPath: n.target})
	return err
}

// wantComplete checks the target holds exactly the store's files, through
// "..data", on a read-only podsecrets tmpfs.
func (n *node) wantComplete() { n.t.Helper(); n.wantCompleteGen(1) }

// wantCompleteGen is wantComplete for the files of generation gen.
func (n *node) wantCompleteGen(gen int) {
	n.t.Helper()
	st, why, err := volume.Inspect(mount.System{}, n.target)
	if err != nil || st != volume.Complete {
		n.t.Fatalf("volume is %v (%s, %v), want complete", st, why, err)
	}
	for _, f := range filesOf(gen) {
		got, err := os.ReadFile(filepath.Join(n.target, f.Path))
		if err != nil || !bytes.Equal(got, f.Data) {
			n.t.Fatalf("%s: %d bytes, %v; want the store's %d bytes", f.Path, len(got), err, len(f.Data))
		}
	}
	if err := os.WriteFile(filepath.Join(n.target, "evil"), []byte("x"), 0o600); !errors.Is(err, unix.EROFS) {
		n.t.Fatalf("writing into the volume = %v, want EROFS", err)
	}
	entries, err := os.ReadDir(n.target)
	if err != nil {
		n.t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	// ..data, one version directory, and the top-level links.
	if len(names) != 6 || names[0] != mount.DataDir || !strings.HasPrefix(names[1], "..") {
		n.t.Fatalf("volume holds %v, want ..data, one version and the links config.json, password, tls, username", names)
	}
}

// wantGone checks that unpublish left neither a mount nor the directory.
func (n *node) wantGone() {
	n.t.Helper()
	if mounts, err := mount.Mounts(n.root); err != nil || len(mounts) != 0 {
		n.t.Fatalf("mounts left: %v (%v)", mounts, err)
	}
	if _, err := os.Lstat(n.target); !errors.Is(err, fs.ErrNotExist) {
		n.t.Fatalf("target left behind (%v)", err)
	}
}

// publishPoints are the steps of a publish, in order, at which the driver
// is killed.
var publishPoints = []string{
	volume.FailAfterMount,
	mount.FailAfterFile + "=kill@1",
	mount.FailAfterFile + "=kill@3", // some of the files written
	mount.FailBeforeSwap,
	mount.FailAfterSwap,
	mount.FailAfterLinks,
	volume.FailBeforeReadOnly,
	volume.FailAfterReadOnly, // complete, but kubelet never heard
}

func spec(point string) string {
	if strings.Contains(point, "=") {
		return point
	}
	return point + "=kill"
}

func TestKillDuringPublish(t *testing.T) {
	for _, w := range writers(t) {
		for _, point := range publishPoints {
			t.Run(w.name+"/"+point, func(t *testing.T) {
				n := newNode(t, w.cgroups(t))
				first := n.start(spec(point))
				if err := first.publish(n); err == nil {
					t.Fatal("publish answered OK although the driver was killed")
				}
				first.killedBy(t)
				// What the kill left is one of the states, never a pod's
				// volume: kubelet got no OK.
				left, why, err := volume.Inspect(mount.System{}, n.target)
				if err != nil {
					t.Fatal(err)
				}
				t.Logf("killed at %s: volume %v (%s)", point, left, why)

				second := n.start("")
				if err := second.publish(n); err != nil {
					t.Fatalf("kubelet's retry = %v; log:\n%s", err, second.stderr)
				}
				n.wantComplete()
				if log := second.stderr.String(); left == volume.Incomplete && !strings.Contains(log, "volume completed") && !strings.Contains(log, "volume sealed") {
					t.Fatalf("the retry did not say it completed or sealed the volume; log:\n%s", log)
				}
				if left == volume.Complete && !strings.Contains(second.stderr.String(), "republish: volume kept") {
					t.Fatalf("the retry did not say it kept the complete volume; log:\n%s", second.stderr)
				}
				if err := second.unpublish(n); err != nil {
					t.Fatal(err)
				}
				n.wantGone()
			})
		}
	}
}

// rotationPoints are the steps of a rotation's write window, in order.
var rotationPoints = []string{
	volume.FailAfterWritable,
	mount.FailAfterFile + "=kill@2",
	mount.FailBeforeSwap,
	mount.FailAfterSwap,
	mount.FailAfterLinks,
	volume.FailAfterUpdate,
}

// generation returns which generation of files a reader that resolves
// "..data" once sees, and fails unless every file is of that one.
func (n *node) generation() int {
	n.t.Helper()
	version, err := os.Readlink(filepath.Join(n.target, mount.DataDir))
	if err != nil {
		n.t.Fatal(err)
	}
	gen := 0
	for g := 1; g <= 2 && gen == 0; g++ {
		same := true
		for _, f := range filesOf(g) {
			got, err := os.ReadFile(filepath.Join(n.target, version, f.Path))
			if err != nil {
				n.t.Fatalf("%s: %v", f.Path, err)
			}
			same = same && bytes.Equal(got, f.Data)
		}
		if same {
			gen = g
		}
	}
	if gen == 0 {
		n.t.Fatalf("the volume holds a mix of the old and the new files")
	}
	return gen
}

// TestKillDuringRotation kills the driver inside a rotation's write window.
// The pod is running on the volume all along: at every point it must read
// one whole set, old or new; the next driver seals what it finds without
// taking a file away, even with the store down, and a later check brings
// the new set.
func TestKillDuringRotation(t *testing.T) {
	for _, w := range writers(t) {
		for _, point := range rotationPoints {
			t.Run(w.name+"/"+point, func(t *testing.T) {
				n := newNode(t, w.cgroups(t))
				first := n.start("")
				if err := first.publish(n); err != nil {
					t.Fatal(err)
				}
				n.wantComplete()
				syscall.Kill(-first.cmd.Process.Pid, syscall.SIGKILL)
				<-first.done

				// A restarted driver checks the volume at its first
				// republish; the store has rotated.
				second := n.startGen(spec(point), 2)
				if err := second.publish(n); err == nil {
					t.Fatalf("republish answered OK although the driver was killed; log:\n%s", second.stderr)
				}
				second.killedBy(t)
				left, why, err := volume.Inspect(mount.System{}, n.target)
				if err != nil {
					t.Fatal(err)
				}
				t.Logf("killed at %s: volume %v (%s), generation %d", point, left, why, n.generation())

				// The next driver finds the store down: the pod keeps a
				// whole set, read-only.
				third := n.startGen("", storeDown)
				for range 2 {
					if err := third.publish(n); err != nil {
						t.Fatalf("kubelet's next republish = %v; log:\n%s", err, third.stderr)
					}
					if st, why, _ := volume.Inspect(mount.System{}, n.target); st != volume.Complete {
						t.Fatalf("after the republish the volume is %v (%s); log:\n%s", st, why, third.stderr)
					}
					n.generation()
				}
				syscall.Kill(-third.cmd.Process.Pid, syscall.SIGKILL)
				<-third.done

				fourth := n.startGen("", 2)
				if err := fourth.publish(n); err != nil {
					t.Fatal(err)
				}
				n.wantCompleteGen(2)
				if err := fourth.unpublish(n); err != nil {
					t.Fatal(err)
				}
				n.wantGone()
			})
		}
	}
}

func TestKillDuringUnpublish(t *testing.T) {
	for _, point := range []string{volume.FailBeforeUnmount, volume.FailBeforeRemoveDir} {
		t.Run(point, func(t *testing.T) {
			n := newNode(t, "")
			first := n.start(spec(point))
			if err := first.publish(n); err != nil {
				t.Fatal(err)
			}
			n.wantComplete()
			if err := first.unpublish(n); err == nil {
				t.Fatal("unpublish answered OK although the driver was killed")
			}
			first.killedBy(t)
			second := n.start("")
			if err := second.unpublish(n); err != nil {
				t.Fatalf("kubelet's retry = %v; log:\n%s", err, second.stderr)
			}
			n.wantGone()
		})
	}
}

// writer is how the driver process writes files.
type writer struct {
	name    string
	cgroups func(t *testing.T) string
}

// writers are the in-process writer and, where the machine has a cgroup v1
// memory hierarchy, the memcg writer in a scratch pod cgroup: its failpoints
// fire in the writer child, whose kill takes the driver with it.
func writers(t *testing.T) []writer {
	ws := []writer{{name: "in-process", cgroups: func(*testing.T) string { return "" }}}
	if _, err := os.Stat("/sys/fs/cgroup/memory/cgroup.procs"); err != nil {
		t.Log("no cgroup v1 memory hierarchy: the memcg writer's kill cases are skipped")
		return ws
	}
	return append(ws, writer{name: "pod-cgroup", cgroups: func(t *testing.T) string {
		base := fmt.Sprintf("podsecrets-crash-%d", os.Getpid())
		pod := filepath.Join("/sys/fs/cgroup/memory", base, "kubepods", "besteffort", "pod"+podUID)
		if err := os.MkdirAll(pod, 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			// Deepest first; the tmpfs is unmounted by then (cleanups run
			// in reverse), so the cgroups are empty.
			for d := pod; d != "/sys/fs/cgroup/memory"; d = filepath.Dir(d) {
				os.Remove(d)
			}
		})
		return "/sys/fs/cgroup:" + base + "/kubepods"
	}})
}
