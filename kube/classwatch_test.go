package kube

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	metadatafake "k8s.io/client-go/metadata/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/podsecrets/podsecrets/test/logbuf"
)

// metadataClient is a fake metadata client holding objs.
func metadataClient(t *testing.T, objs ...runtime.Object) *metadatafake.FakeMetadataClient {
	t.Helper()
	scheme := metadatafake.NewTestScheme()
	if err := metav1.AddMetaToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	return metadatafake.NewSimpleMetadataClient(scheme, objs...)
}

func classMeta(ns, name string, gen int64, annotations map[string]string) *metav1.PartialObjectMetadata {
	return &metav1.PartialObjectMetadata{
		TypeMeta:   metav1.TypeMeta{APIVersion: ClassGVR.GroupVersion().String(), Kind: "SecretProviderClass"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Generation: gen, Annotations: annotations},
	}
}

// startWatch runs w in the current synctest bubble and waits until the
// watch has settled (listed and watching, or backing off). The returned
// function stops it and waits for Run to return.
func startWatch(t *testing.T, w *ClassWatch) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.Run(ctx)
	}()
	synctest.Wait()
	return func() {
		cancel()
		<-done
	}
}

func wantSignal(t *testing.T, w *ClassWatch, ns, name string, want ClassSignal) {
	t.Helper()
	got, ok := w.Signal(ns, name)
	if !ok || got != want {
		t.Errorf("Signal(%s, %s) = %+v, %v; want %+v, true", ns, name, got, ok, want)
	}
}

func wantNoSignal(t *testing.T, w *ClassWatch, ns, name string) {
	t.Helper()
	if got, ok := w.Signal(ns, name); ok {
		t.Errorf("Signal(%s, %s) = %+v, true; want not known", ns, name, got)
	}
}

func TestClassWatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		client := metadataClient(t,
			classMeta("app", "db", 1, nil),
			classMeta("web", "tls", 4, map[string]string{RefreshAnnotation: "r1", "kubectl.kubernetes.io/last-applied-configuration": "{}"}),
		)
		tracker := client.Tracker()
		w := NewClassWatch(client, slog.New(slog.DiscardHandler))
		if w.Synced() {
			t.Fatal("synced before Run")
		}
		wantNoSignal(t, w, "app", "db")
		stop := startWatch(t, w)
		defer stop()

		if !w.Synced() {
			t.Fatal("not synced after the first list")
		}
		wantSignal(t, w, "app", "db", ClassSignal{Generation: 1})
		wantSignal(t, w, "web", "tls", ClassSignal{Generation: 4, Refresh: "r1"})
		wantNoSignal(t, w, "app", "tls") // a class is found in its own namespace only

		steps := []struct {
			name   string
			change func() error
			ns, n  string
			want   *ClassSignal // nil: the class is gone
		}{
			{"annotation", func() error {
				return tracker.Update(ClassGVR, classMeta("app", "db", 1, map[string]string{RefreshAnnotation: "now"}), "app")
			}, "app", "db", &ClassSignal{Generation: 1, Refresh: "now"}},
			{"generation", func() error {
				return tracker.Update(ClassGVR, classMeta("app", "db", 2, map[string]string{RefreshAnnotation: "now"}), "app")
			}, "app", "db", &ClassSignal{Generation: 2, Refresh: "now"}},
			{"annotation-removed", func() error {
				return tracker.Update(ClassGVR, classMeta("web", "tls", 4, nil), "web")
			}, "web", "tls", &ClassSignal{Generation: 4}},
			{"add", func() error {
				return tracker.Add(classMeta("app", "cache", 1, map[string]string{RefreshAnnotation: "x"}))
			}, "app", "cache", &ClassSignal{Generation: 1, Refresh: "x"}},
			{"delete", func() error { return tracker.Delete(ClassGVR, "app", "db") }, "app", "db", nil},
		}
		for _, s := range steps {
			if err := s.change(); err != nil {
				t.Fatalf("%s: %v", s.name, err)
			}
			synctest.Wait() // the watch event is delivered and stored
			if s.want == nil {
				wantNoSignal(t, w, s.ns, s.n)
			} else {
				wantSignal(t, w, s.ns, s.n, *s.want)
			}
		}
		wantSignal(t, w, "web", "tls", ClassSignal{Generation: 4})
	})
}

// A failing list leaves the watch unsynced, is logged, and is retried
// until it succeeds. Real time, not a synctest bubble: client-go's error
// handler rate-limits against a clock read at init, outside any bubble.
func TestClassWatchRetriesList(t *testing.T) {
	client := metadataClient(t, classMeta("app", "db", 7, nil))
	lists := make(chan error, 10)
	failures := 2
	client.PrependReactor("list", "secretproviderclasses", func(k8stesting.Action) (bool, runtime.Object, error) {
		if failures == 0 {
			lists <- nil
			return false, nil, nil
		}
		failures--
		err := apierrors.NewForbidden(schema.GroupResource{Group: ClassGVR.Group, Resource: ClassGVR.Resource}, "", errors.New("rbac"))
		lists <- err
		return true, nil, err
	})
	// The reflector watches only after its list was stored: a watch call
	// means Replace has run.
	watching := make(chan struct{}, 10)
	client.PrependWatchReactor("secretproviderclasses", func(k8stesting.Action) (bool, watch.Interface, error) {
		watching <- struct{}{}
		return false, nil, nil
	})
	var logs logbuf.Buffer
	w := NewClassWatch(client, slog.New(slog.NewTextHandler(&logs, nil)))
	w.backoff = &wait.Backoff{Duration: time.Millisecond, Factor: 2, Steps: 5, Cap: 10 * time.Millisecond}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.Run(ctx)
	}()
	defer func() { cancel(); <-done }()

	if err := receive(t, lists); err == nil {
		t.Fatal("first list succeeded")
	}
	if w.Synced() {
		t.Error("synced after a failed list")
	}
	if err := receive(t, lists); err == nil {
		t.Fatal("second list succeeded")
	}
	if err := receive(t, lists); err != nil {
		t.Fatalf("third list: %v", err)
	}
	receive(t, watching)
	if !w.Synced() {
		t.Fatal("watching but not synced")
	}
	// The failures were logged before the lists that followed them.
	if l := logs.String(); strings.Count(l, "level=WARN") != 2 || !strings.Contains(l, "list and watch") {
		t.Errorf("log %q does not name the missing permission once per failure", l)
	}
	wantSignal(t, w, "app", "db", ClassSignal{Generation: 7})
}

// receive returns the next value of c, failing the test if none comes
// within a generous bound (a hang, not a timing assumption).
func receive[T any](t *testing.T, c <-chan T) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(30 * time.Second):
		t.Fatal("timed out")
		panic("unreachable")
	}
}

func TestClassWatchNil(t *testing.T) {
	var w *ClassWatch
	if _, ok := w.Signal("app", "db"); ok || w.Synced() {
		t.Fatal("a nil ClassWatch knows a class")
	}
	w.Run(t.Context()) // returns at once
}

func TestStripClass(t *testing.T) {
	in := classMeta("app", "db", 3, map[string]string{RefreshAnnotation: "r", "kubectl.kubernetes.io/last-applied-configuration": strings.Repeat("x", 1000)})
	in.ResourceVersion = "42"
	in.Labels = map[string]string{"team": "a"}
	in.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}
	out, err := stripClass(in)
	if err != nil {
		t.Fatal(err)
	}
	want := &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{
		Namespace: "app", Name: "db", Generation: 3, ResourceVersion: "42", Annotations: map[string]string{RefreshAnnotation: "r"}}}
	got := out.(*metav1.PartialObjectMetadata)
	if got.Namespace != want.Namespace || got.Name != want.Name || got.Generation != want.Generation ||
		got.ResourceVersion != want.ResourceVersion || len(got.Annotations) != 1 || got.Annotations[RefreshAnnotation] != "r" ||
		got.Labels != nil || got.ManagedFields != nil {
		t.Errorf("stripped to %+v, want %+v", got, want)
	}
	if out, _ := stripClass(classMeta("app", "db", 1, map[string]string{"other": "x"})); out.(*metav1.PartialObjectMetadata).Annotations != nil {
		t.Error("annotations kept although the refresh annotation is absent")
	}
}
