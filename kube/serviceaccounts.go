package kube

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/podsecrets/podsecrets/provider"
)

// RegionLabel is the well-known node label cloud providers set to the node's
// region.
const RegionLabel = "topology.kubernetes.io/region"

var (
	serviceAccountsGVR = schema.GroupVersionResource{Version: "v1", Resource: "serviceaccounts"}
	nodesGVR           = schema.GroupVersionResource{Version: "v1", Resource: "nodes"}
)

// ServiceAccounts reads ServiceAccount annotations (the IRSA role ARN)
// with one GET each; providers receive it through their own small interface.
type ServiceAccounts struct {
	Client dynamic.Interface
}

// ServiceAccountAnnotations returns the annotations of namespace/name.
func (k ServiceAccounts) ServiceAccountAnnotations(ctx context.Context, namespace, name string) (map[string]string, error) {
	sa, err := k.Client.Resource(serviceAccountsGVR).Namespace(namespace).Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil, fmt.Errorf("ServiceAccount %s/%s: %w", namespace, name, provider.ErrNotFound)
	case apierrors.IsForbidden(err):
		return nil, fmt.Errorf("ServiceAccount %s/%s: the driver may not read it (its ClusterRole needs get on serviceaccounts): %w",
			namespace, name, provider.ErrPermissionDenied)
	case err != nil:
		return nil, fmt.Errorf("get ServiceAccount %s/%s: %w: %w", namespace, name, provider.ErrUnavailable, err)
	}
	return sa.GetAnnotations(), nil
}

// NodeRegion returns the region label of node, or "" if it has none.
func NodeRegion(ctx context.Context, client dynamic.Interface, node string) (string, error) {
	n, err := client.Resource(nodesGVR).Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("get Node %s: %w", node, err)
	}
	return n.GetLabels()[RegionLabel], nil
}
