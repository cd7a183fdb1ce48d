package check

import (
	"context"
	"errors"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/podsecrets/podsecrets/provider"
)

// TestKubeTokens: a TokenRequest for the account and the one audience, and
// its errors by kind.
func TestKubeTokens(t *testing.T) {
	dyn := dynamicfake.NewSimpleDynamicClient(runtime.NewScheme())
	var got *unstructured.Unstructured
	var answer error
	dyn.PrependReactor("create", "serviceaccounts", func(a k8stesting.Action) (bool, runtime.Object, error) {
		c := a.(k8stesting.CreateAction)
		if c.GetSubresource() != "token" || c.GetNamespace() != "app" {
			t.Errorf("create %s/%s in %s", a.GetResource().Resource, c.GetSubresource(), c.GetNamespace())
		}
		got = c.GetObject().(*unstructured.Unstructured)
		if answer != nil {
			return true, nil, answer
		}
		out := got.DeepCopy()
		out.Object["status"] = map[string]any{"token": "the-token", "expirationTimestamp": "2030-01-02T03:04:05Z"}
		return true, out, nil
	})
	tok, err := KubeTokens{Client: dyn}.Token(context.Background(), "app", "reader", "sts.amazonaws.com")
	if err != nil {
		t.Fatal(err)
	}
	if tok.Value != "the-token" || !tok.ExpiresAt.Equal(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)) {
		t.Errorf("token %v expiring %v", tok.Value == "the-token", tok.ExpiresAt)
	}
	aud, _, _ := unstructured.NestedStringSlice(got.Object, "spec", "audiences")
	exp, _, _ := unstructured.NestedInt64(got.Object, "spec", "expirationSeconds")
	if got.GetKind() != "TokenRequest" || got.GetName() != "reader" || len(aud) != 1 || aud[0] != "sts.amazonaws.com" || exp != 600 {
		t.Errorf("request %v", got.Object)
	}

	sa := schema.GroupResource{Resource: "serviceaccounts"}
	for _, tc := range []struct {
		err  error
		kind error
		want string
	}{
		{apierrors.NewNotFound(sa, "reader"), provider.ErrNotFound, "ServiceAccount app/reader: not found"},
		{apierrors.NewForbidden(sa, "reader", errors.New("no")), provider.ErrUnavailable, "a token of ServiceAccount app/reader: the kubeconfig's user may not create serviceaccounts/token there: unavailable"},
		{apierrors.NewInternalError(errors.New("boom")), provider.ErrUnavailable, "a token of ServiceAccount app/reader: unavailable: Internal error occurred: boom"},
	} {
		answer = tc.err
		_, err := KubeTokens{Client: dyn}.Token(context.Background(), "app", "reader", "sts.amazonaws.com")
		if !errors.Is(err, tc.kind) || err.Error() != tc.want {
			t.Errorf("%v: %v, want %v %q", tc.err, err, tc.kind, tc.want)
		}
	}
}
