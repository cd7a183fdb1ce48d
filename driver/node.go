package driver

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"

	"github.com/podsecrets/podsecrets/internal/logkey"
	"github.com/podsecrets/podsecrets/kube"
	"github.com/podsecrets/podsecrets/mount"
	"github.com/podsecrets/podsecrets/provider"
	"github.com/podsecrets/podsecrets/rotation"
	"github.com/podsecrets/podsecrets/volume"
)

// NodePublishVolume implements csi.NodeServer. It reads the target's state
// from the node, never from memory, and answers OK only for a complete,
// read-only volume: a complete one is kept (and its files swapped whole when
// a rotation check finds new versions, see rotate.go), anything short of
// that is fetched and written whole or sealed (see package volume).
func (d *Driver) NodePublishVolume(ctx context.Context, req *csi.NodePublishVolumeRequest) (*csi.NodePublishVolumeResponse, error) {
	start := time.Now()
	pr, err := parsePublish(req)
	if err != nil {
		d.opts.Metrics.observePublish(noProvider, kindPublish, codeOf(err).String(), time.Since(start))
		return nil, toStatus(err)
	}
	defer d.locks.lock(pr.target)()
	log := d.log.With(logkey.VolumeID, pr.volumeID, logkey.Namespace, pr.pod.Namespace, logkey.Pod, pr.pod.Name,
		logkey.ServiceAccount, pr.pod.ServiceAccount, logkey.Class, pr.class)

	state, why, err := d.opts.Volumes.Inspect(pr.target)
	if err == nil && state == volume.Foreign {
		err = fmt.Errorf("%w; podsecrets mounts only its own tmpfs there", volume.ErrForeign)
	}
	if err != nil {
		d.opts.Metrics.observePublish(noProvider, kindPublish, codeOf(err).String(), time.Since(start))
		log.Warn("publish failed", logkey.Code, codeOf(err).String(), logkey.Error, err.Error())
		return nil, toStatus(err)
	}
	if state == volume.Complete {
		// Kubelet republishes after an answer it did not get (a driver
		// restart, a timeout) and, with requiresRepublish, about once a
		// minute. The files stay unless a due rotation check replaces
		// them whole; an error or an unmount here would take a running
		// pod's secrets away (kubernetes#121271), so this never fails.
		// At info once per volume and driver (after a restart, kubelet's
		// retry of an answer it lost lands here), then at debug: kubelet
		// republishes every volume about once a minute.
		lvl := slog.LevelDebug
		if !d.opts.Rotation.Known(pr.target) {
			lvl = slog.LevelInfo
		}
		log.Log(ctx, lvl, "republish: volume kept", logkey.State, state.String(), logkey.Why, why)
		providerName := d.republish(ctx, pr, log)
		d.opts.Metrics.observePublish(providerName, kindRepublish, codes.OK.String(), time.Since(start))
		return &csi.NodePublishVolumeResponse{}, nil
	}
	kind := kindPublish
	if state == volume.Incomplete {
		kind = kindComplete
		log.Info("republish: volume incomplete, completing it", logkey.State, state.String(), logkey.Why, why)
	}

	providerName, resp, err := d.publish(ctx, pr, state, log)
	took := time.Since(start)
	if err == nil && resp == nil {
		// Sealed: a whole set was there already (see volume.Publish).
		d.opts.Metrics.observePublish(noProvider, kind, codes.OK.String(), took)
		log.Info("volume sealed", logkey.DurationMS, ms(took))
		return &csi.NodePublishVolumeResponse{}, nil
	}
	code := codeOf(err)
	d.opts.Metrics.observePublish(providerName, kind, code.String(), took)
	if err != nil {
		if providerName != noProvider {
			d.opts.Metrics.providerError(providerName, code.String())
		}
		log.Warn("publish failed", logkey.Provider, providerName, logkey.Code, code.String(), logkey.Error, err.Error(), logkey.DurationMS, ms(took))
		return nil, toStatus(err)
	}
	msg := "volume published"
	if kind == kindComplete {
		msg = "volume completed"
	}
	log.Info(msg, logkey.Provider, providerName, logkey.Objects, versionsAttr(resp.Versions), logkey.DurationMS, ms(took))
	d.warnings(ctx, pr, log, resp.Warnings)
	// Told after the answer, not before it: the event is an API call
	// (up to seconds when the API server is slow or the client's rate
	// limit queues it), and the pod's start need not wait for its story.
	d.afterAnswer(ctx, func(ctx context.Context) {
		d.event(ctx, pr, false, reasonMounted, mountedMessage(pr.classRef(), resp.Versions, took))
	})
	return &csi.NodePublishVolumeResponse{}, nil
}

// publish brings the target from state to complete with the files of the
// pod's class. It returns the name of the provider used (noProvider if it
// failed before choosing one) for metrics, and the provider's response (nil
// when the volume was sealed without a fetch). The class is read and the
// store called inside the volume's publish, so that a failure of either
// undoes an incomplete volume like any other failure does.
func (d *Driver) publish(ctx context.Context, pr *publishRequest, state volume.State, log *slog.Logger) (string, *provider.Response, error) {
	ref := pr.classRef()
	var f fetched
	// fetchErr is the fetch's error, complete as it is: the class and
	// provider errors name the class already.
	var fetchErr error
	fetch := func(ctx context.Context) ([]mount.File, error) {
		class, err := d.opts.Classes.GetClass(ctx, pr.pod.Namespace, pr.class)
		if err != nil {
			fetchErr = err
			return nil, err
		}
		if class.VersionPolicy == kube.PolicyRevision {
			f, fetchErr = d.fetchRevision(ctx, pr, class, log)
		} else {
			f, fetchErr = d.fetch(ctx, pr, class, nil)
		}
		return f.files, fetchErr
	}
	sealed, err := d.opts.Volumes.Publish(ctx, state, volume.Volume{Target: pr.target, PodUID: pr.pod.UID, GID: pr.fsGroup, Class: ref, Fetch: fetch})
	if err != nil && err != fetchErr {
		err = fmt.Errorf("SecretProviderClass %s: %w", ref, err)
	}
	switch {
	case err != nil:
		return f.provider, nil, err
	case sealed:
		return noProvider, nil, nil
	}
	d.opts.Rotation.Published(pr.target, f.record)
	return f.provider, f.resp, nil
}

// fetched is what one fetch of a class made.
type fetched struct {
	provider string // noProvider until one was chosen
	resp     *provider.Response
	files    []mount.File // the provider's files and the volume's record
	record   rotation.Record
}

// fetch reads the files of class from its provider (a rotation check when
// held is set) and adds the volume's record to them.
func (d *Driver) fetch(ctx context.Context, pr *publishRequest, class *kube.Class, held *provider.Held) (fetched, error) {
	return d.fetchWith(ctx, pr, class, func(r *provider.Request) { r.Held = held })
}

// fetchWith is fetch with a request that edit completes.
func (d *Driver) fetchWith(ctx context.Context, pr *publishRequest, class *kube.Class, edit func(*provider.Request)) (fetched, error) {
	ref := pr.classRef()
	f := fetched{provider: noProvider}
	p, err := d.opts.Providers.Get(class.Provider)
	if err != nil {
		return f, fmt.Errorf("SecretProviderClass %s: spec.provider: %w", ref, err)
	}
	f.provider = p.Name()
	req := &provider.Request{
		Pod:        pr.pod,
		Parameters: class.Parameters,
		FSGroup:    pr.fsGroup,
		Class:      ref,
		Attributes: pr.attrs,
		Secrets:    pr.secrets,
		Target:     pr.target,
	}
	edit(req)
	r, err := p.Fetch(ctx, req)
	if err != nil {
		return f, fmt.Errorf("SecretProviderClass %s: %w", ref, err)
	}
	files := make([]mount.File, len(r.Files), len(r.Files)+1)
	for i, f := range r.Files {
		files[i] = mount.File{Path: f.Path, Mode: f.Mode, Data: f.Data}
	}
	// Checked before anything is mounted, so a bad set costs no mount and
	// gets its own message; WriteFileSet checks again as the last step
	// before the file system.
	if err := mount.ValidateFileSet(files); err != nil {
		return f, invalid("SecretProviderClass %s: provider %s returned an unusable file set: %v", ref, p.Name(), err)
	}
	f.record = rotation.Record{Class: ref, Generation: class.Generation, Refresh: class.Refresh, PollInterval: class.PollInterval, Objects: r.Versions}
	f.files = append(files, mount.File{Path: mount.RecordFile, Mode: recordMode, Data: f.record.Encode()})
	f.resp = r
	return f, nil
}

// warnings logs a provider's warnings and puts each on the pod as a Warning
// event.
func (d *Driver) warnings(ctx context.Context, pr *publishRequest, log *slog.Logger, ws []provider.Warning) {
	for _, w := range ws {
		log.Warn("class warning", logkey.Reason, w.Reason, logkey.Message, w.Message)
		d.event(ctx, pr, true, w.Reason, w.Message)
	}
}

// reasonMounted is the Normal event of a volume's first complete publish.
const reasonMounted = "SecretsMounted"

// mountedMessage is the SecretsMounted event's message: which version of
// which object the pod got, and how long its mount took; never a value.
func mountedMessage(class string, vs []provider.ObjectVersion, took time.Duration) string {
	what := "no store objects"
	if len(vs) > 0 {
		what = eventList(versionsAttr(vs))
	}
	return fmt.Sprintf("SecretProviderClass %s: mounted %s in %s", class, what, took.Round(time.Millisecond))
}

// recordMode keeps the volume's record (versions, never values) from users
// of the pod outside its fsGroup.
const recordMode = 0o440

// NodeUnpublishVolume implements csi.NodeServer. It succeeds for targets that
// are gone already: kubelet retries until it sees success.
func (d *Driver) NodeUnpublishVolume(ctx context.Context, req *csi.NodeUnpublishVolumeRequest) (*csi.NodeUnpublishVolumeResponse, error) {
	err := d.unpublish(req)
	d.opts.Metrics.observeUnpublish(codeOf(err).String())
	if err != nil {
		d.log.Warn("unpublish failed", logkey.VolumeID, req.GetVolumeId(), logkey.Error, err.Error())
		return nil, toStatus(err)
	}
	d.log.Info("volume unpublished", logkey.VolumeID, req.GetVolumeId())
	return &csi.NodeUnpublishVolumeResponse{}, nil
}

func (d *Driver) unpublish(req *csi.NodeUnpublishVolumeRequest) error {
	switch {
	case req.GetVolumeId() == "":
		return invalid("volume_id is required")
	case req.GetTargetPath() == "":
		return invalid("target_path is required")
	}
	target := req.GetTargetPath()
	defer d.locks.lock(target)()
	d.opts.Rotation.Forget(target)
	return d.opts.Volumes.Unpublish(target)
}

// versionsAttr renders object versions for the audit log as "id@version":
// which object and which version, never a value.
func versionsAttr(vs []provider.ObjectVersion) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = v.ID + "@" + v.Version
	}
	return out
}

// ms renders a duration for logs in milliseconds, the unit people read.
func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
