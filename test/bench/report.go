package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// Machine describes where the benchmark ran.
type Machine struct {
	CPUs      int    // runtime.NumCPU
	CPUModel  string // /proc/cpuinfo model name
	MemTotal  string // /proc/meminfo MemTotal
	Kernel    string // release
	GoVersion string // of the toolchain that built the benchmark and the driver
	Commit    string // git describe of the repository
	// TmpFS is the file system type and device under os.TempDir().
	TmpFS string
	// Umount is umount(8) as found on the PATH the driver inherits, or "".
	Umount string
}

func machine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), CPUModel: "unknown", MemTotal: "unknown", Kernel: "unknown", Commit: "unknown"}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				var kib int64
				fmt.Sscanf(strings.TrimSpace(v), "%d", &kib)
				m.MemTotal = fmt.Sprintf("%.1f GiB", float64(kib)/(1<<20))
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if out, err := exec.Command("git", "describe", "--always", "--dirty").Output(); err == nil {
		m.Commit = strings.TrimSpace(string(out))
	}
	m.Umount, _ = exec.LookPath("umount")
	m.TmpFS = "unknown"
	if out, err := exec.Command("findmnt", "-n", "-o", "FSTYPE,SOURCE", "-T", os.TempDir()).Output(); err == nil {
		if f := strings.Fields(string(out)); len(f) == 2 {
			m.TmpFS = f[0] + " (" + f[1] + ")"
		}
	}
	return m
}

// Table is one section of the report.
type Table struct {
	Title  string     // section heading
	Header []string   // column names
	Rows   [][]string // cells
	Notes  []string   // paragraphs after the table
	Alerts []string   // paragraphs after the notes, also printed as text
}

// Report is the rendered result of a run.
type Report struct {
	Intro  []string // Markdown paragraphs, also printed as text
	Tables []Table  // the sections
	Outro  []string // method and how to reproduce (Markdown only)
}

func ms(d time.Duration) string {
	switch {
	case d >= 10*time.Second:
		return fmt.Sprintf("%.1f s", d.Seconds())
	case d >= 100*time.Millisecond:
		return fmt.Sprintf("%.0f ms", float64(d)/1e6)
	case d >= 10*time.Millisecond:
		return fmt.Sprintf("%.1f ms", float64(d)/1e6)
	}
	return fmt.Sprintf("%.2f ms", float64(d)/1e6)
}

func us(d time.Duration) string { return fmt.Sprintf("%.0f µs", float64(d)/1e3) }

func coldWord(cold bool) string {
	if cold {
		return "cold"
	}
	return "warm"
}

func saWord(shared bool) string {
	if shared {
		return "one shared service account"
	}
	return "a service account per pod"
}

func met(ok bool) string {
	if ok {
		return "met"
	}
	return "**not met**"
}

func perMount(n, mounts int) string {
	if mounts == 0 {
		return "-"
	}
	v := float64(n) / float64(mounts)
	if v == float64(int(v)) {
		return fmt.Sprintf("%d", int(v))
	}
	return fmt.Sprintf("%.2f", v)
}

func sumCalls(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// findCase returns the case of volume name at latency and cache state.
func (r *Results) findCase(name string, lat time.Duration, cold bool) *CaseResult {
	for _, c := range r.Cases {
		if c.Vol.Name == name && c.Latency == lat && c.Cold == cold {
			return c
		}
	}
	return nil
}

// goroutineSlack is the goroutine-count growth between two identical bursts
// still counted as no leak: one more idle keep-alive connection (a read and
// a write loop) in each of the driver's HTTP transports that had not yet
// filled its idle pool.
const goroutineSlack = 4

func buildReport(r *Results) *Report {
	rep := &Report{}
	mode := "full"
	if r.Quick {
		mode = "quick (-quick: fewer samples; numbers are noisier)"
	}
	rep.Intro = append(rep.Intro,
		fmt.Sprintf("Run %s UTC, %s run, %d samples per latency case, runtime %s.",
			r.Started.UTC().Format("2006-01-02 15:04"), mode, r.Samples, r.Finished.Sub(r.Started).Round(time.Second)),
		fmt.Sprintf("Machine: %d CPUs (%s), %s RAM, kernel %s, %s, podsecrets %s.",
			r.Machine.CPUs, r.Machine.CPUModel, r.Machine.MemTotal, r.Machine.Kernel, r.Machine.GoVersion, r.Machine.Commit),
		kubeletRootText(r))
	bg := r.Background
	busy := fmt.Sprintf("While measuring, the benchmark process (client, fake store, fake API server) used %.2f cores on average, the driver %.2f, "+
		"other processes on the machine %.2f, hypervisor steal %.2f (of %d); 1-minute load %s at the start, %s at the end.",
		bg.BenchCores, bg.DriverCores, bg.OtherCores, bg.StealCores, r.Machine.CPUs, bg.LoadStart, bg.LoadEnd)
	if bg.OtherCores > 0.25 {
		busy += " **The machine was not idle: other processes' CPU use inflates latencies and overheads; rerun on a quiet machine.**"
	}
	rep.Intro = append(rep.Intro, busy)
	switch r.VolumeMemory {
	case "--volume-memory=pod":
		rep.Intro = append(rep.Intro, "Volumes were written as on a node (--volume-memory=pod): by a child process of the driver that joins "+
			"the pod's memory cgroup first (a scratch cgroup per pod here), so every publish includes moving that process into a new cgroup "+
			"(on cgroup v1 an RCU grace period, several ms). Tables 1–5 run with --aws-share-window=0, so that every sample makes its own reads; "+
			"table 8 measures the sharing.")
	case "--volume-memory=driver":
		rep.Intro = append(rep.Intro, "This machine has no cgroup v1 memory hierarchy: volumes were written by the driver itself "+
			"(--volume-memory=driver), without the per-publish writer process a node runs.")
	}
	umount := "none"
	if r.Machine.Umount != "" {
		umount = r.Machine.Umount
	}
	rep.Intro = append(rep.Intro, fmt.Sprintf("umount(8) on the driver's PATH: %s (the driver's image, distroless, has none; "+
		"k8s.io/mount-utils, which the driver uses to tell mount points, runs it when present).", umount))
	if r.Profiled {
		rep.Intro = append(rep.Intro, "This run's driver was built with net/http/pprof compiled in (BENCH_PPROF_DIR): its numbers are slightly pessimistic.")
	}

	// Targets first: the summary a reader wants.
	targets := Table{Title: "Targets", Header: []string{"#", "target", "measured", "verdict"}}
	var tenObj []*CaseResult
	for _, c := range r.Cases {
		if c.Vol.Objects() == 10 {
			tenObj = append(tenObj, c)
		}
	}
	if len(tenObj) > 0 {
		worst, metN := tenObj[0], 0
		for _, c := range tenObj {
			p := Percentile(c.Overhead, .99)
			if p > Percentile(worst.Overhead, .99) {
				worst = c
			}
			if p < 2*time.Millisecond {
				metN++
			}
		}
		targets.Rows = append(targets.Rows, []string{"1", "driver overhead p99 < 2 ms, 10 objects",
			fmt.Sprintf("worst %s (%s, %d ms, %s); %d of %d 10-object cases under 2 ms",
				ms(Percentile(worst.Overhead, .99)), worst.Vol.Name, worst.Latency.Milliseconds(), coldWord(worst.Cold), metN, len(tenObj)),
			met(metN == len(tenObj))})
	}
	for _, cold := range []bool{false, true} {
		one, ten := r.findCase("sm-1", 20*time.Millisecond, cold), r.findCase("sm-10", 20*time.Millisecond, cold)
		if one == nil || ten == nil {
			continue
		}
		p1, p10 := Percentile(one.Total, .5), Percentile(ten.Total, .5)
		ratio := float64(p10) / float64(p1)
		targets.Rows = append(targets.Rows, []string{"1", fmt.Sprintf("10 SM objects ≤ 2× 1 SM object at 20 ms (%s, p50)", coldWord(cold)),
			fmt.Sprintf("%s vs %s = %.2f×", ms(p10), ms(p1), ratio), met(ratio <= 2)})
	}
	if w, c := r.findCase("sm-10", 20*time.Millisecond, false), r.findCase("sm-10", 20*time.Millisecond, true); w != nil && c != nil {
		w50, c50 := r.findCase("mix-50", 20*time.Millisecond, false), r.findCase("mix-50", 20*time.Millisecond, true)
		m := fmt.Sprintf("10 SM objects: %s warm, %s cold", perMount(sumCalls(w.Calls), w.N()), perMount(sumCalls(c.Calls), c.N()))
		if w50 != nil && c50 != nil {
			m += fmt.Sprintf("; 25 SM + 25 SSM: %s warm, %s cold", perMount(sumCalls(w50.Calls), w50.N()), perMount(sumCalls(c50.Calls), c50.N()))
		}
		targets.Rows = append(targets.Rows, []string{"2", "store calls per mount (no target; the incumbent makes 11 for 10 objects)", m, "–"})
	}
	for i, b := range r.Bursts {
		targets.Rows = append(targets.Rows, []string{"3", fmt.Sprintf("%d concurrent publishes < 1 s (burst %d, %s)", podsPerNode, i+1, saWord(b.SharedSA)),
			fmt.Sprintf("%s wall, %d errors", ms(b.Wall), b.Errors), met(b.Wall < time.Second && b.Errors == 0)})
	}
	if rp := r.Republish; rp != nil {
		targets.Rows = append(targets.Rows, []string{"4", "republish of a mounted volume: 0 store calls",
			fmt.Sprintf("%d store calls in %d republishes", rp.Calls, rp.N), met(rp.Calls == 0)})
	}
	var maxRSS int64
	for _, b := range r.Bursts {
		maxRSS = max(maxRSS, b.Mem.RSS)
	}
	if len(r.Bursts) > 0 {
		targets.Rows = append(targets.Rows, []string{"5", fmt.Sprintf("RSS < 40 MiB with %d volumes mounted", podsPerNode),
			MiB(maxRSS) + " (highest of the bursts)", met(maxRSS < 40*1024)})
	}
	targets.Rows = append(targets.Rows, []string{"5", "idle RSS ≤ 24 MiB (team goal)", MiB(r.IdleMem.RSS), met(r.IdleMem.RSS <= 24*1024)})
	if n := len(r.Bursts); n >= 2 {
		prev, last := r.Bursts[n-2], r.Bursts[n-1]
		growth := last.GoroutinesAfter - prev.GoroutinesAfter
		targets.Rows = append(targets.Rows, []string{"5", "no goroutine leak: none left over from a repeated burst once all is unpublished",
			fmt.Sprintf("%d after burst %d, %d after burst %d (%+d); %d before the bursts, %d idle",
				prev.GoroutinesAfter, n-1, last.GoroutinesAfter, n, growth, r.GoroutinesBefore, r.IdleGoroutines),
			met(growth <= goroutineSlack)})
	}
	fleetTargets, fleetTables := fleetReport(r)
	targets.Rows = append(targets.Rows, fleetTargets...)
	rotTargets, rotTables := rotationReport(r)
	targets.Rows = append(targets.Rows, rotTargets...)
	revTargets, revTables := revisionReport(r)
	targets.Rows = append(targets.Rows, revTargets...)
	rep.Tables = append(rep.Tables, targets)

	// Row 1 and 2.
	lt := Table{
		Title: "1–2. NodePublishVolume latency and store calls (sequential publishes, a fresh pod each, real tmpfs)",
		Header: []string{"volume", "objects", "store latency", "creds", "n", "total p50", "total p99", "store wait p50",
			"API wait p50", "overhead p50", "overhead p99", "driver CPU p50", "STS/mount", "SM Batch/mount", "SM Get/mount", "SSM/mount", "API GETs/mount", "overhead p99 < 2 ms (10 objects)"},
	}
	for _, c := range r.Cases {
		lt.Rows = append(lt.Rows, []string{c.Vol.Name, c.Vol.Kind(), fmt.Sprintf("%d ms", c.Latency.Milliseconds()), coldWord(c.Cold),
			fmt.Sprint(c.N()), ms(Percentile(c.Total, .5)), ms(Percentile(c.Total, .99)), ms(Percentile(c.StoreWait, .5)),
			ms(Percentile(c.APIWait, .5)), ms(Percentile(c.Overhead, .5)), ms(Percentile(c.Overhead, .99)), ms(Percentile(c.CPU, .5)),
			perMount(c.Calls[opSTS], c.N()), perMount(c.Calls[opBatch], c.N()), perMount(c.Calls[opGet], c.N()),
			perMount(c.Calls[opParams], c.N()), perMount(c.APIGets, c.N()), verdict10(c)})
	}
	lt.Notes = []string{
		"total: NodePublishVolume round trip through the CSI socket, as kubelet sees it. store wait: time during which at least one " +
			"request of this publish was inside the fake store's handler (union of in-flight intervals, measured on the store side; " +
			"includes the injected latency and the fake's own SigV4/JWT checks). overhead = total − store wait, per publish; it includes " +
			"the two Kubernetes API GETs (API wait, served in-process by the fake API server), gRPC, SDK signing and HTTP, tmpfs mount, file writes and the read-only remount.",
		"warm: every pod runs as one service account whose STS credentials the driver has cached (after warm-up publishes). " +
			"cold: every pod runs as a service account never seen before, so the driver calls STS AssumeRoleWithWebIdentity first (the credential cache is keyed by namespace, service account, role and region).",
		"driver CPU: CPU time of all the driver's threads during the publish (sum of /proc/<pid>/task/*/schedstat), whichever core it ran on; " +
			"unlike overhead it does not depend on how the driver, the fakes and the client share the machine's cores.",
		"Percentiles are nearest-rank: with 50 samples p99 is the slowest sample.",
	}
	rep.Tables = append(rep.Tables, lt)

	// Row 3 and memory.
	bt := Table{
		Title: fmt.Sprintf("3. Burst: %d distinct pods published concurrently (10 Secrets Manager objects each, 20 ms per store call)", podsPerNode),
		Header: []string{"burst", "service accounts", "wall", "p50", "p99", "max", "errors", "STS calls", "SM calls", "SSM calls", "API GETs",
			"unpublish all (sequential)", "< 1 s"},
	}
	for i, b := range r.Bursts {
		bt.Rows = append(bt.Rows, []string{fmt.Sprint(i + 1), saWord(b.SharedSA), ms(b.Wall), ms(Percentile(b.Samples, .5)), ms(Percentile(b.Samples, .99)),
			ms(Percentile(b.Samples, 1)), fmt.Sprint(b.Errors), fmt.Sprint(b.Calls[opSTS]), fmt.Sprint(b.Calls[opBatch] + b.Calls[opGet]),
			fmt.Sprint(b.Calls[opParams]), fmt.Sprint(b.APIGets), ms(b.UnpublishWall), met(b.Wall < time.Second && b.Errors == 0)})
	}
	bt.Notes = []string{
		"One shared service account is a Deployment scaled up (its credentials are not cached at the start: the driver's " +
			"credential cache makes concurrent publishes share one STS call). A service account per pod is the worst case " +
			"(a node filling up with unrelated workloads): one STS call per pod. Burst 3 repeats burst 2 (new pods, new service accounts) " +
			"as the goroutine-leak check. One gRPC connection carries all calls, as kubelet's does.",
	}
	for i, b := range r.Bursts {
		if b.Errors > 0 {
			bt.Alerts = append(bt.Alerts, fmt.Sprintf("Burst %d: %d of %d publishes failed; the first error: `%s`.", i+1, b.Errors, podsPerNode, b.FirstError))
		}
	}
	if len(r.Bursts) > 0 {
		rep.Tables = append(rep.Tables, bt)
	}

	if rp := r.Republish; rp != nil {
		rt := Table{
			Title: "4. Republish of an unchanged, mounted volume (kubelet's periodic NodePublishVolume), 10 SM objects",
			Header: []string{"republishes", "store calls", "API GETs", "driver CPU / republish (stat)", "child-process CPU / republish",
				"driver CPU / republish (schedstat)", "p50", "p99", "0 store calls"},
			Rows: [][]string{{fmt.Sprint(rp.N), fmt.Sprint(rp.Calls), fmt.Sprint(rp.APIGets), us(rp.CPU.Self / time.Duration(rp.N)),
				us(rp.CPU.Children / time.Duration(rp.N)), us(rp.ThreadCPU / time.Duration(rp.N)), ms(Percentile(rp.Latency, .5)), ms(Percentile(rp.Latency, .99)), met(rp.Calls == 0)}},
			Notes: []string{"CPU from /proc/<pid>/stat: utime+stime of the driver (its own threads) and cutime+cstime (processes it forked " +
				"and waited for), deltas over all republishes, divided by their number (10 ms ticks over the whole loop); " +
				"schedstat: the same for the driver's threads in nanoseconds."},
		}
		rep.Tables = append(rep.Tables, rt)
	}

	mt := Table{
		Title: "5. Driver memory and goroutines",
		Header: []string{"state", "RSS", "peak RSS", "RSS anon", "RSS file", "Go heap in use", "Go heap idle, not released",
			"Go runtime total (sys)", "goroutines", "target"},
	}
	memRow := func(state string, m MemStatus, g int, verdict string) []string {
		return []string{state, MiB(m.RSS), MiB(m.HWM), MiB(m.Anon), MiB(m.File), MiB(m.HeapInuse / 1024),
			MiB((m.HeapIdle - m.HeapReleased) / 1024), MiB(m.Sys / 1024), fmt.Sprint(g), verdict}
	}
	mt.Rows = append(mt.Rows, memRow("idle, 1 s after start", r.IdleMem, r.IdleGoroutines, "RSS ≤ 24 MiB (team goal): "+met(r.IdleMem.RSS <= 24*1024)))
	mt.Rows = append(mt.Rows, []string{"before the bursts (after rows 1, 2, 4)", "", "", "", "", "", "", "", fmt.Sprint(r.GoroutinesBefore), ""})
	for i, b := range r.Bursts {
		leak := ""
		if i > 0 && i == len(r.Bursts)-1 {
			leak = "no growth from burst " + fmt.Sprint(i) + ": " + met(b.GoroutinesAfter-r.Bursts[i-1].GoroutinesAfter <= goroutineSlack)
		}
		mt.Rows = append(mt.Rows,
			memRow(fmt.Sprintf("%d mounted (burst %d)", podsPerNode, i+1), b.Mem, b.GoroutinesMounted, "RSS < 40 MiB: "+met(b.Mem.RSS < 40*1024)),
			[]string{fmt.Sprintf("all unpublished (burst %d), 1 s later", i+1), "", "", "", "", "", "", "", fmt.Sprint(b.GoroutinesAfter), leak})
	}
	mt.Notes = []string{
		"RSS, peak, anon and file from /proc/<pid>/status (VmRSS, VmHWM, RssAnon, RssFile); RSS file is the mapped binary's resident pages. " +
			"Go heap figures are the driver's go_memstats_*_bytes, goroutines its go_goroutines (both from its /metrics). " +
			"tmpfs pages are kernel memory charged to the tmpfs (and the pod's cgroup), not to the driver's RSS.",
		"Idle keep-alive HTTP connections (a read and a write goroutine each; the AWS SDK keeps up to 10 per host and client) " +
			"outlive a burst until their idle timeout (90 s), so the count after a burst is above the idle one; a leak would show as growth from burst 2 to its repeat, burst 3. " +
			"With a plain-HTTP kubeconfig client-go uses Go's default transport (2 idle connections per host); over TLS, as in a cluster, it keeps up to 25.",
	}
	rep.Tables = append(rep.Tables, mt)

	rn := Table{Title: "6. Real node: pod creation → Running", Header: []string{"volume", "median", "samples", "Kubernetes"}}
	if r.RealNode != nil {
		e, p := Median(r.RealNode.EmptyDirMs), Median(r.RealNode.PodsecretsMs)
		rn.Rows = [][]string{
			{"emptyDir", fmt.Sprintf("%.0f ms", e), fmt.Sprint(len(r.RealNode.EmptyDirMs)), r.RealNode.KubernetesVersion},
			{"podsecrets (CSI inline volume)", fmt.Sprintf("%.0f ms", p), fmt.Sprint(len(r.RealNode.PodsecretsMs)), r.RealNode.KubernetesVersion},
			{"difference", fmt.Sprintf("%+.0f ms", p-e), "", ""},
		}
		if len(r.RealNode.DriverPublishMs) > 0 {
			rn.Rows = append(rn.Rows, []string{"NodePublishVolume inside the driver (1 Secrets Manager object)",
				fmt.Sprintf("%.1f ms", Median(r.RealNode.DriverPublishMs)), fmt.Sprint(len(r.RealNode.DriverPublishMs)), r.RealNode.KubernetesVersion})
		}
		rn.Notes = []string{"Measured by the e2e suite on a real one-node cluster and passed in with -realnode; not measured by this program.",
			"Kubelet notices a started container on its next pod lifecycle relist (about once a second), which hides anything shorter; the driver's own publish time, from its audit log, shows the mount itself."}
	} else {
		rn.Rows = [][]string{{"emptyDir vs podsecrets", "not measured (needs make e2e cluster)", "", ""}}
		rn.Notes = []string{"The e2e suite measures it on a real one-node cluster (median of 10 pods each) and writes " +
			`{"emptyDirMs":[...],"podsecretsMs":[...],"kubernetesVersion":"..."}; pass that file with ` +
			"`go run ./test/bench -realnode FILE` to include it here."}
	}
	rep.Tables = append(rep.Tables, rn)

	memTab := Table{Title: "7. Real node: memory with many large volumes at once", Header: []string{"", "measured"}}
	if m := r.Memory; m != nil {
		mib := func(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
		memTab.Rows = [][]string{
			{"pods started at once, each with its own volume of", fmt.Sprintf("%d × %s", m.Pods, mib(m.VolumeBytes))},
			{"all Running after", fmt.Sprintf("%.0f s", m.AllRunningSeconds)},
			{"driver container: peak of its memory cgroup (includes page cache)", mib(m.DriverPeakCgroupBytes)},
			{"driver process: peak RSS; RSS before and after", fmt.Sprintf("%s; %s, %s", mib(m.DriverPeakRSSBytes), mib(m.DriverRSSBeforeBytes), mib(m.DriverRSSAfterBytes))},
			{"tmpfs pages (shmem) charged to the driver's cgroup", mib(m.DriverShmemBytes)},
			{"tmpfs pages charged to each pod's cgroup (min–max); all pods", fmt.Sprintf("%s–%s; %s", mib(m.PodShmemMinBytes), mib(m.PodShmemMaxBytes), mib(m.PodShmemTotalBytes))},
			{"driver restarts, OOM kills", fmt.Sprintf("%d, %d", m.DriverRestarts, m.DriverOOMKills)},
		}
		if len(m.DriverPublishMs) > 0 {
			ps := append([]float64(nil), m.DriverPublishMs...)
			sort.Float64s(ps)
			memTab.Rows = append(memTab.Rows, []string{"NodePublishVolume inside the driver, p50 / max", fmt.Sprintf("%.0f ms / %.0f ms", ps[len(ps)/2], ps[len(ps)-1])})
		}
		memTab.Notes = []string{"Measured by the e2e suite (TestManyLargeVolumes) on a real one-node cluster, cgroup v1, and passed in with -memory. " +
			"Volumes are written by a child process in each pod's memory cgroup (--volume-memory=pod), so their pages count against the pods; " +
			"the DaemonSet's memory request (32Mi) and limit (128Mi) are set from these numbers: the limit leaves room over the peak for the writers' start-up " +
			"(a few MiB each, --max-concurrent-writes of them) and the driver's heap under a burst."}
	} else {
		memTab.Rows = [][]string{{"100 pods × 7.5 MiB", "not measured (needs make e2e cluster; make bench runs it)"}}
	}
	rep.Tables = append(rep.Tables, memTab)
	rep.Tables = append(rep.Tables, fleetTables...)
	rep.Tables = append(rep.Tables, rotTables...)
	rep.Tables = append(rep.Tables, revTables...)

	inc := Table{
		Title:  "Incumbent, quoted from the product brief (not measured here)",
		Header: []string{"", "Secrets Store CSI Driver 1.6 + AWS provider 3.1 (quoted)", "podsecrets (measured above, unless marked)"},
	}
	ours10 := r.findCase("sm-10", 20*time.Millisecond, true)
	ours10w := r.findCase("sm-10", 20*time.Millisecond, false)
	mount10 := "-"
	calls10 := "-"
	if ours10 != nil && ours10w != nil {
		mount10 = fmt.Sprintf("%s p50 cold, %s warm", ms(Percentile(ours10.Total, .5)), ms(Percentile(ours10w.Total, .5)))
		calls10 = fmt.Sprintf("%s cold (%s STS + %s BatchGetSecretValue), %s warm; in parallel",
			perMount(sumCalls(ours10.Calls), ours10.N()), perMount(ours10.Calls[opSTS], ours10.N()), perMount(ours10.Calls[opBatch], ours10.N()),
			perMount(sumCalls(ours10w.Calls), ours10w.N()))
	}
	mem := "-"
	if len(r.Bursts) > 0 {
		mem = fmt.Sprintf("%s idle, %s with %d mounted; one process, no sidecars", MiB(r.IdleMem.RSS), MiB(maxRSS), podsPerNode)
	}
	rot := "-"
	if rp := r.Republish; rp != nil {
		rot = fmt.Sprintf("%d store calls per republish of a class without rotation (table 4); with rotation, see the next rows", rp.Calls/rp.N)
	}
	inc.Rows = [][]string{
		{"mount 10 Secrets Manager secrets, 20 ms per store call", "253 ms", mount10},
		{"store calls for that mount", "11, sequential", calls10},
		{"memory per node", "≈ 93 MiB in two processes, plus two sidecars", mem},
		{"client rate limit", "5 requests/s", "none on store calls; 200 requests/s, burst 400, to the API server (configuration: --kube-api-qps default, not measured)"},
		{"republish", "refetches everything", rot},
	}
	inc.Rows = append(inc.Rows, incumbentRotationRows(r)...)
	rep.Tables = append(rep.Tables, inc)

	if r.FleetOnly {
		// Only the fleet was measured: its targets and tables alone.
		targets.Rows = slices.DeleteFunc(targets.Rows, func(row []string) bool { return row[0] != fleetTargetRow })
		size := "10 nodes × 100 pods"
		if r.Quick {
			size = "-quick: 5 nodes × 40 pods"
		}
		rep.Intro = []string{
			fmt.Sprintf("Run %s UTC, fleet part only (-fleet-only, %s), runtime %s; tables 1–7, 9 and 10 were not measured in this run.",
				r.Started.UTC().Format("2006-01-02 15:04"), size, r.Finished.Sub(r.Started).Round(time.Second)),
			rep.Intro[1], // the machine
		}
		rep.Tables = append([]Table{targets}, fleetTables...)
	}
	if r.RotationOnly {
		// Only rotation was measured: its targets and tables alone, and
		// the incumbent's rows on it.
		targets.Rows = slices.DeleteFunc(targets.Rows, func(row []string) bool { return row[0] != rotationTargetRow })
		size := fmt.Sprintf("a steady state of %d intervals", r.RotationConfig.Intervals)
		if r.Quick {
			size = "-quick: " + size
		}
		rep.Intro = []string{
			fmt.Sprintf("Run %s UTC, rotation part only (-rotation-only, %s), runtime %s; tables 1–8 and 10 were not measured in this run.",
				r.Started.UTC().Format("2006-01-02 15:04"), size, r.Finished.Sub(r.Started).Round(time.Second)),
			rep.Intro[1], // the machine
		}
		inc.Rows = incumbentRotationRows(r)
		rep.Tables = append(append([]Table{targets}, rotTables...), inc)
	}
	if r.RevisionOnly {
		// Only the revision part was measured: its row and table alone.
		targets.Rows = slices.DeleteFunc(targets.Rows, func(row []string) bool { return row[0] != revisionTargetRow })
		rep.Intro = []string{
			fmt.Sprintf("Run %s UTC, revision part only (-revision-only), runtime %s; tables 1–9 were not measured in this run.",
				r.Started.UTC().Format("2006-01-02 15:04"), r.Finished.Sub(r.Started).Round(time.Second)),
			rep.Intro[1], // the machine
		}
		rep.Tables = append([]Table{targets}, revTables...)
	}
	rep.Outro = append(rep.Outro, methodText...)
	if len(r.Profiles) > 0 {
		rep.Outro = append(rep.Outro, "Profiles written: "+strings.Join(r.Profiles, ", ")+".")
	}
	return rep
}

var methodText = []string{
	"## Method",
	"`go run ./test/bench` builds the driver with `make build`, the recipe of the image, " +
		"and runs `podsecrets driver --endpoint unix://$TMP/csi.sock --node-id bench --kubelet-root-dir $TMP/kubelet --kubeconfig $TMP/kubeconfig " +
		"--http-addr 127.0.0.1:<port> --region us-east-1 --log-level warn` as its own process, so its RSS and CPU are the driver's alone, " +
		"with `AWS_ENDPOINT_URL` pointing Secrets Manager, SSM and STS at the AWS-compatible fake store (`test/awsfake/store`: real SigV4 " +
		"and service-account JWT checks, injected per-call latency). The benchmark process serves the fake store and a minimal fake " +
		"Kubernetes API (SecretProviderClass, ServiceAccount with the IRSA role annotation, Node; for table 10 also Pod and SecretVersionRecord) on 127.0.0.1 and counts every request to both.",
	"It calls the driver over its CSI socket as kubelet does: NodePublishVolume with the volume context of an inline ephemeral volume " +
		"(secretProviderClass, pod name/namespace/UID, service account, and a signed service-account token for sts.amazonaws.com in " +
		"csi.storage.k8s.io/serviceAccount.tokens), fsGroup 2000 as volume_mount_group, a target under " +
		"$TMP/kubelet/pods/<uid>/volumes/kubernetes.io~csi/secrets/mount whose parent exists; then NodeUnpublishVolume. The driver mounts real tmpfs. " +
		"The first publish of each case is checked for the right files and values.",
	"The driver and the fakes share the machine's CPUs, as a driver shares a node with its pods; the fake store's own CPU time " +
		"(signature checks) counts as store wait, the fake API server's as driver overhead (reported separately as API wait).",
	"## Reproduce",
	"As root, from the repository: `make bench` (writes this file), or `go run ./test/bench -out docs/benchmarks.md`; " +
		"`-quick` for a smoke run of about a minute (fewer samples, a fleet of 5 nodes × 40 pods instead of 10 × 100); `-fleet-only` for the fleet " +
		"tables alone, `-fleet=false` to skip them; `-rotation-only` for the rotation tables alone (about 1.5 minutes), `-rotation=false` to skip them; " +
		"`-revision-only` for table 10 alone (seconds), `-revision=false` to skip it; `-realnode FILE` to include the e2e suite's real-node measurement; " +
		"`BENCH_PPROF_DIR=DIR` to also save driver CPU and heap profiles (then `go tool pprof -top DIR/cpu-publish-sm10-warm-0ms.pprof`).",
}

// Text renders the report for a terminal.
func (r *Report) Text() string {
	var b bytes.Buffer
	b.WriteString("podsecrets benchmarks\n\n")
	for _, p := range r.Intro {
		b.WriteString(p + "\n")
	}
	for _, t := range r.Tables {
		b.WriteString("\n" + t.Title + "\n")
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, strings.Join(t.Header, "\t"))
		for _, row := range t.Rows {
			fmt.Fprintln(tw, strings.ReplaceAll(strings.Join(row, "\t"), "**", ""))
		}
		tw.Flush()
		for _, a := range t.Alerts {
			b.WriteString(a + "\n")
		}
	}
	return b.String()
}

// Markdown renders the report as docs/benchmarks.md.
func (r *Report) Markdown() string {
	var b bytes.Buffer
	b.WriteString("# podsecrets benchmarks\n\n")
	b.WriteString("Generated by `make bench` (`test/bench`); do not edit by hand.\n\n")
	for _, p := range r.Intro {
		b.WriteString(p + "\n\n")
	}
	for _, t := range r.Tables {
		fmt.Fprintf(&b, "## %s\n\n", t.Title)
		fmt.Fprintf(&b, "| %s |\n", strings.Join(t.Header, " | "))
		fmt.Fprintf(&b, "|%s\n", strings.Repeat(" --- |", len(t.Header)))
		for _, row := range t.Rows {
			fmt.Fprintf(&b, "| %s |\n", strings.Join(row, " | "))
		}
		b.WriteString("\n")
		for _, n := range append(t.Notes, t.Alerts...) {
			b.WriteString(n + "\n\n")
		}
	}
	for _, p := range r.Outro {
		if strings.HasPrefix(p, "## ") {
			b.WriteString(p + "\n\n")
			continue
		}
		b.WriteString(p + "\n\n")
	}
	return b.String()
}

// kubeletRootText says where the kubelet root was and what making and
// removing a directory costs there.
func kubeletRootText(r *Results) string {
	disk := fmt.Sprintf("On this machine's disk (%s, $TMPDIR) making and removing a target directory, as the driver does once per "+
		"publish and unpublish, takes %s and %s (medians of 200, with pod directories coming and going as here).", r.Machine.TmpFS, us(r.DiskMkdir), us(r.DiskRmdir))
	if r.KubeletRootFS != "tmpfs" {
		return "The kubelet root ($TMP/kubelet) is on the disk (-kubelet-root-disk). " + disk
	}
	return "The kubelet root ($TMP/kubelet) is a tmpfs of its own (the volumes are separate tmpfs mounts inside it), and so is the driver's " +
		"$TMPDIR (k8s.io/mount-utils makes and removes a temporary directory there on every IsMountPoint call); on that tmpfs the same " +
		fmt.Sprintf("takes %s and %s. ", us(r.TmpfsMkdir), us(r.TmpfsRmdir)) + disk +
		" A journal-less ext4 (no jbd2) spends that time in ext4's skipping of recently deleted inodes, a cost of the machine, not of the driver; " +
		"run with -kubelet-root-disk to include it."
}

// verdict10 is the overhead target's verdict for 10-object cases.
func verdict10(c *CaseResult) string {
	if c.Vol.Objects() != 10 {
		return "–"
	}
	return met(Percentile(c.Overhead, .99) < 2*time.Millisecond)
}
