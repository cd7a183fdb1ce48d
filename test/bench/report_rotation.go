package main

import (
	"fmt"
	"strings"
	"time"
)

// rotationTargetRow marks the Targets rows of the rotation benchmark.
const rotationTargetRow = "9"

// kubeletMinutes is the steady-state window in minutes of kubelet time.
func (r *RotationRun) kubeletMinutes() float64 { return r.Window.Seconds() * rotScale / 60 }

// intervals is the steady-state window in poll intervals.
func (r *RotationRun) intervals() float64 { return r.Window.Seconds() / rotInterval.Seconds() }

// PerMinute is n (counted over the window) per minute of kubelet time.
func (r *RotationRun) PerMinute(n int) float64 {
	if r.Window <= 0 {
		return 0
	}
	return float64(n) / r.kubeletMinutes()
}

// PerInterval is n (counted over the window) per poll interval.
func (r *RotationRun) PerInterval(n int) float64 {
	if r.Window <= 0 {
		return 0
	}
	return float64(n) / r.intervals()
}

// StoreCalls is the run's store calls in the window.
func (r *RotationRun) StoreCalls() int { return sumCalls(r.Calls) }

// rotationRun returns the run of class key with pods pods, or nil.
func (r *Results) rotationRun(key string, pods int) *RotationRun {
	for _, run := range r.Rotation {
		if run.Class.Key == key && run.Pods == pods {
			return run
		}
	}
	return nil
}

// kubeletTime is d of the scaled run in kubelet time.
func kubeletTime(d time.Duration) time.Duration { return d * rotScale }

// rotPropTarget is the propagation target in kubelet time: pollInterval
// (30 s) + 90 s.
const rotPropTarget = rotInterval*rotScale + 90*time.Second

func f1(v float64) string { return fmt.Sprintf("%.1f", v) }

func f2(v float64) string { return fmt.Sprintf("%.2f", v) }

// rotOps are the store ops of table 9, in order.
var rotOps = []struct{ op, name string }{
	{"secretsmanager.DescribeSecret", "DescribeSecret"},
	{opGet, "GetSecretValue"},
	{opBatch, "BatchGetSecretValue"},
	{opParams, "SSM GetParameters"},
	{opSTS, "STS"},
}

// callsText lists calls by op, in rotOps order, then any other op.
func callsText(m map[string]int) string {
	var parts []string
	for _, o := range rotOps {
		if m[o.op] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", m[o.op], o.name))
		}
	}
	parts = append(parts, otherOps(m)...)
	if len(parts) == 0 {
		return "0"
	}
	return strings.Join(parts, " + ")
}

// unchangedVerdict is the verdict of "100 pods cost what 1 pod costs,
// within one call per interval": d is the difference per interval, in
// store calls, objects the class's.
func unchangedVerdict(d float64, objects int) string {
	if d <= 1 {
		return met(true)
	}
	if d/float64(objects) <= 1 {
		return met(false) + " as worded (one call per interval for the node); per object checked: within one call per interval"
	}
	return met(false)
}

// rotMaxP99 is the highest republish p99 for which the scaled run still
// makes the calls and times of the real one: a tenth of the interval.
const rotMaxP99 = rotInterval / 10

// rotStarved returns the highest republish p99 of the runs and whether it
// is past rotMaxP99: the machine was too busy for the time-scaled run
// (republishes late by a sizeable part of the interval shift checks and
// times, × rotScale in kubelet time).
func rotStarved(runs []*RotationRun) (time.Duration, bool) {
	var worst time.Duration
	for _, run := range runs {
		worst = max(worst, Percentile(run.Latency, .99))
	}
	return worst, worst > rotMaxP99
}

// rotationReport returns the rotation benchmark's Targets rows and tables.
func rotationReport(r *Results) (targets [][]string, tables []Table) {
	if len(r.Rotation) == 0 {
		return nil, nil
	}
	cfg := r.RotationConfig
	window := r.Rotation[0].Window
	worstP99, starved := rotStarved(r.Rotation)
	caveat := ""
	if starved {
		caveat = fmt.Sprintf(" (**invalid run**: republish p99 up to %s against a %s scaled interval; the machine was too busy, rerun on a quiet one)",
			ms(worstP99), rotInterval)
	}

	// Targets.
	for _, c := range rotClasses {
		one, hundred := r.rotationRun(c.Key, 1), r.rotationRun(c.Key, 100)
		if one == nil || hundred == nil {
			continue
		}
		p1, p100 := one.PerInterval(one.StoreCalls()), hundred.PerInterval(hundred.StoreCalls())
		d := p100 - p1
		targets = append(targets, []string{rotationTargetRow,
			fmt.Sprintf("unchanged %s: 100 pods of one service account on a node cost the store calls of 1 pod (within one call per 30 s interval)", c.Name),
			fmt.Sprintf("100 pods %s calls per interval (%s/min), 1 pod %s (%s/min): %+.2f per interval, %+.2f per object and interval",
				f2(p100), f1(hundred.PerMinute(hundred.StoreCalls())), f2(p1), f1(one.PerMinute(one.StoreCalls())), d, d/float64(c.Objects())),
			unchangedVerdict(d, c.Objects()) + caveat})
	}
	if mix := r.rotationRun("mix", 10); mix != nil {
		v := mix.PerMinute(mix.StoreCalls())
		limit := mix.Class.Quoted / 5
		m := fmt.Sprintf("%s store calls/min (1/%.1f of %s)", f1(v), mix.Class.Quoted/v, f1(mix.Class.Quoted))
		if sm := r.rotationRun("sm10", 10); sm != nil {
			w := sm.PerMinute(sm.StoreCalls())
			m += fmt.Sprintf("; 10 pods × 10 secrets (no target): %s/min (1/%.1f of %s)", f1(w), sm.Class.Quoted/w, f1(sm.Class.Quoted))
		}
		targets = append(targets, []string{rotationTargetRow,
			fmt.Sprintf("unchanged, 10 pods, 1 secret + 1 parameter: ≤ 1/5 of the incumbent's %s store calls/min (≤ %s)", f1(mix.Class.Quoted), f2(limit)),
			m, met(v <= limit) + caveat})
	}
	for _, c := range rotClasses {
		for _, n := range []int{10, 100} {
			run := r.rotationRun(c.Key, n)
			if run == nil {
				continue
			}
			mx := Percentile(run.Propagation, 1)
			m := fmt.Sprintf("%d of %d pods; max %s, p50 %s in kubelet time (%s, %s scaled)", len(run.Propagation), run.Pods,
				ms(kubeletTime(mx)), ms(kubeletTime(Percentile(run.Propagation, .5))), ms(mx), ms(Percentile(run.Propagation, .5)))
			targets = append(targets, []string{rotationTargetRow,
				fmt.Sprintf("a new version reaches every pod of the node within pollInterval + 90 s (%s), %d pods, %s", ms(rotPropTarget), n, c.Name),
				m, met(len(run.Propagation) == run.Pods && kubeletTime(mx) <= rotPropTarget) + caveat})
		}
	}

	// Steady state.
	st := Table{
		Title: fmt.Sprintf("9. Rotation, unchanged secrets: store calls per minute of kubelet time, pods of one service account on a node "+
			"(pollInterval 30 s, republish every 60–90 s; run time-scaled ÷%d)", rotScale),
		Header: []string{"class", "pods", "republishes/min", "rotation checks/min (failed)"},
	}
	for _, o := range rotOps {
		st.Header = append(st.Header, o.name+"/min")
	}
	st.Header = append(st.Header, "store calls/min", "store calls per 30 s interval", "incumbent (quoted, 10 pods)",
		"class GETs/min", "ServiceAccount GETs/min", "other API requests/min", "republish p50 / p99 / max (wall)")
	for _, run := range r.Rotation {
		quoted := "–"
		if run.Pods == 10 {
			quoted = fmt.Sprintf("%s (ours: 1/%.1f)", f1(run.Class.Quoted), run.Class.Quoted/run.PerMinute(run.StoreCalls()))
		}
		checks := 0
		for _, v := range run.Checks {
			checks += v
		}
		row := []string{run.Class.Name, fmt.Sprint(run.Pods), f1(run.PerMinute(run.Republishes)),
			fmt.Sprintf("%s (%d)", f1(run.PerMinute(checks)), run.Checks[checkFailedLabel])}
		for _, o := range rotOps {
			row = append(row, f1(run.PerMinute(run.Calls[o.op])))
		}
		other := sumCalls(run.API) - run.API[apiClass] - run.API[apiServiceAccount]
		row = append(row, f1(run.PerMinute(run.StoreCalls())), f2(run.PerInterval(run.StoreCalls())), quoted,
			f1(run.PerMinute(run.API[apiClass])), f1(run.PerMinute(run.API[apiServiceAccount])), f1(run.PerMinute(other)),
			fmt.Sprintf("%s / %s / %s", ms(Percentile(run.Latency, .5)), ms(Percentile(run.Latency, .99)), ms(Percentile(run.Latency, 1))))
		st.Rows = append(st.Rows, row)
	}
	var driverArgs string
	if len(r.Rotation) > 0 {
		driverArgs = strings.Join(r.Rotation[0].DriverArgs, " ")
	}
	var oneP50, maxLat time.Duration
	for _, run := range r.Rotation {
		if run.Pods == 1 {
			oneP50 = max(oneP50, Percentile(run.Latency, .5))
		}
		maxLat = max(maxLat, Percentile(run.Latency, 1))
	}
	st.Notes = []string{
		fmt.Sprintf("Method: each row is a node of its own: a `podsecrets driver` process with its own CSI socket, tmpfs kubelet root and pod cgroups, "+
			"its own fake store (%d ms per call) and its own fake Kubernetes API server, so that every counter is that row's alone; the %d rows run at once. "+
			"The class (`spec.rotation.pollInterval`) mounts its objects with the default label (AWSCURRENT); its pods, of one service account with a token each "+
			"(kubelet's tokens are bound to the pod and reused for most of their hour), are published at once, then each pod's volume is republished with the "+
			"same request, as kubelet does with requiresRepublish, each pod at its own random phase (first republish uniform in 0–90 s), then every 60–90 s (uniform).",
			rotLatency.Milliseconds(), len(r.Rotation)),
		fmt.Sprintf("Time-scaled ÷%d, so that a case takes seconds, not tens of minutes: the class asks for pollInterval %s and the driver runs with "+
			"`%s` (the floor of 1 s keeps %s as asked; the share window, 1 s by default, scaled with the rest); republishes come every %s–%s. "+
			"Rates are per minute of kubelet time, 60 s / %d = 6 s of wall time: calls counted in the window × 60 s / (%d × window). "+
			"Store round trips are not scaled: %d ms per call; a check's whole republish (class and ServiceAccount GETs, then the store calls) took "+
			"%s at p50 in the 1-pod rows (which make their store calls themselves), %.1f%% of the %s interval, and at most %s in any row (last column, wall, "+
			"with %d drivers sharing %d CPUs): small against the interval, so the scaled run makes the calls the real one would, and times of the "+
			"propagation table are off by at most that much, × %d in kubelet time. Credential lifetimes (an hour), the checks' failure backoff and "+
			"event aggregation are not scaled; none of them acts in this run.",
			rotScale, rotInterval, driverArgs, rotInterval, rotRepublishMin, rotRepublishMax, rotScale, rotScale, rotLatency.Milliseconds(),
			ms(oneP50), 100*oneP50.Seconds()/rotInterval.Seconds(), rotInterval, ms(maxLat), len(r.Rotation), r.Machine.CPUs, rotScale),
		fmt.Sprintf("The fake API server serves GETs, not list or watch, so the drivers run with `--watch-classes=false`: only the poll interval brings checks "+
			"(with the watch, a class's new generation or refresh annotation would too; the watch's own list and watch requests are not measured here). "+
			"Counted over the steady state only: after the publishes and one republish cycle (%s wall) of warm-up, a window of %d intervals (%s wall, "+
			"%s minutes of kubelet time) in which nothing changes: the fake store's per-op counters, the API server's requests by kind, and the driver's "+
			"podsecrets_rotation_checks_total. Counts are of whole checks, so a window of %d intervals is exact to about one check per object "+
			"(%.2f per interval). 1-minute load %s at the start of the rotation runs, %s at the end (%d CPUs); a republish p99 over %s "+
			"(a tenth of the interval) marks the run invalid.",
			rotRepublishMax, cfg.Intervals, ms(window), f1(window.Seconds()*rotScale/60), cfg.Intervals, 1/float64(max(cfg.Intervals, 1)),
			r.RotationLoad[0], r.RotationLoad[1], r.Machine.CPUs, ms(rotMaxP99)),
		"What to expect: every republish comes more than an interval after the volume's last check, so each one is a check, and each check GETs " +
			"the class and the pod's ServiceAccount: API requests grow with the pods. The store calls of a check (a DescribeSecret per Secrets " +
			"Manager object, a GetParameters per 10 SSM parameters; only a changed object is read) are shared per identity and object for an " +
			"interval. A lone pod is checked at its republishes only (every 60–90 s: 0.4 checks per 30 s interval on average); many pods are " +
			"checked at the first republish after the shared versions expire, about once per interval. So 100 pods cost more than 1 pod, " +
			"by up to one check per object and interval (1 − 0.4 = 0.6 on average), and 100 pods little more than 10.",
	}
	if starved {
		st.Alerts = append(st.Alerts, fmt.Sprintf("**This run is not valid**: republishes took up to %s at p99 (wall) against a %s interval "+
			"(at most %s is needed for the time-scaled run to stand for the real one); 1-minute load %s at the start, %s at the end, on %d CPUs. "+
			"Other processes took the CPUs: rerun on a quiet machine.", ms(worstP99), rotInterval, ms(rotMaxP99), r.RotationLoad[0], r.RotationLoad[1], r.Machine.CPUs))
	}
	for _, run := range r.Rotation {
		if run.LogWarnings > 0 {
			st.Alerts = append(st.Alerts, fmt.Sprintf("%s, %d pods: the driver logged %d warnings or errors; the first: `%s`.", run.Class.Name, run.Pods,
				run.LogWarnings, truncate(strings.Join(run.FirstWarnings, "` `"), 600)))
		}
		if run.Errors > 0 {
			st.Alerts = append(st.Alerts, fmt.Sprintf("%s, %d pods: %d republishes failed; the first: `%s`.", run.Class.Name, run.Pods, run.Errors, truncate(run.FirstError, 400)))
		}
	}
	tables = append(tables, st)

	// Propagation.
	pt := Table{
		Title: "9b. Rotation: a new version of one secret, from PutSecretValue to the new file in every pod of the node",
		Header: []string{"class", "pods", "pods with the new file", "p50 (kubelet time)", "max (kubelet time)", "p50 / max scaled (wall)",
			fmt.Sprintf("max ≤ pollInterval + 90 s (%s)", ms(rotPropTarget)), "store calls meanwhile", "rotation checks meanwhile (rotated)",
			"API requests meanwhile: class GETs, ServiceAccount GETs, event writes"},
	}
	for _, run := range r.Rotation {
		checks := 0
		for _, v := range run.PropChecks {
			checks += v
		}
		mx := Percentile(run.Propagation, 1)
		verdict := "–"
		if run.Pods >= 10 {
			verdict = met(len(run.Propagation) == run.Pods && kubeletTime(mx) <= rotPropTarget)
			if starved {
				verdict += " (invalid run, see table 9)"
			}
		}
		pt.Rows = append(pt.Rows, []string{run.Class.Name, fmt.Sprint(run.Pods), fmt.Sprintf("%d of %d", len(run.Propagation), run.Pods),
			ms(kubeletTime(Percentile(run.Propagation, .5))), ms(kubeletTime(mx)),
			fmt.Sprintf("%s / %s", ms(Percentile(run.Propagation, .5)), ms(mx)), verdict,
			callsText(run.PropCalls), fmt.Sprintf("%d (%d)", checks, run.PropChecks[checkRotatedLabel]),
			fmt.Sprintf("%d, %d, %d", run.PropAPI[apiClass], run.PropAPI[apiServiceAccount], run.PropAPI[apiEvent])})
	}
	pt.Notes = []string{
		fmt.Sprintf("After the steady state of table 9, the fake store's PutSecretValue gives sm-00 of the class a new AWSCURRENT version while the "+
			"republishes go on as before. After each republish the benchmark reads the pod's file from its tmpfs target; a pod's time runs from "+
			"PutSecretValue to the return of the first republish after which the file holds the new value (the driver changes files only inside a "+
			"NodePublishVolume, so the moment they changed lies within that call). Every pod's files are checked afterwards: the new value in sm-00, "+
			"the others unchanged. Kubelet time is the scaled time × %d (it includes round trips of a few tens of ms that are not scaled, so it is slightly "+
			"pessimistic). Store calls, checks and class GETs are counted from PutSecretValue to the last pod's new file (or the deadline, %s wall).",
			rotScale, rotPropDeadline),
		"The bound by design: a check answered from a version learned by another pod's check up to one interval earlier may still see the old version; " +
			"the pod then sees the new one at its next republish, up to 90 s later: pollInterval + 90 s at worst. After the change every pod reads the " +
			"changed secret again (GetSecretValue), shared between pods only within the share window.",
	}
	for _, run := range r.Rotation {
		if run.NotPropagated > 0 {
			pt.Alerts = append(pt.Alerts, fmt.Sprintf("%s, %d pods: %d pods did not get the new value within %s wall.", run.Class.Name, run.Pods, run.NotPropagated, rotPropDeadline))
		}
	}
	tables = append(tables, pt)
	return targets, tables
}

// Results of podsecrets_rotation_checks_total.
const (
	checkFailedLabel  = "failed"
	checkRotatedLabel = "rotated"
)

// incumbentRotationRows are the incumbent table's rows on rotation.
func incumbentRotationRows(r *Results) [][]string {
	mix, sm := r.rotationRun("mix", 10), r.rotationRun("sm10", 10)
	calls := func(run *RotationRun) string {
		if run == nil {
			return "-"
		}
		v := run.PerMinute(run.StoreCalls())
		return fmt.Sprintf("%s (table 9: %s; 1/%.1f)", f1(v), callsText(run.Calls), run.Class.Quoted/v)
	}
	check := "-"
	if mix != nil && sm != nil {
		check = "a DescribeSecret per secret, GetParameters per 10 parameters, shared by the pods of an identity for the poll interval; only changed objects are read"
	}
	return [][]string{
		{"store calls per minute, 10 pods, 1 secret + 1 parameter, unchanged, 30 s interval", "22.8", calls(mix)},
		{"store calls per minute, 10 pods × 10 secrets, unchanged, 30 s interval", "73.3", calls(sm)},
		{"rotation check", "refetches everything", check},
	}
}
