package mount

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

func files(kv ...string) []File {
	var fs []File
	for i := 0; i+1 < len(kv); i += 2 {
		fs = append(fs, File{Path: kv[i], Mode: 0o640, Data: []byte(kv[i+1])})
	}
	return fs
}

// readSet reads every regular file below dir's current version, the way a
// consistent reader does: resolve "..data" once, then read below it.
func readSet(t *testing.T, dir string) map[string]string {
	t.Helper()
	got := map[string]string{}
	root := filepath.Join(dir, DataDir)
	resolved, err := filepath.EvalSymlinks(root)
	if err != nil {
		t.Fatal(err)
	}
	err = filepath.WalkDir(resolved, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(resolved, p)
		got[filepath.ToSlash(rel)] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func visible(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}

func TestWriteFileSetLayout(t *testing.T) {
	dir := t.TempDir()
	if err := WriteFileSet(dir, files("a", "1", "sub/b", "2"), nil); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{"a": "1", "sub/b": "2"} {
		got, err := os.ReadFile(filepath.Join(dir, path))
		if err != nil || string(got) != want {
			t.Fatalf("read %s = %q, %v; want %q", path, got, err, want)
		}
	}
	info, err := os.Stat(filepath.Join(dir, "a"))
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o640 {
		t.Fatalf("mode of a = %v, want 0640", info.Mode().Perm())
	}
	link, err := os.Readlink(filepath.Join(dir, "a"))
	if err != nil || link != "..data/a" {
		t.Fatalf("a links to %q (%v), want ..data/a", link, err)
	}
	names := visible(t, dir)
	if len(names) != 4 || names[0] != DataDir || !strings.HasPrefix(names[1], versionPrefix) || names[2] != "a" || names[3] != "sub" {
		t.Fatalf("volume holds %v, want ..data, one version dir, a, sub", names)
	}
}

func TestWriteFileSetReplaces(t *testing.T) {
	dir := t.TempDir()
	if err := WriteFileSet(dir, files("a", "1", "gone", "x", "sub/b", "2"), nil); err != nil {
		t.Fatal(err)
	}
	if err := WriteFileSet(dir, files("a", "3", "new", "4"), nil); err != nil {
		t.Fatal(err)
	}
	if got, want := readSet(t, dir), map[string]string{"a": "3", "new": "4"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("set = %v, want %v", got, want)
	}
	var versions, top []string
	for _, n := range visible(t, dir) {
		switch {
		case n == DataDir:
		case strings.HasPrefix(n, ".."):
			versions = append(versions, n)
		default:
			top = append(top, n)
		}
	}
	if len(versions) != 1 {
		t.Fatalf("version directories left: %v, want exactly one", versions)
	}
	if fmt.Sprint(top) != "[a new]" {
		t.Fatalf("visible names = %v, want [a new]", top)
	}
}

func TestWriteFileSetGroup(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chown to another group needs root")
	}
	dir := t.TempDir()
	gid := int64(4321)
	if err := WriteFileSet(dir, files("a", "1", "d/b", "2"), &gid); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"a", "d", "d/b", DataDir + "/."} {
		info, err := os.Stat(filepath.Join(dir, p))
		if err != nil {
			t.Fatal(err)
		}
		if g := statGID(info); g != 4321 {
			t.Errorf("%s has group %d, want 4321", p, g)
		}
		if info.IsDir() && info.Mode().Perm() != 0o750 {
			t.Errorf("directory %s has mode %v, want 0750", p, info.Mode().Perm())
		}
	}
}

func TestWriteFileSetInvalidKeepsPrevious(t *testing.T) {
	dir := t.TempDir()
	if err := WriteFileSet(dir, files("a", "1"), nil); err != nil {
		t.Fatal(err)
	}
	before := visible(t, dir)
	err := WriteFileSet(dir, files("a", "2", "../escape", "x"), nil)
	if err == nil || !strings.Contains(err.Error(), "../escape") {
		t.Fatalf("WriteFileSet with ../escape = %v, want an error naming it", err)
	}
	if got := readSet(t, dir); got["a"] != "1" || len(got) != 1 {
		t.Fatalf("after failed write set = %v, want the previous one", got)
	}
	if after := visible(t, dir); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("failed write left %v, had %v", after, before)
	}
}

// TestWriteFileSetRepairsLeftovers plants what a killed writer leaves, a
// temporary link, an unfinished version directory and a stray top-level
// file: the next write removes all of it.
func TestWriteFileSetRepairsLeftovers(t *testing.T) {
	dir := t.TempDir()
	if err := WriteFileSet(dir, files("a", "1"), nil); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("..v_dead", filepath.Join(dir, dataTmp)); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "..v_dead", "half"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "b"), []byte("not a link"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteFileSet(dir, files("a", "2", "b", "3"), nil); err != nil {
		t.Fatal(err)
	}
	if got := readSet(t, dir); fmt.Sprint(got) != "map[a:2 b:3]" {
		t.Fatalf("set = %v", got)
	}
	names := visible(t, dir)
	if len(names) != 4 || names[0] != DataDir || !strings.HasPrefix(names[1], versionPrefix) || names[1] == "..v_dead" {
		t.Fatalf("volume holds %v, want ..data, the new version, a, b", names)
	}
	if link, err := os.Readlink(filepath.Join(dir, "b")); err != nil || link != "..data/b" {
		t.Fatalf("b = %q, %v; want the link ..data/b", link, err)
	}
}

func TestFileMode(t *testing.T) {
	gid := int64(2000)
	for _, tc := range []struct {
		mode     fs.FileMode
		gid      *int64
		want     fs.FileMode
		readable string
	}{
		{0o400, nil, 0o400, "owner only"},
		{0o440, nil, 0o440, "owner and group"},
		{0o644, nil, 0o644, "everyone"},
		{0o400, &gid, 0o440, "owner and fsGroup"},
		{0o440, &gid, 0o440, "owner and fsGroup"},
		{0o644, &gid, 0o644, "everyone"},
		{0o4755, nil, 0o755, "no setuid bit ever"},
	} {
		if got := FileMode(tc.mode, tc.gid); got != tc.want {
			t.Errorf("FileMode(%v, gid set %t) = %v, want %v (%s)", tc.mode, tc.gid != nil, got, tc.want, tc.readable)
		}
	}
}

// TestWriteFileSetAtomicForReaders swaps versions in which every file holds
// the version number while readers read whole sets; a reader must never see
// two versions in one set nor a short file.
func TestWriteFileSetAtomicForReaders(t *testing.T) {
	dir := t.TempDir()
	names := []string{"cert", "key", "nested/ca", "password"}
	set := func(v int) []File {
		var fs []File
		for _, n := range names {
			fs = append(fs, File{Path: n, Mode: 0o644, Data: bytes.Repeat([]byte(fmt.Sprintf("v%06d;", v)), 512)})
		}
		return fs
	}
	if err := WriteFileSet(dir, set(0), nil); err != nil {
		t.Fatal(err)
	}
	var done atomic.Bool
	var reads, retries atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for r := 0; r < 4; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !done.Load() {
				vals, err := readConsistent(dir, names)
				if errors.Is(err, fs.ErrNotExist) {
					// The version this reader resolved was retired mid-read;
					// it sees nothing of it, which is allowed.
					retries.Add(1)
					continue
				}
				if err != nil {
					errs <- err
					return
				}
				for _, v := range vals {
					if v != vals[0] {
						errs <- fmt.Errorf("mixed versions in one read: %.8q vs %.8q", vals[0], v)
						return
					}
				}
				reads.Add(1)
			}
		}()
	}
	for v := 1; v <= 300; v++ {
		if err := WriteFileSet(dir, set(v), nil); err != nil {
			t.Fatal(err)
		}
	}
	done.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if reads.Load() == 0 {
		t.Fatal("readers completed no read")
	}
	t.Logf("%d consistent reads, %d retried", reads.Load(), retries.Load())
}

func readConsistent(dir string, names []string) ([]string, error) {
	target, err := os.Readlink(filepath.Join(dir, DataDir))
	if err != nil {
		return nil, err
	}
	var vals []string
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(dir, target, n))
		if err != nil {
			return nil, err
		}
		if len(b) != 8*512 {
			return nil, fmt.Errorf("%s is %d bytes, want %d: a partial file", n, len(b), 8*512)
		}
		vals = append(vals, string(b))
	}
	return vals, nil
}
