//go:build e2e

package e2e

// Host-side helpers for the scenarios that look at the node itself: the
// driver's process, memory cgroups, and the state of volumes on the node.
// The tests run as root on the node (e2e.sh), so /proc and /sys/fs/cgroup
// are the node's.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
)

const (
	kubeletPods     = "/var/lib/kubelet/pods"
	driverContainer = "podsecrets"
	cgroupRoot      = "/sys/fs/cgroup"
)

// driverPod returns the one driver pod (a one-node cluster has one).
func driverPod(ctx context.Context, t *testing.T) *corev1.Pod {
	t.Helper()
	pods, err := kube.CoreV1().Pods(driverNS).List(ctx, metav1.ListOptions{LabelSelector: driverSel})
	if err != nil {
		t.Fatal(err)
	}
	if len(pods.Items) != 1 {
		t.Fatalf("want exactly one driver pod, found %d", len(pods.Items))
	}
	return &pods.Items[0]
}

// containerStatus returns the status of container name in p (zero if absent).
func containerStatus(p *corev1.Pod, name string) corev1.ContainerStatus {
	for _, s := range p.Status.ContainerStatuses {
		if s.Name == name {
			return s
		}
	}
	return corev1.ContainerStatus{}
}

// containerID strips the runtime prefix of a status's containerID.
func containerID(s corev1.ContainerStatus) string {
	_, id, _ := strings.Cut(s.ContainerID, "://")
	return id
}

// driverPIDs returns the host PIDs of the driver processes ("/podsecrets
// driver ...", the image's entrypoint) of the pod with UID podUID. Volume
// writers ("/proc/self/exe __podsecrets-write-volume") are not included.
func driverPIDs(t *testing.T, podUID string) []int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmd, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(cmd), "\x00")
		if len(args) < 2 || args[0] != "/podsecrets" || args[1] != "driver" {
			continue
		}
		cg, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cgroup"))
		if err != nil || !strings.Contains(string(cg), "pod"+podUID) {
			continue
		}
		if st, err := procState(pid); err != nil || st == 'Z' {
			continue
		}
		pids = append(pids, pid)
	}
	return pids
}

// procState is the state letter in /proc/pid/stat.
func procState(pid int) (byte, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// "pid (comm) S ...": comm may hold spaces and parentheses.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 || i+2 >= len(b) {
		return 0, fmt.Errorf("unparsable /proc/%d/stat", pid)
	}
	return b[i+2], nil
}

// processGone reports whether pid has exited (gone or a zombie).
func processGone(pid int) bool {
	st, err := procState(pid)
	return err != nil || st == 'Z'
}

// killDriver sends SIGKILL to the driver process pid and waits until it has
// exited.
func killDriver(ctx context.Context, t *testing.T, pid int) {
	t.Helper()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 %d: %v", pid, err)
	}
	err := wait.PollUntilContextTimeout(ctx, 5*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		return processGone(pid), nil
	})
	if err != nil {
		t.Fatalf("driver process %d still alive after SIGKILL: %v", pid, err)
	}
}

// memoryHierarchy is where the memory controller's hierarchy is mounted on
// the node, and whether it is cgroup v2.
func memoryHierarchy(t *testing.T) (string, bool) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(cgroupRoot, "cgroup.controllers")); err == nil {
		return cgroupRoot, true
	}
	mem := filepath.Join(cgroupRoot, "memory")
	if _, err := os.Stat(filepath.Join(mem, "cgroup.procs")); err == nil {
		return mem, false
	}
	t.Fatalf("no memory cgroup hierarchy under %s", cgroupRoot)
	return "", false
}

// podCgroup returns the memory cgroup of the pod with UID uid: kubelet's
// cgroupfs driver puts it at kubepods[/burstable|/besteffort]/pod<uid>
// (the cluster's kubelet runs with cgroupDriver: cgroupfs).
func podCgroup(t *testing.T, uid string) string {
	t.Helper()
	base, _ := memoryHierarchy(t)
	for _, qos := range []string{"", "burstable", "besteffort"} {
		dir := filepath.Join(base, "kubepods", qos, "pod"+uid)
		if fi, err := os.Stat(dir); err == nil && fi.IsDir() {
			return dir
		}
	}
	t.Fatalf("no memory cgroup for pod %s below %s/kubepods", uid, base)
	return ""
}

// memStat parses memory.stat of a cgroup.
func memStat(t *testing.T, dir string) map[string]int64 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "memory.stat"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		if n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
			out[k] = n
		}
	}
	return out
}

// shmem is the tmpfs memory charged to the cgroup and its children.
func shmem(t *testing.T, dir string) int64 {
	t.Helper()
	st := memStat(t, dir)
	if _, v2 := memoryHierarchy(t); v2 {
		return st["shmem"] // hierarchical on v2
	}
	return st["total_shmem"]
}

// readInt reads a cgroup file holding one number; ok is false when the file
// does not exist or holds something else.
func readInt(dir, name string) (int64, bool) {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return n, err == nil
}

// keyedInt reads "key value" lines (memory.oom_control, memory.events).
func keyedInt(dir, name, key string) (int64, bool) {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, key+" "); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}

// cgroupMemory is what a memory cgroup says about its usage and failures.
type cgroupMemory struct {
	Usage, Peak     int64 // bytes now, and the most since the last reset
	PeakKnown       bool
	Failcnt         int64 // v1: charges that hit the limit; v2: memory.events max
	OOMKills        int64
	RSS, Cache, Shm int64
}

func readCgroupMemory(t *testing.T, dir string) cgroupMemory {
	t.Helper()
	_, v2 := memoryHierarchy(t)
	st := memStat(t, dir)
	var m cgroupMemory
	if v2 {
		m.Usage, _ = readInt(dir, "memory.current")
		m.Peak, m.PeakKnown = readInt(dir, "memory.peak")
		m.Failcnt, _ = keyedInt(dir, "memory.events", "max")
		m.OOMKills, _ = keyedInt(dir, "memory.events", "oom_kill")
		m.RSS, m.Cache, m.Shm = st["anon"], st["file"], st["shmem"]
		return m
	}
	m.Usage, _ = readInt(dir, "memory.usage_in_bytes")
	m.Peak, m.PeakKnown = readInt(dir, "memory.max_usage_in_bytes")
	m.Failcnt, _ = readInt(dir, "memory.failcnt")
	m.OOMKills, _ = keyedInt(dir, "memory.oom_control", "oom_kill")
	m.RSS, m.Cache, m.Shm = st["total_rss"], st["total_cache"], st["total_shmem"]
	return m
}

// resetPeak starts the cgroup's peak usage afresh: v1 takes 0 written to
// memory.max_usage_in_bytes, v2 (Linux 6.12+) any write to memory.peak,
// which resets it for the writer's open file only, so v2 gets no reset here.
func resetPeak(t *testing.T, dir string) bool {
	t.Helper()
	if _, v2 := memoryHierarchy(t); v2 {
		return false
	}
	if err := os.WriteFile(filepath.Join(dir, "memory.max_usage_in_bytes"), []byte("0"), 0); err != nil {
		t.Logf("cannot reset the peak of %s: %v", dir, err)
		return false
	}
	return true
}

// procStatus reads a "kB" line of /proc/pid/status (VmRSS, VmHWM) in bytes.
func procStatus(pid int, key string) (int64, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, key+":"); ok {
			v = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB"))
			n, err := strconv.ParseInt(v, 10, 64)
			return n << 10, err == nil
		}
	}
	return 0, false
}

// volumeTarget is where kubelet has the driver mount pod uid's "secrets"
// volume.
func volumeTarget(uid string) string {
	return filepath.Join(kubeletPods, uid, "volumes", "kubernetes.io~csi", "secrets", "mount")
}

// nodeVolume is a podsecrets tmpfs on the node, as the driver would judge it.
type nodeVolume struct {
	target   string
	readOnly bool // the file system's (superblock's) flag
	data     bool // ..data is a directory
}

func (v nodeVolume) complete() bool { return v.readOnly && v.data }

// nodeVolumes lists the podsecrets tmpfs mounts below the pod directories of
// uids, keyed by uid (one entry per mount point; the topmost of stacked
// mounts, with the count of mounts stacked there).
func nodeVolumes(t *testing.T, uids []string) (map[string]nodeVolume, map[string]int) {
	t.Helper()
	mounts, err := mountinfo.GetMounts(func(m *mountinfo.Info) (bool, bool) {
		return m.FSType != "tmpfs" || m.Source != "podsecrets" || !strings.HasPrefix(m.Mountpoint, kubeletPods+"/"), false
	})
	if err != nil {
		t.Fatal(err)
	}
	vols := map[string]nodeVolume{}
	stacked := map[string]int{}
	for _, m := range mounts {
		rest := strings.TrimPrefix(m.Mountpoint, kubeletPods+"/")
		uid, _, _ := strings.Cut(rest, "/")
		if !slices.Contains(uids, uid) {
			continue
		}
		stacked[uid]++
		// Read-only as the driver marks a complete volume: the mount's
		// flag (a volume of an older driver: its file system's).
		ro := slices.Contains(strings.Split(m.Options, ","), "ro") || slices.Contains(strings.Split(m.VFSOptions, ","), "ro")
		v := nodeVolume{target: m.Mountpoint, readOnly: ro}
		if fi, err := os.Stat(filepath.Join(m.Mountpoint, "..data")); err == nil && fi.IsDir() {
			v.data = true
		}
		vols[uid] = v // the later entry is the topmost
	}
	return vols, stacked
}

// waitNodeClean waits until no podsecrets mount is left below the pod
// directories of uids and their volume directories are gone.
func waitNodeClean(ctx context.Context, t *testing.T, uids []string, timeout time.Duration) {
	t.Helper()
	var left []string
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		left = left[:0]
		vols, _ := nodeVolumes(t, uids)
		for _, v := range vols {
			left = append(left, "mount "+v.target)
		}
		for _, uid := range uids {
			dir := filepath.Dir(volumeTarget(uid)) // .../kubernetes.io~csi/secrets
			if _, err := os.Lstat(dir); !errors.Is(err, fs.ErrNotExist) {
				left = append(left, "dir "+dir)
			}
		}
		return len(left) == 0, nil
	})
	if err != nil {
		if len(left) > 8 {
			left = append(left[:8], fmt.Sprintf("and %d more", len(left)-8))
		}
		t.Fatalf("left on the node after the pods were deleted: %v", left)
	}
}

// createPods creates pods in ns from goroutines, so that they reach the API
// server at once, and returns them in order.
func createPods(ctx context.Context, t *testing.T, ns string, pods []*corev1.Pod) []*corev1.Pod {
	t.Helper()
	out := make([]*corev1.Pod, len(pods))
	errs := make(chan error, len(pods))
	sem := make(chan struct{}, 20)
	for i, p := range pods {
		go func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			c, err := kube.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
			out[i] = c
			errs <- err
		}()
	}
	for range pods {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// waitAllRunning waits until every pod of ns is Running, and fails with the
// events of those that are not. A non-nil abort is called on every poll; an
// error from it ends the wait at once.
func waitAllRunning(ctx context.Context, t *testing.T, ns string, want int, timeout time.Duration, abort func(context.Context) error) []corev1.Pod {
	t.Helper()
	var pods []corev1.Pod
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		if abort != nil {
			if err := abort(ctx); err != nil {
				return false, err
			}
		}
		l, err := kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		pods = l.Items
		running := 0
		for _, p := range pods {
			if p.Status.Phase == corev1.PodRunning {
				running++
			}
		}
		return running == want && len(pods) == want, nil
	})
	if err != nil {
		var b strings.Builder
		n := 0
		for _, p := range pods {
			if p.Status.Phase != corev1.PodRunning && n < 5 {
				n++
				fmt.Fprintf(&b, "%s (%s):\n%s", p.Name, p.Status.Phase, eventsOf(ns, p.Name))
			}
		}
		running := 0
		for _, p := range pods {
			if p.Status.Phase == corev1.PodRunning {
				running++
			}
		}
		t.Fatalf("%d of %d pods of %s Running (timeout %v): %v\n%s", running, want, ns, timeout, err, b.String())
	}
	return pods
}

// deleteAllPods deletes every pod of ns and waits until they are gone.
func deleteAllPods(ctx context.Context, t *testing.T, ns string, timeout time.Duration) {
	t.Helper()
	if err := kube.CoreV1().Pods(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
		t.Fatal(err)
	}
	var left int
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		l, err := kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		left = len(l.Items)
		return left == 0, nil
	})
	if err != nil {
		t.Fatalf("%d pods of %s not gone after %v: %v", left, ns, timeout, err)
	}
}

// waitNodeRoom waits until the node runs at most max pods, so that a
// scenario's pods fit kubelet's maxPods (110 by default) next to what
// earlier scenarios are still tearing down.
func waitNodeRoom(ctx context.Context, t *testing.T, max int, timeout time.Duration) {
	t.Helper()
	var n int
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		l, err := kube.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		n = len(l.Items)
		return n <= max, nil
	})
	if err != nil {
		t.Fatalf("the node still has %d pods (want at most %d before this scenario): %v", n, max, err)
	}
}

// logRecord is one line of the driver's JSON log.
type logRecord struct {
	Msg        string  `json:"msg"`
	Level      string  `json:"level"`
	Namespace  string  `json:"namespace"`
	Pod        string  `json:"pod"`
	State      string  `json:"state"`
	Why        string  `json:"why"`
	Code       string  `json:"code"`
	Error      string  `json:"error"`
	Incomplete *int    `json:"incomplete"`
	Complete   *int    `json:"complete"`
	DurationMs float64 `json:"duration_ms"`
}

func parseLogs(logs string) []logRecord {
	var out []logRecord
	for _, line := range strings.Split(logs, "\n") {
		var r logRecord
		if json.Unmarshal([]byte(line), &r) == nil && r.Msg != "" {
			out = append(out, r)
		}
	}
	return out
}

// logFollower collects a container's log as it is written, so that the log
// of a container that is killed survives it: kubelet keeps only the last
// dead container's log, and not always at once.
type logFollower struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	done chan struct{}
}

// followDriverLogs follows the log of the driver pod's current container,
// from its beginning until the container exits or ctx ends.
func followDriverLogs(ctx context.Context, t *testing.T, pod string) *logFollower {
	t.Helper()
	rc, err := kube.CoreV1().Pods(driverNS).GetLogs(pod, &corev1.PodLogOptions{Container: driverContainer, Follow: true}).Stream(ctx)
	if err != nil {
		t.Fatalf("follow the logs of %s: %v", pod, err)
	}
	f := &logFollower{done: make(chan struct{})}
	go func() {
		defer close(f.done)
		defer rc.Close()
		b := make([]byte, 32<<10)
		for {
			n, err := rc.Read(b)
			f.mu.Lock()
			f.buf.Write(b[:n])
			f.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	return f
}

func (f *logFollower) String() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.buf.String()
}

// ended waits up to timeout for the followed container's log to end.
func (f *logFollower) ended(timeout time.Duration) bool {
	select {
	case <-f.done:
		return true
	case <-time.After(timeout):
		return false
	}
}

// cleanupOnFailure leaves the node usable for the scenarios after a failed
// one: its pods deleted (no publishes retried), a driver out of crash-loop
// backoff if it restarted more than restarts times, nothing left mounted.
func cleanupOnFailure(t *testing.T, ns string, dp *corev1.Pod, restarts int32, uids []string) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
		defer cancel()
		kube.CoreV1().Pods(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
		if p, err := kube.CoreV1().Pods(driverNS).Get(ctx, dp.Name, metav1.GetOptions{}); err == nil &&
			containerStatus(p, driverContainer).RestartCount > restarts {
			t.Logf("restarting the crash-looping driver pod for the next scenarios")
			restartDriver(t)
		}
		deleteAllPods(ctx, t, ns, 4*time.Minute)
		waitNodeClean(ctx, t, uids, time.Minute)
	})
}
