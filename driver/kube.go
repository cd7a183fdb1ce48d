package driver

import (
	"context"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// RegionLabel is the well-known node label cloud providers set to the node's
// region.
const RegionLabel = "topology.kubernetes.io/region"

// KubeServiceAccounts reads ServiceAccount annotations (the IRSA role ARN)
// with one GET each; providers receive it through their own small interface.
type KubeServiceAccounts struct {
	Client kubernetes.Interface
}

// ServiceAccountAnnotations returns the annotations of namespace/name.
func (k KubeServiceAccounts) ServiceAccountAnnotations(ctx context.Context, namespace, name string) (map[string]string, error) {
	sa, err := k.Client.CoreV1().ServiceAccounts(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("get ServiceAccount %s/%s: %w", namespace, name, err)
	}
	return sa.Annotations, nil
}

// NodeRegion returns the region label of node, or "" if it has none.
func NodeRegion(ctx context.Context, client kubernetes.Interface, node string) (string, error) {
	n, err := client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("get Node %s: %w", node, err)
	}
	return n.Labels[RegionLabel], nil
}
