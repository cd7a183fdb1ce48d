package aws

import (
	"errors"
	"testing"

	"github.com/podsecrets/podsecrets/provider"
)

func TestParseCache(t *testing.T) {
	var c parseCache
	params := map[string]string{"region": "us-east-1", "objects": "- {objectName: a, objectType: secretsmanager}"}
	first, err := c.get(params)
	if err != nil {
		t.Fatal(err)
	}
	again, err := c.get(map[string]string{"objects": params["objects"], "region": "us-east-1"})
	if err != nil || again != first {
		t.Fatalf("same parameters parsed again (%p vs %p, %v)", again, first, err)
	}
	other, err := c.get(map[string]string{"region": "us-west-2", "objects": params["objects"]})
	if err != nil || other == first || other.Region != "us-west-2" {
		t.Fatalf("different parameters share a parse: %+v, %v", other, err)
	}
	if _, err := c.get(map[string]string{"objects": "- {objectType: secretsmanager}"}); !errors.Is(err, provider.ErrInvalid) {
		t.Fatalf("invalid parameters = %v, want ErrInvalid", err)
	}
	// Keys and values cannot run into each other.
	if cacheKey(map[string]string{"ab": "c"}) == cacheKey(map[string]string{"a": "bc"}) {
		t.Fatal("cache keys collide")
	}
	for i := 0; i < maxParsedClasses+1; i++ {
		if _, err := c.get(map[string]string{"objects": params["objects"], "region": "us-east-1", "x": string(rune('a'+i%26)) + string(rune(i))}); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(c.configs); n > maxParsedClasses {
		t.Fatalf("cache holds %d entries, bound is %d", n, maxParsedClasses)
	}
}
