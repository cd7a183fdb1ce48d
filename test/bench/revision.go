package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/podsecrets/podsecrets/test/awsfake/store"
)

// The revision benchmark (table 10): what spec.versionPolicy: Revision adds
// to a mount against the default, PodStart. A Revision mount first GETs the
// pod (its controller: here a Deployment's ReplicaSet, the revision) and
// the revision's SecretVersionRecord; the first pod of a revision, finding
// none, reads the current versions as a PodStart mount does and creates the
// record; a later pod reads the recorded versions by VersionId.
//
// One node of its own (driver process, fake store, fake API server, so the
// counters are this part's alone), the 10-secret class at 20 ms per store
// call, as table 1's sm-10 row.

const (
	revLatency = 20 * time.Millisecond
	revSamples = 30 // per case, in -quick too: the part takes seconds
	revWarmup  = 2
	revSA      = "rev-app"
)

// revCases are table 10's rows, in order.
var revCases = []struct{ Key, Name string }{
	{revPodStart, "PodStart (default), warm"},
	{revFirst, "Revision, first pod of a revision"},
	{revLater, "Revision, later pods of the revision"},
}

const (
	revPodStart = "podstart"
	revFirst    = "first"
	revLater    = "later"
)

// RevisionCase is one row of table 10.
type RevisionCase struct {
	Key, Name string
	// Per-publish samples; CPU is the driver's CPU time during the
	// publish.
	Total, StoreWait, APIWait, CPU []time.Duration
	// Calls are the store calls of all samples by op, API the API
	// server's requests by kind, Mounts the driver's
	// podsecrets_revision_mounts_total by result over them.
	Calls, API, Mounts map[string]int
}

// N is the number of samples.
func (c *RevisionCase) N() int { return len(c.Total) }

// RevisionResult is the revision benchmark.
type RevisionResult struct {
	Cases      []*RevisionCase
	DriverArgs []string // besides the volume memory ones
	// Records is how many SecretVersionRecords the API server holds at
	// the end; PinHeld how many measured later pods got the recorded
	// version of sm-00 after AWSCURRENT had moved to a new one (all of
	// them, or the run fails).
	Records, PinHeld int
	LogWarnings      int
	FirstWarnings    []string
}

// revisionCase returns the case of key, or nil.
func (r *RevisionResult) revisionCase(key string) *RevisionCase {
	if r == nil {
		return nil
	}
	for _, c := range r.Cases {
		if c.Key == key {
			return c
		}
	}
	return nil
}

// revEnv is what the revision part needs from the run.
type revEnv struct {
	bin        string
	tmp        string
	iss        *store.Issuer
	cgroupBase string // "" without a cgroup v1 memory hierarchy
	step       func(format string, args ...any)
}

func randomUID() string {
	var b [16]byte
	rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// runRevision measures the three cases one after the other on a node of
// its own.
func (r *revEnv) runRevision(ctx context.Context) (res *RevisionResult, err error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	res = &RevisionResult{}
	const name = "revision"
	dir := filepath.Join(r.tmp, name)
	if err := os.MkdirAll(filepath.Join(dir, "kubelet"), 0o750); err != nil {
		return nil, err
	}
	sm10 := volumeByName("sm-10")

	st := store.New(store.Options{})
	if err := st.TrustJWKS(r.iss.JWKS()); err != nil {
		return nil, err
	}
	st.AddRole(store.Role{ARN: roleARN, Subjects: []string{"system:serviceaccount:" + benchNS + ":*"}, Allow: []string{"*"}})
	for i := range sm10.SM {
		st.CreateSecret(region, smName(i), store.Value{String: smValue(i)})
	}
	st.SetLatency(revLatency)
	storeRec := NewRecorder(st.Handler(), nil)
	storeSrv := httptest.NewServer(storeRec)
	defer storeSrv.Close()
	api := &KubeAPI{RoleARN: roleARN, SANamespace: benchNS}
	classes := map[string]string{revPodStart: "podstart-10", revFirst: "revision-10", revLater: "revision-10"}
	api.SetClass(benchNS, classes[revPodStart], map[string]string{"objects": sm10.objectsYAML()})
	api.SetRevisionClass(benchNS, classes[revFirst], map[string]string{"objects": sm10.objectsYAML()})
	apiRec := NewRecorder(api, apiKind)
	apiSrv := httptest.NewServer(apiRec)
	defer apiSrv.Close()
	env, kubeconfig, err := oneNodeEnv(dir, name, apiSrv.URL, r.cgroupBase, r.iss, st, storeRec, api, apiRec)
	if err != nil {
		return nil, err
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
		return nil, fmt.Errorf("mount a tmpfs for the kubelet root: %w", err)
	}
	driverTmp := filepath.Join(env.kubeletRoot, "driver-tmp")
	if err := os.Mkdir(driverTmp, 0o700); err != nil {
		return nil, err
	}
	args := []string{"--volume-memory=driver"}
	if env.podCgroups != "" {
		rel, err := filepath.Rel("/sys/fs/cgroup/memory", env.podCgroups)
		if err != nil {
			return nil, err
		}
		args = []string{"--volume-memory=pod", "--cgroup-root=/sys/fs/cgroup", "--kubepods-cgroup=" + rel + "/kubepods"}
	}
	// As tables 1–5: every sample makes its own reads. The fake API
	// server has no list or watch: no class watch.
	res.DriverArgs = []string{"--aws-share-window=0", "--watch-classes=false"}
	r.step("revision: PodStart and Revision mounts, %d samples each, %d ms per store call", revSamples, revLatency.Milliseconds())
	env.drv, err = startDriver(ctx, DriverConfig{
		Bin: r.bin, Socket: filepath.Join(dir, "csi.sock"), KubeletRoot: env.kubeletRoot, NodeID: name,
		Kubeconfig: kubeconfig, StoreURL: storeSrv.URL, Dir: dir, TmpDir: driverTmp, Args: append(args, res.DriverArgs...),
	})
	if err != nil {
		return nil, err
	}
	token := env.token(revSA)

	verifyAll := func(p *Pod) error { return verify(p, sm10) }
	rsN := 0
	newReplicaSet := func() *Owner {
		rsN++
		return &Owner{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: fmt.Sprintf("web-%04d", rsN), UID: randomUID()}
	}
	// One pod of case c: a fresh pod of the one service account, of a
	// new ReplicaSet (first pods) or of the later pods' one, published,
	// checked and unpublished; measure records it in c.
	laterRS := newReplicaSet()
	var pinned func(*Pod) error
	one := func(c *RevisionCase, measure bool) error {
		var owner *Owner
		check := verifyAll
		switch c.Key {
		case revFirst:
			owner = newReplicaSet() // a new revision each: no record yet
		case revLater:
			owner = laterRS
			if pinned != nil {
				check = pinned
			}
		}
		p, err := env.newPod(classes[c.Key], revSA, token)
		if err != nil {
			return err
		}
		if owner != nil {
			api.SetPod(benchNS, p.Req.VolumeContext["csi.storage.k8s.io/pod.name"], p.UID, owner)
		}
		calls0, api0 := st.CallCounts(), apiRec.Counts()
		mounts0, err := env.drv.counter("podsecrets_revision_mounts_total", "result")
		if err != nil {
			return err
		}
		cpu0, err := threadCPU(env.drv.Pid())
		if err != nil {
			return err
		}
		start := time.Now()
		err = env.publish(ctx, p)
		end := time.Now()
		if err != nil {
			return env.withLog(fmt.Errorf("revision %s: publish: %w", c.Key, err))
		}
		cpu1, err := threadCPU(env.drv.Pid())
		if err != nil {
			return err
		}
		if measure {
			mounts1, err := env.drv.counter("podsecrets_revision_mounts_total", "result")
			if err != nil {
				return err
			}
			c.Total = append(c.Total, end.Sub(start))
			c.StoreWait = append(c.StoreWait, storeRec.Busy(start, end))
			c.APIWait = append(c.APIWait, apiRec.Busy(start, end))
			c.CPU = append(c.CPU, cpu1-cpu0)
			addCounts(c.Calls, diffCounts(st.CallCounts(), calls0))
			addCounts(c.API, diffCounts(apiRec.Counts(), api0))
			addCounts(c.Mounts, diffCounts(mounts1, mounts0))
		}
		if err := check(p); err != nil {
			return fmt.Errorf("revision %s: %w", c.Key, err)
		}
		if measure && c.Key == revLater {
			res.PinHeld++
		}
		return env.unpublish(ctx, p)
	}

	cases := make([]*RevisionCase, len(revCases))
	for k, rc := range revCases {
		cases[k] = &RevisionCase{Key: rc.Key, Name: rc.Name, Calls: map[string]int{}, API: map[string]int{}, Mounts: map[string]int{}}
	}
	// Warm-up (credentials cached, classes parsed, connections up), in
	// which the later pods' first pod records their versions; then sm-00
	// gets a new AWSCURRENT version, which the later pods must not see
	// (PodStart and first pods, reading the current versions, get it).
	for range revWarmup {
		for _, c := range cases {
			if err := one(c, false); err != nil {
				return nil, err
			}
		}
	}
	if _, err := st.PutSecretValue(region, smName(0), store.Value{String: rotatedValue()}); err != nil {
		return nil, err
	}
	pinned = func(p *Pod) error {
		got, err := os.ReadFile(filepath.Join(p.Req.TargetPath, "sm-00"))
		if err != nil {
			return err
		}
		if string(got) != smValue(0) {
			return errors.New("a later pod of the revision did not get the recorded version of sm-00")
		}
		return verifyAll(p)
	}
	time.Sleep(50 * time.Millisecond) // stragglers of the warm-up
	// The samples, the cases taking turns, so that a change in the
	// machine's load touches all of them alike.
	for range revSamples {
		for _, c := range cases {
			if err := one(c, true); err != nil {
				return nil, err
			}
		}
	}
	for _, c := range cases {
		r.step("revision %-8s %s; revision mounts %v", c.Key, revisionSummary(c), c.Mounts)
	}
	res.Cases = cases
	res.Records = api.Records()
	if !env.drv.Alive() {
		return nil, env.withLog(errors.New("the driver exited during the revision run"))
	}
	return res, nil
}

// addCounts adds d to m, by key.
func addCounts(m, d map[string]int) {
	for k, v := range d {
		m[k] += v
	}
}
