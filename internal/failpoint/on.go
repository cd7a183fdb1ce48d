//go:build failpoints

package failpoint

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// Enabled reports whether failpoints are compiled in.
const Enabled = true

type point struct {
	action string
	at     int // fire on this hit
	hits   int
}

var (
	mu     sync.Mutex
	points = parse(os.Getenv(Env))
)

func parse(spec string) map[string]*point {
	m := map[string]*point{}
	for _, kv := range strings.Split(spec, ",") {
		name, action, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok {
			continue
		}
		p := &point{action: action, at: 1}
		if a, n, ok := strings.Cut(action, "@"); ok {
			p.action = a
			if i, err := strconv.Atoi(n); err == nil && i > 0 {
				p.at = i
			}
		}
		m[name] = p
	}
	return m
}

// Set arms name in this process with action ("kill", "error", with an
// optional "@n") and returns a function that disarms it.
func Set(name, action string) (disarm func()) {
	mu.Lock()
	defer mu.Unlock()
	for k, v := range parse(name + "=" + action) {
		points[k] = v
	}
	return func() {
		mu.Lock()
		defer mu.Unlock()
		delete(points, name)
	}
}

// Inject is a named step. An armed "kill" point SIGKILLs the process group
// (the driver and any writer it started, as an OOM kill of the container
// would); an armed "error" point returns an error naming the point.
func Inject(name string) error {
	mu.Lock()
	p := points[name]
	fire := false
	if p != nil {
		p.hits++
		fire = p.hits == p.at
	}
	mu.Unlock()
	if !fire {
		return nil
	}
	switch p.action {
	case "kill":
		syscall.Kill(0, syscall.SIGKILL)
		select {} // the signal is on its way
	case "error":
		return fmt.Errorf("failpoint %s", name)
	}
	return nil
}
