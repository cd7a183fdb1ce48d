package driver

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"

	"github.com/podsecrets/podsecrets/internal/logkey"
)

// SocketPath returns the file system path of a CSI endpoint given as
// "unix:///path", "unix:/path" or a bare path.
func SocketPath(endpoint string) (string, error) {
	p := endpoint
	switch {
	case strings.HasPrefix(p, "unix://"):
		p = strings.TrimPrefix(p, "unix://")
	case strings.HasPrefix(p, "unix:"):
		p = strings.TrimPrefix(p, "unix:")
	case strings.Contains(p, "://"):
		return "", fmt.Errorf("endpoint %q: only unix sockets are supported", endpoint)
	}
	if !filepath.IsAbs(p) {
		return "", fmt.Errorf("endpoint %q: want an absolute socket path", endpoint)
	}
	return p, nil
}

// ListenUnix listens on the unix socket path, replacing a stale socket left
// by a previous run (the driver restarts in place under a DaemonSet).
func ListenUnix(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("remove stale socket %s: %w", path, err)
	}
	return net.Listen("unix", path)
}

// NewGRPCServer returns a gRPC server with the Identity and Node services of
// d registered.
func NewGRPCServer(d *Driver) *grpc.Server {
	s := grpc.NewServer()
	csi.RegisterIdentityServer(s, d)
	csi.RegisterNodeServer(s, d)
	return s
}

// Registration answers kubelet's plugin watcher, standing in for the
// node-driver-registrar sidecar: one process fewer per node.
type Registration struct {
	registerapi.UnimplementedRegistrationServer
	// Endpoint is the CSI socket path as kubelet (on the host) sees it.
	Endpoint string
	// Logger receives kubelet's verdict.
	Logger *slog.Logger
	// OnStatus, if set, is told whether kubelet accepted the plugin.
	OnStatus func(registered bool)
}

// GetInfo implements the kubelet plugin registration API.
func (r *Registration) GetInfo(context.Context, *registerapi.InfoRequest) (*registerapi.PluginInfo, error) {
	return &registerapi.PluginInfo{
		Type:              registerapi.CSIPlugin,
		Name:              Name,
		Endpoint:          r.Endpoint,
		SupportedVersions: []string{"1.0.0"},
	}, nil
}

// NotifyRegistrationStatus implements the kubelet plugin registration API.
func (r *Registration) NotifyRegistrationStatus(_ context.Context, st *registerapi.RegistrationStatus) (*registerapi.RegistrationStatusResponse, error) {
	if st.PluginRegistered {
		r.Logger.Info("registered with kubelet", logkey.Endpoint, r.Endpoint)
	} else {
		r.Logger.Error("kubelet rejected the plugin registration", logkey.Error, st.Error)
	}
	if r.OnStatus != nil {
		r.OnStatus(st.PluginRegistered)
	}
	return &registerapi.RegistrationStatusResponse{}, nil
}

// RegistrationSocket is where kubelet's plugin watcher looks for us.
func RegistrationSocket(kubeletRoot string) string {
	return filepath.Join(kubeletRoot, "plugins_registry", Name+"-reg.sock")
}

// NewRegistrationServer returns a gRPC server answering kubelet's plugin
// watcher for r.
func NewRegistrationServer(r *Registration) *grpc.Server {
	s := grpc.NewServer()
	registerapi.RegisterRegistrationServer(s, r)
	return s
}

// HTTPHandler serves /healthz (the process answers), /readyz (the driver can
// serve kubelet) and /metrics from gatherer.
func (d *Driver) HTTPHandler(gatherer prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !d.Ready() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))
	return mux
}
