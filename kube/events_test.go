package kube

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"

	"github.com/podsecrets/podsecrets/provider"
)

func TestEventsAggregate(t *testing.T) {
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{eventsGVR: "EventList"})
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	e := &Events{Client: dyn, Node: "node-1", Now: func() time.Time { return now }}
	pod := provider.Pod{Namespace: "app", Name: "web-1", UID: "u1"}
	ctx := context.Background()
	list := func() []unstructured.Unstructured {
		l, err := dyn.Resource(eventsGVR).Namespace("app").List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return l.Items
	}

	e.Warn(ctx, pod, "UnknownParameterKey", "objects[0].objectAlais: did you mean objectAlias?")
	evs := list()
	if len(evs) != 1 {
		t.Fatalf("%d events after the first warning, want 1", len(evs))
	}
	ev := evs[0].Object
	if ev["type"] != "Warning" || ev["reason"] != "UnknownParameterKey" || ev["involvedObject"].(map[string]any)["uid"] != "u1" ||
		ev["reportingComponent"] != Component {
		t.Fatalf("event = %v", ev)
	}

	// Kubelet retries quickly: repeats inside minInterval write nothing.
	now = now.Add(5 * time.Second)
	e.Warn(ctx, pod, "UnknownParameterKey", "objects[0].objectAlais: did you mean objectAlias?")
	if got := list()[0].Object["count"]; got != int64(1) {
		t.Fatalf("count after a quick repeat = %v, want 1 (not written yet)", got)
	}
	now = now.Add(minInterval)
	e.Warn(ctx, pod, "UnknownParameterKey", "objects[0].objectAlais: did you mean objectAlias?")
	evs = list()
	if len(evs) != 1 || evs[0].Object["count"] != int64(3) {
		t.Fatalf("after the interval: %d events, count %v; want one event counting 3", len(evs), evs[0].Object["count"])
	}

	// Another message is another event; so is the same one after the window.
	e.Warn(ctx, pod, "UnknownParameterKey", "objects[1].filePermision: did you mean filePermission?")
	now = now.Add(window + time.Second)
	e.Warn(ctx, pod, "UnknownParameterKey", "objects[0].objectAlais: did you mean objectAlias?")
	if n := len(list()); n != 3 {
		t.Fatalf("%d events, want 3", n)
	}
}

func TestEventsForgetOldest(t *testing.T) {
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{eventsGVR: "EventList"})
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	e := &Events{Client: dyn, Node: "n", Now: func() time.Time { now = now.Add(time.Millisecond); return now }}
	for i := range maxTracked + 10 {
		e.Warn(context.Background(), provider.Pod{Namespace: "a", Name: "p", UID: string(rune('a'+i%26)) + string(rune(i))}, "R", "m")
	}
	if len(e.seen) > maxTracked {
		t.Fatalf("tracking %d events, want at most %d", len(e.seen), maxTracked)
	}
}

func TestEventsNormal(t *testing.T) {
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{eventsGVR: "EventList"})
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	e := &Events{Client: dyn, Node: "node-1", Now: func() time.Time { return now }}
	pod := provider.Pod{Namespace: "app", Name: "web-1", UID: "u1"}
	ctx := context.Background()
	byType := func() map[string]map[string]any {
		l, err := dyn.Resource(eventsGVR).Namespace("app").List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]map[string]any{}
		for _, ev := range l.Items {
			out[ev.Object["type"].(string)] = ev.Object
		}
		return out
	}

	e.Normal(ctx, pod, "SecretRotated", "db-password: version v1 -> v2")
	ev := byType()["Normal"]
	if ev == nil || ev["reason"] != "SecretRotated" || ev["message"] != "db-password: version v1 -> v2" ||
		ev["involvedObject"].(map[string]any)["uid"] != "u1" || ev["count"] != int64(1) ||
		ev["source"].(map[string]any)["host"] != "node-1" {
		t.Fatalf("events %v, want one Normal SecretRotated", byType())
	}

	// The same reason and message as a Warning is another event: a type
	// is not folded into the other's count.
	now = now.Add(time.Second)
	e.Warn(ctx, pod, "SecretRotated", "db-password: version v1 -> v2")
	// A repeat of the Normal one past minInterval patches its count.
	now = now.Add(minInterval)
	e.Normal(ctx, pod, "SecretRotated", "db-password: version v1 -> v2")
	evs := byType()
	if len(evs) != 2 || evs["Warning"] == nil || evs["Normal"]["count"] != int64(2) || evs["Warning"]["count"] != int64(1) {
		t.Fatalf("events %v; want a Normal counting 2 and a Warning counting 1", evs)
	}
}
