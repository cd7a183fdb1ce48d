//go:build e2e

// Package e2e checks podsecrets the way users live it: a real kubelet, API
// server and containerd calling the driver installed from deploy/, against
// the fake AWS store on the host. e2e.sh sets the environment up; run it with
// `make e2e`.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/podsecrets/podsecrets/test/awsfake/store"
)

const (
	account    = "111122223333"
	region     = "us-east-1"
	driverNS   = "kube-system"
	driverSel  = "app.kubernetes.io/name=podsecrets"
	podTimeout = 3 * time.Minute
)

var (
	kube    kubernetes.Interface
	dyn     dynamic.Interface
	awsURL  string
	busybox string
	classes = schema.GroupVersionResource{Group: "podsecrets.dev", Version: "v1", Resource: "secretproviderclasses"}
	// jwtPattern matches any JWT: no service-account token may reach a log.
	jwtPattern = regexp.MustCompile(`eyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}`)
)

func TestMain(m *testing.M) {
	for _, v := range []string{"KUBECONFIG", "PODSECRETS_E2E_AWS", "PODSECRETS_E2E_BUSYBOX"} {
		if os.Getenv(v) == "" {
			fmt.Fprintf(os.Stderr, "e2e: %s is not set: run these tests through test/e2e/e2e.sh (make e2e)\n", v)
			os.Exit(1)
		}
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", os.Getenv("KUBECONFIG"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	cfg.QPS, cfg.Burst = 100, 200
	kube = kubernetes.NewForConfigOrDie(cfg)
	dyn = dynamic.NewForConfigOrDie(cfg)
	awsURL = os.Getenv("PODSECRETS_E2E_AWS")
	busybox = os.Getenv("PODSECRETS_E2E_BUSYBOX")
	os.Exit(m.Run())
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// seed applies doc to the fake AWS store; a failure fails the test.
func seed(t *testing.T, doc store.Seed) store.SeedReply {
	t.Helper()
	r, err := seedCall(doc)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func putSecret(t *testing.T, name, value string) {
	t.Helper()
	putSecretVersion(t, name, value)
}

func roleARN(name string) string { return "arn:aws:iam::" + account + ":role/" + name }

// tenant is a namespace with a ServiceAccount "reader" whose IAM role may
// read the secrets and parameters under e2e/<namespace>/.
type tenant struct {
	ns   string
	role string
}

func newTenant(t *testing.T, prefix string) *tenant {
	t.Helper()
	ctx := ctxT(t)
	ns := prefix + "-" + rand.String(5)
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		kube.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
	})
	tn := &tenant{ns: ns, role: roleARN(ns + "-reader")}
	seed(t, store.Seed{Roles: []store.Role{{
		ARN:      tn.role,
		Subjects: []string{"system:serviceaccount:" + ns + ":reader"},
		Allow: []string{
			"arn:aws:secretsmanager:" + region + ":" + account + ":secret:e2e/" + ns + "/*",
			"arn:aws:ssm:" + region + ":" + account + ":parameter/e2e/" + ns + "/*",
		},
	}}})
	tn.serviceAccount(t, "reader", tn.role)
	return tn
}

func (tn *tenant) serviceAccount(t *testing.T, name, role string) {
	t.Helper()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name,
		Annotations: map[string]string{"eks.amazonaws.com/role-arn": role}}}
	if _, err := kube.CoreV1().ServiceAccounts(tn.ns).Create(ctxT(t), sa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// secret names a store object owned by the tenant.
func (tn *tenant) secret(name string) string { return "e2e/" + tn.ns + "/" + name }

func createClass(t *testing.T, ns, name, objects string) {
	t.Helper()
	createClassWith(t, ns, name, map[string]any{"objects": objects})
}

// createClassWith creates an aws SecretProviderClass with these parameters.
func createClassWith(t *testing.T, ns, name string, params map[string]any) {
	t.Helper()
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "podsecrets.dev/v1",
		"kind":       "SecretProviderClass",
		"metadata":   map[string]any{"name": name, "namespace": ns},
		"spec":       map[string]any{"provider": "aws", "parameters": params},
	}}
	if _, err := dyn.Resource(classes).Namespace(ns).Create(ctxT(t), u, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// readerScript prints the volume's mount entry, every file with its mode,
// group and base64 content, and whether the pod can write, then waits.
const readerScript = `d=/mnt/secrets
echo "MOUNT $(grep " $d " /proc/mounts)"
for f in $(ls $d); do
  if c=$(base64 -w0 $d/$f 2>/dev/null); then echo "FILE $f $(stat -L -c %a:%g $d/$f) $c"; else echo "FILE $f $(stat -L -c %a:%g $d/$f) UNREADABLE"; fi
done
if touch $d/probe 2>/dev/null; then echo "WRITE allowed"; else echo "WRITE denied"; fi
echo DONE
exec sleep 3600`

type podOpts struct {
	serviceAccount string
	class          string
	runAsUser      *int64
	fsGroup        *int64
	emptyDir       bool
}

func podSpec(name string, o podOpts) *corev1.Pod {
	sa := o.serviceAccount
	if sa == "" {
		sa = "reader"
	}
	vol := corev1.Volume{Name: "secrets", VolumeSource: corev1.VolumeSource{CSI: &corev1.CSIVolumeSource{
		// Neither csi.readOnly nor the mount asks for read-only: the driver
		// makes the volume read-only regardless.
		Driver:           "csi.podsecrets.dev",
		VolumeAttributes: map[string]string{"secretProviderClass": o.class},
	}}}
	if o.emptyDir {
		vol.VolumeSource = corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{
			ServiceAccountName:            sa,
			AutomountServiceAccountToken:  ptr(false),
			TerminationGracePeriodSeconds: ptr(int64(1)),
			SecurityContext:               &corev1.PodSecurityContext{RunAsUser: o.runAsUser, FSGroup: o.fsGroup},
			Containers: []corev1.Container{{
				Name: "app", Image: busybox, ImagePullPolicy: corev1.PullNever,
				Command:      []string{"sh", "-c", readerScript},
				VolumeMounts: []corev1.VolumeMount{{Name: "secrets", MountPath: "/mnt/secrets"}},
			}},
			Volumes: []corev1.Volume{vol},
		},
	}
}

func ptr[T any](v T) *T { return &v }

func createPod(t *testing.T, ns string, pod *corev1.Pod) *corev1.Pod {
	t.Helper()
	p, err := kube.CoreV1().Pods(ns).Create(ctxT(t), pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func waitRunning(t *testing.T, ns, name string) *corev1.Pod {
	t.Helper()
	pod, err := podRunning(ctxT(t), ns, name)
	if err != nil {
		t.Fatal(err)
	}
	return pod
}

// podRunning waits for pod ns/name to run; safe to call from any goroutine.
func podRunning(ctx context.Context, ns, name string) (*corev1.Pod, error) {
	var pod *corev1.Pod
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, podTimeout, true, func(ctx context.Context) (bool, error) {
		p, err := kube.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		pod = p
		return p.Status.Phase == corev1.PodRunning, nil
	})
	if err != nil {
		phase := corev1.PodPhase("unknown")
		if pod != nil {
			phase = pod.Status.Phase
		}
		return nil, fmt.Errorf("pod %s/%s not Running (phase %v): %w\nevents:\n%s", ns, name, phase, err, eventsOf(ns, name))
	}
	return pod, nil
}

func eventsOf(ns, pod string) string {
	evs, err := kube.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{FieldSelector: "involvedObject.name=" + pod})
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	for _, e := range evs.Items {
		fmt.Fprintf(&b, "  %s %s: %s\n", e.Type, e.Reason, e.Message)
	}
	return b.String()
}

// waitEvent waits for an event of reason on pod whose message holds every
// part, and returns the message.
func waitEvent(t *testing.T, ns, pod, reason string, parts ...string) string {
	t.Helper()
	var msg string
	err := wait.PollUntilContextTimeout(ctxT(t), 250*time.Millisecond, podTimeout, true, func(ctx context.Context) (bool, error) {
		evs, err := kube.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + pod})
		if err != nil {
			return false, err
		}
	next:
		for _, e := range evs.Items {
			if e.Reason != reason {
				continue
			}
			for _, p := range parts {
				if !strings.Contains(e.Message, p) {
					continue next
				}
			}
			msg = e.Message
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("no %s event on %s/%s mentioning %q: %v\nevents:\n%s", reason, ns, pod, parts, err, eventsOf(ns, pod))
	}
	return msg
}

// report is what readerScript printed.
type report struct {
	mount string
	files map[string]fileReport
	write string
}

type fileReport struct {
	mode, gid string
	content   string // decoded, or "UNREADABLE"
}

// podOutput waits up to timeout for pod's log to end its report with a
// "DONE" line and returns the log.
func podOutput(ctx context.Context, t *testing.T, ns, pod string, timeout time.Duration) string {
	t.Helper()
	var logs string
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		b, err := kube.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{}).Do(ctx).Raw()
		if err != nil {
			return false, nil
		}
		logs = string(b)
		return strings.Contains(logs, "\nDONE"), nil
	})
	if err != nil {
		t.Fatalf("pod %s/%s printed no report: %v\n%.2000s", ns, pod, err, logs)
	}
	return logs
}

func readReport(t *testing.T, ns, pod string) report {
	t.Helper()
	logs := podOutput(ctxT(t), t, ns, pod, time.Minute)
	r := report{files: map[string]fileReport{}}
	for _, line := range strings.Split(logs, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) > 0 && f[0] == "MOUNT":
			r.mount = strings.TrimPrefix(line, "MOUNT ")
		case len(f) == 4 && f[0] == "FILE":
			mg := strings.SplitN(f[2], ":", 2)
			content := f[3]
			if content != "UNREADABLE" {
				content = decodeB64(t, content)
			}
			r.files[f[1]] = fileReport{mode: mg[0], gid: mg[1], content: content}
		case len(f) == 3 && f[0] == "FILE":
			// An empty file: base64 printed nothing.
			mg := strings.SplitN(f[2], ":", 2)
			r.files[f[1]] = fileReport{mode: mg[0], gid: mg[1]}
		case len(f) == 2 && f[0] == "WRITE":
			r.write = f[1]
		}
	}
	return r
}

func deletePodAndWait(t *testing.T, ns, name string) {
	t.Helper()
	if err := kube.CoreV1().Pods(ns).Delete(ctxT(t), name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	err := wait.PollUntilContextTimeout(ctxT(t), 250*time.Millisecond, podTimeout, true, func(ctx context.Context) (bool, error) {
		_, err := kube.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	if err != nil {
		t.Fatalf("pod %s/%s not deleted: %v", ns, name, err)
	}
}

// podsecretsMounts lists the host's mounts of the podsecrets tmpfs (the
// driver mounts with source "podsecrets"), optionally only below a path.
func podsecretsMounts(t *testing.T, below string) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 10 {
			continue
		}
		// Fields after the " - " separator: fstype, source, options.
		sep := 0
		for i, x := range f {
			if x == "-" {
				sep = i
				break
			}
		}
		if sep == 0 || f[sep+1] != "tmpfs" || f[sep+2] != "podsecrets" {
			continue
		}
		if below == "" || strings.HasPrefix(f[4], below) {
			out = append(out, f[4])
		}
	}
	return out
}

// driverLogs returns the logs of every running driver pod.
func driverLogs(t *testing.T) string {
	t.Helper()
	pods, err := kube.CoreV1().Pods(driverNS).List(ctxT(t), metav1.ListOptions{LabelSelector: driverSel})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, p := range pods.Items {
		raw, err := kube.CoreV1().Pods(driverNS).GetLogs(p.Name, &corev1.PodLogOptions{}).Do(ctxT(t)).Raw()
		if err != nil {
			t.Fatalf("logs of %s: %v", p.Name, err)
		}
		b.Write(raw)
	}
	return b.String()
}

func secretCount(t *testing.T) int {
	t.Helper()
	l, err := kube.CoreV1().Secrets("").List(ctxT(t), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return len(l.Items)
}

// seedCall posts doc to the fake AWS store (store.PathSeed) and returns its
// reply. It reports failures instead of failing the test, so that any
// goroutine may call it.
func seedCall(doc store.Seed) (store.SeedReply, error) {
	var r store.SeedReply
	b, _ := json.Marshal(doc)
	resp, err := http.Post(awsURL+store.PathSeed, "application/json", bytes.NewReader(b))
	if err != nil {
		return r, fmt.Errorf("fake store seed: %w", err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return r, fmt.Errorf("fake store seed: %d %s", resp.StatusCode, msg)
	}
	if err := json.Unmarshal(msg, &r); err != nil {
		return r, fmt.Errorf("fake store seed: reply %q: %w", msg, err)
	}
	return r, nil
}

// putSecretVersion creates secret name or puts a new version of it (which
// takes AWSCURRENT; the version that had it becomes AWSPREVIOUS) and returns
// the secret's ARN and the new version's ID.
func putSecretVersion(t *testing.T, name, value string) (arn, versionID string) {
	t.Helper()
	r := seed(t, store.Seed{Secrets: []store.SeedSecret{{Region: region, Name: name, Value: value}}})
	return r.Secrets[0].ARN, r.Secrets[0].VersionID
}

// putParameter creates SSM String parameter name or puts a new version of
// it, and returns the version number.
func putParameter(t *testing.T, name, value string) int64 {
	t.Helper()
	return seed(t, store.Seed{Parameters: []store.SeedParameter{{Region: region, Name: name, Value: value, Type: "String"}}}).Parameters[0]
}

// logLine is one line of a container's log with the time the runtime
// received it.
type logLine struct {
	at   time.Time
	text string
}

// timedLogs returns the log of pod's (only or first) container, each line
// with the runtime's timestamp.
func timedLogs(ctx context.Context, ns, pod string) ([]logLine, error) {
	raw, err := kube.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Timestamps: true}).Do(ctx).Raw()
	if err != nil {
		return nil, err
	}
	var out []logLine
	for _, l := range strings.Split(strings.TrimRight(string(raw), "\n"), "\n") {
		ts, text, ok := strings.Cut(l, " ")
		if !ok {
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil {
			continue
		}
		out = append(out, logLine{at: at, text: text})
	}
	return out, nil
}
