package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/podsecrets/podsecrets/test/awsfake/store"
)

// Names the benchmark's objects live under.
const (
	benchNS     = "bench"
	warmSA      = "app"
	roleARN     = "arn:aws:iam::111122223333:role/bench"
	region      = "us-east-1"
	fsGroup     = "2000"
	podsPerNode = 110 // kubelet's default --max-pods
)

// Store op names of the fake's counters.
const (
	opBatch  = "secretsmanager.BatchGetSecretValue"
	opGet    = "secretsmanager.GetSecretValue"
	opParams = "ssm.GetParameters"
	opSTS    = "sts.AssumeRoleWithWebIdentity"
)

// volumeSpec is a SecretProviderClass of sm Secrets Manager secrets and ssm
// SSM parameters.
type volumeSpec struct {
	Name    string
	SM, SSM int
}

// Objects is the volume's object count.
func (v volumeSpec) Objects() int { return v.SM + v.SSM }

// Kind describes the mix.
func (v volumeSpec) Kind() string {
	if v.SSM == 0 {
		return "SM"
	}
	return fmt.Sprintf("SM %d + SSM %d", v.SM, v.SSM)
}

// volumes are the latency cases' classes.
var volumes = []volumeSpec{
	{"sm-1", 1, 0},
	{"sm-10", 10, 0},
	{"sm-50", 50, 0},
	{"mix-10", 5, 5},
	{"mix-50", 25, 25},
}

// objectsYAML is the class's objects parameter: secrets bench/sm-NN then
// parameters /bench/param-NN, each aliased to a flat file name.
func (v volumeSpec) objectsYAML() string {
	var b strings.Builder
	for i := range v.SM {
		fmt.Fprintf(&b, "- objectName: %q\n  objectType: secretsmanager\n  objectAlias: %q\n", smName(i), fmt.Sprintf("sm-%02d", i))
	}
	for i := range v.SSM {
		fmt.Fprintf(&b, "- objectName: %q\n  objectType: ssmparameter\n  objectAlias: %q\n", paramName(i), fmt.Sprintf("param-%02d", i))
	}
	return b.String()
}

func smName(i int) string    { return fmt.Sprintf("bench/sm-%02d", i) }
func paramName(i int) string { return fmt.Sprintf("/bench/param-%02d", i) }
func smValue(i int) string {
	return fmt.Sprintf(`{"username":"app-%02d","password":"p4ssw0rd-%02d-0123456789abcdef","host":"db-%02d.bench.internal","port":5432}`, i, i, i)
}
func paramValue(i int) string { return fmt.Sprintf("feature-flags-%02d=on,on,off,on", i) }

// maxObjects is how many secrets and parameters the store is seeded with.
const maxObjects = 50

// Env is the benchmark's world: the fake store and API server in this
// process, the driver in its own, and the pods' directories.
type Env struct {
	kubeletRoot string
	// podCgroups, if set, is the memory hierarchy directory below which
	// each pod gets a scratch cgroup kubepods/besteffort/pod<uid>, so that
	// the driver writes volumes as on a node: from a child in the pod's
	// cgroup (--volume-memory=pod).
	podCgroups string
	st         *store.Store
	storeRec   *Recorder
	api        *KubeAPI
	apiRec     *Recorder
	iss        *store.Issuer
	drv        *Driver
	warmToken  string

	mu        sync.Mutex
	seq       int
	published map[string]*csi.NodePublishVolumeRequest // target -> request
}

// Pod is one pod's volume as kubelet would publish it.
type Pod struct {
	Req *csi.NodePublishVolumeRequest // what kubelet sends
	Dir string                        // the pod's directory under the kubelet root
	UID string
}

// tokensJSON is kubelet's csi.storage.k8s.io/serviceAccount.tokens value.
func tokensJSON(token string, exp time.Time) string {
	b, _ := json.Marshal(map[string]any{"sts.amazonaws.com": map[string]string{
		"token": token, "expirationTimestamp": exp.UTC().Format(time.RFC3339),
	}})
	return string(b)
}

// token mints the pod token kubelet would request for service account sa.
func (e *Env) token(sa string) string {
	return e.iss.Token("system:serviceaccount:"+benchNS+":"+sa, "sts.amazonaws.com", time.Hour)
}

// newPod prepares a fresh pod (new UID, target parent created as kubelet
// does) of service account sa mounting class. token "" mints one.
func (e *Env) newPod(class, sa, token string) (*Pod, error) {
	e.mu.Lock()
	e.seq++
	n := e.seq
	e.mu.Unlock()
	var rnd [16]byte
	rand.Read(rnd[:])
	h := hex.EncodeToString(rnd[:])
	uid := h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
	podDir := filepath.Join(e.kubeletRoot, "pods", uid)
	parent := filepath.Join(podDir, "volumes", "kubernetes.io~csi", "secrets")
	if err := os.MkdirAll(parent, 0o750); err != nil {
		return nil, err
	}
	if e.podCgroups != "" {
		// Kubelet creates the pod's cgroup before it mounts its volumes.
		if err := os.MkdirAll(e.podCgroup(uid), 0o755); err != nil {
			return nil, err
		}
	}
	if token == "" {
		token = e.token(sa)
	}
	// Kubelet names inline volumes csi-<sha256(pod uid, volume, driver)>.
	sum := sha256.Sum256([]byte(uid + "/secrets/csi.podsecrets.dev"))
	name := fmt.Sprintf("%s-%d", class, n)
	req := &csi.NodePublishVolumeRequest{
		VolumeId:   "csi-" + hex.EncodeToString(sum[:]),
		TargetPath: filepath.Join(parent, "mount"),
		Readonly:   true,
		VolumeCapability: &csi.VolumeCapability{
			AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{VolumeMountGroup: fsGroup}},
			AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
		},
		VolumeContext: map[string]string{
			"secretProviderClass":                      class,
			"csi.storage.k8s.io/ephemeral":             "true",
			"csi.storage.k8s.io/pod.name":              name,
			"csi.storage.k8s.io/pod.namespace":         benchNS,
			"csi.storage.k8s.io/pod.uid":               uid,
			"csi.storage.k8s.io/serviceAccount.name":   sa,
			"csi.storage.k8s.io/serviceAccount.tokens": tokensJSON(token, time.Now().Add(time.Hour)),
		},
	}
	return &Pod{Req: req, Dir: podDir, UID: uid}, nil
}

// podCgroup is pod uid's scratch memory cgroup.
func (e *Env) podCgroup(uid string) string {
	return filepath.Join(e.podCgroups, "kubepods", "besteffort", "pod"+uid)
}

// publish calls NodePublishVolume and remembers the target for clean-up.
func (e *Env) publish(ctx context.Context, p *Pod) error {
	e.mu.Lock()
	e.published[p.Req.TargetPath] = p.Req
	e.mu.Unlock()
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute) // kubelet's CSI timeout
	defer cancel()
	_, err := e.drv.Node.NodePublishVolume(cctx, p.Req)
	return err
}

// unpublish calls NodeUnpublishVolume and removes the pod directory, as
// kubelet does when the pod is gone.
func (e *Env) unpublish(ctx context.Context, p *Pod) error {
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	_, err := e.drv.Node.NodeUnpublishVolume(cctx, &csi.NodeUnpublishVolumeRequest{VolumeId: p.Req.VolumeId, TargetPath: p.Req.TargetPath})
	if err != nil {
		return fmt.Errorf("NodeUnpublishVolume %s: %w", p.Req.VolumeId, err)
	}
	e.mu.Lock()
	delete(e.published, p.Req.TargetPath)
	e.mu.Unlock()
	if e.podCgroups != "" {
		// Empty once the volume is unmounted: its pages are freed.
		if err := os.Remove(e.podCgroup(p.UID)); err != nil {
			return err
		}
	}
	return os.RemoveAll(p.Dir)
}

// unpublishAll unpublishes whatever is still published (clean-up).
func (e *Env) unpublishAll(ctx context.Context) error {
	e.mu.Lock()
	reqs := make([]*csi.NodePublishVolumeRequest, 0, len(e.published))
	for _, r := range e.published {
		reqs = append(reqs, r)
	}
	e.mu.Unlock()
	var first error
	for _, r := range reqs {
		dir := filepath.Dir(filepath.Dir(filepath.Dir(filepath.Dir(r.TargetPath))))
		p := &Pod{Req: r, Dir: dir, UID: filepath.Base(dir)} // .../pods/<uid>
		if err := e.unpublish(ctx, p); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// verify checks that the published volume holds the expected values.
func verify(p *Pod, v volumeSpec) error {
	check := func(file, want string) error {
		got, err := os.ReadFile(filepath.Join(p.Req.TargetPath, file))
		if err != nil {
			return fmt.Errorf("volume %s: %w", v.Name, err)
		}
		if string(got) != want {
			return fmt.Errorf("volume %s: %s has the wrong content", v.Name, file)
		}
		return nil
	}
	if v.SM > 0 {
		if err := check(fmt.Sprintf("sm-%02d", v.SM-1), smValue(v.SM-1)); err != nil {
			return err
		}
	}
	if v.SSM > 0 {
		if err := check(fmt.Sprintf("param-%02d", v.SSM-1), paramValue(v.SSM-1)); err != nil {
			return err
		}
	}
	files, err := visibleFiles(p.Req.TargetPath)
	if err != nil {
		return err
	}
	if files != v.Objects() {
		return fmt.Errorf("volume %s: %d files, want %d", v.Name, files, v.Objects())
	}
	return nil
}

// storeCalls snapshots the fake's counters of the ops the driver uses.
func (e *Env) storeCalls() map[string]int {
	return e.st.CallCounts()
}

// resetCounters zeroes the store's and the API server's counters.
func (e *Env) resetCounters() {
	e.st.ResetCalls()
	e.storeRec.Reset()
	e.apiRec.Reset()
}

// CaseResult is one latency case: a volume, a store latency and a
// credential-cache state.
type CaseResult struct {
	Vol     volumeSpec    // the SecretProviderClass
	Latency time.Duration // injected per store call
	Cold    bool          // a new service account per pod
	// Per-publish samples; CPU is the driver's CPU time during the publish.
	Total, StoreWait, APIWait, Overhead, CPU []time.Duration
	// Calls are the store calls of all samples, by op.
	Calls map[string]int
	// APIGets are the API server requests of all samples.
	APIGets int
}

// N is the number of samples.
func (c *CaseResult) N() int { return len(c.Total) }

// PerMount is calls of op per publish.
func (c *CaseResult) PerMount(op string) float64 {
	if c.N() == 0 {
		return 0
	}
	return float64(c.Calls[op]) / float64(c.N())
}

// runCase publishes n fresh pods of v one after the other and measures each.
// Cold gives each pod a service account never seen before (the provider's
// credential cache misses: one STS call per mount); warm uses one service
// account whose credentials are cached by warm-up publishes first.
func (e *Env) runCase(ctx context.Context, v volumeSpec, latency time.Duration, cold bool, n, warmup int) (*CaseResult, error) {
	e.st.SetLatency(latency)
	res := &CaseResult{Vol: v, Latency: latency, Cold: cold}
	mode := "warm"
	if cold {
		mode = "cold"
	}
	one := func(measure bool, i int) error {
		sa, tok := warmSA, e.warmToken
		if cold {
			sa = fmt.Sprintf("cold-%s-%s-%d-%d", v.Name, latency, i, time.Now().UnixNano())
			sa = strings.ReplaceAll(sa, ".", "")
			tok = ""
		}
		p, err := e.newPod(v.Name, sa, tok)
		if err != nil {
			return err
		}
		cpu0, err := threadCPU(e.drv.Pid())
		if err != nil {
			return err
		}
		start := time.Now()
		err = e.publish(ctx, p)
		end := time.Now()
		if err != nil {
			return fmt.Errorf("%s %s %s publish %d: %w", v.Name, latency, mode, i, err)
		}
		cpu1, err := threadCPU(e.drv.Pid())
		if err != nil {
			return err
		}
		if measure {
			res.CPU = append(res.CPU, cpu1-cpu0)
			total := end.Sub(start)
			sw := e.storeRec.Busy(start, end)
			res.Total = append(res.Total, total)
			res.StoreWait = append(res.StoreWait, sw)
			res.APIWait = append(res.APIWait, e.apiRec.Busy(start, end))
			res.Overhead = append(res.Overhead, total-sw)
		}
		if i == 0 {
			if err := verify(p, v); err != nil {
				return err
			}
		}
		return e.unpublish(ctx, p)
	}
	for i := range warmup {
		if err := one(false, i); err != nil {
			return nil, err
		}
	}
	e.resetCounters()
	for i := range n {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := one(true, i); err != nil {
			return nil, err
		}
	}
	res.Calls = e.storeCalls()
	res.APIGets = e.apiRec.Total()
	return res, nil
}

// RepublishResult is kubelet's periodic republish of a mounted volume.
type RepublishResult struct {
	N       int             // republishes
	Latency []time.Duration // of each republish
	// CPU is from /proc/<pid>/stat; ThreadCPU from the threads' schedstat.
	CPU       CPUTimes
	ThreadCPU time.Duration // see CPU
	Calls     int           // store calls of all republishes
	APIGets   int           // API server requests of all republishes
	Duration  time.Duration // of the whole loop
}

// runRepublish publishes one volume and then republishes it n times with the
// same request, as kubelet does while the pod runs.
func (e *Env) runRepublish(ctx context.Context, v volumeSpec, n int) (*RepublishResult, error) {
	e.st.SetLatency(20 * time.Millisecond)
	p, err := e.newPod(v.Name, warmSA, e.warmToken)
	if err != nil {
		return nil, err
	}
	if err := e.publish(ctx, p); err != nil {
		return nil, fmt.Errorf("republish: first publish: %w", err)
	}
	// Let the first publish's stragglers (connection set-up) finish.
	time.Sleep(100 * time.Millisecond)
	e.resetCounters()
	res := &RepublishResult{N: n}
	cpu0, err := procCPU(e.drv.Pid())
	if err != nil {
		return nil, err
	}
	tcpu0, err := threadCPU(e.drv.Pid())
	if err != nil {
		return nil, err
	}
	t0 := time.Now()
	for i := range n {
		start := time.Now()
		if err := e.publish(ctx, p); err != nil {
			return nil, fmt.Errorf("republish %d: %w", i, err)
		}
		res.Latency = append(res.Latency, time.Since(start))
	}
	res.Duration = time.Since(t0)
	cpu1, err := procCPU(e.drv.Pid())
	if err != nil {
		return nil, err
	}
	tcpu1, err := threadCPU(e.drv.Pid())
	if err != nil {
		return nil, err
	}
	res.CPU = CPUTimes{Self: cpu1.Self - cpu0.Self, Children: cpu1.Children - cpu0.Children}
	res.ThreadCPU = tcpu1 - tcpu0
	for _, c := range e.storeCalls() {
		res.Calls += c
	}
	res.APIGets = e.apiRec.Total()
	if err := verify(p, v); err != nil {
		return nil, err
	}
	return res, e.unpublish(ctx, p)
}

// BurstResult is podsPerNode pods published at once.
type BurstResult struct {
	SharedSA   bool            // all pods run as one service account
	Latency    time.Duration   // injected per store call
	Wall       time.Duration   // from the start to the last publish's return
	Samples    []time.Duration // each publish's latency
	Errors     int             // failed publishes
	FirstError string          // the first failure's message
	Calls      map[string]int  // store calls by op
	APIGets    int             // API server requests
	// Memory and goroutines of the driver with every volume mounted, and
	// goroutines once all were unpublished.
	Mem               MemStatus
	GoroutinesMounted int           // with all mounted
	GoroutinesAfter   int           // 1 s after all were unpublished
	UnpublishWall     time.Duration // unpublishing all, one after the other
}

// runBurst publishes podsPerNode distinct pods of v concurrently at 20 ms
// store latency, measures the driver with all of them mounted, and then
// unpublishes them all; with profPrefix it saves the driver's heap profile
// (mounted) and goroutines (after) to files of that prefix. With sharedSA every pod runs as one service account
// whose credentials are not cached yet (one STS call shared by all);
// otherwise each pod has its own (one STS call each).
func (e *Env) runBurst(ctx context.Context, v volumeSpec, sharedSA bool, profPrefix string) (*BurstResult, error) {
	const latency = 20 * time.Millisecond
	e.st.SetLatency(latency)
	res := &BurstResult{SharedSA: sharedSA, Latency: latency}
	pods := make([]*Pod, podsPerNode)
	sharedName := fmt.Sprintf("burst-%d", time.Now().UnixNano())
	sharedTok := e.token(sharedName)
	for i := range pods {
		sa, tok := sharedName, sharedTok
		if !sharedSA {
			sa = fmt.Sprintf("%s-%03d", sharedName, i)
			tok = ""
		}
		p, err := e.newPod(v.Name, sa, tok)
		if err != nil {
			return nil, err
		}
		pods[i] = p
	}
	e.resetCounters()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		start = make(chan struct{})
	)
	lat := make([]time.Duration, len(pods))
	ok := make([]bool, len(pods))
	for i, p := range pods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			t := time.Now()
			err := e.publish(ctx, p)
			lat[i] = time.Since(t)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				res.Errors++
				if res.FirstError == "" {
					res.FirstError = err.Error()
				}
				return
			}
			ok[i] = true
		}()
	}
	t0 := time.Now()
	close(start)
	wg.Wait()
	res.Wall = time.Since(t0)
	res.Samples = lat
	res.Calls = e.storeCalls()
	res.APIGets = e.apiRec.Total()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for i, p := range pods {
		if ok[i] {
			if err := verify(p, v); err != nil {
				return nil, err
			}
		}
	}
	var err error
	if res.Mem, err = e.drv.memory(); err != nil {
		return nil, err
	}
	if res.GoroutinesMounted, err = e.drv.Goroutines(); err != nil {
		return nil, err
	}
	if profPrefix != "" {
		if err := e.drv.fetchProfile(ctx, "heap", profPrefix+"heap-mounted.pprof"); err != nil {
			return nil, err
		}
	}
	t1 := time.Now()
	for _, p := range pods {
		if err := e.unpublish(ctx, p); err != nil {
			return nil, err
		}
	}
	res.UnpublishWall = time.Since(t1)
	time.Sleep(time.Second) // let finished streams' goroutines exit
	if res.GoroutinesAfter, err = e.drv.Goroutines(); err != nil {
		return nil, err
	}
	if profPrefix != "" {
		if err := e.drv.fetchProfile(ctx, "goroutine?debug=1", profPrefix+"goroutines-after.txt"); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// profileLoop publishes (republish=false: fresh pods, unpublished after
// each) or republishes one volume of v in a loop for d while the driver
// records a CPU profile into file.
func (e *Env) profileLoop(ctx context.Context, v volumeSpec, republish bool, d time.Duration, file string) (int, error) {
	e.st.SetLatency(0)
	errc := make(chan error, 1)
	go func() {
		errc <- e.drv.fetchProfile(ctx, fmt.Sprintf("profile?seconds=%d", int(d.Seconds())), file)
	}()
	var fixed *Pod
	if republish {
		var err error
		if fixed, err = e.newPod(v.Name, warmSA, e.warmToken); err != nil {
			return 0, err
		}
		if err := e.publish(ctx, fixed); err != nil {
			return 0, err
		}
	}
	n := 0
	for end := time.Now().Add(d); time.Now().Before(end); n++ {
		if republish {
			if err := e.publish(ctx, fixed); err != nil {
				return n, err
			}
			continue
		}
		p, err := e.newPod(v.Name, warmSA, e.warmToken)
		if err != nil {
			return n, err
		}
		if err := e.publish(ctx, p); err != nil {
			return n, err
		}
		if err := e.unpublish(ctx, p); err != nil {
			return n, err
		}
	}
	if fixed != nil {
		if err := e.unpublish(ctx, fixed); err != nil {
			return n, err
		}
	}
	return n, <-errc
}

// visibleFiles counts the top-level names of the volume at target that a
// pod sees: everything but the "..data" layout's.
func visibleFiles(target string) (int, error) {
	entries, err := os.ReadDir(target)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "..") {
			n++
		}
	}
	return n, nil
}
