package mount

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"
)

// File is one file of a file set, relative to the set's root.
type File struct {
	Path string
	Mode fs.FileMode
	Data []byte
}

// DataDir is the symlink that names the current version of a file set. A
// reader that needs several files to agree resolves it once and reads every
// file below what it resolved to: that directory never changes.
const DataDir = "..data"

const dataTmp = "..data_tmp"

// WriteFileSet makes files the content of dir, all at once: readers see the
// previous set or the new one, never a mix and never a partial file.
//
// The layout is the one kubelet uses for Secret and ConfigMap volumes, which
// applications already know: every version lives in its own hidden directory,
// "..data" points at the current one, and each top-level name is a symlink
// through "..data". Switching versions is a single rename(2) of "..data".
//
// gid, when set, becomes the group of every file and directory written. On
// error the previous version is left intact and nothing new is left behind.
func WriteFileSet(dir string, files []File, gid *int64) (err error) {
	if err := ValidateFileSet(files); err != nil {
		return err
	}
	old, err := os.Readlink(filepath.Join(dir, DataDir))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("read current version: %w", err)
	}
	version, err := os.MkdirTemp(dir, time.Now().UTC().Format("..2006_01_02_15_04_05."))
	if err != nil {
		return fmt.Errorf("create version directory: %w", err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(version)
		}
	}()
	if err := writeVersion(version, files, gid); err != nil {
		return err
	}
	if err := swapSymlink(dir, dataTmp, DataDir, filepath.Base(version)); err != nil {
		return err
	}
	// From here on the new version is live; what remains is tidying up, and
	// a failure leaves a readable volume, so it is reported but not undone.
	if err := syncTopLevel(dir, files); err != nil {
		return err
	}
	if old != "" && old != filepath.Base(version) {
		if err := os.RemoveAll(filepath.Join(dir, old)); err != nil {
			return fmt.Errorf("remove previous version: %w", err)
		}
	}
	return nil
}

func writeVersion(root string, files []File, gid *int64) error {
	dirMode, err := chownMode(root, gid, 0o755)
	if err != nil {
		return err
	}
	for _, f := range files {
		p := filepath.Join(root, filepath.FromSlash(f.Path))
		if err := mkdirAllOwned(root, path.Dir(f.Path), dirMode, gid); err != nil {
			return err
		}
		if err := os.WriteFile(p, f.Data, 0o600); err != nil {
			return fmt.Errorf("write %s: %w", f.Path, err)
		}
		if gid != nil {
			if err := os.Lchown(p, 0, int(*gid)); err != nil {
				return fmt.Errorf("chown %s: %w", f.Path, err)
			}
		}
		// Chmod after writing: WriteFile's mode is filtered by the umask.
		if err := os.Chmod(p, f.Mode.Perm()); err != nil {
			return fmt.Errorf("chmod %s: %w", f.Path, err)
		}
	}
	return nil
}

// chownMode gives a version directory its group and returns the mode that
// directories of the set get: closed to others when a group is set.
func chownMode(dir string, gid *int64, mode fs.FileMode) (fs.FileMode, error) {
	if gid != nil {
		mode = 0o750
		if err := os.Lchown(dir, 0, int(*gid)); err != nil {
			return 0, fmt.Errorf("chown version directory: %w", err)
		}
	}
	return mode, os.Chmod(dir, mode)
}

func mkdirAllOwned(root, rel string, mode fs.FileMode, gid *int64) error {
	if rel == "." {
		return nil
	}
	cur := root
	for _, elem := range strings.Split(rel, "/") {
		cur = filepath.Join(cur, elem)
		err := os.Mkdir(cur, mode)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("create directory %s: %w", rel, err)
		}
		if gid != nil {
			if err := os.Lchown(cur, 0, int(*gid)); err != nil {
				return fmt.Errorf("chown directory %s: %w", rel, err)
			}
		}
		if err := os.Chmod(cur, mode); err != nil {
			return fmt.Errorf("chmod directory %s: %w", rel, err)
		}
	}
	return nil
}

// swapSymlink points name at target by creating tmp and renaming it over
// name, which replaces name atomically.
func swapSymlink(dir, tmp, name, target string) error {
	tmpPath := filepath.Join(dir, tmp)
	if err := os.Remove(tmpPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove stale %s: %w", tmp, err)
	}
	if err := os.Symlink(target, tmpPath); err != nil {
		return fmt.Errorf("create %s: %w", tmp, err)
	}
	if err := os.Rename(tmpPath, filepath.Join(dir, name)); err != nil {
		os.Remove(tmpPath)
		return fmt.Errorf("switch %s: %w", name, err)
	}
	return nil
}

// syncTopLevel makes the visible top-level names exactly those of files,
// each a symlink through "..data".
func syncTopLevel(dir string, files []File) error {
	want := make(map[string]bool)
	for _, f := range files {
		want[strings.SplitN(f.Path, "/", 2)[0]] = true
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("list volume: %w", err)
	}
	have := make(map[string]bool, len(entries))
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, "..") {
			continue
		}
		if !want[name] {
			if err := os.Remove(filepath.Join(dir, name)); err != nil {
				return fmt.Errorf("remove stale %s: %w", name, err)
			}
			continue
		}
		have[name] = true
	}
	for name := range want {
		if have[name] {
			continue
		}
		if err := os.Symlink(filepath.Join(DataDir, name), filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("link %s: %w", name, err)
		}
	}
	return nil
}
