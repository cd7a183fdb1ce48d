//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/podsecrets/podsecrets/test/awsfake/store"
)

// Canaries: secret values that must reach the pods and nothing else.
const (
	canaryPassword = "CANARY-pw-e2e-8d1f"
	canaryJWTCur   = "CANARY-jwt-current-77aa"
	canaryJWTPrev  = "CANARY-jwt-previous-1c0e"
)

// TestScenarios runs the real-node scenarios in order: later ones (driver
// restart, leak checks) depend on the state earlier ones leave.
func TestScenarios(t *testing.T) {
	secretsBefore := secretCount(t)
	tn := newTenant(t, "e2e")
	ns := tn.ns
	putSecret(t, tn.secret("db"), `{"username":"app","password":"`+canaryPassword+`"}`)
	putSecret(t, tn.secret("jwt"), canaryJWTPrev)
	putSecret(t, tn.secret("jwt"), canaryJWTCur) // the previous value becomes AWSPREVIOUS
	putParameter(t, "/e2e/"+ns+"/flag", "beta=on")
	createClass(t, ns, "app", fmt.Sprintf(`
- objectName: %q
  objectType: secretsmanager
  objectAlias: db.json
  jmesPath:
    - {path: password, objectAlias: db-password, filePermission: "0440"}
- {objectName: %q, objectType: secretsmanager, objectVersionLabel: AWSCURRENT, objectAlias: jwt-current}
- {objectName: %q, objectType: secretsmanager, objectVersionLabel: AWSPREVIOUS, objectAlias: jwt-previous}
- {objectName: %q, objectType: ssmparameter, objectAlias: flag}
`, tn.secret("db"), tn.secret("jwt"), tn.secret("jwt"), "/e2e/"+ns+"/flag"))

	var appPod *corev1.Pod
	t.Run("a: secrets manager and ssm, alias, jmesPath, current and previous", func(t *testing.T) {
		createPod(t, ns, podSpec("app", podOpts{class: "app"}))
		appPod = waitRunning(t, ns, "app")
		r := readReport(t, ns, "app")
		want := map[string]fileReport{
			"db.json":      {mode: "644", content: `{"username":"app","password":"` + canaryPassword + `"}`},
			"db-password":  {mode: "440", content: canaryPassword},
			"jwt-current":  {mode: "644", content: canaryJWTCur},
			"jwt-previous": {mode: "644", content: canaryJWTPrev},
			"flag":         {mode: "644", content: "beta=on"},
		}
		if len(r.files) != len(want) {
			t.Errorf("pod sees files %v, want exactly %d", keys(r.files), len(want))
		}
		for name, w := range want {
			got, ok := r.files[name]
			if !ok || got.mode != w.mode || got.content != w.content {
				t.Errorf("%s: got %+v, want mode %s content %q", name, got, w.mode, w.content)
			}
		}
		if !strings.Contains(r.mount, " tmpfs ") || !strings.Contains(r.mount, "ro,") {
			t.Errorf("volume mount %q: want a read-only tmpfs", r.mount)
		}
		if r.write != "denied" {
			t.Errorf("the pod could write into its secrets volume (%q)", r.write)
		}
	})

	t.Run("b: non-root pod with fsGroup reads files closed to others", func(t *testing.T) {
		createPod(t, ns, podSpec("nonroot", podOpts{class: "app", runAsUser: ptr(int64(1000)), fsGroup: ptr(int64(2000))}))
		waitRunning(t, ns, "nonroot")
		r := readReport(t, ns, "nonroot")
		got := r.files["db-password"]
		if got.mode != "440" || got.gid != "2000" || got.content != canaryPassword {
			t.Fatalf("db-password as uid 1000: %+v; want mode 440, group 2000, readable", got)
		}
	})

	t.Run("c: missing secret fails the mount, then the pod starts by itself", func(t *testing.T) {
		createClass(t, ns, "late", fmt.Sprintf("- {objectName: %q, objectType: secretsmanager, objectAlias: late}", tn.secret("late")))
		createPod(t, ns, podSpec("late", podOpts{class: "late"}))
		msg := waitEvent(t, ns, "late", "FailedMount", tn.secret("late"), "ResourceNotFoundException")
		t.Logf("FailedMount: %s", msg)
		if p, _ := kube.CoreV1().Pods(ns).Get(ctxT(t), "late", metav1.GetOptions{}); p.Status.Phase == corev1.PodRunning {
			t.Fatal("pod is Running without its secret")
		}
		putSecret(t, tn.secret("late"), "arrived")
		waitRunning(t, ns, "late")
		if got := readReport(t, ns, "late").files["late"].content; got != "arrived" {
			t.Fatalf("late = %q, want arrived", got)
		}
	})

	t.Run("d: denied role, and a class from another namespace", func(t *testing.T) {
		tn.serviceAccount(t, "intruder", roleARN(ns+"-intruder"))
		seed(t, store.Seed{Roles: []store.Role{{ARN: roleARN(ns + "-intruder"),
			Subjects: []string{"system:serviceaccount:" + ns + ":intruder"}, Allow: []string{"arn:aws:ssm:*:*:parameter/nothing"}}}})
		createPod(t, ns, podSpec("intruder", podOpts{class: "app", serviceAccount: "intruder"}))
		msg := waitEvent(t, ns, "intruder", "FailedMount", "AccessDenied", ns+"-intruder")
		t.Logf("FailedMount: %s", msg)

		other := newTenant(t, "e2e-other")
		createClass(t, other.ns, "theirs", fmt.Sprintf("- {objectName: %q, objectType: secretsmanager}", other.secret("x")))
		createPod(t, ns, podSpec("borrower", podOpts{class: "theirs"}))
		msg = waitEvent(t, ns, "borrower", "FailedMount", ns+"/theirs", "not found")
		t.Logf("FailedMount: %s", msg)
	})

	t.Run("i: EKS Pod Identity, the pod's token for the agent, no role annotation", func(t *testing.T) {
		sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "pi"}}
		if _, err := kube.CoreV1().ServiceAccounts(ns).Create(ctxT(t), sa, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		seed(t, store.Seed{PodIdentity: []store.SeedPodIdentity{{Namespace: ns, ServiceAccount: "pi", RoleARN: tn.role}}})
		createClassWith(t, ns, "pod-identity", map[string]any{"usePodIdentity": "true",
			"objects": fmt.Sprintf("- {objectName: %q, objectType: secretsmanager, objectVersionLabel: AWSCURRENT, objectAlias: jwt}", tn.secret("jwt"))})
		createPod(t, ns, podSpec("pi", podOpts{class: "pod-identity", serviceAccount: "pi"}))
		waitRunning(t, ns, "pi")
		if got := readReport(t, ns, "pi").files["jwt"].content; got != canaryJWTCur {
			t.Fatalf("jwt through Pod Identity = %q", got)
		}
	})

	t.Run("f: driver restart keeps mounted pods and serves new ones", func(t *testing.T) {
		hostDir := volumeDir(appPod)
		before := driverLogs(t) // the restarted pod's logs are gone afterwards
		checkLogs(t, before)
		restartDriver(t)
		b, err := os.ReadFile(filepath.Join(hostDir, "jwt-current"))
		if err != nil || string(b) != canaryJWTCur {
			t.Fatalf("after the restart the running pod's file reads %q, %v", b, err)
		}
		if r := readReport(t, ns, "app"); r.files["jwt-current"].content != canaryJWTCur {
			t.Fatal("the running pod lost its files")
		}
		createPod(t, ns, podSpec("after-restart", podOpts{class: "app"}))
		waitRunning(t, ns, "after-restart")
		if got := readReport(t, ns, "after-restart").files["flag"].content; got != "beta=on" {
			t.Fatalf("new pod after restart reads flag %q", got)
		}
	})

	t.Run("h: 30 pods at once", func(t *testing.T) {
		start := time.Now()
		var wg sync.WaitGroup
		errs := make(chan error, 30)
		for i := 0; i < 30; i++ {
			name := fmt.Sprintf("burst-%02d", i)
			createPod(t, ns, podSpec(name, podOpts{class: "app"}))
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := podRunning(ctxT(t), ns, name)
				errs <- err
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Error(err)
			}
		}
		t.Logf("30 pods with a 5-object podsecrets volume: all Running %v after the first create", time.Since(start).Round(time.Millisecond))
	})

	t.Run("e: deleting pods unmounts and removes their volumes", func(t *testing.T) {
		dir := volumeDir(appPod)
		deletePodAndWait(t, ns, "app")
		if m := podsecretsMounts(t, filepath.Dir(filepath.Dir(filepath.Dir(dir)))); len(m) != 0 {
			t.Fatalf("deleted pod's volume still mounted: %v", m)
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Fatalf("deleted pod's volume dir %s remains (%v)", dir, err)
		}
		if err := kube.CoreV1().Namespaces().Delete(ctxT(t), ns, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		err := wait.PollUntilContextTimeout(ctxT(t), 500*time.Millisecond, podTimeout, true, func(ctx context.Context) (bool, error) {
			return len(podsecretsMounts(t, "/var/lib/kubelet/")) == 0, nil
		})
		if err != nil {
			t.Fatalf("podsecrets tmpfs left on the node after all pods were deleted: %v", podsecretsMounts(t, "/var/lib/kubelet/"))
		}
	})

	t.Run("g: no Kubernetes Secret, no token or value in driver logs", func(t *testing.T) {
		if after := secretCount(t); after != secretsBefore {
			t.Errorf("Secrets in the cluster: %d before, %d after", secretsBefore, after)
		}
		logs := driverLogs(t)
		if !strings.Contains(logs, "volume published") {
			t.Fatalf("driver logs hold no publish record; the check would be vacuous:\n%.2000s", logs)
		}
		if !strings.Contains(logs, `"level":"DEBUG"`) {
			t.Error("the driver is not logging at debug level (the overlay sets PODSECRETS_LOG_LEVEL): the check is weaker than intended")
		}
		checkLogs(t, logs)
	})
}

func checkLogs(t *testing.T, logs string) {
	t.Helper()
	for _, c := range []string{canaryPassword, canaryJWTCur, canaryJWTPrev} {
		if strings.Contains(logs, c) {
			t.Errorf("driver logs contain the secret canary %q", c)
		}
	}
	if m := jwtPattern.FindString(logs); m != "" {
		t.Errorf("driver logs contain a token: %.20s…", m)
	}
}

// volumeDir is where kubelet mounts the pod's "secrets" volume on the host.
func volumeDir(p *corev1.Pod) string {
	return filepath.Join("/var/lib/kubelet/pods", string(p.UID), "volumes", "kubernetes.io~csi", "secrets", "mount")
}

// restartDriver deletes the driver pod and waits for its replacement to be
// ready and registered with kubelet.
func restartDriver(t *testing.T) {
	t.Helper()
	ctx := ctxT(t)
	pods, err := kube.CoreV1().Pods(driverNS).List(ctx, metav1.ListOptions{LabelSelector: driverSel})
	if err != nil || len(pods.Items) == 0 {
		t.Fatalf("driver pods: %v (%d)", err, len(pods.Items))
	}
	old := map[string]bool{}
	for _, p := range pods.Items {
		old[p.Name] = true
		if err := kube.CoreV1().Pods(driverNS).Delete(ctx, p.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	err = wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, podTimeout, true, func(ctx context.Context) (bool, error) {
		pods, err := kube.CoreV1().Pods(driverNS).List(ctx, metav1.ListOptions{LabelSelector: driverSel})
		if err != nil {
			return false, nil
		}
		for _, p := range pods.Items {
			if old[p.Name] {
				return false, nil
			}
			for _, c := range p.Status.Conditions {
				if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
					return true, nil
				}
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("driver did not come back: %v", err)
	}
}

func keys[V any](m map[string]V) []string {
	var k []string
	for n := range m {
		k = append(k, n)
	}
	sort.Strings(k)
	return k
}

// TestRealNodeStartup measures pod creation → Running with a podsecrets
// volume and with an emptyDir, for `make bench`. It runs only when asked
// to write its result.
func TestRealNodeStartup(t *testing.T) {
	out := os.Getenv("PODSECRETS_REALNODE_OUT")
	if out == "" {
		t.Skip("a measurement for make bench: set PODSECRETS_REALNODE_OUT to run it")
	}
	tn := newTenant(t, "bench")
	putSecret(t, tn.secret("db"), "bench-value")
	createClass(t, tn.ns, "one", fmt.Sprintf("- {objectName: %q, objectType: secretsmanager, objectAlias: db}", tn.secret("db")))
	measure := func(prefix string, o podOpts) []float64 {
		var ms []float64
		for i := 0; i < 10; i++ {
			name := fmt.Sprintf("%s-%d", prefix, i)
			start := time.Now()
			createPod(t, tn.ns, podSpec(name, o))
			waitRunning(t, tn.ns, name)
			ms = append(ms, float64(time.Since(start).Microseconds())/1000)
			deletePodAndWait(t, tn.ns, name)
		}
		return ms
	}
	res := map[string]any{
		"emptyDirMs":   measure("empty", podOpts{emptyDir: true}),
		"podsecretsMs": measure("secret", podOpts{class: "one"}),
	}
	// Pod start hides the mount behind kubelet's 1 s relist; the driver's own
	// NodePublishVolume time shows it.
	var publishMs []float64
	for _, line := range strings.Split(driverLogs(t), "\n") {
		var rec struct {
			Msg, Namespace string
			DurationMs     float64 `json:"duration_ms"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "volume published" && rec.Namespace == tn.ns {
			publishMs = append(publishMs, rec.DurationMs)
		}
	}
	if len(publishMs) != 10 {
		t.Fatalf("found %d publish records of the 10 pods in the driver's logs", len(publishMs))
	}
	res["driverPublishMs"] = publishMs
	if v, err := kube.Discovery().ServerVersion(); err == nil {
		res["kubernetesVersion"] = v.GitVersion
	}
	b, _ := json.MarshalIndent(res, "", "  ")
	if err := os.WriteFile(out, b, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s", b)
}
