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
	}
	for _, only := range []bool{false, true} {
		rep := buildReport(&Results{Started: time.Now(), Finished: time.Now(), FleetOnly: only, Fleet: runs})
		md := rep.Markdown()
		for _, want := range []string{
			"8. Fleet: 5 driver processes × 40 pods", "8b. Fleet: store calls and throttles per API", "8c. One node",
			"| BatchGetSecretValue | 100/s | 15/s | 500 | 300 | 0 | 0 |",
			"new: 0 store throttles, 0 of 200 mounts retried, 0 failed; before: 300 throttles, 50 retried, 2 failed | met |",
			"11 store calls (1 STS + 10 GetSecretValue + 0 BatchGetSecretValue)",
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
	}
	// Without a fleet, no fleet tables.
	if md := buildReport(&Results{Started: time.Now(), Finished: time.Now()}).Markdown(); strings.Contains(md, "Fleet") {
		t.Error("fleet tables without a fleet run")
	}
}
