package volume

import (
	"context"
	"sync"

	"golang.org/x/sync/semaphore"

	"github.com/podsecrets/podsecrets/mount"
)

// transitFactor is how many copies of a volume's data the driver holds
// while it publishes it: the store's answers as decoded by the SDK, the
// files made of them, and the writer's payload. Measured on the real node
// with 7.5 MiB volumes (docs/benchmarks.md, table 7).
const transitFactor = 3

// minTransit is the least a publish is counted for: a small volume still
// costs buffers and goroutines.
const minTransit = 64 << 10

// maxLearned bounds the remembered class sizes: past it, the table is
// cleared and sizes are learned again, which only costs conservative
// estimates for a while.
const maxLearned = 4096

// admission bounds the memory the publishes in flight hold in the driver
// (Publish waits for it before it fetches).
// The pages of a volume are charged to its pod, but until they are written
// the values pass through the driver: 100 pods mounting 7.5 MiB each at once
// would hold 2 GiB. A publish is admitted with an estimate of what it will
// hold: the size its class had the last time (a size is only an estimate,
// never a decision about a volume's state), or the most a volume may hold
// when the class is new. Small classes then run by the hundred, large ones a
// few at a time, and none waits for more than the budget.
type admission struct {
	budget int64
	most   int64 // estimate of a class never seen: a full volume
	sem    *semaphore.Weighted

	mu      sync.Mutex
	learned map[string]int64         // class → bytes of its last volume
	probing map[string]chan struct{} // class never seen → closed when its first publish ends
}

func newAdmission(budget, tmpfsSize int64) *admission {
	if budget <= 0 {
		return nil
	}
	return &admission{budget: budget, most: tmpfsSize, sem: semaphore.NewWeighted(budget), learned: map[string]int64{}, probing: map[string]chan struct{}{}}
}

// admitTransit waits until a publish of class may hold its data, then
// returns a function the caller calls when the publish is done, with its
// files (nil if it failed before it had them). Without a budget it admits at
// once.
func (m *Manager) admitTransit(ctx context.Context, class string) (done func(files []mount.File), err error) {
	a := m.admit
	if a == nil {
		return func([]mount.File) {}, nil
	}
	// The first publish of a class never seen counts as a full volume and
	// learns the class's size; the others of the burst wait for it, then
	// count what it learned. Without the wait every pod of a burst of 100
	// would be admitted as a full volume (the estimate is taken before
	// waiting), two at a time, for the whole burst. If the first fails
	// without learning, the waiters go on as full volumes.
	a.mu.Lock()
	size, ok := a.learned[class]
	probe := false
	if !ok {
		if ch, inFlight := a.probing[class]; inFlight {
			a.mu.Unlock()
			select {
			case <-ch:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			a.mu.Lock()
			size, ok = a.learned[class]
		} else {
			probe = true
			a.probing[class] = make(chan struct{})
		}
	}
	a.mu.Unlock()
	if !ok {
		size = a.most
	}
	endProbe := func() {
		if probe {
			a.mu.Lock()
			close(a.probing[class])
			delete(a.probing, class)
			a.mu.Unlock()
		}
	}
	w := min(a.budget, max(minTransit, transitFactor*size))
	if err := a.sem.Acquire(ctx, w); err != nil {
		endProbe()
		return nil, err
	}
	return func(files []mount.File) {
		a.sem.Release(w)
		defer endProbe()
		if files == nil {
			return
		}
		var n int64
		for _, f := range files {
			n += int64(len(f.Data))
		}
		a.mu.Lock()
		if len(a.learned) >= maxLearned {
			clear(a.learned)
		}
		a.learned[class] = n
		a.mu.Unlock()
	}, nil
}
