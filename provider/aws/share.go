package aws

import (
	"sync"
	"time"
)

// Sharing store reads on a node.
//
// When a Deployment rolls out, its pods land on a node within seconds and
// mount the same class with the same service account: without sharing,
// each pod reads every secret again, and a fleet-wide rollout spends the
// account's per-second quotas (SSM: 40/s for the whole account and region)
// on identical reads. So Fetches of one identity that need the same object
// in the same region share one read: a Fetch that needs a key another Fetch
// is reading waits for that read, and a result is reused for
// Options.ShareWindow after it arrived, then dropped.
//
// The key of a shared read is the credential cache's key (namespace,
// service account, role, region) plus the fetchKey: pods of different
// service accounts never share a read, even of the same secret with the
// same role, exactly as they never share credentials. A value is only
// handed to a Fetch that holds credentials of the same key, which would
// have read the same value itself.
//
// Only successes are reused. An error goes to the Fetches already waiting
// for the read and is dropped at once, so a Fetch after a failure tries
// again (kubelet retries a failed mount after 500 ms and more).
//
// A shared read runs detached from the Fetch that started it (the context
// keeps its values but not its cancellation or deadline; each call is
// bounded by the call timeout, as always): a waiter must not fail because
// the pod that happened to start the read gave up, and re-electing a new
// reader on cancellation would cost another round trip and a retry path
// per key. The cost is that a canceled Fetch's reads run on, at most one
// call timeout per call, and their results serve the waiters and the
// window. Each waiter waits no longer than its own context.

// MaxShareWindow bounds Options.ShareWindow. The window is how stale a
// shared value may be when a Fetch gets it; it is meant to collapse a burst
// of near-simultaneous mounts, not to be a cache: rotation checks read
// changed objects through it too (check.go), and a window as long as
// kubelet's republish period (60–90 s), on which they run, would hide
// rotations from them.
const MaxShareWindow = time.Minute

// DefaultShareWindow is the --aws-share-window default: long enough to
// cover the pods of one rollout landing on a node, short enough that a
// rotated secret is seen by the next rotation check.
const DefaultShareWindow = time.Second

// read is the outcome of one store read of one key, awaited by every Fetch
// that needs it. Its fields are written once, before done is closed.
type read struct {
	done chan struct{}
	once sync.Once

	res *result
	err error
	// errFor, when set, renders the error for one Fetch from the name of
	// its object: an error about this key alone names the object's index
	// in the class of the Fetch that reports it, which differs between
	// classes that share the read.
	errFor func(what string) error

	expires time.Time // when a reused result is dropped; guarded by shareTable.mu
}

func newRead() *read { return &read{done: make(chan struct{})} }

// finish records the outcome unless one was recorded already; then, with
// mu (when not nil) held, it closes done and calls publish, so that the
// share table never shows a finished read as in flight.
func (r *read) finish(res *result, err error, errFor func(string) error, mu *sync.Mutex, publish func()) bool {
	first := false
	r.once.Do(func() {
		first = true
		if mu != nil {
			mu.Lock()
			defer mu.Unlock()
		}
		r.res, r.err, r.errFor = res, err, errFor
		close(r.done)
		if publish != nil {
			publish()
		}
	})
	return first
}

// shareKey is one store read of one identity.
type shareKey struct {
	id credKey
	k  fetchKey
}

// shareTable holds the reads in flight and the results inside their
// window. Every entry is removed when its window ends (or at once, for an
// error), so it holds at most the reads of one window: no growth.
type shareTable struct {
	window time.Duration
	// onShare, if set, is told how one Fetch's keys were split (tests).
	onShare func(owned, waited, reused int)

	mu    sync.Mutex
	reads map[shareKey]*read
}

func newShareTable(window time.Duration, onShare func(owned, waited, reused int)) *shareTable {
	return &shareTable{window: window, onShare: onShare, reads: map[shareKey]*read{}}
}

// acquire returns a read for each of keys, and the keys the caller must
// read itself (it owns their reads and must finish them). The others are
// in flight or reused. All keys are looked up under one lock, so
// concurrent Fetches of one class split the keys without races: the first
// owns them all, the others wait for all of them.
func (t *shareTable) acquire(id credKey, keys []fetchKey) (map[fetchKey]*read, []fetchKey) {
	now := time.Now()
	reads := make(map[fetchKey]*read, len(keys))
	var owned []fetchKey
	waited, reused := 0, 0
	t.mu.Lock()
	for _, k := range keys {
		sk := shareKey{id: id, k: k}
		if r, ok := t.reads[sk]; ok {
			switch {
			case r.expires.IsZero(): // in flight
				reads[k] = r
				waited++
				continue
			case now.Before(r.expires):
				reads[k] = r
				reused++
				continue
			}
			// Expired, its timer not run yet: replace it.
		}
		r := newRead()
		t.reads[sk] = r
		reads[k] = r
		owned = append(owned, k)
	}
	t.mu.Unlock()
	if t.onShare != nil {
		t.onShare(len(owned), waited, reused)
	}
	return reads, owned
}

// finish records the outcome of an owned read and publishes it: a result
// stays for the window, an error is removed at once (its waiters hold the
// read already).
func (t *shareTable) finish(id credKey, k fetchKey, r *read, res *result, err error, errFor func(string) error) bool {
	sk := shareKey{id: id, k: k}
	return r.finish(res, err, errFor, &t.mu, func() {
		if t.reads[sk] != r {
			return
		}
		if err != nil || errFor != nil {
			delete(t.reads, sk)
			return
		}
		r.expires = time.Now().Add(t.window)
		// One timer per result: a burst of n keys costs n timers for one
		// window, and nothing stays behind when mounts stop.
		time.AfterFunc(t.window, func() { t.remove(sk, r) })
	})
}

func (t *shareTable) remove(sk shareKey, r *read) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.reads[sk] == r {
		delete(t.reads, sk)
	}
}

// len returns the number of entries (tests).
func (t *shareTable) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.reads)
}
