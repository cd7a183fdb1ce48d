package volume

import (
	"context"
	"testing"
	"testing/synctest"

	"github.com/podsecrets/podsecrets/mount"
)

// TestAdmitBoundsTransit: a class never seen counts as a full volume, so
// only as many publishes as the budget holds run at once; the first
// publish of a class learns its size, and the others of its burst wait for
// that rather than queueing as full volumes.
func TestAdmitBoundsTransit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const tmpfs = 1 << 20
		m := New(Options{TmpfsSize: tmpfs, PublishMemory: 2 * transitFactor * tmpfs})
		ctx := context.Background()
		admitted := func(class string) chan func([]mount.File) {
			ch := make(chan func([]mount.File), 1)
			go func() {
				d, err := m.admitTransit(ctx, class)
				if err != nil {
					t.Error(err)
				}
				ch <- d
			}()
			return ch
		}
		pending := func(what string, ch chan func([]mount.File)) {
			t.Helper()
			synctest.Wait()
			select {
			case <-ch:
				t.Fatalf("%s was admitted", what)
			default:
			}
		}
		probeA, err := m.admitTransit(ctx, "ns/a")
		if err != nil {
			t.Fatal(err)
		}
		// The burst of ns/a waits for its first publish, not for room.
		var burst []chan func([]mount.File)
		for range 20 {
			burst = append(burst, admitted("ns/a"))
		}
		pending("a publish of a class whose first publish is running", burst[0])
		// Another new class is a full volume too.
		probeB := <-admitted("ns/b")
		probeA([]mount.File{{Path: "a", Data: make([]byte, 1000)}})
		var dones []func([]mount.File)
		for _, ch := range burst {
			dones = append(dones, <-ch) // small now: all fit beside ns/b
		}
		// A third full volume does not fit beside ns/b and the burst.
		c := admitted("ns/c")
		pending("a full-size publish beside a full one and 20 small ones in a budget for two full ones", c)
		for _, d := range dones {
			d(nil)
		}
		dc := <-c
		probeB(nil)
		dc(nil)

		// A first publish that fails lets its waiters go on as full volumes.
		probe, _ := m.admitTransit(ctx, "ns/d")
		w1, w2, w3 := admitted("ns/d"), admitted("ns/d"), admitted("ns/d")
		pending("a waiter of a running first publish", w1)
		probe(nil)
		// Two of the three fit, whichever they are.
		synctest.Wait()
		var in []func([]mount.File)
		var waiting []chan func([]mount.File)
		for _, w := range []chan func([]mount.File){w1, w2, w3} {
			select {
			case d := <-w:
				in = append(in, d)
			default:
				waiting = append(waiting, w)
			}
		}
		if len(in) != 2 {
			t.Fatalf("%d waiters of a failed first publish admitted as full volumes in a budget for two", len(in))
		}
		in[0](nil)
		last := <-waiting[0]
		in[1](nil)
		last(nil)

		// A waiting publish gives up with its context.
		ctxC, cancel := context.WithCancel(ctx)
		a, _ := m.admitTransit(ctx, "ns/other")
		b := <-admitted("ns/other2")
		cancel()
		if _, err := m.admitTransit(ctxC, "ns/other3"); err == nil {
			t.Fatal("Admit with a canceled context and no room succeeded")
		}
		a(nil)
		b(nil)
	})
}

func TestAdmitWithoutBudget(t *testing.T) {
	m := New(Options{TmpfsSize: 1 << 20})
	for range 100 {
		if _, err := m.admitTransit(context.Background(), "ns/c"); err != nil {
			t.Fatal(err)
		}
	}
}
