// Command podsecrets is the podsecrets CSI node plugin. It only wires: flags,
// clients, providers and servers; the behaviour lives in driver, provider and
// mount.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/podsecrets/podsecrets/check"
	"github.com/podsecrets/podsecrets/driver"
	"github.com/podsecrets/podsecrets/envexec"
	"github.com/podsecrets/podsecrets/internal/logkey"
	"github.com/podsecrets/podsecrets/kube"
	"github.com/podsecrets/podsecrets/memcg"
	"github.com/podsecrets/podsecrets/mount"
	"github.com/podsecrets/podsecrets/provider"
	"github.com/podsecrets/podsecrets/provider/aws"
	"github.com/podsecrets/podsecrets/provider/plugin"
	"github.com/podsecrets/podsecrets/rotation"
	"github.com/podsecrets/podsecrets/volume"
)

// gcPercent is the driver's garbage-collection target unless $GOGC is set.
const gcPercent = 50

// memLimitPercent is the share of the container's memory limit the Go heap
// is kept within unless $GOMEMLIMIT is set.
const memLimitPercent = 70

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `podsecrets mounts secrets from external stores into pods, fetched at pod
start with the pod's own identity, on tmpfs, with no Kubernetes Secret.

Usage:
  podsecrets driver [flags]   run the CSI node plugin (as the DaemonSet does)
  podsecrets check -f FILE [--as NAMESPACE/SERVICEACCOUNT] [-o text|json]
                              check SecretProviderClasses without a pod: offline, or
                              with a dry-run read as the service account; never a value
  podsecrets exec --from DIR [--env NAME=file ...] -- COMMAND [ARGS...]
                              run COMMAND with the files of a mounted volume in its
                              environment (read once: variables do not rotate)
  podsecrets version          print the version

Run "podsecrets driver -h" for the driver's flags, "podsecrets check -h" and
"podsecrets exec -h" for theirs.
`

func main() {
	// A volume writer is this binary too; it must not parse flags.
	memcg.MaybeRunChild()
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	switch os.Args[1] {
	case "driver":
		if err := runDriver(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "podsecrets:", err)
			os.Exit(1)
		}
	case "check":
		os.Exit(check.Main(os.Args[2:], os.Stdin, os.Stdout, os.Stderr))
	case "exec":
		os.Exit(envexec.Command{Name: "podsecrets exec", Stderr: os.Stderr}.Run(os.Args[2:]))
	case "version", "--version", "-version":
		fmt.Println(version)
	case "help", "-h", "--help":
		fmt.Print(usage)
	default:
		fmt.Fprintf(os.Stderr, "podsecrets: unknown command %q\n\n%s", os.Args[1], usage)
		os.Exit(2)
	}
}

type config struct {
	endpoint, nodeID, kubeletRoot, kubeconfig, httpAddr string
	tmpfsSize, logFormat, logLevel, region, podIdentity string
	kubeQPS                                             float64
	nodeVolumeBytes, volumeMemory, cgroupRoot, kubepods string
	publishMemory                                       string
	maxWriters                                          int
	awsShareWindow                                      time.Duration
	awsReadStrategy                                     aws.ReadStrategy
	minPollInterval                                     time.Duration
	watchClasses                                        bool
	pluginDirs                                          string
	startupTaint                                        string
}

// Values of --volume-memory.
const (
	volumeMemoryPod    = "pod"
	volumeMemoryDriver = "driver"
)

func parseFlags(args []string) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("podsecrets driver", flag.ContinueOnError)
	fs.StringVar(&c.endpoint, "endpoint", "unix:///var/lib/kubelet/plugins/csi.podsecrets.dev/csi.sock",
		"CSI endpoint: the unix socket kubelet calls, as a path valid on the host")
	fs.StringVar(&c.nodeID, "node-id", os.Getenv("NODE_NAME"), "this node's name (default $NODE_NAME)")
	fs.StringVar(&c.kubeletRoot, "kubelet-root-dir", "/var/lib/kubelet", "kubelet's root directory; the registration socket goes in its plugins_registry")
	fs.StringVar(&c.kubeconfig, "kubeconfig", "", "kubeconfig file (default: in-cluster service account)")
	fs.Float64Var(&c.kubeQPS, "kube-api-qps", 200, "client-side limit on API server requests per second (burst is twice this)")
	fs.StringVar(&c.httpAddr, "http-addr", ":9808", "listen address for /healthz, /readyz and /metrics (empty disables)")
	fs.StringVar(&c.tmpfsSize, "tmpfs-size", "8Mi", "size limit of each volume's tmpfs (a quantity such as 8Mi)")
	fs.StringVar(&c.nodeVolumeBytes, "max-node-volume-bytes", "1Gi",
		"limit on the bytes of all secrets volumes of the node together (a quantity; 0 for none)")
	fs.IntVar(&c.maxWriters, "max-concurrent-writes", 2, "publishes writing their files at once; the others wait")
	fs.StringVar(&c.publishMemory, "publish-memory", "48Mi",
		"bytes of volume data the publishes in flight may hold in the driver before writing them (a quantity; 0 for no limit)")
	fs.StringVar(&c.volumeMemory, "volume-memory", volumeMemoryPod,
		"whose memory cgroup pays for a volume's pages: pod (written by a child process in the pod's cgroup) or driver")
	fs.StringVar(&c.cgroupRoot, "cgroup-root", memcg.DefaultRoot, "where the host's cgroup file system is mounted in the driver's container")
	fs.StringVar(&c.kubepods, "kubepods-cgroup", memcg.DefaultParent, "kubelet's cgroup of all pods, relative to the cgroup root (kubelet's --cgroup-root plus kubepods)")
	fs.StringVar(&c.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&c.logLevel, "log-level", envOr("PODSECRETS_LOG_LEVEL", "info"), "log level: debug, info, warn or error; $PODSECRETS_LOG_LEVEL sets the default")
	fs.StringVar(&c.region, "region", os.Getenv("AWS_REGION"),
		"default AWS region for classes without a region parameter (default $AWS_REGION, else the node's "+kube.RegionLabel+" label)")
	fs.StringVar(&c.podIdentity, "pod-identity-endpoint", os.Getenv("PODSECRETS_POD_IDENTITY_ENDPOINT"),
		"EKS Pod Identity agent credentials URL (default $PODSECRETS_POD_IDENTITY_ENDPOINT, else the agent's link-local "+
			"address, "+aws.DefaultPodIdentityEndpoint+", or its IPv6 twin for classes with preferredAddressType: ipv6)")
	fs.DurationVar(&c.awsShareWindow, "aws-share-window", aws.DefaultShareWindow,
		"how long pods of one service account reuse a store read on this node (0 disables sharing)")
	fs.TextVar(&c.awsReadStrategy, "aws-read-strategy", aws.ReadByQuota,
		"API for current Secrets Manager values: quota (by quota headroom) or batch (always BatchGetSecretValue)")
	fs.DurationVar(&c.minPollInterval, "min-poll-interval", rotation.DefaultFloor,
		"shortest rotation poll interval a SecretProviderClass gets; shorter spec.rotation.pollInterval values are raised to it")
	fs.BoolVar(&c.watchClasses, "watch-classes", true,
		"follow SecretProviderClass metadata with a watch (needs list and watch), so that a new "+kube.RefreshAnnotation+
			" annotation or spec makes volumes check at their next republish; false leaves only the poll interval")
	fs.StringVar(&c.startupTaint, "startup-taint", "",
		"taint key to remove from this node once kubelet has registered the driver, such as "+kube.DefaultStartupTaint+
			" (needs get and patch on nodes); empty: none")
	fs.StringVar(&c.pluginDirs, "plugin-dirs", strings.Join(plugin.DefaultDirs, ","),
		"comma-separated directories searched for the socket <name>.sock of a Secrets Store CSI provider plugin, "+
			"for classes whose spec.provider is not built in (empty disables plugins)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	switch {
	case c.nodeID == "":
		return nil, errors.New("-node-id (or $NODE_NAME) is required")
	case c.volumeMemory != volumeMemoryPod && c.volumeMemory != volumeMemoryDriver:
		return nil, fmt.Errorf("-volume-memory %q: want pod or driver", c.volumeMemory)
	case c.maxWriters < 1:
		return nil, fmt.Errorf("-max-concurrent-writes %d: want at least 1", c.maxWriters)
	case c.awsShareWindow < 0 || c.awsShareWindow > aws.MaxShareWindow:
		return nil, fmt.Errorf("-aws-share-window %v: want 0 up to %v", c.awsShareWindow, aws.MaxShareWindow)
	case c.minPollInterval < time.Second:
		return nil, fmt.Errorf("-min-poll-interval %v: want at least 1s", c.minPollInterval)
	}
	if c.startupTaint != "" {
		if err := kube.ValidateTaintKey(c.startupTaint); err != nil {
			return nil, fmt.Errorf("-startup-taint: %w", err)
		}
	}
	return c, nil
}

// envOr returns the environment variable name, or def when it is unset.
func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func newLogger(format, level string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("-log-level %q: %w", level, err)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("-log-format %q: want text or json", format)
}

func runDriver(args []string) error {
	c, err := parseFlags(args)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	log, err := newLogger(c.logFormat, c.logLevel)
	if err != nil {
		return err
	}
	size, err := resource.ParseQuantity(c.tmpfsSize)
	if err != nil || size.Value() <= 0 {
		return fmt.Errorf("-tmpfs-size %q: want a positive quantity such as 8Mi", c.tmpfsSize)
	}
	nodeLimit, err := resource.ParseQuantity(c.nodeVolumeBytes)
	if err != nil || nodeLimit.Value() < 0 {
		return fmt.Errorf("-max-node-volume-bytes %q: want a quantity such as 1Gi, or 0", c.nodeVolumeBytes)
	}
	publishMemory, err := resource.ParseQuantity(c.publishMemory)
	if err != nil || publishMemory.Value() < 0 {
		return fmt.Errorf("-publish-memory %q: want a quantity such as 48Mi, or 0", c.publishMemory)
	}
	var writer volume.Writer = volume.InProcess{}
	if c.volumeMemory == volumeMemoryPod {
		// Fail at start, not at every mount, when pods' cgroups cannot be
		// reached (a missing hostPath of the cgroup file system).
		if _, err := memcg.PodCgroup(c.cgroupRoot, c.kubepods, "0"); errors.Is(err, memcg.ErrNoMemoryController) {
			return fmt.Errorf("-volume-memory=pod: no memory cgroup controller under -cgroup-root %s "+
				"(mount the host's /sys/fs/cgroup there, or set -volume-memory=driver): %w", c.cgroupRoot, err)
		}
		w := &memcg.Writer{Root: c.cgroupRoot, Parent: c.kubepods, Spare: true}
		w.Prestart()
		writer = w
	}
	if os.Getenv("GOGC") == "" {
		// A DaemonSet's memory is paid on every node; a burst of publishes
		// is rare and short. Collect at 50% heap growth instead of 100%.
		debug.SetGCPercent(gcPercent)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		if limit, ok := containerMemoryLimit(); ok {
			// Collect harder as the heap nears the container's limit, so
			// that a burst of publishes is paced by the GC, not ended by
			// the OOM killer; the rest of the limit is the writers' and
			// the runtime's.
			debug.SetMemoryLimit(limit * memLimitPercent / 100)
		}
	}
	socket, err := driver.SocketPath(c.endpoint)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	restCfg, err := kubeConfig(c.kubeconfig)
	if err != nil {
		return err
	}
	restCfg.QPS, restCfg.Burst = float32(c.kubeQPS), int(2*c.kubeQPS)
	restCfg.UserAgent = "podsecrets/" + version
	dyn, err := dynamic.NewForConfig(restCfg)
	if err != nil {
		return err
	}
	region := c.region
	if region == "" {
		if region, err = kube.NodeRegion(ctx, dyn, c.nodeID); err != nil {
			log.Warn("no default region: reading the node's region label failed", logkey.Error, err.Error())
		}
	}
	awsProvider, err := aws.New(aws.Options{
		Region:              region,
		ServiceAccounts:     kube.ServiceAccounts{Client: dyn},
		PodIdentityEndpoint: c.podIdentity,
		ShareWindow:         c.awsShareWindow,
		ReadStrategy:        c.awsReadStrategy,
		Logger:              log.With("provider", "aws"),
	})
	if err != nil {
		return err
	}
	var signals driver.ClassSignaler
	if c.watchClasses {
		meta, err := metadata.NewForConfig(restCfg)
		if err != nil {
			return err
		}
		w := kube.NewClassWatch(meta, log)
		go w.Run(ctx)
		signals = w
	}
	// The driver's writable binds of volumes it rotates: beside its socket,
	// in a directory of its own on the node, so that a restarted driver
	// finds what a killed one left.
	stagingDir := filepath.Join(filepath.Dir(socket), "staging")
	if err := os.MkdirAll(stagingDir, 0o700); err != nil {
		return fmt.Errorf("create staging directory: %w", err)
	}
	providers := provider.NewRegistry(awsProvider)
	if dirs := splitList(c.pluginDirs); len(dirs) > 0 {
		plugins := plugin.NewFinder(plugin.Options{Dirs: dirs, MaxFileBytes: size.Value()})
		defer plugins.Close()
		providers.WithFinder(plugins)
	}
	reg := prometheus.NewRegistry()
	d, err := driver.New(driver.Options{
		NodeID:    c.nodeID,
		Version:   version,
		Providers: providers,
		Classes:   kube.Classes{Client: dyn},
		Volumes: volume.New(volume.Options{
			Mounter:    mount.System{},
			Writer:     writer,
			TmpfsSize:  size.Value(),
			NodeLimit:  nodeLimit.Value(),
			MaxWriters: c.maxWriters,
			// The values of volumes in flight, bounded so that a burst of
			// large volumes cannot take the driver past its memory limit.
			PublishMemory: publishMemory.Value(),
			StagingDir:    stagingDir,
		}),
		Rotation:     &rotation.Tracker{Floor: c.minPollInterval},
		Revisions:    kube.Revisions{Client: dyn},
		Records:      kube.Records{Client: dyn},
		ClassSignals: signals,
		Events:       &kube.Events{Client: dyn, Node: c.nodeID, Logger: log},
		Logger:       log,
		Metrics:      driver.NewMetrics(reg),
	})
	if err != nil {
		return err
	}
	if err := d.Recover(filepath.Join(c.kubeletRoot, "pods")); err != nil {
		return err
	}
	var taint *kube.StartupTaint
	if c.startupTaint != "" {
		taint = kube.NewStartupTaint(dyn, c.nodeID, c.startupTaint, log)
		go taint.Run(ctx)
	}
	return serve(ctx, c, socket, d, reg, taint, log)
}

// containerMemoryLimit reads the memory limit of the driver's own cgroup, as
// its container sees it (cgroup v2 memory.max, v1 memory.limit_in_bytes); no
// limit, or none readable, is false.
func containerMemoryLimit() (int64, bool) {
	for _, p := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		// v1 reports "no limit" as a huge number rounded to pages.
		if err != nil || n <= 0 || n >= 1<<62 {
			return 0, false
		}
		return n, true
	}
	return 0, false
}

func kubeConfig(path string) (*rest.Config, error) {
	if path != "" {
		return clientcmd.BuildConfigFromFlags("", path)
	}
	return rest.InClusterConfig()
}

// serve runs the CSI, registration and HTTP servers until ctx ends. Volumes
// stay mounted on exit: pods keep their secrets across driver restarts. A
// non-nil taint learns of kubelet's registrations.
func serve(ctx context.Context, c *config, socket string, d *driver.Driver, reg *prometheus.Registry, taint *kube.StartupTaint, log *slog.Logger) error {
	errc := make(chan error, 3)
	csiLis, err := driver.ListenUnix(socket)
	if err != nil {
		return fmt.Errorf("listen on CSI endpoint: %w", err)
	}
	csiSrv := driver.NewGRPCServer(d)
	go func() { errc <- csiSrv.Serve(csiLis) }()
	defer csiSrv.GracefulStop()

	regLis, err := driver.ListenUnix(driver.RegistrationSocket(c.kubeletRoot))
	if err != nil {
		return fmt.Errorf("listen on registration socket: %w", err)
	}
	// Ready once kubelet has accepted the plugin: before that, kubelet
	// cannot call it, and pods landing on the node would fail their mounts;
	// the startup taint that kept them off goes then too.
	onStatus := func(registered bool) {
		d.SetReady(registered)
		taint.Registered(registered)
	}
	regSrv := driver.NewRegistrationServer(&driver.Registration{Endpoint: socket, Logger: log, OnStatus: onStatus})
	go func() { errc <- regSrv.Serve(regLis) }()
	defer regSrv.Stop()

	if c.httpAddr != "" {
		hs := &http.Server{Addr: c.httpAddr, Handler: d.HTTPHandler(reg), ReadHeaderTimeout: 5 * time.Second}
		go func() { errc <- hs.ListenAndServe() }()
		defer hs.Close()
	}
	log.Info("podsecrets driver serving", logkey.Version, version, logkey.Node, c.nodeID, logkey.Endpoint, socket, logkey.HTTP, c.httpAddr)
	select {
	case <-ctx.Done():
		log.Info("shutting down; mounted volumes stay in place")
		return nil
	case err := <-errc:
		return err
	}
}

// splitList splits a comma-separated flag value, dropping empty entries.
func splitList(s string) []string {
	var out []string
	for _, e := range strings.Split(s, ",") {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	return out
}
