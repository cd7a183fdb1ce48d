package kube

import (
	"context"
	"errors"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/podsecrets/podsecrets/provider"
)

func object(apiVersion, kind, namespace, name string, meta map[string]any) *unstructured.Unstructured {
	md := map[string]any{"name": name}
	if namespace != "" {
		md["namespace"] = namespace
	}
	for k, v := range meta {
		md[k] = v
	}
	return &unstructured.Unstructured{Object: map[string]any{"apiVersion": apiVersion, "kind": kind, "metadata": md}}
}

func TestServiceAccounts(t *testing.T) {
	client := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{serviceAccountsGVR: "ServiceAccountList", nodesGVR: "NodeList"},
		object("v1", "ServiceAccount", "ns", "app", map[string]any{
			"annotations": map[string]any{"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/app"}}),
		object("v1", "Node", "", "n1", map[string]any{"labels": map[string]any{RegionLabel: "eu-west-1"}}),
	)
	client.PrependReactor("get", "serviceaccounts", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetNamespace() == "locked" {
			return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "serviceaccounts"}, "x", errors.New("rbac"))
		}
		return false, nil, nil
	})
	sas := ServiceAccounts{Client: client}
	tests := map[string]struct {
		ns, name string
		wantErr  error
	}{
		"found":     {ns: "ns", name: "app"},
		"missing":   {ns: "ns", name: "nope", wantErr: provider.ErrNotFound},
		"forbidden": {ns: "locked", name: "app", wantErr: provider.ErrPermissionDenied},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ann, err := sas.ServiceAccountAnnotations(context.Background(), tc.ns, tc.name)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("error %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil || ann["eks.amazonaws.com/role-arn"] != "arn:aws:iam::1:role/app" {
				t.Fatalf("annotations %v, %v", ann, err)
			}
		})
	}
	if r, err := NodeRegion(context.Background(), client, "n1"); err != nil || r != "eu-west-1" {
		t.Fatalf("NodeRegion = %q, %v", r, err)
	}
}
