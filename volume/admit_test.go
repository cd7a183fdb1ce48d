package volume

import (
	"context"
	"testing"
	"testing/synctest"

	"github.com/podsecrets/podsecrets/mount"
)

// TestAdmitBoundsTransit: a class never seen counts as a full volume, so
// only as many publishes as the budget holds run at once; once its size is
// known, small volumes of it run together.
func TestAdmitBoundsTransit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const tmpfs = 1 << 20
		m := New(Options{TmpfsSize: tmpfs, PublishMemory: 2 * transitFactor * tmpfs})
		ctx := context.Background()
		done1, err := m.admitTransit(ctx, "ns/big")
		if err != nil {
			t.Fatal(err)
		}
		done2, _ := m.admitTransit(ctx, "ns/big")
		third := make(chan func([]mount.File))
		go func() {
			d, err := m.admitTransit(ctx, "ns/big")
			if err != nil {
				t.Error(err)
			}
			third <- d
		}()
		synctest.Wait()
		select {
		case <-third:
			t.Fatal("a third full-size publish was admitted within a budget for two")
		default:
		}
		done1([]mount.File{{Path: "a", Data: make([]byte, 1000)}})
		d3 := <-third
		done2(nil)
		d3(nil)

		// The class is known now to hold 1000 bytes: many fit at once.
		var dones []func([]mount.File)
		for range 20 {
			d, err := m.admitTransit(ctx, "ns/big")
			if err != nil {
				t.Fatal(err)
			}
			dones = append(dones, d)
		}
		for _, d := range dones {
			d(nil)
		}

		// A waiting publish gives up with its context.
		c, cancel := context.WithCancel(ctx)
		a, _ := m.admitTransit(ctx, "ns/other")
		b, _ := m.admitTransit(ctx, "ns/other")
		cancel()
		if _, err := m.admitTransit(c, "ns/other"); err == nil {
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
