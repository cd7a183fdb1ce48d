package driver

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"

	"github.com/podsecrets/podsecrets/mount"
	"github.com/podsecrets/podsecrets/provider"
)

func requireRealMounts(t *testing.T) {
	t.Helper()
	if !realMounts() {
		t.Skip("needs real tmpfs mounts, which need root; make test runs as root")
	}
}

// TestPublishCompletesIncomplete finds our tmpfs at the target, writable and
// half written, as a driver killed mid-publish leaves it: the publish must
// fetch and write the whole set in place and answer OK only once the volume
// is complete and read-only.
func TestPublishCompletesIncomplete(t *testing.T) {
	requireRealMounts(t)
	h := newHarness(t, classObject("default", "db", "fake", nil))
	h.provider.SetFiles(provider.File{Path: "a", Mode: 0o644, Data: []byte("v1")}, provider.File{Path: "b", Mode: 0o644, Data: []byte("v2")})
	target := h.target("p")
	if err := os.Mkdir(target, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := (mount.System{}).MountTmpfs(target, mount.TmpfsOptions{SizeBytes: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(target, "a"), []byte("half"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := h.publish(kubeletRequest(target, "p", "db")); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"a": "v1", "b": "v2"} {
		if got, err := os.ReadFile(filepath.Join(target, name)); err != nil || string(got) != want {
			t.Fatalf("%s = %q, %v; want %q", name, got, err, want)
		}
	}
	if err := os.WriteFile(filepath.Join(target, "x"), nil, 0o600); !errors.Is(err, unix.EROFS) {
		t.Fatalf("writing into the completed volume = %v, want EROFS", err)
	}
	if n := len(h.provider.Requests()); n != 1 {
		t.Fatalf("%d fetches, want 1", n)
	}
	logs := h.logs.String()
	if !strings.Contains(logs, `"msg":"republish: volume incomplete, completing it"`) || !strings.Contains(logs, `"msg":"volume completed"`) ||
		!strings.Contains(logs, `"level":"INFO"`) {
		t.Fatalf("the completion is not logged at info:\n%s", logs)
	}
	if !strings.Contains(h.metricsText(), `podsecrets_node_publish_total{code="OK",kind="complete",provider="fake"} 1`) {
		t.Fatal("the completion is not counted")
	}
	// And now it is complete: kept without a fetch.
	if err := h.publish(kubeletRequest(target, "p", "db")); err != nil {
		t.Fatal(err)
	}
	if n := len(h.provider.Requests()); n != 1 {
		t.Fatalf("%d fetches after a republish of a complete volume, want 1", n)
	}
}

// TestPublishIncompleteFailureCleansUp: when the class or the store fails
// while a volume is being completed, nothing answers OK and nothing stays
// mounted.
func TestPublishIncompleteFailureCleansUp(t *testing.T) {
	requireRealMounts(t)
	for name, tc := range map[string]struct {
		class string
		code  codes.Code
	}{
		"store down":    {class: "db", code: codes.Unavailable},
		"class missing": {class: "gone", code: codes.NotFound},
	} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, classObject("default", "db", "fake", nil))
			h.provider.SetError(errors.Join(provider.ErrUnavailable))
			target := h.target("p")
			if err := os.Mkdir(target, 0o750); err != nil {
				t.Fatal(err)
			}
			if err := (mount.System{}).MountTmpfs(target, mount.TmpfsOptions{SizeBytes: 1 << 20}); err != nil {
				t.Fatal(err)
			}
			wantCode(t, h.publish(kubeletRequest(target, "p", tc.class)), tc.code)
			mustNotExist(t, target)
		})
	}
}

// TestPublishRefusesForeignMount: a mount that is not our tmpfs is never
// taken for a volume, complete or not.
func TestPublishRefusesForeignMount(t *testing.T) {
	requireRealMounts(t)
	h := newHarness(t, classObject("default", "db", "fake", nil))
	h.provider.SetFiles(provider.File{Path: "a", Mode: 0o644, Data: []byte("v1")})
	target := h.target("p")
	if err := os.Mkdir(target, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("other", target, "tmpfs", 0, "size=64k"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(target, unix.MNT_DETACH) })
	wantCode(t, h.publish(kubeletRequest(target, "p", "db")), codes.FailedPrecondition, "not a podsecrets volume")
	if n := len(h.provider.Requests()); n != 0 {
		t.Fatalf("%d fetches for a foreign mount, want 0", n)
	}
}

// TestPublishWarningsBecomeEvents: a provider's warnings reach the pod as
// Warning events, and the mount proceeds.
func TestPublishWarningsBecomeEvents(t *testing.T) {
	h := newHarness(t, classObject("default", "db", "fake", nil))
	h.provider.SetFiles(provider.File{Path: "a", Mode: 0o644, Data: []byte("v1")})
	h.provider.SetWarnings(provider.Warning{Reason: "UnknownParameterKey", Message: `objects[0].objectAlais: unknown key, ignored; did you mean "objectAlias"?`})
	target := h.target("p")
	if err := h.publish(kubeletRequest(target, "p", "db")); err != nil {
		t.Fatal(err)
	}
	evs := h.events.all()
	if len(evs) != 1 || evs[0] != `Warning default/p UnknownParameterKey: objects[0].objectAlais: unknown key, ignored; did you mean "objectAlias"?` {
		t.Fatalf("events = %q", evs)
	}
}
