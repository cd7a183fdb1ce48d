package main

import (
	"math"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
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
