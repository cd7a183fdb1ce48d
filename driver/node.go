package driver

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/podsecrets/podsecrets/mount"
	"github.com/podsecrets/podsecrets/provider"
)

// NodePublishVolume implements csi.NodeServer: fetch everything, then mount
// and write it in one go, so a pod starts with a complete volume or not at
// all.
func (d *Driver) NodePublishVolume(ctx context.Context, req *csi.NodePublishVolumeRequest) (*csi.NodePublishVolumeResponse, error) {
	start := time.Now()
	pr, err := parsePublish(req)
	if err != nil {
		d.opts.Metrics.observePublish("none", "publish", codeOf(err).String(), time.Since(start))
		return nil, toStatus(err)
	}
	defer d.locks.lock(pr.target)()
	log := d.log.With("volume_id", pr.volumeID, "namespace", pr.pod.Namespace, "pod", pr.pod.Name,
		"service_account", pr.pod.ServiceAccount, "class", pr.class)

	mounted, err := d.opts.Mounter.IsMountPoint(pr.target)
	if err == nil && mounted {
		// Kubelet republishes mounted volumes periodically. The files stay as
		// they are: an error or an unmount here would take a running pod's
		// secrets away (kubernetes#121271).
		d.opts.Metrics.observePublish("none", "republish", "OK", time.Since(start))
		log.Debug("republish: volume already mounted, kept")
		return &csi.NodePublishVolumeResponse{}, nil
	}
	if err != nil {
		err = fmt.Errorf("check target %s: %w", pr.target, err)
		d.opts.Metrics.observePublish("none", "publish", codeOf(err).String(), time.Since(start))
		return nil, toStatus(err)
	}

	providerName, versions, err := d.publish(ctx, pr)
	took := time.Since(start)
	code := codeOf(err)
	d.opts.Metrics.observePublish(providerName, "publish", code.String(), took)
	if err != nil {
		if providerName != "none" {
			d.opts.Metrics.errors.WithLabelValues(providerName, code.String()).Inc()
		}
		log.Warn("publish failed", "provider", providerName, "code", code.String(), "error", err.Error(), "duration_ms", ms(took))
		return nil, toStatus(err)
	}
	log.Info("volume published", "provider", providerName, "objects", versionsAttr(versions), "duration_ms", ms(took))
	return &csi.NodePublishVolumeResponse{}, nil
}

// publish fetches the volume's files and mounts them. It returns the name of
// the provider used ("none" if it failed before choosing one) for metrics.
func (d *Driver) publish(ctx context.Context, pr *publishRequest) (string, []provider.ObjectVersion, error) {
	class, err := d.opts.Classes.GetClass(ctx, pr.pod.Namespace, pr.class)
	if err != nil {
		return "none", nil, err
	}
	ref := class.Namespace + "/" + class.Name
	p, err := d.opts.Providers.Get(class.Provider)
	if err != nil {
		return "none", nil, fmt.Errorf("SecretProviderClass %s: spec.provider: %w", ref, err)
	}
	resp, err := p.Fetch(ctx, &provider.Request{
		Pod:        pr.pod,
		Parameters: class.Parameters,
		FSGroup:    pr.fsGroup,
		Class:      ref,
	})
	if err != nil {
		return p.Name(), nil, fmt.Errorf("SecretProviderClass %s: %w", ref, err)
	}
	files := make([]mount.File, len(resp.Files))
	for i, f := range resp.Files {
		files[i] = mount.File{Path: f.Path, Mode: f.Mode, Data: f.Data}
	}
	// Checked before anything is mounted, so a bad set costs no mount and
	// gets its own message; WriteFileSet checks again as the last step
	// before the file system.
	if err := mount.ValidateFileSet(files); err != nil {
		return p.Name(), nil, invalid("SecretProviderClass %s: provider %s returned an unusable file set: %v", ref, p.Name(), err)
	}
	if err := d.mountFiles(pr, files); err != nil {
		return p.Name(), nil, err
	}
	return p.Name(), resp.Versions, nil
}

// mountFiles mounts a tmpfs at the target, writes files and makes the mount
// read-only. On failure it undoes all of it, so kubelet's retry starts clean.
func (d *Driver) mountFiles(pr *publishRequest, files []mount.File) (err error) {
	created := false
	switch err := os.Mkdir(pr.target, 0o750); {
	case err == nil:
		created = true
	case !errors.Is(err, fs.ErrExist):
		return fmt.Errorf("create target: %w", err)
	}
	mounted := false
	defer func() {
		if err == nil {
			return
		}
		if mounted {
			if uerr := d.opts.Mounter.Unmount(pr.target); uerr != nil {
				d.log.Error("cleanup after failed publish", "volume_id", pr.volumeID, "error", uerr.Error())
			}
		}
		if created {
			os.Remove(pr.target)
		}
	}()
	if err := d.opts.Mounter.MountTmpfs(pr.target, mount.TmpfsOptions{SizeBytes: d.opts.TmpfsSize, GID: pr.fsGroup}); err != nil {
		return err
	}
	mounted = true
	if err := mount.WriteFileSet(pr.target, files, pr.fsGroup); err != nil {
		return fmt.Errorf("write volume files: %w", err)
	}
	return d.opts.Mounter.SetReadOnly(pr.target, true)
}

// NodeUnpublishVolume implements csi.NodeServer. It succeeds for targets that
// are gone already: kubelet retries until it sees success.
func (d *Driver) NodeUnpublishVolume(ctx context.Context, req *csi.NodeUnpublishVolumeRequest) (*csi.NodeUnpublishVolumeResponse, error) {
	err := d.unpublish(req)
	d.opts.Metrics.unpublish.WithLabelValues(codeOf(err).String()).Inc()
	if err != nil {
		d.log.Warn("unpublish failed", "volume_id", req.GetVolumeId(), "error", err.Error())
		return nil, toStatus(err)
	}
	d.log.Info("volume unpublished", "volume_id", req.GetVolumeId())
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
	mounted, err := d.opts.Mounter.IsMountPoint(target)
	if err != nil {
		return fmt.Errorf("check target %s: %w", target, err)
	}
	if mounted {
		if err := d.opts.Mounter.Unmount(target); err != nil {
			return err
		}
	}
	if err := os.Remove(target); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove target: %w", err)
	}
	return nil
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
