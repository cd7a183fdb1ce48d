package aws

import (
	"errors"
	"strings"
	"testing"

	"github.com/podsecrets/podsecrets/provider"
)

func TestParseCache(t *testing.T) {
	var c parseCache
	params := map[string]string{"region": "us-east-1", "objects": "- {objectName: a, objectType: secretsmanager}"}
	first, err := c.get(params, "app/a")
	if err != nil {
		t.Fatal(err)
	}
	again, err := c.get(map[string]string{"objects": params["objects"], "region": "us-east-1"}, "app/b")
	if err != nil || again != first {
		t.Fatalf("same parameters parsed again (%p vs %p, %v)", again, first, err)
	}
	other, err := c.get(map[string]string{"region": "us-west-2", "objects": params["objects"]}, "app/a")
	if err != nil || other == first || other.Region != "us-west-2" {
		t.Fatalf("different parameters share a parse: %+v, %v", other, err)
	}
	if _, err := c.get(map[string]string{"objects": "- {objectType: secretsmanager}"}, "app/a"); !errors.Is(err, provider.ErrInvalid) {
		t.Fatalf("invalid parameters = %v, want ErrInvalid", err)
	}
	// Keys and values cannot run into each other.
	if cacheKey(map[string]string{"ab": "c"}) == cacheKey(map[string]string{"a": "bc"}) {
		t.Fatal("cache keys collide")
	}
	for i := 0; i < maxParsedClasses+1; i++ {
		if _, err := c.get(map[string]string{"objects": params["objects"], "region": "us-east-1", "x": string(rune('a'+i%26)) + string(rune(i))}, "app/a"); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(c.configs); n > maxParsedClasses {
		t.Fatalf("cache holds %d entries, bound is %d", n, maxParsedClasses)
	}
}

func TestParseCacheResolvesRegion(t *testing.T) {
	const objs = "- {objectName: db, objectType: secretsmanager}"
	c := parseCache{region: east}
	cfg, err := c.get(map[string]string{"objects": objs}, "app/a")
	if err != nil || cfg.Region != east {
		t.Fatalf("class without a region: %+v, %v; want the default region %s", cfg, err, east)
	}
	if again, _ := c.get(map[string]string{"objects": objs}, "app/b"); again != cfg {
		t.Error("the resolved config was not cached")
	}
	if cfg, err := c.get(map[string]string{"region": west, "objects": objs}, "app/a"); err != nil || cfg.Region != west {
		t.Errorf("class region: %+v, %v; want %s", cfg, err, west)
	}

	// Errors are not cached and name the class asking.
	var none parseCache
	for _, class := range []string{"app/a", "app/b"} {
		_, err := none.get(map[string]string{"objects": objs}, class)
		want := "no region: set the region parameter of SecretProviderClass " + class + " or the driver's default region"
		if !errors.Is(err, provider.ErrInvalid) || err.Error() != want {
			t.Errorf("no region = %v, want ErrInvalid %q", err, want)
		}
	}
	if len(none.configs) != 0 {
		t.Errorf("failed parses were cached: %v", none.configs)
	}
	for name, tc := range map[string]struct {
		params map[string]string
		want   string
	}{
		"failoverRegion is the default region": {
			params: map[string]string{"failoverRegion": east, "objects": objs},
			want:   `failoverRegion "us-east-1": must differ from the region "us-east-1"`,
		},
		"ARN of another region than the default": {
			params: map[string]string{"objects": "- objectName: arn:aws:secretsmanager:eu-west-1:111122223333:secret:db-AbCdEf"},
			want:   `the ARN names region "eu-west-1", but the volume's region is "us-east-1"`,
		},
	} {
		if _, err := c.get(tc.params, "app/a"); !errors.Is(err, provider.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want ErrInvalid containing %q", name, err, tc.want)
		}
	}
}
