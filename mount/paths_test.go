package mount

import (
	"strings"
	"testing"
)

func TestValidatePath(t *testing.T) {
	tests := map[string]struct {
		path    string
		wantErr string
	}{
		"plain":              {path: "password"},
		"nested":             {path: "db/password"},
		"dotfile":            {path: ".env"},
		"empty":              {path: "", wantErr: "empty"},
		"absolute":           {path: "/etc/passwd", wantErr: "absolute"},
		"parent":             {path: "../x", wantErr: `starts with ".."`},
		"reserved":           {path: "..data", wantErr: `starts with ".."`},
		"inner parent":       {path: "a/../../x", wantErr: "canonical"},
		"dot element":        {path: "a/./b", wantErr: "canonical"},
		"trailing slash":     {path: "a/", wantErr: "canonical"},
		"double slash":       {path: "a//b", wantErr: "canonical"},
		"nul":                {path: "a\x00b", wantErr: "NUL"},
		"long element":       {path: "a/" + strings.Repeat("x", 256), wantErr: "longer than 255"},
		"max element":        {path: strings.Repeat("x", 255)},
		"dotdot inside name": {path: "a..b"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			err := ValidatePath(tc.path)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("ValidatePath(%q) = %v, want nil", tc.path, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("ValidatePath(%q) = %v, want error containing %q", tc.path, err, tc.wantErr)
			}
		})
	}
}

func TestValidateFileSet(t *testing.T) {
	tests := map[string]struct {
		paths   []string
		wantErr string
	}{
		"distinct":         {paths: []string{"a", "b", "c/d", "c/e"}},
		"duplicate":        {paths: []string{"a", "b", "a"}, wantErr: `"a" is used twice`},
		"file and dir":     {paths: []string{"c", "c/d"}, wantErr: `"c" is also needed as a directory by "c/d"`},
		"deep file as dir": {paths: []string{"a/b/c", "a/b"}, wantErr: `"a/b" is also needed`},
		"bad member":       {paths: []string{"ok", "../x"}, wantErr: `"../x"`},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var files []File
			for _, p := range tc.paths {
				files = append(files, File{Path: p, Mode: 0o644})
			}
			err := ValidateFileSet(files)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("ValidateFileSet(%v) = %v, want nil", tc.paths, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("ValidateFileSet(%v) = %v, want error containing %q", tc.paths, err, tc.wantErr)
			}
		})
	}
}

func FuzzValidatePath(f *testing.F) {
	for _, s := range []string{"a", "a/b", "../a", "/a", "a/../b", "..data", ".x", "a//b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		if ValidatePath(p) != nil {
			return
		}
		root := "/vol"
		joined := root + "/" + p
		if !strings.HasPrefix(joined, root+"/") || strings.Contains("/"+p+"/", "/../") || strings.HasPrefix(p, "..") {
			t.Fatalf("accepted unsafe path %q", p)
		}
	})
}
