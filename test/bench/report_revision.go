package main

import (
	"fmt"
	"sort"
	"strings"
)

// revisionTargetRow marks the Targets rows of the revision benchmark.
const revisionTargetRow = "10"

// revAPIKinds are the API request kinds of table 10, in order.
var revAPIKinds = []string{apiClass, apiServiceAccount, apiPod, apiRecordGet, apiRecordCreate, apiEvent, apiNode, apiOther}

// perMountText lists m's counts per mount over n mounts, in the order of
// kinds (with names), then anything else; zeroes are left out.
func perMountText(m map[string]int, n int, kinds []string, names map[string]string) string {
	var parts []string
	seen := map[string]bool{}
	add := func(k string) {
		seen[k] = true
		if m[k] == 0 {
			return
		}
		name := k
		if names[k] != "" {
			name = names[k]
		}
		parts = append(parts, perMount(m[k], n)+" "+name)
	}
	for _, k := range kinds {
		add(k)
	}
	var rest []string
	for k := range m {
		if !seen[k] {
			rest = append(rest, k)
		}
	}
	sort.Strings(rest)
	for _, k := range rest {
		add(k)
	}
	if len(parts) == 0 {
		return "0"
	}
	return strings.Join(parts, " + ")
}

// revStoreNames names the store ops of table 10.
var revStoreNames = map[string]string{opSTS: "STS", opGet: "GetSecretValue", opBatch: "BatchGetSecretValue", opParams: "SSM GetParameters",
	"secretsmanager.DescribeSecret": "DescribeSecret"}

// extraAPIText is what c's API requests per mount are over base's, by
// kind, e.g. "+1 get pod, +1 get secretversionrecord".
func extraAPIText(c, base *RevisionCase) string {
	var parts []string
	for _, k := range revAPIKinds {
		d := float64(c.API[k])/float64(max(c.N(), 1)) - float64(base.API[k])/float64(max(base.N(), 1))
		if d > 0.005 || d < -0.005 {
			parts = append(parts, fmt.Sprintf("%+.3g %s", d, k))
		}
	}
	if len(parts) == 0 {
		return "no more API requests"
	}
	return strings.Join(parts, ", ")
}

// revisionReport returns the revision benchmark's Targets rows and table.
func revisionReport(r *Results) (targets [][]string, tables []Table) {
	rv := r.Revision
	if rv == nil || len(rv.Cases) == 0 {
		return nil, nil
	}
	base := rv.revisionCase(revPodStart)
	first, later := rv.revisionCase(revFirst), rv.revisionCase(revLater)
	if base != nil && first != nil && later != nil {
		b50 := Percentile(base.Total, .5)
		part := func(c *RevisionCase) string {
			return fmt.Sprintf("%+.1f ms p50 (%s against %s), %s; store calls %s", float64(Percentile(c.Total, .5)-b50)/1e6,
				ms(Percentile(c.Total, .5)), ms(b50), extraAPIText(c, base), perMountText(c.Calls, c.N(), nil, revStoreNames))
		}
		targets = append(targets, []string{revisionTargetRow,
			"versionPolicy Revision: a mount's extra latency and API calls against PodStart, 10 secrets (no target)",
			fmt.Sprintf("first pod of a revision: %s; later pods: %s (PodStart: %s)", part(first), part(later),
				perMountText(base.Calls, base.N(), nil, revStoreNames)), "–"})
	}

	t := Table{
		Title: fmt.Sprintf("10. versionPolicy Revision against PodStart: one pod's mount of 10 Secrets Manager secrets "+
			"(sequential publishes, a fresh pod each, credentials cached, %d ms per store call)", revLatency.Milliseconds()),
		Header: []string{"mount", "n", "total p50", "total p99", "p50 over PodStart", "store wait p50", "API wait p50", "driver CPU p50",
			"API requests per mount", "store calls per mount", "revision mounts (driver metric)"},
	}
	for _, c := range rv.Cases {
		extra := "–"
		if base != nil && c != base {
			extra = fmt.Sprintf("%+.1f ms", float64(Percentile(c.Total, .5)-Percentile(base.Total, .5))/1e6)
		}
		calls := perMountText(c.Calls, c.N(), nil, revStoreNames)
		if c.Key == revLater && c.Calls[opGet] > 0 {
			calls += " (by VersionId)"
		}
		mounts := "–"
		if len(c.Mounts) > 0 {
			mounts = perMountText(c.Mounts, 1, []string{"first", "recorded", "fallback", "none"}, nil)
		}
		t.Rows = append(t.Rows, []string{c.Name, fmt.Sprint(c.N()), ms(Percentile(c.Total, .5)), ms(Percentile(c.Total, .99)), extra,
			ms(Percentile(c.StoreWait, .5)), ms(Percentile(c.APIWait, .5)), ms(Percentile(c.CPU, .5)), perMountText(c.API, c.N(), revAPIKinds, nil), calls, mounts})
	}
	n := 0
	if later != nil {
		n = later.N()
	}
	t.Notes = []string{
		fmt.Sprintf("Method: a node of its own: a `podsecrets driver` process with `%s` (as tables 1–5, so that every mount makes its own reads; "+
			"the fake API server has no list or watch), its own fake store (%d ms per call) and its own fake Kubernetes API server, so that the counters "+
			"are this table's alone. Two classes of the same 10 Secrets Manager secrets, one with the default versionPolicy (PodStart), one with "+
			"`spec.versionPolicy: Revision`; pods of one service account whose credentials are cached, published one after the other, a fresh pod "+
			"each, unpublished after each, as in table 1: %d samples per row after %d warm-up publishes, the three rows taking turns (one pod of each, "+
			"then the next), so that a change in the machine's load touches them alike. The fake API server serves each pod of "+
			"the Revision class with an ownerReference (controller) to a ReplicaSet (apps/v1): its revision, as for a Deployment's pods. "+
			"First pods: a ReplicaSet of its own for each pod, so the driver GETs the pod, finds no SecretVersionRecord (GET, 404), reads the "+
			"current versions as a PodStart mount does and creates the record (POST, 201). Later pods: one ReplicaSet, whose first pod recorded "+
			"the versions before the samples; then sm-00 got a new AWSCURRENT version in the store (PutSecretValue), and every later pod was "+
			"checked to hold the recorded value of sm-00 (%d of %d did): later pods read the recorded versions by VersionId, not by label. "+
			"%d SecretVersionRecords at the end (one per first pod, warm-up included, and the later pods' one).",
			strings.Join(rv.DriverArgs, " "), revLatency.Milliseconds(), n, revWarmup, rv.PinHeld, n, rv.Records),
		"API wait: time during which at least one request of the publish was inside the fake API server's handler (as table 1's store wait); " +
			"driver CPU: CPU time of the driver's threads during the publish, as in table 1, the least noisy measure of the driver's extra work. " +
			"The extra latency of a Revision mount is its API requests made in sequence with the store reads: the pod and record GETs before them, " +
			"the record's create after them (first pods). The fake API server answers in-process on 127.0.0.1 well under a millisecond; on a cluster " +
			"each of these requests is a round trip to the API server, so the difference grows by that much per request. Store calls do not change: " +
			"the default quota strategy reads 10 current secrets with 10 GetSecretValue calls in parallel, and recorded versions are read with " +
			"GetSecretValue by VersionId (whatever the strategy: BatchGetSecretValue reads current versions only; see provider/aws/strategy.go), " +
			"also in parallel. revision mounts: the driver's podsecrets_revision_mounts_total by result over the samples.",
	}
	if rv.LogWarnings > 0 {
		t.Alerts = append(t.Alerts, fmt.Sprintf("The driver logged %d warnings or errors; the first: `%s`.", rv.LogWarnings,
			truncate(strings.Join(rv.FirstWarnings, "` `"), 600)))
	}
	tables = append(tables, t)
	return targets, tables
}

// revisionSummary is the step line of the revision part.
func revisionSummary(c *RevisionCase) string {
	return fmt.Sprintf("p50 %s p99 %s, API %s, store %s", ms(Percentile(c.Total, .5)), ms(Percentile(c.Total, .99)),
		perMountText(c.API, c.N(), revAPIKinds, nil), perMountText(c.Calls, c.N(), nil, revStoreNames))
}
