package mount

import (
	"errors"
	"io/fs"
	"path"
	"strings"
	"testing"
	"unicode/utf8"
)

// maxPath is a valid name of exactly MaxPathLen bytes.
var maxPath = strings.Repeat("x/", MaxPathLen/2-1) + "xx"

func TestValidatePath(t *testing.T) {
	long := maxPath + "x"
	tests := map[string]struct {
		path string
		rule NameRule // 0: accepted
		want string   // the exact message
	}{
		"plain":                          {path: "password"},
		"nested":                         {path: "db/password"},
		"dotfile":                        {path: ".env"},
		"dotdot inside name":             {path: "a..b"},
		"dotdot later":                   {path: "a/..data"},
		"one dot prefix":                 {path: ".data"},
		"max element":                    {path: strings.Repeat("x", MaxNameLen)},
		"max path":                       {path: maxPath},
		"unicode":                        {path: "ünï/cödé"},
		"c1 control is printable enough": {path: "a\u0085b"},

		"empty":    {path: "", rule: NameEmpty, want: "empty file name"},
		"too long": {path: long, rule: NameTooLong, want: `file name "` + long[:quoteLimit] + `"... is longer than 4096 bytes`},
		"too long, truncated on a rune boundary": {
			path: strings.Repeat("x", quoteLimit-1) + strings.Repeat("é", MaxPathLen), rule: NameTooLong,
			want: `file name "` + strings.Repeat("x", quoteLimit-1) + `"... is longer than 4096 bytes`,
		},
		"not UTF-8":       {path: "a\xffb", rule: NameNotUTF8, want: `file name "a\xffb" is not valid UTF-8`},
		"nul":             {path: "a\x00b", rule: NameNUL, want: `file name "a\x00b" contains a NUL byte`},
		"newline":         {path: "a\nb", rule: NameControlChar, want: `file name "a\nb" contains a control character`},
		"unit separator":  {path: "a\x1fb", rule: NameControlChar, want: `file name "a\x1fb" contains a control character`},
		"del":             {path: "a\x7fb", rule: NameControlChar, want: `file name "a\x7fb" contains a control character`},
		"absolute":        {path: "/etc/passwd", rule: NameAbsolute, want: `file name "/etc/passwd" is absolute`},
		"root":            {path: "/", rule: NameAbsolute, want: `file name "/" is absolute`},
		"parent":          {path: "../x", rule: NameDotDot, want: `file name "../x" has a ".." element`},
		"dotdot alone":    {path: "..", rule: NameDotDot, want: `file name ".." has a ".." element`},
		"inner parent":    {path: "a/../../x", rule: NameDotDot, want: `file name "a/../../x" has a ".." element`},
		"trailing parent": {path: "a/..", rule: NameDotDot, want: `file name "a/.." has a ".." element`},
		"dot":             {path: ".", rule: NameDot, want: `file name "." has a "." element`},
		"dot element":     {path: "a/./b", rule: NameDot, want: `file name "a/./b" has a "." element`},
		"leading dot":     {path: "./a", rule: NameDot, want: `file name "./a" has a "." element`},
		"trailing slash":  {path: "a/", rule: NameEmptyElement, want: `file name "a/" has an empty element`},
		"double slash":    {path: "a//b", rule: NameEmptyElement, want: `file name "a//b" has an empty element`},
		"long element": {
			path: "a/" + strings.Repeat("x", MaxNameLen+1), rule: NameLongElement,
			// Quoted up to 64 bytes: a message stays short.
			want: `file name "a/` + strings.Repeat("x", 62) + `"... has an element longer than 255 bytes`,
		},
		"reserved data":     {path: "..data", rule: NameReserved, want: `file name "..data" starts with "..", reserved for the volume's "..data" layout`},
		"reserved data tmp": {path: "..data_tmp", rule: NameReserved, want: `file name "..data_tmp" starts with "..", reserved for the volume's "..data" layout`},
		"reserved version":  {path: "..2026_01_02_03_04_05.123", rule: NameReserved, want: `file name "..2026_01_02_03_04_05.123" starts with "..", reserved for the volume's "..data" layout`},
		"reserved any":      {path: "..foo/bar", rule: NameReserved, want: `file name "..foo/bar" starts with "..", reserved for the volume's "..data" layout`},
		"translated parent": {path: ".._x", rule: NameReserved, want: `file name ".._x" starts with "..", reserved for the volume's "..data" layout`},
		"three dots":        {path: "...", rule: NameReserved, want: `file name "..." starts with "..", reserved for the volume's "..data" layout`},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			err := ValidatePath(tc.path)
			if tc.rule == 0 {
				if err != nil {
					t.Fatalf("ValidatePath(%q) = %v, want nil", tc.path, err)
				}
				return
			}
			var ne *NameError
			if !errors.As(err, &ne) || ne.Rule != tc.rule || ne.Path != tc.path {
				t.Fatalf("ValidatePath(%q) = %#v, want a *NameError with rule %d", tc.path, err, tc.rule)
			}
			if err.Error() != tc.want {
				t.Errorf("ValidatePath(%q) =\n %s\nwant\n %s", tc.path, err, tc.want)
			}
		})
	}
}

func TestMaxPath(t *testing.T) {
	if len(maxPath) != MaxPathLen {
		t.Fatalf("len(maxPath) = %d, want %d", len(maxPath), MaxPathLen)
	}
}

func TestNameErrorMessagesHaveNoHostPath(t *testing.T) {
	for rule := NameEmpty; rule <= NameNotCanonical; rule++ {
		msg := (&NameError{Path: "a/b", Rule: rule}).Error()
		if strings.Contains(msg, "not usable") || strings.Contains(msg, "/tmp") || strings.Contains(msg, "/var") {
			t.Errorf("rule %d: message %q", rule, msg)
		}
	}
}

func TestQuoteName(t *testing.T) {
	if got := QuoteName("a\nb"); got != `"a\nb"` {
		t.Errorf("QuoteName = %s", got)
	}
	long := strings.Repeat("é", MaxPathLen)
	got := QuoteName(long)
	if !strings.HasSuffix(got, `"...`) || len(got) > quoteLimit+8 || strings.Contains(got, `\x`) {
		t.Errorf("QuoteName(long) = %s", got)
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
		"bad member":       {paths: []string{"ok", "../x"}, wantErr: `file name "../x" has a ".." element`},
		"reserved member":  {paths: []string{"ok", "..data"}, wantErr: `file name "..data" starts with ".."`},
		"control member":   {paths: []string{"ok", "a\tb"}, wantErr: `file name "a\tb" contains a control character`},
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
	for _, s := range []string{"a", "a/b", "../a", "/a", "a/../b", "..data", ".x", "a//b", "a\nb", "a\x7f", "\xff", ".", "a/", "...", "a/..b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		err := ValidatePath(p)
		if err != nil {
			var ne *NameError
			if !errors.As(err, &ne) || ne.Path != p || ne.Rule < NameEmpty || ne.Rule > NameNotCanonical {
				t.Fatalf("ValidatePath(%q) = %#v, want a *NameError", p, err)
			}
			if len(err.Error()) > 2*MaxPathLen+200 {
				t.Fatalf("message of %d bytes", len(err.Error()))
			}
			return
		}
		root := "/vol"
		joined := root + "/" + p
		if path.Clean(joined) != joined || !strings.HasPrefix(joined, root+"/") || strings.Contains("/"+p+"/", "/../") ||
			strings.HasPrefix(p, "..") || len(p) > MaxPathLen || !utf8.ValidString(p) {
			t.Fatalf("accepted unsafe path %q", p)
		}
		for _, r := range p {
			if r < 0x20 || r == 0x7f {
				t.Fatalf("accepted control character in %q", p)
			}
		}
		for elem := range strings.SplitSeq(p, "/") {
			if elem == "" || elem == "." || elem == ".." || len(elem) > MaxNameLen {
				t.Fatalf("accepted element %q of %q", elem, p)
			}
		}
	})
}

func TestValidateFileSetMode(t *testing.T) {
	for _, m := range []fs.FileMode{0, 0o400, 0o777} {
		if err := ValidateFileSet([]File{{Path: "a", Mode: m}}); err != nil {
			t.Errorf("mode %#o: %v, want nil", uint32(m), err)
		}
	}
	for _, m := range []fs.FileMode{0o1000, fs.ModeSetuid | 0o755, fs.ModeDir | 0o755} {
		err := ValidateFileSet([]File{{Path: "a", Mode: m}})
		if err == nil || !strings.Contains(err.Error(), `file "a": mode`) {
			t.Errorf("mode %v: %v, want an error naming the file and its mode", m, err)
		}
	}
}
