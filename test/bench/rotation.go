package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"

	"github.com/podsecrets/podsecrets/test/awsfake/store"
)

// The rotation benchmark: pods of one service account on one node mount a
// class with spec.rotation.pollInterval, and kubelet republishes each
// volume every 60–90 s, each at its own phase. It measures the store calls
// of unchanged secrets in steady state, then puts a new version of one
// secret and measures the time until every pod's files hold it.
//
// Real time would need many minutes per case, so the run is time-scaled by
// rotScale: every duration of the protocol (poll interval, republish
// period, the driver's share window) is divided by it, and rates are
// reported per minute of kubelet time (rotScale × wall time). This is exact
// while the store round trips (rotLatency, not scaled) stay far below the
// scaled interval; the report shows the republish latencies to check that.
const (
	rotScale        = 10                     // kubelet time / wall time
	rotInterval     = 3 * time.Second        // the classes' pollInterval: 30 s (the incumbent's measurement) / rotScale
	rotRepublishMin = 6 * time.Second        // kubelet's republish period, 60 s…
	rotRepublishMax = 9 * time.Second        // …to 90 s, / rotScale
	rotShareWindow  = 100 * time.Millisecond // the --aws-share-window default (1 s) / rotScale
	rotLatency      = 20 * time.Millisecond  // per store call, as in tables 1–4
)

// rotClass is a rotating class of the benchmark.
type rotClass struct {
	Name    string  // for tables
	Key     string  // for object, class and service account names
	SM, SSM int     // Secrets Manager secrets, SSM parameters
	Quoted  float64 // the incumbent's store calls per minute for 10 pods of it, unchanged
}

// Objects is the class's object count.
func (c rotClass) Objects() int { return c.SM + c.SSM }

// The incumbent's measurement (product brief): 10 pods mounting 1 secret and
// 1 parameter that never change cost 22.8 store calls per minute; 10 pods ×
// 10 secrets, 73.3.
var rotClasses = []rotClass{
	{Name: "1 secret + 1 SSM parameter", Key: "mix", SM: 1, SSM: 1, Quoted: 22.8},
	{Name: "10 secrets", Key: "sm10", SM: 10, Quoted: 73.3},
}

// rotPods are the pod counts of each class.
var rotPods = []int{1, 10, 100}

// RotationConfig is the shape of the rotation benchmark.
type RotationConfig struct {
	// Intervals is the length of the measured steady state, in poll
	// intervals.
	Intervals int
}

// Window is the measured steady state in wall time.
func (c RotationConfig) Window() time.Duration { return time.Duration(c.Intervals) * rotInterval }

func rotationConfig(quick bool) RotationConfig {
	if quick {
		return RotationConfig{Intervals: 8}
	}
	return RotationConfig{Intervals: 16}
}

// RotationRun is one class and pod count.
type RotationRun struct {
	Class rotClass
	Pods  int
	// Steady state, unchanged secrets. Window is its wall time; Calls
	// and API are the store's per-op counters and the API server's
	// requests by kind within it; Republishes the NodePublishVolume calls
	// started in it and Latency theirs; Checks the driver's rotation
	// checks by result (its podsecrets_rotation_checks_total) within it.
	Window      time.Duration
	Calls, API  map[string]int
	Checks      map[string]int
	Republishes int
	Latency     []time.Duration
	// Republish errors over the whole run (a republish never fails by
	// design).
	Errors     int
	FirstError string
	// Propagation: Changed is the secret that got a new version;
	// Propagation, per pod that got the new file, the time from
	// PutSecretValue to the return of the republish after which its
	// file held the new value; NotPropagated pods did not get it by the
	// deadline. PropWall is from PutSecretValue to the last pod (or the
	// deadline); PropCalls, PropAPI and PropChecks are counted over it.
	Changed            string
	Propagation        []time.Duration
	NotPropagated      int
	PropWall           time.Duration
	PropCalls, PropAPI map[string]int
	PropChecks         map[string]int
	PublishWall        time.Duration // the initial publishes, all at once
	DriverArgs         []string      // the driver's rotation flags (besides the volume memory ones)
	// LogWarnings counts the driver's warnings and errors over the run
	// (it logs at warn); FirstWarnings are the first few.
	LogWarnings   int
	FirstWarnings []string
}

// rotEnv is what the rotation runs share: the binary, the issuer of pod
// tokens, scratch space and where pod cgroups go.
type rotEnv struct {
	bin        string
	tmp        string
	iss        *store.Issuer
	cgroupBase string // "" without a cgroup v1 memory hierarchy
	step       func(format string, args ...any)
}

// runRotation runs every class and pod count at once, each with its own
// driver process, fake store and fake API server (so each has its own
// counters), and returns them in rotClasses × rotPods order.
func (r *rotEnv) runRotation(ctx context.Context, cfg RotationConfig) ([]*RotationRun, error) {
	// A hard bound: start-up, the publishes, one republish cycle of
	// warm-up, the window, the propagation deadline and tear-down.
	bound := rotRepublishMax + cfg.Window() + rotPropDeadline + 60*time.Second
	ctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	var runs []*RotationRun
	var errs []error
	var mu sync.Mutex
	var wg sync.WaitGroup
	r.step("rotation: %d runs at once (classes %d × pods %v), interval %s, republish %s–%s, steady state %s, all wall time (÷%d)",
		len(rotClasses)*len(rotPods), len(rotClasses), rotPods, rotInterval, rotRepublishMin, rotRepublishMax, cfg.Window(), rotScale)
	for _, c := range rotClasses {
		for _, n := range rotPods {
			run := &RotationRun{Class: c, Pods: n}
			runs = append(runs, run)
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := r.runOne(ctx, cfg, run); err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("rotation %s, %d pods: %w", c.Key, n, err))
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	for _, run := range runs {
		r.step("rotation %-4s %3d pods: %d store calls in %s (%v), %d API requests (%v); change in all %d pods: max %s (%d not)",
			run.Class.Key, run.Pods, sumCalls(run.Calls), run.Window.Round(time.Millisecond), run.Calls, sumCalls(run.API), run.API,
			len(run.Propagation), ms(Percentile(run.Propagation, 1)), run.NotPropagated)
	}
	return runs, nil
}

// rotPropDeadline bounds the propagation phase: three times the longest a
// change may take (an interval of a stale shared version, then a republish
// period).
const rotPropDeadline = 3 * (rotInterval + rotRepublishMax)

func rotSecret(run string, i int) string { return fmt.Sprintf("rot/%s/sm-%02d", run, i) }
func rotParam(run string, i int) string  { return fmt.Sprintf("/rot/%s/param-%02d", run, i) }

// rotatedValue is the new version of secret 0.
func rotatedValue() string { return strings.Replace(smValue(0), "p4ssw0rd", "r0tated", 1) }

func rotObjectsYAML(run string, c rotClass) string {
	var b strings.Builder
	for i := range c.SM {
		fmt.Fprintf(&b, "- objectName: %q\n  objectType: secretsmanager\n  objectAlias: %q\n", rotSecret(run, i), fmt.Sprintf("sm-%02d", i))
	}
	for i := range c.SSM {
		fmt.Fprintf(&b, "- objectName: %q\n  objectType: ssmparameter\n  objectAlias: %q\n", rotParam(run, i), fmt.Sprintf("param-%02d", i))
	}
	return b.String()
}

// verifyRot checks every file of a pod's volume; secret 0 holds want0.
func verifyRot(p *Pod, c rotClass, want0 string) error {
	check := func(file, want string) error {
		got, err := os.ReadFile(filepath.Join(p.Req.TargetPath, file))
		if err != nil {
			return err
		}
		if string(got) != want {
			return fmt.Errorf("%s has the wrong content", file)
		}
		return nil
	}
	for i := range c.SM {
		want := smValue(i)
		if i == 0 {
			want = want0
		}
		if err := check(fmt.Sprintf("sm-%02d", i), want); err != nil {
			return err
		}
	}
	for i := range c.SSM {
		if err := check(fmt.Sprintf("param-%02d", i), paramValue(i)); err != nil {
			return err
		}
	}
	files, err := visibleFiles(p.Req.TargetPath)
	if err != nil {
		return err
	}
	if files != c.Objects() {
		return fmt.Errorf("%d files, want %d", files, c.Objects())
	}
	return nil
}

// Phases of a run's republish loops.
const (
	phaseWarmup int32 = iota
	phaseWindow
	phaseGap // between the window and the change
	phasePropagation
)

// runOne runs one class and pod count on a node of its own.
func (r *rotEnv) runOne(ctx context.Context, cfg RotationConfig, res *RotationRun) (err error) {
	c, n := res.Class, res.Pods
	name := fmt.Sprintf("rot-%s-%d", c.Key, n)
	dir := filepath.Join(r.tmp, name)
	if err := os.MkdirAll(filepath.Join(dir, "kubelet"), 0o750); err != nil {
		return err
	}

	// This run's fake store and API server.
	st := store.New(store.Options{})
	if err := st.TrustJWKS(r.iss.JWKS()); err != nil {
		return err
	}
	st.AddRole(store.Role{ARN: roleARN, Subjects: []string{"system:serviceaccount:" + benchNS + ":*"}, Allow: []string{"*"}})
	for i := range c.SM {
		st.CreateSecret(region, rotSecret(name, i), store.Value{String: smValue(i)})
	}
	for i := range c.SSM {
		st.PutParameter(region, rotParam(name, i), paramValue(i), "String")
	}
	st.SetLatency(rotLatency)
	storeRec := NewRecorder(st.Handler(), nil)
	storeSrv := httptest.NewServer(storeRec)
	defer storeSrv.Close()
	api := &KubeAPI{RoleARN: roleARN, SANamespace: benchNS}
	api.SetRotatingClass(benchNS, name, map[string]string{"objects": rotObjectsYAML(name, c)}, rotInterval)
	apiRec := NewRecorder(api, apiKind)
	apiSrv := httptest.NewServer(apiRec)
	defer apiSrv.Close()
	env, kubeconfig, err := oneNodeEnv(dir, name, apiSrv.URL, r.cgroupBase, r.iss, st, storeRec, api, apiRec)
	if err != nil {
		return err
	}
	// Tear-down whatever happened: every volume unpublished, the driver
	// stopped, the kubelet root unmounted, the pod cgroups removed.
	defer func() {
		var cerr error
		res.LogWarnings, res.FirstWarnings, cerr = env.tearDown(dir)
		if cerr != nil && err == nil {
			err = fmt.Errorf("clean-up: %w", cerr)
		}
	}()
	if err := unix.Mount("bench-"+name, env.kubeletRoot, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0750,size=64m"); err != nil {
		return fmt.Errorf("mount a tmpfs for the kubelet root: %w", err)
	}
	driverTmp := filepath.Join(env.kubeletRoot, "driver-tmp")
	if err := os.Mkdir(driverTmp, 0o700); err != nil {
		return err
	}
	args := []string{"--volume-memory=driver"}
	if env.podCgroups != "" {
		rel, err := filepath.Rel("/sys/fs/cgroup/memory", env.podCgroups)
		if err != nil {
			return err
		}
		args = []string{"--volume-memory=pod", "--cgroup-root=/sys/fs/cgroup", "--kubepods-cgroup=" + rel + "/kubepods"}
	}
	// The fake API server serves GETs only, no list or watch: the class
	// watch is off, so only the poll interval brings checks.
	res.DriverArgs = []string{"--min-poll-interval=1s", "--watch-classes=false", "--aws-share-window=" + rotShareWindow.String()}
	args = append(args, res.DriverArgs...)
	env.drv, err = startDriver(ctx, DriverConfig{
		Bin: r.bin, Socket: filepath.Join(dir, "csi.sock"), KubeletRoot: env.kubeletRoot, NodeID: name,
		Kubeconfig: kubeconfig, StoreURL: storeSrv.URL, Dir: dir, TmpDir: driverTmp, Args: args,
	})
	if err != nil {
		return err
	}

	// The pods: one service account, a token each (kubelet's tokens are
	// bound to the pod; its token manager reuses one until 80% of its
	// hour, far past this run), published at once.
	pods := make([]*Pod, n)
	for i := range pods {
		if pods[i], err = env.newPod(name, name, ""); err != nil {
			return err
		}
	}
	t := time.Now()
	perr := make([]error, n)
	var pwg sync.WaitGroup
	for i, p := range pods {
		pwg.Add(1)
		go func() {
			defer pwg.Done()
			perr[i] = env.publish(ctx, p)
		}()
	}
	pwg.Wait()
	res.PublishWall = time.Since(t)
	if err := errors.Join(perr...); err != nil {
		return env.withLog(fmt.Errorf("publish: %w", err))
	}
	if err := verifyRot(pods[0], c, smValue(0)); err != nil {
		return fmt.Errorf("after publish: %w", err)
	}

	// Kubelet's republishes: each pod at its own phase, every
	// rotRepublishMin–Max (uniform).
	var (
		phase   atomic.Int32
		t0      time.Time // PutSecretValue; written before phase becomes phasePropagation
		mu      sync.Mutex
		seen    = make([]bool, n)
		left    = n
		allSeen = make(chan struct{})
		stop    = make(chan struct{})
		loops   sync.WaitGroup
		want    = rotatedValue()
	)
	stopCtx, stopCancel := context.WithCancel(ctx)
	defer stopCancel()
	go func() { <-stop; stopCancel() }()
	for i, p := range pods {
		loops.Add(1)
		go func() {
			defer loops.Done()
			next := time.Now().Add(rand.N(rotRepublishMax))
			for {
				if !sleepUntil(stopCtx, next) {
					return
				}
				start := time.Now()
				ph := phase.Load()
				// The caller's ctx, not stopCtx: a republish in flight
				// at the end is not cut short.
				err := env.publish(ctx, p)
				end := time.Now()
				next = start.Add(rotRepublishMin + rand.N(rotRepublishMax-rotRepublishMin))
				mu.Lock()
				if err != nil {
					res.Errors++
					if res.FirstError == "" {
						res.FirstError = err.Error()
					}
				}
				if ph == phaseWindow {
					res.Republishes++
					res.Latency = append(res.Latency, end.Sub(start))
				}
				check := phase.Load() == phasePropagation && !seen[i]
				mu.Unlock()
				if !check {
					continue
				}
				// The files change only inside a NodePublishVolume: the
				// return of the first one after which the file holds the
				// new value bounds the time it appeared.
				got, rerr := os.ReadFile(filepath.Join(p.Req.TargetPath, "sm-00"))
				if rerr != nil || string(got) != want {
					continue
				}
				mu.Lock()
				seen[i] = true
				res.Propagation = append(res.Propagation, end.Sub(t0))
				left--
				if left == 0 {
					close(allSeen)
				}
				mu.Unlock()
			}
		}()
	}
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		loops.Wait()
	}()

	loopsStart := time.Now()
	// Warm-up: one republish cycle, after which every pod has republished
	// at least once.
	if !sleepUntil(ctx, loopsStart.Add(rotRepublishMax)) {
		return ctx.Err()
	}
	// The driver's check counters first: the window is what lies between
	// the snapshots of the store's and the API server's counters.
	k0, err := env.drv.rotationChecks()
	if err != nil {
		return err
	}
	c0, a0, w0 := st.CallCounts(), apiRec.Counts(), time.Now()
	phase.Store(phaseWindow)
	if !sleepUntil(ctx, w0.Add(cfg.Window())) {
		return ctx.Err()
	}
	c1, a1, w1 := st.CallCounts(), apiRec.Counts(), time.Now()
	phase.Store(phaseGap)
	k1, err := env.drv.rotationChecks()
	if err != nil {
		return err
	}
	res.Window = w1.Sub(w0)
	res.Calls, res.API, res.Checks = diffCounts(c1, c0), diffCounts(a1, a0), diffCounts(k1, k0)

	// Propagation: a new version of secret 0, republishes as before.
	res.Changed = rotSecret(name, 0)
	t0 = time.Now()
	phase.Store(phasePropagation)
	if _, err := st.PutSecretValue(region, res.Changed, store.Value{String: want}); err != nil {
		return err
	}
	timer := time.NewTimer(rotPropDeadline)
	defer timer.Stop()
	select {
	case <-allSeen:
	case <-timer.C:
	case <-ctx.Done():
		return ctx.Err()
	}
	c2, a2 := st.CallCounts(), apiRec.Counts()
	k2, err := env.drv.rotationChecks()
	if err != nil {
		return err
	}
	res.PropWall = time.Since(t0)
	res.PropCalls, res.PropAPI, res.PropChecks = diffCounts(c2, c1), diffCounts(a2, a1), diffCounts(k2, k1)
	close(stop)
	loops.Wait()
	mu.Lock()
	res.NotPropagated = left
	mu.Unlock()
	if !env.drv.Alive() {
		return env.withLog(errors.New("the driver exited during the run"))
	}
	for i, p := range pods {
		if seen[i] {
			if err := verifyRot(p, c, want); err != nil {
				return fmt.Errorf("after the change, pod %d: %w", i, err)
			}
		}
	}
	return nil
}

// logWarnings counts the warning and error lines of a driver log and
// returns the first n.
// oneNodeEnv is the Env of a one-node run in dir against the fake API at
// apiURL: its kubeconfig written, its pod cgroups below cgroupBase (none
// if empty).
func oneNodeEnv(dir, name, apiURL, cgroupBase string, iss *store.Issuer, st *store.Store, storeRec *Recorder, api *KubeAPI, apiRec *Recorder) (*Env, string, error) {
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte(fmt.Sprintf(kubeconfigTemplate, apiURL)), 0o600); err != nil {
		return nil, "", err
	}
	env := &Env{kubeletRoot: filepath.Join(dir, "kubelet"), st: st, storeRec: storeRec, api: api, apiRec: apiRec, iss: iss,
		published: map[string]*csi.NodePublishVolumeRequest{}}
	if cgroupBase != "" {
		env.podCgroups = filepath.Join(cgroupBase, name)
	}
	return env, kubeconfig, nil
}

// tearDown unpublishes every volume of a one-node run, stops its driver,
// unmounts what is left below dir, removes the pod cgroups and dir. It
// returns the driver's warnings (see logWarnings).
func (env *Env) tearDown(dir string) (warnings int, first []string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var errs []error
	if env.drv != nil {
		if env.drv.Alive() {
			if err := env.unpublishAll(ctx); err != nil {
				errs = append(errs, err)
			}
		}
		env.drv.Stop()
		warnings, first = logWarnings(env.drv.logPath, 3)
	}
	if _, err := unmountBelow(dir); err != nil {
		errs = append(errs, err)
	}
	if env.podCgroups != "" {
		removeCgroups(env.podCgroups)
	}
	if err := os.RemoveAll(dir); err != nil {
		errs = append(errs, err)
	}
	return warnings, first, errors.Join(errs...)
}

func logWarnings(path string, n int) (int, []string) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, nil
	}
	count, first := 0, []string(nil)
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR") {
			count++
			if len(first) < n {
				first = append(first, line)
			}
		}
	}
	return count, first
}

// diffCounts is after − before, by key, without zeroes.
func diffCounts(after, before map[string]int) map[string]int {
	out := map[string]int{}
	for k, v := range after {
		if d := v - before[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}

// rotationChecks returns the driver's podsecrets_rotation_checks_total by
// result.
func (d *Driver) rotationChecks() (map[string]int, error) {
	return d.counter("podsecrets_rotation_checks_total", "result")
}

// counter returns the driver's counter metric name (from its /metrics),
// summed by the value of label.
func (d *Driver) counter(metric, label string) (map[string]int, error) {
	resp, err := http.Get("http://" + d.httpAddr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]int{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	name := metric + "{"
	for sc.Scan() {
		line := sc.Text()
		labels, value, ok := strings.Cut(strings.TrimPrefix(line, name), "} ")
		if !strings.HasPrefix(line, name) || !ok {
			continue
		}
		result := "?"
		for _, l := range strings.Split(labels, ",") {
			if k, v, ok := strings.Cut(l, "="); ok && k == label {
				result = strings.Trim(v, `"`)
			}
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			return nil, fmt.Errorf("/metrics: %q: %w", line, err)
		}
		out[result] += int(f)
	}
	return out, sc.Err()
}
