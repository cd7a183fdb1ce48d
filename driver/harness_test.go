package driver

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"

	"github.com/podsecrets/podsecrets/kube"
	"github.com/podsecrets/podsecrets/mount"
	"github.com/podsecrets/podsecrets/provider"
	"github.com/podsecrets/podsecrets/provider/fake"
	"github.com/podsecrets/podsecrets/rotation"
	"github.com/podsecrets/podsecrets/test/fakeclock"
	"github.com/podsecrets/podsecrets/test/logbuf"
	"github.com/podsecrets/podsecrets/volume"
)

// harness runs the real gRPC server on a temporary unix socket, with a fake
// API server holding SecretProviderClasses and an in-memory provider, and
// calls it the way kubelet does.
type harness struct {
	t        *testing.T
	node     csi.NodeClient
	identity csi.IdentityClient
	provider *fake.Provider
	mounter  mount.Mounter
	logs     *logbuf.Buffer
	registry *prometheus.Registry
	driver   *Driver
	events   *fakeEvents
	root     string
	dyn      *dynamicfake.FakeDynamicClient
	clock    *fakeclock.Clock
	signals  *fakeSignals
}

// fakeSignals stands in for the class watch.
type fakeSignals struct {
	mu sync.Mutex
	m  map[string]kube.ClassSignal
}

func (f *fakeSignals) Signal(namespace, name string) (kube.ClassSignal, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.m[namespace+"/"+name]
	return s, ok
}

func (f *fakeSignals) set(ref string, s kube.ClassSignal) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m == nil {
		f.m = map[string]kube.ClassSignal{}
	}
	f.m[ref] = s
}

// fakeEvents records the events the driver puts on pods.
type fakeEvents struct {
	// settle, when set, waits for events still being sent (the
	// driver's afterAnswer work) before they are read.
	settle func()
	mu     sync.Mutex
	events []string // "type namespace/pod reason: message"
}

func (f *fakeEvents) Warn(_ context.Context, pod provider.Pod, reason, message string) {
	f.add("Warning", pod, reason, message)
}

func (f *fakeEvents) Normal(_ context.Context, pod provider.Pod, reason, message string) {
	f.add("Normal", pod, reason, message)
}

func (f *fakeEvents) add(typ string, pod provider.Pod, reason, message string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events = append(f.events, typ+" "+pod.Namespace+"/"+pod.Name+" "+reason+": "+message)
}

// all returns the events but the SecretsMounted of every publish, which
// only the tests of that event look at (see of).
func (f *fakeEvents) all() []string {
	return f.filter(func(e string) bool { return !strings.Contains(e, " "+reasonMounted+": ") })
}

// of returns the events of reason.
func (f *fakeEvents) of(reason string) []string {
	return f.filter(func(e string) bool { return strings.Contains(e, " "+reason+": ") })
}

func (f *fakeEvents) filter(keep func(string) bool) []string {
	if f.settle != nil {
		f.settle()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, e := range f.events {
		if keep(e) {
			out = append(out, e)
		}
	}
	return out
}

// fakeMounter stands in for the kernel when tests run without root: mount
// points are plain directories it remembers.
type fakeMounter struct {
	mu       sync.Mutex
	mounted  map[string]bool
	readOnly map[string]bool
}

func (f *fakeMounter) MountTmpfs(target string, _ mount.TmpfsOptions) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.mounted == nil {
		f.mounted = map[string]bool{}
	}
	f.mounted[target] = true
	return nil
}

func (f *fakeMounter) SetReadOnly(target string, ro bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.readOnly == nil {
		f.readOnly = map[string]bool{}
	}
	f.readOnly[target] = ro
	return nil
}

func (f *fakeMounter) Unmount(target string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.mounted[target] {
		// A real unmount takes the tmpfs content with it.
		entries, _ := os.ReadDir(target)
		for _, e := range entries {
			os.RemoveAll(filepath.Join(target, e.Name()))
		}
	}
	delete(f.mounted, target)
	delete(f.readOnly, target)
	return nil
}

func (f *fakeMounter) SetFSReadOnly(target string, ro bool) error { return f.SetReadOnly(target, ro) }

// Bind stands in for a bind by moving source's content to target.
func (f *fakeMounter) Bind(source, target string) error {
	if err := os.Remove(target); err != nil {
		return err
	}
	if err := os.Rename(source, target); err != nil {
		return err
	}
	if err := os.Mkdir(source, 0o700); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mounted[target], f.readOnly[target] = true, f.readOnly[source]
	return nil
}

// BindWritable stands in for a bind with a symlink: writes through at
// land in target.
func (f *fakeMounter) BindWritable(target, at string) error {
	if err := os.Remove(at); err != nil {
		return err
	}
	return os.Symlink(target, at)
}

func (f *fakeMounter) Status(target string) (mount.Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return mount.Status{Mounted: f.mounted[target], Ours: f.mounted[target], ReadOnly: f.readOnly[target]}, nil
}

func realMounts() bool { return os.Geteuid() == 0 }

func classObject(namespace, name, providerName string, params map[string]string) *unstructured.Unstructured {
	p := map[string]any{}
	for k, v := range params {
		p[k] = v
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "podsecrets.dev/v1",
		"kind":       "SecretProviderClass",
		"metadata":   map[string]any{"namespace": namespace, "name": name},
		"spec":       map[string]any{"provider": providerName, "parameters": p},
	}}
}

func newHarness(t *testing.T, objs ...runtime.Object) *harness {
	t.Helper()
	h := &harness{t: t, provider: &fake.Provider{}, events: &fakeEvents{}, logs: &logbuf.Buffer{}, registry: prometheus.NewRegistry(), root: t.TempDir()}
	if realMounts() {
		h.mounter = mount.System{}
	} else {
		h.mounter = &fakeMounter{}
	}
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{
			kube.ClassGVR:                     "SecretProviderClassList",
			kube.RecordGVR:                    "SecretVersionRecordList",
			{Version: "v1", Resource: "pods"}: "PodList",
			{Group: "apps", Version: "v1", Resource: "controllerrevisions"}: "ControllerRevisionList",
		}, objs...)
	h.dyn, h.clock, h.signals = dyn, fakeclock.New(time.Now()), &fakeSignals{}
	d, err := New(Options{
		NodeID:       "node-1",
		Version:      "test",
		Providers:    provider.NewRegistry(h.provider, &fake.Provider{ProviderName: "other"}),
		Classes:      kube.Classes{Client: dyn},
		Volumes:      volume.New(volume.Options{Mounter: h.mounter, TmpfsSize: 1 << 20, StagingDir: t.TempDir()}),
		Events:       h.events,
		Rotation:     &rotation.Tracker{Now: h.clock.Now},
		Revisions:    kube.Revisions{Client: dyn},
		Records:      kube.Records{Client: dyn},
		ClassSignals: h.signals,
		Logger:       slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Metrics:      NewMetrics(h.registry),
	})
	if err != nil {
		t.Fatal(err)
	}
	h.driver = d
	h.events.settle = d.later.Wait
	h.driver.SetReady(true)

	sock := filepath.Join(h.root, "csi.sock")
	lis, err := ListenUnix(sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := NewGRPCServer(h.driver)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	h.node = csi.NewNodeClient(conn)
	h.identity = csi.NewIdentityClient(conn)
	t.Cleanup(h.unmountAll)
	return h
}

// unmountAll removes whatever a failing test left mounted below root.
func (h *harness) unmountAll() {
	if !realMounts() {
		return
	}
	filepath.WalkDir(h.root, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() && filepath.Base(p) == "mount" {
			unix.Unmount(p, unix.MNT_DETACH)
		}
		return nil
	})
}

// target returns a fresh kubelet-style target path whose parent exists, as
// kubelet leaves it.
func (h *harness) target(pod string) string {
	parent := filepath.Join(h.root, "pods", pod, "volumes", "kubernetes.io~csi", "secrets")
	if err := os.MkdirAll(parent, 0o750); err != nil {
		h.t.Fatal(err)
	}
	return filepath.Join(parent, "mount")
}

// kubeletRequest builds what kubelet sends for an inline volume of pod
// default/<pod> naming class; edit mutates it.
func kubeletRequest(target, pod, class string, edit ...func(*csi.NodePublishVolumeRequest)) *csi.NodePublishVolumeRequest {
	req := &csi.NodePublishVolumeRequest{
		VolumeId:   "csi-" + pod,
		TargetPath: target,
		VolumeCapability: &csi.VolumeCapability{
			AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
			AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
		},
		VolumeContext: map[string]string{
			keyClass:          class,
			keyEphemeral:      "true",
			keyPodName:        pod,
			keyPodNamespace:   "default",
			keyPodUID:         "uid-" + pod,
			keyServiceAccount: "app",
			keyTokens:         `{"sts.amazonaws.com":{"token":"tkn","expirationTimestamp":"2030-01-01T00:00:00Z"}}`,
		},
	}
	for _, e := range edit {
		e(req)
	}
	return req
}

func (h *harness) publish(req *csi.NodePublishVolumeRequest) error {
	_, err := h.node.NodePublishVolume(context.Background(), req)
	return err
}

func (h *harness) unpublish(volumeID, target string) error {
	_, err := h.node.NodeUnpublishVolume(context.Background(), &csi.NodeUnpublishVolumeRequest{VolumeId: volumeID, TargetPath: target})
	return err
}

// metricsText scrapes /metrics the way Prometheus does.
func (h *harness) metricsText() string {
	rec := httptest.NewRecorder()
	h.driver.HTTPHandler(h.registry).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		h.t.Fatalf("GET /metrics = %d", rec.Code)
	}
	return rec.Body.String()
}
