package driver

import (
	"log/slog"
	"time"
)

// testTimeout bounds waits that only time out when the code under test is
// broken; it is a deadline, never a synchronisation sleep.
const testTimeout = 30 * time.Second

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// queued is how many callers hold or wait for key's lock.
func (k *keyedMutex) queued(key string) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	if e := k.locks[key]; e != nil {
		return e.refs
	}
	return 0
}
