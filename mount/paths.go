package mount

import (
	"fmt"
	"io/fs"
	"path"
	"strings"
	"unicode/utf8"
)

// MaxNameLen is the longest file name element Linux file systems accept
// (NAME_MAX).
const MaxNameLen = 255

// MaxPathLen is the longest file name, directories included, a volume takes
// (PATH_MAX).
const MaxPathLen = 4096

// quoteLimit bounds how much of an over-long name a message quotes.
const quoteLimit = 64

// NameRule is the rule a refused file name breaks.
type NameRule int

// The rules of ValidatePath, in the order it checks them.
const (
	NameEmpty        NameRule = iota + 1 // ""
	NameTooLong                          // longer than MaxPathLen bytes
	NameNotUTF8                          // not valid UTF-8
	NameNUL                              // contains a NUL byte
	NameControlChar                      // contains a control character (< 0x20, 0x7f)
	NameAbsolute                         // starts with "/"
	NameDotDot                           // has a ".." element
	NameDot                              // has a "." element
	NameEmptyElement                     // has an empty element ("a//b", "a/")
	NameLongElement                      // has an element longer than MaxNameLen bytes
	NameReserved                         // starts with "..", which the atomic writer reserves
	NameNotCanonical                     // path.Clean changes it (not reached by the rules above)
)

// NameError is a refused file name. Its message quotes the name and names
// the rule; it never contains a host path.
type NameError struct {
	Path string
	Rule NameRule
}

func (e *NameError) Error() string {
	q := QuoteName(e.Path)
	switch e.Rule {
	case NameEmpty:
		return "empty file name"
	case NameTooLong:
		return fmt.Sprintf("file name %s is longer than %d bytes", q, MaxPathLen)
	case NameNotUTF8:
		return fmt.Sprintf("file name %s is not valid UTF-8", q)
	case NameNUL:
		return fmt.Sprintf("file name %s contains a NUL byte", q)
	case NameControlChar:
		return fmt.Sprintf("file name %s contains a control character", q)
	case NameAbsolute:
		return fmt.Sprintf("file name %s is absolute", q)
	case NameDotDot:
		return fmt.Sprintf("file name %s has a \"..\" element", q)
	case NameDot:
		return fmt.Sprintf("file name %s has a \".\" element", q)
	case NameEmptyElement:
		return fmt.Sprintf("file name %s has an empty element", q)
	case NameLongElement:
		return fmt.Sprintf("file name %s has an element longer than %d bytes", q, MaxNameLen)
	case NameReserved:
		return fmt.Sprintf("file name %s starts with \"..\", reserved for the volume's \"..data\" layout", q)
	case NameNotCanonical:
		return fmt.Sprintf("file name %s is not in canonical form (want %q)", q, path.Clean(e.Path))
	}
	return fmt.Sprintf("file name %s is not usable", q)
}

// QuoteName quotes s like %q, or, when s is longer than quoteLimit bytes,
// its first bytes followed by "...", so that a message, and the pod event
// that carries it, stays short whatever the name holds (%q spells an
// invalid byte in four).
func QuoteName(s string) string {
	if len(s) <= quoteLimit {
		return fmt.Sprintf("%q", s)
	}
	n := quoteLimit
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return fmt.Sprintf("%q...", s[:n])
}

// ValidatePath reports why p cannot name a file inside a volume, or nil; a
// non-nil error is a *NameError. Names come from store data and class
// parameters, so they are untrusted: a name must stay below the volume root,
// be printable, and must not collide with the names the atomic writer
// reserves ("..data", "..data_tmp" and the version directories, all starting
// with ".."). Providers check their names with it too, so that a class is
// refused when it is parsed rather than after its secrets were read.
func ValidatePath(p string) error {
	rule := brokenRule(p)
	if rule == 0 {
		return nil
	}
	return &NameError{Path: p, Rule: rule}
}

func brokenRule(p string) NameRule {
	switch {
	case p == "":
		return NameEmpty
	case len(p) > MaxPathLen:
		return NameTooLong
	case !utf8.ValidString(p):
		return NameNotUTF8
	case strings.IndexByte(p, 0) >= 0:
		return NameNUL
	case strings.ContainsFunc(p, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return NameControlChar
	case strings.HasPrefix(p, "/"):
		return NameAbsolute
	}
	for elem := range strings.SplitSeq(p, "/") {
		switch {
		case elem == "..":
			return NameDotDot
		case elem == ".":
			return NameDot
		case elem == "":
			return NameEmptyElement
		case len(elem) > MaxNameLen:
			return NameLongElement
		}
	}
	switch {
	case strings.HasPrefix(p, ".."):
		return NameReserved
	case path.Clean(p) != p:
		return NameNotCanonical
	}
	return 0
}

// ValidateFileSet checks every path and mode of files and that no two files
// collide, either by having the same name or by one needing the other as a
// directory.
func ValidateFileSet(files []File) error {
	seen := make(map[string]bool, len(files))
	for _, f := range files {
		if err := ValidatePath(f.Path); err != nil {
			return err
		}
		if seen[f.Path] {
			return fmt.Errorf("file name %q is used twice", f.Path)
		}
		if f.Mode&^fs.ModePerm != 0 {
			return fmt.Errorf("file %q: mode %#o has more than permission bits (at most 0777; no setuid, setgid or sticky bit)", f.Path, uint32(f.Mode))
		}
		seen[f.Path] = true
	}
	for _, f := range files {
		for dir := path.Dir(f.Path); dir != "."; dir = path.Dir(dir) {
			if seen[dir] {
				return fmt.Errorf("file name %q is also needed as a directory by %q", dir, f.Path)
			}
		}
	}
	return nil
}
