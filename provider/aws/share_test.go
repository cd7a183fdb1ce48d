package aws

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/podsecrets/podsecrets/provider"
	"github.com/podsecrets/podsecrets/test/awsfake/store"
)

// splits records how each Fetch's keys were split (Options.onShare).
type splits struct {
	mu  sync.Mutex
	got []string // "owned/waited/reused"
}

func (s *splits) record(owned, waited, reused int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, fmt.Sprintf("%d/%d/%d", owned, waited, reused))
}

func (s *splits) sorted() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Sorted(slices.Values(s.got))
}

// sharing sets a share window and records the splits in sp.
func sharing(window time.Duration, sp *splits) func(*Options) {
	return func(o *Options) {
		o.ShareWindow = window
		if sp != nil {
			o.onShare = sp.record
		}
	}
}

// secrets seeds n secrets s00.. and returns the class's objects and files.
func (e *env) secrets(n int) (string, []wantFile) {
	var objs strings.Builder
	var want []wantFile
	for i := range n {
		name := fmt.Sprintf("s%02d", i)
		e.secret(east, name, "value-"+name)
		objs.WriteString(sm(name))
		want = append(want, wantFile{name, 0o644, "value-" + name})
	}
	return objs.String(), want
}

// fetchAll runs one Fetch per request concurrently and returns their
// outcomes once all have ended.
func (e *env) fetchAll(reqs ...*provider.Request) ([]*provider.Response, []error) {
	resps, errs := make([]*provider.Response, len(reqs)), make([]error, len(reqs))
	var wg sync.WaitGroup
	for i, req := range reqs {
		wg.Go(func() { resps[i], errs[i] = e.p.Fetch(context.Background(), req) })
	}
	wg.Wait()
	return resps, errs
}

func TestShareConcurrentFetchesMakeOneRead(t *testing.T) {
	for name, tc := range map[string]struct {
		strategy ReadStrategy
		held     int // calls at the gate: the one read of the class
		calls    map[string]int
	}{
		// 8 calls in flight: MaxConcurrency; the other 2 follow.
		"quota strategy": {strategy: ReadByQuota, held: 10, calls: map[string]int{opGetSecret: 10, opSTS: 1}},
		"batch strategy": {strategy: ReadBatch, held: 1, calls: map[string]int{opBatch: 1, opSTS: 1}},
	} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				g := newGate(opGetSecret, opBatch)
				var sp splits
				e := newMemEnv(t, g.wrap, sharing(time.Second, &sp), func(o *Options) { o.ReadStrategy = tc.strategy })
				objs, want := e.secrets(10)
				done := make(chan struct{})
				var resps []*provider.Response
				var errs []error
				go func() {
					defer close(done)
					var reqs []*provider.Request
					for i := range 10 {
						reqs = append(reqs, e.podRequest(testNS, fmt.Sprintf("web-%d", i), testSA, map[string]string{"objects": objs}))
					}
					resps, errs = e.fetchAll(reqs...)
				}()
				// Every Fetch is blocked: one at the gate, nine waiting
				// for its read.
				synctest.Wait()
				if g.held() != tc.held {
					t.Errorf("%d calls reached the store before it answered, want %d", g.held(), tc.held)
				}
				wantSplits := append([]string{"10/0/0"}, slices.Repeat([]string{"0/10/0"}, 9)...)
				slices.Sort(wantSplits)
				if got := sp.sorted(); !slices.Equal(got, wantSplits) {
					t.Errorf("splits (owned/waited/reused) = %v, want %v", got, wantSplits)
				}
				close(g.open)
				<-done
				for i := range resps {
					if errs[i] != nil {
						t.Fatalf("Fetch %d: %v", i, errs[i])
					}
					checkFiles(t, resps[i], want)
				}
				e.wantCalls(tc.calls)
			})
		})
	}
}

func TestShareWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var sp splits
		const window = 2 * time.Second
		e := newMemEnv(t, nil, sharing(window, &sp))
		objs, want := e.secrets(3)
		params := map[string]string{"objects": objs}
		checkFiles(t, e.mustFetch(params), want)
		e.wantCalls(map[string]int{opGetSecret: 3, opSTS: 1})

		time.Sleep(window - time.Millisecond)
		checkFiles(t, e.mustFetch(params), want) // inside the window: no call
		e.wantCalls(map[string]int{opGetSecret: 3, opSTS: 1})

		time.Sleep(time.Millisecond)
		synctest.Wait() // the window's timers have run
		if n := e.p.share.len(); n != 0 {
			t.Errorf("%d reads held after their window, want none", n)
		}
		checkFiles(t, e.mustFetch(params), want) // after it: one read again
		e.wantCalls(map[string]int{opGetSecret: 6, opSTS: 1})
		if got, want := sp.sorted(), []string{"0/0/3", "3/0/0", "3/0/0"}; !slices.Equal(got, want) {
			t.Errorf("splits = %v, want %v", got, want)
		}
	})
}

func TestShareNeverAcrossIdentities(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGate(opGetSecret)
		var sp splits
		e := newMemEnv(t, g.wrap, sharing(time.Second, &sp))
		e.secret(east, "db", "web-only")
		// web and api: the same role, different service accounts; worker:
		// a role that may not read db.
		e.st.AddRole(store.Role{ARN: roleWeb, Subjects: []string{"system:serviceaccount:app:web", "system:serviceaccount:app:api"}, Allow: []string{"*"}})
		e.st.AddRole(store.Role{ARN: roleOther, Subjects: []string{"system:serviceaccount:app:worker"}, Allow: []string{"arn:aws:secretsmanager:*:*:secret:other-*"}})
		e.sas.set(testNS, "api", map[string]string{RoleARNAnnotation: roleWeb})
		e.sas.set(testNS, "worker", map[string]string{RoleARNAnnotation: roleOther})
		params := map[string]string{"objects": sm("db")}
		done := make(chan struct{})
		var resps []*provider.Response
		var errs []error
		go func() {
			defer close(done)
			resps, errs = e.fetchAll(
				e.podRequest(testNS, "web-0", "web", params),
				e.podRequest(testNS, "api-0", "api", params),
				e.podRequest(testNS, "worker-0", "worker", params))
		}()
		synctest.Wait()
		// All three in flight at once, each with its own read.
		if g.held() != 3 {
			t.Errorf("%d reads in flight, want 3 (one per service account)", g.held())
		}
		if got, want := sp.sorted(), []string{"1/0/0", "1/0/0", "1/0/0"}; !slices.Equal(got, want) {
			t.Errorf("splits = %v, want %v", got, want)
		}
		close(g.open)
		<-done
		for i, sa := range []string{"web", "api"} {
			if errs[i] != nil {
				t.Fatalf("%s: %v", sa, errs[i])
			}
			checkFiles(t, resps[i], []wantFile{{"db", 0o644, "web-only"}})
		}
		if !errors.Is(errs[2], provider.ErrPermissionDenied) || !strings.Contains(errs[2].Error(), roleOther) || strings.Contains(errs[2].Error(), "web-only") {
			t.Errorf("worker: %v, %v; want its own AccessDenied, without the value", resps[2], errs[2])
		}
		e.wantCalls(map[string]int{opGetSecret: 3, opSTS: 3})

		// Inside the window: web and api reuse their own reads; worker is
		// still denied, with a new call.
		resps, errs = e.fetchAll(
			e.podRequest(testNS, "web-1", "web", params),
			e.podRequest(testNS, "api-1", "api", params),
			e.podRequest(testNS, "worker-1", "worker", params))
		if errs[0] != nil || errs[1] != nil || !errors.Is(errs[2], provider.ErrPermissionDenied) {
			t.Fatalf("second round: %v", errs)
		}
		e.wantCalls(map[string]int{opGetSecret: 4, opSTS: 3})
	})
}

func TestShareErrorsOnlyWithWaiters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGate(opGetSecret)
		e := newMemEnv(t, g.wrap, sharing(time.Second, nil))
		e.secret(east, "present", "v")
		first := e.request(map[string]string{"objects": sm("missing")})
		done := make(chan error)
		go func() {
			_, err := e.p.Fetch(context.Background(), first)
			done <- err
		}()
		synctest.Wait() // first owns the read of missing
		// The waiter's class has missing at another index: its error names
		// its own object.
		second := e.podRequest(testNS, "web-1", testSA, map[string]string{"objects": sm("present") + sm("missing")})
		go func() {
			_, err := e.p.Fetch(context.Background(), second)
			done <- err
		}()
		synctest.Wait()
		if g.held() != 2 { // missing (first), present (second)
			t.Errorf("%d calls, want 2", g.held())
		}
		close(g.open)
		errs := []error{<-done, <-done}
		slices.SortFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
		for i, want := range []string{`"missing" (objects[0])`, `"missing" (objects[1])`} {
			if !errors.Is(errs[i], provider.ErrNotFound) || !strings.Contains(errs[i].Error(), want) {
				t.Errorf("error %v: want NotFound naming %s", errs[i], want)
			}
		}
		e.wantCalls(map[string]int{opGetSecret: 2, opSTS: 1})

		// Right after, inside the window: the error is not reused.
		if _, err := e.fetch(map[string]string{"objects": sm("missing")}); !errors.Is(err, provider.ErrNotFound) {
			t.Fatalf("Fetch = %v, want NotFound", err)
		}
		e.wantCalls(map[string]int{opGetSecret: 3, opSTS: 1})
		if n := e.p.share.len(); n != 1 { // present, until its window ends
			t.Errorf("%d reads held, want 1", n)
		}
	})
}

func TestShareWindowZeroSharesNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGate(opGetSecret)
		var sp splits
		e := newMemEnv(t, g.wrap, sharing(0, &sp))
		if e.p.share != nil {
			t.Fatal("ShareWindow 0 made a share table")
		}
		e.secret(east, "db", "v")
		params := map[string]string{"objects": sm("db")}
		done := make(chan struct{})
		go func() {
			defer close(done)
			_, errs := e.fetchAll(e.request(params), e.request(params), e.request(params))
			for _, err := range errs {
				if err != nil {
					t.Error(err)
				}
			}
		}()
		synctest.Wait()
		if g.held() != 3 {
			t.Errorf("%d reads in flight, want 3", g.held())
		}
		close(g.open)
		<-done
		e.mustFetch(params)
		e.wantCalls(map[string]int{opGetSecret: 4, opSTS: 1})
		if len(sp.sorted()) != 0 {
			t.Errorf("splits recorded without sharing: %v", sp.sorted())
		}
	})
}

func TestShareCallsOnlyForTheKeysNotInFlight(t *testing.T) {
	for name, tc := range map[string]struct {
		strategy ReadStrategy
		calls    map[string]int
		batches  []int
	}{
		"batch strategy": {strategy: ReadBatch, calls: map[string]int{opBatch: 2, opSTS: 1}, batches: []int{7, 3}},
		"quota strategy": {strategy: ReadByQuota, calls: map[string]int{opGetSecret: 10, opSTS: 1}},
	} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				g := newGate(opBatch, opGetSecret)
				var sp splits
				e := newMemEnv(t, g.wrap, sharing(time.Second, &sp), func(o *Options) { o.ReadStrategy = tc.strategy })
				objs, want := e.secrets(10)
				seven := strings.Join(strings.SplitAfter(objs, "secretsmanager\n")[:7], "")
				errc := make(chan error, 2)
				go func() {
					_, err := e.p.Fetch(context.Background(), e.request(map[string]string{"objects": seven}))
					errc <- err
				}()
				synctest.Wait()
				var resp *provider.Response
				go func() {
					var err error
					resp, err = e.p.Fetch(context.Background(), e.podRequest(testNS, "web-1", testSA, map[string]string{"objects": objs}))
					errc <- err
				}()
				synctest.Wait()
				if got, want := sp.sorted(), []string{"3/7/0", "7/0/0"}; !slices.Equal(got, want) {
					t.Errorf("splits = %v, want %v", got, want)
				}
				close(g.open)
				for range 2 {
					if err := <-errc; err != nil {
						t.Fatal(err)
					}
				}
				checkFiles(t, resp, want)
				e.wantCalls(tc.calls)
				if got := g.batchSizes(); !slices.Equal(got, tc.batches) {
					t.Errorf("batch sizes = %v, want %v", got, tc.batches)
				}
			})
		})
	}
}

func TestShareWaiterGivesUpAlone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGate(opGetSecret)
		e := newMemEnv(t, g.wrap, sharing(time.Second, nil))
		e.secret(east, "db", "v")
		params := map[string]string{"objects": sm("db")}
		owner := make(chan error)
		go func() {
			_, err := e.p.Fetch(context.Background(), e.request(params))
			owner <- err
		}()
		synctest.Wait()
		ctx, cancel := context.WithCancel(context.Background())
		waiter := make(chan error)
		go func() {
			_, err := e.p.Fetch(ctx, e.podRequest(testNS, "web-1", testSA, params))
			waiter <- err
		}()
		synctest.Wait()
		cancel()
		if err := <-waiter; !errors.Is(err, context.Canceled) || !errors.Is(err, provider.ErrUnavailable) || !strings.Contains(err.Error(), `"db"`) {
			t.Errorf("canceled waiter: %v, want ErrUnavailable wrapping context.Canceled, naming the object", err)
		}
		close(g.open)
		if err := <-owner; err != nil {
			t.Errorf("owner failed after a waiter gave up: %v", err)
		}
		e.wantCalls(map[string]int{opGetSecret: 1, opSTS: 1})
	})
}

func TestShareOwnerCancelDoesNotFailWaiters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGate(opGetSecret)
		e := newMemEnv(t, g.wrap, sharing(time.Second, nil))
		e.secret(east, "db", "v")
		params := map[string]string{"objects": sm("db")}
		ctx, cancel := context.WithCancel(context.Background())
		owner := make(chan error)
		go func() {
			_, err := e.p.Fetch(ctx, e.request(params))
			owner <- err
		}()
		synctest.Wait()
		waiter := make(chan error)
		var resp *provider.Response
		go func() {
			var err error
			resp, err = e.p.Fetch(context.Background(), e.podRequest(testNS, "web-1", testSA, params))
			waiter <- err
		}()
		synctest.Wait()
		cancel()
		if err := <-owner; !errors.Is(err, context.Canceled) {
			t.Errorf("canceled owner: %v, want context.Canceled", err)
		}
		synctest.Wait()
		if g.held() != 1 {
			t.Fatalf("%d calls, want the owner's one, still in flight", g.held())
		}
		close(g.open)
		if err := <-waiter; err != nil {
			t.Fatalf("waiter failed with the owner's cancellation: %v", err)
		}
		checkFiles(t, resp, []wantFile{{"db", 0o644, "v"}})
		e.wantCalls(map[string]int{opGetSecret: 1, opSTS: 1})
	})
}
