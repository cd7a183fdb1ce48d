//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/podsecrets/podsecrets/check"
)

// podsecretsBinary builds cmd/podsecrets from the tree under test into a
// temporary directory: the check runs where users run it, outside the
// cluster.
func podsecretsBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "podsecrets")
	out, err := exec.Command("go", "build", "-o", bin, "../../cmd/podsecrets").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// runCheck runs podsecrets check on the class file with args, against the
// cluster of $KUBECONFIG and the fake store, and returns its exit code
// and output.
func runCheck(t *testing.T, bin, file string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.CommandContext(ctxT(t), bin, append([]string{"check", "-f", file, "--region", region}, args...)...)
	cmd.Env = append(os.Environ(), "AWS_ENDPOINT_URL="+awsURL)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		return exit.ExitCode(), stdout.String(), stderr.String()
	case err != nil:
		t.Fatal(err)
	}
	return 0, stdout.String(), stderr.String()
}

// TestToolsCheckAs: podsecrets check --as reads every object of a class
// with the service account's own identity (a TokenRequest token, IRSA
// against the fake STS, which trusts the cluster's issuer) and reports
// what it found, never a value.
func TestToolsCheckAs(t *testing.T) {
	tn := newTenant(t, "tools-check")
	const dbValue = `{"user":"check-user-value","password":"check-password-value"}`
	arn, version := putSecretVersion(t, tn.secret("db"), dbValue)
	param := "/e2e/" + tn.ns + "/url"
	pv := putParameter(t, param, "https://check-url-value")
	class := fmt.Sprintf(`apiVersion: podsecrets.dev/v1
kind: SecretProviderClass
metadata:
  name: app
  namespace: %s
spec:
  provider: aws
  parameters:
    objects: |
      - objectName: %q
        objectType: secretsmanager
        objectAlias: db.json
        jmesPath: [{path: password, objectAlias: password}]
      - {objectName: %q, objectType: ssmparameter, objectAlias: url}
      - {objectName: %q, objectType: secretsmanager, optional: true}
`, tn.ns, tn.secret("db"), param, tn.secret("absent"))
	file := filepath.Join(t.TempDir(), "class.yaml")
	if err := os.WriteFile(file, []byte(class), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := podsecretsBinary(t)
	values := []string{"check-user-value", "check-password-value", "check-url-value"}
	noValues := func(out string) {
		t.Helper()
		for _, v := range values {
			if strings.Contains(out, v) {
				t.Fatalf("check printed the value %q:\n%s", v, out)
			}
		}
		if jwtPattern.MatchString(out) {
			t.Fatalf("check printed a token:\n%s", out)
		}
	}

	code, stdout, stderr := runCheck(t, bin, file, "--as", tn.ns+"/reader", "-o", "json")
	noValues(stdout + stderr)
	if code != check.ExitOK {
		t.Fatalf("exit code %d\n%s%s", code, stdout, stderr)
	}
	var r check.Report
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("%v\n%s", err, stdout)
	}
	if len(r.Classes) != 1 || r.Classes[0].DryRun == nil || r.Classes[0].DryRun.Identity != "role "+tn.role {
		t.Fatalf("report %s", stdout)
	}
	objs := r.Classes[0].Objects
	db, url, absent := objs[0].Read, objs[1].Read, objs[2].Read
	if db.Status != check.ReadFound || db.ID != arn || db.Version != version || *objs[0].Files[0].Bytes != len(dbValue) ||
		*objs[0].Files[1].Bytes != len("check-password-value") {
		t.Errorf("db: %+v, files %v", db, objs[0].Files)
	}
	if url.Status != check.ReadFound || url.Version != fmt.Sprint(pv) {
		t.Errorf("url: %+v", url)
	}
	if absent.Status != check.ReadSkipped || !strings.Contains(absent.Error, "ResourceNotFoundException") {
		t.Errorf("optional absent object: %+v", absent)
	}

	// The same class with the absent object required: the check fails it
	// and names it, as the mount would.
	if err := os.WriteFile(file, []byte(strings.Replace(class, ", optional: true", "", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr = runCheck(t, bin, file, "--as", tn.ns+"/reader")
	noValues(stdout + stderr)
	if want := fmt.Sprintf(`objects[2] secretsmanager %q: FAILED: `, tn.secret("absent")); code != check.ExitProblems || !strings.Contains(stdout, want) {
		t.Fatalf("exit code %d, want %d and %q:\n%s%s", code, check.ExitProblems, want, stdout, stderr)
	}
	// A service account the role does not trust.
	tn.serviceAccount(t, "stranger", tn.role)
	code, stdout, stderr = runCheck(t, bin, file, "--as", tn.ns+"/stranger")
	if code != check.ExitProblems || !strings.Contains(stdout, "AssumeRoleWithWebIdentity") {
		t.Fatalf("an untrusted service account: exit code %d:\n%s%s", code, stdout, stderr)
	}
}

// TestToolsExecExample: deploy/examples/exec.yaml as written, with this
// cluster's names: the init container installs podsecrets-exec from the
// driver's image, and the app reads the secrets from its environment.
func TestToolsExecExample(t *testing.T) {
	tn := newTenant(t, "tools-exec")
	putSecretVersion(t, tn.secret("db"), `{"username":"exec-user","password":"exec-password-1"}`)
	ds, err := kube.AppsV1().DaemonSets(driverNS).Get(ctxT(t), "podsecrets", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	image := ds.Spec.Template.Spec.Containers[0].Image
	raw, err := os.ReadFile("../../deploy/examples/exec.yaml")
	if err != nil {
		t.Fatal(err)
	}
	text := strings.NewReplacer(
		"namespace: default", "namespace: "+tn.ns,
		`"prod/db"`, fmt.Sprintf("%q", tn.secret("db")),
		"ghcr.io/podsecrets/podsecrets:latest", image,
		"image: busybox", "image: "+busybox,
		"serviceAccountName: app", "serviceAccountName: reader",
	).Replace(string(raw))
	docs, err := check.Documents([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	var pod *corev1.Pod
	for _, d := range docs {
		switch d.GetKind() {
		case "SecretProviderClass":
			if _, err := dyn.Resource(classes).Namespace(tn.ns).Create(ctxT(t), d, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		case "Pod":
			b, _ := json.Marshal(d.Object)
			pod = &corev1.Pod{}
			if err := json.Unmarshal(b, pod); err != nil {
				t.Fatal(err)
			}
		}
	}
	if pod == nil {
		t.Fatal("the example has no Pod")
	}
	// Both images are imported into the node, never pulled.
	for i := range pod.Spec.InitContainers {
		pod.Spec.InitContainers[i].ImagePullPolicy = corev1.PullNever
	}
	for i := range pod.Spec.Containers {
		pod.Spec.Containers[i].ImagePullPolicy = corev1.PullNever
	}
	pod.Spec.TerminationGracePeriodSeconds = ptr(int64(1))
	createPod(t, tn.ns, pod)
	waitRunning(t, tn.ns, pod.Name)
	want := "connecting as exec-user with a password of 15 characters"
	var logs string
	err = wait.PollUntilContextTimeout(ctxT(t), 250*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		b, err := kube.CoreV1().Pods(tn.ns).GetLogs(pod.Name, &corev1.PodLogOptions{Container: "app"}).Do(ctx).Raw()
		if err != nil {
			return false, nil
		}
		logs = string(b)
		return strings.Contains(logs, want), nil
	})
	if err != nil {
		t.Fatalf("the app did not print %q: %v\nlogs:\n%s\nevents:\n%s", want, err, logs, eventsOf(tn.ns, pod.Name))
	}
}

// TestToolsOptionalObjectSkipped: a pod whose class has an optional
// object the store does not have runs without it, and a Warning event
// OptionalObjectSkipped on the pod names the object, never a value.
func TestToolsOptionalObjectSkipped(t *testing.T) {
	tn := newTenant(t, "tools-opt")
	putSecretVersion(t, tn.secret("db"), "optional-test-db-value")
	createClass(t, tn.ns, "opt", fmt.Sprintf("- {objectName: %q, objectType: secretsmanager, objectAlias: db}\n"+
		"- {objectName: %q, objectType: secretsmanager, objectAlias: later, optional: true}\n", tn.secret("db"), tn.secret("later")))
	createPod(t, tn.ns, podSpec("opt", podOpts{class: "opt"}))
	waitRunning(t, tn.ns, "opt")
	msg := waitEvent(t, tn.ns, "opt", "OptionalObjectSkipped", "SecretProviderClass "+tn.ns+"/opt", "objects[1]", tn.secret("later"), `file "later"`)
	if strings.Contains(msg, "optional-test-db-value") {
		t.Fatalf("the event holds a value: %s", msg)
	}
	r := readReport(t, tn.ns, "opt")
	if _, ok := r.files["later"]; ok || r.files["db"].content != "optional-test-db-value" || len(r.files) != 1 {
		t.Fatalf("files %v, want db alone", r.files)
	}
}
