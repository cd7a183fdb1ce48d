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

// paths lists the files of resp.
func paths(resp *provider.Response) []string {
	var out []string
	for _, f := range resp.Files {
		out = append(out, f.Path)
	}
	return out
}

// wantSkipped checks that resp has exactly one OptionalObjectSkipped
// warning per object of loc ("objects[1] (objectName \"x\")"), each naming
// the class and holding the parts, and no value.
func wantSkipped(t *testing.T, resp *provider.Response, values []string, loc ...string) {
	t.Helper()
	var got []string
	for _, w := range resp.Warnings {
		if w.Reason != ReasonOptionalObjectSkipped {
			t.Errorf("warning %q: reason %s, want %s", w.Message, w.Reason, ReasonOptionalObjectSkipped)
		}
		if !strings.HasPrefix(w.Message, "SecretProviderClass app/test-class: ") {
			t.Errorf("warning %q does not name the class", w.Message)
		}
		for _, v := range values {
			if strings.Contains(w.Message, v) {
				t.Errorf("warning %q holds the value %q", w.Message, v)
			}
		}
		got = append(got, w.Message)
	}
	if len(got) != len(loc) {
		t.Fatalf("warnings %q, want one for each of %q", got, loc)
	}
	for i, l := range loc {
		if !strings.Contains(got[i], l) {
			t.Errorf("warning %q, want it to name %s", got[i], l)
		}
	}
}

// TestOptionalMissingIsSkipped: an optional object the store does not
// have is left out with its jmesPath files and a warning, whichever API
// reads it; the rest of the volume mounts.
func TestOptionalMissingIsSkipped(t *testing.T) {
	batch := func(o *Options) { o.ReadStrategy = ReadBatch }
	const opt = "optional: true"
	tests := map[string]struct {
		opts    []func(*Options)
		objects string
		files   []string
		skipped []string // substrings naming each skipped object, in order
		calls   map[string]int
	}{
		"GetSecretValue": {
			objects: sm("db") + sm("absent", opt, "jmesPath: [{path: a, objectAlias: absent-a}]"),
			files:   []string{"db"},
			skipped: []string{`objects[1] (objectName "absent")`, `files "absent", "absent-a"`, "ResourceNotFoundException"},
			calls:   map[string]int{opGetSecret: 2, opSTS: 1},
		},
		"BatchGetSecretValue": {
			opts:    []func(*Options){batch},
			objects: sm("absent", opt) + sm("db") + sm("also-absent", opt),
			files:   []string{"db"},
			skipped: []string{`objects[0] (objectName "absent")`, `objects[2] (objectName "also-absent")`},
			calls:   map[string]int{opBatch: 1, opSTS: 1},
		},
		"a label the secret does not have": {
			objects: sm("db") + sm("db", "objectVersionLabel: AWSPREVIOUS", "objectAlias: db-previous", opt),
			files:   []string{"db"},
			skipped: []string{`objects[1] (objectName "db")`, `file "db-previous"`},
			calls:   map[string]int{opGetSecret: 2, opSTS: 1},
		},
		"GetParameters": {
			objects: ssmObj("/app/url", "objectAlias: url") + ssmObj("/app/absent", opt, "objectAlias: absent") + ssmObj("/app/url", "objectVersion: 7", "objectAlias: url-7", opt),
			files:   []string{"url"},
			skipped: []string{`objects[1] (objectName "/app/absent")`, `objects[2] (objectName "/app/url")`},
			calls:   map[string]int{opGetParams: 1, opSTS: 1},
		},
		"a lone parameter": {
			objects: sm("db") + ssmObj("/app/absent", opt),
			files:   []string{"db"},
			skipped: []string{`objects[1] (objectName "/app/absent")`, "InvalidParameters"},
			calls:   map[string]int{opGetSecret: 1, opGetParams: 1, opSTS: 1},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, tc.opts...)
			e.secret(east, "db", "db-value")
			e.st.PutParameter(east, "/app/url", "url-value", "String")
			resp, err := e.fetch(map[string]string{"objects": tc.objects})
			if err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			if !slices.Equal(paths(resp), tc.files) {
				t.Errorf("files %q, want %q", paths(resp), tc.files)
			}
			if len(resp.Versions) != len(tc.files) {
				t.Errorf("versions %v: a skipped object has none", idVersions(resp.Versions))
			}
			var locs []string
			for _, s := range tc.skipped {
				if strings.HasPrefix(s, "objects[") {
					locs = append(locs, s)
				}
			}
			wantSkipped(t, resp, []string{"db-value", "url-value"}, locs...)
			all := strings.Join(func() []string {
				var m []string
				for _, w := range resp.Warnings {
					m = append(m, w.Message)
				}
				return m
			}(), "\n")
			for _, s := range tc.skipped {
				if !strings.Contains(all, s) {
					t.Errorf("warnings %q, want them to mention %s", all, s)
				}
			}
			e.wantCalls(tc.calls)
		})
	}
}

// TestOptionalOtherErrorsFail: only "not found" skips an optional object.
// A denial or throttling fails the mount as for any object, and so does a
// missing object that a required entry of the class reads too.
func TestOptionalOtherErrorsFail(t *testing.T) {
	t.Run("access denied", func(t *testing.T) {
		e := newEnv(t)
		e.st.AddRole(store.Role{ARN: roleWeb, Subjects: []string{"system:serviceaccount:app:web"}, Allow: []string{"arn:aws:secretsmanager:*:*:secret:allowed-*"}})
		e.secret(east, "allowed-1", "v")
		e.secret(east, "db", "v")
		_, err := e.fetch(map[string]string{"objects": sm("allowed-1") + sm("db", "optional: true")})
		if !errors.Is(err, provider.ErrPermissionDenied) || !strings.Contains(err.Error(), `"db" (objects[1])`) {
			t.Fatalf("Fetch = %v, want ErrPermissionDenied naming objects[1]", err)
		}
	})
	t.Run("denied, and not in the store", func(t *testing.T) {
		// AWS answers AccessDenied for a secret the role may not read,
		// whether it exists or not: an optional object needs the grant.
		e := newEnv(t)
		e.st.AddRole(store.Role{ARN: roleWeb, Subjects: []string{"system:serviceaccount:app:web"}, Allow: []string{"arn:aws:secretsmanager:*:*:secret:allowed-*"}})
		e.secret(east, "allowed-1", "v")
		if _, err := e.fetch(map[string]string{"objects": sm("allowed-1") + sm("absent", "optional: true")}); !errors.Is(err, provider.ErrPermissionDenied) {
			t.Fatalf("Fetch = %v, want ErrPermissionDenied", err)
		}
	})
	t.Run("throttled", func(t *testing.T) {
		th := newThrottle(opGetSecret, opBatch)
		e := newMemEnv(t, th.wrap)
		e.secret(east, "db", "v")
		if _, err := e.fetch(map[string]string{"objects": sm("db", "optional: true")}); !errors.Is(err, provider.ErrUnavailable) {
			t.Fatalf("Fetch = %v, want ErrUnavailable", err)
		}
	})
	t.Run("store down", func(t *testing.T) {
		e := newEnv(t)
		e.secret(east, "db", "v")
		e.st.SetFault(east, store.Fault{Rate: 1, Code: store.FaultInternal})
		if _, err := e.fetch(map[string]string{"objects": sm("db", "optional: true")}); !errors.Is(err, provider.ErrUnavailable) {
			t.Fatalf("Fetch = %v, want ErrUnavailable", err)
		}
	})
	t.Run("a required entry reads it too", func(t *testing.T) {
		e := newEnv(t)
		_, err := e.fetch(map[string]string{"objects": sm("absent", "optional: true") + sm("absent", "objectAlias: again")})
		if !errors.Is(err, provider.ErrNotFound) {
			t.Fatalf("Fetch = %v, want ErrNotFound", err)
		}
	})
	t.Run("required and missing", func(t *testing.T) {
		e := newEnv(t)
		e.secret(east, "db", "v")
		if _, err := e.fetch(map[string]string{"objects": sm("db", "optional: true") + sm("absent")}); !errors.Is(err, provider.ErrNotFound) {
			t.Fatalf("Fetch = %v, want ErrNotFound", err)
		}
	})
}

// TestOptionalSharedReadWithRequired: two classes read one missing secret
// through one shared read, either owning it; the class that makes it
// optional mounts, the one that requires it fails.
func TestOptionalSharedReadWithRequired(t *testing.T) {
	for _, optionalFirst := range []bool{true, false} {
		t.Run(fmt.Sprintf("optional owns the read: %v", optionalFirst), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				g := newGate(opGetSecret)
				e := newMemEnv(t, g.wrap, sharing(time.Minute, nil))
				opt := e.request(map[string]string{"objects": sm("absent", "optional: true")})
				req := e.podRequest(testNS, "web-1", testSA, map[string]string{"objects": sm("absent")})
				first, second := opt, req
				if !optionalFirst {
					first, second = req, opt
				}
				var optResp *provider.Response
				var optErr, reqErr error
				run := func(r *provider.Request) {
					resp, err := e.p.Fetch(context.Background(), r)
					if r == opt {
						optResp, optErr = resp, err
					} else {
						reqErr = err
					}
				}
				var wg sync.WaitGroup
				wg.Go(func() { run(first) })
				synctest.Wait() // first owns the read, at the gate
				wg.Go(func() { run(second) })
				synctest.Wait() // second waits for it
				if g.held() != 1 {
					t.Fatalf("%d reads reached the store, want one shared read", g.held())
				}
				close(g.open)
				wg.Wait()
				if optErr != nil {
					t.Fatalf("optional class: %v", optErr)
				}
				if len(optResp.Files) != 0 || len(optResp.Warnings) != 1 {
					t.Errorf("optional class: files %q, warnings %q", paths(optResp), optResp.Warnings)
				}
				if !errors.Is(reqErr, provider.ErrNotFound) {
					t.Fatalf("required class: %v, want ErrNotFound", reqErr)
				}
			})
		})
	}
}

// TestOptionalRotation: a check reads an optional object the volume does
// not hold, so one that appears later is mounted; one that disappears is
// kept at the version the volume holds, with a warning, and the other
// objects still rotate.
func TestOptionalRotation(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.ShareWindow = 0 })
	e.secret(east, "db", "db-1")
	params := map[string]string{"objects": sm("db") + sm("later", "optional: true", "jmesPath: [{path: k, objectAlias: later-k}]") + ssmObj("/app/later", "optional: true", "objectAlias: param")}
	req := e.request(params)
	first := e.mustFetch(params)
	if !slices.Equal(paths(first), []string{"db"}) {
		t.Fatalf("first mount: files %q", paths(first))
	}

	e.clock.Advance(time.Minute)
	resp, _ := e.check(req, heldFrom(first, 30*time.Second))
	if !slices.Equal(paths(resp), []string{"db"}) || len(resp.Warnings) != 2 {
		t.Fatalf("check, still missing: files %q, warnings %q", paths(resp), resp.Warnings)
	}

	e.secret(east, "later", `{"k":"later-1"}`)
	e.st.PutParameter(east, "/app/later", "param-1", "String")
	e.clock.Advance(time.Minute)
	resp, _ = e.check(req, heldFrom(resp, 30*time.Second))
	if got := fileData(resp); got["later"] != `{"k":"later-1"}` || got["later-k"] != "later-1" || got["param"] != "param-1" || len(resp.Warnings) != 0 {
		t.Fatalf("check after they appeared: files %v, warnings %q", got, resp.Warnings)
	}
}

// TestOptionalGoneIsKept: a check that finds a held optional object gone
// from the store (DescribeSecret and the read answer not found; for SSM
// the read) keeps its file at the held version and warns; a required one
// fails the check as before.
func TestOptionalGoneIsKept(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.ShareWindow = 0 })
	e.secret(east, "db", "db-1")
	goneSM := fetchKey{typ: typeSecretsManager, ref: ref{Name: "gone"}}
	goneSSM := fetchKey{typ: typeSSMParameter, ref: ref{Name: "/app/gone"}}
	params := map[string]string{"objects": sm("db") + sm("gone", "optional: true") + ssmObj("/app/gone", "optional: true", "objectAlias: param")}
	req := e.request(params)
	first := e.mustFetch(map[string]string{"objects": sm("db")})
	// The volume as a mount made while both were in the store left it.
	held := heldFrom(first, 30*time.Second)
	held.Objects = append(held.Objects,
		provider.ObjectVersion{ID: "arn:gone", Version: "v-held", Path: "gone", Source: sourceOf(goneSM, east)},
		provider.ObjectVersion{ID: "/app/gone", Version: "3", Path: "param", Source: sourceOf(goneSSM, east)})
	files := map[string]string{"gone": "gone-value", "param": "param-value"}
	read := held.ReadFile
	held.ReadFile = func(p string) ([]byte, error) {
		if v, ok := files[p]; ok {
			return []byte(v), nil
		}
		return read(p)
	}
	if _, err := e.st.PutSecretValue(east, "db", store.Value{String: "db-2"}); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Minute)
	resp, _ := e.check(req, held)
	if got := fileData(resp); fmt.Sprint(got) != fmt.Sprint(map[string]string{"db": "db-2", "gone": "gone-value", "param": "param-value"}) {
		t.Errorf("check: files %v, want db rotated and the gone objects kept", got)
	}
	if got := idVersions(resp.Versions); !slices.Contains(got, "arn:gone@v-held") || !slices.Contains(got, "/app/gone@3") {
		t.Errorf("versions %v, want the held ones of the gone objects", got)
	}
	if len(resp.Warnings) != 2 {
		t.Fatalf("warnings %q, want one per gone object", resp.Warnings)
	}
	for i, loc := range []string{`objects[1] (objectName "gone")`, `objects[2] (objectName "/app/gone")`} {
		w := resp.Warnings[i]
		if w.Reason != ReasonOptionalObjectGone || !strings.Contains(w.Message, loc) || !strings.Contains(w.Message, "keeps version") ||
			strings.Contains(w.Message, "-value") {
			t.Errorf("warning %d = %+v, want %s naming %s and its version, not its value", i, w, ReasonOptionalObjectGone, loc)
		}
	}

	required := e.request(map[string]string{"objects": sm("db") + sm("gone", "objectAlias: gone")})
	required.Held = held
	if _, err := e.p.Fetch(context.Background(), required); !errors.Is(err, provider.ErrNotFound) {
		t.Fatalf("check of a required object gone: %v, want ErrNotFound", err)
	}
}

// TestOptionalPins: a skipped object has no version to record, so a later
// pod of the revision reads it as usual; a pinned version of an optional
// object that the store purged is ErrNotFound, so that the driver mounts
// the current versions, rather than a silent skip.
func TestOptionalPins(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.ShareWindow = 0 })
	e.secret(east, "db", "db-1")
	params := map[string]string{"objects": sm("db", "optional: true") + sm("later", "optional: true")}
	first := e.mustFetch(params)
	if len(first.Versions) != 1 {
		t.Fatalf("versions %v, want db's only", idVersions(first.Versions))
	}
	e.secret(east, "later", "later-1")
	req := e.request(params)
	req.Pin = first.Versions
	resp, err := e.p.Fetch(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if got := fileData(resp); got["db"] != "db-1" || got["later"] != "later-1" {
		t.Errorf("pinned fetch: files %v", got)
	}

	purged := e.request(params)
	purged.Pin = []provider.ObjectVersion{{Path: "db", Version: "00000000-0000-0000-0000-000000000000", Source: first.Versions[0].Source}}
	if _, err := e.p.Fetch(context.Background(), purged); !errors.Is(err, provider.ErrNotFound) {
		t.Fatalf("a purged pinned version of an optional object = %v, want ErrNotFound", err)
	}
}

// TestOptionalWarningsAreBounded: a class with many missing objects
// costs a bounded number of events.
func TestOptionalWarningsAreBounded(t *testing.T) {
	e := newEnv(t)
	var objs strings.Builder
	for i := range 25 {
		objs.WriteString(sm(fmt.Sprintf("absent-%02d", i), "optional: true"))
	}
	resp := e.mustFetch(map[string]string{"objects": objs.String()})
	if len(resp.Warnings) != maxKeyWarnings+1 || !strings.Contains(resp.Warnings[maxKeyWarnings].Message, "15 more optional objects") {
		t.Fatalf("%d warnings, last %q", len(resp.Warnings), resp.Warnings[len(resp.Warnings)-1].Message)
	}
}

// TestCheckRepeatsNoClassWarnings: a class's own warnings (an unknown key)
// come with the publish; a rotation check, whose warnings the driver also
// puts on the pod, does not repeat them at every interval.
func TestCheckRepeatsNoClassWarnings(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.ShareWindow = 0 })
	e.secret(east, "db", "db-1")
	params := map[string]string{"objects": sm("db", "objectAlais: x")}
	first := e.mustFetch(params)
	if len(first.Warnings) != 1 || first.Warnings[0].Reason != "UnknownParameterKey" {
		t.Fatalf("publish warnings %q, want the unknown key", first.Warnings)
	}
	e.clock.Advance(time.Minute)
	resp, _ := e.check(e.request(params), heldFrom(first, 30*time.Second))
	if len(resp.Warnings) != 0 {
		t.Errorf("check warnings %q, want none", resp.Warnings)
	}
}
