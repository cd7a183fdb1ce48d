package kube

import (
	"context"
	"errors"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
)

// ClassGVR is the SecretProviderClass resource podsecrets reads. Its shape
// (spec.provider, spec.parameters) is the Secrets Store CSI Driver's, so
// classes migrate by changing only the apiVersion.
var ClassGVR = schema.GroupVersionResource{Group: "podsecrets.dev", Version: "v1", Resource: "secretproviderclasses"}

// Class is a SecretProviderClass as the driver uses it.
type Class struct {
	Namespace  string
	Name       string
	Provider   string
	Parameters map[string]string
}

// Errors Classes wraps.
var (
	ErrClassNotFound = errors.New("SecretProviderClass not found")
	ErrClassInvalid  = errors.New("SecretProviderClass invalid")
)

// Classes reads classes from the API server with one GET per publish.
// A GET, unlike an informer, needs only the "get" verb and holds no copy of
// every class of the cluster in the driver's memory.
type Classes struct {
	Client dynamic.Interface
}

// GetClass returns the class namespace/name. A missing class is an error
// wrapping ErrClassNotFound; a malformed one wraps ErrClassInvalid.
func (k Classes) GetClass(ctx context.Context, namespace, name string) (*Class, error) {
	u, err := k.Client.Resource(ClassGVR).Namespace(namespace).Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil, fmt.Errorf("%w: %s/%s (the class must be in the pod's namespace)", ErrClassNotFound, namespace, name)
	case err != nil:
		return nil, fmt.Errorf("get SecretProviderClass %s/%s: %w", namespace, name, err)
	}
	return classFrom(u)
}

func classFrom(u *unstructured.Unstructured) (*Class, error) {
	c := &Class{Namespace: u.GetNamespace(), Name: u.GetName()}
	ref := u.GetNamespace() + "/" + u.GetName()
	p, _, err := unstructured.NestedString(u.Object, "spec", "provider")
	if err != nil {
		return nil, fmt.Errorf("%w: %s: spec.provider: %v", ErrClassInvalid, ref, err)
	}
	if p == "" {
		return nil, fmt.Errorf("%w: %s: spec.provider is required", ErrClassInvalid, ref)
	}
	c.Provider = p
	params, _, err := unstructured.NestedStringMap(u.Object, "spec", "parameters")
	if err != nil {
		return nil, fmt.Errorf("%w: %s: spec.parameters must map strings to strings: %v", ErrClassInvalid, ref, err)
	}
	c.Parameters = params
	return c, nil
}
