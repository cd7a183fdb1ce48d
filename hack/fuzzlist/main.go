// Command fuzzlist prints every fuzz target of the module as
// "import/path:FuzzName", so `make fuzz` runs new fuzzers without edits.
package main

import (
	"bufio"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
)

var fuzzFunc = regexp.MustCompile(`^func (Fuzz\w+)\(\w+ \*testing\.F\)`)

func main() {
	out, err := exec.Command("go", "list", "-m").Output()
	if err != nil {
		fmt.Fprintln(os.Stderr, "fuzzlist: go list -m:", err)
		os.Exit(1)
	}
	module := strings.TrimSpace(string(out))
	err = filepath.WalkDir(".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && p != "." && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || isModule(p)) {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, "_test.go") {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		s := bufio.NewScanner(f)
		for s.Scan() {
			if m := fuzzFunc.FindStringSubmatch(s.Text()); m != nil {
				fmt.Printf("%s/%s:%s\n", module, filepath.ToSlash(filepath.Dir(p)), m[1])
			}
		}
		return s.Err()
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "fuzzlist:", err)
		os.Exit(1)
	}
}

// isModule reports whether dir holds a nested module, which is not ours to
// fuzz.
func isModule(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, "go.mod"))
	return err == nil
}
