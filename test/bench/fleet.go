package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"

	"github.com/podsecrets/podsecrets/test/awsfake/store"
)

// The fleet benchmark: several driver processes on this machine stand for
// the nodes of a fleet, all reading from ONE fake store whose account-level
// quotas are scaled down to the simulated fleet, so the quotas bind as they
// would for the real one.
//
// The reference is the rollout of the notes on quotas: 100,000 mounts on
// 1,000 nodes within 10 minutes (167 mounts/s for the account). The
// simulated fleet's nodes each start their pods as one burst, staggered
// evenly over a shorter window; the quotas are scaled so that the fleet's
// average mount rate takes the same share of every quota as the reference
// rollout's: scale = (nodes × pods / window) / (100,000 / 600 s).

// Reference rollout (docs: lifecycle-and-scale notes, "AWS quotas").
const (
	refMounts = 100_000
	refNodes  = 1_000
	refWindow = 10 * time.Minute
)

// FleetConfig is the shape of one fleet run.
type FleetConfig struct {
	Nodes, PodsPerNode int
	// Window is the time over which the nodes' bursts start, evenly
	// spaced (node 0 at once, the last at Window × (Nodes-1)/Nodes).
	Window time.Duration
	// Grace is how long after the window kubelet-style retries may still
	// mount; a pod not mounted by Window+Grace counts as failed.
	Grace time.Duration
	// Latency is the fake store's latency per call.
	Latency time.Duration
	// ProbePods is the one-node probe's burst of one service account.
	ProbePods int
}

// fleetConfig is the default fleet, or the -quick one.
func fleetConfig(quick bool) FleetConfig {
	if quick {
		return FleetConfig{Nodes: 5, PodsPerNode: 40, Window: 8 * time.Second, Grace: 20 * time.Second, Latency: 20 * time.Millisecond, ProbePods: 100}
	}
	return FleetConfig{Nodes: 10, PodsPerNode: 100, Window: 20 * time.Second, Grace: 40 * time.Second, Latency: 20 * time.Millisecond, ProbePods: 100}
}

// Scale is the factor applied to AWS's default quotas.
func (c FleetConfig) Scale() float64 {
	rate := float64(c.Nodes*c.PodsPerNode) / c.Window.Seconds()
	return rate / (refMounts / refWindow.Seconds())
}

// Compression is how much faster than the reference rollout the simulated
// one runs: reference window / simulated window.
func (c FleetConfig) Compression() float64 { return refWindow.Seconds() / c.Window.Seconds() }

// fleetStrategy is a driver configuration compared in the fleet run.
type fleetStrategy struct {
	Name string   // short name for tables
	Args []string // driver flags
	// ProbeOnly runs the one-node probe (table 8c) alone, on one driver
	// process: no fleet burst.
	ProbeOnly bool
}

var fleetStrategies = []fleetStrategy{
	{Name: "batch, no sharing (before)", Args: []string{"--aws-read-strategy=batch", "--aws-share-window=0"}},
	{Name: "quota, 1 s sharing (new default)", Args: []string{"--aws-read-strategy=quota", "--aws-share-window=1s"}},
	// Batch reads with sharing: the fewest store calls for a node's burst
	// (table 8c), not the fewest of the quotas (provider/aws/strategy.go).
	{Name: "batch, 1 s sharing", Args: []string{"--aws-read-strategy=batch", "--aws-share-window=1s"}, ProbeOnly: true},
}

// fleetClass is the class every fleet pod mounts: 10 Secrets Manager
// secrets.
const fleetClass = "sm-10"

// Service accounts of the fleet: half of each node's pods belong to one
// Deployment spread over all nodes; the other half to many small
// workloads, one pod of each per node (svc-000, svc-001, ...).
const fleetDeploymentSA = "web"

func fleetSA(podIndex, podsPerNode int) string {
	if podIndex < podsPerNode/2 {
		return fleetDeploymentSA
	}
	return fmt.Sprintf("svc-%03d", podIndex-podsPerNode/2)
}

// FleetRun is one strategy's fleet run.
type FleetRun struct {
	Strategy fleetStrategy
	Config   FleetConfig
	Quotas   map[string]store.Quota // effective, scaled
	// Calls and Throttles are the store's counters by op during the run.
	Calls, Throttles map[string]int
	// Mount outcomes: Mounted by the deadline, of which Retried needed
	// more than one NodePublishVolume; Failed were not mounted by the
	// deadline; ThrottledMounts saw at least one attempt fail with a
	// throttling error. Attempts counts every NodePublishVolume.
	Pods, Mounted, Retried, Failed, ThrottledMounts, Attempts int
	MaxAttempts                                               int
	// Latency is each mounted pod's time from its node's burst to its
	// successful NodePublishVolume, retries included (kubelet's view).
	Latency    []time.Duration
	Wall       time.Duration // first burst to the last pod's outcome
	FirstError string
	Probe      *ProbeResult
}

// ProbeResult is the one-node probe: ProbePods pods of one service account
// (credentials not cached yet) mounting the fleet class at once, quotas off.
type ProbeResult struct {
	Pods       int
	Calls      map[string]int
	Latency    []time.Duration
	Errors     int
	FirstError string
	// StoreWait is, per pod, how long at least one store call was in
	// flight during its publish (the node's calls only: the other nodes
	// are idle meanwhile): the longest the pod can have waited on the
	// store, its own calls and the shared ones.
	StoreWait []time.Duration
}

// fleetNode is one simulated node: a driver process with its own socket,
// kubelet root (a tmpfs), HTTP port, node name and pod cgroups.
type fleetNode struct {
	name string
	dir  string
	env  *Env
}

// fleetEnv is what the fleet shares with the single-node benchmark: the
// binary, the fakes, the kubeconfig and where pod cgroups go.
type fleetEnv struct {
	base       *Env   // the store, API server and issuer
	bin        string // the driver
	kubeconfig string
	storeURL   string
	tmp        string // the run's scratch directory
	// cgroupBase is the scratch memory cgroup directory (absolute) below
	// which each node gets its kubepods; "" without cgroup v1 memory.
	cgroupBase string
	step       func(format string, args ...any)
}

// runFleet runs every strategy on the same fleet, one after the other.
func (f *fleetEnv) runFleet(ctx context.Context, cfg FleetConfig) ([]*FleetRun, error) {
	// A hard bound on the whole fleet part, whatever happens.
	// Each run's mounts end by Window+Grace; starting the drivers, the
	// probe and unpublishing get 30 s more (full fleet: 3 minutes in all).
	var bound time.Duration
	for _, s := range fleetStrategies {
		if s.ProbeOnly {
			bound += 30 * time.Second
		} else {
			bound += cfg.Window + cfg.Grace + 30*time.Second
		}
	}
	ctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	var runs []*FleetRun
	for i, s := range fleetStrategies {
		r, err := f.runStrategy(ctx, cfg, s, i)
		if err != nil {
			return runs, fmt.Errorf("fleet run %q: %w", s.Name, err)
		}
		runs = append(runs, r)
	}
	return runs, nil
}

// runStrategy starts the fleet's drivers with s's flags, probes one node,
// runs the fleet burst and tears everything down again.
func (f *fleetEnv) runStrategy(ctx context.Context, cfg FleetConfig, s fleetStrategy, idx int) (res *FleetRun, err error) {
	res = &FleetRun{Strategy: s, Config: cfg}
	st := f.base.st
	nodeCount := cfg.Nodes
	if s.ProbeOnly {
		nodeCount = 1
	}
	nodes := make([]*fleetNode, nodeCount)
	// Tear-down runs whatever happened: quotas off, every volume
	// unpublished, drivers stopped, tmpfs kubelet roots unmounted, pod
	// cgroups removed.
	defer func() {
		st.SetQuotas(store.QuotaConfig{})
		cctx, ccancel := context.WithTimeout(context.Background(), time.Minute)
		defer ccancel()
		var wg sync.WaitGroup
		errs := make([]error, len(nodes))
		for i, n := range nodes {
			if n == nil {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = n.teardown(cctx)
			}()
		}
		wg.Wait()
		if cerr := errors.Join(errs...); cerr != nil && err == nil {
			err = fmt.Errorf("clean-up: %w", cerr)
		}
	}()

	f.step("fleet %q: starting %d drivers", s.Name, nodeCount)
	var (
		wg       sync.WaitGroup
		startErr = make([]error, nodeCount)
	)
	for i := range nodes {
		n, err := f.newNode(idx, i)
		if err != nil {
			return nil, err
		}
		nodes[i] = n
		wg.Add(1)
		go func() {
			defer wg.Done()
			startErr[i] = f.startNode(ctx, n, s.Args)
		}()
	}
	wg.Wait()
	if err := errors.Join(startErr...); err != nil {
		return nil, err
	}

	// The one-node probe, quotas off, once the drivers have settled.
	time.Sleep(time.Second)
	st.SetLatency(cfg.Latency)
	if res.Probe, err = f.probe(ctx, nodes[0], cfg, fmt.Sprintf("probe-%d", idx)); err != nil {
		return nil, nodes[0].env.withLog(err)
	}
	f.step("fleet %q: probe %d pods of one service account on one node: %d store calls (%v), %d errors",
		s.Name, res.Probe.Pods, sumCalls(res.Probe.Calls), res.Probe.Calls, res.Probe.Errors)
	if s.ProbeOnly {
		return res, nil
	}

	// The fleet burst against the scaled quotas.
	tokens := map[string]string{}
	pods := make([][]*Pod, cfg.Nodes)
	for i, n := range nodes {
		for j := range cfg.PodsPerNode {
			sa := fleetSA(j, cfg.PodsPerNode)
			if tokens[sa] == "" {
				tokens[sa] = f.base.token(sa)
			}
			p, err := n.env.newPod(fleetClass, sa, tokens[sa])
			if err != nil {
				return nil, err
			}
			pods[i] = append(pods[i], p)
		}
	}
	res.Pods = cfg.Nodes * cfg.PodsPerNode
	time.Sleep(1500 * time.Millisecond) // the probe's shared reads expire
	f.base.resetCounters()
	res.Quotas = st.SetQuotas(store.QuotaConfig{Scale: cfg.Scale()})
	f.step("fleet %q: %d nodes × %d pods over %s, quotas × %.3g (BatchGetSecretValue %.3g/s, GetSecretValue %.4g/s, STS %.4g/s)",
		s.Name, cfg.Nodes, cfg.PodsPerNode, cfg.Window, cfg.Scale(), res.Quotas[store.QuotaBatchGetSecretValue].Rate,
		res.Quotas[store.QuotaGetSecretValue].Rate, res.Quotas[store.QuotaSTSAssumeRoleWithWebIdentity].Rate)

	type outcome struct {
		ok, throttled bool
		attempts      int
		latency       time.Duration
		firstErr      string
	}
	outcomes := make([][]outcome, cfg.Nodes)
	t0 := time.Now()
	deadline := t0.Add(cfg.Window + cfg.Grace)
	dctx, dcancel := context.WithDeadline(ctx, deadline)
	defer dcancel()
	var all sync.WaitGroup
	for i, n := range nodes {
		outcomes[i] = make([]outcome, len(pods[i]))
		startAt := t0.Add(cfg.Window * time.Duration(i) / time.Duration(cfg.Nodes))
		for j, p := range pods[i] {
			all.Add(1)
			go func() {
				defer all.Done()
				if !sleepUntil(dctx, startAt) {
					outcomes[i][j].firstErr = "deadline before the node's burst"
					return
				}
				o := &outcomes[i][j]
				// Kubelet's retry of a failed volume operation:
				// exponential backoff from 500 ms, doubling, capped at
				// 2 min 2 s; here bounded by the run's deadline.
				backoff := 500 * time.Millisecond
				for {
					o.attempts++
					err := n.env.publish(dctx, p)
					if err == nil {
						o.ok, o.latency = true, time.Since(startAt)
						return
					}
					if o.firstErr == "" {
						o.firstErr = err.Error()
					}
					if isThrottleText(err.Error()) {
						o.throttled = true
					}
					if !sleepUntil(dctx, time.Now().Add(backoff)) {
						return
					}
					backoff = min(2*backoff, 122*time.Second)
				}
			}()
		}
	}
	all.Wait()
	res.Wall = time.Since(t0)
	res.Calls, res.Throttles = st.CallCounts(), st.ThrottleCounts()
	st.SetQuotas(store.QuotaConfig{})
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("fleet part over its time bound: %w", err)
	}
	for i := range outcomes {
		for j, o := range outcomes[i] {
			res.Attempts += o.attempts
			res.MaxAttempts = max(res.MaxAttempts, o.attempts)
			if o.ok {
				res.Mounted++
				res.Latency = append(res.Latency, o.latency)
				if o.attempts > 1 {
					res.Retried++
				}
				if j == 0 || j == len(outcomes[i])-1 {
					if err := verify(pods[i][j], volumeByName(fleetClass)); err != nil {
						return nil, err
					}
				}
			} else {
				res.Failed++
			}
			if o.throttled {
				res.ThrottledMounts++
			}
			if res.FirstError == "" && o.firstErr != "" {
				res.FirstError = o.firstErr
			}
		}
	}
	for _, n := range nodes {
		if !n.env.drv.Alive() {
			return nil, n.env.withLog(fmt.Errorf("driver of %s exited during the fleet run", n.name))
		}
	}
	// The pods go: each node unpublishes its own one after the other, the
	// nodes in parallel.
	uerrs := make([]error, len(nodes))
	var uwg sync.WaitGroup
	for i, n := range nodes {
		uwg.Add(1)
		go func() {
			defer uwg.Done()
			for _, p := range pods[i] {
				if err := n.env.unpublish(ctx, p); err != nil {
					uerrs[i] = err
					return
				}
			}
		}()
	}
	uwg.Wait()
	if err := errors.Join(uerrs...); err != nil {
		return nil, err
	}
	f.step("fleet %q: %d/%d mounted (%d after retries), %d failed, wall %s, p50 %s, p99 %s; throttles %v",
		s.Name, res.Mounted, res.Pods, res.Retried, res.Failed, ms(res.Wall), ms(Percentile(res.Latency, .5)),
		ms(Percentile(res.Latency, .99)), res.Throttles)
	return res, nil
}

// probe publishes cfg.ProbePods pods of the new service account sa on node
// n at once, with quotas off, counts the store calls and unpublishes them.
func (f *fleetEnv) probe(ctx context.Context, n *fleetNode, cfg FleetConfig, sa string) (*ProbeResult, error) {
	tok := f.base.token(sa)
	pods := make([]*Pod, cfg.ProbePods)
	for i := range pods {
		p, err := n.env.newPod(fleetClass, sa, tok)
		if err != nil {
			return nil, err
		}
		pods[i] = p
	}
	f.base.resetCounters()
	res := &ProbeResult{Pods: len(pods), Latency: make([]time.Duration, len(pods)), StoreWait: make([]time.Duration, len(pods))}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		start = make(chan struct{})
	)
	for i, p := range pods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			t := time.Now()
			err := n.env.publish(ctx, p)
			end := time.Now()
			res.Latency[i] = end.Sub(t)
			res.StoreWait[i] = f.base.storeRec.Busy(t, end)
			if err != nil {
				mu.Lock()
				res.Errors++
				if res.FirstError == "" {
					res.FirstError = err.Error()
				}
				mu.Unlock()
			}
		}()
	}
	close(start)
	wg.Wait()
	res.Calls = f.base.st.CallCounts()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := verify(pods[0], volumeByName(fleetClass)); res.Errors == 0 && err != nil {
		return nil, err
	}
	for _, p := range pods {
		if err := n.env.unpublish(ctx, p); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// newNode prepares node i of run idx: its directory and its Env (sharing
// the fakes with the base Env).
func (f *fleetEnv) newNode(idx, i int) (*fleetNode, error) {
	name := fmt.Sprintf("f%dn%02d", idx, i)
	dir := filepath.Join(f.tmp, name)
	if err := os.MkdirAll(filepath.Join(dir, "kubelet"), 0o750); err != nil {
		return nil, err
	}
	b := f.base
	env := &Env{kubeletRoot: filepath.Join(dir, "kubelet"), st: b.st, storeRec: b.storeRec, api: b.api, apiRec: b.apiRec,
		iss: b.iss, published: map[string]*csi.NodePublishVolumeRequest{}}
	if f.cgroupBase != "" {
		env.podCgroups = filepath.Join(f.cgroupBase, name)
	}
	return &fleetNode{name: name, dir: dir, env: env}, nil
}

// startNode mounts the node's kubelet root tmpfs and starts its driver.
func (f *fleetEnv) startNode(ctx context.Context, n *fleetNode, args []string) error {
	if err := unix.Mount("bench-fleet-"+n.name, n.env.kubeletRoot, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0750,size=64m"); err != nil {
		return fmt.Errorf("%s: mount a tmpfs for the kubelet root: %w", n.name, err)
	}
	driverTmp := filepath.Join(n.env.kubeletRoot, "driver-tmp")
	if err := os.Mkdir(driverTmp, 0o700); err != nil {
		return err
	}
	drvArgs := []string{"--volume-memory=driver"}
	if n.env.podCgroups != "" {
		rel, err := filepath.Rel("/sys/fs/cgroup/memory", n.env.podCgroups)
		if err != nil {
			return err
		}
		drvArgs = []string{"--volume-memory=pod", "--cgroup-root=/sys/fs/cgroup", "--kubepods-cgroup=" + rel + "/kubepods"}
	}
	drv, err := startDriver(ctx, DriverConfig{
		Bin: f.bin, Socket: filepath.Join(n.dir, "csi.sock"), KubeletRoot: n.env.kubeletRoot, NodeID: n.name,
		Kubeconfig: f.kubeconfig, StoreURL: f.storeURL, Dir: n.dir, TmpDir: driverTmp,
		Args: append(drvArgs, args...),
	})
	if err != nil {
		return fmt.Errorf("%s: %w", n.name, err)
	}
	n.env.drv = drv
	return nil
}

// teardown unpublishes what is left, stops the driver, unmounts the
// kubelet root and removes the node's pod cgroups.
func (n *fleetNode) teardown(ctx context.Context) error {
	var errs []error
	if n.env.drv != nil {
		if n.env.drv.Alive() {
			if err := n.env.unpublishAll(ctx); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", n.name, err))
			}
		}
		n.env.drv.Stop()
	}
	if _, err := unmountBelow(n.dir); err != nil {
		errs = append(errs, err)
	}
	if n.env.podCgroups != "" {
		removeCgroups(n.env.podCgroups)
	}
	if err := os.RemoveAll(n.dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// sleepUntil waits until t; false if ctx ended first.
func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// isThrottleText tells a publish error caused by throttling: the driver
// reports the AWS code, and the SDK's own retry quota running dry.
func isThrottleText(s string) bool {
	for _, w := range []string{"Throttling", "Rate exceeded", "retry quota exceeded"} {
		if strings.Contains(s, w) {
			return true
		}
	}
	return false
}

// fleetOps are the store ops the fleet tables report, in order.
var fleetOps = []struct{ op, quota, name string }{
	{opSTS, store.QuotaSTSAssumeRoleWithWebIdentity, "STS AssumeRoleWithWebIdentity"},
	{opGet, store.QuotaGetSecretValue, "GetSecretValue"},
	{opBatch, store.QuotaBatchGetSecretValue, "BatchGetSecretValue"},
	{"secretsmanager.DescribeSecret", store.QuotaDescribeSecret, "DescribeSecret"},
	{opParams, store.QuotaSSMGetParameters, "SSM GetParameters"},
}

// otherOps lists ops in m that fleetOps does not name.
func otherOps(m map[string]int) []string {
	known := map[string]bool{}
	for _, o := range fleetOps {
		known[o.op] = true
	}
	var out []string
	for op, n := range m {
		if !known[op] && n > 0 {
			out = append(out, fmt.Sprintf("%s %d", op, n))
		}
	}
	sort.Strings(out)
	return out
}
