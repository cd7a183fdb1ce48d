package mount

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/podsecrets/podsecrets/internal/failpoint"
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

// RecordFile is the one reserved name a file set may hold beside its own
// files: the volume's record (package volume keeps its format). It is
// written in the version directory, so it always describes the set beside
// it and is swapped in with it, and it gets no top-level link.
const RecordFile = "..podsecrets.json"

const (
	dataTmp = "..data_tmp"
	// versionPrefix starts every version directory's name. Like every name
	// starting with "..", it cannot collide with a file of the set.
	versionPrefix = "..v_"
)

// Failpoints of WriteFileSet, in the order a write reaches them.
const (
	FailAfterFile  = "mount/after-file"  // after each file of the new version
	FailBeforeSwap = "mount/before-swap" // new version complete, ..data not switched
	FailAfterSwap  = "mount/after-swap"  // ..data switched, top-level links not synced
	FailAfterLinks = "mount/after-links" // links synced, old versions not removed
)

// WriteFileSet makes files the content of dir, all at once: readers see the
// previous set or the new one, never a mix and never a partial file.
//
// The layout is the one kubelet uses for Secret and ConfigMap volumes, which
// applications already know: every version lives in its own hidden directory,
// "..data" points at the current one, and each top-level name is a symlink
// through "..data". Switching versions is a single rename(2) of "..data".
//
// gid, when set, becomes the group of every file and directory written, and
// every file becomes group-readable (see FileMode). A write that fails
// before the switch leaves the previous version as it was and nothing new
// behind; one that fails after it leaves the new version readable. Either
// way the next WriteFileSet repairs the rest, including what a killed
// writer left: stale temporary links and version directories that "..data"
// does not name.
//
// Errors name files relative to dir, never dir itself or a version
// directory, so that repeated failures read the same.
func WriteFileSet(dir string, files []File, gid *int64) (err error) {
	if err := ValidateWritten(files); err != nil {
		return err
	}
	version, err := newVersionName()
	if err != nil {
		return err
	}
	vpath := filepath.Join(dir, version)
	if err := os.Mkdir(vpath, 0o700); err != nil {
		return fmt.Errorf("create version directory: %w", StripPath(err))
	}
	swapped := false
	defer func() {
		// Before the switch the new version is garbage; after it, it is
		// what readers see and must stay.
		if err != nil && !swapped {
			os.RemoveAll(vpath)
		}
	}()
	if err := writeVersion(vpath, files, gid); err != nil {
		return err
	}
	if err := failpoint.Inject(FailBeforeSwap); err != nil {
		return err
	}
	if err := swapSymlink(dir, dataTmp, DataDir, version); err != nil {
		return err
	}
	swapped = true
	if err := failpoint.Inject(FailAfterSwap); err != nil {
		return err
	}
	if err := syncTopLevel(dir, topLevel(files)); err != nil {
		return err
	}
	if err := failpoint.Inject(FailAfterLinks); err != nil {
		return err
	}
	return removeStale(dir, version)
}

// ValidateWritten is the check of a set as WriteFileSet takes it: a
// ValidateFileSet set plus at most one RecordFile.
func ValidateWritten(files []File) error {
	rest := make([]File, 0, len(files))
	records := 0
	for _, f := range files {
		if f.Path == RecordFile {
			records++
			continue
		}
		rest = append(rest, f)
	}
	if records > 1 {
		return fmt.Errorf("file name %q is used twice", RecordFile)
	}
	return ValidateFileSet(rest)
}

// topLevel returns the visible top-level names of files.
func topLevel(files []File) map[string]bool {
	want := make(map[string]bool)
	for _, f := range files {
		if f.Path == RecordFile {
			continue
		}
		want[strings.SplitN(f.Path, "/", 2)[0]] = true
	}
	return want
}

// Repair finishes what a killed WriteFileSet left in dir once "..data"
// names a version: that version's top-level links, and the removal of
// every other version. It writes no data, so it needs no store and cannot
// run out of space: the version "..data" names was complete before it was
// named (see WriteFileSet).
func Repair(dir string) error {
	version, err := os.Readlink(filepath.Join(dir, DataDir))
	if err != nil {
		return fmt.Errorf("read %s: %w", DataDir, StripPath(err))
	}
	if strings.Contains(version, "/") || !strings.HasPrefix(version, versionPrefix) {
		return fmt.Errorf("%s names %q, not a version directory", DataDir, version)
	}
	entries, err := os.ReadDir(filepath.Join(dir, version))
	if err != nil {
		return fmt.Errorf("list current version: %w", StripPath(err))
	}
	want := make(map[string]bool, len(entries))
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "..") {
			want[e.Name()] = true
		}
	}
	if err := syncTopLevel(dir, want); err != nil {
		return err
	}
	return removeStale(dir, version)
}

// newVersionName returns a fresh version directory name. Random rather than
// a timestamp: names then carry nothing a user could mistake for meaning.
func newVersionName() (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("name version directory: %w", err)
	}
	return versionPrefix + hex.EncodeToString(b[:]), nil
}

// FileMode is the mode a file of mode m gets in a set written for group
// gid: the rule kubelet applies to Secret volumes with an fsGroup, which
// adds group read so that "0400" stays readable to a pod running as another
// user through its fsGroup. Without a group the mode is m's permission bits.
func FileMode(m fs.FileMode, gid *int64) fs.FileMode {
	m = m.Perm()
	if gid != nil {
		m |= 0o440
	}
	return m
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
			return fmt.Errorf("write %s: %w", f.Path, StripPath(err))
		}
		if gid != nil {
			if err := os.Lchown(p, 0, int(*gid)); err != nil {
				return fmt.Errorf("chown %s: %w", f.Path, StripPath(err))
			}
		}
		// Chmod after writing: WriteFile's mode is filtered by the umask.
		if err := os.Chmod(p, FileMode(f.Mode, gid)); err != nil {
			return fmt.Errorf("chmod %s: %w", f.Path, StripPath(err))
		}
		if err := failpoint.Inject(FailAfterFile); err != nil {
			return err
		}
	}
	return nil
}

// chownMode gives a version directory its group and mode and returns the
// mode that directories of the set get: closed to others when a group is
// set.
func chownMode(dir string, gid *int64, mode fs.FileMode) (fs.FileMode, error) {
	if gid != nil {
		mode = 0o750
		if err := os.Lchown(dir, 0, int(*gid)); err != nil {
			return 0, fmt.Errorf("chown version directory: %w", StripPath(err))
		}
	}
	if err := os.Chmod(dir, mode); err != nil {
		return 0, fmt.Errorf("chmod version directory: %w", StripPath(err))
	}
	return mode, nil
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
			return fmt.Errorf("create directory %s: %w", rel, StripPath(err))
		}
		if gid != nil {
			if err := os.Lchown(cur, 0, int(*gid)); err != nil {
				return fmt.Errorf("chown directory %s: %w", rel, StripPath(err))
			}
		}
		if err := os.Chmod(cur, mode); err != nil {
			return fmt.Errorf("chmod directory %s: %w", rel, StripPath(err))
		}
	}
	return nil
}

// swapSymlink points name at target by creating tmp and renaming it over
// name, which replaces name atomically.
func swapSymlink(dir, tmp, name, target string) error {
	tmpPath := filepath.Join(dir, tmp)
	if err := os.Remove(tmpPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove stale %s: %w", tmp, StripPath(err))
	}
	if err := os.Symlink(target, tmpPath); err != nil {
		return fmt.Errorf("create %s: %w", tmp, StripPath(err))
	}
	if err := os.Rename(tmpPath, filepath.Join(dir, name)); err != nil {
		os.Remove(tmpPath)
		return fmt.Errorf("switch %s: %w", name, StripPath(err))
	}
	return nil
}

// Tidy reports whether dir holds exactly what a finished WriteFileSet
// leaves: "..data", the version it names, and a link through "..data" for
// each top-level name of that version. A write killed after the switch
// leaves links of the old set or the old version; Repair removes them.
func Tidy(dir string) (bool, error) {
	version, err := os.Readlink(filepath.Join(dir, DataDir))
	if err != nil {
		return false, fmt.Errorf("read %s: %w", DataDir, StripPath(err))
	}
	inVersion, err := os.ReadDir(filepath.Join(dir, version))
	if err != nil {
		return false, fmt.Errorf("list current version: %w", StripPath(err))
	}
	want := map[string]bool{}
	for _, e := range inVersion {
		if !strings.HasPrefix(e.Name(), "..") {
			want[e.Name()] = true
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false, fmt.Errorf("list volume: %w", StripPath(err))
	}
	links := 0
	for _, e := range entries {
		name := e.Name()
		switch {
		case name == DataDir || name == version:
		case strings.HasPrefix(name, ".."):
			return false, nil // another version, or a temporary link
		case !want[name] || e.Type()&fs.ModeSymlink == 0:
			return false, nil
		default:
			if t, err := os.Readlink(filepath.Join(dir, name)); err != nil || t != filepath.Join(DataDir, name) {
				return false, nil
			}
			links++
		}
	}
	return links == len(want), nil
}

// syncTopLevel makes the visible top-level names exactly want, each a
// symlink through "..data".
func syncTopLevel(dir string, want map[string]bool) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("list volume: %w", StripPath(err))
	}
	have := make(map[string]bool, len(entries))
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, "..") {
			continue
		}
		if !want[name] || e.Type()&fs.ModeSymlink == 0 {
			// Not ours to keep: a name of an earlier set, or anything that
			// is not our link (only a writer we do not know makes those).
			if err := os.RemoveAll(filepath.Join(dir, name)); err != nil {
				return fmt.Errorf("remove stale %s: %w", name, StripPath(err))
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
			return fmt.Errorf("link %s: %w", name, StripPath(err))
		}
	}
	return nil
}

// removeStale removes every reserved entry but "..data" and the version it
// names: the previous version, and whatever a killed writer left.
func removeStale(dir, current string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("list volume: %w", StripPath(err))
	}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, "..") || name == DataDir || name == current {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("remove previous version: %w", StripPath(err))
		}
	}
	return nil
}

// StripPath strips the path from a file-system error and keeps its errno, so
// that callers can still test it (errors.Is ENOSPC) but messages never show
// the node's paths or version directory names, and kubelet can merge the
// events of repeated failures.
func StripPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	var le *os.LinkError
	if errors.As(err, &le) {
		return le.Err
	}
	return err
}

// pageSize is tmpfs's unit of space: every file takes whole pages.
const pageSize = 4096

// shortSymlink is the longest symlink target tmpfs keeps in the inode
// (SHORT_SYMLINK_LEN, less its NUL); a longer one takes a page.
const shortSymlink = 127

// SpaceNeeded is the tmpfs space, in bytes, that WriteFileSet needs for
// files: whole pages per file, and a page per top-level link too long to
// live in its inode. Directories and short links take none.
func SpaceNeeded(files []File) int64 {
	var n int64
	links := map[string]bool{}
	for _, f := range files {
		n += (int64(len(f.Data)) + pageSize - 1) / pageSize * pageSize
		top := strings.SplitN(f.Path, "/", 2)[0]
		if !links[top] && len(DataDir)+1+len(top) > shortSymlink {
			n += pageSize
		}
		links[top] = true
	}
	return n
}
