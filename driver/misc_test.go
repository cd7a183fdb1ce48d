package driver

import "time"

// testTimeout bounds waits that only time out when the code under test is
// broken; it is a deadline, never a synchronisation sleep.
const testTimeout = 30 * time.Second
