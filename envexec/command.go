package envexec

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// Exit codes of Command.Run when it does not get to run the command; once
// it runs, the exit code is the command's.
const (
	// ExitFailed: the volume or a file could not give its variable, or
	// --install failed.
	ExitFailed = 1
	// ExitUsage: the command line is wrong.
	ExitUsage = 2
	// ExitCannotRun: the command was found but could not be run.
	ExitCannotRun = 126
	// ExitNotFound: the command is not in $PATH (a shell's code).
	ExitNotFound = 127
)

// BinaryName is the name of the small binary and of its copy in the pod.
const BinaryName = "podsecrets-exec"

// execve replaces the process with the command; tests swap it to see what
// would run.
var execve = syscall.Exec

// Command is the command line of podsecrets-exec and of podsecrets exec.
type Command struct {
	// Name is the command as the user types it, for usage and messages.
	Name string
	// CanInstall offers --install: the small binary copies itself into a
	// directory, since the driver's image has no shell and no cp.
	CanInstall bool
	// Stderr receives usage and errors.
	Stderr io.Writer
}

// envFlags collects the repeated --env flags.
type envFlags []Mapping

func (e *envFlags) String() string {
	s := make([]string, len(*e))
	for i, m := range *e {
		s[i] = m.String()
	}
	return strings.Join(s, " ")
}

func (e *envFlags) Set(v string) error {
	m, err := ParseMapping(v)
	if err != nil {
		return err
	}
	*e = append(*e, m)
	return nil
}

// Run parses args (without the program name), reads the variables and
// replaces the process with the command. It returns only when it could
// not, with an exit code.
func (c Command) Run(args []string) int {
	fs := flag.NewFlagSet(c.Name, flag.ContinueOnError)
	fs.SetOutput(c.Stderr)
	from := fs.String("from", "", "the mounted secrets volume to read (required)")
	var maps envFlags
	fs.Var(&maps, "env", "NAME=file: set NAME to the content of file, a path in the volume (repeatable); "+
		"without any, every top-level file whose name is a valid variable name sets the variable of its name")
	var install *string
	if c.CanInstall {
		install = fs.String("install", "", "copy this binary into the directory and exit (for an init container)")
	}
	fs.Usage = func() {
		fmt.Fprintf(c.Stderr, "Usage: %s --from DIR [--env NAME=file ...] -- COMMAND [ARGS...]\n\n"+
			"Runs COMMAND with files of the secrets volume at DIR in its environment. The variables are read once,\n"+
			"at start: they do not follow a rotation of the volume, only its files do.\n\n", c.Name)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return ExitUsage
	}
	if install != nil && *install != "" {
		if fs.NArg() > 0 || *from != "" || len(maps) > 0 {
			return c.usage("--install takes a directory and nothing else")
		}
		if err := installSelf(*install); err != nil {
			return c.fail(ExitFailed, err)
		}
		return 0
	}
	if *from == "" {
		return c.usage("--from is required")
	}
	if fs.NArg() == 0 {
		return c.usage("no command to run after --")
	}
	argv := fs.Args()
	vars, err := Environ(*from, maps)
	if err != nil {
		return c.fail(ExitFailed, err)
	}
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return c.fail(ExitNotFound, fmt.Errorf("command %q: %w", argv[0], err))
	}
	err = execve(path, argv, Merge(os.Environ(), vars))
	return c.fail(ExitCannotRun, fmt.Errorf("run %s: %w", path, err))
}

func (c Command) usage(msg string) int {
	fmt.Fprintf(c.Stderr, "%s: %s\nRun %q for usage.\n", c.Name, msg, c.Name+" -h")
	return ExitUsage
}

func (c Command) fail(code int, err error) int {
	fmt.Fprintf(c.Stderr, "%s: %v\n", c.Name, err)
	return code
}

// installSelf copies the running binary into dir as BinaryName, through a
// temporary name and a rename, so that a restarted init container never
// leaves a partial binary for the app's container to run.
func installSelf(dir string) error {
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("--install: find this binary: %w", err)
	}
	src, err := os.Open(self)
	if err != nil {
		return fmt.Errorf("--install: %w", err)
	}
	defer src.Close()
	dst, err := os.CreateTemp(dir, "."+BinaryName+"-*")
	if err != nil {
		return fmt.Errorf("--install %s: %w", dir, unwrapPath(err))
	}
	defer os.Remove(dst.Name()) // after the rename, there is nothing to remove
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return fmt.Errorf("--install %s: write: %w", dir, unwrapPath(err))
	}
	if err := dst.Chmod(0o755); err != nil {
		dst.Close()
		return fmt.Errorf("--install %s: %w", dir, unwrapPath(err))
	}
	if err := dst.Close(); err != nil {
		return fmt.Errorf("--install %s: %w", dir, unwrapPath(err))
	}
	if err := os.Rename(dst.Name(), filepath.Join(dir, BinaryName)); err != nil {
		return fmt.Errorf("--install %s: %w", dir, unwrapPath(err))
	}
	return nil
}
