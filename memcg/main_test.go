package memcg

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// Test-only children are this binary started through a symlink whose name
// selects the behaviour (testChild); the real child is MaybeRunChild.
const (
	// hangChild blocks until killed, after writing its PID to
	// $MEMCG_TEST_FIFO when that is set.
	hangChild = "memcg-test-hang"
	// cgroupChild reads the payload, then fails with its /proc/self/cgroup
	// as the error.
	cgroupChild = "memcg-test-cgroup"
	// driverChild stands in for the driver: it runs one write with
	// Writer{Root: $MEMCG_TEST_ROOT, Exe: $MEMCG_TEST_EXE} into
	// $MEMCG_TEST_DIR.
	driverChild = "memcg-test-driver"
)

func TestMain(m *testing.M) {
	if filepath.Base(os.Args[0]) == driverChild {
		w := &Writer{Root: os.Getenv("MEMCG_TEST_ROOT"), Exe: os.Getenv("MEMCG_TEST_EXE")}
		err := w.WriteFileSet(context.Background(), testUID, os.Getenv("MEMCG_TEST_DIR"), nil, nil)
		fmt.Fprintln(os.Stderr, "write returned:", err)
		os.Exit(4)
	}
	if len(os.Args) > 1 && os.Args[1] == ChildArg {
		switch filepath.Base(os.Args[0]) {
		case hangChild:
			if fifo := os.Getenv("MEMCG_TEST_FIFO"); fifo != "" {
				if err := os.WriteFile(fifo, []byte(strconv.Itoa(os.Getpid())), 0); err != nil {
					os.Exit(5)
				}
			}
			// A pending signal.Notify keeps the runtime from calling a
			// blocked main a deadlock.
			c := make(chan os.Signal, 1)
			signal.Notify(c, syscall.SIGUSR1)
			<-c
			os.Exit(3)
		case cgroupChild:
			if _, err := readPayload(os.Stdin); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			b, err := os.ReadFile("/proc/self/cgroup")
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			fmt.Fprintln(os.Stderr, "cgroup "+strings.ReplaceAll(strings.TrimSpace(string(b)), "\n", ";"))
			os.Exit(1)
		}
	}
	MaybeRunChild()
	// A race-enabled child sleeps a second before exiting (GORACE's
	// atexit_sleep_ms) unless told otherwise; children inherit this.
	os.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	os.Exit(m.Run())
}

// testChild returns an Exe that runs this test binary as the child named
// mode.
func testChild(t testing.TB, mode string) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(t.TempDir(), mode)
	if err := os.Symlink(exe, link); err != nil {
		t.Fatal(err)
	}
	return link
}

// execHang starts exe as a hang child.
func execHang(t testing.TB, exe string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(exe, ChildArg)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd
}
