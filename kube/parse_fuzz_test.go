package kube

import (
	"encoding/json"
	"errors"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// FuzzObjectsFromAPI feeds the parsers of what the API server returns
// (classes and version records, as JSON) with arbitrary objects: they
// return a value or an error of their kind, and never panic.
func FuzzObjectsFromAPI(f *testing.F) {
	f.Add([]byte(`{"metadata":{"namespace":"ns","name":"c","generation":3,"annotations":{"podsecrets.dev/refresh":"x"}},` +
		`"spec":{"provider":"aws","parameters":{"objects":"- objectName: a"},"rotation":{"pollInterval":"30s"},"versionPolicy":"PodStart"}}`))
	f.Add([]byte(`{"metadata":{"namespace":"ns","name":"web.db.1a2b","ownerReferences":[{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"web","uid":"u"}]},` +
		`"spec":{"class":"db","objects":[{"path":"db","id":"arn","version":"v1","source":"s"}]}}`))
	f.Add([]byte(`{"spec":{"versionPolicy":"Revision","rotation":{"pollInterval":"1m"},"objects":[1]}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var obj map[string]any
		if json.Unmarshal(b, &obj) != nil {
			return
		}
		u := &unstructured.Unstructured{Object: obj}
		if c, err := ClassFrom(u); err != nil && !errors.Is(err, ErrClassInvalid) {
			t.Fatalf("classFrom: %v, not ErrClassInvalid", err)
		} else if err == nil && c.Provider == "" {
			t.Fatal("classFrom accepted a class without a provider")
		}
		if r, err := recordFrom(u); err != nil && !errors.Is(err, ErrRecordInvalid) {
			t.Fatalf("recordFrom: %v, not ErrRecordInvalid", err)
		} else if err == nil {
			for _, o := range r.Objects {
				if o.Path == "" || o.Version == "" {
					t.Fatalf("recordFrom accepted an object without path or version: %+v", o)
				}
			}
		}
	})
}
