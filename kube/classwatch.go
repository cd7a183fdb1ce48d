package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/tools/cache"

	"github.com/podsecrets/podsecrets/internal/logkey"
)

// ClassSignal is what the watch knows of a class: enough to tell that its
// spec or its refresh annotation changed.
type ClassSignal struct {
	// Generation is metadata.generation, which the API server raises on
	// every change of the spec (and only then).
	Generation int64
	// Refresh is the value of RefreshAnnotation, "" if absent.
	Refresh string
}

// ClassWatch follows every SecretProviderClass of the cluster through a
// metadata-only list and watch, so that a republish can tell at no API cost
// whether its class changed or was asked to refresh. Kubelet republishes
// every mounted volume about once a minute: a GET of the class each time
// would be one API call per volume per minute from every node.
//
// A metadata watch sends object metadata only, never the spec, and the watch
// keeps, per class, its namespace, name, generation and refresh annotation:
// roughly a hundred bytes, where an informer's cache would hold the whole
// object (labels, other annotations, managed fields) on every node.
//
// It needs list and watch on secretproviderclasses. A nil *ClassWatch is
// valid: it knows no class, so the driver can run without one.
type ClassWatch struct {
	client metadata.Interface
	log    *slog.Logger
	// backoff between failed list-and-watch rounds; nil: the reflector's
	// (0.8 s doubling to 30 s). Tests shorten it.
	backoff *wait.Backoff

	mu      sync.RWMutex
	synced  bool
	classes map[classKey]ClassSignal
}

type classKey struct{ namespace, name string }

// NewClassWatch returns a watch of the classes through client; it starts
// with Run. log receives list and watch failures (nil: slog.Default()).
func NewClassWatch(client metadata.Interface, log *slog.Logger) *ClassWatch {
	if log == nil {
		log = slog.Default()
	}
	return &ClassWatch{client: client, log: log, classes: map[classKey]ClassSignal{}}
}

// Run lists and watches the classes of all namespaces until ctx ends. After
// an error it lists again, with client-go's reflector backoff (0.8 s
// doubling to 30 s), so an API server outage costs it little; Signal keeps
// answering from what was last seen meanwhile. Failures are logged to the
// watch's logger; client-go's reflector also reports them through klog on
// stderr, which the driver does not configure. Call Run once; on a nil
// *ClassWatch it returns at once.
func (w *ClassWatch) Run(ctx context.Context) {
	if w == nil {
		return
	}
	res := w.client.Resource(ClassGVR)
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			l, err := res.List(ctx, opts)
			if err != nil {
				w.failed(ctx, "list", err)
				return nil, err
			}
			return l, nil
		},
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			wi, err := res.Watch(ctx, opts)
			if err != nil {
				w.failed(ctx, "watch", err)
			}
			return wi, err
		},
	}
	// Passing the client lets the reflector see that a fake client cannot
	// stream lists (WatchList) and fall back to list-then-watch.
	r := cache.NewReflectorWithOptions(cache.ToListWatcherWithWatchListSemantics(lw, w.client),
		&metav1.PartialObjectMetadata{}, (*signalStore)(w),
		cache.ReflectorOptions{Name: "podsecrets SecretProviderClass metadata", TypeDescription: ClassGVR.String(), Backoff: w.backoff})
	r.RunWithContext(ctx)
}

// failed logs a failed list or watch call. The reflector retries with
// backoff, so an API server that stays down costs one line every 30 s once
// the backoff is at its cap; a Forbidden names the missing permission
// because it never heals by itself.
func (w *ClassWatch) failed(ctx context.Context, verb string, err error) {
	if ctx.Err() != nil {
		return
	}
	msg := "SecretProviderClass " + verb + " failed, retrying with backoff; refresh annotations and class changes go unseen meanwhile"
	if apierrors.IsForbidden(err) {
		msg = "SecretProviderClass " + verb + " forbidden: the driver's ClusterRole needs get, list and watch on secretproviderclasses.podsecrets.dev"
	}
	w.log.Warn(msg, logkey.Error, err.Error())
}

// Synced reports whether the first list has completed: before it, Signal
// knows no class.
func (w *ClassWatch) Synced() bool {
	if w == nil {
		return false
	}
	w.mu.RLock()
	defer w.mu.RUnlock()
	return w.synced
}

// Signal returns the class's generation and refresh annotation as last seen;
// ok is false before the first list completed or when the class is unknown
// (deleted).
func (w *ClassWatch) Signal(namespace, name string) (s ClassSignal, ok bool) {
	if w == nil {
		return ClassSignal{}, false
	}
	w.mu.RLock()
	defer w.mu.RUnlock()
	if !w.synced {
		return ClassSignal{}, false
	}
	s, ok = w.classes[classKey{namespace, name}]
	return s, ok
}

// signalStore is the reflector's store: it keeps the signal of each object
// and drops the object. A distinct type keeps the store's methods out of
// ClassWatch's API.
type signalStore ClassWatch

var _ cache.TransformingStore = (*signalStore)(nil)

func signalOf(obj any) (classKey, ClassSignal, error) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	m, err := meta.Accessor(obj)
	if err != nil {
		return classKey{}, ClassSignal{}, fmt.Errorf("SecretProviderClass watch: %w", err)
	}
	return classKey{m.GetNamespace(), m.GetName()},
		ClassSignal{Generation: m.GetGeneration(), Refresh: m.GetAnnotations()[RefreshAnnotation]}, nil
}

func (s *signalStore) set(obj any) error {
	k, sig, err := signalOf(obj)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.classes[k] = sig
	s.mu.Unlock()
	return nil
}

// Add implements cache.ReflectorStore.
func (s *signalStore) Add(obj any) error { return s.set(obj) }

// Update implements cache.ReflectorStore.
func (s *signalStore) Update(obj any) error { return s.set(obj) }

// Delete implements cache.ReflectorStore.
func (s *signalStore) Delete(obj any) error {
	k, _, err := signalOf(obj)
	if err != nil {
		return err
	}
	s.mu.Lock()
	delete(s.classes, k)
	s.mu.Unlock()
	return nil
}

// Replace implements cache.ReflectorStore: a (re)list replaces everything,
// which is how a class deleted while the watch was down disappears.
func (s *signalStore) Replace(objs []any, _ string) error {
	m := make(map[classKey]ClassSignal, len(objs))
	var errs []error
	for _, o := range objs {
		k, sig, err := signalOf(o)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		m[k] = sig
	}
	s.mu.Lock()
	s.classes, s.synced = m, true
	s.mu.Unlock()
	return errors.Join(errs...)
}

// Resync implements cache.ReflectorStore; there is nothing to resync.
func (s *signalStore) Resync() error { return nil }

// Transformer implements cache.TransformingStore. A streamed list
// (WatchList) gathers every object in a temporary store before Replace;
// stripping them to the fields the signal needs keeps that peak small on a
// cluster of many classes, each of which carries managed fields and
// annotations (kubectl's last-applied-configuration: a copy of the spec).
func (s *signalStore) Transformer() cache.TransformFunc { return stripClass }

// stripClass reduces an object to what signalOf reads, plus the resource
// version the reflector compares.
func stripClass(obj any) (any, error) {
	m, err := meta.Accessor(obj)
	if err != nil {
		return obj, nil // not an object (e.g. a tombstone): leave it to the store
	}
	out := &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{
		Namespace:       m.GetNamespace(),
		Name:            m.GetName(),
		Generation:      m.GetGeneration(),
		ResourceVersion: m.GetResourceVersion(),
	}}
	if v, ok := m.GetAnnotations()[RefreshAnnotation]; ok {
		out.Annotations = map[string]string{RefreshAnnotation: v}
	}
	return out, nil
}
