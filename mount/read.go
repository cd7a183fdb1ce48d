package mount

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Reading a volume back. A rotation check compares what the store has with
// what the volume holds and reuses unchanged values instead of fetching
// them again, so the driver reads its own files; everything is read through
// an os.Root on the current version, so no name can lead outside it.

// ReadFile returns the data of the file at p (a set's path, or RecordFile)
// in the version "..data" of dir names.
func ReadFile(dir, p string) ([]byte, error) {
	if p != RecordFile {
		if err := ValidatePath(p); err != nil {
			return nil, err
		}
	}
	root, err := os.OpenRoot(filepath.Join(dir, DataDir))
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", DataDir, StripPath(err))
	}
	defer root.Close()
	b, err := root.ReadFile(filepath.FromSlash(p))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", p, StripPath(err))
	}
	return b, nil
}

// SameSet reports whether the version "..data" of dir names holds exactly
// files as WriteFileSet would write them for gid: the same names, data and
// modes. The record is left out of the comparison: it changes with things
// no app reads (a class's generation). A rotation that finds the same set
// writes nothing, so an app watching the volume sees no change that is not
// one.
func SameSet(dir string, files []File, gid *int64) (bool, error) {
	root, err := os.OpenRoot(filepath.Join(dir, DataDir))
	if err != nil {
		return false, fmt.Errorf("open %s: %w", DataDir, StripPath(err))
	}
	defer root.Close()
	want := make(map[string]File, len(files))
	for _, f := range files {
		if f.Path != RecordFile {
			want[f.Path] = f
		}
	}
	seen := 0
	same := true
	err = fs.WalkDir(root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		switch {
		case err != nil:
			return err
		case d.IsDir(), p == RecordFile:
			return nil
		}
		f, ok := want[p]
		if !ok || !d.Type().IsRegular() {
			same = false
			return fs.SkipAll
		}
		seen++
		info, err := d.Info()
		if err != nil {
			return err
		}
		if info.Mode().Perm() != FileMode(f.Mode, gid) {
			same = false
			return fs.SkipAll
		}
		b, err := root.ReadFile(p)
		if err != nil {
			return err
		}
		if !bytes.Equal(b, f.Data) {
			same = false
			return fs.SkipAll
		}
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("compare volume: %w", StripPath(err))
	}
	return same && seen == len(want), nil
}

// IsCommitted reports whether dir's "..data" names a version directory: a
// complete set, since WriteFileSet names a version only once it is whole.
func IsCommitted(dir string) (bool, error) {
	v, err := os.Readlink(filepath.Join(dir, DataDir))
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, fs.ErrInvalid):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("read %s: %w", DataDir, StripPath(err))
	case strings.Contains(v, "/") || !strings.HasPrefix(v, versionPrefix):
		return false, nil
	}
	info, err := os.Stat(filepath.Join(dir, v))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("read %s: %w", DataDir, StripPath(err))
	}
	return info.IsDir(), nil
}
