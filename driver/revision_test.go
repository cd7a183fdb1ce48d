package driver

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	k8stesting "k8s.io/client-go/testing"

	"github.com/podsecrets/podsecrets/kube"
)

// revisionClass is class default/<name> of the fake provider with
// versionPolicy Revision.
func revisionClass(name string) *unstructured.Unstructured {
	c := classObject("default", name, "fake", nil)
	c.Object["spec"].(map[string]any)["versionPolicy"] = "Revision"
	return c
}

// podOf is pod default/<name> (uid "uid-<name>", as kubeletRequest sends)
// controlled by ReplicaSet rs ("" for none).
func podOf(name, rs string) *unstructured.Unstructured {
	meta := map[string]any{"namespace": "default", "name": name, "uid": "uid-" + name}
	if rs != "" {
		meta["ownerReferences"] = []any{map[string]any{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs, "uid": "uid-" + rs, "controller": true}}
	}
	return &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Pod", "metadata": meta}}
}

func (h *harness) mount(pod string) string {
	h.t.Helper()
	target := h.target(pod)
	if err := h.publish(kubeletRequest(target, pod, "db")); err != nil {
		h.t.Fatalf("publish %s: %v", pod, err)
	}
	b, err := os.ReadFile(filepath.Join(target, "key"))
	if err != nil {
		h.t.Fatal(err)
	}
	return string(b)
}

func (h *harness) records() []string {
	h.t.Helper()
	l, err := h.dyn.Resource(kube.RecordGVR).Namespace("default").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	var out []string
	for _, r := range l.Items {
		v, _, _ := unstructured.NestedString(r.Object, "spec", "versions")
		out = append(out, r.GetName()+" "+v)
	}
	return out
}

// TestRevisionPinsVersions: the pods of one ReplicaSet mount the versions
// its first pod recorded, whatever the store says later; a new ReplicaSet
// resolves afresh, and the old one's pods (a rollback) get theirs again.
func TestRevisionPinsVersions(t *testing.T) {
	requireRealMounts(t)
	h := newHarness(t, revisionClass("db"), podOf("a1", "web-1"), podOf("a2", "web-1"), podOf("b1", "web-2"), podOf("a3", "web-1"))
	h.provider.SetFiles(files("key", "k1")...)
	if got := h.mount("a1"); got != "k1" {
		t.Fatalf("first pod: %q", got)
	}
	h.provider.SetFiles(files("key", "k2")...) // AWSCURRENT moved
	if got := h.mount("a2"); got != "k1" {
		t.Fatalf("a later pod of the same revision mounts %q, want the recorded k1", got)
	}
	if got := h.mount("b1"); got != "k2" {
		t.Fatalf("the first pod of a new revision mounts %q, want the current k2", got)
	}
	if got := h.mount("a3"); got != "k1" {
		t.Fatalf("a pod of the old revision (a rollback) mounts %q, want k1", got)
	}
	recs := h.records()
	if len(recs) != 2 || recs[0] != "web-1.db.uidweb1 key=1" || recs[1] != "web-2.db.uidweb2 key=2" {
		t.Fatalf("records %q", recs)
	}
	rec, _ := h.dyn.Resource(kube.RecordGVR).Namespace("default").Get(context.Background(), "web-1.db.uidweb1", metav1.GetOptions{})
	if owners := rec.GetOwnerReferences(); len(owners) != 1 || owners[0].Kind != "ReplicaSet" || owners[0].Name != "web-1" || owners[0].UID != "uid-web-1" {
		t.Fatalf("record owners %+v, want the ReplicaSet", owners)
	}
	if m := h.metricsText(); !strings.Contains(m, `podsecrets_revision_mounts_total{result="first"} 2`) || !strings.Contains(m, `podsecrets_revision_mounts_total{result="recorded"} 2`) {
		t.Errorf("metrics:\n%s", m)
	}
}

// TestRevisionRaceLoserUsesWinner: a pod whose create loses to another
// node's mounts the winner's versions, not the ones it read.
func TestRevisionRaceLoserUsesWinner(t *testing.T) {
	requireRealMounts(t)
	h := newHarness(t, revisionClass("db"), podOf("a1", "web-1"), podOf("a2", "web-1"))
	h.provider.SetFiles(files("key", "k1")...)
	h.mount("a1")
	h.provider.SetFiles(files("key", "k2")...)
	// a2's driver does not see a1's record when it looks: it mounts k2,
	// then loses the create to a1's record.
	hidden := true
	h.dyn.PrependReactor("get", "secretversionrecords", func(k8stesting.Action) (bool, runtime.Object, error) {
		if hidden {
			hidden = false
			return true, nil, apierrors.NewNotFound(schema.GroupResource{Group: "podsecrets.dev", Resource: "secretversionrecords"}, "x")
		}
		return false, nil, nil
	})
	if got := h.mount("a2"); got != "k1" {
		t.Fatalf("the loser mounts %q, want the winner's k1", got)
	}
	if len(h.records()) != 1 {
		t.Fatalf("records %q, want one", h.records())
	}
}

// TestRevisionVersionGone: a recorded version the store purged does not
// block a scale-up: the current version, and a Warning event.
func TestRevisionVersionGone(t *testing.T) {
	requireRealMounts(t)
	h := newHarness(t, revisionClass("db"), podOf("a1", "web-1"), podOf("a2", "web-1"))
	h.provider.SetFiles(files("key", "k1")...)
	h.mount("a1")
	h.provider.SetFiles(files("key", "k2")...)
	h.provider.Purge("key", "1")
	if got := h.mount("a2"); got != "k2" {
		t.Fatalf("mounted %q, want the current k2", got)
	}
	evs := h.events.all()
	if len(evs) != 1 || !strings.HasPrefix(evs[0], "Warning default/a2 RevisionVersionGone: SecretProviderClass default/db: not found: fake object key version 1; this pod mounts the current versions instead of those of SecretVersionRecord default/web-1.db.uidweb1, so the replicas of ReplicaSet/web-1 now differ") {
		t.Fatalf("events %q", evs)
	}
}

// TestRevisionWithoutController: a bare pod mounts the current versions,
// and its event says why.
func TestRevisionWithoutController(t *testing.T) {
	requireRealMounts(t)
	h := newHarness(t, revisionClass("db"), podOf("bare", ""))
	h.provider.SetFiles(files("key", "k1")...)
	h.mount("bare")
	if evs := h.events.all(); len(evs) != 1 || evs[0] != "Normal default/bare VersionsAtPodStart: SecretProviderClass default/db: versionPolicy Revision, but the pod has no controller: the pod mounts the versions current at its start" {
		t.Fatalf("events %q", evs)
	}
	if len(h.records()) != 0 {
		t.Fatal("a record for a pod without a revision")
	}
}

// TestRevisionExcludesRotation: one class cannot ask for both.
func TestRevisionExcludesRotation(t *testing.T) {
	c := revisionClass("db")
	c.Object["spec"].(map[string]any)["rotation"] = map[string]any{"pollInterval": "1m"}
	h := newHarness(t, c, podOf("a1", "web-1"))
	err := h.publish(kubeletRequest(h.target("a1"), "a1", "db"))
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "spec.versionPolicy Revision and spec.rotation exclude each other") {
		t.Fatalf("publish = %v", err)
	}
}

// TestRevisionNeedsAProviderThatPins: a provider that cannot read a given
// version (a plugin) fails the mount before anything is recorded, rather
// than record versions later pods could not mount.
func TestRevisionNeedsAProviderThatPins(t *testing.T) {
	h := newHarness(t, revisionClass("db"), podOf("a1", "web-1"))
	h.provider.NoPin = true
	h.provider.SetFiles(files("key", "k1")...)
	err := h.publish(kubeletRequest(h.target("a1"), "a1", "db"))
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "SecretProviderClass default/db: spec.versionPolicy Revision") ||
		!strings.Contains(err.Error(), "provider fake cannot") {
		t.Fatalf("publish = %v", err)
	}
	if len(h.records()) != 0 || len(h.provider.Requests()) != 0 {
		t.Fatal("the store was read or a record made for a class that cannot pin")
	}
}
