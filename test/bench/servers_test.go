package main

import (
	"context"
	"net/http/httptest"
	"testing"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	"github.com/podsecrets/podsecrets/kube"
	"github.com/podsecrets/podsecrets/provider"
)

// TestKubeAPIRevisions drives the fake API server with the driver's own
// clients of pods and SecretVersionRecords (kube.Revisions, kube.Records),
// so that what table 10 counts is what the driver makes of it.
func TestKubeAPIRevisions(t *testing.T) {
	api := &KubeAPI{RoleARN: roleARN, SANamespace: benchNS}
	api.SetRevisionClass(benchNS, "rev", map[string]string{"objects": "- objectName: x\n"})
	rs := &Owner{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-5d8f", UID: "rs-0001-uid"}
	api.SetPod(benchNS, "web-5d8f-a", "pod-a", rs)
	api.SetPod(benchNS, "lonely", "pod-l", nil)
	rec := NewRecorder(api, apiKind)
	srv := httptest.NewServer(rec)
	defer srv.Close()
	dyn, err := dynamic.NewForConfig(&rest.Config{Host: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	// The classes client sees the policy.
	c, err := kube.Classes{Client: dyn}.GetClass(ctx, benchNS, "rev")
	if err != nil || c.VersionPolicy != kube.PolicyRevision {
		t.Fatalf("class: %+v, %v", c, err)
	}

	revs := kube.Revisions{Client: dyn}
	rev, why, err := revs.RevisionOf(ctx, provider.Pod{Namespace: benchNS, Name: "web-5d8f-a", UID: "pod-a"})
	if err != nil || rev == nil || rev.Kind != "ReplicaSet" || rev.Name != rs.Name || string(rev.UID) != rs.UID || rev.APIVersion != "apps/v1" {
		t.Fatalf("RevisionOf = %+v, %q, %v", rev, why, err)
	}
	if rev, why, err := revs.RevisionOf(ctx, provider.Pod{Namespace: benchNS, Name: "lonely", UID: "pod-l"}); err != nil || rev != nil || why == "" {
		t.Errorf("RevisionOf a pod without a controller = %+v, %q, %v", rev, why, err)
	}
	if _, _, err := revs.RevisionOf(ctx, provider.Pod{Namespace: benchNS, Name: "web-5d8f-a", UID: "other"}); err == nil {
		t.Error("RevisionOf with another pod's uid: no error")
	}
	if _, _, err := revs.RevisionOf(ctx, provider.Pod{Namespace: benchNS, Name: "gone", UID: "x"}); err == nil {
		t.Error("RevisionOf an unknown pod: no error")
	}

	records := kube.Records{Client: dyn}
	name := kube.RecordName(*rev, "rev")
	if got, err := records.Get(ctx, benchNS, name); got != nil || err != nil {
		t.Fatalf("Get before create = %+v, %v; want nil, nil (404)", got, err)
	}
	mine := &kube.VersionRecord{Namespace: benchNS, Name: name, Revision: *rev, Class: "rev",
		Objects: []provider.ObjectVersion{{ID: "arn:x", Version: "v1", Path: "sm-00", Source: "secretsmanager us-east-1 x"}}}
	if got, created, err := records.Create(ctx, mine); err != nil || !created || got != mine {
		t.Fatalf("Create = %+v, %v, %v", got, created, err)
	}
	second := *mine
	second.Objects = []provider.ObjectVersion{{ID: "arn:x", Version: "v2", Path: "sm-00", Source: "secretsmanager us-east-1 x"}}
	got, created, err := records.Create(ctx, &second)
	if err != nil || created || got == nil || len(got.Objects) != 1 || got.Objects[0] != mine.Objects[0] || got.Revision.UID != rev.UID || got.Class != "rev" {
		t.Fatalf("second Create = %+v, %v, %v; want the first record, not created (409, then GET)", got, created, err)
	}
	if api.Records() != 1 {
		t.Errorf("%d records kept, want 1", api.Records())
	}
	counts := rec.Counts()
	for kind, want := range map[string]int{apiClass: 1, apiPod: 4, apiRecordGet: 2, apiRecordCreate: 2, apiOther: 0} {
		if counts[kind] != want {
			t.Errorf("%s: %d requests, want %d (all: %v)", kind, counts[kind], want, counts)
		}
	}
}
