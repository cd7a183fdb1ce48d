//go:build e2e

package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// sumScript prints the volume's mount entry, the SHA-256 of every file, and
// whether the pod can write, then waits: the files themselves are too big
// for a container log.
const sumScript = `d=/mnt/secrets
echo "MOUNT $(grep " $d " /proc/mounts)"
for f in $(ls $d); do set -- $(sha256sum < $d/$f); echo "SUM $f $1"; done
if touch $d/probe 2>/dev/null; then echo "WRITE allowed"; else echo "WRITE denied"; fi
echo DONE
exec sleep 3600`

// TestManyLargeVolumes starts 100 pods at once, each with its own 7.5 MiB
// volume (120 Secrets Manager secrets of 64 KiB, the store's largest secret
// value), 750 MiB in all on a node whose driver may use 128 MiB. The pages
// must be charged to the pods' memory cgroups, not the driver's, and the
// driver must neither be OOM-killed nor restart. It measures the driver's
// peak memory and the time until every pod runs; with
// PODSECRETS_E2E_MEMORY_OUT set it writes them there as JSON.
func TestManyLargeVolumes(t *testing.T) {
	const (
		pods       = 100
		objects    = 120
		objectSize = 64 << 10 // Secrets Manager's limit for a secret value
		volumeData = objects * objectSize
		allRunning = 6 * time.Minute
		maxPods    = 110 // kubelet's default; test/e2e/cluster/up.sh keeps it
	)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()

	tn := newTenant(t, "large")
	ns := tn.ns
	rng := rand.New(rand.NewChaCha8([32]byte{'p', 'o', 'd', 's', 'e', 'c', 'r', 'e', 't', 's'}))
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	want := map[string]string{} // alias → sha256
	var class strings.Builder
	for i := range objects {
		b := make([]byte, objectSize)
		for j := range b {
			b[j] = alphabet[rng.IntN(len(alphabet))]
		}
		name, alias := tn.secret(fmt.Sprintf("big-%03d", i)), fmt.Sprintf("s%03d", i)
		putSecret(t, name, string(b))
		sum := sha256.Sum256(b)
		want[alias] = hex.EncodeToString(sum[:])
		fmt.Fprintf(&class, "- {objectName: %q, objectType: secretsmanager, objectAlias: %s}\n", name, alias)
	}
	createClass(t, ns, "large", class.String())

	// Earlier scenarios' pods may still be on their way out.
	waitNodeRoom(ctx, t, maxPods-pods, 3*time.Minute)

	dp := driverPod(ctx, t)
	ds := containerStatus(dp, driverContainer)
	pid := onePID(t, dp)
	podCg := podCgroup(t, string(dp.UID))
	ctrCg := podCg + "/" + containerID(ds)
	if _, err := os.Stat(ctrCg); err != nil {
		t.Fatalf("driver container cgroup: %v", err)
	}
	ctrBefore, podBefore := readCgroupMemory(t, ctrCg), readCgroupMemory(t, podCg)
	peakReset := resetPeak(t, ctrCg) && resetPeak(t, podCg)
	// Writing 5 to clear_refs resets the process's VmHWM (peak RSS).
	hwmReset := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0) == nil
	rssBefore, _ := procStatus(pid, "VmRSS")
	t.Logf("driver before: RSS %s, container cgroup usage %s (rss %s, cache %s, shmem %s), limit %s; peak reset %t, VmHWM reset %t",
		mib(rssBefore), mib(ctrBefore.Usage), mib(ctrBefore.RSS), mib(ctrBefore.Cache), mib(ctrBefore.Shm),
		limitOf(ctrCg), peakReset, hwmReset)

	// The driver's log as it is written: if it is killed, kubelet may not
	// have its log to give.
	follow := followDriverLogs(ctx, t, dp.Name)

	specs := make([]*corev1.Pod, pods)
	for i := range specs {
		p := podSpec(fmt.Sprintf("large-%03d", i), podOpts{class: "large"})
		p.Spec.Containers[0].Command = []string{"sh", "-c", sumScript}
		specs[i] = p
	}
	start := time.Now()
	created := createPods(ctx, t, ns, specs)
	uids := make([]string, len(created))
	for i, p := range created {
		uids[i] = string(p.UID)
	}
	cleanupOnFailure(t, ns, dp, ds.RestartCount, uids)
	// A restart of the driver fails the scenario at once, with what killed
	// it: its container is started again into the same burst of retries.
	driverRestarted := func(ctx context.Context) error {
		p, err := kube.CoreV1().Pods(driverNS).Get(ctx, dp.Name, metav1.GetOptions{})
		if err != nil {
			return nil
		}
		s := containerStatus(p, driverContainer)
		if s.RestartCount == ds.RestartCount {
			return nil
		}
		msg := fmt.Sprintf("the driver container restarted during the burst (restarts %d → %d)", ds.RestartCount, s.RestartCount)
		if term := s.LastTerminationState.Terminated; term != nil {
			msg += fmt.Sprintf(": last container %s, exit code %d, ran %v", term.Reason, term.ExitCode, term.FinishedAt.Sub(term.StartedAt.Time).Round(time.Millisecond))
		}
		pc := readCgroupMemory(t, podCg)
		msg += fmt.Sprintf("; driver pod cgroup: failcnt +%d, peak %s of %s", pc.Failcnt-podBefore.Failcnt, mib(pc.Peak), limitOf(podCg))
		follow.ended(10 * time.Second)
		prev := follow.String()
		counts := map[string]int{}
		for _, r := range parseLogs(prev) {
			if r.Namespace == ns || strings.HasPrefix(r.Pod, ns+"/") { // "aws: fetched" names the pod ns/name
				counts[r.Msg]++
			}
		}
		msg += fmt.Sprintf("; for this scenario's pods the killed container logged %d \"aws: fetched\", %d \"volume published\", %d \"publish failed\"; its last lines:\n%s",
			counts["aws: fetched"], counts["volume published"], counts["publish failed"], tail(prev, 12))
		return errors.New(msg)
	}
	running := waitAllRunning(ctx, t, ns, pods, allRunning, driverRestarted)
	took := time.Since(start)

	// The driver's memory, right after the burst.
	ctrAfter, podAfter := readCgroupMemory(t, ctrCg), readCgroupMemory(t, podCg)
	rssAfter, rssOK := procStatus(pid, "VmRSS")
	hwm, _ := procStatus(pid, "VmHWM")
	dpAfter := driverPod(ctx, t)
	restarts := containerStatus(dpAfter, driverContainer).RestartCount - ds.RestartCount
	t.Logf("%d pods with a %s volume each: all Running %v after the first create", pods, mib(volumeData), took.Round(time.Millisecond))
	t.Logf("driver after: RSS %s (process alive %t), peak RSS (VmHWM) %s; container cgroup: peak %s, usage %s (rss %s, cache %s, shmem %s), failcnt +%d, oom kills +%d; pod cgroup: peak %s, failcnt +%d, oom kills +%d; restarts %d",
		mib(rssAfter), rssOK, mib(hwm), mib(ctrAfter.Peak), mib(ctrAfter.Usage), mib(ctrAfter.RSS), mib(ctrAfter.Cache), mib(ctrAfter.Shm),
		ctrAfter.Failcnt-ctrBefore.Failcnt, ctrAfter.OOMKills-ctrBefore.OOMKills,
		mib(podAfter.Peak), podAfter.Failcnt-podBefore.Failcnt, podAfter.OOMKills-podBefore.OOMKills, restarts)
	if restarts != 0 {
		t.Errorf("the driver container restarted %d times during the burst (last state %+v)", restarts, containerStatus(dpAfter, driverContainer).LastTerminationState)
	}
	if !rssOK {
		t.Errorf("driver process %d is gone", pid)
	}
	// On cgroup v1 an OOM kill is counted in the victim's own cgroup (the
	// container's, which a restart replaces), failcnt in every cgroup whose
	// limit was hit: the pod's has the driver's limit too.
	if n := ctrAfter.OOMKills - ctrBefore.OOMKills; n != 0 {
		t.Errorf("%d OOM kills in the driver's container cgroup", n)
	}
	if n := podAfter.Failcnt - podBefore.Failcnt; n != 0 {
		t.Errorf("the driver hit its memory limit %d times (memory.failcnt of its pod cgroup)", n)
	}
	// None of the 750 MiB is the driver's.
	if d := ctrAfter.Shm - ctrBefore.Shm; d >= volumeData {
		t.Errorf("the driver's container cgroup holds %s more tmpfs memory than before: volumes are charged to it", mib(d))
	}

	// Every pod's files, from inside the pod; its volume's pages, from its
	// memory cgroup on the node.
	var shm []int64
	for _, p := range running {
		checkSums(ctx, t, ns, p.Name, want)
		s := shmem(t, podCgroup(t, string(p.UID)))
		shm = append(shm, s)
		if s < volumeData {
			t.Errorf("%s: its memory cgroup holds %s of tmpfs memory, less than its volume's %s", p.Name, mib(s), mib(volumeData))
		}
	}
	slices.Sort(shm)
	var shmSum int64
	for _, s := range shm {
		shmSum += s
	}
	t.Logf("pods' memory cgroups: tmpfs (shmem) min %s, max %s, total %s for %d volumes of %s; driver container shmem %s",
		mib(shm[0]), mib(shm[len(shm)-1]), mib(shmSum), pods, mib(volumeData), mib(ctrAfter.Shm))

	var publishMs []float64
	for _, r := range parseLogs(follow.String()) {
		if r.Msg == "volume published" && r.Namespace == ns {
			publishMs = append(publishMs, r.DurationMs)
		}
	}
	slices.Sort(publishMs)
	if len(publishMs) > 0 {
		t.Logf("driver publish duration over %d publishes: p50 %.1f ms, p90 %.1f ms, max %.1f ms",
			len(publishMs), publishMs[len(publishMs)/2], publishMs[len(publishMs)*9/10], publishMs[len(publishMs)-1])
	}

	if out := os.Getenv("PODSECRETS_E2E_MEMORY_OUT"); out != "" {
		res := map[string]any{
			"pods": pods, "volumeBytes": volumeData, "objectsPerVolume": objects,
			"allRunningSeconds":         took.Seconds(),
			"driverPeakCgroupBytes":     ctrAfter.Peak, // container cgroup; includes page cache
			"driverPodPeakCgroupBytes":  podAfter.Peak,
			"driverPeakResetAtStart":    peakReset,
			"driverPeakRSSBytes":        hwm,
			"driverPeakRSSResetAtStart": hwmReset,
			"driverRSSBeforeBytes":      rssBefore,
			"driverRSSAfterBytes":       rssAfter,
			"driverCgroupUsageAfter":    ctrAfter.Usage,
			"driverShmemBytes":          ctrAfter.Shm,
			"driverRestarts":            restarts,
			"driverOOMKills":            ctrAfter.OOMKills - ctrBefore.OOMKills,
			"driverFailcnt":             podAfter.Failcnt - podBefore.Failcnt, // pod cgroup: survives a container restart
			"podShmemMinBytes":          shm[0],
			"podShmemMaxBytes":          shm[len(shm)-1],
			"podShmemTotalBytes":        shmSum,
			"driverPublishMs":           publishMs,
		}
		b, _ := json.MarshalIndent(res, "", "  ")
		if err := os.WriteFile(out, b, 0o644); err != nil {
			t.Error(err)
		}
	}

	deleteAllPods(ctx, t, ns, 4*time.Minute)
	waitNodeClean(ctx, t, uids, 2*time.Minute)
}

// checkSums checks what sumScript printed in pod: every file of want with
// its SHA-256 and nothing else, a read-only tmpfs, no write.
func checkSums(ctx context.Context, t *testing.T, ns, pod string, want map[string]string) {
	t.Helper()
	logs := podOutput(ctx, t, ns, pod, 2*time.Minute)
	got := map[string]string{}
	var mount, write string
	for _, line := range strings.Split(logs, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) > 0 && f[0] == "MOUNT":
			mount = strings.TrimPrefix(line, "MOUNT ")
		case len(f) == 3 && f[0] == "SUM":
			got[f[1]] = f[2]
		case len(f) == 2 && f[0] == "WRITE":
			write = f[1]
		}
	}
	if len(got) != len(want) {
		t.Errorf("%s sees %d files, want %d", pod, len(got), len(want))
	}
	bad := 0
	for name, sum := range want {
		if got[name] != sum {
			bad++
		}
	}
	if bad > 0 {
		t.Errorf("%s: %d of %d files missing or with the wrong content", pod, bad, len(want))
	}
	if !readOnlyTmpfs(mount) {
		t.Errorf("%s: volume mount %q: want a read-only tmpfs", pod, mount)
	}
	if write != "denied" {
		t.Errorf("%s could write into its secrets volume (%q)", pod, write)
	}
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// limitOf is a memory cgroup's limit, for logs.
func limitOf(dir string) string {
	if n, ok := readInt(dir, "memory.limit_in_bytes"); ok {
		return mib(n)
	}
	if b, err := os.ReadFile(dir + "/memory.max"); err == nil {
		return strings.TrimSpace(string(b))
	}
	return "unknown"
}
