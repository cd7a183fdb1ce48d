//go:build e2e

package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
)

// TestKillDriverDuringPublish creates 30 pods at once and SIGKILLs the
// driver's process on the node three times while their volumes are being
// published, the way the OOM killer or a node problem would: no graceful
// shutdown, writer children killed with it (Pdeathsig). Kubelet restarts the
// container (with its crash-loop backoff) and retries every publish that got
// no answer; the restarted driver learns each volume's state from the node
// and completes the incomplete ones in place. Every pod must end up Running
// with exactly its files on a read-only tmpfs, and nothing may be left on the
// node once the pods are deleted.
func TestKillDriverDuringPublish(t *testing.T) {
	const (
		pods = 30
		// Each kill waits for kubelet's restart of the driver: 10 s, 20 s,
		// then 40 s of crash-loop backoff; volumes that failed meanwhile are
		// retried on kubelet's own backoff (up to about a minute after 40 s
		// of failures).
		allRunning = 6 * time.Minute
	)
	thresholds := []int{5, 15, 25} // kill when this many of the pods' tmpfs are mounted
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()

	tn := newTenant(t, "crash")
	ns := tn.ns
	want := map[string]string{
		"db":    "crash-db-" + ns,
		"api":   "crash-api-key-" + ns,
		"cert":  strings.Repeat("crash-cert-"+ns+"\n", 200), // a few pages
		"flags": "crash=on",
	}
	putSecret(t, tn.secret("db"), want["db"])
	putSecret(t, tn.secret("api"), want["api"])
	putSecret(t, tn.secret("cert"), want["cert"])
	putParameter(t, "/e2e/"+ns+"/flags", want["flags"])
	createClass(t, ns, "crash", fmt.Sprintf(`
- {objectName: %q, objectType: secretsmanager, objectAlias: db}
- {objectName: %q, objectType: secretsmanager, objectAlias: api}
- {objectName: %q, objectType: secretsmanager, objectAlias: cert}
- {objectName: %q, objectType: ssmparameter, objectAlias: flags}
`, tn.secret("db"), tn.secret("api"), tn.secret("cert"), "/e2e/"+ns+"/flags"))

	dp := driverPod(ctx, t)
	restartsBefore := containerStatus(dp, driverContainer).RestartCount
	pid := onePID(t, dp)
	// The logs of every driver container that runs during the scenario,
	// followed as they are written; the one running now also holds what
	// happened before it.
	var logs []string
	follow := followDriverLogs(ctx, t, dp.Name)

	specs := make([]*corev1.Pod, pods)
	for i := range specs {
		specs[i] = podSpec(fmt.Sprintf("crash-%02d", i), podOpts{class: "crash"})
	}
	start := time.Now()
	created := createPods(ctx, t, ns, specs)
	uids := make([]string, len(created))
	names := map[string]string{} // uid → pod name
	for i, p := range created {
		uids[i] = string(p.UID)
		names[uids[i]] = p.Name
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("driver logs (the last container followed, tail):\n%s", tail(follow.String(), 60))
		}
	})
	cleanupOnFailure(t, ns, dp, restartsBefore+int32(len(thresholds)), uids)

	var kills []driverKill
	for _, th := range thresholds {
		// Wait, polling the node's mount table, for the threshold: a mount
		// appears when a publish starts writing, so the newest is usually
		// still incomplete when the kill lands.
		var mounted int
		err := wait.PollUntilContextTimeout(ctx, 2*time.Millisecond, 4*time.Minute, true, func(context.Context) (bool, error) {
			vols, _ := nodeVolumes(t, uids)
			mounted = len(vols)
			return mounted >= th, nil
		})
		if err != nil {
			t.Fatalf("only %d of %d volumes mounted, waiting for %d before kill %d: %v", mounted, pods, th, len(kills)+1, err)
		}
		killDriver(ctx, t, pid)
		k := driverKill{at: time.Since(start)}
		// The driver and its writers are dead: the volumes stay as they are
		// until a new driver runs, so this is what the kill left.
		vols, stacked := nodeVolumes(t, uids)
		k.mounted = len(vols)
		for uid, v := range vols {
			if !v.complete() {
				k.incomplete++
				k.incompletePods = append(k.incompletePods, names[uid])
			}
			if stacked[uid] > 1 {
				k.stacked++
			}
		}
		slices.Sort(k.incompletePods)
		t.Logf("kill %d at %v (pid %d): %d of %d volumes mounted, %d incomplete %v, %d with stacked mounts",
			len(kills)+1, k.at.Round(time.Millisecond), pid, k.mounted, pods, k.incomplete, k.incompletePods, k.stacked)

		// Kubelet restarts the container after its backoff; the killed
		// container's log, followed while it ran, ends.
		restartsWant := restartsBefore + int32(len(kills)) + 1
		killedAt := time.Now()
		var newPID int
		err = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
			p, err := kube.CoreV1().Pods(driverNS).Get(ctx, dp.Name, metav1.GetOptions{})
			if err != nil {
				return false, nil
			}
			s := containerStatus(p, driverContainer)
			if s.RestartCount < restartsWant || s.State.Running == nil {
				return false, nil
			}
			if s.RestartCount > restartsWant {
				return false, fmt.Errorf("driver restarted %d times, want %d: something else killed it", s.RestartCount-restartsBefore, restartsWant-restartsBefore)
			}
			ps := driverPIDs(t, string(dp.UID))
			if len(ps) != 1 || ps[0] == pid {
				return false, nil
			}
			newPID = ps[0]
			return true, nil
		})
		if err != nil {
			t.Fatalf("driver not restarted after kill %d: %v", len(kills)+1, err)
		}
		k.restartedAfter = time.Since(killedAt)
		if !follow.ended(30 * time.Second) {
			t.Fatalf("the log of the driver container killed by kill %d did not end", len(kills)+1)
		}
		logs = append(logs, follow.String())
		follow = followDriverLogs(ctx, t, dp.Name)
		kills = append(kills, k)
		pid = newPID
	}

	running := waitAllRunning(ctx, t, ns, pods, allRunning, nil)
	t.Logf("all %d pods Running %v after the first create, with %d kills", pods, time.Since(start).Round(time.Millisecond), len(kills))
	// The container started after the last kill must be ready, serving
	// kubelet, before the pods are deleted (unpublish needs it).
	waitDriverReady(ctx, t, dp.Name)

	// (a)–(c) from inside every pod: readerScript's report, printed by the
	// container once kubelet has started it, i.e. after its publish
	// succeeded.
	for _, p := range running {
		r := readReport(t, ns, p.Name)
		checkVolumeReport(t, p.Name, r, want)
	}
	// And again now that every kill is over, in each container's own mount
	// namespace (its /proc/<pid>/mounts is the container's /proc/mounts, its
	// /proc/<pid>/root the container's root): pods started before a later
	// kill must not have lost or changed anything.
	for _, p := range running {
		checkFromContainer(t, &p, want)
	}

	// What the kills did, from the logs of every container that ran. The
	// last one is still being followed: its record of the last publish may
	// trail the pod's start a little.
	var all []logRecord
	wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		all = parseLogs(strings.Join(append(slices.Clone(logs), follow.String()), "\n"))
		answered := map[string]bool{}
		for _, r := range all {
			if r.Namespace == ns && (r.Msg == "volume published" || r.Msg == "volume completed" || r.Msg == "volume sealed" || r.Msg == "republish: volume kept") {
				answered[r.Pod] = true
			}
		}
		return len(answered) == pods, nil
	})
	published, completed, kept, failed := map[string]int{}, map[string]int{}, map[string]int{}, 0
	var incompleteAtStart int
	for _, r := range all {
		if r.Msg == "start: volumes on the node" && r.Incomplete != nil {
			incompleteAtStart += *r.Incomplete
		}
		if r.Namespace != ns {
			continue
		}
		switch r.Msg {
		case "volume published":
			published[r.Pod]++
		case "volume completed", "volume sealed":
			completed[r.Pod]++
		case "republish: volume kept":
			kept[r.Pod]++
		case "publish failed":
			failed++
		}
	}
	var incompleteSeen []string
	for _, k := range kills {
		incompleteSeen = append(incompleteSeen, k.incompletePods...)
	}
	slices.Sort(incompleteSeen)
	incompleteSeen = slices.Compact(incompleteSeen)
	p := driverPod(ctx, t)
	restarts := containerStatus(p, driverContainer).RestartCount - restartsBefore
	t.Logf("driver restarts %d (after %v); volumes left incomplete by the kills: %d (%d pods: %v); "+
		"incomplete volumes found by restarted drivers at start: %d; driver log records for the pods: %d published, %d completed in place %v, %d kept on republish, %d failed publishes",
		restarts, restartDelays(kills), len(incompleteSeen), len(incompleteSeen), incompleteSeen, incompleteAtStart,
		sum(published), sum(completed), keys(completed), sum(kept), failed)

	if restarts != int32(len(kills)) {
		t.Errorf("driver container restarted %d times, want %d (one per kill)", restarts, len(kills))
	}
	// Every pod got an answer of success from some driver: a volume written
	// whole, completed in place, or found complete after the answer was
	// lost with a killed driver.
	for _, p := range running {
		if published[p.Name]+completed[p.Name]+kept[p.Name] == 0 {
			t.Errorf("%s: no driver logged its volume published, completed or kept", p.Name)
		}
	}
	// A volume a kill left incomplete is finished by a later driver: in
	// place ("volume completed"), or, if that failed, written anew.
	for _, name := range incompleteSeen {
		if completed[name]+published[name] == 0 {
			t.Errorf("%s: its volume was incomplete after a kill, and no later driver completed or published it", name)
		}
	}
	if len(incompleteSeen) == 0 {
		t.Logf("no kill landed while a volume was being written (the scenario still checks that kills between publishes leave every pod correct)")
	}
	if len(completed) == 0 {
		t.Logf(`no "volume completed" in the driver logs`)
	}

	deleteAllPods(ctx, t, ns, 3*time.Minute)
	waitNodeClean(ctx, t, uids, 2*time.Minute)
}

func onePID(t *testing.T, dp *corev1.Pod) int {
	t.Helper()
	ps := driverPIDs(t, string(dp.UID))
	if len(ps) != 1 {
		t.Fatalf("want one driver process of pod %s on the node, found %v", dp.Name, ps)
	}
	return ps[0]
}

// waitDriverReady waits for the driver pod's readiness (its /readyz: the
// driver serves kubelet).
func waitDriverReady(ctx context.Context, t *testing.T, name string) {
	t.Helper()
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		p, err := kube.CoreV1().Pods(driverNS).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		return containerStatus(p, driverContainer).Ready, nil
	})
	if err != nil {
		t.Fatalf("driver %s not ready: %v", name, err)
	}
}

// checkVolumeReport checks what readerScript printed: exactly the files of
// want with their content, a read-only tmpfs, no write.
func checkVolumeReport(t *testing.T, pod string, r report, want map[string]string) {
	t.Helper()
	if len(r.files) != len(want) {
		t.Errorf("%s sees files %v, want %v", pod, keys(r.files), keys(want))
	}
	for name, content := range want {
		if got, ok := r.files[name]; !ok || got.content != content {
			t.Errorf("%s: %s reads %.40q (present %t), want %.40q", pod, name, got.content, ok, content)
		}
	}
	if !readOnlyTmpfs(r.mount) {
		t.Errorf("%s: volume mount %q: want a read-only tmpfs", pod, r.mount)
	}
	if r.write != "denied" {
		t.Errorf("%s could write into its secrets volume (%q)", pod, r.write)
	}
}

// readOnlyTmpfs reports whether a /proc/mounts line is a read-only tmpfs.
func readOnlyTmpfs(line string) bool {
	f := strings.Fields(line)
	return len(f) >= 4 && f[2] == "tmpfs" && slices.Contains(strings.Split(f[3], ","), "ro")
}

// appPID returns the host PID of a process of pod p's "app" container, from
// the container's memory cgroup.
func appPID(t *testing.T, p *corev1.Pod) int {
	t.Helper()
	id := containerID(containerStatus(p, "app"))
	if id == "" {
		t.Fatalf("%s: no app container ID", p.Name)
	}
	b, err := os.ReadFile(filepath.Join(podCgroup(t, string(p.UID)), id, "cgroup.procs"))
	if err != nil {
		t.Fatalf("%s: processes of the app container: %v", p.Name, err)
	}
	// The container's first process, which lives as long as it does, not
	// one of the short-lived children a reader loop starts: the one whose
	// parent (the runtime's shim) is outside the container. Not the lowest
	// PID: PIDs wrap around on a machine that has started millions of
	// processes, and a child can get a lower one than its parent.
	procs := map[int]bool{}
	for _, f := range strings.Fields(string(b)) {
		var n int
		if _, err := fmt.Sscan(f, &n); err == nil {
			procs[n] = true
		}
	}
	pid := 0
	for n := range procs {
		if pp, ok := parentPID(n); ok && !procs[pp] {
			pid = n
		}
	}
	if pid == 0 {
		t.Fatalf("%s: no first process in the app container (%q)", p.Name, b)
	}
	return pid
}

// parentPID reads the parent of process pid from /proc (false if it is gone).
func parentPID(pid int) (int, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	// "pid (comm) state ppid ...": comm may hold spaces and parentheses.
	rest := string(b)
	if i := strings.LastIndexByte(rest, ')'); i >= 0 {
		rest = rest[i+1:]
	}
	var state string
	var ppid int
	if _, err := fmt.Sscan(rest, &state, &ppid); err != nil {
		return 0, false
	}
	return ppid, true
}

// checkFromContainer checks pod p's volume through its container's mount
// namespace: the container's /proc/mounts line of /mnt/secrets, the files'
// content, and that creating a file there fails with EROFS.
func checkFromContainer(t *testing.T, p *corev1.Pod, want map[string]string) {
	t.Helper()
	pid := appPID(t, p)
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/mounts", pid))
	if err != nil {
		t.Fatalf("%s: %v", p.Name, err)
	}
	var line string
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 1 && f[1] == "/mnt/secrets" {
			line = l
		}
	}
	if !readOnlyTmpfs(line) {
		t.Errorf("%s: the container's /proc/mounts has %q for /mnt/secrets: want a read-only tmpfs", p.Name, line)
	}
	dir := fmt.Sprintf("/proc/%d/root/mnt/secrets", pid)
	for name, content := range want {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || string(got) != content {
			t.Errorf("%s: %s reads %.40q (%v) from the container, want %.40q", p.Name, name, got, err, content)
		}
	}
	f, err := os.OpenFile(filepath.Join(dir, "probe-after-kills"), os.O_CREATE|os.O_WRONLY, 0o644)
	if err == nil {
		f.Close()
		t.Errorf("%s: a file could be created in the volume from the container's mount namespace", p.Name)
	} else if !errors.Is(err, syscall.EROFS) {
		t.Errorf("%s: creating a file in the volume: %v, want EROFS", p.Name, err)
	}
}

// driverKill is what one SIGKILL of the driver left on the node.
type driverKill struct {
	at                  time.Duration // since the first pod was created
	mounted, incomplete int           // the pods' volumes
	incompletePods      []string
	stacked             int           // volumes with more than one mount
	restartedAfter      time.Duration // until kubelet ran a new driver
}

func restartDelays(ks []driverKill) []time.Duration {
	var out []time.Duration
	for _, k := range ks {
		out = append(out, k.restartedAfter.Round(100*time.Millisecond))
	}
	return out
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
