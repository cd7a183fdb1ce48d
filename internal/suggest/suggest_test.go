package suggest

import "testing"

var (
	objectFields   = []string{"objectName", "objectType", "objectAlias", "objectVersion", "objectVersionLabel", "filePermission", "jmesPath", "failoverObject"}
	jmesFields     = []string{"path", "objectAlias", "filePermission"}
	failoverFields = []string{"objectName", "objectVersion", "objectVersionLabel"}
)

func TestClosest(t *testing.T) {
	tests := map[string]struct {
		key   string
		known []string
		want  string
	}{
		"swap":                  {key: "objectAlais", known: objectFields, want: "objectAlias"},
		"missing letter":        {key: "objectNme", known: objectFields, want: "objectName"},
		"extra letter":          {key: "objectTypee", known: objectFields, want: "objectType"},
		"case and typo":         {key: "OBJECTALAIS", known: objectFields, want: "objectAlias"},
		"case only":             {key: "ObjectAlias", known: objectFields, want: "objectAlias"},
		"three edits":           {key: "objVersion", known: objectFields, want: "objectVersion"},
		"three edits, long key": {key: "fileprmision", known: objectFields, want: "filePermission"},
		"four edits":            {key: "objectVrsnLbl", known: objectFields, want: ""},
		"jmesPath field":        {key: "pth", known: jmesFields, want: "path"},
		"short key, far":        {key: "x", known: jmesFields, want: ""},
		"more than half":        {key: "pa", known: jmesFields, want: ""},
		"failover field":        {key: "objectVersionLable", known: failoverFields, want: "objectVersionLabel"},
		"nothing near":          {key: "objectTemplat", known: objectFields, want: ""},
		"empty key":             {key: "", known: objectFields, want: ""},
		"no known keys":         {key: "path", known: nil, want: ""},
		"unicode":               {key: "päth", known: jmesFields, want: "path"},
		"tie goes to the first": {key: "ab", known: []string{"ax", "ay"}, want: "ax"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := Closest(tc.key, tc.known); got != tc.want {
				t.Errorf("Closest(%q) = %q, want %q", tc.key, got, tc.want)
			}
		})
	}
}

func TestEditDistance(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"a", "", 1}, {"", "abc", 3}, {"abc", "abc", 0},
		{"abc", "acb", 1}, {"objectalais", "objectalias", 1}, {"kitten", "sitting", 3},
		{"ca", "abc", 3}, // optimal string alignment: no edit of a swapped pair
		{"päth", "path", 1},
	}
	for _, tc := range tests {
		if got := editDistance([]rune(tc.a), []rune(tc.b)); got != tc.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
		if got := editDistance([]rune(tc.b), []rune(tc.a)); got != tc.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tc.b, tc.a, got, tc.want)
		}
	}
}
