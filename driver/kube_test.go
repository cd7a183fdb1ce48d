package driver

import (
	"context"
	"errors"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/podsecrets/podsecrets/provider"
)

func TestKubeServiceAccounts(t *testing.T) {
	client := fake.NewClientset(
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "app",
			Annotations: map[string]string{"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/app"}}},
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: map[string]string{RegionLabel: "eu-west-1"}}},
	)
	client.PrependReactor("get", "serviceaccounts", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetNamespace() == "locked" {
			return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "serviceaccounts"}, "x", errors.New("rbac"))
		}
		return false, nil, nil
	})
	sas := KubeServiceAccounts{Client: client}
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
