package kube

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/podsecrets/podsecrets/test/logbuf"
)

const testTaint = DefaultStartupTaint

func taint(key, effect string) map[string]any { return map[string]any{"key": key, "effect": effect} }

// nodeClient is a fake API server holding node n1 with taints.
func nodeClient(taints ...map[string]any) *dynamicfake.FakeDynamicClient {
	n := object("v1", "Node", "", "n1", nil)
	if taints != nil {
		list := make([]any, len(taints))
		for i, t := range taints {
			list[i] = t
		}
		n.Object["spec"] = map[string]any{"taints": list}
	}
	return dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{nodesGVR: "NodeList"}, n)
}

func taintKeys(t *testing.T, client *dynamicfake.FakeDynamicClient) []string {
	t.Helper()
	n, err := client.Resource(nodesGVR).Get(context.Background(), "n1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return keysOf(n)
}

func keysOf(n *unstructured.Unstructured) []string {
	taints, _, _ := unstructured.NestedSlice(n.Object, "spec", "taints")
	keys := []string{}
	for _, t := range taints {
		keys = append(keys, t.(map[string]any)["key"].(string)+":"+t.(map[string]any)["effect"].(string))
	}
	return keys
}

func patches(client *dynamicfake.FakeDynamicClient) int {
	n := 0
	for _, a := range client.Actions() {
		if a.GetVerb() == "patch" {
			n++
		}
	}
	return n
}

func TestRemoveTaint(t *testing.T) {
	tests := map[string]struct {
		taints      []map[string]any
		wantRemoved bool
		want        []string
	}{
		// Every taint of the key goes, whatever its effect; the others
		// stay, in their order.
		"among others": {
			taints: []map[string]any{taint("a", "NoSchedule"), taint(testTaint, "NoSchedule"),
				taint("b", "NoExecute"), taint(testTaint, "NoExecute")},
			wantRemoved: true,
			want:        []string{"a:NoSchedule", "b:NoExecute"},
		},
		"alone":      {taints: []map[string]any{taint(testTaint, "NoSchedule")}, wantRemoved: true, want: []string{}},
		"absent":     {taints: []map[string]any{taint("a", "NoSchedule")}, want: []string{"a:NoSchedule"}},
		"no taints":  {want: []string{}},
		"key prefix": {taints: []map[string]any{taint(testTaint+"-x", "NoSchedule")}, want: []string{testTaint + "-x:NoSchedule"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			client := nodeClient(tc.taints...)
			removed, err := RemoveTaint(context.Background(), client, "n1", testTaint)
			if err != nil || removed != tc.wantRemoved {
				t.Fatalf("RemoveTaint = %v, %v; want %v", removed, err, tc.wantRemoved)
			}
			if got := taintKeys(t, client); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("taints %v, want %v", got, tc.want)
			}
			// A node without the taint costs a GET only.
			if n := patches(client); !tc.wantRemoved && n != 0 {
				t.Errorf("%d patches of a node without the taint", n)
			}
		})
	}
}

func TestRemoveTaintErrors(t *testing.T) {
	client := nodeClient(taint(testTaint, "NoSchedule"))
	if _, err := RemoveTaint(context.Background(), client, "gone", testTaint); !apierrors.IsNotFound(err) ||
		!strings.Contains(err.Error(), "Node gone") {
		t.Errorf("missing node: %v, want NotFound naming the Node", err)
	}
	client.PrependReactor("patch", "nodes", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "nodes"}, "n1", errors.New("rbac"))
	})
	_, err := RemoveTaint(context.Background(), client, "n1", testTaint)
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "spec.taints") {
		t.Errorf("forbidden patch: %v, want Forbidden naming spec.taints", err)
	}
	if n := patches(client); n != 1 {
		t.Errorf("%d patches; a Forbidden is not retried inside one removal", n)
	}
}

// apiServerPatch applies a patch as the API server does: a failed JSON
// patch operation (such as a test) is a 422, where the fake tracker returns
// a plain error.
func apiServerPatch(client *dynamicfake.FakeDynamicClient, a k8stesting.Action) (bool, runtime.Object, error) {
	handled, obj, err := k8stesting.ObjectReaction(client.Tracker())(a)
	var status apierrors.APIStatus
	if err != nil && !errors.As(err, &status) {
		err = apierrors.NewGenericServerResponse(http.StatusUnprocessableEntity, "patch", schema.GroupResource{Resource: "nodes"}, "n1", err.Error(), 0, false)
	}
	return handled, obj, err
}

// Another writer adds a taint in front between the driver's read and its
// patch: the indexes the patch names moved. The test operations refuse the
// patch, and the next read removes the right taint.
func TestRemoveTaintConcurrentChange(t *testing.T) {
	client := nodeClient(taint("a", "NoSchedule"), taint(testTaint, "NoSchedule"))
	raced := false
	client.PrependReactor("patch", "nodes", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if !raced {
			raced = true
			n := object("v1", "Node", "", "n1", nil)
			n.Object["spec"] = map[string]any{"taints": []any{taint("other-writer", "NoExecute"), taint("a", "NoSchedule"), taint(testTaint, "NoSchedule")}}
			if err := client.Tracker().Update(nodesGVR, n, ""); err != nil {
				t.Fatal(err)
			}
		}
		return apiServerPatch(client, a)
	})
	removed, err := RemoveTaint(context.Background(), client, "n1", testTaint)
	if err != nil || !removed {
		t.Fatalf("RemoveTaint = %v, %v", removed, err)
	}
	if got, want := taintKeys(t, client), []string{"other-writer:NoExecute", "a:NoSchedule"}; !reflect.DeepEqual(got, want) {
		t.Errorf("taints %v, want %v", got, want)
	}
	if n := patches(client); n != 2 {
		t.Errorf("%d patches, want 2 (the refused one and the one after a new read)", n)
	}
}

func TestRemoveTaintGivesUp(t *testing.T) {
	client := nodeClient(taint(testTaint, "NoSchedule"))
	client.PrependReactor("patch", "nodes", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewConflict(schema.GroupResource{Resource: "nodes"}, "n1", errors.New("changed"))
	})
	_, err := RemoveTaint(context.Background(), client, "n1", testTaint)
	if !errors.Is(err, errTaintsChanged) {
		t.Fatalf("error %v, want errTaintsChanged", err)
	}
	if n := patches(client); n != taintPatchAttempts {
		t.Errorf("%d patches, want %d", n, taintPatchAttempts)
	}
}

func TestValidateTaintKey(t *testing.T) {
	for _, ok := range []string{testTaint, "example.com/x", "not-ready"} {
		if err := ValidateTaintKey(ok); err != nil {
			t.Errorf("ValidateTaintKey(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "podsecrets.dev/agent-not-ready:NoSchedule", "a/b/c", "-x", strings.Repeat("x", 64)} {
		if err := ValidateTaintKey(bad); err == nil || !strings.Contains(err.Error(), "taint key") {
			t.Errorf("ValidateTaintKey(%q) = %v, want an error naming the taint key", bad, err)
		}
	}
}

// timers stands in for time.After: each wait is sent to the test, which
// fires it.
type timers struct {
	waits chan time.Duration
	fire  chan time.Time
}

func newTimers() *timers {
	return &timers{waits: make(chan time.Duration), fire: make(chan time.Time)}
}

func (tm *timers) after(d time.Duration) <-chan time.Time {
	tm.waits <- d
	return tm.fire
}

// Run lifts the taint after a registration, through failures retried with
// a doubling backoff; the test follows the node through a watch.
func TestStartupTaintRun(t *testing.T) {
	client := nodeClient(taint("a", "NoSchedule"), taint(testTaint, "NoSchedule"))
	failures := 2
	client.PrependReactor("patch", "nodes", func(k8stesting.Action) (bool, runtime.Object, error) {
		if failures > 0 {
			failures--
			return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "nodes"}, "n1", errors.New("rbac"))
		}
		return false, nil, nil
	})
	var logs logbuf.Buffer
	s := NewStartupTaint(client, "n1", testTaint, slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	tm := newTimers()
	s.after = tm.after
	ctx, cancel := context.WithCancel(context.Background())
	w, err := client.Resource(nodesGVR).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()

	s.Registered(true)
	for _, want := range []time.Duration{time.Second, 2 * time.Second} {
		if got := <-tm.waits; got != want {
			t.Fatalf("retry after %v, want %v", got, want)
		}
		tm.fire <- time.Time{}
	}
	for ev := range w.ResultChan() {
		if ev.Type != watch.Modified {
			continue
		}
		if got := keysOf(ev.Object.(*unstructured.Unstructured)); !reflect.DeepEqual(got, []string{"a:NoSchedule"}) {
			t.Fatalf("node modified to taints %v, want [a:NoSchedule]", got)
		}
		break
	}
	cancel()
	<-done
	for _, want := range []string{"the driver's ClusterRole needs get and patch on nodes", `"retry_in_s":2`, "startup taint removed"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("logs lack %q:\n%s", want, logs.String())
		}
	}
}

// The callback never blocks kubelet's registration call: registrations
// before Run takes one coalesce, and a rejection asks for nothing.
func TestStartupTaintRegistered(t *testing.T) {
	s := NewStartupTaint(nodeClient(), "n1", testTaint, nil)
	s.Registered(false)
	if len(s.registered) != 0 {
		t.Fatal("a rejected registration asked for a removal")
	}
	s.Registered(true)
	s.Registered(true)
	if len(s.registered) != 1 {
		t.Fatalf("%d pending removals, want 1", len(s.registered))
	}
	var none *StartupTaint
	none.Registered(true)
	none.Run(context.Background())
}
