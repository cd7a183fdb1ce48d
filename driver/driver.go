// Package driver is the podsecrets CSI node plugin: the Identity and Node
// services kubelet calls, the kubelet plugin registration, and the health and
// metrics endpoints. It turns each NodePublishVolume into one provider fetch
// and one tmpfs holding the result.
package driver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/podsecrets/podsecrets/internal/logkey"
	"github.com/podsecrets/podsecrets/kube"
	"github.com/podsecrets/podsecrets/provider"
	"github.com/podsecrets/podsecrets/rotation"
	"github.com/podsecrets/podsecrets/volume"
)

// Name is the CSI driver name pods refer to in volumes[].csi.driver.
const Name = "csi.podsecrets.dev"

// Options wire a Driver to its collaborators.
type Options struct {
	// NodeID is reported by NodeGetInfo; kubelet expects the node name.
	NodeID string
	// Version is reported by GetPluginInfo.
	Version string
	// Providers resolves SecretProviderClass spec.provider.
	Providers *provider.Registry
	// Classes reads SecretProviderClasses.
	Classes ClassGetter
	// Volumes mounts, writes and unmounts the volumes.
	Volumes *volume.Manager
	// Rotation decides when a volume is checked against its store and
	// remembers what each holds; a Tracker with the default floor if nil.
	Rotation *rotation.Tracker
	// ClassSignals, when set, tells that a class changed or asks for a
	// refresh, so the next republish of its volumes checks at once.
	ClassSignals ClassSignaler
	// Revisions and Records, when set, serve classes with versionPolicy
	// Revision; without them such a class fails its mounts.
	Revisions RevisionResolver
	Records   RecordStore
	// Events, when set, puts events on pods: Warning for trouble that
	// does not fail a mount, Normal for rotations.
	Events EventSink
	// Logger receives the audit trail and errors; never values or tokens.
	Logger *slog.Logger
	// Metrics, when set, counts calls; see NewMetrics.
	Metrics *Metrics
}

// EventSink puts events on pods. Implementations rate-limit and aggregate;
// the driver calls it for every warning.
type EventSink interface {
	// Warn records a Warning event with reason and message on pod. It
	// never fails the caller: events are best effort.
	Warn(ctx context.Context, pod provider.Pod, reason, message string)
	// Normal records a Normal event, as Warn does.
	Normal(ctx context.Context, pod provider.Pod, reason, message string)
}

// Driver implements the CSI Identity and Node services.
type Driver struct {
	csi.UnimplementedIdentityServer
	csi.UnimplementedNodeServer

	opts  Options
	log   *slog.Logger
	locks keyedMutex
	ready atomic.Bool

	classMu sync.Mutex
	classes map[string]*kube.Class // read for checks; see checkClass

	later sync.WaitGroup // work started by afterAnswer
}

// afterAnswer runs f beside the answer to kubelet, with ctx's values but
// not its end, which comes with the answer.
func (d *Driver) afterAnswer(ctx context.Context, f func(context.Context)) {
	ctx = context.WithoutCancel(ctx)
	d.later.Add(1)
	go func() {
		defer d.later.Done()
		f(ctx)
	}()
}

// New returns a Driver; it does not start serving. Providers, Classes and
// Volumes are required.
func New(opts Options) (*Driver, error) {
	switch {
	case opts.Providers == nil:
		return nil, errors.New("driver: Options.Providers is required")
	case opts.Classes == nil:
		return nil, errors.New("driver: Options.Classes is required")
	case opts.Volumes == nil:
		return nil, errors.New("driver: Options.Volumes is required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Metrics == nil {
		opts.Metrics = NewMetrics(nil)
	}
	if opts.Rotation == nil {
		opts.Rotation = &rotation.Tracker{}
	}
	return &Driver{opts: opts, log: opts.Logger}, nil
}

// Recover is the driver's start: it learns the state of every volume below
// podsDir (kubelet's pods directory) from the node and logs it. Complete
// volumes serve their pods as they are; incomplete ones, left by a driver
// killed mid-publish, are completed by kubelet's retry of their publish,
// which never got an answer.
func (d *Driver) Recover(podsDir string) error {
	found, err := d.opts.Volumes.Recover(podsDir)
	counts := map[volume.State]int{}
	for _, f := range found {
		counts[f.State]++
		if f.State != volume.Complete {
			d.log.Info("start: volume found", logkey.Target, f.Target, logkey.State, f.State.String(), logkey.Why, f.Why, logkey.Bytes, f.Bytes)
		}
	}
	if err != nil {
		return fmt.Errorf("find volumes at start: %w", err)
	}
	d.log.Info("start: volumes on the node", volume.Complete.String(), counts[volume.Complete],
		volume.Incomplete.String(), counts[volume.Incomplete], volume.Foreign.String(), counts[volume.Foreign])
	return nil
}

// SetReady records whether the driver can serve kubelet; Probe and /readyz
// report it.
func (d *Driver) SetReady(ready bool) { d.ready.Store(ready) }

// Ready reports what SetReady last recorded.
func (d *Driver) Ready() bool { return d.ready.Load() }

// GetPluginInfo implements csi.IdentityServer.
func (d *Driver) GetPluginInfo(context.Context, *csi.GetPluginInfoRequest) (*csi.GetPluginInfoResponse, error) {
	return &csi.GetPluginInfoResponse{Name: Name, VendorVersion: d.opts.Version}, nil
}

// GetPluginCapabilities implements csi.IdentityServer. The driver is
// node-only: no CONTROLLER_SERVICE, so there is nothing to advertise.
func (d *Driver) GetPluginCapabilities(context.Context, *csi.GetPluginCapabilitiesRequest) (*csi.GetPluginCapabilitiesResponse, error) {
	return &csi.GetPluginCapabilitiesResponse{}, nil
}

// Probe implements csi.IdentityServer.
func (d *Driver) Probe(context.Context, *csi.ProbeRequest) (*csi.ProbeResponse, error) {
	return &csi.ProbeResponse{Ready: wrapperspb.Bool(d.Ready())}, nil
}

// NodeGetInfo implements csi.NodeServer.
func (d *Driver) NodeGetInfo(context.Context, *csi.NodeGetInfoRequest) (*csi.NodeGetInfoResponse, error) {
	return &csi.NodeGetInfoResponse{NodeId: d.opts.NodeID}, nil
}

// NodeGetCapabilities implements csi.NodeServer. VOLUME_MOUNT_GROUP makes
// kubelet hand us the pod's fsGroup instead of chowning the volume itself,
// which it could not do on a read-only mount.
func (d *Driver) NodeGetCapabilities(context.Context, *csi.NodeGetCapabilitiesRequest) (*csi.NodeGetCapabilitiesResponse, error) {
	return &csi.NodeGetCapabilitiesResponse{Capabilities: []*csi.NodeServiceCapability{{
		Type: &csi.NodeServiceCapability_Rpc{Rpc: &csi.NodeServiceCapability_RPC{
			Type: csi.NodeServiceCapability_RPC_VOLUME_MOUNT_GROUP,
		}},
	}}}, nil
}

// keyedMutex serialises work per key while letting different keys run in
// parallel. Entries are dropped when unused so the map does not grow with
// every pod the node has ever run.
type keyedMutex struct {
	mu    sync.Mutex
	locks map[string]*keyedEntry
}

type keyedEntry struct {
	mu   sync.Mutex
	refs int
}

func (k *keyedMutex) lock(key string) (unlock func()) {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = make(map[string]*keyedEntry)
	}
	e := k.locks[key]
	if e == nil {
		e = &keyedEntry{}
		k.locks[key] = e
	}
	e.refs++
	k.mu.Unlock()
	e.mu.Lock()
	return func() {
		e.mu.Unlock()
		k.mu.Lock()
		if e.refs--; e.refs == 0 {
			delete(k.locks, key)
		}
		k.mu.Unlock()
	}
}

// event puts an event on the pod, if the driver has an event sink: the one
// place events are sent from.
func (d *Driver) event(ctx context.Context, pr *publishRequest, warning bool, reason, message string) {
	switch {
	case d.opts.Events == nil:
	case warning:
		d.opts.Events.Warn(ctx, pr.pod, reason, message)
	default:
		d.opts.Events.Normal(ctx, pr.pod, reason, message)
	}
}
