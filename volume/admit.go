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
	learned map[string]int64 // class → bytes of its last volume
}

func newAdmission(budget, tmpfsSize int64) *admission {
	if budget <= 0 {
		return nil
	}
	return &admission{budget: budget, most: tmpfsSize, sem: semaphore.NewWeighted(budget), learned: map[string]int64{}}
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
	a.mu.Lock()
	size, ok := a.learned[class]
	a.mu.Unlock()
	if !ok {
		size = a.most
	}
	w := min(a.budget, max(minTransit, transitFactor*size))
	if err := a.sem.Acquire(ctx, w); err != nil {
		return nil, err
	}
	return func(files []mount.File) {
		a.sem.Release(w)
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
