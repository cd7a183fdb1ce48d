// Command bench is the program behind `make bench`: it builds the real
// podsecrets binary, runs `podsecrets driver` as its own process against an
// AWS-compatible fake store and a minimal fake Kubernetes API server (both
// served by this process on 127.0.0.1), calls it over its CSI socket the
// way kubelet does, with real tmpfs mounts, and reports publish latency,
// store calls, a 110-pod burst, republish cost and the driver's memory;
// then a fleet of driver processes against one fake store enforcing AWS's
// account quotas, scaled down to the fleet (fleet.go), with today's read
// strategy and the new one; then rotation (rotation.go): the store calls of
// unchanged secrets and the time a new version takes to reach every pod,
// time-scaled; and versionPolicy Revision mounts against PodStart ones
// (revision.go).
//
// Usage (as root, from the repository):
//
//	go run ./test/bench [-out docs/benchmarks.md] [-quick] [-realnode FILE] [-fleet=false | -fleet-only] [-rotation=false | -rotation-only]
//	    [-revision=false | -revision-only]
//
// BENCH_PPROF_DIR=dir additionally builds the driver with net/http/pprof
// (through a build overlay; the sources are not changed) and saves CPU
// profiles of publish and republish loops and a heap profile with 110
// volumes mounted into dir.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"net/http/httptest"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"

	"github.com/podsecrets/podsecrets/test/awsfake/store"
)

func main() {
	out := flag.String("out", "", "also write the report as Markdown to this file (make bench: docs/benchmarks.md)")
	quick := flag.Bool("quick", false, "fewer samples and a smaller fleet (5 nodes × 40 pods): a smoke run of about a minute")
	realnode := flag.String("realnode", "", "JSON file of the e2e suite's real-node pod start-up times to include")
	memory := flag.String("memory", "", "JSON file of the e2e suite's real-node memory scenario (100 × 7.5 MiB volumes) to include")
	onDisk := flag.Bool("kubelet-root-disk", false, "keep the kubelet root on $TMPDIR's file system instead of a tmpfs of its own")
	fleet := flag.Bool("fleet", true, "also run the fleet benchmark (several driver processes against one quota-limited store)")
	fleetOnly := flag.Bool("fleet-only", false, "run only the fleet benchmark (its tables alone in the report)")
	rotation := flag.Bool("rotation", true, "also run the rotation benchmark (time-scaled steady state and change propagation, about 1.5 minutes)")
	rotationOnly := flag.Bool("rotation-only", false, "run only the rotation benchmark (its tables alone in the report)")
	revision := flag.Bool("revision", true, "also run the revision benchmark (versionPolicy Revision mounts against PodStart ones, a few seconds)")
	revisionOnly := flag.Bool("revision-only", false, "run only the revision benchmark (its table alone in the report)")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "bench: unexpected arguments", flag.Args())
		os.Exit(2)
	}
	onlies := 0
	for _, b := range []bool{*fleetOnly, *rotationOnly, *revisionOnly} {
		if b {
			onlies++
		}
	}
	if onlies > 1 {
		fmt.Fprintln(os.Stderr, "bench: -fleet-only, -rotation-only and -revision-only exclude each other")
		os.Exit(2)
	}
	only := onlies > 0
	// A closed stdout or stderr (| head) must not kill the run before its
	// clean-up: writes then fail instead.
	signal.Ignore(syscall.SIGPIPE)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	err := run(ctx, options{out: *out, quick: *quick, realnode: *realnode, memory: *memory, onDisk: *onDisk, pprofDir: os.Getenv("BENCH_PPROF_DIR"),
		fleet: *fleetOnly || *fleet && !only, fleetOnly: *fleetOnly,
		rotation: *rotationOnly || *rotation && !only, rotationOnly: *rotationOnly,
		revision: *revisionOnly || *revision && !only, revisionOnly: *revisionOnly})
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

type options struct {
	out, realnode, memory, pprofDir string
	quick, onDisk                   bool
	fleet, fleetOnly                bool
	rotation, rotationOnly          bool
	revision, revisionOnly          bool
}

// Results is everything one run measured.
type Results struct {
	Started, Finished time.Time        // the whole run
	Quick             bool             // -quick
	FleetOnly         bool             // -fleet-only: only Fleet was measured
	RotationOnly      bool             // -rotation-only: only Rotation was measured
	RevisionOnly      bool             // -revision-only: only Revision was measured
	Profiled          bool             // the driver had pprof compiled in
	Samples           int              // per latency case
	Machine           Machine          // where it ran
	VolumeMemory      string           // the driver's --volume-memory flag
	IdleMem           MemStatus        // 1 s after the driver started
	IdleGoroutines    int              // idem
	GoroutinesBefore  int              // before the bursts
	Cases             []*CaseResult    // rows 1 and 2
	Republish         *RepublishResult // row 4
	Bursts            []*BurstResult   // rows 3 and 5
	RealNode          *RealNode        // row 6, from -realnode
	Memory            *RealNodeMemory  // row 7, from -memory
	// KubeletRootFS says where the kubelet root was; FS* are the medians of
	// making and removing a target directory on the disk and on tmpfs.
	KubeletRootFS          string
	DiskMkdir, DiskRmdir   time.Duration   // on $TMPDIR's file system
	TmpfsMkdir, TmpfsRmdir time.Duration   // on the kubelet root's tmpfs, if any
	Profiles               []string        // files written for BENCH_PPROF_DIR
	Fleet                  []*FleetRun     // table 8, one run per strategy
	Rotation               []*RotationRun  // table 9, one run per class and pod count
	RotationConfig         RotationConfig  // its shape
	RotationLoad           [2]string       // 1-minute load at its start and end
	Revision               *RevisionResult // table 10
	Background             Background      // how busy the machine was
}

// Background is how busy the machine was while the benchmark measured,
// in average cores used (of Machine.CPUs).
type Background struct {
	// OtherCores were used by processes other than the benchmark and the
	// driver; StealCores were taken by the hypervisor.
	OtherCores, StealCores float64
	// BenchCores were used by the benchmark process, DriverCores by the
	// driver and the processes it ran.
	BenchCores, DriverCores float64
	// LoadStart and LoadEnd are /proc/loadavg's 1-minute load.
	LoadStart, LoadEnd string
}

// loadAvg returns the 1-minute load average.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	if f := strings.Fields(string(b)); len(f) > 0 {
		return f[0]
	}
	return "?"
}

func run(ctx context.Context, o options) (err error) {
	if os.Geteuid() != 0 {
		return errors.New("needs root: the driver mounts tmpfs volumes")
	}
	res := &Results{Started: time.Now(), Quick: o.quick, FleetOnly: o.fleetOnly, RotationOnly: o.rotationOnly, RevisionOnly: o.revisionOnly, Profiled: o.pprofDir != "", Machine: machine()}
	samples, warmup, republishN := 50, 3, 2000
	if o.quick {
		samples, warmup, republishN = 12, 2, 300
	}
	res.Samples = samples

	// Fail early on what would otherwise fail only at the end.
	if o.out != "" {
		if err := os.MkdirAll(filepath.Dir(o.out), 0o755); err != nil {
			return fmt.Errorf("-out: %w", err)
		}
	}
	// Read the real-node file first: a typo should not cost a whole run.
	if o.memory != "" {
		b, err := os.ReadFile(o.memory)
		if err != nil {
			return fmt.Errorf("-memory: %w", err)
		}
		res.Memory = &RealNodeMemory{}
		if err := json.Unmarshal(b, res.Memory); err != nil || res.Memory.Pods == 0 {
			return fmt.Errorf("-memory %s: not the e2e memory scenario's JSON (%v)", o.memory, err)
		}
	}
	if o.realnode != "" {
		rn, err := readRealNode(o.realnode)
		if err != nil {
			return err
		}
		res.RealNode = rn
	}

	root, err := moduleRoot(ctx)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "podsecrets-bench-")
	if err != nil {
		return err
	}
	e := &Env{kubeletRoot: filepath.Join(tmp, "kubelet"), published: map[string]*csi.NodePublishVolumeRequest{}}
	// Clean-up runs whatever happened: unpublish, stop the driver, unmount
	// anything left below tmp, remove tmp.
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if e.drv != nil {
			if e.drv.Alive() {
				if uerr := e.unpublishAll(cctx); uerr != nil && err == nil {
					err = fmt.Errorf("clean-up: %w", uerr)
				}
			}
			e.drv.Stop()
		}
		// Volumes the driver left behind, then the kubelet root's own tmpfs.
		if n, uerr := unmountBelow(e.kubeletRoot); uerr != nil && err == nil {
			err = fmt.Errorf("clean-up: %w", uerr)
		} else if n > 0 {
			fmt.Fprintf(os.Stderr, "bench: clean-up unmounted %d leftover volumes\n", n)
		}
		if _, uerr := unmountBelow(tmp); uerr != nil && err == nil {
			err = fmt.Errorf("clean-up: %w", uerr)
		}
		if rerr := os.RemoveAll(tmp); rerr != nil && err == nil {
			err = fmt.Errorf("clean-up: %w", rerr)
		}
	}()

	// The kubelet root: a tmpfs of its own unless -kubelet-root-disk. On a
	// journal-less ext4 (such as the scratch disks of some VMs) creating a
	// directory after many were deleted costs up to milliseconds of kernel
	// CPU (ext4 skips recently deleted inodes), which is the machine's
	// cost, not the driver's; kubelet roots on real nodes are journaled.
	// Both are measured and reported.
	if res.DiskMkdir, res.DiskRmdir, err = fsCalibration(filepath.Join(tmp, "calibration"), 200); err != nil {
		return err
	}
	if err := os.MkdirAll(e.kubeletRoot, 0o750); err != nil {
		return err
	}
	res.KubeletRootFS = res.Machine.TmpFS
	if !o.onDisk {
		if err := unix.Mount("bench-kubelet-root", e.kubeletRoot, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0750,size=256m"); err != nil {
			return fmt.Errorf("mount a tmpfs for the kubelet root: %w", err)
		}
		res.KubeletRootFS = "tmpfs"
		if res.TmpfsMkdir, res.TmpfsRmdir, err = fsCalibration(filepath.Join(e.kubeletRoot, "calibration"), 200); err != nil {
			return err
		}
	}

	step := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "[%5.1fs] %s\n", time.Since(res.Started).Seconds(), fmt.Sprintf(format, args...))
	}
	step("building the driver")
	bin, err := buildDriver(ctx, root, tmp, o.pprofDir != "")
	if err != nil {
		return err
	}

	// The fake store: a role every service account of the bench namespace
	// may assume, allowed everything; the secrets and parameters.
	e.iss, err = store.NewIssuer("https://oidc.bench.podsecrets.test")
	if err != nil {
		return err
	}
	e.st = store.New(store.Options{})
	if err := e.st.TrustJWKS(e.iss.JWKS()); err != nil {
		return err
	}
	e.st.AddRole(store.Role{ARN: roleARN, Subjects: []string{"system:serviceaccount:" + benchNS + ":*"}, Allow: []string{"*"}})
	for i := range maxObjects {
		e.st.CreateSecret(region, smName(i), store.Value{String: smValue(i)})
		e.st.PutParameter(region, paramName(i), paramValue(i), "String")
	}
	e.storeRec = NewRecorder(e.st.Handler(), nil)
	storeSrv := httptest.NewServer(e.storeRec)
	defer storeSrv.Close()

	e.api = &KubeAPI{RoleARN: roleARN, SANamespace: benchNS}
	for _, v := range volumes {
		e.api.SetClass(benchNS, v.Name, map[string]string{"objects": v.objectsYAML()})
	}
	e.apiRec = NewRecorder(e.api, apiKind)
	apiSrv := httptest.NewServer(e.apiRec)
	defer apiSrv.Close()
	kubeconfig := filepath.Join(tmp, "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte(fmt.Sprintf(kubeconfigTemplate, apiSrv.URL)), 0o600); err != nil {
		return err
	}
	e.warmToken = e.token(warmSA)

	var pprofAddr string
	if o.pprofDir != "" {
		if err := os.MkdirAll(o.pprofDir, 0o755); err != nil {
			return err
		}
		port, err := freePort()
		if err != nil {
			return err
		}
		pprofAddr = fmt.Sprintf("127.0.0.1:%d", port)
	}
	// The driver's $TMPDIR: k8s.io/mount-utils makes and removes a
	// temporary directory there on every IsMountPoint call, so it goes
	// with the kubelet root (see above).
	driverTmp := ""
	if !o.onDisk {
		driverTmp = filepath.Join(e.kubeletRoot, "driver-tmp")
		if err := os.Mkdir(driverTmp, 0o700); err != nil {
			return err
		}
	}
	// Volumes are written as on a node, by a child in the pod's memory
	// cgroup, where the machine has a cgroup v1 memory hierarchy.
	driverArgs := []string{"--volume-memory=driver"}
	cgroupBase := "" // the fleet's nodes get theirs below it
	if _, err := os.Stat("/sys/fs/cgroup/memory/cgroup.procs"); err == nil {
		base := fmt.Sprintf("podsecrets-bench-%d", os.Getpid())
		cgroupBase = filepath.Join("/sys/fs/cgroup/memory", base)
		e.podCgroups = filepath.Join(cgroupBase, "node")
		defer removeCgroups(cgroupBase)
		driverArgs = []string{"--volume-memory=pod", "--cgroup-root=/sys/fs/cgroup", "--kubepods-cgroup=" + base + "/node/kubepods"}
	}
	res.VolumeMemory = driverArgs[0]
	// The single-node benchmark (tables 1–5).
	if !o.fleetOnly && !o.rotationOnly && !o.revisionOnly {
		if err := func() error {
			step("starting the driver (%s)", driverArgs[0])
			e.drv, err = startDriver(ctx, DriverConfig{
				Bin: bin, Socket: filepath.Join(tmp, "csi.sock"), KubeletRoot: e.kubeletRoot,
				Kubeconfig: kubeconfig, StoreURL: storeSrv.URL, Dir: tmp, PprofAddr: pprofAddr, TmpDir: driverTmp,
				// Tables 1–5 measure each pod's own mount: no read is
				// shared between the samples, which follow each other
				// within the share window. Table 8 measures the sharing.
				Args: append(driverArgs, "--aws-share-window=0"),
			})
			if err != nil {
				return err
			}
			// Idle: started, ready, nothing published yet.
			time.Sleep(time.Second)
			if res.IdleMem, err = e.drv.memory(); err != nil {
				return err
			}
			if res.IdleGoroutines, err = e.drv.Goroutines(); err != nil {
				return err
			}

			// What else runs on the machine while we measure.
			load0 := loadAvg()
			sys0, steal0, err := systemCPU()
			if err != nil {
				return err
			}
			self0, err := procCPU(os.Getpid())
			if err != nil {
				return err
			}
			drv0, err := procCPU(e.drv.Pid())
			if err != nil {
				return err
			}
			measureStart := time.Now()

			// Rows 1 and 2: sequential publishes.
			for _, lat := range []time.Duration{0, 20 * time.Millisecond} {
				for _, v := range volumes {
					for _, cold := range []bool{false, true} {
						c, err := e.runCase(ctx, v, lat, cold, samples, warmup)
						if err != nil {
							return e.withLog(err)
						}
						step("%-6s %2dms %-4s p50 %7s  p99 %7s  overhead p50 %7s p99 %7s", v.Name, lat.Milliseconds(), coldWord(cold),
							ms(Percentile(c.Total, .5)), ms(Percentile(c.Total, .99)), ms(Percentile(c.Overhead, .5)), ms(Percentile(c.Overhead, .99)))
						res.Cases = append(res.Cases, c)
					}
				}
			}

			// Row 4: republish.
			if res.Republish, err = e.runRepublish(ctx, volumeByName("sm-10"), republishN); err != nil {
				return e.withLog(err)
			}
			step("republish x%d: %d store calls, CPU %s (+%s in child processes)", republishN, res.Republish.Calls, res.Republish.CPU.Self, res.Republish.CPU.Children)

			// Rows 3 and 5: bursts with every pod of a full node mounted at once.
			if res.GoroutinesBefore, err = e.drv.Goroutines(); err != nil {
				return err
			}
			for i, shared := range []bool{true, false, false} {
				prefix := ""
				if o.pprofDir != "" {
					prefix = filepath.Join(o.pprofDir, fmt.Sprintf("burst%d-", i+1))
					res.Profiles = append(res.Profiles, prefix+"heap-mounted.pprof", prefix+"goroutines-after.txt")
				}
				b, err := e.runBurst(ctx, volumeByName("sm-10"), shared, prefix)
				if err != nil {
					return e.withLog(err)
				}
				step("burst %d pods (%s): wall %s, p99 %s, %d errors, RSS %s", podsPerNode, saWord(shared), ms(b.Wall), ms(Percentile(b.Samples, .99)), b.Errors, MiB(b.Mem.RSS))
				res.Bursts = append(res.Bursts, b)
			}

			if o.pprofDir != "" {
				d := 10 * time.Second
				if o.quick {
					d = 5 * time.Second
				}
				for _, rp := range []bool{false, true} {
					name := "cpu-publish-sm10-warm-0ms.pprof"
					if rp {
						name = "cpu-republish-sm10.pprof"
					}
					file := filepath.Join(o.pprofDir, name)
					n, err := e.profileLoop(ctx, volumeByName("sm-10"), rp, d, file)
					if err != nil {
						return e.withLog(err)
					}
					step("profiled %d %s into %s", n, map[bool]string{false: "publishes", true: "republishes"}[rp], file)
					res.Profiles = append(res.Profiles, file)
				}
			}
			if !e.drv.Alive() {
				return e.withLog(errors.New("the driver exited during the run"))
			}
			res.Finished = time.Now()
			sys1, steal1, err := systemCPU()
			if err != nil {
				return err
			}
			self1, err := procCPU(os.Getpid())
			if err != nil {
				return err
			}
			drv1, err := procCPU(e.drv.Pid())
			if err != nil {
				return err
			}
			wall := res.Finished.Sub(measureStart).Seconds()
			others := (sys1 - sys0) - (self1.Self - self0.Self) - (drv1.Self - drv0.Self) - (drv1.Children - drv0.Children)
			res.Background = Background{
				OtherCores:  max(others.Seconds(), 0) / wall,
				StealCores:  (steal1 - steal0).Seconds() / wall,
				BenchCores:  (self1.Self - self0.Self).Seconds() / wall,
				DriverCores: (drv1.Self - drv0.Self + drv1.Children - drv0.Children).Seconds() / wall,
				LoadStart:   load0, LoadEnd: loadAvg(),
			}
			return nil
		}(); err != nil {
			return err
		}
		// The fleet starts drivers of its own: this one is done.
		e.drv.Stop()
	}

	// The revision benchmark (table 10): a driver of its own.
	if o.revision {
		ve := &revEnv{bin: bin, tmp: tmp, iss: e.iss, cgroupBase: cgroupBase, step: step}
		if res.Revision, err = ve.runRevision(ctx); err != nil {
			return err
		}
	}

	// The rotation benchmark (table 9): drivers of its own.
	if o.rotation {
		re := &rotEnv{bin: bin, tmp: tmp, iss: e.iss, cgroupBase: cgroupBase, step: step}
		res.RotationConfig = rotationConfig(o.quick)
		res.RotationLoad[0] = loadAvg()
		runs, err := re.runRotation(ctx, res.RotationConfig)
		res.RotationLoad[1] = loadAvg()
		res.Rotation = runs
		if err != nil {
			return err
		}
	}

	// The fleet benchmark (table 8).
	if o.fleet {
		fe := &fleetEnv{base: e, bin: bin, kubeconfig: kubeconfig, storeURL: storeSrv.URL, tmp: tmp, cgroupBase: cgroupBase, step: step}
		runs, err := fe.runFleet(ctx, fleetConfig(o.quick))
		res.Fleet = runs
		if err != nil {
			return err
		}
	}
	res.Finished = time.Now()

	rep := buildReport(res)
	fmt.Println(rep.Text())
	if o.out != "" {
		// Write beside and rename: an interrupted write keeps the old report.
		tmpOut := o.out + ".tmp"
		if err := os.WriteFile(tmpOut, []byte(rep.Markdown()), 0o644); err != nil {
			return err
		}
		if err := os.Rename(tmpOut, o.out); err != nil {
			return err
		}
		step("wrote %s", o.out)
	}
	for _, b := range res.Bursts {
		if b.Errors > 0 {
			return fmt.Errorf("%d of %d burst publishes failed (%s); first: %s", b.Errors, podsPerNode, saWord(b.SharedSA), b.FirstError)
		}
	}
	return nil
}

const kubeconfigTemplate = `apiVersion: v1
kind: Config
clusters:
- name: bench
  cluster:
    server: %s
contexts:
- name: bench
  context:
    cluster: bench
    user: bench
current-context: bench
users:
- name: bench
  user: {}
`

// withLog appends the end of the driver's log to err.
func (e *Env) withLog(err error) error {
	if e.drv == nil {
		return err
	}
	if tail := strings.TrimSpace(e.drv.LogTail()); tail != "" {
		return fmt.Errorf("%w\ndriver log (end):\n%s", err, tail)
	}
	return err
}

func volumeByName(name string) volumeSpec {
	for _, v := range volumes {
		if v.Name == name {
			return v
		}
	}
	panic("no volume " + name)
}

// unmountBelow unmounts every mount point below dir, deepest first, and
// returns how many there were.
func unmountBelow(dir string) (int, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return 0, err
	}
	prefix := strings.TrimSuffix(dir, "/") + "/"
	var points []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		p := unescapeMountinfo(f[4])
		if strings.HasPrefix(p, prefix) {
			points = append(points, p)
		}
	}
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	var first error
	for _, p := range points {
		if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && first == nil {
			first = fmt.Errorf("unmount %s: %w", p, err)
		}
	}
	return len(points), first
}

// unescapeMountinfo undoes the octal escapes (\040 etc.) of mountinfo paths.
// removeCgroups removes the scratch cgroup tree below dir, deepest first.
func removeCgroups(dir string) {
	var dirs []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	for i := len(dirs) - 1; i >= 0; i-- {
		os.Remove(dirs[i])
	}
}

func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v byte
			ok := true
			for _, c := range []byte(s[i+1 : i+4]) {
				if c < '0' || c > '7' {
					ok = false
					break
				}
				v = v*8 + c - '0'
			}
			if ok {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// RealNodeMemory is the e2e suite's memory scenario (TestManyLargeVolumes):
// many pods with large volumes at once, on a real node.
type RealNodeMemory struct {
	Pods                  int       `json:"pods"`
	VolumeBytes           int64     `json:"volumeBytes"`
	AllRunningSeconds     float64   `json:"allRunningSeconds"`
	DriverPeakCgroupBytes int64     `json:"driverPeakCgroupBytes"`
	DriverPeakRSSBytes    int64     `json:"driverPeakRSSBytes"`
	DriverRSSBeforeBytes  int64     `json:"driverRSSBeforeBytes"`
	DriverRSSAfterBytes   int64     `json:"driverRSSAfterBytes"`
	DriverShmemBytes      int64     `json:"driverShmemBytes"`
	DriverRestarts        int       `json:"driverRestarts"`
	DriverOOMKills        int64     `json:"driverOOMKills"`
	PodShmemMinBytes      int64     `json:"podShmemMinBytes"`
	PodShmemMaxBytes      int64     `json:"podShmemMaxBytes"`
	PodShmemTotalBytes    int64     `json:"podShmemTotalBytes"`
	DriverPublishMs       []float64 `json:"driverPublishMs"`
}

// RealNode is the e2e suite's measurement of pod start-up on a real node.
type RealNode struct {
	EmptyDirMs        []float64 `json:"emptyDirMs"`        // pod creation to Running, emptyDir volume
	PodsecretsMs      []float64 `json:"podsecretsMs"`      // the same pod with a podsecrets volume
	DriverPublishMs   []float64 `json:"driverPublishMs"`   // the driver's NodePublishVolume time for those pods
	KubernetesVersion string    `json:"kubernetesVersion"` // of the cluster
}

func readRealNode(path string) (*RealNode, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("-realnode: %w", err)
	}
	var rn RealNode
	if err := json.Unmarshal(b, &rn); err != nil {
		return nil, fmt.Errorf("-realnode %s: %w", path, err)
	}
	if len(rn.EmptyDirMs) == 0 || len(rn.PodsecretsMs) == 0 {
		return nil, fmt.Errorf("-realnode %s: emptyDirMs and podsecretsMs must both have samples", path)
	}
	return &rn, nil
}

// fsCalibration times n mkdir and rmdir of a target-like directory under dir
// and returns the medians. Pod directories come and go as in the
// benchmark.
func fsCalibration(dir string, n int) (mkdir, rmdir time.Duration, err error) {
	var mk, rm []time.Duration
	for i := range n {
		pod := filepath.Join(dir, "pods", fmt.Sprint(i))
		parent := filepath.Join(pod, "volumes/kubernetes.io~csi/secrets")
		if err := os.MkdirAll(parent, 0o750); err != nil {
			return 0, 0, err
		}
		target := filepath.Join(parent, "mount")
		t := time.Now()
		if err := os.Mkdir(target, 0o750); err != nil {
			return 0, 0, err
		}
		mk = append(mk, time.Since(t))
		t = time.Now()
		if err := os.Remove(target); err != nil {
			return 0, 0, err
		}
		rm = append(rm, time.Since(t))
		if err := os.RemoveAll(pod); err != nil {
			return 0, 0, err
		}
	}
	return Percentile(mk, .5), Percentile(rm, .5), os.RemoveAll(dir)
}
