// Package kube holds the driver's adapters to the Kubernetes API server. They
// use the dynamic and metadata clients only: the typed clientset links every
// API group's types into the binary, doubling its size and every node's
// driver memory.
package kube

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"

	"github.com/podsecrets/podsecrets/internal/logkey"
	"github.com/podsecrets/podsecrets/provider"
)

var eventsGVR = schema.GroupVersionResource{Version: "v1", Resource: "events"}

// Component is the events' source and reporting controller.
const Component = "csi.podsecrets.dev"

// Aggregation of repeated events, as kubelet's event correlator does: the
// same reason and message on the same pod within window is one event whose
// count grows, and it is written at most once per minInterval, so a pod that
// kubelet retries every few seconds costs the API server little.
const (
	window      = 10 * time.Minute
	minInterval = 30 * time.Second
	// maxTracked bounds the memory of the aggregation: past it, the oldest
	// entries are forgotten and their next repeat starts a new event.
	maxTracked = 4096
)

// Events puts events on pods through the API server: create for a new
// event, patch of count and lastTimestamp for a repeat. It needs create and
// patch on events, nothing else.
type Events struct {
	Client dynamic.Interface
	// Node names the reporting instance.
	Node string
	// Logger receives the failures of event writes, which never fail a
	// mount.
	Logger *slog.Logger
	// Now is the clock; time.Now if nil.
	Now func() time.Time

	mu   sync.Mutex
	seen map[eventKey]*eventEntry
}

type eventKey struct {
	uid, eventType, reason, message string
}

// Event types, as the API server knows them.
const (
	eventNormal  = "Normal"
	eventWarning = "Warning"
)

type eventEntry struct {
	name        string // the Event object's name
	count       int
	first, last time.Time // event times
	written     time.Time // when count was last written
}

// Warn implements driver.EventSink: a Warning event on pod, for trouble that
// does not fail the mount.
func (e *Events) Warn(ctx context.Context, pod provider.Pod, reason, message string) {
	e.record(ctx, pod, eventWarning, reason, message)
}

// Normal records a Normal event on pod, e.g. that a rotation changed the
// files of its volume. It is aggregated as Warn is: a reason and message
// repeated on the same pod count up one event instead of writing many.
func (e *Events) Normal(ctx context.Context, pod provider.Pod, reason, message string) {
	e.record(ctx, pod, eventNormal, reason, message)
}

// record is Warn and Normal: the type is part of the aggregation key, so a
// Normal and a Warning with the same reason and message stay two events.
func (e *Events) record(ctx context.Context, pod provider.Pod, eventType, reason, message string) {
	now := e.now()
	key := eventKey{pod.UID, eventType, reason, message}
	e.mu.Lock()
	if e.seen == nil {
		e.seen = map[eventKey]*eventEntry{}
	}
	ent := e.seen[key]
	if ent != nil && now.Sub(ent.last) > window {
		ent = nil
	}
	if ent == nil {
		if len(e.seen) >= maxTracked {
			e.forgetOldest()
		}
		ent = &eventEntry{first: now}
		e.seen[key] = ent
	}
	ent.count++
	ent.last = now
	create := ent.name == ""
	due := create || now.Sub(ent.written) >= minInterval
	if !due {
		e.mu.Unlock()
		return
	}
	if create {
		ent.name = fmt.Sprintf("%s.%x", pod.Name, now.UnixNano())
	}
	name, count, first := ent.name, ent.count, ent.first
	ent.written = now
	e.mu.Unlock()

	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var err error
	if create {
		err = e.create(ctx, pod, name, eventType, reason, message, first, now)
	} else {
		patch := fmt.Sprintf(`{"count":%d,"lastTimestamp":%q}`, count, now.UTC().Format(time.RFC3339))
		_, err = e.Client.Resource(eventsGVR).Namespace(pod.Namespace).Patch(ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
	}
	if err != nil && e.Logger != nil {
		e.Logger.Warn("event not recorded", logkey.Namespace, pod.Namespace, logkey.Pod, pod.Name, logkey.Reason, reason, logkey.Error, err.Error())
	}
}

func (e *Events) create(ctx context.Context, pod provider.Pod, name, eventType, reason, message string, first, now time.Time) error {
	ev := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1",
		"kind":       "Event",
		"metadata":   map[string]any{"name": name, "namespace": pod.Namespace},
		"involvedObject": map[string]any{
			"apiVersion": "v1", "kind": "Pod", "namespace": pod.Namespace, "name": pod.Name, "uid": pod.UID,
		},
		"reason":             reason,
		"message":            message,
		"type":               eventType,
		"count":              int64(1),
		"firstTimestamp":     first.UTC().Format(time.RFC3339),
		"lastTimestamp":      now.UTC().Format(time.RFC3339),
		"source":             map[string]any{"component": Component, "host": e.Node},
		"reportingComponent": Component,
		"reportingInstance":  e.Node,
	}}
	_, err := e.Client.Resource(eventsGVR).Namespace(pod.Namespace).Create(ctx, ev, metav1.CreateOptions{})
	return err
}

func (e *Events) forgetOldest() {
	var oldest eventKey
	var at time.Time
	for k, v := range e.seen {
		if at.IsZero() || v.last.Before(at) {
			oldest, at = k, v.last
		}
	}
	delete(e.seen, oldest)
}

func (e *Events) now() time.Time {
	if e.Now != nil {
		return e.Now()
	}
	return time.Now()
}
