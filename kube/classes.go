package kube

import (
	"context"
	"errors"
	"fmt"
	"time"

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

// RefreshAnnotation on a SecretProviderClass asks for an immediate rotation
// check: any new value makes the next republish of every volume of the class
// ask the store at once, inside its poll interval or not. The driver learns of
// it from ClassWatch, a metadata watch, rather than from a GET per republish,
// which would cost an API call per mounted volume every minute.
const RefreshAnnotation = "podsecrets.dev/refresh"

// Class is a SecretProviderClass as the driver uses it.
type Class struct {
	Namespace  string
	Name       string
	Provider   string
	Parameters map[string]string
	// Generation is metadata.generation: it changes with the spec, so a
	// volume can tell that the class it was mounted with has changed.
	Generation int64
	// PollInterval is spec.rotation.pollInterval: how often a volume of
	// the class looks for new versions. Zero (the field absent) means never
	// rotate. The driver applies its own floor; this is the class's word.
	PollInterval time.Duration
	// Refresh is the value of RefreshAnnotation, "" if absent.
	Refresh string
	// VersionPolicy is spec.versionPolicy: PolicyPodStart (the default)
	// or PolicyRevision.
	VersionPolicy string
}

// Values of spec.versionPolicy.
const (
	// PolicyPodStart: each pod mounts the versions current when it starts.
	PolicyPodStart = "PodStart"
	// PolicyRevision: all pods of one workload revision mount the versions
	// its first pod resolved (see VersionRecord).
	PolicyRevision = "Revision"
)

// Errors Classes wraps.
var (
	ErrClassNotFound = errors.New("SecretProviderClass not found")
	ErrClassInvalid  = errors.New("SecretProviderClass invalid")
)

// Classes reads classes from the API server with one GET per publish.
// A GET, unlike an informer, holds no copy of every class of the cluster in
// the driver's memory; ClassWatch keeps only each class's generation and
// refresh annotation, to tell a republish when a GET is worth making.
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
	return ClassFrom(u)
}

// ClassFrom parses a SecretProviderClass object as the API server serves it,
// with GetClass's rules and errors; `podsecrets check` parses classes from
// files with it.
func ClassFrom(u *unstructured.Unstructured) (*Class, error) {
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
	c.PollInterval, err = pollInterval(u, ref)
	if err != nil {
		return nil, err
	}
	c.Generation = u.GetGeneration()
	c.Refresh = u.GetAnnotations()[RefreshAnnotation]
	policy, _, err := unstructured.NestedString(u.Object, "spec", "versionPolicy")
	switch {
	case err != nil:
		return nil, fmt.Errorf("%w: %s: spec.versionPolicy: %v", ErrClassInvalid, ref, err)
	case policy == "":
		policy = PolicyPodStart
	case policy != PolicyPodStart && policy != PolicyRevision:
		return nil, fmt.Errorf("%w: %s: spec.versionPolicy %q: want %s or %s", ErrClassInvalid, ref, policy, PolicyPodStart, PolicyRevision)
	}
	if policy == PolicyRevision && c.PollInterval > 0 {
		// A rotation would move the pods of a revision off the versions
		// the revision pinned, one republish at a time.
		return nil, fmt.Errorf("%w: %s: spec.versionPolicy Revision and spec.rotation exclude each other: "+
			"pin versions per rollout (Revision) or follow the store under running pods (rotation), not both", ErrClassInvalid, ref)
	}
	c.VersionPolicy = policy
	return c, nil
}

// pollInterval parses spec.rotation.pollInterval. The CRD's pattern already
// refuses most bad values, but a class stored before the pattern existed, or
// a zero ("0s") that the pattern lets through, must fail here with a message
// the user can act on rather than silently never rotate.
func pollInterval(u *unstructured.Unstructured, ref string) (time.Duration, error) {
	v, found, err := unstructured.NestedString(u.Object, "spec", "rotation", "pollInterval")
	if err != nil {
		return 0, fmt.Errorf("%w: %s: spec.rotation.pollInterval: %v", ErrClassInvalid, ref, err)
	}
	if !found {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%w: %s: spec.rotation.pollInterval %q: want a positive Go duration such as \"30s\", \"2m\" or \"1h30m\" (leave the field out to never rotate)",
			ErrClassInvalid, ref, v)
	}
	return d, nil
}
