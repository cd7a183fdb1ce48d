package driver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/podsecrets/podsecrets/kube"
	"github.com/podsecrets/podsecrets/mount"
	"github.com/podsecrets/podsecrets/provider"
	"github.com/podsecrets/podsecrets/rotation"
)

// rotatingClass is class default/<name> of the fake provider polling every
// interval ("" for none).
func rotatingClass(name, interval string) *unstructured.Unstructured {
	c := classObject("default", name, "fake", nil)
	if interval != "" {
		c.Object["spec"].(map[string]any)["rotation"] = map[string]any{"pollInterval": interval}
	}
	return c
}

func files(kv ...string) []provider.File {
	var fs []provider.File
	for i := 0; i < len(kv); i += 2 {
		fs = append(fs, provider.File{Path: kv[i], Mode: 0o644, Data: []byte(kv[i+1])})
	}
	return fs
}

// readSet returns the files a reader sees through "..data" resolved once,
// and the version directory it resolved to.
func readSet(t *testing.T, target string, names ...string) (map[string]string, string) {
	t.Helper()
	version, err := os.Readlink(filepath.Join(target, mount.DataDir))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(target, version, n))
		if err != nil {
			t.Fatalf("read %s: %v", n, err)
		}
		out[n] = string(b)
	}
	return out, version
}

// classGets counts the GETs of SecretProviderClasses the driver made.
func (h *harness) classGets() int {
	n := 0
	for _, a := range h.dyn.Actions() {
		if a.GetVerb() == "get" && a.GetResource() == kube.ClassGVR {
			n++
		}
	}
	return n
}

func (h *harness) fetches() int { return len(h.provider.Requests()) }

// published publishes the volume of pod default/<pod> of class as kubelet
// does and returns the request, for republishes, and the target.
func (h *harness) published(pod, class string) (*csi.NodePublishVolumeRequest, string) {
	h.t.Helper()
	target := h.target(pod)
	req := kubeletRequest(target, pod, class)
	if err := h.publish(req); err != nil {
		h.t.Fatalf("publish %s: %v", pod, err)
	}
	return req, target
}

// republishAfter advances the clock by d and republishes req, which must
// answer OK: a republish never fails a running pod.
func (h *harness) republishAfter(req *csi.NodePublishVolumeRequest, d time.Duration) {
	h.t.Helper()
	h.clock.Advance(d)
	if err := h.publish(req); err != nil {
		h.t.Fatalf("republish after %v = %v, want OK", d, err)
	}
}

// TestRotation walks one volume through its life: republishes inside the
// interval cost nothing, a check after it that finds nothing new writes
// nothing, a change is swapped in whole with one "..data" switch, told by a
// Normal event and counted.
func TestRotation(t *testing.T) {
	requireRealMounts(t)
	h := newHarness(t, rotatingClass("jwt", "1m"))
	h.provider.SetFiles(files("current", "k2", "previous", "k1")...)
	req, target := h.published("p", "jwt")
	_, v0 := readSet(t, target)
	gets, fetches := h.classGets(), h.fetches()

	h.republishAfter(req, 59*time.Second)
	if h.classGets() != gets || h.fetches() != fetches {
		t.Fatalf("a republish inside the interval read the class %d and fetched %d times", h.classGets()-gets, h.fetches()-fetches)
	}

	h.republishAfter(req, 2*time.Second)
	if h.fetches() != fetches+1 {
		t.Fatalf("a republish past the interval fetched %d times, want 1", h.fetches()-fetches)
	}
	if held := h.provider.Requests()[fetches].Held; held == nil || len(held.Objects) != 2 || held.MaxAge != time.Minute {
		t.Fatalf("the check was not given what the volume holds: %+v", held)
	}
	if _, v := readSet(t, target); v != v0 {
		t.Fatalf("a check that found nothing new switched ..data from %s to %s", v0, v)
	}

	h.provider.SetFiles(files("current", "k3", "previous", "k2")...)
	h.republishAfter(req, 61*time.Second)
	got, v1 := readSet(t, target, "current", "previous")
	if v1 == v0 || got["current"] != "k3" || got["previous"] != "k2" {
		t.Fatalf("after the rotation: ..data %s (was %s), files %v", v1, v0, got)
	}
	entries, _ := os.ReadDir(target)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "..v_") && e.Name() != v1 {
			t.Errorf("old version %s left behind", e.Name())
		}
	}
	if err := os.WriteFile(filepath.Join(target, "x"), nil, 0o600); !errors.Is(err, unix.EROFS) {
		t.Fatalf("after the rotation the volume is writable: %v", err)
	}
	evs := h.events.all()
	if len(evs) != 1 || evs[0] != "Normal default/p SecretsRotated: SecretProviderClass default/jwt: rotated current@1→2, previous@1→2" {
		t.Fatalf("events = %q", evs)
	}
	rec, err := rotation.Decode(mustRead(t, filepath.Join(target, mount.DataDir, mount.RecordFile)))
	if err != nil || fmt.Sprint(rec.Objects) != fmt.Sprint([]provider.ObjectVersion{{ID: "current", Version: "2", Path: "current"}, {ID: "previous", Version: "2", Path: "previous"}}) {
		t.Fatalf("record after the rotation: %+v, %v", rec, err)
	}
	m := h.metricsText()
	for _, want := range []string{`podsecrets_rotation_checks_total{provider="fake",result="rotated"} 1`, `podsecrets_rotation_checks_total{provider="fake",result="unchanged"} 1`} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRotationOff: a class without rotation costs nothing on republish,
// however long the volume lives.
func TestRotationOff(t *testing.T) {
	requireRealMounts(t)
	h := newHarness(t, rotatingClass("db", ""))
	h.provider.SetFiles(files("a", "1")...)
	req, target := h.published("p", "db")
	gets, fetches := h.classGets(), h.fetches()
	h.provider.SetFiles(files("a", "2")...)
	for range 3 {
		h.clock.Advance(24 * time.Hour)
		if err := h.publish(req); err != nil {
			t.Fatal(err)
		}
	}
	if h.classGets() != gets || h.fetches() != fetches {
		t.Fatalf("republishes without rotation read the class %d and fetched %d times", h.classGets()-gets, h.fetches()-fetches)
	}
	if got, _ := readSet(t, target, "a"); got["a"] != "1" {
		t.Fatalf("a = %q, want the value of pod start", got["a"])
	}
	// An unpublished volume leaves nothing in the tracker.
	if err := h.unpublish(req.VolumeId, target); err != nil {
		t.Fatal(err)
	}
	if h.driver.opts.Rotation.Known(target) {
		t.Fatal("the tracker still holds an unpublished volume")
	}
}

// TestRotationFailureKeepsFiles: a check that fails answers OK, keeps the
// pod's files, warns on the pod, and waits before it tries again.
func TestRotationFailureKeepsFiles(t *testing.T) {
	requireRealMounts(t)
	h := newHarness(t, rotatingClass("db", "30s"))
	h.provider.SetFiles(files("a", "1")...)
	req, target := h.published("p", "db")
	h.provider.SetError(fmt.Errorf("%w: store down", provider.ErrUnavailable))
	h.republishAfter(req, 31*time.Second)
	if got, _ := readSet(t, target, "a"); got["a"] != "1" {
		t.Fatalf("a = %q after a failed check", got["a"])
	}
	evs := h.events.all()
	if len(evs) != 1 || !strings.HasPrefix(evs[0], "Warning default/p RotationFailed: SecretProviderClass default/db: unavailable: store down; the pod keeps its files") {
		t.Fatalf("events = %q", evs)
	}
	fetches := h.fetches()
	h.clock.Advance(5 * time.Second) // inside the first backoff (10 s)
	h.publish(req)
	if h.fetches() != fetches {
		t.Fatalf("a republish inside the backoff fetched")
	}
	h.provider.SetError(nil)
	h.provider.SetFiles(files("a", "2")...)
	h.republishAfter(req, 6*time.Second)
	if got, _ := readSet(t, target, "a"); got["a"] != "2" {
		t.Fatalf("a = %q after the store came back", got["a"])
	}
	if m := h.metricsText(); !strings.Contains(m, `podsecrets_rotation_checks_total{provider="fake",result="failed"} 1`) {
		t.Errorf("the failure is not counted:\n%s", m)
	}
}

// TestRotationClassDeleted: a class deleted under a running pod fails the
// check, not the pod.
func TestRotationClassDeleted(t *testing.T) {
	requireRealMounts(t)
	h := newHarness(t, rotatingClass("db", "30s"))
	h.provider.SetFiles(files("a", "1")...)
	req, target := h.published("p", "db")
	if err := h.dyn.Resource(kube.ClassGVR).Namespace("default").Delete(context.Background(), "db", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	h.republishAfter(req, 31*time.Second)
	if got, _ := readSet(t, target, "a"); got["a"] != "1" {
		t.Fatalf("a = %q", got["a"])
	}
	if evs := h.events.all(); len(evs) != 1 || !strings.Contains(evs[0], "RotationFailed: SecretProviderClass not found: default/db") {
		t.Fatalf("events = %q", evs)
	}
}

// TestRotationAfterRestart: a new driver learns each volume from its record,
// checks it once, and writes nothing when nothing changed.
func TestRotationAfterRestart(t *testing.T) {
	requireRealMounts(t)
	h := newHarness(t, rotatingClass("db", "1m"))
	h.provider.SetFiles(files("a", "1")...)
	req, target := h.published("p", "db")
	_, v0 := readSet(t, target)
	h.driver.opts.Rotation = &rotation.Tracker{Now: h.clock.Now} // what a restart forgets
	fetches := h.fetches()
	for range 2 {
		if err := h.publish(req); err != nil {
			t.Fatal(err)
		}
	}
	if h.fetches() != fetches+1 {
		t.Fatalf("after a restart, two republishes fetched %d times, want 1", h.fetches()-fetches)
	}
	if held := h.provider.Requests()[fetches].Held; held == nil || len(held.Objects) != 1 || held.Objects[0].Version != "1" {
		t.Fatalf("the check after the restart did not start from the record: %+v", held)
	}
	if _, v := readSet(t, target); v != v0 {
		t.Fatalf("an unchanged volume was rewritten after the restart")
	}
}

// TestRotationRefresh: a new value of the class's refresh annotation makes
// the next republish check, inside the interval.
func TestRotationRefresh(t *testing.T) {
	requireRealMounts(t)
	h := newHarness(t, rotatingClass("db", "1h"))
	h.provider.SetFiles(files("a", "1")...)
	h.signals.set("default/db", kube.ClassSignal{})
	req, target := h.published("p", "db")
	h.provider.SetFiles(files("a", "2")...)
	if err := h.publish(req); err != nil {
		t.Fatal(err)
	}
	if got, _ := readSet(t, target, "a"); got["a"] != "1" {
		t.Fatalf("checked inside the interval without a refresh")
	}
	h.signals.set("default/db", kube.ClassSignal{Refresh: "now"})
	h.dyn.Resource(kube.ClassGVR).Namespace("default").Update(context.Background(), withAnnotation(rotatingClass("db", "1h"), kube.RefreshAnnotation, "now"), metav1.UpdateOptions{})
	if err := h.publish(req); err != nil {
		t.Fatal(err)
	}
	if got, _ := readSet(t, target, "a"); got["a"] != "2" {
		t.Fatalf("a = %q after a refresh", got["a"])
	}
	fetches := h.fetches()
	if err := h.publish(req); err != nil {
		t.Fatal(err)
	}
	if h.fetches() != fetches {
		t.Fatalf("the same refresh value checked again")
	}
}

func withAnnotation(u *unstructured.Unstructured, k, v string) *unstructured.Unstructured {
	u.SetAnnotations(map[string]string{k: v})
	return u
}

// TestRotationClassReadOncePerChange: with the class watch, the pods of one
// class read it once per change of the class, not once per check.
func TestRotationClassReadOncePerChange(t *testing.T) {
	requireRealMounts(t)
	h := newHarness(t, rotatingClass("db", "30s"))
	h.provider.SetFiles(files("a", "1")...)
	h.signals.set("default/db", kube.ClassSignal{})
	var reqs []*csi.NodePublishVolumeRequest
	for _, pod := range []string{"p1", "p2", "p3"} {
		r := kubeletRequest(h.target(pod), pod, "db")
		if err := h.publish(r); err != nil {
			t.Fatal(err)
		}
		reqs = append(reqs, r)
	}
	check := func() int {
		t.Helper()
		gets, fetches := h.classGets(), h.fetches()
		h.clock.Advance(31 * time.Second)
		for _, r := range reqs {
			if err := h.publish(r); err != nil {
				t.Fatal(err)
			}
		}
		if h.fetches() != fetches+len(reqs) {
			t.Fatalf("%d checks, want %d", h.fetches()-fetches, len(reqs))
		}
		return h.classGets() - gets
	}
	if n := check(); n != 1 {
		t.Fatalf("the first checks read the class %d times, want 1", n)
	}
	if n := check(); n != 0 {
		t.Fatalf("checks of an unchanged class read it %d times, want 0", n)
	}
	c := rotatingClass("db", "30s")
	c.SetGeneration(2)
	if _, err := h.dyn.Resource(kube.ClassGVR).Namespace("default").Update(context.Background(), c, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	h.signals.set("default/db", kube.ClassSignal{Generation: 2})
	if n := check(); n != 1 {
		t.Fatalf("checks after a class change read it %d times, want 1", n)
	}
}

// TestRotationCheckWarningsBecomeEvents: a check's warnings (an optional
// object gone) reach the pod as Warning events, changed files or not.
func TestRotationCheckWarningsBecomeEvents(t *testing.T) {
	requireRealMounts(t)
	h := newHarness(t, rotatingClass("db", "30s"))
	h.provider.SetFiles(files("a", "1")...)
	req, _ := h.published("p", "db")
	h.provider.SetWarnings(provider.Warning{Reason: "OptionalObjectGone", Message: "SecretProviderClass default/db: objects[1]: gone from the store; the pod keeps version 3"})
	h.republishAfter(req, 31*time.Second)
	evs := h.events.all()
	if len(evs) != 1 || evs[0] != "Warning default/p OptionalObjectGone: SecretProviderClass default/db: objects[1]: gone from the store; the pod keeps version 3" {
		t.Fatalf("events = %q", evs)
	}
}
