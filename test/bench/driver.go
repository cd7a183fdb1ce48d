package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"

	"github.com/podsecrets/podsecrets/driver"
)

// pprofOverlay is added to package main of cmd/podsecrets, through
// `go build -overlay`, only when the harness profiles the driver
// (BENCH_PPROF_DIR): the repository's sources are not changed.
const pprofOverlay = `package main

import (
	"net/http"
	_ "net/http/pprof"
	"os"
)

func init() {
	if addr := os.Getenv("PODSECRETS_BENCH_PPROF_ADDR"); addr != "" {
		go http.ListenAndServe(addr, nil)
	}
}
`

// buildDriver builds cmd/podsecrets with `make build`, the recipe of the
// image, into dir and returns the binary's path. With pprof,
// net/http/pprof is compiled in through GOFLAGS=-overlay.
func buildDriver(ctx context.Context, root, dir string, pprof bool) (string, error) {
	bin := filepath.Join(dir, "podsecrets")
	env := os.Environ()
	if pprof {
		src := filepath.Join(dir, "zz_bench_pprof.go")
		if err := os.WriteFile(src, []byte(pprofOverlay), 0o644); err != nil {
			return "", err
		}
		ov, _ := json.Marshal(map[string]any{"Replace": map[string]string{
			filepath.Join(root, "cmd", "podsecrets", "zz_bench_pprof.go"): src,
		}})
		ovPath := filepath.Join(dir, "overlay.json")
		if err := os.WriteFile(ovPath, ov, 0o644); err != nil {
			return "", err
		}
		env = append(env, "GOFLAGS=-overlay="+ovPath)
	}
	args := []string{"-s", "-C", root, "build", "VERSION=bench", "BIN=" + bin}
	cmd := exec.CommandContext(ctx, "make", args...)
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("make %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return bin, nil
}

// moduleRoot returns the directory of the main module's go.mod.
func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside the podsecrets module: run from the repository")
	}
	return filepath.Dir(gomod), nil
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Driver is the driver process under test and a CSI client connected to it
// the way kubelet connects.
type Driver struct {
	cmd       *exec.Cmd
	exited    chan struct{}
	waitErr   error
	httpAddr  string
	pprofAddr string
	logPath   string
	conn      *grpc.ClientConn
	// Node is the CSI Node service client.
	Node csi.NodeClient
	// Identity is the CSI Identity service client.
	Identity csi.IdentityClient
}

// DriverConfig is how startDriver runs the binary.
type DriverConfig struct {
	// Bin is the binary, Socket the CSI socket path, KubeletRoot and
	// Kubeconfig its flags, StoreURL its AWS_ENDPOINT_URL, Dir where its
	// log goes.
	Bin, Socket, KubeletRoot, Kubeconfig, StoreURL, Dir string
	// PprofAddr, if set, is where the pprof overlay listens.
	PprofAddr string
	// TmpDir, if set, is the driver's $TMPDIR.
	TmpDir string
	// NodeID is its --node-id; default "bench".
	NodeID string
	// Args are more driver flags.
	Args []string
}

// startDriver runs `podsecrets driver` and waits until it is ready.
func startDriver(ctx context.Context, c DriverConfig) (*Driver, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	d := &Driver{httpAddr: fmt.Sprintf("127.0.0.1:%d", port), pprofAddr: c.PprofAddr, logPath: filepath.Join(c.Dir, "driver.log"), exited: make(chan struct{})}
	logf, err := os.Create(d.logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	nodeID := c.NodeID
	if nodeID == "" {
		nodeID = "bench"
	}
	d.cmd = exec.Command(c.Bin, "driver",
		"--endpoint", "unix://"+c.Socket,
		"--node-id", nodeID,
		"--kubelet-root-dir", c.KubeletRoot,
		"--kubeconfig", c.Kubeconfig,
		"--http-addr", d.httpAddr,
		"--region", "us-east-1",
		"--log-level", "warn")
	d.cmd.Args = append(d.cmd.Args, c.Args...)
	// A hermetic environment: no AWS settings of the machine running the
	// benchmark, the fake store as every AWS endpoint.
	env := []string{}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") && !(c.TmpDir != "" && strings.HasPrefix(kv, "TMPDIR=")) {
			env = append(env, kv)
		}
	}
	if c.TmpDir != "" {
		env = append(env, "TMPDIR="+c.TmpDir)
	}
	env = append(env,
		"AWS_ENDPOINT_URL="+c.StoreURL,
		"AWS_CONFIG_FILE="+filepath.Join(c.Dir, "no-aws-config"),
		"AWS_SHARED_CREDENTIALS_FILE="+filepath.Join(c.Dir, "no-aws-credentials"))
	if c.PprofAddr != "" {
		env = append(env, "PODSECRETS_BENCH_PPROF_ADDR="+c.PprofAddr)
	}
	d.cmd.Env = env
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := d.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start driver: %w", err)
	}
	go func() { d.waitErr = d.cmd.Wait(); close(d.exited) }()

	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-d.exited:
			return nil, fmt.Errorf("driver exited during start-up (%v); log:\n%s", d.waitErr, d.LogTail())
		case <-ctx.Done():
			d.Stop()
			return nil, ctx.Err()
		default:
		}
		if _, err := os.Stat(c.Socket); err == nil && registerAsKubelet(ctx, c.KubeletRoot) == nil && d.httpOK("/readyz") {
			break
		}
		if time.Now().After(deadline) {
			d.Stop()
			return nil, fmt.Errorf("driver not ready after 30s; log:\n%s", d.LogTail())
		}
		time.Sleep(20 * time.Millisecond)
	}
	d.conn, err = grpc.NewClient("unix://"+c.Socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		d.Stop()
		return nil, err
	}
	d.Node, d.Identity = csi.NewNodeClient(d.conn), csi.NewIdentityClient(d.conn)
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := d.Identity.Probe(pctx, &csi.ProbeRequest{}); err != nil {
		d.Stop()
		return nil, fmt.Errorf("CSI Probe: %w", err)
	}
	return d, nil
}

// registerAsKubelet does what kubelet's plugin watcher does with the
// driver's registration socket: ask for its info and accept it. The driver
// is ready only after that.
func registerAsKubelet(ctx context.Context, kubeletRoot string) error {
	conn, err := grpc.NewClient("unix://"+driver.RegistrationSocket(kubeletRoot), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	reg := registerapi.NewRegistrationClient(conn)
	if _, err := reg.GetInfo(ctx, &registerapi.InfoRequest{}); err != nil {
		return err
	}
	_, err = reg.NotifyRegistrationStatus(ctx, &registerapi.RegistrationStatus{PluginRegistered: true})
	return err
}

func (d *Driver) httpOK(path string) bool {
	resp, err := http.Get("http://" + d.httpAddr + path)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode == http.StatusOK
}

// Pid returns the driver's process id.
func (d *Driver) Pid() int { return d.cmd.Process.Pid }

// Alive reports whether the driver is still running.
func (d *Driver) Alive() bool {
	select {
	case <-d.exited:
		return false
	default:
		return true
	}
}

// LogTail returns the end of the driver's log.
func (d *Driver) LogTail() string {
	b, _ := os.ReadFile(d.logPath)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// Stop ends the driver: SIGTERM, then SIGKILL to its process group after 5s.
func (d *Driver) Stop() {
	if d.conn != nil {
		d.conn.Close()
	}
	if d.cmd == nil || d.cmd.Process == nil || !d.Alive() {
		return
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(5 * time.Second):
		syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
		<-d.exited
	}
}

// Metrics returns the unlabelled metrics of the driver's /metrics.
func (d *Driver) Metrics() (map[string]float64, error) {
	resp, err := http.Get("http://" + d.httpAddr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || strings.Contains(line, "{") {
			continue
		}
		if k, v, ok := strings.Cut(line, " "); ok {
			if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
				out[k] = f
			}
		}
	}
	return out, sc.Err()
}

// Metric returns the value of an unlabelled metric from the driver's
// /metrics.
func (d *Driver) Metric(name string) (float64, error) {
	m, err := d.Metrics()
	if err != nil {
		return 0, err
	}
	v, ok := m[name]
	if !ok {
		return 0, fmt.Errorf("/metrics has no %s", name)
	}
	return v, nil
}

// Goroutines returns the driver's go_goroutines.
func (d *Driver) Goroutines() (int, error) {
	v, err := d.Metric("go_goroutines")
	return int(v), err
}

// MemStatus is the memory of a process from /proc/<pid>/status, in KiB,
// and of its Go heap from its /metrics, in bytes.
type MemStatus struct {
	// RSS is VmRSS, HWM VmHWM (peak RSS); Anon and File split RSS into
	// anonymous memory (heap, stacks) and mapped file pages (the binary).
	RSS, HWM, Anon, File int64
	// HeapInuse, HeapIdle, HeapReleased and Sys are the runtime's
	// go_memstats_*_bytes.
	HeapInuse, HeapIdle, HeapReleased, Sys int64
}

// memory reads the driver's MemStatus.
func (d *Driver) memory() (MemStatus, error) {
	m, err := procMem(d.Pid())
	if err != nil {
		return m, err
	}
	met, err := d.Metrics()
	if err != nil {
		return m, err
	}
	m.HeapInuse = int64(met["go_memstats_heap_inuse_bytes"])
	m.HeapIdle = int64(met["go_memstats_heap_idle_bytes"])
	m.HeapReleased = int64(met["go_memstats_heap_released_bytes"])
	m.Sys = int64(met["go_memstats_sys_bytes"])
	return m, nil
}

// MiB formats KiB as MiB.
func MiB(kib int64) string { return fmt.Sprintf("%.1f MiB", float64(kib)/1024) }

// procMem reads VmRSS and VmHWM of pid.
func procMem(pid int) (MemStatus, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return MemStatus{}, err
	}
	var m MemStatus
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, _ := strconv.ParseInt(f[0], 10, 64)
		switch k {
		case "VmRSS":
			m.RSS = n
		case "VmHWM":
			m.HWM = n
		case "RssAnon":
			m.Anon = n
		case "RssFile":
			m.File = n
		}
	}
	if m.RSS == 0 {
		return m, fmt.Errorf("/proc/%d/status: no VmRSS", pid)
	}
	return m, nil
}

// userHZ is the unit of the /proc/<pid>/stat times (USER_HZ, 100 on every
// Linux architecture Go supports for this).
const userHZ = 100

// CPUTimes are a process's CPU times from /proc/<pid>/stat.
type CPUTimes struct {
	// Self is utime+stime: the process's own threads.
	Self time.Duration
	// Children is cutime+cstime: waited-for child processes.
	Children time.Duration
}

// procCPU reads the CPU times of pid.
func procCPU(pid int) (CPUTimes, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return CPUTimes{}, err
	}
	// The command name (field 2) may contain spaces: fields are counted
	// after its closing parenthesis; utime is field 14.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return CPUTimes{}, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 15 {
		return CPUTimes{}, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	tick := func(s string) time.Duration {
		n, _ := strconv.ParseInt(s, 10, 64)
		return time.Duration(n) * time.Second / userHZ
	}
	// f[0] is field 3 (state): utime, stime, cutime, cstime are f[11..14].
	return CPUTimes{Self: tick(f[11]) + tick(f[12]), Children: tick(f[13]) + tick(f[14])}, nil
}

// systemCPU returns the CPU time all CPUs spent busy (user, nice, system,
// irq, softirq) and stolen by the hypervisor, from /proc/stat.
func systemCPU() (busy, steal time.Duration, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0, errors.New("/proc/stat: unexpected first line")
	}
	tick := func(s string) time.Duration {
		n, _ := strconv.ParseInt(s, 10, 64)
		return time.Duration(n) * time.Second / userHZ
	}
	// user nice system idle iowait irq softirq steal
	busy = tick(f[1]) + tick(f[2]) + tick(f[3]) + tick(f[6]) + tick(f[7])
	return busy, tick(f[8]), nil
}

// threadCPU returns the CPU time pid's threads have run, summed from
// /proc/<pid>/task/*/schedstat (nanoseconds, unlike the 10 ms ticks of
// /proc/<pid>/stat). Threads that have exited are not counted; the Go
// runtime keeps its threads.
func threadCPU(pid int) (time.Duration, error) {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	var total time.Duration
	for _, t := range tasks {
		b, err := os.ReadFile(filepath.Join(dir, t.Name(), "schedstat"))
		if errors.Is(err, fs.ErrNotExist) {
			continue // the thread exited meanwhile
		}
		if err != nil {
			return 0, err
		}
		f := strings.Fields(string(b))
		if len(f) == 0 {
			return 0, fmt.Errorf("%s/%s/schedstat: empty", dir, t.Name())
		}
		ns, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, err
		}
		total += time.Duration(ns)
	}
	return total, nil
}

// fetchProfile saves the driver's pprof profile path (such as
// "profile?seconds=10" or "heap") to file.
func (d *Driver) fetchProfile(ctx context.Context, path, file string) error {
	if d.pprofAddr == "" {
		return errors.New("driver built without pprof")
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+d.pprofAddr+"/debug/pprof/"+path, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("pprof %s: %s", path, resp.Status)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
