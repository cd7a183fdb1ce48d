// Package integration drives the real CSI server, over its socket, with the
// real AWS provider against the fake AWS store: the whole node plugin short
// of kubelet.
package integration

import (
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"

	"github.com/podsecrets/podsecrets/driver"
	"github.com/podsecrets/podsecrets/kube"
	"github.com/podsecrets/podsecrets/mount"
	"github.com/podsecrets/podsecrets/provider"
	"github.com/podsecrets/podsecrets/provider/aws"
	"github.com/podsecrets/podsecrets/test/awsfake/store"
	"github.com/podsecrets/podsecrets/test/logbuf"
	"github.com/podsecrets/podsecrets/volume"
)

const (
	region    = "us-east-1"
	roleApp   = "arn:aws:iam::111122223333:role/app"
	secretPW  = "CANARY-db-password-5e1"
	jwtCur    = "-----BEGIN KEY----- current"
	jwtPrev   = "-----BEGIN KEY----- previous"
	objectsOK = `
- objectName: "app/db"
  objectType: "secretsmanager"
  objectAlias: "db.json"
  filePermission: "0640"
  jmesPath:
    - path: password
      objectAlias: db-password
      filePermission: "0400"
- objectName: "app/jwt"
  objectType: "secretsmanager"
  objectVersionLabel: "AWSCURRENT"
  objectAlias: "jwt-current"
- objectName: "app/jwt"
  objectType: "secretsmanager"
  objectVersionLabel: "AWSPREVIOUS"
  objectAlias: "jwt-previous"
- objectName: "/app/flags"
  objectType: "ssmparameter"
`
)

type env struct {
	t      *testing.T
	store  *store.Store
	issuer *store.Issuer
	node   csi.NodeClient
	logs   *logbuf.Buffer
	root   string
}

func class(name, objects string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "podsecrets.dev/v1",
		"kind":       "SecretProviderClass",
		"metadata":   map[string]any{"namespace": "default", "name": name},
		"spec": map[string]any{"provider": "aws", "parameters": map[string]any{
			"region": region, "objects": objects,
		}},
	}}
}

func newEnv(t *testing.T) *env {
	t.Helper()
	requireRoot(t)
	e := &env{t: t, store: store.New(store.Options{}), logs: &logbuf.Buffer{}, root: t.TempDir()}
	var err error
	if e.issuer, err = store.NewIssuer("https://kubernetes.default.svc"); err != nil {
		t.Fatal(err)
	}
	if err := e.store.TrustJWKS(e.issuer.JWKS()); err != nil {
		t.Fatal(err)
	}
	e.store.AddRole(store.Role{ARN: roleApp, Subjects: []string{"system:serviceaccount:default:app"},
		Allow: []string{"arn:aws:secretsmanager:*:*:secret:app/*", "arn:aws:ssm:*:*:parameter/app/*"}})
	e.store.CreateSecret(region, "app/db", store.Value{String: `{"username":"app","password":"` + secretPW + `"}`})
	e.store.CreateSecret(region, "app/jwt", store.Value{String: jwtPrev})
	if _, err := e.store.PutSecretValue(region, "app/jwt", store.Value{String: jwtCur}); err != nil {
		t.Fatal(err)
	}
	e.store.CreateSecret(region, "other/secret", store.Value{String: "not yours"})
	e.store.PutParameter(region, "/app/flags", "beta=on", "String")
	srv := httptest.NewServer(e.store.Handler())
	t.Cleanup(srv.Close)

	sa := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "ServiceAccount",
		"metadata": map[string]any{"namespace": "default", "name": "app",
			"annotations": map[string]any{aws.RoleARNAnnotation: roleApp}}}}
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{kube.ClassGVR: "SecretProviderClassList",
			{Version: "v1", Resource: "serviceaccounts"}: "ServiceAccountList"},
		sa,
		class("ok", objectsOK),
		class("denied", "- {objectName: other/secret, objectType: secretsmanager}"),
		class("late", "- {objectName: app/late, objectType: secretsmanager}"))
	log := slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	p, err := aws.New(aws.Options{Region: region, EndpointURL: srv.URL, ServiceAccounts: kube.ServiceAccounts{Client: dyn}, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	e.node = serve(t, e.root, driver.Options{
		NodeID: "n", Version: "test", Providers: provider.NewRegistry(p), Classes: kube.Classes{Client: dyn},
		Volumes: volume.New(volume.Options{Mounter: mount.System{}, TmpfsSize: 1 << 20}), Logger: log,
	})
	return e
}

// publish sends what kubelet sends for pod default/<pod> with an inline
// volume of class, including the pod's STS token in the CSI secrets.
func (e *env) publish(pod, class string, fsGroup string) (string, error) {
	req := kubeletRequest(e.t, e.root, pod, class, fsGroup)
	token := e.issuer.Token("system:serviceaccount:default:app", "sts.amazonaws.com", time.Hour)
	req.Secrets = map[string]string{"csi.storage.k8s.io/serviceAccount.tokens": fmt.Sprintf(
		`{"sts.amazonaws.com":{"token":%q,"expirationTimestamp":%q}}`, token, time.Now().Add(time.Hour).Format(time.RFC3339))}
	_, err := e.node.NodePublishVolume(context.Background(), req)
	return req.TargetPath, err
}

func TestPublishFromAWS(t *testing.T) {
	e := newEnv(t)
	target, err := e.publish("web", "ok", "3000")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]struct {
		data string
		mode os.FileMode
	}{
		"db.json": {`{"username":"app","password":"` + secretPW + `"}`, 0o640},
		// "0400" with an fsGroup: group-readable, as kubelet's Secret volumes.
		"db-password":  {secretPW, 0o440},
		"jwt-current":  {jwtCur, 0o644},
		"jwt-previous": {jwtPrev, 0o644},
		"_app_flags":   {"beta=on", 0o644},
	}
	for name, w := range want {
		p := filepath.Join(target, name)
		got, err := os.ReadFile(p)
		if err != nil || string(got) != w.data {
			t.Errorf("%s = %q, %v; want %q", name, got, err, w.data)
			continue
		}
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil {
			t.Fatal(err)
		}
		if os.FileMode(st.Mode).Perm() != w.mode || st.Gid != 3000 {
			t.Errorf("%s mode %v gid %d, want %v gid 3000", name, os.FileMode(st.Mode).Perm(), st.Gid, w.mode)
		}
	}
	// One STS exchange, one GetSecretValue for each of the two current
	// secrets (the cheaper API by quota headroom: 2/10,000 against 1/100)
	// and one for the pinned AWSPREVIOUS, one SSM
	// call for the parameters, all in parallel.
	calls := e.store.CallCounts()
	for op, n := range map[string]int{
		"sts.AssumeRoleWithWebIdentity":      1,
		"secretsmanager.BatchGetSecretValue": 0,
		"secretsmanager.GetSecretValue":      3,
		"ssm.GetParameters":                  1,
	} {
		if calls[op] != n {
			t.Errorf("%s called %d times, want %d (all calls: %v)", op, calls[op], n, calls)
		}
	}
	if logs := e.logs.String(); strings.Contains(logs, secretPW) || strings.Contains(logs, "CANARY") {
		t.Fatalf("logs contain the secret value:\n%s", logs)
	}
	if !strings.Contains(e.logs.String(), `"volume published"`) {
		t.Fatal("no audit record of the publish")
	}
}

func TestPublishDeniedAndMissing(t *testing.T) {
	e := newEnv(t)
	target, err := e.publish("denied", "denied", "")
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "other/secret") || !strings.Contains(err.Error(), roleApp) {
		t.Fatalf("publish of a forbidden secret = %v; want PermissionDenied naming the object and role", err)
	}
	if _, serr := os.Lstat(target); !os.IsNotExist(serr) {
		t.Fatalf("failed publish left %s behind", target)
	}

	target, err = e.publish("late", "late", "")
	if status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), "app/late") {
		t.Fatalf("publish of a missing secret = %v; want NotFound naming it", err)
	}
	// Kubelet retries the same publish; once the secret exists it succeeds.
	e.store.CreateSecret(region, "app/late", store.Value{String: "here now"})
	if target, err = e.publish("late", "late", ""); err != nil {
		t.Fatalf("retry after creating the secret = %v", err)
	}
	if got, err := os.ReadFile(filepath.Join(target, "app_late")); err != nil || string(got) != "here now" {
		t.Fatalf("app_late = %q, %v", got, err)
	}
}
