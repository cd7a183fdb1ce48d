package main

import (
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/podsecrets/podsecrets/test/awsfake/store"
)

func TestPercentile(t *testing.T) {
	ms := func(ns ...int) []time.Duration {
		out := make([]time.Duration, len(ns))
		for i, n := range ns {
			out[i] = time.Duration(n) * time.Millisecond
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = 100 - i // 100..1, unsorted
	}
	for _, tc := range []struct {
		name string
		in   []time.Duration
		q    float64
		want time.Duration
	}{
		{"empty", nil, .5, 0},
		{"one", ms(7), .99, 7 * time.Millisecond},
		{"median of odd", ms(3, 1, 2), .5, 2 * time.Millisecond},
		{"median of even is the lower middle", ms(4, 1, 3, 2), .5, 2 * time.Millisecond},
		{"p99 of 100", ms(hundred...), .99, 99 * time.Millisecond},
		{"p50 of 100", ms(hundred...), .5, 50 * time.Millisecond},
		{"p100", ms(5, 9, 1), 1, 9 * time.Millisecond},
		{"tiny q is the min", ms(5, 9, 1), 0.0001, 1 * time.Millisecond},
	} {
		if got := Percentile(tc.in, tc.q); got != tc.want {
			t.Errorf("%s: Percentile(%v, %v) = %v, want %v", tc.name, tc.in, tc.q, got, tc.want)
		}
	}
	in := ms(3, 1, 2)
	Percentile(in, .5)
	if in[0] != 3*time.Millisecond {
		t.Error("Percentile sorted its input in place")
	}
	fifty := append(ms(make([]int, 49)...), time.Second)
	if got := Percentile(fifty, .99); got != time.Second {
		t.Errorf("p99 of 50 samples = %v, want the slowest (1s)", got)
	}
}

func TestUnionWithin(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	iv := func(a, b int) Interval { return Interval{at(a), at(b)} }
	for _, tc := range []struct {
		name     string
		ivs      []Interval
		from, to int
		want     int // ms
	}{
		{"none", nil, 0, 100, 0},
		{"one inside", []Interval{iv(10, 30)}, 0, 100, 20},
		{"disjoint", []Interval{iv(10, 20), iv(50, 70)}, 0, 100, 30},
		{"overlapping", []Interval{iv(10, 30), iv(20, 40)}, 0, 100, 30},
		{"nested", []Interval{iv(10, 50), iv(20, 30)}, 0, 100, 40},
		{"unsorted chain", []Interval{iv(40, 60), iv(10, 20), iv(15, 45)}, 0, 100, 50},
		{"touching", []Interval{iv(10, 20), iv(20, 30)}, 0, 100, 20},
		{"clipped both ends", []Interval{iv(-50, 10), iv(90, 200)}, 0, 100, 20},
		{"entirely outside", []Interval{iv(-50, -10), iv(100, 200)}, 0, 100, 0},
		{"spanning the window", []Interval{iv(-10, 200)}, 0, 100, 100},
		{"parallel calls count once", []Interval{iv(5, 25), iv(5, 25), iv(6, 24)}, 0, 30, 20},
		{"empty interval", []Interval{iv(10, 10)}, 0, 100, 0},
	} {
		got := UnionWithin(tc.ivs, at(tc.from), at(tc.to))
		if want := time.Duration(tc.want) * time.Millisecond; got != want {
			t.Errorf("%s: UnionWithin = %v, want %v", tc.name, got, want)
		}
	}
}

func TestMedian(t *testing.T) {
	if got := Median([]float64{3, 1, 2}); got != 2 {
		t.Errorf("Median odd = %v", got)
	}
	if got := Median([]float64{4, 1, 3, 2}); got != 2.5 {
		t.Errorf("Median even = %v", got)
	}
	if got := Median(nil); !math.IsNaN(got) {
		t.Errorf("Median(nil) = %v, want NaN", got)
	}
}

func TestRecorderBusy(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	rec := NewRecorder(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(entered)
			<-release
		}
	}), func(r *http.Request) string { return r.URL.Path })
	srv := httptest.NewServer(rec)
	defer srv.Close()

	start := time.Now()
	done := make(chan struct{})
	go func() {
		defer close(done)
		resp, err := http.Get(srv.URL + "/slow")
		if err == nil {
			resp.Body.Close()
		}
	}()
	<-entered
	inside := time.Now() // the request is in flight from here...
	held := time.Now()   // ...at least until here
	close(release)
	<-done
	end := time.Now()
	if busy := rec.Busy(start, end); busy <= 0 || busy < held.Sub(inside) || busy > end.Sub(start) {
		t.Errorf("Busy = %v over a window of %v, want at least %v", busy, end.Sub(start), held.Sub(inside))
	}
	if busy := rec.Busy(end, end.Add(time.Second)); busy != 0 {
		t.Errorf("Busy after the request = %v, want 0", busy)
	}
	if c := rec.Counts(); c["/slow"] != 1 || rec.Total() != 1 {
		t.Errorf("Counts = %v, Total = %d", c, rec.Total())
	}
	rec.Reset()
	if rec.Total() != 0 || rec.Busy(start, end) != 0 {
		t.Error("Reset kept intervals or counts")
	}
}

func TestUnescapeMountinfo(t *testing.T) {
	for in, want := range map[string]string{
		`/tmp/plain`:           "/tmp/plain",
		`/tmp/with\040space`:   "/tmp/with space",
		`/tmp/tab\011x\134y`:   "/tmp/tab\tx\\y",
		`/tmp/not\09escape`:    `/tmp/not\09escape`,
		`/tmp/trailing\04`:     `/tmp/trailing\04`,
		`/tmp/newline\012here`: "/tmp/newline\nhere",
	} {
		if got := unescapeMountinfo(in); got != want {
			t.Errorf("unescapeMountinfo(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestAPIKind(t *testing.T) {
	for path, want := range map[string]string{
		"/apis/podsecrets.dev/v1/namespaces/bench/secretproviderclasses/sm-10": apiClass,
		"/api/v1/namespaces/bench/serviceaccounts/app":                         apiServiceAccount,
		"/api/v1/nodes/bench":                apiNode,
		"/api/v1/namespaces/bench/secrets/x": apiOther,
		"/apis":                              apiOther,
	} {
		r := httptest.NewRequest(http.MethodGet, path, nil)
		if got := apiKind(r); got != want {
			t.Errorf("apiKind(%s) = %q, want %q", path, got, want)
		}
	}
	for _, tc := range []struct{ method, path, want string }{
		{http.MethodPost, "/api/v1/namespaces/bench/events", apiEvent},
		{http.MethodPatch, "/api/v1/namespaces/bench/events/pod-1.abc", apiEvent},
		{http.MethodGet, "/api/v1/namespaces/bench/events", apiOther},
		{http.MethodPost, "/api/v1/namespaces/bench/events/x", apiOther},
		{http.MethodPost, "/apis/podsecrets.dev/v1/namespaces/bench/secretproviderclasses/sm-10", apiOther},
		{http.MethodGet, "/api/v1/namespaces/bench/pods/web-1", apiPod},
		{http.MethodGet, "/api/v1/namespaces/bench/pods", apiOther},
		{http.MethodGet, "/apis/podsecrets.dev/v1/namespaces/bench/secretversionrecords/web-1.rev.abc", apiRecordGet},
		{http.MethodPost, "/apis/podsecrets.dev/v1/namespaces/bench/secretversionrecords", apiRecordCreate},
		{http.MethodPost, "/apis/podsecrets.dev/v1/namespaces/bench/secretversionrecords/x", apiOther},
		{http.MethodPut, "/apis/podsecrets.dev/v1/namespaces/bench/secretversionrecords/x", apiOther},
	} {
		if got := apiKind(httptest.NewRequest(tc.method, tc.path, nil)); got != tc.want {
			t.Errorf("apiKind(%s %s) = %q, want %q", tc.method, tc.path, got, tc.want)
		}
	}
}

func TestFleetScale(t *testing.T) {
	for _, tc := range []struct {
		cfg                FleetConfig
		scale, compression float64
	}{
		// 1,000 mounts in 20 s = 50/s against the reference's 166.7/s.
		{fleetConfig(false), 0.3, 30},
		// 200 mounts in 8 s = 25/s.
		{fleetConfig(true), 0.15, 75},
		// The reference itself at 1/100 of its size takes 1/100 of the quotas.
		{FleetConfig{Nodes: 10, PodsPerNode: 100, Window: 10 * time.Minute}, 0.01, 1},
	} {
		if got := tc.cfg.Scale(); math.Abs(got-tc.scale) > 1e-9 {
			t.Errorf("%+v: Scale() = %v, want %v", tc.cfg, got, tc.scale)
		}
		if got := tc.cfg.Compression(); math.Abs(got-tc.compression) > 1e-9 {
			t.Errorf("%+v: Compression() = %v, want %v", tc.cfg, got, tc.compression)
		}
	}
	if fleetSA(0, 100) != fleetDeploymentSA || fleetSA(49, 100) != fleetDeploymentSA || fleetSA(50, 100) != "svc-000" || fleetSA(99, 100) != "svc-049" {
		t.Error("fleetSA does not split the pods half and half")
	}
	for s, want := range map[string]bool{
		"rpc error: code = Unavailable desc = ... api error ThrottlingException: Rate exceeded": true,
		"failed to get rate limit token, retry quota exceeded, 0 available, 5 requested":        true,
		"rpc error: code = NotFound desc = secret bench/sm-01":                                  false,
	} {
		if isThrottleText(s) != want {
			t.Errorf("isThrottleText(%q) = %v", s, !want)
		}
	}
}

func TestFleetReport(t *testing.T) {
	cfg := fleetConfig(true)
	lat := func(ms ...int) []time.Duration {
		var out []time.Duration
		for _, m := range ms {
			out = append(out, time.Duration(m)*time.Millisecond)
		}
		return out
	}
	runs := []*FleetRun{
		{Strategy: fleetStrategies[0], Config: cfg, Pods: 200, Mounted: 198, Retried: 50, Failed: 2, ThrottledMounts: 50, Attempts: 260, MaxAttempts: 4,
			Calls: map[string]int{opSTS: 105, opBatch: 500}, Throttles: map[string]int{opBatch: 300}, Latency: lat(100, 2000, 9000),
			Quotas: map[string]store.Quota{store.QuotaBatchGetSecretValue: {Rate: 15, Burst: 15}}, FirstError: "Unavailable: ThrottlingException: Rate exceeded",
			Probe: &ProbeResult{Pods: 100, Calls: map[string]int{opSTS: 1, opBatch: 100}, Latency: lat(500, 900), StoreWait: lat(60, 80)}},
		{Strategy: fleetStrategies[1], Config: cfg, Pods: 200, Mounted: 200, Attempts: 200, MaxAttempts: 1,
			Calls: map[string]int{opSTS: 105, opGet: 1050}, Throttles: map[string]int{}, Latency: lat(300, 600, 900),
			Probe: &ProbeResult{Pods: 100, Calls: map[string]int{opSTS: 1, opGet: 10}, Latency: lat(400, 700), StoreWait: lat(41, 45)}},
		{Strategy: fleetStrategies[2], Config: cfg,
			Probe: &ProbeResult{Pods: 100, Calls: map[string]int{opSTS: 1, opBatch: 1}, Latency: lat(390, 690), StoreWait: lat(42, 44)}},
	}
	for _, only := range []bool{false, true} {
		rep := buildReport(&Results{Started: time.Now(), Finished: time.Now(), FleetOnly: only, Fleet: runs})
		md := rep.Markdown()
		for _, want := range []string{
			"8. Fleet: 5 driver processes × 40 pods", "8b. Fleet: store calls and throttles per API", "8c. One node",
			"| BatchGetSecretValue | 100/s | 15/s | 500 | 300 | 0 | 0 |",
			"new: 0 store throttles, 0 of 200 mounts retried, 0 failed; before: 300 throttles, 50 retried, 2 failed | met |",
			"| 100 pods of one service account, one node, at once, 10 secrets: ≤ 2 store calls | batch, 1 s sharing: 2 store calls (1 STS + 1 BatchGetSecretValue), " +
				"store wait p50 42.0 ms; quota, 1 s sharing (default): 11 store calls (1 STS + 10 GetSecretValue), store wait p50 41.0 ms, each secret read once; " +
				"before (batch, no sharing): 101 | met in reads; calls by design: met with `--aws-read-strategy=batch` (2 calls); with the default quota " +
				"strategy each secret is read once (one read of each object, one round trip) in 10 GetSecretValue calls, because 10 GetSecretValue calls " +
				"use 0.1 % of that API's per-second quota while one BatchGetSecretValue call uses 1 % of its own (see provider/aws/strategy.go) |",
			"| batch, 1 s sharing | 100 | 1 | 0 | 1 | 2 | 0 | 390 ms | 690 ms | 42.0 ms | 44.0 ms |",
			"store wait p50 41.0 ms", "`--aws-read-strategy=batch --aws-share-window=0`",
		} {
			if !strings.Contains(md, want) {
				t.Errorf("fleet-only=%v: report lacks %q", only, want)
			}
		}
		hasNode := strings.Contains(md, "1–2. NodePublishVolume latency")
		if hasNode == only {
			t.Errorf("fleet-only=%v: single-node tables present = %v", only, hasNode)
		}
		if only && strings.Contains(md, "idle RSS") {
			t.Error("fleet-only report has single-node targets")
		}
		// The probe-only strategy is in table 8c only.
		if strings.Contains(md, "batch, 1 s sharing: calls") || strings.Contains(md, "`--aws-read-strategy=batch --aws-share-window=1s`") {
			t.Errorf("fleet-only=%v: the probe-only strategy is in tables 8 or 8b", only)
		}
	}
	// Verdicts when the numbers are otherwise.
	q := &ProbeResult{Calls: map[string]int{opSTS: 1, opGet: 10}}
	for _, tc := range []struct {
		p, b *ProbeResult
		want string
	}{
		{&ProbeResult{Calls: map[string]int{opSTS: 1, opBatch: 1}}, nil, "met"},
		{q, nil, "**not met** as worded: the quota strategy reads each secret once"},
		{q, &ProbeResult{Calls: map[string]int{opSTS: 1, opBatch: 3}}, "**not met**: `--aws-read-strategy=batch` made 4 calls"},
		{&ProbeResult{Calls: map[string]int{opSTS: 1, opGet: 20}}, &ProbeResult{Calls: map[string]int{opSTS: 1, opBatch: 1}},
			"**not met** with the default quota strategy (21 store calls); met with `--aws-read-strategy=batch` (2 calls)"},
		{&ProbeResult{Calls: map[string]int{opSTS: 1, opGet: 10}, Errors: 1}, nil, "**not met**"},
	} {
		if got := probeVerdict(tc.p, tc.b, 10); !strings.HasPrefix(got, tc.want) || tc.want == "**not met**" && got != tc.want {
			t.Errorf("probeVerdict(%v, %v) = %q, want %q…", tc.p.Calls, tc.b, got, tc.want)
		}
	}
	// Without a fleet, no fleet tables.
	if md := buildReport(&Results{Started: time.Now(), Finished: time.Now()}).Markdown(); strings.Contains(md, "Fleet") {
		t.Error("fleet tables without a fleet run")
	}
}

func TestRotationReport(t *testing.T) {
	window := 16 * rotInterval // 8 minutes of kubelet time
	secs := func(ss ...float64) []time.Duration {
		var out []time.Duration
		for _, s := range ss {
			out = append(out, time.Duration(s*float64(time.Second)))
		}
		return out
	}
	run := func(c rotClass, pods int, calls map[string]int, p50max []time.Duration) *RotationRun {
		// Every pod at p50 but the last, at max.
		prop := make([]time.Duration, pods)
		for i := range prop {
			prop[i] = p50max[0]
		}
		prop[pods-1] = p50max[len(p50max)-1]
		return &RotationRun{Class: c, Pods: pods, Window: window, Calls: calls,
			API:         map[string]int{apiClass: 8 * pods, apiServiceAccount: 8 * pods},
			Checks:      map[string]int{"unchanged": 8 * pods},
			Republishes: 8 * pods, Latency: secs(0.05, 0.06), Propagation: prop,
			PropCalls: map[string]int{opGet: pods}, PropAPI: map[string]int{apiClass: pods, apiEvent: pods},
			PropChecks: map[string]int{"rotated": pods}, DriverArgs: []string{"--min-poll-interval=1s"}}
	}
	mix, sm := rotClasses[0], rotClasses[1]
	const ds = "secretsmanager.DescribeSecret"
	runs := []*RotationRun{
		run(mix, 1, map[string]int{ds: 6, opParams: 6}, secs(0.8)),
		run(mix, 10, map[string]int{ds: 14, opParams: 14}, secs(5, 8.8)),
		run(mix, 100, map[string]int{ds: 16, opParams: 16}, secs(3, 10.8)),
		run(sm, 1, map[string]int{ds: 60}, secs(0.3)),
		run(sm, 10, map[string]int{ds: 160}, secs(4, 12.5)), // 125 s: over the target
		run(sm, 100, map[string]int{ds: 163}, secs(4, 11)),
	}
	r := runs[0]
	if got := r.PerMinute(12); math.Abs(got-1.5) > 1e-9 {
		t.Errorf("PerMinute(12) over 48 s wall = %v, want 1.5 (8 minutes of kubelet time)", got)
	}
	if got := r.PerInterval(12); math.Abs(got-0.75) > 1e-9 {
		t.Errorf("PerInterval(12) over 16 intervals = %v, want 0.75", got)
	}
	for _, only := range []bool{false, true} {
		md := buildReport(&Results{Started: time.Now(), Finished: time.Now(), RotationOnly: only, Rotation: runs,
			RotationConfig: RotationConfig{Intervals: 16}}).Markdown()
		for _, want := range []string{
			"9. Rotation, unchanged secrets", "9b. Rotation: a new version",
			// mix: 2.00 per interval at 100 pods, 0.75 at 1 pod.
			"100 pods 2.00 calls per interval (4.0/min), 1 pod 0.75 (1.5/min): +1.25 per interval, +0.62 per object and interval | **not met** as worded",
			// sm10: 10.19 − 3.75 = +6.44: +0.64 per object.
			"+6.44 per interval, +0.64 per object and interval | **not met** as worded",
			"| 3.5 store calls/min (1/6.5 of 22.8); 10 pods × 10 secrets (no target): 20.0/min (1/3.7 of 73.3) | met |",
			"10 of 10 pods; max 88.0 s, p50 50.0 s in kubelet time (8800 ms, 5000 ms scaled) | met |",
			"max 125.0 s, p50 40.0 s in kubelet time (12.5 s, 4000 ms scaled) | **not met** |",
			"| 1 secret + 1 SSM parameter | 10 | 10.0 | 10.0 (0) | 1.8 | 0.0 | 0.0 | 1.8 | 0.0 | 3.5 | 1.75 | 22.8 (ours: 1/6.5) | 10.0 | 10.0 | 0.0 |",
			"| store calls per minute, 10 pods, 1 secret + 1 parameter, unchanged, 30 s interval | 22.8 | 3.5 (table 9: 14 DescribeSecret + 14 SSM GetParameters; 1/6.5) |",
			"`--min-poll-interval=1s`", "--watch-classes=false",
		} {
			if !strings.Contains(md, want) {
				t.Errorf("rotation-only=%v: report lacks %q", only, want)
			}
		}
		if has := strings.Contains(md, "1–2. NodePublishVolume latency"); has == only {
			t.Errorf("rotation-only=%v: single-node tables present = %v", only, has)
		}
		if only && strings.Contains(md, "idle RSS") {
			t.Error("rotation-only report has single-node targets")
		}
	}
	if md := buildReport(&Results{Started: time.Now(), Finished: time.Now(), Rotation: runs}).Markdown(); strings.Contains(md, "invalid run") {
		t.Error("a run with republish p99 of 60 ms marked invalid")
	}
	runs[5].Latency = secs(0.05, 0.5)
	if md := buildReport(&Results{Started: time.Now(), Finished: time.Now(), Rotation: runs}).Markdown(); !strings.Contains(md, "**This run is not valid**: republishes took up to 500 ms at p99") ||
		!strings.Contains(md, "| met (**invalid run**: republish p99 up to 500 ms against a 3s scaled interval") {
		t.Error("a run with republish p99 of 500 ms not marked invalid")
	}
	if md := buildReport(&Results{Started: time.Now(), Finished: time.Now()}).Markdown(); strings.Contains(md, "9. Rotation") {
		t.Error("rotation tables without a rotation run")
	}
	if unchangedVerdict(0.9, 2) != "met" || !strings.HasPrefix(unchangedVerdict(1.5, 2), "**not met**") || unchangedVerdict(1.5, 2) == "**not met**" ||
		unchangedVerdict(2.5, 1) != "**not met**" {
		t.Error("unchangedVerdict")
	}
}

func TestRevisionReport(t *testing.T) {
	ms := func(n int, v ...int) []time.Duration {
		out := make([]time.Duration, n)
		for i := range out {
			out[i] = time.Duration(v[min(i, len(v)-1)]) * time.Millisecond
		}
		return out
	}
	const n = 30
	c := func(key string, total int, api map[string]int, calls map[string]int, mounts map[string]int) *RevisionCase {
		name := ""
		for _, rc := range revCases {
			if rc.Key == key {
				name = rc.Name
			}
		}
		return &RevisionCase{Key: key, Name: name, Total: ms(n, total), StoreWait: ms(n, 21), APIWait: ms(n, 1), CPU: ms(n, 2), Calls: calls, API: api, Mounts: mounts}
	}
	rv := &RevisionResult{DriverArgs: []string{"--aws-share-window=0", "--watch-classes=false"}, PinHeld: n, Records: 33, Cases: []*RevisionCase{
		c(revPodStart, 30, map[string]int{apiClass: n}, map[string]int{opGet: 10 * n}, nil),
		c(revFirst, 33, map[string]int{apiClass: n, apiPod: n, apiRecordGet: n, apiRecordCreate: n}, map[string]int{opGet: 10 * n}, map[string]int{"first": n}),
		c(revLater, 32, map[string]int{apiClass: n, apiPod: n, apiRecordGet: n}, map[string]int{opGet: 10 * n}, map[string]int{"recorded": n}),
	}}
	for _, only := range []bool{false, true} {
		md := buildReport(&Results{Started: time.Now(), Finished: time.Now(), RevisionOnly: only, Revision: rv}).Markdown()
		for _, want := range []string{
			"## 10. versionPolicy Revision against PodStart",
			"| PodStart (default), warm | 30 | 30.0 ms | 30.0 ms | – | 21.0 ms | 1.00 ms | 2.00 ms | 1 get secretproviderclass | 10 GetSecretValue | – |",
			"| Revision, first pod of a revision | 30 | 33.0 ms | 33.0 ms | +3.0 ms | 21.0 ms | 1.00 ms | 2.00 ms | 1 get secretproviderclass + 1 get pod + " +
				"1 get secretversionrecord + 1 create secretversionrecord | 10 GetSecretValue | 30 first |",
			"| 10 GetSecretValue (by VersionId) | 30 recorded |",
			"| 10 | versionPolicy Revision: a mount's extra latency and API calls against PodStart, 10 secrets (no target) | first pod of a revision: " +
				"+3.0 ms p50 (33.0 ms against 30.0 ms), +1 get pod, +1 get secretversionrecord, +1 create secretversionrecord; store calls 10 GetSecretValue; " +
				"later pods: +2.0 ms p50 (32.0 ms against 30.0 ms), +1 get pod, +1 get secretversionrecord; store calls 10 GetSecretValue (PodStart: 10 GetSecretValue) | – |",
			"(30 of 30 did)", "`--aws-share-window=0 --watch-classes=false`",
		} {
			if !strings.Contains(md, want) {
				t.Errorf("revision-only=%v: report lacks %q", only, want)
			}
		}
		if has := strings.Contains(md, "1–2. NodePublishVolume latency"); has == only {
			t.Errorf("revision-only=%v: single-node tables present = %v", only, has)
		}
		if only && (strings.Contains(md, "idle RSS") || strings.Contains(md, "Incumbent")) {
			t.Error("revision-only report has other parts")
		}
	}
	if md := buildReport(&Results{Started: time.Now(), Finished: time.Now()}).Markdown(); strings.Contains(md, "10. versionPolicy") {
		t.Error("revision table without a revision run")
	}
}
