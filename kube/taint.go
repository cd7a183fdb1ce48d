package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/validate/content"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"

	"github.com/podsecrets/podsecrets/internal/logkey"
)

// DefaultStartupTaint is the taint key the install manifests and the Helm
// chart suggest for new nodes; the driver removes whichever key it is given.
const DefaultStartupTaint = "podsecrets.dev/agent-not-ready"

// Backoff between failed removals of the startup taint: an API server
// outage costs a line a minute at most, and the taint goes as soon as the
// API server answers again.
const (
	taintRetryFirst = time.Second
	taintRetryCap   = time.Minute
)

// taintAttemptTimeout bounds one removal's calls: the driver's client has
// no timeout of its own, and a call hung on a dead connection would
// otherwise hold the taint until the connection breaks.
const taintAttemptTimeout = 30 * time.Second

// taintPatchAttempts bounds the read-and-patch rounds of one removal that a
// concurrent change of the node's taints may cost; past it the removal
// fails and is retried with backoff.
const taintPatchAttempts = 5

// ValidateTaintKey reports whether key can be a taint's key (a qualified
// name, as for labels), so that a typo fails at start rather than leaving
// every new node tainted.
func ValidateTaintKey(key string) error {
	if errs := content.IsQualifiedName(key); len(errs) > 0 {
		return fmt.Errorf("taint key %q: %s", key, errs[0])
	}
	return nil
}

// StartupTaint removes a taint from the driver's own Node once kubelet has
// registered the driver. Pods whose volumes need the driver can schedule
// onto a new node only when their mounts can succeed: operators give new
// nodes the taint (effect NoSchedule), the DaemonSet tolerates it, and the
// driver lifts it.
//
// Kubelet tells a plugin that it is registered only after it has added the
// driver to the drivers it mounts with and written the node's CSINode
// object, so the registration callback is the signal itself, with no
// CSINode read or watch.
//
// It needs get and patch on nodes. A nil *StartupTaint does nothing.
type StartupTaint struct {
	client dynamic.Interface
	node   string
	key    string
	log    *slog.Logger
	// registered holds at most one pending registration: several before
	// Run takes one cost one removal.
	registered chan struct{}
	// after is the timer between failed removals; tests replace it.
	after func(time.Duration) <-chan time.Time
}

// NewStartupTaint returns the remover of the taint key from node; it acts
// once Run is started and Registered(true) is called. log receives what it
// did (nil: slog.Default()).
func NewStartupTaint(client dynamic.Interface, node, key string, log *slog.Logger) *StartupTaint {
	if log == nil {
		log = slog.Default()
	}
	return &StartupTaint{client: client, node: node, key: key, log: log,
		registered: make(chan struct{}, 1), after: time.After}
}

// Registered is the registration callback: ok is kubelet's verdict on the
// plugin. An accepted registration makes Run remove the taint; it never
// blocks, since kubelet waits for the callback's answer.
func (s *StartupTaint) Registered(ok bool) {
	if s == nil || !ok {
		return
	}
	select {
	case s.registered <- struct{}{}:
	default:
	}
}

// Run removes the taint after each accepted registration until ctx ends,
// retrying a failed removal with backoff (1 s doubling to 1 min). Every
// registration removes it again: kubelet registers the driver anew after
// either restarts, and a node given the taint again is lifted again. On a
// nil *StartupTaint it returns at once.
func (s *StartupTaint) Run(ctx context.Context) {
	if s == nil {
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.registered:
		}
		s.remove(ctx)
	}
}

// remove removes the taint, retrying until it succeeds or ctx ends.
func (s *StartupTaint) remove(ctx context.Context) {
	wait := taintRetryFirst
	for {
		actx, cancel := context.WithTimeout(ctx, taintAttemptTimeout)
		removed, err := RemoveTaint(actx, s.client, s.node, s.key)
		cancel()
		switch {
		case err == nil && removed:
			s.log.Info("startup taint removed: pods needing the driver may schedule here", logkey.Node, s.node, logkey.Taint, s.key)
			return
		case err == nil:
			s.log.Debug("no startup taint on the node", logkey.Node, s.node, logkey.Taint, s.key)
			return
		case ctx.Err() != nil:
			return
		}
		msg := "removing the startup taint failed; pods needing the driver stay off this node until it succeeds"
		if apierrors.IsForbidden(err) {
			msg = "removing the startup taint is forbidden: the driver's ClusterRole needs get and patch on nodes"
		}
		s.log.Warn(msg, logkey.Node, s.node, logkey.Taint, s.key, logkey.Error, err.Error(),
			logkey.RetryInS, wait.Seconds())
		select {
		case <-ctx.Done():
			return
		case <-s.after(wait):
		}
		wait = min(2*wait, taintRetryCap)
	}
}

// errTaintsChanged is a patch refused because the node's taints changed
// since they were read.
var errTaintsChanged = errors.New("the node's taints changed while being patched")

// RemoveTaint removes every taint with key (whatever its effect) from node
// and reports whether there was one. It patches with JSON patch operations
// that first test each taint's key at its index, so a concurrent change of
// the taints fails the patch instead of removing another taint; it then
// reads the node again, up to a few times. Other taints and the rest of the
// node are left as they are.
func RemoveTaint(ctx context.Context, client dynamic.Interface, node, key string) (removed bool, err error) {
	for range taintPatchAttempts {
		n, err := client.Resource(nodesGVR).Get(ctx, node, metav1.GetOptions{})
		if err != nil {
			return false, fmt.Errorf("get Node %s: %w", node, err)
		}
		patch, err := taintRemoval(n, key)
		if err != nil || patch == nil {
			return false, err
		}
		_, err = client.Resource(nodesGVR).Patch(ctx, node, types.JSONPatchType, patch, metav1.PatchOptions{})
		switch {
		case err == nil:
			return true, nil
		// The API server answers a failed test operation with 422 (Invalid);
		// 409 comes from a conflicting write.
		case apierrors.IsInvalid(err) || apierrors.IsConflict(err):
			continue
		default:
			return false, fmt.Errorf("patch Node %s: remove taint %s from spec.taints: %w", node, key, err)
		}
	}
	return false, fmt.Errorf("patch Node %s: remove taint %s from spec.taints: %w (%d attempts)", node, key, errTaintsChanged, taintPatchAttempts)
}

// taintRemoval returns the JSON patch removing the taints with key from n,
// or nil when n has none.
func taintRemoval(n *unstructured.Unstructured, key string) ([]byte, error) {
	taints, _, err := unstructured.NestedSlice(n.Object, "spec", "taints")
	if err != nil {
		return nil, fmt.Errorf("Node %s: spec.taints: %w", n.GetName(), err)
	}
	type op struct {
		Op    string `json:"op"`
		Path  string `json:"path"`
		Value any    `json:"value,omitempty"`
	}
	var ops []op
	// From the last index down, so that a removal does not move the
	// taints still to be removed.
	for i := len(taints) - 1; i >= 0; i-- {
		t, _ := taints[i].(map[string]any)
		if t["key"] != key {
			continue
		}
		at := "/spec/taints/" + strconv.Itoa(i)
		ops = append(ops, op{Op: "test", Path: at + "/key", Value: key}, op{Op: "remove", Path: at})
	}
	if ops == nil {
		return nil, nil
	}
	return json.Marshal(ops)
}
