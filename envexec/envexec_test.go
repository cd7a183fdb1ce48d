package envexec

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/podsecrets/podsecrets/mount"
)

// secretValue is in every file of the test volumes: no message may hold it.
const secretValue = "s3cr3t"

// volume writes files as the driver does (the ..data layout, with a
// record) into a new directory and returns it.
func volume(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	var set []mount.File
	for p, v := range files {
		set = append(set, mount.File{Path: p, Mode: 0o644, Data: []byte(v)})
	}
	set = append(set, mount.File{Path: mount.RecordFile, Mode: 0o440, Data: []byte(`{"objects":[]}`)})
	if err := mount.WriteFileSet(dir, set, nil); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestDataDirIsMounts(t *testing.T) {
	if dataDir != mount.DataDir {
		t.Fatalf("dataDir %q, mount.DataDir %q", dataDir, mount.DataDir)
	}
}

func TestEnvironDefaultMapping(t *testing.T) {
	dir := volume(t, map[string]string{
		"DB_PASSWORD": secretValue + "\n", // kept as is, newline and all
		"api_key":     "k",
		"_X1":         "x",
		"db-user":     "skipped: not a variable name",
		".env":        "skipped",
		"1ST":         "skipped",
		"sub/TOKEN":   "skipped: below the top",
	})
	got, err := Environ(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"DB_PASSWORD=" + secretValue + "\n", "_X1=x", "api_key=k"}
	if !slices.Equal(got, want) {
		t.Fatalf("Environ = %q, want %q", got, want)
	}
}

// TestEnvironDefaultMappingPlainDirectory: a directory without ..data
// (any directory of files, or links to them) is read as it is.
func TestEnvironDefaultMappingPlainDirectory(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "real"), []byte("v"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("real", filepath.Join(dir, "LINKED")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "DIR"), 0o755); err != nil {
		t.Fatal(err)
	}
	got, err := Environ(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"LINKED=v", "real=v"}; !slices.Equal(got, want) {
		t.Fatalf("Environ = %q, want %q", got, want)
	}
}

// TestEnvironReadsOneVersion: the variables come from the version ..data
// names, even when a top-level link points elsewhere (a rotation's
// switch between its two steps).
func TestEnvironReadsOneVersion(t *testing.T) {
	dir := volume(t, map[string]string{"A": "new", "B": "new"})
	old := filepath.Join(dir, "..v_old")
	if err := os.Mkdir(old, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(old, "A"), []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "A")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("..v_old/A", filepath.Join(dir, "A")); err != nil {
		t.Fatal(err)
	}
	got, err := Environ(dir, []Mapping{{"A", "A"}, {"B", "B"}})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"A=new", "B=new"}; !slices.Equal(got, want) {
		t.Fatalf("Environ = %q, want %q", got, want)
	}
}

func TestEnvironMappings(t *testing.T) {
	dir := volume(t, map[string]string{"db-user": "u", "db-password": secretValue, "certs/ca.pem": "pem"})
	got, err := Environ(dir, []Mapping{{"DB_USER", "db-user"}, {"DB_PASSWORD", "db-password"}, {"CA", "certs/ca.pem"}})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"DB_USER=u", "DB_PASSWORD=" + secretValue, "CA=pem"}; !slices.Equal(got, want) {
		t.Fatalf("Environ = %q, want %q", got, want)
	}
}

func TestEnvironErrors(t *testing.T) {
	dir := volume(t, map[string]string{
		"ok":      secretValue,
		"nul":     secretValue + "\x00" + secretValue,
		"big":     secretValue + strings.Repeat("x", MaxValue),
		"edge":    strings.Repeat("x", MaxValue-len("EDGE=")),
		"sub/f":   secretValue,
		"db-user": secretValue,
	})
	tests := map[string]struct {
		dir  string
		maps []Mapping
		want string // the whole message
	}{
		"missing file":      {maps: []Mapping{{"X", "absent"}}, want: "X: file absent is not in the volume"},
		"a directory":       {maps: []Mapping{{"X", "sub"}}, want: "X: file sub is not a regular file"},
		"NUL byte":          {maps: []Mapping{{"X", "nul"}}, want: "X: file nul holds a NUL byte, which an environment variable cannot"},
		"too long":          {maps: []Mapping{{"X", "big"}}, want: "X: file big has 131077 bytes, more than the 131069 an environment variable of this name can hold"},
		"too long for name": {maps: []Mapping{{"EDGE_", "edge"}}, want: "EDGE_: file edge has 131066 bytes, more than the 131065 an environment variable of this name can hold"},
		"twice":             {maps: []Mapping{{"X", "ok"}, {"X", "db-user"}}, want: "X is set twice, from ok and db-user"},
		"no volume":         {dir: filepath.Join(dir, "nope"), want: "--from " + filepath.Join(dir, "nope") + ": no such file or directory"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			d := dir
			if tc.dir != "" {
				d = tc.dir
			}
			_, err := Environ(d, tc.maps)
			if err == nil || err.Error() != tc.want {
				t.Fatalf("Environ = %v\nwant        %s", err, tc.want)
			}
			if strings.Contains(err.Error(), secretValue) || strings.Contains(err.Error(), "..v_") {
				t.Fatalf("error %q holds a value or a version directory", err)
			}
		})
	}
	if _, err := Environ(dir, []Mapping{{"EDGE", "edge"}}); err != nil {
		t.Errorf("a variable of exactly the limit: %v", err)
	}
	empty := volume(t, map[string]string{"db-user": "u"})
	if _, err := Environ(empty, nil); err == nil || !strings.Contains(err.Error(), "no file has a name usable as an environment variable; map files with --env NAME=file") {
		t.Errorf("nothing to map: %v", err)
	}
}

func TestParseMapping(t *testing.T) {
	for in, want := range map[string]Mapping{
		"DB_PASSWORD=db-password": {"DB_PASSWORD", "db-password"},
		"_a1=dir/./f":             {"_a1", "dir/f"},
		"X=a=b":                   {"X", "a=b"},
	} {
		if got, err := ParseMapping(in); err != nil || got != want {
			t.Errorf("ParseMapping(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for in, want := range map[string]string{
		"X":         `--env "X": want NAME=file`,
		"1X=f":      `--env "1X=f": "1X" is not an environment variable name (a letter or _, then letters, digits and _)`,
		"=f":        `--env "=f": "" is not an environment variable name (a letter or _, then letters, digits and _)`,
		"A-B=f":     `--env "A-B=f": "A-B" is not an environment variable name (a letter or _, then letters, digits and _)`,
		"X=":        `--env "X=": no file after X=`,
		"X=/etc/pw": `--env "X=/etc/pw": the file must be a path inside the volume, without ".."`,
		"X=../f":    `--env "X=../f": the file must be a path inside the volume, without ".."`,
	} {
		if _, err := ParseMapping(in); err == nil || err.Error() != want {
			t.Errorf("ParseMapping(%q) = %v\nwant %s", in, err, want)
		}
	}
}

func FuzzParseMapping(f *testing.F) {
	for _, s := range []string{"A=b", "_=x/y", "A=../b", "A=/b", "1=b", "A", "A==", "ä=b", "A=b/../../c", "A=."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseMapping(s)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error %q", err)
			}
			return
		}
		if !ValidName(m.Name) || strings.ContainsAny(m.Name, "=\x00") {
			t.Fatalf("accepted name %q", m.Name)
		}
		if !filepath.IsLocal(m.File) || filepath.Clean(m.File) != m.File {
			t.Fatalf("accepted file %q", m.File)
		}
		again, err := ParseMapping(m.String())
		if err != nil || again != m {
			t.Fatalf("%q → %v → %v, %v", s, m, again, err)
		}
	})
}

func TestMerge(t *testing.T) {
	got := Merge([]string{"PATH=/bin", "DB=old", "HOME=/"}, []string{"DB=new", "X=1"})
	if want := []string{"PATH=/bin", "HOME=/", "DB=new", "X=1"}; !slices.Equal(got, want) {
		t.Fatalf("Merge = %q, want %q", got, want)
	}
}

// run runs Command.Run with a fake execve and returns what it would have
// executed, its exit code and its messages.
func run(t *testing.T, c Command, args ...string) (argv0 string, argv, env []string, code int, stderr string) {
	t.Helper()
	var buf bytes.Buffer
	c.Stderr = &buf
	if c.Name == "" {
		c.Name = BinaryName
	}
	saved := execve
	t.Cleanup(func() { execve = saved })
	execve = func(p string, a, e []string) error {
		argv0, argv, env = p, a, e
		return os.ErrPermission
	}
	code = c.Run(args)
	return argv0, argv, env, code, buf.String()
}

func TestRun(t *testing.T) {
	dir := volume(t, map[string]string{"DB_PASSWORD": secretValue, "db-user": "u"})
	t.Setenv("DB_PASSWORD", "from the pod spec")
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh in $PATH")
	}
	p, argv, env, code, stderr := run(t, Command{}, "--from", dir, "--env", "DB_USER=db-user", "--env", "DB_PASSWORD=DB_PASSWORD", "--", "sh", "-c", "echo $DB_USER")
	if p != sh || !slices.Equal(argv, []string{"sh", "-c", "echo $DB_USER"}) {
		t.Errorf("ran %s %q, want %s [sh -c ...]", p, argv, sh)
	}
	if !slices.Contains(env, "DB_USER=u") || !slices.Contains(env, "DB_PASSWORD="+secretValue) || slices.Contains(env, "DB_PASSWORD=from the pod spec") {
		t.Errorf("environment %q: want the volume's values, replacing the pod spec's", env)
	}
	if code != ExitCannotRun || !strings.Contains(stderr, "podsecrets-exec: run "+sh+": permission denied") {
		t.Errorf("a failed exec: code %d, %q", code, stderr)
	}

	// Without --env: the default mapping; without "--" the first argument
	// not a flag starts the command.
	_, _, env, _, _ = run(t, Command{}, "--from", dir, "sh")
	if !slices.Contains(env, "DB_PASSWORD="+secretValue) || slices.ContainsFunc(env, func(s string) bool { return strings.HasPrefix(s, "db-user=") }) {
		t.Errorf("default mapping: environment %q", env)
	}
}

func TestRunFailures(t *testing.T) {
	dir := volume(t, map[string]string{"DB_PASSWORD": secretValue})
	tests := map[string]struct {
		c    Command
		args []string
		code int
		want string
	}{
		"no --from":     {args: []string{"--", "sh"}, code: ExitUsage, want: "podsecrets-exec: --from is required"},
		"no command":    {args: []string{"--from", dir}, code: ExitUsage, want: "podsecrets-exec: no command to run after --"},
		"bad --env":     {args: []string{"--from", dir, "--env", "a-b=c", "--", "sh"}, code: ExitUsage, want: `invalid value "a-b=c" for flag -env: --env "a-b=c": "a-b" is not an environment variable name`},
		"unknown flag":  {args: []string{"--frm", dir}, code: ExitUsage, want: "flag provided but not defined: -frm"},
		"missing file":  {args: []string{"--from", dir, "--env", "X=nope", "--", "sh"}, code: ExitFailed, want: "podsecrets-exec: X: file nope is not in the volume"},
		"not found":     {args: []string{"--from", dir, "--", "no-such-command-podsecrets"}, code: ExitNotFound, want: `podsecrets-exec: command "no-such-command-podsecrets": exec: "no-such-command-podsecrets": executable file not found in $PATH`},
		"no --install":  {c: Command{Name: "podsecrets exec"}, args: []string{"--install", dir}, code: ExitUsage, want: "flag provided but not defined: -install"},
		"install alone": {c: Command{CanInstall: true}, args: []string{"--install", dir, "--from", dir}, code: ExitUsage, want: "--install takes a directory and nothing else"},
		"help":          {args: []string{"-h"}, code: 0, want: "they do not follow a rotation of the volume"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			p, _, _, code, stderr := run(t, tc.c, tc.args...)
			if p != "" {
				t.Errorf("ran %s", p)
			}
			if code != tc.code || !strings.Contains(stderr, tc.want) {
				t.Errorf("code %d, stderr %q; want %d, %q", code, stderr, tc.code, tc.want)
			}
			if strings.Contains(stderr, secretValue) {
				t.Errorf("stderr %q holds a value", stderr)
			}
		})
	}
}

func TestInstall(t *testing.T) {
	dir := t.TempDir()
	if _, _, _, code, stderr := run(t, Command{CanInstall: true}, "--install", dir); code != 0 {
		t.Fatalf("--install: %d %s", code, stderr)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dir, BinaryName))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("installed copy: %d bytes, %v; want the %d of this binary", len(got), err, len(want))
	}
	if fi, _ := os.Stat(filepath.Join(dir, BinaryName)); fi.Mode().Perm() != 0o755 {
		t.Errorf("installed copy has mode %v", fi.Mode())
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("the directory holds %d entries, want the binary alone", len(entries))
	}
	if _, _, _, code, stderr := run(t, Command{CanInstall: true}, "--install", filepath.Join(dir, "absent")); code != ExitFailed ||
		!strings.Contains(stderr, "--install "+filepath.Join(dir, "absent")+": no such file or directory") {
		t.Errorf("--install into a missing directory: %d %q", code, stderr)
	}
}
