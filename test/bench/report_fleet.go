package main

import (
	"fmt"
	"strings"

	awsprovider "github.com/podsecrets/podsecrets/provider/aws"
	"github.com/podsecrets/podsecrets/test/awsfake/store"
)

// fleetTargetRow marks the Targets rows of the fleet benchmark.
const fleetTargetRow = "8"

// fleetRun returns the first run whose driver flags include all of flags,
// or nil.
func (r *Results) fleetRun(flags ...string) *FleetRun {
	for _, f := range r.Fleet {
		all := true
		for _, want := range flags {
			has := false
			for _, a := range f.Strategy.Args {
				has = has || a == want
			}
			all = all && has
		}
		if all {
			return f
		}
	}
	return nil
}

// fleetRuns are the runs with a fleet burst (tables 8 and 8b), not only a
// probe.
func (r *Results) fleetRuns() []*FleetRun {
	var out []*FleetRun
	for _, f := range r.Fleet {
		if !f.Strategy.ProbeOnly {
			out = append(out, f)
		}
	}
	return out
}

func rate(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f/s", v)
	case v >= 1:
		return fmt.Sprintf("%.3g/s", v)
	}
	return fmt.Sprintf("%.2g/s", v)
}

// fleetReport returns the fleet's Targets rows and tables.
func fleetReport(r *Results) (targets [][]string, tables []Table) {
	if len(r.Fleet) == 0 {
		return nil, nil
	}
	cfg := r.Fleet[0].Config
	before, after := r.fleetRun("--aws-read-strategy=batch", "--aws-share-window=0"), r.fleetRun("--aws-read-strategy=quota")
	batchShared := r.fleetRun("--aws-read-strategy=batch", "--aws-share-window=1s")
	secrets := volumeByName(fleetClass).SM

	// Targets.
	if after != nil && after.Probe != nil {
		p := after.Probe
		var bp *ProbeResult
		var m string
		if batchShared != nil && batchShared.Probe != nil {
			bp = batchShared.Probe
			m = fmt.Sprintf("batch, 1 s sharing: %s; ", probeCallsText(bp))
		}
		m += fmt.Sprintf("quota, 1 s sharing (default): %s", probeCallsText(p))
		if readsOnce(p, secrets) {
			m += ", each secret read once"
		} else if p.Calls[opGet] > secrets {
			m += fmt.Sprintf(", %d reads of each secret: some pods asked more than the share window after the previous read had arrived", p.Calls[opGet]/secrets)
		}
		if before != nil && before.Probe != nil {
			m += fmt.Sprintf("; before (batch, no sharing): %d", sumCalls(before.Probe.Calls))
		}
		targets = append(targets, []string{fleetTargetRow, fmt.Sprintf("%d pods of one service account, one node, at once, %d secrets: ≤ 2 store calls", p.Pods, secrets),
			m, probeVerdict(p, bp, secrets)})
	}
	if before != nil && after != nil {
		bt, at := sumCalls(before.Throttles), sumCalls(after.Throttles)
		targets = append(targets, []string{fleetTargetRow, "fleet: no throttled mount with the new strategy where today's throttles",
			fmt.Sprintf("new: %d store throttles, %d of %d mounts retried, %d failed; before: %d throttles, %d retried, %d failed",
				at, after.Retried, after.Pods, after.Failed, bt, before.Retried, before.Failed),
			throttleVerdict(bt, at, after)})
		p50 := Percentile(after.Latency, .5)
		targets = append(targets, []string{fleetTargetRow, fmt.Sprintf("fleet: p50 mount latency still one store round trip (%d ms per call)", cfg.Latency.Milliseconds()),
			fmt.Sprintf("time to mounted p50 new %s, before %s: each node's burst of %d pods is mostly the node's own work (see 8c)",
				ms(p50), ms(Percentile(before.Latency, .5)), cfg.PodsPerNode), "see the next row"})
	}
	if after != nil && after.Probe != nil && len(after.Probe.StoreWait) > 0 {
		p := after.Probe
		w := Percentile(p.StoreWait, .5)
		m := fmt.Sprintf("store wait p50 %s of a p50 of %s", ms(w), ms(Percentile(p.Latency, .5)))
		if before != nil && before.Probe != nil {
			m += fmt.Sprintf(" (before: %s of %s)", ms(Percentile(before.Probe.StoreWait, .5)), ms(Percentile(before.Probe.Latency, .5)))
		}
		targets = append(targets, []string{fleetTargetRow, fmt.Sprintf("one node, %d pods of one service account at once: a pod waits on the store no longer than "+
			"its own mount's round trips (2 for a first mount: STS, then the reads; ≤ 2.5 × %d ms)", p.Pods, cfg.Latency.Milliseconds()),
			m, met(w <= 2*cfg.Latency+cfg.Latency/2)})
	}

	// Mount outcomes.
	mt := Table{
		Title: fmt.Sprintf("8. Fleet: %d driver processes × %d pods against one store with quotas scaled × %.3g (a 10-minute rollout of %d mounts on %d nodes, %.0f× faster)",
			cfg.Nodes, cfg.PodsPerNode, cfg.Scale(), refMounts, refNodes, cfg.Compression()),
		Header: []string{"strategy (driver flags)", "pods", "mounted", "mounted after retries", "not mounted by the deadline", "mounts with a throttled attempt",
			"NodePublishVolume calls (most for one pod)", "time to mounted p50", "p99", "max", "wall", "store calls", "store throttles"},
	}
	for _, f := range r.fleetRuns() {
		mt.Rows = append(mt.Rows, []string{fmt.Sprintf("%s (`%s`)", f.Strategy.Name, strings.Join(f.Strategy.Args, " ")), fmt.Sprint(f.Pods), fmt.Sprint(f.Mounted),
			fmt.Sprint(f.Retried), fmt.Sprint(f.Failed), fmt.Sprint(f.ThrottledMounts), fmt.Sprintf("%d (%d)", f.Attempts, f.MaxAttempts),
			ms(Percentile(f.Latency, .5)), ms(Percentile(f.Latency, .99)), ms(Percentile(f.Latency, 1)), ms(f.Wall),
			fmt.Sprint(sumCalls(f.Calls)), fmt.Sprint(sumCalls(f.Throttles))})
	}
	mt.Notes = []string{
		fmt.Sprintf("Method: %d `podsecrets driver` processes on this machine, each a node with its own CSI socket, tmpfs kubelet root, HTTP port, "+
			"node name and scratch pod cgroups, registered as kubelet registers them, all reading from one fake store (%d ms per call) through "+
			"`AWS_ENDPOINT_URL`. Each node gets %d pods of the class `%s` (10 Secrets Manager secrets) as one burst; the nodes' bursts start "+
			"evenly spread over %s. Half of each node's pods belong to one Deployment's service account (`%s`, on every node), the other half "+
			"to %d small workloads with a service account each and one pod per node. The same workload runs once per strategy, each with fresh "+
			"driver processes (no cached credentials); strategies of table 8c alone run its one-node probe only.",
			cfg.Nodes, cfg.Latency.Milliseconds(), cfg.PodsPerNode, fleetClass, cfg.Window, fleetDeploymentSA, cfg.PodsPerNode-cfg.PodsPerNode/2),
		fmt.Sprintf("Quotas: the fake store enforces AWS's default account quotas (per account and region, token buckets with a burst of one second "+
			"of rate, ThrottlingException / Throttling over them) scaled by %.3g = (%d mounts / %s) / (%d mounts / %s): the simulated fleet's average "+
			"mount rate takes the same share of every quota as the reference rollout of the quota notes (%d mounts on %d nodes in %s, 167 mounts/s). "+
			"A bucket's burst shrinks with the scale while a node's burst of pods does not, so each node's burst meets a bucket %.0f× smaller than "+
			"on a real account: harsher than reality on a node's own burst, the same on the fleet's sustained rate.",
			cfg.Scale(), cfg.Nodes*cfg.PodsPerNode, cfg.Window, refMounts, refWindow, refMounts, refNodes, refWindow, cfg.Compression()),
		fmt.Sprintf("A failed NodePublishVolume is retried as kubelet retries a volume operation: after 500 ms, doubling (capped at 2 min 2 s), "+
			"until the pod is mounted or the run's deadline (%s after the first burst) passes; a pod not mounted by then counts as not mounted. "+
			"time to mounted: from the node's burst to the pod's successful NodePublishVolume, retries included, over mounted pods only. "+
			"A mount whose store calls were throttled but succeeded within the SDK's own retries (3 attempts) is not counted as retried; its time shows it, "+
			"and the store's throttles (next table) count every throttled call.", cfg.Window+cfg.Grace),
	}
	for _, f := range r.fleetRuns() {
		if f.FirstError != "" {
			mt.Notes = append(mt.Notes, fmt.Sprintf("%s: first failed NodePublishVolume: `%s`", f.Strategy.Name, truncate(f.FirstError, 400)))
		}
	}
	tables = append(tables, mt)

	// Per API.
	at := Table{
		Title:  "8b. Fleet: store calls and throttles per API",
		Header: []string{"API", "quota (AWS default)", "quota here (scaled)"},
	}
	for _, f := range r.fleetRuns() {
		at.Header = append(at.Header, f.Strategy.Name+": calls", "throttled")
	}
	for _, o := range fleetOps {
		used := false
		for _, f := range r.fleetRuns() {
			used = used || f.Calls[o.op] > 0
		}
		if !used {
			continue
		}
		def := store.DefaultQuotas[o.quota]
		row := []string{o.name, rate(def.Rate), rate(r.fleetRuns()[0].Quotas[o.quota].Rate)}
		for _, f := range r.fleetRuns() {
			row = append(row, fmt.Sprint(f.Calls[o.op]), fmt.Sprint(f.Throttles[o.op]))
		}
		at.Rows = append(at.Rows, row)
	}
	at.Notes = []string{
		"calls include throttled calls and the SDK's retries; throttled: answered as over the quota. GetSecretValue 10,000/s, " +
			"BatchGetSecretValue 100/s, DescribeSecret 40,000/s (Secrets Manager quotas), SSM GetParameter + GetParameters + " +
			"GetParametersByPath 40/s shared, STS AssumeRoleWithWebIdentity 600/s (the STS request quota of the IAM User Guide; the least " +
			"certain of these values, see test/awsfake/store/quota.go).",
	}
	for _, f := range r.fleetRuns() {
		if other := otherOps(f.Calls); len(other) > 0 {
			at.Notes = append(at.Notes, fmt.Sprintf("%s, other calls: %s.", f.Strategy.Name, strings.Join(other, ", ")))
		}
	}
	tables = append(tables, at)

	// The one-node probe.
	pt := Table{
		Title: "8c. One node: pods of one service account mounting the same 10-secret class at once (credentials not cached, quotas off)",
		Header: []string{"strategy", "pods", "STS", "GetSecretValue", "BatchGetSecretValue", "store calls in all", "errors", "p50", "p99",
			"store wait p50", "store wait p99"},
	}
	for _, f := range r.Fleet {
		if p := f.Probe; p != nil {
			pt.Rows = append(pt.Rows, []string{f.Strategy.Name, fmt.Sprint(p.Pods), fmt.Sprint(p.Calls[opSTS]), fmt.Sprint(p.Calls[opGet]),
				fmt.Sprint(p.Calls[opBatch]), fmt.Sprint(sumCalls(p.Calls)), fmt.Sprint(p.Errors),
				ms(Percentile(p.Latency, .5)), ms(Percentile(p.Latency, .99)), ms(Percentile(p.StoreWait, .5)),
				ms(Percentile(p.StoreWait, .99))})
		}
	}
	pt.Notes = []string{fmt.Sprintf("Measured on the fleet's first node before its burst, %d ms per store call; a strategy without a fleet run "+
		"(table 8) on one driver process of its own, the fleet's gone. With sharing, the pods wait for the "+
		"first pod's STS call and reads (in flight, then reused for the share window): the node makes the store calls of one pod. Without sharing "+
		"every pod reads on its own (the credential cache still shares the STS call). With batch reads and sharing that is 1 STS call and 1 "+
		"BatchGetSecretValue (up to 20 secrets a call); the quota strategy (the default) reads the 10 secrets with 10 GetSecretValue calls "+
		"in parallel, also once each and in one round trip, because %d GetSecretValue calls take %s of that API's per-second quota and one "+
		"BatchGetSecretValue call %s of its own (provider/aws/strategy.go): fewer calls, more quota. store wait: per pod, how long at least one store call "+
		"(of this node: the others are idle then) was in flight during its publish, as in table 1; the rest of a pod's time is the node's own "+
		"work for the burst: tmpfs mounts and the writer processes in the pods' cgroups (--max-concurrent-writes at a time), on 2 cores shared "+
		"with the fleet's idle drivers and any other load.",
		cfg.Latency.Milliseconds(), secrets, quotaPercent(secrets, awsprovider.DefaultGetSecretValueQuota),
		quotaPercent(1, awsprovider.DefaultBatchGetSecretValueQuota))}
	tables = append(tables, pt)
	return targets, tables
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// probeCallsText is a probe's store calls, e.g. "2 store calls (1 STS + 1
// BatchGetSecretValue), store wait p50 41.0 ms".
func probeCallsText(p *ProbeResult) string {
	var parts []string
	for _, o := range []struct{ op, name string }{{opSTS, "STS"}, {opGet, "GetSecretValue"}, {opBatch, "BatchGetSecretValue"}} {
		if p.Calls[o.op] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", p.Calls[o.op], o.name))
		}
	}
	parts = append(parts, otherOps(p.Calls)...)
	t := fmt.Sprintf("%d store calls (%s)", sumCalls(p.Calls), strings.Join(parts, " + "))
	if p.Errors > 0 {
		t += fmt.Sprintf(", %d errors", p.Errors)
	}
	return t + ", store wait p50 " + ms(Percentile(p.StoreWait, .5))
}

// readsOnce reports whether a probe read each of its secrets once (and
// credentials once): one GetSecretValue per secret, or one batch.
func readsOnce(p *ProbeResult, secrets int) bool {
	if p == nil || p.Errors > 0 || p.Calls[opSTS] > 1 || len(otherOps(p.Calls)) > 0 {
		return false
	}
	return p.Calls[opBatch] == 0 && p.Calls[opGet] <= secrets || p.Calls[opGet] == 0 && p.Calls[opBatch] <= (secrets+19)/20
}

// probeVerdict is the verdict of "≤ 2 store calls" for the default (quota)
// strategy's probe p and the batch strategy's with sharing, b (nil if not
// measured).
func probeVerdict(p, b *ProbeResult, secrets int) string {
	if p.Errors == 0 && sumCalls(p.Calls) <= 2 {
		return met(true)
	}
	batchMet := b != nil && b.Errors == 0 && sumCalls(b.Calls) <= 2
	quotaOnce := readsOnce(p, secrets) && p.Calls[opBatch] == 0
	switch {
	case batchMet && quotaOnce:
		return fmt.Sprintf("met in reads; calls by design: met with `--aws-read-strategy=batch` (%d calls); with the default quota strategy each "+
			"secret is read once (one read of each object, one round trip) in %d GetSecretValue calls, because %d GetSecretValue calls use %s "+
			"of that API's per-second quota while one BatchGetSecretValue call uses %s of its own (see provider/aws/strategy.go)",
			sumCalls(b.Calls), p.Calls[opGet], p.Calls[opGet], quotaPercent(p.Calls[opGet], awsprovider.DefaultGetSecretValueQuota),
			quotaPercent(1, awsprovider.DefaultBatchGetSecretValueQuota))
	case batchMet:
		return met(false) + fmt.Sprintf(" with the default quota strategy (%d store calls); met with `--aws-read-strategy=batch` (%d calls)",
			sumCalls(p.Calls), sumCalls(b.Calls))
	case quotaOnce && b == nil:
		return met(false) + " as worded: the quota strategy reads each secret once, with a GetSecretValue call each, shared by all the pods (2 would need a batch read)"
	case quotaOnce:
		return met(false) + fmt.Sprintf(": `--aws-read-strategy=batch` made %d calls; the default quota strategy reads each secret once, with a GetSecretValue call each",
			sumCalls(b.Calls))
	}
	return met(false)
}

// quotaPercent is what n calls take of a per-second quota, in percent.
func quotaPercent(n int, quota float64) string {
	return fmt.Sprintf("%.2g %%", 100*float64(n)/quota)
}

func throttleVerdict(before, after int, r *FleetRun) string {
	ok := after == 0 && r.Retried == 0 && r.Failed == 0
	if ok && before == 0 {
		return met(true) + ", but today's strategy was not throttled either: the quotas did not bind"
	}
	return met(ok)
}
