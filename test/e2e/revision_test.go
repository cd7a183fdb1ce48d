//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/podsecrets/podsecrets/test/awsfake/store"
)

// Real-node tests of spec.versionPolicy: Revision: every pod of one workload
// revision mounts the versions its first pod recorded.

var records = schema.GroupVersionResource{Group: "podsecrets.dev", Version: "v1", Resource: "secretversionrecords"}

// revisionTenant is a tenant with secret "key" at value v1 and a class
// "pinned" reading it with versionPolicy Revision.
func revisionTenant(t *testing.T, prefix string) *tenant {
	t.Helper()
	tn := newTenant(t, prefix)
	putSecret(t, tn.secret("key"), "v1")
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "podsecrets.dev/v1",
		"kind":       "SecretProviderClass",
		"metadata":   map[string]any{"name": "pinned", "namespace": tn.ns},
		"spec": map[string]any{"provider": "aws", "versionPolicy": "Revision", "parameters": map[string]any{
			"objects": fmt.Sprintf("- objectName: %q\n  objectType: secretsmanager\n  objectAlias: key\n", tn.secret("key")),
		}},
	}}
	if _, err := dyn.Resource(classes).Namespace(tn.ns).Create(ctxT(t), u, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return tn
}

// template is the pod template of the workloads below: the report pod of
// podSpec, reading class "pinned".
func template(app string) corev1.PodTemplateSpec {
	p := podSpec("", podOpts{class: "pinned"})
	return corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": app}}, Spec: p.Spec}
}

// keysOf waits until want pods labelled app=<app> are Running and returns
// each pod's "key" file as its report shows it.
func keysOf(t *testing.T, ns, app string, want int) map[string]string {
	t.Helper()
	var pods []corev1.Pod
	err := wait.PollUntilContextTimeout(ctxT(t), 500*time.Millisecond, podTimeout, true, func(ctx context.Context) (bool, error) {
		l, err := kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + app})
		if err != nil {
			return false, err
		}
		pods = pods[:0]
		for _, p := range l.Items {
			if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning {
				pods = append(pods, p)
			}
		}
		return len(pods) == want, nil
	})
	if err != nil {
		t.Fatalf("%d running pods of %s, want %d: %v", len(pods), app, want, err)
	}
	out := map[string]string{}
	for _, p := range pods {
		out[p.Name] = readReport(t, ns, p.Name).files["key"].content
	}
	return out
}

// all reports whether every value of m is want.
func all(m map[string]string, want string) bool {
	for _, v := range m {
		if v != want {
			return false
		}
	}
	return len(m) > 0
}

// recordsOf lists the namespace's records as "kind/name versions".
func recordsOf(t *testing.T, ns string) []string {
	t.Helper()
	l, err := dyn.Resource(records).Namespace(ns).List(ctxT(t), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range l.Items {
		kind, _, _ := unstructured.NestedString(r.Object, "spec", "revision", "kind")
		owners := r.GetOwnerReferences()
		if len(owners) != 1 || owners[0].Kind != kind {
			t.Errorf("record %s: owners %+v, want its %s", r.GetName(), owners, kind)
		}
		v, _, _ := unstructured.NestedString(r.Object, "spec", "versions")
		out = append(out, kind+" "+v)
	}
	sort.Strings(out)
	return out
}

// createDeployment creates Deployment ns/name of replicas pods labelled
// app=<name>, of the workloads' template.
func createDeployment(t *testing.T, ns, name string, replicas int32) {
	t.Helper()
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: template(name),
		},
	}
	if _, err := kube.AppsV1().Deployments(ns).Create(ctxT(t), d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// outOfShareWindow waits until the containers of every pod matching
// selector have run longer than window (a container starts after its
// volumes were mounted), so that the driver no longer shares their reads.
func outOfShareWindow(t *testing.T, ns, selector string, window time.Duration) {
	t.Helper()
	err := wait.PollUntilContextTimeout(ctxT(t), 100*time.Millisecond, podTimeout, true, func(ctx context.Context) (bool, error) {
		l, err := kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return false, err
		}
		for _, p := range l.Items {
			for _, c := range p.Status.ContainerStatuses {
				if c.State.Running == nil || time.Since(c.State.Running.StartedAt.Time) < window {
					return false, nil
				}
			}
		}
		return len(l.Items) > 0, nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func scale(t *testing.T, ns, name string, replicas int32) {
	t.Helper()
	d, err := kube.AppsV1().Deployments(ns).Get(ctxT(t), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d.Spec.Replicas = &replicas
	if _, err := kube.AppsV1().Deployments(ns).Update(ctxT(t), d, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestRevisionDeployment: a scale-up after AWSCURRENT moved mounts the
// revision's versions; a new pod template mounts the new ones; a rollback
// mounts the old ones again.
func TestRevisionDeployment(t *testing.T) {
	tn := revisionTenant(t, "rev")
	ns := tn.ns
	createDeployment(t, ns, "web", 3)
	if got := keysOf(t, ns, "web", 3); !all(got, "v1") {
		t.Fatalf("first rollout: %v", got)
	}
	putSecret(t, tn.secret("key"), "v2") // AWSCURRENT moves
	scale(t, ns, "web", 6)
	if got := keysOf(t, ns, "web", 6); !all(got, "v1") {
		t.Fatalf("after a scale-up past a new version, the revision's pods hold %v, want v1 in all", got)
	}
	old, err := kube.AppsV1().ReplicaSets(ns).List(ctxT(t), metav1.ListOptions{LabelSelector: "app=web"})
	if err != nil || len(old.Items) != 1 {
		t.Fatalf("replica sets %v, %v", old, err)
	}
	oldTemplate := old.Items[0].Spec.Template

	// A new pod template is a new revision: it resolves afresh.
	cur, err := kube.AppsV1().Deployments(ns).Get(ctxT(t), "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cur.Spec.Template.Annotations = map[string]string{"release": "2"}
	if _, err := kube.AppsV1().Deployments(ns).Update(ctxT(t), cur, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := waitAll(t, ns, "web", 6, "v2"); got != nil {
		t.Fatalf("the new revision's pods hold %v, want v2", got)
	}

	// kubectl rollout undo: the old template again, so the old ReplicaSet
	// (and its record) come back.
	cur, err = kube.AppsV1().Deployments(ns).Get(ctxT(t), "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	delete(oldTemplate.Labels, appsv1.DefaultDeploymentUniqueLabelKey)
	cur.Spec.Template = oldTemplate
	if _, err := kube.AppsV1().Deployments(ns).Update(ctxT(t), cur, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := waitAll(t, ns, "web", 6, "v1"); got != nil {
		t.Fatalf("after the rollback the pods hold %v, want v1 again", got)
	}
	if recs := recordsOf(t, ns); len(recs) != 2 || !strings.HasPrefix(recs[0], "ReplicaSet key=") || recs[0] == recs[1] {
		t.Fatalf("records %v, want one per ReplicaSet with different versions", recs)
	}
	if n := secretCount(t); n != 0 {
		t.Errorf("%d Kubernetes Secrets exist", n)
	}
}

// waitAll waits until want pods of app run and all hold value; it returns
// the last values seen if they never do.
func waitAll(t *testing.T, ns, app string, want int, value string) map[string]string {
	t.Helper()
	var got map[string]string
	err := wait.PollUntilContextTimeout(ctxT(t), time.Second, 2*podTimeout, true, func(ctx context.Context) (bool, error) {
		l, err := kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + app})
		if err != nil {
			return false, err
		}
		running := 0
		for _, p := range l.Items {
			if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning {
				running++
			}
		}
		if running != want || len(l.Items) != want {
			return false, nil
		}
		got = keysOf(t, ns, app, want)
		return all(got, value), nil
	})
	if err != nil {
		return got
	}
	return nil
}

// TestRevisionBurst: 10 replicas created at once make one record, and all
// hold its version.
func TestRevisionBurst(t *testing.T) {
	tn := revisionTenant(t, "revburst")
	createDeployment(t, tn.ns, "burst", 10)
	if got := keysOf(t, tn.ns, "burst", 10); !all(got, "v1") {
		t.Fatalf("pods hold %v", got)
	}
	if recs := recordsOf(t, tn.ns); len(recs) != 1 {
		t.Fatalf("records %v, want exactly one", recs)
	}
}

// TestRevisionStatefulSetAndJob: a StatefulSet's revision and a Job pin
// too.
func TestRevisionStatefulSetAndJob(t *testing.T) {
	tn := revisionTenant(t, "revsts")
	ns := tn.ns
	sts := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: "db"},
		Spec: appsv1.StatefulSetSpec{
			Replicas:            ptr(int32(1)),
			Selector:            &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}},
			Template:            template("db"),
			PodManagementPolicy: appsv1.ParallelPodManagement,
		},
	}
	if _, err := kube.AppsV1().StatefulSets(ns).Create(ctxT(t), sts, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "migrate"},
		Spec: batchv1.JobSpec{
			Parallelism: ptr(int32(1)),
			Completions: ptr(int32(2)),
			Template:    template("migrate"),
		},
	}
	job.Spec.Template.Spec.RestartPolicy = corev1.RestartPolicyNever
	if _, err := kube.BatchV1().Jobs(ns).Create(ctxT(t), job, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	keysOf(t, ns, "db", 1)
	keysOf(t, ns, "migrate", 1)
	putSecret(t, tn.secret("key"), "v2")

	s, err := kube.AppsV1().StatefulSets(ns).Get(ctxT(t), "db", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.Spec.Replicas = ptr(int32(2))
	if _, err := kube.AppsV1().StatefulSets(ns).Update(ctxT(t), s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	j, err := kube.BatchV1().Jobs(ns).Get(ctxT(t), "migrate", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	j.Spec.Parallelism = ptr(int32(2))
	if _, err := kube.BatchV1().Jobs(ns).Update(ctxT(t), j, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := keysOf(t, ns, "db", 2); !all(got, "v1") {
		t.Errorf("StatefulSet pods hold %v, want v1", got)
	}
	if got := keysOf(t, ns, "migrate", 2); !all(got, "v1") {
		t.Errorf("Job pods hold %v, want v1", got)
	}
	recs := recordsOf(t, ns)
	if len(recs) != 2 || !strings.HasPrefix(recs[0], "ControllerRevision ") || !strings.HasPrefix(recs[1], "Job ") {
		t.Errorf("records %v, want one of the ControllerRevision and one of the Job", recs)
	}
	// Job pods sleep rather than complete; stop them for the namespace's
	// deletion.
	kube.BatchV1().Jobs(ns).Delete(context.Background(), "migrate", metav1.DeleteOptions{PropagationPolicy: ptr(metav1.DeletePropagationBackground)})
}

// TestRevisionVersionGone: a recorded version the store no longer has does
// not block a scale-up: the new pod mounts the current version and a
// Warning event says the replicas differ.
func TestRevisionVersionGone(t *testing.T) {
	tn := revisionTenant(t, "revgone")
	ns := tn.ns
	createDeployment(t, ns, "web", 1)
	first := keysOf(t, ns, "web", 1)
	// The secret is deleted and made again: the recorded version is gone.
	seed(t, store.Seed{Secrets: []store.SeedSecret{{Region: region, Name: tn.secret("key"), Delete: true}}})
	putSecret(t, tn.secret("key"), "v9")
	// The fallback reads the current version, and the driver reuses a read
	// of the same identity for --aws-share-window (1 s) after it arrived:
	// the scale-up must come after the first pod's read is out of it, or
	// the new pod gets that read's v1, current a moment ago.
	outOfShareWindow(t, ns, "app=web", 1500*time.Millisecond)
	scale(t, ns, "web", 2)
	got := keysOf(t, ns, "web", 2)
	var newPod string
	for name, v := range got {
		if _, old := first[name]; !old {
			newPod = name
			if v != "v9" {
				t.Fatalf("the new pod holds %q, want the current v9", v)
			}
		}
	}
	waitEvent(t, ns, newPod, "RevisionVersionGone", "now differ")
}
