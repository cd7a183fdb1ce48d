package check

import (
	"context"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/podsecrets/podsecrets/provider"
)

// tokenExpiry is how long a check's token lives: the shortest the API
// server grants (10 minutes); a check needs it for seconds.
const tokenExpiry = int64(600)

// KubeTokens mints tokens with the API server's TokenRequest, as kubelet
// does for a pod's CSI volume. The kubeconfig's user needs create on
// serviceaccounts/token in the namespace.
type KubeTokens struct {
	Client dynamic.Interface
}

var serviceAccounts = schema.GroupVersionResource{Version: "v1", Resource: "serviceaccounts"}

// Token implements TokenSource.
func (k KubeTokens) Token(ctx context.Context, namespace, serviceAccount, audience string) (provider.Token, error) {
	req := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "authentication.k8s.io/v1",
		"kind":       "TokenRequest",
		"metadata":   map[string]any{"name": serviceAccount, "namespace": namespace},
		"spec":       map[string]any{"audiences": []any{audience}, "expirationSeconds": tokenExpiry},
	}}
	sa := namespace + "/" + serviceAccount
	out, err := k.Client.Resource(serviceAccounts).Namespace(namespace).Create(ctx, req, metav1.CreateOptions{}, "token")
	switch {
	case apierrors.IsNotFound(err):
		return provider.Token{}, fmt.Errorf("ServiceAccount %s: %w", sa, provider.ErrNotFound)
	case apierrors.IsForbidden(err):
		return provider.Token{}, fmt.Errorf("a token of ServiceAccount %s: the kubeconfig's user may not create serviceaccounts/token there: %w",
			sa, provider.ErrUnavailable)
	case err != nil:
		return provider.Token{}, fmt.Errorf("a token of ServiceAccount %s: %w: %v", sa, provider.ErrUnavailable, err)
	}
	tok, _, _ := unstructured.NestedString(out.Object, "status", "token")
	exp, _, _ := unstructured.NestedString(out.Object, "status", "expirationTimestamp")
	if tok == "" {
		return provider.Token{}, fmt.Errorf("a token of ServiceAccount %s: the TokenRequest answer has no token: %w", sa, provider.ErrUnavailable)
	}
	at, err := time.Parse(time.RFC3339, exp)
	if err != nil {
		at = time.Now().Add(time.Duration(tokenExpiry) * time.Second)
	}
	return provider.Token{Value: tok, ExpiresAt: at}, nil
}
