package driver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/podsecrets/podsecrets/internal/logkey"
	"github.com/podsecrets/podsecrets/kube"
	"github.com/podsecrets/podsecrets/provider"
	"github.com/podsecrets/podsecrets/rotation"
)

// RevisionResolver finds the workload revision of a pod; kube.Revisions on
// a node.
type RevisionResolver interface {
	// RevisionOf returns the pod's revision, or nil and why it has none.
	RevisionOf(ctx context.Context, pod provider.Pod) (*kube.Revision, string, error)
}

// RecordStore reads and creates version records; kube.Records on a node.
type RecordStore interface {
	// Get returns the record namespace/name, or nil if there is none.
	Get(ctx context.Context, namespace, name string) (*kube.VersionRecord, error)
	// Create creates rec, or returns the record that exists by its name
	// (created false).
	Create(ctx context.Context, rec *kube.VersionRecord) (*kube.VersionRecord, bool, error)
}

// Event reasons of versionPolicy Revision.
const (
	reasonVersionsAtPodStart = "VersionsAtPodStart"
	reasonRevisionDiffers    = "RevisionVersionGone"
)

// Results of a Revision mount, for metrics.
const (
	revisionFirst    = "first"    // resolved the versions and recorded them
	revisionRecorded = "recorded" // mounted the recorded versions
	revisionFallback = "fallback" // a recorded version was gone: current versions
	revisionNone     = "none"     // the pod has no revision: current versions
)

// fetchRevision is fetch for a class with versionPolicy Revision: the pods
// of one workload revision mount the versions its first pod resolved.
func (d *Driver) fetchRevision(ctx context.Context, pr *publishRequest, class *kube.Class, log *slog.Logger) (fetched, error) {
	ref := pr.classRef()
	// Checked before anything is recorded: a record that later pods
	// could not honour would promise one set of versions and mount another.
	if p, err := d.opts.Providers.Get(class.Provider); err == nil && !provider.CanPin(p) {
		return fetched{provider: p.Name()}, fmt.Errorf("SecretProviderClass %s: spec.versionPolicy Revision: %w: it needs a provider that can read a given version, and provider %s cannot (the plugin protocol has no way to ask for one); use PodStart, or pin versions in the class's parameters as the plugin allows",
			ref, provider.ErrInvalid, p.Name())
	}
	if d.opts.Revisions == nil || d.opts.Records == nil {
		return fetched{provider: noProvider}, fmt.Errorf("SecretProviderClass %s: spec.versionPolicy Revision: this driver runs without access to revisions and records", ref)
	}
	rev, why, err := d.opts.Revisions.RevisionOf(ctx, pr.pod)
	if err != nil {
		return fetched{provider: noProvider}, fmt.Errorf("SecretProviderClass %s: spec.versionPolicy Revision: %w", ref, err)
	}
	if rev == nil {
		d.opts.Metrics.revisionMount(revisionNone)
		d.event(ctx, pr, false, reasonVersionsAtPodStart, fmt.Sprintf("SecretProviderClass %s: versionPolicy Revision, but %s: the pod mounts the versions current at its start", ref, why))
		return d.fetch(ctx, pr, class, nil)
	}
	name := kube.RecordName(*rev, class.Name)
	log = log.With(logkey.Revision, rev.String(), logkey.Record, name)
	rec, err := d.opts.Records.Get(ctx, pr.pod.Namespace, name)
	if err != nil {
		return fetched{provider: noProvider}, fmt.Errorf("SecretProviderClass %s: %w", ref, err)
	}
	if rec != nil {
		return d.fetchRecorded(ctx, pr, class, rec, log)
	}
	// The first pod of the revision (as far as this node knows): mount the
	// current versions and record them. A pod on another node may record
	// first; then this one mounts the versions that pod recorded.
	f, err := d.fetch(ctx, pr, class, nil)
	if err != nil {
		return f, err
	}
	mine := &kube.VersionRecord{Namespace: pr.pod.Namespace, Name: name, Revision: *rev, Class: class.Name, Objects: f.resp.Versions}
	got, created, err := d.opts.Records.Create(ctx, mine)
	if err != nil {
		return f, fmt.Errorf("SecretProviderClass %s: %w", ref, err)
	}
	if created || rotation.Changes(got.Objects, f.resp.Versions) == nil {
		d.opts.Metrics.revisionMount(revisionFirst)
		log.Info("revision versions recorded", logkey.Objects, versionsAttr(f.resp.Versions))
		return f, nil
	}
	return d.fetchRecorded(ctx, pr, class, got, log)
}

// fetchRecorded mounts the versions of rec. A recorded version the store no
// longer has must not block a scale-up: the pod mounts the current versions
// and a Warning event says that its revision's replicas now differ.
func (d *Driver) fetchRecorded(ctx context.Context, pr *publishRequest, class *kube.Class, rec *kube.VersionRecord, log *slog.Logger) (fetched, error) {
	f, err := d.fetchPinned(ctx, pr, class, rec.Objects)
	if err == nil {
		d.opts.Metrics.revisionMount(revisionRecorded)
		return f, nil
	}
	if !errors.Is(err, provider.ErrNotFound) {
		return f, err
	}
	f, cerr := d.fetch(ctx, pr, class, nil)
	if cerr != nil {
		return f, cerr
	}
	d.opts.Metrics.revisionMount(revisionFallback)
	log.Warn("recorded versions gone; mounted the current ones", logkey.Error, err.Error(), logkey.Objects, versionsAttr(f.resp.Versions))
	d.event(ctx, pr, true, reasonRevisionDiffers, fmt.Sprintf("%v; this pod mounts the current versions instead of those of SecretVersionRecord %s/%s, "+
		"so the replicas of %s now differ", err, rec.Namespace, rec.Name, rec.Revision))
	return f, nil
}

// fetchPinned is fetch with the versions pin.
func (d *Driver) fetchPinned(ctx context.Context, pr *publishRequest, class *kube.Class, pin []provider.ObjectVersion) (fetched, error) {
	return d.fetchWith(ctx, pr, class, func(r *provider.Request) { r.Pin = pin })
}
