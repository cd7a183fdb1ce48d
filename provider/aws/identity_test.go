package aws

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/podsecrets/podsecrets/provider"
	"github.com/podsecrets/podsecrets/test/awsfake/store"
	"github.com/podsecrets/podsecrets/test/fakeclock"
)

func TestCredCacheSingleflight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCredCache(time.Now, time.Minute)
		key := credKey{namespace: "app", serviceAccount: "web", role: roleWeb, region: east}
		release := make(chan struct{})
		var fetches atomic.Int32
		fetch := func(ctx context.Context) (aws.Credentials, error) {
			fetches.Add(1)
			<-release
			// Not cacheable (no expiry): only sharing the call explains a
			// single fetch.
			return aws.Credentials{AccessKeyID: "AKID"}, nil
		}
		var wg sync.WaitGroup
		got := make([]aws.Credentials, 5)
		for i := range got {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cr, _, err := c.get(context.Background(), key, fetch)
				if err != nil {
					t.Error(err)
				}
				got[i] = cr
			}()
		}
		synctest.Wait() // every caller is blocked: one in fetch, the rest waiting for it
		if n := fetches.Load(); n != 1 {
			t.Fatalf("%d fetches in flight, want 1", n)
		}
		close(release)
		wg.Wait()
		for i, cr := range got {
			if cr.AccessKeyID != "AKID" {
				t.Errorf("caller %d got %+v", i, cr)
			}
		}
		// Not cached (cannot expire): the next get fetches again.
		if _, cached, _ := c.get(context.Background(), key, fetch); cached || fetches.Load() != 2 {
			t.Errorf("uncacheable credentials were cached")
		}
	})
}

func TestCredCacheCallerCancelDoesNotAbortSharedFetch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCredCache(time.Now, time.Minute)
		key := credKey{namespace: "app", serviceAccount: "web", role: roleWeb, region: east}
		release := make(chan struct{})
		fetch := func(ctx context.Context) (aws.Credentials, error) {
			select {
			case <-release:
			case <-ctx.Done():
				return aws.Credentials{}, ctx.Err()
			}
			return aws.Credentials{AccessKeyID: "AKID", CanExpire: true, Expires: time.Now().Add(time.Hour)}, nil
		}
		leaderCtx, cancelLeader := context.WithCancel(context.Background())
		leaderErr := make(chan error, 1)
		go func() {
			_, _, err := c.get(leaderCtx, key, fetch)
			leaderErr <- err
		}()
		followerErr := make(chan error, 1)
		var follower aws.Credentials
		synctest.Wait()
		go func() {
			var err error
			follower, _, err = c.get(context.Background(), key, fetch)
			followerErr <- err
		}()
		synctest.Wait()
		cancelLeader()
		if err := <-leaderErr; !errors.Is(err, context.Canceled) || !errors.Is(err, provider.ErrUnavailable) {
			t.Errorf("canceled leader got %v", err)
		}
		close(release)
		if err := <-followerErr; err != nil || follower.AccessKeyID != "AKID" {
			t.Errorf("follower got %+v, %v", follower, err)
		}
		if _, cached, err := c.get(context.Background(), key, fetch); !cached || err != nil {
			t.Errorf("credentials were not cached (%v)", err)
		}
	})
}

func TestCredCacheExpiry(t *testing.T) {
	clock := fakeclock.New(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	c := newCredCache(clock.Now, time.Minute)
	n := 0
	fetch := func(context.Context) (aws.Credentials, error) {
		n++
		return aws.Credentials{AccessKeyID: "AKID", CanExpire: true, Expires: clock.Now().Add(time.Hour)}, nil
	}
	failing := func(context.Context) (aws.Credentials, error) { n++; return aws.Credentials{}, errors.New("boom") }
	key := credKey{namespace: "app", serviceAccount: "web", role: roleWeb, region: east}
	other := key
	other.serviceAccount = "worker"

	steps := []struct {
		name    string
		advance time.Duration
		key     credKey
		fetch   func(context.Context) (aws.Credentials, error)
		fetches int
		cached  bool
		err     bool
	}{
		{name: "first", key: key, fetch: fetch, fetches: 1},
		{name: "cached", key: key, fetch: fetch, fetches: 1, cached: true},
		{name: "other service account", key: other, fetch: fetch, fetches: 2},
		{name: "54 minutes later", advance: 54 * time.Minute, key: key, fetch: fetch, fetches: 2, cached: true},
		{name: "within 5 minutes of expiry", advance: time.Minute + time.Second, key: key, fetch: fetch, fetches: 3},
		{name: "refreshed", key: key, fetch: fetch, fetches: 3, cached: true},
		{name: "errors are not cached", key: credKey{region: "x"}, fetch: failing, fetches: 4, err: true},
		{name: "retried", key: credKey{region: "x"}, fetch: failing, fetches: 5, err: true},
	}
	for _, s := range steps {
		clock.Advance(s.advance)
		_, cached, err := c.get(context.Background(), s.key, s.fetch)
		if n != s.fetches || cached != s.cached || (err != nil) != s.err {
			t.Fatalf("%s: fetches %d cached %v err %v; want %d %v err=%v", s.name, n, cached, err, s.fetches, s.cached, s.err)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	// "other" is within 5 minutes of expiry: pruned when "key" was refreshed.
	if _, ok := c.entries[key]; !ok || len(c.entries) != 1 || len(c.inflight) != 0 {
		t.Errorf("cache holds %v and %d calls in flight, want only %v", c.entries, len(c.inflight), key)
	}
}

func TestValidRoleARN(t *testing.T) {
	for arn, want := range map[string]bool{
		"arn:aws:iam::111122223333:role/app":                         true,
		"arn:aws:iam::111122223333:role/path/to/app":                 true,
		"arn:aws:iam::111122223333:role/" + strings.Repeat("a", 512): true,
		"arn:aws:iam::111122223333:role/" + strings.Repeat("a", 513): false,
		"arn:aws:iam::111122223333:role/":                            false,
		"arn:aws:iam::1111:role/app":                                 false,
		"arn:aws:iam::111122223333:user/app":                         false,
		"arn:aws:iam::111122223333:role/a b":                         false,
	} {
		if got := validRoleARN(arn); got != want {
			t.Errorf("validRoleARN(%.60q) = %t, want %t", arn, got, want)
		}
	}
}

func TestCredentialCache(t *testing.T) {
	e := newEnv(t)
	e.secret(east, "db", "v")
	e.secret(west, "db", "v")
	params := map[string]string{"objects": sm("db")}

	e.mustFetch(params)
	e.wantCalls(map[string]int{opSTS: 1, opGetSecret: 1})

	e.mustFetch(params) // cached
	e.wantCalls(map[string]int{opSTS: 1, opGetSecret: 2})

	// Another pod of the same ServiceAccount shares the credentials.
	if _, err := e.p.Fetch(context.Background(), e.podRequest(testNS, "web-1", testSA, params)); err != nil {
		t.Fatal(err)
	}
	e.wantCalls(map[string]int{opSTS: 1, opGetSecret: 3})

	// Another ServiceAccount, even with the same role, gets its own.
	e.st.AddRole(store.Role{ARN: roleWeb, Subjects: []string{"system:serviceaccount:app:*"}, Allow: []string{"*"}})
	e.sas.set(testNS, "worker", map[string]string{RoleARNAnnotation: roleWeb})
	if _, err := e.p.Fetch(context.Background(), e.podRequest(testNS, "worker-0", "worker", params)); err != nil {
		t.Fatal(err)
	}
	e.wantCalls(map[string]int{opSTS: 2, opGetSecret: 4})

	// Another region gets its own.
	e.mustFetch(map[string]string{"region": west, "objects": sm("db")})
	e.wantCalls(map[string]int{opSTS: 3, opGetSecret: 5})

	// Credentials last an hour: refreshed 5 minutes before they expire.
	e.clock.Advance(54 * time.Minute)
	e.mustFetch(params)
	e.wantCalls(map[string]int{opSTS: 3, opGetSecret: 6})
	e.clock.Advance(2 * time.Minute)
	e.mustFetch(params)
	e.wantCalls(map[string]int{opSTS: 4, opGetSecret: 7})
	e.mustFetch(params)
	e.wantCalls(map[string]int{opSTS: 4, opGetSecret: 8})

	// A changed role annotation is a new key, once the role read last is
	// older than roleTTL.
	e.st.AddRole(store.Role{ARN: roleOther, Subjects: []string{"system:serviceaccount:app:web"}, Allow: []string{"*"}})
	e.sas.set(testNS, testSA, map[string]string{RoleARNAnnotation: roleOther})
	e.mustFetch(params)
	e.wantCalls(map[string]int{opSTS: 4, opGetSecret: 9})
	e.clock.Advance(roleTTL)
	e.mustFetch(params)
	e.wantCalls(map[string]int{opSTS: 5, opGetSecret: 10})
}

// TestRoleReadOncePerTTL: the pods of a service account read its role
// annotation once per roleTTL, not once per fetch.
func TestRoleReadOncePerTTL(t *testing.T) {
	e := newEnv(t)
	e.secret(east, "db", "v")
	params := map[string]string{"objects": sm("db")}
	for i := range 5 {
		if _, err := e.p.Fetch(context.Background(), e.podRequest(testNS, fmt.Sprintf("web-%d", i), testSA, params)); err != nil {
			t.Fatal(err)
		}
	}
	if n := e.sas.reads(); n != 1 {
		t.Fatalf("5 fetches read the service account %d times, want 1", n)
	}
	e.clock.Advance(roleTTL)
	e.mustFetch(params)
	if n := e.sas.reads(); n != 2 {
		t.Fatalf("after roleTTL: %d reads, want 2", n)
	}
}

func TestCredentialCacheFailuresAreNotCached(t *testing.T) {
	e := newEnv(t)
	e.secret(east, "db", "v")
	e.sas.set(testNS, testSA, map[string]string{RoleARNAnnotation: roleOther}) // role not in the store
	if _, err := e.fetch(map[string]string{"objects": sm("db")}); !errors.Is(err, provider.ErrPermissionDenied) {
		t.Fatalf("Fetch = %v, want ErrPermissionDenied", err)
	}
	e.st.AddRole(store.Role{ARN: roleOther, Subjects: []string{"system:serviceaccount:app:web"}, Allow: []string{"*"}})
	e.mustFetch(map[string]string{"objects": sm("db")})
	e.wantCalls(map[string]int{opSTS: 2, opGetSecret: 1})
}

func TestConcurrentFetchesShareOneSTSCall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGate(opSTS)
		e := newMemEnv(t, g.wrap)
		objs, want := e.secrets(1)
		var reqs []*provider.Request
		for i := range 10 {
			reqs = append(reqs, e.podRequest(testNS, fmt.Sprintf("web-%d", i), testSA, map[string]string{"objects": objs}))
		}
		done := make(chan struct{})
		var resps []*provider.Response
		var errs []error
		go func() {
			defer close(done)
			resps, errs = e.fetchAll(reqs...)
		}()
		synctest.Wait() // every Fetch is blocked: one at STS, the rest waiting for its credentials
		if n := g.held(); n != 1 {
			t.Errorf("%d STS calls in flight, want 1", n)
		}
		close(g.open)
		<-done
		for i := range resps {
			if errs[i] != nil {
				t.Fatalf("Fetch %d: %v", i, errs[i])
			}
			checkFiles(t, resps[i], want)
		}
		e.wantCalls(map[string]int{opSTS: 1, opGetSecret: 10})
	})
}

func TestSessionName(t *testing.T) {
	tests := map[string]struct{ ns, pod, want string }{
		"plain":       {"app", "web-0", "podsecrets-app-web-0"},
		"long":        {strings.Repeat("n", 40), strings.Repeat("p", 40), ("podsecrets-" + strings.Repeat("n", 40) + "-" + strings.Repeat("p", 40))[:64]},
		"odd symbols": {"a", "b:c/d e", "podsecrets-a-b-c-d-e"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := sessionName(tc.ns, tc.pod)
			if got != tc.want || len(got) > 64 || sessionNameRE.MatchString(got) {
				t.Errorf("sessionName(%q, %q) = %q, want %q", tc.ns, tc.pod, got, tc.want)
			}
		})
	}
}
