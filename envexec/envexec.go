// Package envexec runs a command with the files of a mounted secrets volume
// in its environment, for apps that read only environment variables. It is
// the whole of cmd/podsecrets-exec, a small static binary an init container
// copies into the pod, and of "podsecrets exec"; so it imports nothing but
// the standard library.
//
// Environment variables are read once, when the command starts: they do
// not follow a rotation of the volume, which only files do.
package envexec

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// dataDir is the link naming the volume's current version (mount.DataDir):
// resolved once, so that every variable comes from one version of the set.
const dataDir = "..data"

// MaxValue is the most bytes one variable ("NAME=value") may take: Linux
// refuses a larger string in execve(2) (MAX_ARG_STRLEN, 32 pages, less the
// terminating NUL).
const MaxValue = 32*4096 - 1

// Mapping puts the content of File, a path relative to the volume, in the
// environment variable Name.
type Mapping struct {
	Name string
	File string
}

// String is the mapping as written on the command line.
func (m Mapping) String() string { return m.Name + "=" + m.File }

// ValidName reports whether name can be an environment variable a shell
// can read: a letter or '_', then letters, digits and '_'.
func ValidName(name string) bool {
	if name == "" {
		return false
	}
	for i, c := range name {
		switch {
		case c == '_', c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// ParseMapping parses NAME=file. The file must be a path inside the volume.
func ParseMapping(s string) (Mapping, error) {
	name, file, ok := strings.Cut(s, "=")
	switch {
	case !ok:
		return Mapping{}, fmt.Errorf("--env %q: want NAME=file", s)
	case !ValidName(name):
		return Mapping{}, fmt.Errorf("--env %q: %q is not an environment variable name (a letter or _, then letters, digits and _)", s, name)
	case file == "":
		return Mapping{}, fmt.Errorf("--env %q: no file after %s=", s, name)
	case !filepath.IsLocal(file):
		return Mapping{}, fmt.Errorf("--env %q: the file must be a path inside the volume, without \"..\"", s)
	}
	return Mapping{Name: name, File: filepath.Clean(file)}, nil
}

// Environ reads the variables of maps from the volume at dir, as
// "NAME=value", in the order of maps. Without maps it takes the default
// mapping: every regular file at the top of the volume whose name is a
// valid variable name, under that name, sorted; names starting with ".."
// (the volume's own layout) and subdirectories are skipped. Errors name
// the file and the variable, never a value.
func Environ(dir string, maps []Mapping) ([]string, error) {
	root, err := current(dir)
	if err != nil {
		return nil, err
	}
	if len(maps) == 0 {
		if maps, err = defaultMapping(root); err != nil {
			return nil, err
		}
		if len(maps) == 0 {
			return nil, fmt.Errorf("%s: no file has a name usable as an environment variable; map files with --env NAME=file", dir)
		}
	}
	seen := make(map[string]string, len(maps))
	env := make([]string, 0, len(maps))
	for _, m := range maps {
		if prev, dup := seen[m.Name]; dup {
			return nil, fmt.Errorf("%s is set twice, from %s and %s", m.Name, prev, m.File)
		}
		seen[m.Name] = m.File
		v, err := readValue(root, m)
		if err != nil {
			return nil, err
		}
		env = append(env, m.Name+"="+v)
	}
	return env, nil
}

// current is the directory to read the volume at dir from: what its
// ..data link names when it has one, else dir itself.
func current(dir string) (string, error) {
	target, err := os.Readlink(filepath.Join(dir, dataDir))
	switch {
	case err == nil && filepath.IsLocal(target):
		return filepath.Join(dir, target), nil
	case err == nil:
		return "", fmt.Errorf("%s: %s names %q, outside the volume", dir, dataDir, target)
	case errors.Is(err, fs.ErrNotExist):
		if _, err := os.Stat(dir); err != nil {
			return "", fmt.Errorf("--from %s: %w", dir, unwrapPath(err))
		}
		return dir, nil
	}
	return "", fmt.Errorf("%s: read %s: %w", dir, dataDir, unwrapPath(err))
}

// defaultMapping maps every regular top-level file of root whose name is a
// valid variable name.
func defaultMapping(root string) ([]Mapping, error) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("read the volume: %w", unwrapPath(err))
	}
	var maps []Mapping
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, "..") || !ValidName(name) {
			continue
		}
		// Stat follows links: a volume written without ..data may hold
		// links to its files.
		fi, err := os.Stat(filepath.Join(root, name))
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		maps = append(maps, Mapping{Name: name, File: name})
	}
	sort.Slice(maps, func(i, j int) bool { return maps[i].Name < maps[j].Name })
	return maps, nil
}

// readValue reads m's file below root as the value of m's variable.
func readValue(root string, m Mapping) (string, error) {
	p := filepath.Join(root, m.File)
	fi, err := os.Stat(p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("%s: file %s is not in the volume", m.Name, m.File)
	case err != nil:
		return "", fmt.Errorf("%s: file %s: %w", m.Name, m.File, unwrapPath(err))
	case !fi.Mode().IsRegular():
		return "", fmt.Errorf("%s: file %s is not a regular file", m.Name, m.File)
	case fi.Size() > MaxValue:
		return "", tooLong(m, fi.Size()) // before reading it all
	}
	b, err := os.ReadFile(p)
	switch {
	case err != nil:
		return "", fmt.Errorf("%s: file %s: %w", m.Name, m.File, unwrapPath(err))
	case len(m.Name)+1+len(b) > MaxValue:
		return "", tooLong(m, int64(len(b)))
	case bytes.IndexByte(b, 0) >= 0:
		return "", fmt.Errorf("%s: file %s holds a NUL byte, which an environment variable cannot", m.Name, m.File)
	}
	return string(b), nil
}

// tooLong is the error of m's file of n bytes, too long for its variable.
func tooLong(m Mapping, n int64) error {
	return fmt.Errorf("%s: file %s has %d bytes, more than the %d an environment variable of this name can hold", m.Name, m.File, n, MaxValue-len(m.Name)-1)
}

// unwrapPath drops the path of a *fs.PathError, which would name a version
// directory: the message names the file as the user wrote it instead.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Merge returns base with vars added; a variable of vars replaces one of
// base with the same name: the volume's value wins.
func Merge(base, vars []string) []string {
	set := make(map[string]bool, len(vars))
	for _, v := range vars {
		name, _, _ := strings.Cut(v, "=")
		set[name] = true
	}
	out := make([]string, 0, len(base)+len(vars))
	for _, v := range base {
		if name, _, _ := strings.Cut(v, "="); !set[name] {
			out = append(out, v)
		}
	}
	return append(out, vars...)
}
