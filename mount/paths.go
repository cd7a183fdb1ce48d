package mount

import (
	"fmt"
	"path"
	"strings"
)

// maxNameLen is the longest file name element Linux file systems accept.
const maxNameLen = 255

// ValidatePath reports why p cannot name a file inside a volume, or nil.
// Names come from store data and class parameters, so they are untrusted: a
// name must stay below the volume root and must not collide with the names
// the atomic writer reserves (those starting with "..").
func ValidatePath(p string) error {
	switch {
	case p == "":
		return fmt.Errorf("empty file name")
	case strings.HasPrefix(p, "/"):
		return fmt.Errorf("file name %q is absolute", p)
	case strings.HasPrefix(p, ".."):
		return fmt.Errorf("file name %q starts with \"..\"", p)
	case strings.ContainsRune(p, 0):
		return fmt.Errorf("file name %q contains a NUL byte", p)
	case path.Clean(p) != p:
		return fmt.Errorf("file name %q is not in canonical form (want %q)", p, path.Clean(p))
	}
	for _, elem := range strings.Split(p, "/") {
		switch {
		case elem == "..":
			return fmt.Errorf("file name %q has a \"..\" element", p)
		case elem == ".":
			return fmt.Errorf("file name %q has a \".\" element", p)
		case len(elem) > maxNameLen:
			return fmt.Errorf("file name %q has an element longer than %d bytes", p, maxNameLen)
		}
	}
	return nil
}

// ValidateFileSet checks every path of files and that no two files collide,
// either by having the same name or by one needing the other as a directory.
func ValidateFileSet(files []File) error {
	seen := make(map[string]bool, len(files))
	for _, f := range files {
		if err := ValidatePath(f.Path); err != nil {
			return err
		}
		if seen[f.Path] {
			return fmt.Errorf("file name %q is used twice", f.Path)
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
