package driver

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"

	"github.com/podsecrets/podsecrets/kube"
	"github.com/podsecrets/podsecrets/provider"
)

func TestSocketPath(t *testing.T) {
	tests := map[string]struct {
		in, want string
		wantErr  bool
	}{
		"unix scheme": {in: "unix:///csi/csi.sock", want: "/csi/csi.sock"},
		"unix opaque": {in: "unix:/csi/csi.sock", want: "/csi/csi.sock"},
		"bare path":   {in: "/csi/csi.sock", want: "/csi/csi.sock"},
		"tcp":         {in: "tcp://127.0.0.1:10000", wantErr: true},
		"relative":    {in: "unix://csi.sock", wantErr: true},
		"empty":       {in: "", wantErr: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := SocketPath(tc.in)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Fatalf("SocketPath(%q) = %q, %v", tc.in, got, err)
			}
		})
	}
}

// TestRegistration plays kubelet's plugin watcher against the registration
// socket.
func TestRegistration(t *testing.T) {
	root := t.TempDir()
	sock := RegistrationSocket(root)
	if want := filepath.Join(root, "plugins_registry", "csi.podsecrets.dev-reg.sock"); sock != want {
		t.Fatalf("registration socket %s, want %s", sock, want)
	}
	var statuses []bool
	lis, err := ListenUnix(sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := NewRegistrationServer(&Registration{Endpoint: "/var/lib/kubelet/plugins/x/csi.sock", Logger: discardLogger(),
		OnStatus: func(ok bool) { statuses = append(statuses, ok) }})
	go srv.Serve(lis)
	defer srv.Stop()
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := registerapi.NewRegistrationClient(conn)
	info, err := c.GetInfo(context.Background(), &registerapi.InfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if info.Type != registerapi.CSIPlugin || info.Name != Name || info.Endpoint != "/var/lib/kubelet/plugins/x/csi.sock" ||
		len(info.SupportedVersions) != 1 || info.SupportedVersions[0] != "1.0.0" {
		t.Fatalf("GetInfo = %v", info)
	}
	for _, ok := range []bool{true, false} {
		if _, err := c.NotifyRegistrationStatus(context.Background(), &registerapi.RegistrationStatus{PluginRegistered: ok}); err != nil {
			t.Fatal(err)
		}
	}
	if fmt.Sprint(statuses) != "[true false]" {
		t.Fatalf("statuses seen %v", statuses)
	}
}

func TestIdentityAndNodeInfo(t *testing.T) {
	h := newHarness(t)
	info, err := h.identity.GetPluginInfo(context.Background(), &csi.GetPluginInfoRequest{})
	if err != nil || info.Name != "csi.podsecrets.dev" || info.VendorVersion != "test" {
		t.Fatalf("GetPluginInfo = %v, %v", info, err)
	}
	caps, err := h.identity.GetPluginCapabilities(context.Background(), &csi.GetPluginCapabilitiesRequest{})
	if err != nil || len(caps.Capabilities) != 0 {
		t.Fatalf("GetPluginCapabilities = %v, %v; want none (node-only)", caps, err)
	}
	for _, ready := range []bool{false, true} {
		h.driver.SetReady(ready)
		p, err := h.identity.Probe(context.Background(), &csi.ProbeRequest{})
		if err != nil || p.Ready.GetValue() != ready {
			t.Fatalf("Probe = %v, %v; want ready=%v", p, err, ready)
		}
		rec := httptest.NewRecorder()
		h.driver.HTTPHandler(h.registry).ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
		if (rec.Code == 200) != ready {
			t.Fatalf("/readyz = %d with ready=%v", rec.Code, ready)
		}
	}
	rec := httptest.NewRecorder()
	h.driver.HTTPHandler(h.registry).ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
	if rec.Code != 200 {
		t.Fatalf("/healthz = %d", rec.Code)
	}
	ni, err := h.node.NodeGetInfo(context.Background(), &csi.NodeGetInfoRequest{})
	if err != nil || ni.NodeId != "node-1" {
		t.Fatalf("NodeGetInfo = %v, %v", ni, err)
	}
	nc, err := h.node.NodeGetCapabilities(context.Background(), &csi.NodeGetCapabilitiesRequest{})
	if err != nil || len(nc.Capabilities) != 1 || nc.Capabilities[0].GetRpc().GetType() != csi.NodeServiceCapability_RPC_VOLUME_MOUNT_GROUP {
		t.Fatalf("NodeGetCapabilities = %v, %v; want only VOLUME_MOUNT_GROUP", nc, err)
	}
	_, err = h.node.NodeStageVolume(context.Background(), &csi.NodeStageVolumeRequest{})
	wantCode(t, err, codes.Unimplemented)
}

func TestCodeOf(t *testing.T) {
	tests := map[string]struct {
		err  error
		want codes.Code
	}{
		"nil":             {nil, codes.OK},
		"invalid request": {invalid("x"), codes.InvalidArgument},
		"invalid params":  {fmt.Errorf("a: %w", provider.ErrInvalid), codes.InvalidArgument},
		"class missing":   {fmt.Errorf("a: %w", kube.ErrClassNotFound), codes.NotFound},
		"object missing":  {fmt.Errorf("a: %w", provider.ErrNotFound), codes.NotFound},
		"class invalid":   {fmt.Errorf("a: %w", kube.ErrClassInvalid), codes.FailedPrecondition},
		"denied":          {fmt.Errorf("a: %w", provider.ErrPermissionDenied), codes.PermissionDenied},
		"unavailable":     {fmt.Errorf("a: %w", provider.ErrUnavailable), codes.Unavailable},
		"deadline":        {fmt.Errorf("a: %w", context.DeadlineExceeded), codes.DeadlineExceeded},
		"canceled":        {context.Canceled, codes.Canceled},
		// A provider's error wraps a context error only when the
		// request's own context ended: that wins over Unavailable, not
		// over an answer.
		"unavailable, then the request's deadline": {fmt.Errorf("a: %w", errors.Join(provider.ErrUnavailable, context.DeadlineExceeded)), codes.DeadlineExceeded},
		"unavailable, then the request canceled":   {fmt.Errorf("a: %w", errors.Join(provider.ErrUnavailable, context.Canceled)), codes.Canceled},
		"not found, late":                          {fmt.Errorf("a: %w", errors.Join(provider.ErrNotFound, context.DeadlineExceeded)), codes.NotFound},
		"other":                                    {errors.New("disk on fire"), codes.Internal},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := codeOf(tc.err); got != tc.want {
				t.Fatalf("codeOf(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}
