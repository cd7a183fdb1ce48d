package driver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/podsecrets/podsecrets/provider"
)

func wantCode(t *testing.T, err error, code codes.Code, msgParts ...string) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("error = %v, want code %v", err, code)
	}
	for _, p := range msgParts {
		if !strings.Contains(status.Convert(err).Message(), p) {
			t.Fatalf("error message %q does not mention %q", status.Convert(err).Message(), p)
		}
	}
}

func mustNotExist(t *testing.T, p string) {
	t.Helper()
	if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s exists after a failed publish (lstat: %v)", p, err)
	}
}

func TestPublishWritesFiles(t *testing.T) {
	h := newHarness(t, classObject("default", "db", "fake", map[string]string{"k": "v"}))
	h.provider.SetFiles(
		provider.File{Path: "password", Mode: 0o640, Data: []byte("s3cret")},
		provider.File{Path: "tls/cert.pem", Mode: 0o644, Data: []byte("CERT")},
	)
	target := h.target("p1")
	gid := "1234"
	req := kubeletRequest(target, "p1", "db", func(r *csi.NodePublishVolumeRequest) {
		r.VolumeCapability.GetMount().VolumeMountGroup = gid
	})
	if err := h.publish(req); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]string{"password": "s3cret", "tls/cert.pem": "CERT"} {
		got, err := os.ReadFile(filepath.Join(target, p))
		if err != nil || string(got) != want {
			t.Fatalf("%s = %q, %v; want %q", p, got, err, want)
		}
	}
	info, err := os.Stat(filepath.Join(target, "password"))
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o640 {
		t.Fatalf("password mode %v, want 0640", info.Mode().Perm())
	}
	if logs := h.logs.String(); !strings.Contains(logs, `"objects":["password@1","tls/cert.pem@1"]`) || !strings.Contains(logs, `"service_account":"app"`) {
		t.Fatalf("audit record lacks who fetched which object and version:\n%s", logs)
	}
	reqs := h.provider.Requests()
	if len(reqs) != 1 {
		t.Fatalf("provider called %d times, want 1", len(reqs))
	}
	got := reqs[0]
	if got.Pod.Namespace != "default" || got.Pod.Name != "p1" || got.Pod.UID != "uid-p1" || got.Pod.ServiceAccount != "app" ||
		got.Parameters["k"] != "v" || got.Class != "default/db" || got.FSGroup == nil || *got.FSGroup != 1234 ||
		got.Pod.Tokens["sts.amazonaws.com"].Value != "tkn" {
		t.Fatalf("provider request = %+v", got)
	}
	if !realMounts() {
		return
	}
	var st unix.Statfs_t
	if err := unix.Statfs(target, &st); err != nil || st.Type != unix.TMPFS_MAGIC {
		t.Fatalf("target is not tmpfs (type %#x, %v)", st.Type, err)
	}
	if err := os.WriteFile(filepath.Join(target, "x"), nil, 0o600); !errors.Is(err, unix.EROFS) {
		t.Fatalf("writing into the volume = %v, want EROFS", err)
	}
	if g := statGID(t, filepath.Join(target, "password")); g != 1234 {
		t.Fatalf("password group %d, want the fsGroup 1234", g)
	}
}

func statGID(t *testing.T, p string) uint32 {
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Gid
}

func TestPublishFailuresLeaveNothing(t *testing.T) {
	tests := map[string]struct {
		class    string
		files    []provider.File
		fetchErr error
		code     codes.Code
		msgParts []string
	}{
		"class missing": {
			class: "nope", code: codes.NotFound, msgParts: []string{"default/nope"},
		},
		"class without provider": {
			class: "noprovider", code: codes.FailedPrecondition, msgParts: []string{"default/noprovider", "spec.provider"},
		},
		"unknown provider": {
			class: "vault", code: codes.InvalidArgument, msgParts: []string{"default/vault", `"vault"`, "fake, other"},
		},
		"provider not found": {
			class: "db", fetchErr: fmt.Errorf(`object "x": %w`, provider.ErrNotFound),
			code: codes.NotFound, msgParts: []string{"default/db", `object "x"`},
		},
		"provider denied": {
			class: "db", fetchErr: fmt.Errorf("role r: %w", provider.ErrPermissionDenied), code: codes.PermissionDenied,
		},
		"provider unavailable": {
			class: "db", fetchErr: fmt.Errorf("throttled: %w", provider.ErrUnavailable), code: codes.Unavailable,
		},
		"escaping file name": {
			class: "db", files: []provider.File{{Path: "ok", Mode: 0o644}, {Path: "../../etc/x", Mode: 0o644}},
			code: codes.InvalidArgument, msgParts: []string{"../../etc/x"},
		},
		"duplicate file name": {
			class: "db", files: []provider.File{{Path: "a", Mode: 0o644}, {Path: "a", Mode: 0o644}},
			code: codes.InvalidArgument, msgParts: []string{`"a" is used twice`},
		},
		"too big for tmpfs": {
			class: "db", files: []provider.File{{Path: "big", Mode: 0o644, Data: make([]byte, 2<<20)}, {Path: "small", Mode: 0o644, Data: []byte("1")}},
			code:     codes.ResourceExhausted,
			msgParts: []string{"default/db", "needs 2105344 bytes for 2 files", "1048576 each volume may hold", "--tmpfs-size", "tmpfsSize"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			noProvider := classObject("default", "noprovider", "", nil)
			h := newHarness(t,
				classObject("default", "db", "fake", nil),
				classObject("default", "vault", "vault", nil),
				noProvider)
			h.provider.SetFiles(tc.files...)
			h.provider.SetError(tc.fetchErr)
			target := h.target("p")
			err := h.publish(kubeletRequest(target, "p", tc.class))
			wantCode(t, err, tc.code, tc.msgParts...)
			if msg := status.Convert(err).Message(); strings.Contains(msg, h.root) {
				t.Fatalf("error %q names a node path; kubelet could not merge repeated events", msg)
			}
			mustNotExist(t, target)
			want := fmt.Sprintf(`podsecrets_node_publish_total{code="%s",kind="publish",provider=`, tc.code)
			if !strings.Contains(h.metricsText(), want) {
				t.Fatalf("metrics lack %s", want)
			}
		})
	}
}

func TestPublishValidation(t *testing.T) {
	tests := map[string]struct {
		edit     func(*csi.NodePublishVolumeRequest)
		msgParts []string
	}{
		"no volume id":  {edit: func(r *csi.NodePublishVolumeRequest) { r.VolumeId = "" }, msgParts: []string{"volume_id"}},
		"no target":     {edit: func(r *csi.NodePublishVolumeRequest) { r.TargetPath = "" }, msgParts: []string{"target_path"}},
		"no capability": {edit: func(r *csi.NodePublishVolumeRequest) { r.VolumeCapability = nil }, msgParts: []string{"volume_capability"}},
		"block": {edit: func(r *csi.NodePublishVolumeRequest) {
			r.VolumeCapability.AccessType = &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}}
		}, msgParts: []string{"block"}},
		"not ephemeral":   {edit: func(r *csi.NodePublishVolumeRequest) { delete(r.VolumeContext, keyEphemeral) }, msgParts: []string{keyEphemeral, "Ephemeral"}},
		"no class":        {edit: func(r *csi.NodePublishVolumeRequest) { delete(r.VolumeContext, keyClass) }, msgParts: []string{keyClass}},
		"no pod info":     {edit: func(r *csi.NodePublishVolumeRequest) { delete(r.VolumeContext, keyPodName) }, msgParts: []string{"podInfoOnMount"}},
		"bad fsGroup":     {edit: func(r *csi.NodePublishVolumeRequest) { r.VolumeCapability.GetMount().VolumeMountGroup = "wheel" }, msgParts: []string{"volume_mount_group", "wheel"}},
		"bad tokens json": {edit: func(r *csi.NodePublishVolumeRequest) { r.VolumeContext[keyTokens] = "{nope" }, msgParts: []string{keyTokens}},
		"class in another namespace": {edit: func(r *csi.NodePublishVolumeRequest) { r.VolumeContext[keyClass] = "other-ns/db" },
			msgParts: []string{`"other-ns/db"`, "plain name", "pod's own namespace"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, classObject("default", "db", "fake", nil))
			target := h.target("p")
			wantCode(t, h.publish(kubeletRequest(target, "p", "db", tc.edit)), codes.InvalidArgument, tc.msgParts...)
			if n := len(h.provider.Requests()); n != 0 {
				t.Fatalf("provider called %d times for an invalid request", n)
			}
			mustNotExist(t, target)
		})
	}
}

func TestTokensFromSecretsWin(t *testing.T) {
	h := newHarness(t, classObject("default", "db", "fake", nil))
	h.provider.SetFiles(provider.File{Path: "a", Mode: 0o644, Data: []byte("1")})
	target := h.target("p")
	req := kubeletRequest(target, "p", "db", func(r *csi.NodePublishVolumeRequest) {
		r.Secrets = map[string]string{keyTokens: `{"sts.amazonaws.com":{"token":"from-secrets","expirationTimestamp":"2030-01-01T00:00:00Z"},"pods.eks.amazonaws.com":{"token":"pi","expirationTimestamp":"2030-01-01T00:00:00Z"}}`}
	})
	if err := h.publish(req); err != nil {
		t.Fatal(err)
	}
	toks := h.provider.Requests()[0].Pod.Tokens
	if toks["sts.amazonaws.com"].Value != "from-secrets" || toks["pods.eks.amazonaws.com"].Value != "pi" {
		t.Fatalf("tokens = %v; want the secrets copy to win and both audiences", toks)
	}
}

func TestRepublishKeepsVolume(t *testing.T) {
	h := newHarness(t, classObject("default", "db", "fake", nil))
	h.provider.SetFiles(provider.File{Path: "a", Mode: 0o644, Data: []byte("v1")})
	target := h.target("p")
	if err := h.publish(kubeletRequest(target, "p", "db")); err != nil {
		t.Fatal(err)
	}
	// The store now fails; a republish must neither error nor touch the files.
	h.provider.SetError(fmt.Errorf("boom: %w", provider.ErrUnavailable))
	for i := 0; i < 3; i++ {
		if err := h.publish(kubeletRequest(target, "p", "db")); err != nil {
			t.Fatalf("republish %d = %v, want success", i, err)
		}
	}
	if got, err := os.ReadFile(filepath.Join(target, "a")); err != nil || string(got) != "v1" {
		t.Fatalf("after republish a = %q, %v; want v1", got, err)
	}
	if n := len(h.provider.Requests()); n != 1 {
		t.Fatalf("store fetched %d times, want 1: a republish of an unchanged volume costs no fetch", n)
	}
	if !strings.Contains(h.metricsText(), `podsecrets_node_publish_total{code="OK",kind="republish",provider="none"} 3`) {
		t.Fatal("republishes were not counted")
	}
}

func TestUnpublish(t *testing.T) {
	h := newHarness(t, classObject("default", "db", "fake", nil))
	h.provider.SetFiles(provider.File{Path: "a", Mode: 0o644, Data: []byte("v1")})
	target := h.target("p")
	if err := h.publish(kubeletRequest(target, "p", "db")); err != nil {
		t.Fatal(err)
	}
	if err := h.unpublish("csi-p", target); err != nil {
		t.Fatal(err)
	}
	mustNotExist(t, target)
	if s, _ := h.mounter.Status(target); s.Mounted {
		t.Fatal("target still mounted")
	}
	// Kubelet retries until success: repeats and unknown targets succeed.
	if err := h.unpublish("csi-p", target); err != nil {
		t.Fatalf("second unpublish = %v", err)
	}
	if err := h.unpublish("csi-unknown", filepath.Join(h.root, "never", "mount")); err != nil {
		t.Fatalf("unpublish of an unknown target = %v", err)
	}
	wantCode(t, h.unpublish("", target), codes.InvalidArgument, "volume_id")
	wantCode(t, h.unpublish("v", ""), codes.InvalidArgument, "target_path")
}

// TestSameTargetSerialised publishes one target from many goroutines. The
// first fetch is held until every caller has queued on the target's lock
// (or, were there no lock, until all of them fetch at once): exactly one
// fetch and mount happen; the rest see the mounted volume.
func TestSameTargetSerialised(t *testing.T) {
	const callers = 8
	h := newHarness(t, classObject("default", "db", "fake", nil))
	h.provider.SetFiles(provider.File{Path: "a", Mode: 0o644, Data: []byte("v1")})
	target := h.target("p")
	var mu sync.Mutex
	inFlight, maxInFlight := 0, 0
	h.provider.SetHook(func(ctx context.Context, _ *provider.Request) error {
		mu.Lock()
		inFlight++
		maxInFlight = max(maxInFlight, inFlight)
		mu.Unlock()
		defer func() { mu.Lock(); inFlight--; mu.Unlock() }()
		for {
			mu.Lock()
			all := inFlight == callers
			mu.Unlock()
			if all || h.driver.locks.queued(target) == callers {
				return nil
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			runtime.Gosched()
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := h.node.NodePublishVolume(ctx, kubeletRequest(target, "p", "db"))
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := len(h.provider.Requests()); n != 1 || maxInFlight != 1 {
		t.Fatalf("%d fetches, %d at once; want 1 and 1", n, maxInFlight)
	}
}

// TestDifferentTargetsParallel holds each fetch until all are in flight: it
// can only finish if different targets are served concurrently.
func TestDifferentTargetsParallel(t *testing.T) {
	const n = 4
	h := newHarness(t, classObject("default", "db", "fake", nil))
	h.provider.SetFiles(provider.File{Path: "a", Mode: 0o644, Data: []byte("v1")})
	var arrived sync.WaitGroup
	arrived.Add(n)
	all := make(chan struct{})
	go func() { arrived.Wait(); close(all) }()
	h.provider.SetHook(func(ctx context.Context, _ *provider.Request) error {
		arrived.Done()
		select {
		case <-all:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		pod := fmt.Sprintf("p%d", i)
		go func() {
			_, err := h.node.NodePublishVolume(ctx, kubeletRequest(h.target(pod), pod, "db"))
			errs <- err
		}()
	}
	for i := 0; i < n; i++ {
		if err := <-errs; err != nil {
			t.Fatalf("publish = %v: different targets did not run in parallel", err)
		}
	}
}

// TestRequestForwardsAttributes: a provider that forwards the request (a
// plugin) gets kubelet's volume attributes without the raw token JSON
// (the tokens travel typed, in Pod.Tokens), the node-publish secrets and
// the target.
func TestRequestForwardsAttributes(t *testing.T) {
	h := newHarness(t, classObject("default", "db", "fake", nil))
	h.provider.SetFiles(provider.File{Path: "a", Mode: 0o644, Data: []byte("1")})
	target := h.target("p")
	req := kubeletRequest(target, "p", "db", func(r *csi.NodePublishVolumeRequest) {
		r.VolumeContext["roleName"] = "web"
		r.Secrets = map[string]string{"username": "u"}
	})
	if err := h.publish(req); err != nil {
		t.Fatal(err)
	}
	got := h.provider.Requests()[0]
	want := map[string]string{keyClass: "db", keyEphemeral: "true", keyPodName: "p", keyPodNamespace: "default",
		keyPodUID: "uid-p", keyServiceAccount: "app", "roleName": "web"}
	if len(got.Attributes) != len(want) {
		t.Errorf("attributes = %v, want %v", got.Attributes, want)
	}
	for k, v := range want {
		if got.Attributes[k] != v {
			t.Errorf("attributes[%s] = %q, want %q", k, got.Attributes[k], v)
		}
	}
	if got.Secrets["username"] != "u" || got.Target != target {
		t.Errorf("secrets %v, target %q; want username and %q", got.Secrets, got.Target, target)
	}
}

// TestMountedEvent: a publish puts a Normal SecretsMounted on the pod with
// every object@version and the duration, never a value; a republish that
// keeps the volume puts none.
func TestMountedEvent(t *testing.T) {
	h := newHarness(t, classObject("default", "db", "fake", nil))
	h.provider.SetFiles(provider.File{Path: "password", Mode: 0o600, Data: []byte("SECRET-CANARY")}, provider.File{Path: "user", Mode: 0o644, Data: []byte("app")})
	target := h.target("p")
	for range 2 {
		if err := h.publish(kubeletRequest(target, "p", "db")); err != nil {
			t.Fatal(err)
		}
	}
	evs := h.events.of(reasonMounted)
	if len(evs) != 1 || !regexp.MustCompile(`^Normal default/p SecretsMounted: SecretProviderClass default/db: mounted password@1, user@1 in [0-9.]+m?s$`).MatchString(evs[0]) {
		t.Fatalf("SecretsMounted events = %q", evs)
	}
	if strings.Contains(evs[0], "CANARY") {
		t.Fatal("the event holds a value")
	}
}

func TestEventListIsBounded(t *testing.T) {
	items := make([]string, maxEventObjects+3)
	for i := range items {
		items[i] = fmt.Sprintf("o%d@1", i)
	}
	got := eventList(items)
	if !strings.HasSuffix(got, ", o"+fmt.Sprint(maxEventObjects-1)+"@1 and 3 more") {
		t.Errorf("eventList = %q", got)
	}
}
