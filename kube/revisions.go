package kube

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"

	"github.com/podsecrets/podsecrets/provider"
)

// Pinning versions per workload revision (spec.versionPolicy: Revision).
//
// The first pod of a revision mounts the current versions and records them
// in a SecretVersionRecord owned by the revision's object; every later pod
// of the revision mounts the recorded versions by ID. First pods on
// different nodes race through create: the API server lets one win, and the
// losers mount the winner's versions. The record is garbage-collected with
// its revision, and a rollback, which brings an old ReplicaSet back, brings
// its record back with it.
//
// It needs get on pods (owner references, revision labels), get on
// controllerrevisions (the UID a record's owner reference needs for
// StatefulSets and DaemonSets) and get and create on its own records:
// nothing on Secrets, and no write on any workload object.

var (
	podsGVR      = schema.GroupVersionResource{Version: "v1", Resource: "pods"}
	revisionsGVR = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "controllerrevisions"}
	// RecordGVR is the SecretVersionRecord resource.
	RecordGVR = schema.GroupVersionResource{Group: "podsecrets.dev", Version: "v1", Resource: "secretversionrecords"}
)

// revisionLabel is the label StatefulSet and DaemonSet pods carry with the
// name (StatefulSet) or hash (DaemonSet) of their ControllerRevision.
const revisionLabel = "controller-revision-hash"

// Revision is the object one workload revision is: a Deployment's
// ReplicaSet, a StatefulSet's or DaemonSet's ControllerRevision, a Job. It
// owns the revision's records.
type Revision struct {
	APIVersion string
	Kind       string
	Name       string
	UID        types.UID
}

// String is "Kind/name", for messages.
func (r Revision) String() string { return r.Kind + "/" + r.Name }

// Revisions finds the revision of a pod.
type Revisions struct {
	Client dynamic.Interface
}

// RevisionOf returns the revision pod belongs to, or nil and why when it
// has none (no controller, or a controller whose revisions podsecrets does
// not know).
func (k Revisions) RevisionOf(ctx context.Context, pod provider.Pod) (*Revision, string, error) {
	u, err := k.Client.Resource(podsGVR).Namespace(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
	if err != nil {
		return nil, "", fmt.Errorf("get pod %s/%s for its revision: %w", pod.Namespace, pod.Name, err)
	}
	if string(u.GetUID()) != pod.UID {
		return nil, "", fmt.Errorf("pod %s/%s: the API server has uid %s, the volume's pod %s: the pod was replaced", pod.Namespace, pod.Name, u.GetUID(), pod.UID)
	}
	owner := metav1.GetControllerOf(u)
	if owner == nil {
		return nil, "the pod has no controller", nil
	}
	switch owner.Kind {
	case "ReplicaSet", "Job":
		return &Revision{APIVersion: owner.APIVersion, Kind: owner.Kind, Name: owner.Name, UID: owner.UID}, "", nil
	case "StatefulSet", "DaemonSet":
		label := u.GetLabels()[revisionLabel]
		if label == "" {
			return nil, "", fmt.Errorf("pod %s/%s of %s %s has no %s label", pod.Namespace, pod.Name, owner.Kind, owner.Name, revisionLabel)
		}
		// A StatefulSet's label is the ControllerRevision's name, a
		// DaemonSet's its hash, the name being "<daemonset>-<hash>".
		for _, name := range []string{label, owner.Name + "-" + label} {
			cr, err := k.Client.Resource(revisionsGVR).Namespace(pod.Namespace).Get(ctx, name, metav1.GetOptions{})
			switch {
			case apierrors.IsNotFound(err):
				continue
			case err != nil:
				return nil, "", fmt.Errorf("get ControllerRevision %s/%s: %w", pod.Namespace, name, err)
			}
			return &Revision{APIVersion: "apps/v1", Kind: "ControllerRevision", Name: cr.GetName(), UID: cr.GetUID()}, "", nil
		}
		return nil, "", fmt.Errorf("pod %s/%s: no ControllerRevision for its %s label %q", pod.Namespace, pod.Name, revisionLabel, label)
	}
	return nil, fmt.Sprintf("its controller is a %s, whose revisions podsecrets does not know", owner.Kind), nil
}

// VersionRecord is a SecretVersionRecord: the versions the pods of one
// revision mount from one class. Object IDs and versions only, never values.
type VersionRecord struct {
	Namespace string
	Name      string
	Revision  Revision
	Class     string // the class's name, in Namespace
	Objects   []provider.ObjectVersion
}

// RecordName is the name of the record of rev and class: the revision's
// name, the class's and the revision's UID, so that a revision deleted and
// made again under the same name gets a record of its own.
func RecordName(rev Revision, class string) string {
	uid := strings.ReplaceAll(string(rev.UID), "-", "")
	if len(uid) > 8 {
		uid = uid[:8]
	}
	name := strings.ToLower(rev.Name + "." + class + "." + uid)
	if len(name) <= 253 {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	return strings.ToLower(rev.Name[:min(len(rev.Name), 200)] + "." + hex.EncodeToString(sum[:8]))
}

// ErrRecordInvalid: a record that podsecrets cannot use.
var ErrRecordInvalid = errors.New("SecretVersionRecord invalid")

// Records reads and creates SecretVersionRecords.
type Records struct {
	Client dynamic.Interface
}

// Get returns the record namespace/name, or nil if there is none.
func (k Records) Get(ctx context.Context, namespace, name string) (*VersionRecord, error) {
	u, err := k.Client.Resource(RecordGVR).Namespace(namespace).Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("get SecretVersionRecord %s/%s: %w", namespace, name, err)
	}
	return recordFrom(u)
}

// Create creates rec unless a record of that name exists; then it returns
// the existing one and created is false: the first pod of a revision to get
// there wins, and the others mount its versions.
func (k Records) Create(ctx context.Context, rec *VersionRecord) (got *VersionRecord, created bool, err error) {
	u := recordObject(rec)
	_, err = k.Client.Resource(RecordGVR).Namespace(rec.Namespace).Create(ctx, u, metav1.CreateOptions{})
	switch {
	case err == nil:
		return rec, true, nil
	case apierrors.IsAlreadyExists(err):
		got, err := k.Get(ctx, rec.Namespace, rec.Name)
		if err == nil && got == nil {
			err = fmt.Errorf("SecretVersionRecord %s/%s exists and is gone: deleted meanwhile", rec.Namespace, rec.Name)
		}
		return got, false, err
	}
	return nil, false, fmt.Errorf("create SecretVersionRecord %s/%s: %w", rec.Namespace, rec.Name, err)
}

func recordObject(rec *VersionRecord) *unstructured.Unstructured {
	objs := make([]any, len(rec.Objects))
	summary := make([]string, len(rec.Objects))
	for i, o := range rec.Objects {
		objs[i] = map[string]any{"path": o.Path, "id": o.ID, "version": o.Version, "source": o.Source}
		summary[i] = o.Path + "=" + o.Version
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": RecordGVR.GroupVersion().String(),
		"kind":       "SecretVersionRecord",
		"metadata": map[string]any{
			"name":      rec.Name,
			"namespace": rec.Namespace,
			"ownerReferences": []any{map[string]any{
				"apiVersion": rec.Revision.APIVersion,
				"kind":       rec.Revision.Kind,
				"name":       rec.Revision.Name,
				"uid":        string(rec.Revision.UID),
			}},
		},
		"spec": map[string]any{
			"class":    rec.Class,
			"revision": map[string]any{"kind": rec.Revision.Kind, "name": rec.Revision.Name},
			"versions": strings.Join(summary, ", "),
			"objects":  objs,
		},
	}}
}

func recordFrom(u *unstructured.Unstructured) (*VersionRecord, error) {
	ref := u.GetNamespace() + "/" + u.GetName()
	rec := &VersionRecord{Namespace: u.GetNamespace(), Name: u.GetName()}
	rec.Class, _, _ = unstructured.NestedString(u.Object, "spec", "class")
	for _, o := range u.GetOwnerReferences() {
		rec.Revision = Revision{APIVersion: o.APIVersion, Kind: o.Kind, Name: o.Name, UID: o.UID}
	}
	objs, _, err := unstructured.NestedSlice(u.Object, "spec", "objects")
	if err != nil {
		return nil, fmt.Errorf("%w: %s: spec.objects: %v", ErrRecordInvalid, ref, err)
	}
	for i, o := range objs {
		m, ok := o.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%w: %s: spec.objects[%d] is not an object", ErrRecordInvalid, ref, i)
		}
		var v provider.ObjectVersion
		for field, dst := range map[string]*string{"path": &v.Path, "id": &v.ID, "version": &v.Version, "source": &v.Source} {
			s, _ := m[field].(string)
			*dst = s
		}
		if v.Path == "" || v.Version == "" {
			return nil, fmt.Errorf("%w: %s: spec.objects[%d] needs path and version", ErrRecordInvalid, ref, i)
		}
		rec.Objects = append(rec.Objects, v)
	}
	return rec, nil
}
