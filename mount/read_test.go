package mount

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// TestReadBack: what a rotation check reads of a volume: files through the
// current version only, the record, whether a set is the same, whether the
// layout is tidy.
func TestReadBack(t *testing.T) {
	dir := t.TempDir()
	gid := int64(os.Getgid())
	set := append(files("a", "1", "d/b", "2"), File{Path: RecordFile, Mode: 0o440, Data: []byte(`{"class":"x"}`)})
	if err := WriteFileSet(dir, set, &gid); err != nil {
		t.Fatal(err)
	}
	if b, err := ReadFile(dir, "d/b"); err != nil || string(b) != "2" {
		t.Fatalf("ReadFile d/b = %q, %v", b, err)
	}
	if b, err := ReadFile(dir, RecordFile); err != nil || string(b) != `{"class":"x"}` {
		t.Fatalf("ReadFile of the record = %q, %v", b, err)
	}
	if _, err := ReadFile(dir, "../etc/passwd"); err == nil {
		t.Fatal("ReadFile left the volume")
	}
	if _, err := ReadFile(dir, "missing"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("ReadFile of a missing file = %v, want ErrNotExist", err)
	}

	same := func(fs []File) bool {
		t.Helper()
		ok, err := SameSet(dir, fs, &gid)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	other := append(files("a", "1", "d/b", "2"), File{Path: RecordFile, Data: []byte(`{"class":"y"}`)})
	if !same(other) {
		t.Fatal("the same files with another record are not the same set")
	}
	for name, fs := range map[string][]File{
		"changed data": files("a", "1", "d/b", "3"),
		"a file less":  files("a", "1"),
		"a file more":  files("a", "1", "d/b", "2", "c", "4"),
		"other mode":   {{Path: "a", Mode: 0o600, Data: []byte("1")}, {Path: "d/b", Mode: 0o644, Data: []byte("2")}},
	} {
		if same(fs) {
			t.Errorf("%s: SameSet is true", name)
		}
	}

	if tidy, err := Tidy(dir); err != nil || !tidy {
		t.Fatalf("Tidy after a write = %v, %v", tidy, err)
	}
	// What a write killed after the switch leaves: an old version and a
	// link of the old set.
	os.Mkdir(filepath.Join(dir, versionPrefix+"old"), 0o700)
	os.Symlink(filepath.Join(DataDir, "gone"), filepath.Join(dir, "gone"))
	if tidy, _ := Tidy(dir); tidy {
		t.Fatal("Tidy with leftovers")
	}
	if err := Repair(dir); err != nil {
		t.Fatal(err)
	}
	if tidy, err := Tidy(dir); err != nil || !tidy {
		t.Fatalf("Tidy after Repair = %v, %v", tidy, err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "gone")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("Repair kept a link of the old set")
	}
}
