package driver

import (
	"context"

	"github.com/podsecrets/podsecrets/kube"
)

// ClassGetter reads SecretProviderClasses; kube.Classes on a node.
type ClassGetter interface {
	// GetClass returns the class namespace/name. A missing class is an error
	// wrapping kube.ErrClassNotFound; a malformed one wraps
	// kube.ErrClassInvalid.
	GetClass(ctx context.Context, namespace, name string) (*kube.Class, error)
}
