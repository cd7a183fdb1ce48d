package aws

import (
	"context"
	"fmt"
	"io/fs"
	"testing"
	"time"

	"github.com/podsecrets/podsecrets/provider"
	"github.com/podsecrets/podsecrets/test/awsfake/store"
)

const opDescribe = "secretsmanager.DescribeSecret"

// heldFrom is what a volume written from resp holds.
func heldFrom(resp *provider.Response, maxAge time.Duration) *provider.Held {
	files := map[string][]byte{}
	for _, f := range resp.Files {
		files[f.Path] = f.Data
	}
	return &provider.Held{
		Objects: resp.Versions,
		ReadFile: func(p string) ([]byte, error) {
			if b, ok := files[p]; ok {
				return b, nil
			}
			return nil, fs.ErrNotExist
		},
		MaxAge: maxAge,
	}
}

// checkCalls runs a check of req against held and returns the store calls
// it made.
func (e *env) check(req *provider.Request, held *provider.Held) (*provider.Response, map[string]int) {
	e.t.Helper()
	before := e.checkCalls()
	r := *req
	r.Held = held
	resp, err := e.p.Fetch(context.Background(), &r)
	if err != nil {
		e.t.Fatalf("check: %v", err)
	}
	after := e.checkCalls()
	for op, n := range before {
		after[op] -= n
		if after[op] == 0 {
			delete(after, op)
		}
	}
	return resp, after
}

func (e *env) checkCalls() map[string]int {
	out := e.calls()
	if n := e.st.Calls(opDescribe); n > 0 {
		out[opDescribe] = n
	}
	return out
}

func fileData(resp *provider.Response) map[string]string {
	out := map[string]string{}
	for _, f := range resp.Files {
		out[f.Path] = string(f.Data)
	}
	return out
}

// TestCheckCostsWhatChanged: a check reads nothing that did not change.
// Unchanged Secrets Manager objects cost one DescribeSecret, pinned ones
// nothing, and a changed one its read; jmesPath files come from the held
// value or the new one.
func TestCheckCostsWhatChanged(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.ShareWindow = 0 })
	e.secret(east, "db", `{"user":"u1","password":"p1"}`)
	_, v1 := e.secret(east, "pinned", "fixed")
	e.st.PutParameter(east, "/app/url", "https://a", "String")
	params := map[string]string{"objects": sm("db", "jmesPath:\n    - path: user\n      objectAlias: user\n    - path: password\n      objectAlias: password") +
		sm("pinned", "objectVersion: "+v1) + ssmObj("/app/url", "objectAlias: url")}
	req := e.request(params)
	first := e.mustFetch(params)

	// Another volume of the same identity, later than the interval: the
	// versions learned by the first read are too old to answer.
	e.clock.Advance(time.Minute)
	resp, calls := e.check(req, heldFrom(first, 30*time.Second))
	if want := map[string]int{opDescribe: 1, opGetParams: 1}; fmt.Sprint(calls) != fmt.Sprint(want) {
		t.Errorf("check of unchanged objects: calls %v, want %v", calls, want)
	}
	if fmt.Sprint(fileData(resp)) != fmt.Sprint(fileData(first)) {
		t.Errorf("unchanged check: files %v, want %v", fileData(resp), fileData(first))
	}

	if _, err := e.st.PutSecretValue(east, "db", store.Value{String: `{"user":"u2","password":"p2"}`}); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Minute)
	resp, calls = e.check(req, heldFrom(resp, 30*time.Second))
	if want := map[string]int{opDescribe: 1, opGetParams: 1, opGetSecret: 1}; fmt.Sprint(calls) != fmt.Sprint(want) {
		t.Errorf("check of a changed secret: calls %v, want %v", calls, want)
	}
	got := fileData(resp)
	if got["user"] != "u2" || got["password"] != "p2" || got["pinned"] != "fixed" || got["url"] != "https://a" {
		t.Errorf("after the change: files %v", got)
	}
	if resp.Versions[0].Version == first.Versions[0].Version {
		t.Errorf("the changed secret kept its version %s", resp.Versions[0].Version)
	}
}

// TestCheckSharedPerIdentity: within the interval a check of one identity
// answers the next volume's, so 100 pods of a Deployment cost one; another
// service account, even with the same role, checks on its own.
func TestCheckSharedPerIdentity(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.ShareWindow = 0 })
	e.secret(east, "db", "v1")
	e.st.AddRole(store.Role{ARN: roleWeb, Subjects: []string{"system:serviceaccount:app:web", "system:serviceaccount:app:other"}, Allow: []string{"*"}})
	e.sas.set(testNS, "other", map[string]string{RoleARNAnnotation: roleWeb})
	params := map[string]string{"objects": sm("db")}
	web := e.request(params)
	first := e.mustFetch(params)
	e.clock.Advance(time.Minute)

	_, calls := e.check(web, heldFrom(first, 30*time.Second))
	if calls[opDescribe] != 1 {
		t.Fatalf("first check: calls %v, want one DescribeSecret", calls)
	}
	e.clock.Advance(10 * time.Second)
	for i := range 3 {
		pod := e.podRequest(testNS, fmt.Sprintf("web-%d", i), testSA, params)
		if _, calls := e.check(pod, heldFrom(first, 30*time.Second)); len(calls) != 0 {
			t.Errorf("check of pod %d of the same identity inside the interval: calls %v, want none", i, calls)
		}
	}
	other := e.podRequest(testNS, "other-0", "other", params)
	otherFirst, err := e.p.Fetch(context.Background(), other)
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Minute)
	// web checks again (its learned version is a minute old); other must
	// not be answered by web's check.
	if _, calls := e.check(web, heldFrom(first, 30*time.Second)); calls[opDescribe] != 1 {
		t.Fatalf("web's check: calls %v", calls)
	}
	if _, calls := e.check(other, heldFrom(otherFirst, 30*time.Second)); calls[opDescribe] != 1 {
		t.Errorf("another service account's check: calls %v, want its own DescribeSecret", calls)
	}
}

// TestCheckNewObjectIsRead: an object the volume does not hold yet (the
// class gained it) is read; the rest is still reused.
func TestCheckNewObjectIsRead(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.ShareWindow = 0 })
	e.secret(east, "a", "va")
	e.secret(east, "b", "vb")
	first := e.mustFetch(map[string]string{"objects": sm("a")})
	e.clock.Advance(time.Minute)
	resp, calls := e.check(e.request(map[string]string{"objects": sm("a") + sm("b")}), heldFrom(first, 30*time.Second))
	if want := map[string]int{opDescribe: 1, opGetSecret: 1}; fmt.Sprint(calls) != fmt.Sprint(want) {
		t.Errorf("calls %v, want %v", calls, want)
	}
	if got := fileData(resp); got["a"] != "va" || got["b"] != "vb" {
		t.Errorf("files %v", got)
	}
}
