// Package rotation decides when a mounted volume is checked against its
// store, and remembers what each volume holds.
//
// Kubelet republishes every mounted volume about once a minute (the CSIDriver
// sets requiresRepublish). Most republishes must cost nothing: a volume whose
// class does not rotate, or that was checked less than its poll interval ago,
// is answered from memory, with no store call and no API call. The memory is
// a Tracker entry per volume, rebuilt after a restart from the volume's
// Record, which is written beside its files in every version: a restarted
// driver knows what each volume holds without asking anybody, and checks each
// rotating volume once to learn where it stands.
package rotation

import (
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/podsecrets/podsecrets/provider"
)

// DefaultFloor is the --min-poll-interval default: a class asking for a
// shorter interval gets this one. At 30 s a Deployment's pods on a node cost
// one check per object every 30 s (checks are shared per identity), which
// the store quotas carry for thousands of nodes (DescribeSecret: 40,000/s
// per account and region).
const DefaultFloor = 30 * time.Second

// Backoff after failed checks: the first retry waits minBackoff, each
// further failure doubles it up to maxBackoff. Kubelet republishes about
// once a minute, so the first steps mostly mean "at the next republish"; the
// cap keeps a store outage from costing a call per volume and minute.
const (
	minBackoff = 10 * time.Second
	maxBackoff = 5 * time.Minute
)

// maxRecord bounds a record read back from a volume.
const maxRecord = 1 << 20

// Record is what a volume remembers of how it was made. It is written in
// every version of the volume (mount.RecordFile), so it always describes the
// files beside it. It holds no value and no token.
type Record struct {
	// Class is the SecretProviderClass, "namespace/name".
	Class string
	// Generation is the class's metadata.generation when it was read.
	Generation int64
	// Refresh is the class's refresh annotation when it was read.
	Refresh string
	// PollInterval is the class's spec.rotation.pollInterval when it was
	// read; 0: the volume never rotates.
	PollInterval time.Duration
	// Objects are the versions the files were made of.
	Objects []provider.ObjectVersion
}

// recordJSON is Record on disk; the interval as a duration string, which is
// how people write it in the class.
type recordJSON struct {
	Class        string                   `json:"class"`
	Generation   int64                    `json:"generation,omitempty"`
	Refresh      string                   `json:"refresh,omitempty"`
	PollInterval string                   `json:"pollInterval,omitempty"`
	Objects      []provider.ObjectVersion `json:"objects,omitempty"`
}

// Encode returns the record's file content.
func (r Record) Encode() []byte {
	j := recordJSON{Class: r.Class, Generation: r.Generation, Refresh: r.Refresh, Objects: r.Objects}
	if r.PollInterval > 0 {
		j.PollInterval = r.PollInterval.String()
	}
	b, err := json.Marshal(j)
	if err != nil {
		panic("rotation: encode record: " + err.Error()) // only strings and numbers
	}
	return b
}

// Decode parses a record written by Encode.
func Decode(b []byte) (Record, error) {
	if len(b) > maxRecord {
		return Record{}, fmt.Errorf("volume record: %d bytes, more than %d", len(b), maxRecord)
	}
	var j recordJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return Record{}, fmt.Errorf("volume record: not valid JSON")
	}
	r := Record{Class: j.Class, Generation: j.Generation, Refresh: j.Refresh, Objects: j.Objects}
	if j.PollInterval != "" {
		d, err := time.ParseDuration(j.PollInterval)
		if err != nil || d <= 0 {
			return Record{}, fmt.Errorf("volume record: pollInterval %q is not a positive duration", j.PollInterval)
		}
		r.PollInterval = d
	}
	return r, nil
}

// Signal is what the driver's watch of classes knows of a volume's class
// now; Known is false without a watch, or before it has listed.
type Signal struct {
	Known      bool
	Generation int64
	Refresh    string
}

// Reasons for a check, as Due returns them (log values).
const (
	WhyClassChanged = "class changed"
	WhyRefresh      = "refresh requested"
	WhyRestarted    = "first check since the driver started"
	WhyInterval     = "poll interval passed"
)

// Tracker holds the rotation state of the node's volumes, in memory.
type Tracker struct {
	// Floor raises shorter poll intervals; DefaultFloor if 0.
	Floor time.Duration
	// Now is the clock; time.Now if nil.
	Now func() time.Time

	mu   sync.Mutex
	vols map[string]*entry
}

type entry struct {
	rec       Record
	lastCheck time.Time // zero: not checked since the driver started
	failures  int
	retryAt   time.Time
}

func (t *Tracker) now() time.Time {
	if t.Now != nil {
		return t.Now()
	}
	return time.Now()
}

// Interval is the poll interval a volume of a class asking for d gets: 0
// stays 0 (no rotation), anything shorter than the floor is raised to it.
func (t *Tracker) Interval(d time.Duration) time.Duration {
	floor := t.Floor
	if floor <= 0 {
		floor = DefaultFloor
	}
	if d <= 0 {
		return 0
	}
	return max(d, floor)
}

// Published records the record of a volume just written whole: it is as
// fresh as a check.
func (t *Tracker) Published(target string, rec Record) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.entries()[target] = &entry{rec: rec, lastCheck: t.now()}
}

func (t *Tracker) entries() map[string]*entry {
	if t.vols == nil {
		t.vols = map[string]*entry{}
	}
	return t.vols
}

// Due reports whether the volume at target is to be checked now and why,
// and returns its record. The first time the tracker sees target (after a
// restart) it calls load for the volume's record; a volume without one (an
// older driver wrote it) never rotates.
func (t *Tracker) Due(target string, sig Signal, load func() (Record, bool, error)) (rec Record, due bool, why string, err error) {
	t.mu.Lock()
	e, ok := t.entries()[target]
	t.mu.Unlock()
	if !ok {
		// Loaded outside the lock: a read of the volume. Calls for one
		// target are serialised by the driver.
		r, found, err := load()
		if err != nil {
			return Record{}, false, "", err
		}
		e = &entry{}
		if found {
			e.rec = r
		}
		t.mu.Lock()
		t.entries()[target] = e
		t.mu.Unlock()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	interval := t.Interval(e.rec.PollInterval)
	switch {
	case e.rec.Class == "":
		return e.rec, false, "", nil
	case e.failures > 0 && now.Before(e.retryAt):
		return e.rec, false, "", nil
	case sig.Known && sig.Generation != e.rec.Generation:
		// The class may have gained or lost rotation, or changed its
		// objects: read it again (one API call), even for a volume that
		// does not rotate.
		return e.rec, true, WhyClassChanged, nil
	case interval == 0:
		return e.rec, false, "", nil
	case sig.Known && sig.Refresh != e.rec.Refresh:
		return e.rec, true, WhyRefresh, nil
	case e.lastCheck.IsZero():
		return e.rec, true, WhyRestarted, nil
	case now.Sub(e.lastCheck) >= interval:
		return e.rec, true, WhyInterval, nil
	}
	return e.rec, false, "", nil
}

// Checked records a check that ended well; rec is what the volume holds
// now (the new record if the check wrote a new set).
func (t *Tracker) Checked(target string, rec Record) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.entries()[target] = &entry{rec: rec, lastCheck: t.now()}
}

// Failed records a failed check and returns how long the volume waits
// before the next one.
func (t *Tracker) Failed(target string) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.entries()[target]
	if !ok {
		e = &entry{}
		t.vols[target] = e
	}
	e.failures++
	wait := minBackoff << min(e.failures-1, 10)
	wait = min(wait, maxBackoff)
	e.retryAt = t.now().Add(wait)
	return wait
}

// Known reports whether the tracker holds state for target: false for a
// volume this driver has not published or republished yet.
func (t *Tracker) Known(target string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, ok := t.vols[target]
	return ok
}

// Forget drops the state of target (its volume was unpublished).
func (t *Tracker) Forget(target string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.vols, target)
}

// Changes lists, for an event and the audit log, the objects whose version
// differs between a volume's old and new record, as "id@old→new" ("id@→new"
// for an object the volume did not hold, "id@old→" for one it no longer
// holds), in the order of the new record. Versions, never values.
func Changes(old, new []provider.ObjectVersion) []string {
	// An object is known by the file it fills; a plugin reports no file
	// names, so its objects are known by their ids.
	key := func(o provider.ObjectVersion) string {
		if o.Path != "" {
			return "path:" + o.Path
		}
		return "id:" + o.ID
	}
	held := make(map[string]provider.ObjectVersion, len(old))
	for _, o := range old {
		held[key(o)] = o
	}
	var out []string
	for _, n := range new {
		o, ok := held[key(n)]
		delete(held, key(n))
		switch {
		case !ok:
			out = append(out, n.ID+"@→"+n.Version)
		case o.ID != n.ID || o.Version != n.Version:
			if o.ID != n.ID {
				out = append(out, o.ID+"@"+o.Version+"→", n.ID+"@→"+n.Version)
				continue
			}
			out = append(out, n.ID+"@"+o.Version+"→"+n.Version)
		}
	}
	for _, o := range old {
		if _, gone := held[key(o)]; gone {
			out = append(out, o.ID+"@"+o.Version+"→")
		}
	}
	return out
}
