package driver

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"strings"
	"time"

	"github.com/podsecrets/podsecrets/internal/logkey"
	"github.com/podsecrets/podsecrets/kube"
	"github.com/podsecrets/podsecrets/mount"
	"github.com/podsecrets/podsecrets/provider"
	"github.com/podsecrets/podsecrets/rotation"
	"github.com/podsecrets/podsecrets/volume"
)

// Event reasons of rotation.
const (
	reasonRotated        = "SecretsRotated"
	reasonRotationFailed = "RotationFailed"
)

// maxEventObjects bounds the objects an event lists; the API server
// truncates messages past 1 KiB.
const maxEventObjects = 10

// ClassSignaler tells, without an API call, that a class changed or asks
// for a refresh; kube.ClassWatch on a node.
type ClassSignaler interface {
	// Signal returns what the watch last saw of the class; ok is false
	// when it does not know the class (yet).
	Signal(namespace, name string) (s kube.ClassSignal, ok bool)
}

// republish checks a complete volume against its store when its rotation is
// due and swaps a changed set in whole. It never fails the call: whatever
// goes wrong, the pod keeps the files it has, and the failure is logged,
// counted, put on the pod as a Warning event and retried with backoff. It
// returns the provider's name for metrics (noProvider when nothing was
// checked).
func (d *Driver) republish(ctx context.Context, pr *publishRequest, log *slog.Logger) string {
	var sig rotation.Signal
	if d.opts.ClassSignals != nil {
		if s, ok := d.opts.ClassSignals.Signal(pr.pod.Namespace, pr.class); ok {
			sig = rotation.Signal{Known: true, Generation: s.Generation, Refresh: s.Refresh}
		}
	}
	rec, due, why, err := d.opts.Rotation.Due(pr.target, sig, func() (rotation.Record, bool, error) {
		// The first republish this driver sees: a driver killed inside
		// a rotation's write may have left links of the old set or the
		// old version, which no check repairs if nothing changes.
		if repaired, err := d.opts.Volumes.Tidy(pr.target); err != nil {
			log.Warn("republish: tidying the volume failed", logkey.Error, err.Error())
		} else if repaired {
			log.Info("republish: volume tidied (a killed rotation's leftovers removed)")
		}
		return d.loadRecord(pr.target, log)
	})
	switch {
	case err != nil:
		log.Warn("republish: volume kept; its record is unreadable", logkey.Error, err.Error())
		return noProvider
	case !due:
		return noProvider
	}
	start := time.Now()
	providerName, changes, err := d.check(ctx, pr, rec, sig, log)
	took := time.Since(start)
	switch {
	case err != nil:
		wait := d.opts.Rotation.Failed(pr.target)
		code := codeOf(err).String()
		d.opts.Metrics.rotationCheck(providerName, checkFailed)
		log.Warn("rotation check failed; the pod keeps its files", logkey.Why, why, logkey.Provider, providerName,
			logkey.Code, code, logkey.Error, err.Error(), logkey.RetryInS, wait.Seconds(), logkey.DurationMS, ms(took))
		d.event(ctx, pr, true, reasonRotationFailed, err.Error()+"; the pod keeps its files and the check is retried")
	case changes == nil:
		d.opts.Metrics.rotationCheck(providerName, checkUnchanged)
		log.Debug("rotation check: unchanged", logkey.Why, why, logkey.DurationMS, ms(took))
	default:
		d.opts.Metrics.rotationCheck(providerName, checkRotated)
		log.Info("volume rotated", logkey.Why, why, logkey.Provider, providerName, logkey.Objects, changes, logkey.DurationMS, ms(took))
		d.event(ctx, pr, false, reasonRotated, rotatedMessage(pr.classRef(), changes))
	}
	return providerName
}

// check reads the class again, asks its provider what changed since rec
// (reusing unchanged values from the volume) and swaps the new set in if
// any file differs. changes lists the objects whose version changed, nil if
// nothing was written.
func (d *Driver) check(ctx context.Context, pr *publishRequest, rec rotation.Record, sig rotation.Signal, log *slog.Logger) (providerName string, changes []string, err error) {
	class, err := d.checkClass(ctx, pr, sig)
	if err != nil {
		return noProvider, nil, err
	}
	interval := d.opts.Rotation.Interval(class.PollInterval)
	if interval == 0 {
		// The class does not rotate (any more): the files stay, and
		// only a change of the class brings the next check.
		rec.Generation, rec.Refresh, rec.PollInterval = class.Generation, class.Refresh, 0
		d.opts.Rotation.Checked(pr.target, rec)
		return noProvider, nil, nil
	}
	held := &provider.Held{
		Objects:  rec.Objects,
		ReadFile: func(p string) ([]byte, error) { return d.opts.Volumes.ReadFile(pr.target, p) },
		MaxAge:   interval,
	}
	f := fetched{provider: noProvider}
	var fetchErr error // complete as it is: it names the class already
	fetch := func(ctx context.Context) ([]mount.File, error) {
		if f, fetchErr = d.fetch(ctx, pr, class, held); fetchErr != nil {
			return nil, fetchErr
		}
		same, err := mount.SameSet(pr.target, f.files, pr.fsGroup)
		if err != nil || same {
			return nil, err
		}
		return f.files, nil
	}
	written, err := d.opts.Volumes.Update(ctx, volume.Volume{Target: pr.target, PodUID: pr.pod.UID, GID: pr.fsGroup, Class: pr.classRef(), Fetch: fetch})
	if err != nil {
		if err != fetchErr {
			err = fmt.Errorf("SecretProviderClass %s: %w", pr.classRef(), err)
		}
		return f.provider, nil, err
	}
	d.opts.Rotation.Checked(pr.target, f.record)
	// A check's warnings (an optional object gone, a key unknown since
	// the class changed) are the pod's story as much as a publish's.
	d.warnings(ctx, pr, log, f.resp.Warnings)
	if !written {
		return f.provider, nil, nil
	}
	changes = rotation.Changes(rec.Objects, f.record.Objects)
	if changes == nil {
		changes = []string{} // the files changed, not the versions: the class did
	}
	return f.provider, changes, nil
}

// maxClasses bounds the classes kept for checks; past it the cache starts
// over, which costs one GET per class.
const maxClasses = 1024

// checkClass returns the pod's class for a check. With the class watch, a
// class read earlier whose generation and refresh annotation are still the
// watch's is reused: the 100 pods of a Deployment on a node then cost one
// GET per class change, not one per pod and interval (at 30 s, 200 GETs a
// minute per node, thousands a second for a fleet). Without the watch
// nothing says a class is unchanged, so each check reads it.
func (d *Driver) checkClass(ctx context.Context, pr *publishRequest, sig rotation.Signal) (*kube.Class, error) {
	ref := pr.classRef()
	if sig.Known {
		d.classMu.Lock()
		c := d.classes[ref]
		d.classMu.Unlock()
		if c != nil && c.Generation == sig.Generation && c.Refresh == sig.Refresh {
			return c, nil
		}
	}
	c, err := d.opts.Classes.GetClass(ctx, pr.pod.Namespace, pr.class)
	if err != nil {
		return nil, err
	}
	d.classMu.Lock()
	if d.classes == nil || len(d.classes) >= maxClasses {
		d.classes = map[string]*kube.Class{}
	}
	d.classes[ref] = c
	d.classMu.Unlock()
	return c, nil
}

// loadRecord reads the record of the volume at target. A volume without one
// was written by a driver without rotation and is kept as it is.
func (d *Driver) loadRecord(target string, log *slog.Logger) (rotation.Record, bool, error) {
	b, err := d.opts.Volumes.ReadFile(target, mount.RecordFile)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		log.Info("republish: volume has no record; it is kept and does not rotate")
		return rotation.Record{}, false, nil
	case err != nil:
		return rotation.Record{}, false, err
	}
	rec, err := rotation.Decode(b)
	if err != nil {
		log.Warn("republish: volume record unreadable; the volume is kept and does not rotate", logkey.Error, err.Error())
		return rotation.Record{}, false, nil
	}
	return rec, true, nil
}

// rotatedMessage is the SecretsRotated event's message: the class and the
// objects that changed, with versions, never values.
func rotatedMessage(class string, changes []string) string {
	if len(changes) == 0 {
		return fmt.Sprintf("SecretProviderClass %s: files rotated (the class changed; no object version did)", class)
	}
	return fmt.Sprintf("SecretProviderClass %s: rotated %s", class, eventList(changes))
}

// eventList joins the objects an event names, at most maxEventObjects of
// them: an event's message is bounded, a class's objects are not.
func eventList(items []string) string {
	if len(items) > maxEventObjects {
		return fmt.Sprintf("%s and %d more", strings.Join(items[:maxEventObjects], ", "), len(items)-maxEventObjects)
	}
	return strings.Join(items, ", ")
}
