//go:build e2e

package e2e

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"

	pskube "github.com/podsecrets/podsecrets/kube"
)

// startupTaintFlag is what deploy/components/startup-taint adds.
const startupTaintFlag = "--startup-taint=" + pskube.DefaultStartupTaint

// A new node starts tainted: a pod needing a podsecrets volume stays
// unscheduled until the driver, started with --startup-taint and allowed to
// patch nodes, has registered with kubelet and lifted the taint; then it
// runs. Another taint on the node stays. The test leaves the DaemonSet and
// the ClusterRole as deploy/ has them.
func TestStartupTaint(t *testing.T) {
	ctx := ctxT(t)
	node := driverPod(ctx, t).Spec.NodeName
	tn := newTenant(t, "taint")
	putSecret(t, tn.secret("db"), "s3cret")
	createClass(t, tn.ns, "app", `- {objectName: "`+tn.secret("db")+`", objectType: secretsmanager, objectAlias: db}`)

	// PreferNoSchedule keeps the other tests' pods schedulable should this
	// one fail before its cleanup.
	other := corev1.Taint{Key: "e2e.podsecrets.dev/keep", Effect: corev1.TaintEffectPreferNoSchedule}
	startup := corev1.Taint{Key: pskube.DefaultStartupTaint, Effect: corev1.TaintEffectNoSchedule}
	t.Cleanup(func() { untaint(t, node, other.Key, startup.Key) })
	n, err := kube.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n.Spec.Taints = append(n.Spec.Taints, other, startup)
	if n, err = kube.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	createPod(t, tn.ns, podSpec("app", podOpts{class: "app"}))
	waitUnschedulable(ctx, t, tn.ns, "app")

	// What deploy/components/startup-taint adds.
	t.Cleanup(func() { restoreDriver(t) })
	if _, err := kube.RbacV1().ClusterRoles().Patch(ctx, "podsecrets", types.JSONPatchType,
		[]byte(`[{"op":"add","path":"/rules/-","value":{"apiGroups":[""],"resources":["nodes"],"verbs":["patch"]}}]`), metav1.PatchOptions{}); err != nil {
		t.Fatalf("patch ClusterRole podsecrets: %v", err)
	}
	w, err := kube.CoreV1().Nodes().Watch(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", node).String(),
		ResourceVersion: n.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	if _, err := kube.AppsV1().DaemonSets(driverNS).Patch(ctx, "podsecrets", types.JSONPatchType,
		[]byte(`[{"op":"add","path":"/spec/template/spec/containers/0/args/-","value":"`+startupTaintFlag+`"}]`), metav1.PatchOptions{}); err != nil {
		t.Fatalf("patch DaemonSet podsecrets: %v", err)
	}

	var keys []string
	for ev := range w.ResultChan() {
		if ev.Type != watch.Modified {
			continue
		}
		if keys = taintKeys(ev.Object.(*corev1.Node)); !slices.Contains(keys, startup.Key) {
			break
		}
	}
	if slices.Contains(keys, startup.Key) || !slices.Contains(keys, other.Key) {
		t.Fatalf("node taints %v: want %s removed and %s kept", keys, startup.Key, other.Key)
	}
	waitRunning(t, tn.ns, "app")
	if logs := driverLogs(t); !strings.Contains(logs, "startup taint removed") {
		t.Errorf("driver logs lack \"startup taint removed\":\n%s", tail(logs, 4000))
	}
}

func taintKeys(n *corev1.Node) []string {
	var keys []string
	for _, t := range n.Spec.Taints {
		keys = append(keys, t.Key)
	}
	return keys
}

// waitUnschedulable waits for the scheduler to refuse pod ns/name.
func waitUnschedulable(ctx context.Context, t *testing.T, ns, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	w, err := kube.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", name).String()})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	for ev := range w.ResultChan() {
		p, ok := ev.Object.(*corev1.Pod)
		if !ok {
			continue
		}
		if p.Spec.NodeName != "" {
			t.Fatalf("pod %s/%s was scheduled onto %s, which has the startup taint", ns, name, p.Spec.NodeName)
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
				return
			}
		}
	}
	t.Fatalf("pod %s/%s: no Unschedulable condition within a minute", ns, name)
}

// untaint removes the taints with these keys from node.
func untaint(t *testing.T, node string, keys ...string) {
	ctx := context.Background()
	n, err := kube.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		t.Errorf("restore node %s: %v", node, err)
		return
	}
	n.Spec.Taints = slices.DeleteFunc(n.Spec.Taints, func(tt corev1.Taint) bool { return slices.Contains(keys, tt.Key) })
	if _, err := kube.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Errorf("restore node %s: %v", node, err)
	}
}

// restoreDriver takes the flag and the nodes patch rule out again and waits
// for a driver without them to be ready.
func restoreDriver(t *testing.T) {
	ctx := context.Background()
	role, err := kube.RbacV1().ClusterRoles().Get(ctx, "podsecrets", metav1.GetOptions{})
	if err == nil {
		role.Rules = slices.DeleteFunc(role.Rules, func(r rbacv1.PolicyRule) bool {
			return slices.Equal(r.Resources, []string{"nodes"}) && slices.Equal(r.Verbs, []string{"patch"})
		})
		_, err = kube.RbacV1().ClusterRoles().Update(ctx, role, metav1.UpdateOptions{})
	}
	if err != nil {
		t.Errorf("restore ClusterRole podsecrets: %v", err)
	}
	ds, err := kube.AppsV1().DaemonSets(driverNS).Get(ctx, "podsecrets", metav1.GetOptions{})
	if err != nil {
		t.Errorf("restore DaemonSet podsecrets: %v", err)
		return
	}
	c := &ds.Spec.Template.Spec.Containers[0]
	if !slices.Contains(c.Args, startupTaintFlag) {
		return
	}
	c.Args = slices.DeleteFunc(c.Args, func(a string) bool { return a == startupTaintFlag })
	if _, err := kube.AppsV1().DaemonSets(driverNS).Update(ctx, ds, metav1.UpdateOptions{}); err != nil {
		t.Errorf("restore DaemonSet podsecrets: %v", err)
		return
	}
	waitRollout(t, ds.Generation+1)
}

// waitRollout waits until the DaemonSet has rolled out generation gen and
// its pods are ready.
func waitRollout(t *testing.T, gen int64) {
	ctx, cancel := context.WithTimeout(context.Background(), podTimeout)
	defer cancel()
	// Without a resourceVersion the watch starts with the DaemonSet as it is.
	w, err := kube.AppsV1().DaemonSets(driverNS).Watch(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", "podsecrets").String()})
	if err != nil {
		t.Errorf("watch DaemonSet podsecrets: %v", err)
		return
	}
	defer w.Stop()
	for ev := range w.ResultChan() {
		ds, ok := ev.Object.(*appsv1.DaemonSet)
		if !ok {
			continue
		}
		st := ds.Status
		if st.ObservedGeneration >= gen && st.DesiredNumberScheduled > 0 &&
			st.UpdatedNumberScheduled == st.DesiredNumberScheduled && st.NumberReady == st.DesiredNumberScheduled {
			return
		}
	}
	t.Errorf("DaemonSet podsecrets did not roll out generation %d within %v", gen, podTimeout)
}
