package kube

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
)

// class builds a SecretProviderClass in namespace app with the given spec
// and metadata fields.
func class(name string, spec map[string]any, meta map[string]any) *unstructured.Unstructured {
	u := object(ClassGVR.GroupVersion().String(), "SecretProviderClass", "app", name, meta)
	if spec != nil {
		u.Object["spec"] = spec
	}
	return u
}

func TestGetClass(t *testing.T) {
	aws := func(extra map[string]any) map[string]any {
		s := map[string]any{"provider": "aws", "parameters": map[string]any{"region": "eu-west-1"}}
		for k, v := range extra {
			s[k] = v
		}
		return s
	}
	rotation := func(v any) map[string]any { return aws(map[string]any{"rotation": map[string]any{"pollInterval": v}}) }
	tests := []struct {
		name string
		spec map[string]any
		meta map[string]any
		// want, when the class is valid
		gen      int64
		interval time.Duration
		refresh  string
		// wantErr is what the error wraps; wantMsg are parts of its text.
		wantErr error
		wantMsg []string
	}{
		{name: "no-rotation", spec: aws(nil), meta: map[string]any{"generation": int64(3)}, gen: 3},
		{name: "rotation-without-interval", spec: aws(map[string]any{"rotation": map[string]any{}})},
		{name: "seconds", spec: rotation("30s"), interval: 30 * time.Second},
		{name: "compound", spec: rotation("1h30m"), interval: 90 * time.Minute},
		{name: "fraction", spec: rotation("1.5m"), interval: 90 * time.Second},
		{name: "refresh", spec: rotation("2m"), interval: 2 * time.Minute, refresh: "2026-12-01T12:00:00Z",
			meta: map[string]any{"annotations": map[string]any{RefreshAnnotation: "2026-12-01T12:00:00Z", "other": "x"}}},
		{name: "other-annotations-only", spec: aws(nil), meta: map[string]any{"annotations": map[string]any{"podsecrets.dev/other": "x"}}},
		{name: "unparsable", spec: rotation("every minute"), wantErr: ErrClassInvalid,
			wantMsg: []string{"app/unparsable: spec.rotation.pollInterval", `"every minute"`, "positive Go duration"}},
		{name: "no-unit", spec: rotation("30"), wantErr: ErrClassInvalid, wantMsg: []string{`"30"`}},
		{name: "zero", spec: rotation("0s"), wantErr: ErrClassInvalid, wantMsg: []string{`"0s"`, "positive"}},
		{name: "negative", spec: rotation("-1m"), wantErr: ErrClassInvalid, wantMsg: []string{`"-1m"`}},
		{name: "empty", spec: rotation(""), wantErr: ErrClassInvalid, wantMsg: []string{`pollInterval ""`}},
		{name: "number", spec: rotation(int64(30)), wantErr: ErrClassInvalid, wantMsg: []string{"app/number: spec.rotation.pollInterval"}},
		{name: "rotation-not-object", spec: aws(map[string]any{"rotation": "30s"}), wantErr: ErrClassInvalid,
			wantMsg: []string{"spec.rotation.pollInterval"}},
		{name: "no-provider", spec: map[string]any{"parameters": map[string]any{}}, wantErr: ErrClassInvalid,
			wantMsg: []string{"spec.provider is required"}},
	}
	var objs []runtime.Object
	for _, tc := range tests {
		objs = append(objs, class(tc.name, tc.spec, tc.meta))
	}
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{ClassGVR: "SecretProviderClassList"}, objs...)
	classes := Classes{Client: dyn}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := classes.GetClass(context.Background(), "app", tc.name)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("GetClass = %+v, %v; want an error wrapping %v", c, err, tc.wantErr)
				}
				for _, m := range tc.wantMsg {
					if !strings.Contains(err.Error(), m) {
						t.Errorf("error %q does not say %q", err, m)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Namespace != "app" || c.Name != tc.name || c.Provider != "aws" || c.Parameters["region"] != "eu-west-1" {
				t.Errorf("class %+v", c)
			}
			if c.Generation != tc.gen || c.PollInterval != tc.interval || c.Refresh != tc.refresh {
				t.Errorf("generation %d, interval %v, refresh %q; want %d, %v, %q",
					c.Generation, c.PollInterval, c.Refresh, tc.gen, tc.interval, tc.refresh)
			}
		})
	}
	if _, err := classes.GetClass(context.Background(), "app", "absent"); !errors.Is(err, ErrClassNotFound) {
		t.Errorf("missing class: %v, want ErrClassNotFound", err)
	}
}
