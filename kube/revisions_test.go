package kube

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"

	"github.com/podsecrets/podsecrets/provider"
)

func ownedPod(name, uid, kind, owner string, labels map[string]any) *unstructured.Unstructured {
	meta := map[string]any{"uid": uid}
	if kind != "" {
		meta["ownerReferences"] = []any{map[string]any{"apiVersion": "apps/v1", "kind": kind, "name": owner, "uid": owner + "-uid", "controller": true}}
	}
	if labels != nil {
		meta["labels"] = labels
	}
	return object("v1", "Pod", "ns", name, meta)
}

func TestRevisionOf(t *testing.T) {
	client := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{podsGVR: "PodList", revisionsGVR: "ControllerRevisionList", RecordGVR: "SecretVersionRecordList"},
		ownedPod("rs-pod", "u1", "ReplicaSet", "web-5d4f", nil),
		ownedPod("job-pod", "u2", "Job", "migrate", nil),
		ownedPod("sts-pod", "u3", "StatefulSet", "db", map[string]any{revisionLabel: "db-7c9b"}),
		ownedPod("ds-pod", "u4", "DaemonSet", "agent", map[string]any{revisionLabel: "6f8d"}),
		ownedPod("bare", "u5", "", "", nil),
		ownedPod("custom", "u6", "Rollout", "canary", nil),
		object("apps/v1", "ControllerRevision", "ns", "db-7c9b", map[string]any{"uid": "cr-db"}),
		object("apps/v1", "ControllerRevision", "ns", "agent-6f8d", map[string]any{"uid": "cr-agent"}),
	)
	k := Revisions{Client: client}
	for _, tc := range []struct{ pod, uid, want string }{
		{"rs-pod", "u1", "ReplicaSet/web-5d4f web-5d4f-uid"},
		{"job-pod", "u2", "Job/migrate migrate-uid"},
		{"sts-pod", "u3", "ControllerRevision/db-7c9b cr-db"},
		{"ds-pod", "u4", "ControllerRevision/agent-6f8d cr-agent"},
		{"bare", "u5", "none: the pod has no controller"},
		{"custom", "u6", "none: its controller is a Rollout, whose revisions podsecrets does not know"},
	} {
		rev, why, err := k.RevisionOf(context.Background(), provider.Pod{Namespace: "ns", Name: tc.pod, UID: tc.uid})
		if err != nil {
			t.Fatalf("%s: %v", tc.pod, err)
		}
		got := "none: " + why
		if rev != nil {
			got = fmt.Sprintf("%s %s", rev, rev.UID)
		}
		if got != tc.want {
			t.Errorf("%s: %s, want %s", tc.pod, got, tc.want)
		}
	}
	if _, _, err := k.RevisionOf(context.Background(), provider.Pod{Namespace: "ns", Name: "rs-pod", UID: "other"}); err == nil || !strings.Contains(err.Error(), "replaced") {
		t.Errorf("a replaced pod: %v", err)
	}
}

// TestRecordsCreateRace: the first create wins; a later one gets the
// winner's versions back.
func TestRecordsCreateRace(t *testing.T) {
	client := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{RecordGVR: "SecretVersionRecordList"})
	k := Records{Client: client}
	rev := Revision{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-5d4f", UID: "0b5e7c1e-6f0e-4bd4"}
	rec := func(version string) *VersionRecord {
		return &VersionRecord{Namespace: "ns", Name: RecordName(rev, "db"), Revision: rev, Class: "db",
			Objects: []provider.ObjectVersion{{Path: "db", ID: "arn:db", Version: version, Source: "s"}}}
	}
	if rec("v1").Name != "web-5d4f.db.0b5e7c1e" {
		t.Fatalf("record name %s", rec("v1").Name)
	}
	got, created, err := k.Create(context.Background(), rec("v1"))
	if err != nil || !created || got.Objects[0].Version != "v1" {
		t.Fatalf("first create: %+v %v %v", got, created, err)
	}
	got, created, err = k.Create(context.Background(), rec("v2"))
	if err != nil || created || got.Objects[0].Version != "v1" || got.Revision != rev || got.Class != "db" {
		t.Fatalf("second create: %+v %v %v, want the first's versions", got, created, err)
	}
	if none, err := k.Get(context.Background(), "ns", "other"); none != nil || err != nil {
		t.Fatalf("Get of a missing record = %v, %v", none, err)
	}
	long := Revision{Name: strings.Repeat("r", 250), UID: "u"}
	if n := RecordName(long, "db"); len(n) > 253 {
		t.Fatalf("record name of %d bytes", len(n))
	}
}
