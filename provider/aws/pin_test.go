package aws

import (
	"context"
	"errors"
	"testing"

	"github.com/podsecrets/podsecrets/provider"
	"github.com/podsecrets/podsecrets/test/awsfake/store"
)

// TestPinReadsRecordedVersions: a revision's later pods read the versions
// its first pod recorded, by ID, after the store moved on; an object whose
// read changed in the class is read as usual; a purged version is
// ErrNotFound.
func TestPinReadsRecordedVersions(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.ShareWindow = 0 })
	e.secret(east, "db", "v1")
	e.st.PutParameter(east, "/app/url", "u1", "String")
	params := map[string]string{"objects": sm("db") + ssmObj("/app/url", "objectAlias: url")}
	first := e.mustFetch(params)

	if _, err := e.st.PutSecretValue(east, "db", store.Value{String: "v2"}); err != nil {
		t.Fatal(err)
	}
	e.st.PutParameter(east, "/app/url", "u2", "String")
	req := e.request(params)
	req.Pin = first.Versions
	resp, err := e.p.Fetch(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if got := fileData(resp); got["db"] != "v1" || got["url"] != "u1" {
		t.Fatalf("pinned fetch: %v, want the recorded v1 and u1", got)
	}
	if idVersions(resp.Versions)[0] != idVersions(first.Versions)[0] {
		t.Fatalf("pinned versions %v, recorded %v", idVersions(resp.Versions), idVersions(first.Versions))
	}

	// The class now puts another secret at "db": the pin does not apply.
	e.secret(east, "other", "o1")
	moved := e.request(map[string]string{"objects": sm("other", "objectAlias: db")})
	moved.Pin = first.Versions
	if resp, err := e.p.Fetch(context.Background(), moved); err != nil || fileData(resp)["db"] != "o1" {
		t.Fatalf("a pin of another object applied: %v, %v", resp, err)
	}

	// A version the store no longer has.
	gone := e.request(params)
	gone.Pin = []provider.ObjectVersion{{Path: "db", Version: "00000000-0000-0000-0000-000000000000", Source: first.Versions[0].Source}}
	if _, err := e.p.Fetch(context.Background(), gone); !errors.Is(err, provider.ErrNotFound) {
		t.Fatalf("a purged version = %v, want ErrNotFound", err)
	}
}
