package check

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// maxInput bounds a file a check reads; classes are far smaller.
const maxInput = 16 << 20

// Documents splits a YAML (or JSON) stream into its objects, as kubectl
// apply reads a file: documents separated by "---", empty ones skipped.
// An error names the document; it never quotes the input, which may hold
// other kinds, Secrets among them.
func Documents(data []byte) ([]*unstructured.Unstructured, error) {
	if len(data) > maxInput {
		return nil, fmt.Errorf("longer than %d bytes", maxInput)
	}
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var out []*unstructured.Unstructured
	for n := 1; ; n++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: %v", n, err)
		}
		j, err := yaml.YAMLToJSON(doc)
		if err != nil {
			return nil, fmt.Errorf("document %d: not YAML: %v", n, err)
		}
		if t := bytes.TrimSpace(j); len(t) == 0 || bytes.Equal(t, []byte("null")) {
			n-- // a separator alone, or comments: not a document
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(j, &m); err != nil {
			return nil, fmt.Errorf("document %d: not an object", n)
		}
		u := &unstructured.Unstructured{Object: m}
		if u.GetKind() == "" || u.GetAPIVersion() == "" {
			return nil, fmt.Errorf("document %d: no apiVersion and kind: not a Kubernetes object", n)
		}
		out = append(out, u)
	}
}
