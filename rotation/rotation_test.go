package rotation

import (
	"fmt"
	"testing"
	"time"

	"github.com/podsecrets/podsecrets/provider"
)

func TestRecordRoundTrip(t *testing.T) {
	r := Record{Class: "app/db", Generation: 3, Refresh: "x", PollInterval: 90 * time.Second,
		Objects: []provider.ObjectVersion{{ID: "arn:a", Version: "v1", Path: "db", Source: "s"}}}
	got, err := Decode(r.Encode())
	if err != nil || fmt.Sprint(got) != fmt.Sprint(r) {
		t.Fatalf("Decode(Encode(r)) = %+v, %v; want %+v", got, err, r)
	}
	for _, bad := range []string{`{`, `{"pollInterval":"soon"}`, `{"pollInterval":"-1s"}`, `[]`} {
		if _, err := Decode([]byte(bad)); err == nil {
			t.Errorf("Decode(%s) = nil error", bad)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(Record{Class: "a/b", PollInterval: time.Minute, Objects: []provider.ObjectVersion{{ID: "i", Version: "v"}}}.Encode())
	f.Add([]byte(`{"pollInterval":"1h"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := Decode(b)
		if err != nil {
			return
		}
		// What decodes encodes to something that decodes the same.
		again, err := Decode(r.Encode())
		if err != nil || fmt.Sprint(again) != fmt.Sprint(r) {
			t.Fatalf("round trip of %q: %+v, %v; want %+v", b, again, err, r)
		}
	})
}

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func TestDue(t *testing.T) {
	rec := Record{Class: "app/db", Generation: 1, Refresh: "a", PollInterval: time.Minute}
	c := &clock{t: time.Unix(1e9, 0)}
	tr := &Tracker{Now: c.now}
	load := func() (Record, bool, error) { return rec, true, nil }
	sig := Signal{Known: true, Generation: 1, Refresh: "a"}
	due := func(s Signal) (bool, string) {
		t.Helper()
		_, d, why, err := tr.Due("t", s, load)
		if err != nil {
			t.Fatal(err)
		}
		return d, why
	}
	if d, why := due(sig); !d || why != WhyRestarted {
		t.Fatalf("first sight = %v %q, want a check after a restart", d, why)
	}
	tr.Checked("t", rec)
	c.t = c.t.Add(59 * time.Second)
	if d, _ := due(sig); d {
		t.Fatal("due inside the interval")
	}
	if d, why := due(Signal{Known: true, Generation: 1, Refresh: "b"}); !d || why != WhyRefresh {
		t.Fatalf("new refresh value = %v %q", d, why)
	}
	if d, why := due(Signal{Known: true, Generation: 2, Refresh: "a"}); !d || why != WhyClassChanged {
		t.Fatalf("new generation = %v %q", d, why)
	}
	c.t = c.t.Add(time.Second)
	if d, why := due(Signal{}); !d || why != WhyInterval {
		t.Fatalf("after the interval = %v %q", d, why)
	}

	// Failures back off, doubling up to the cap, whatever the interval.
	var waits []time.Duration
	for range 7 {
		waits = append(waits, tr.Failed("t"))
	}
	if fmt.Sprint(waits) != "[10s 20s 40s 1m20s 2m40s 5m0s 5m0s]" {
		t.Fatalf("backoff %v", waits)
	}
	c.t = c.t.Add(4 * time.Minute)
	if d, _ := due(Signal{}); d {
		t.Fatal("due inside the backoff")
	}
	c.t = c.t.Add(time.Minute)
	if d, _ := due(Signal{}); !d {
		t.Fatal("not due after the backoff")
	}
	tr.Checked("t", rec)
	c.t = c.t.Add(59 * time.Second)
	if d, _ := due(Signal{}); d {
		t.Fatal("a success did not end the backoff's count (or the interval restarted wrong)")
	}
}

func TestDueWithoutRotation(t *testing.T) {
	tr := &Tracker{}
	noRec := func() (Record, bool, error) { return Record{}, false, nil }
	if _, d, _, _ := tr.Due("old", Signal{Known: true, Generation: 9}, noRec); d {
		t.Fatal("a volume without a record is due")
	}
	still := func() (Record, bool, error) { return Record{Class: "a/b", Generation: 1}, true, nil }
	if _, d, _, _ := tr.Due("still", Signal{Known: true, Generation: 1, Refresh: "new"}, still); d {
		t.Fatal("a volume of a class without rotation is due on refresh")
	}
	if _, d, why, _ := tr.Due("still", Signal{Known: true, Generation: 2}, still); !d || why != WhyClassChanged {
		t.Fatal("a class change does not bring a check of a volume without rotation")
	}
	if tr.Interval(5*time.Second) != DefaultFloor || tr.Interval(0) != 0 || (&Tracker{Floor: time.Second}).Interval(5*time.Second) != 5*time.Second {
		t.Fatal("Interval does not apply the floor")
	}
}

func TestChanges(t *testing.T) {
	old := []provider.ObjectVersion{{ID: "cur", Version: "1", Path: "current"}, {ID: "prev", Version: "0", Path: "previous"}, {ID: "gone", Version: "7", Path: "g"}}
	new := []provider.ObjectVersion{{ID: "cur", Version: "2", Path: "current"}, {ID: "prev", Version: "0", Path: "previous"}, {ID: "added", Version: "1", Path: "a"}}
	if got := fmt.Sprint(Changes(old, new)); got != "[cur@1→2 added@→1 gone@7→]" {
		t.Fatalf("Changes = %s", got)
	}
	if Changes(old, old) != nil {
		t.Fatal("no change listed changes")
	}
	// A plugin's versions name no file: its objects are told apart by id.
	oldP := []provider.ObjectVersion{{ID: "api", Version: "a"}, {ID: "db", Version: "1"}, {ID: "gone", Version: "3"}}
	newP := []provider.ObjectVersion{{ID: "db", Version: "2"}, {ID: "api", Version: "a"}}
	if got := fmt.Sprint(Changes(oldP, newP)); got != "[db@1→2 gone@3→]" {
		t.Fatalf("Changes of a plugin's versions = %s", got)
	}
}
