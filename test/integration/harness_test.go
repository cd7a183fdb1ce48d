package integration

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/podsecrets/podsecrets/driver"
)

// requireRoot skips tests that publish: they mount a real tmpfs.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("publishing mounts a real tmpfs, which needs root")
	}
}

// serve runs the real CSI server of opts on a socket in dir and returns a
// client of it, as kubelet holds one.
func serve(t *testing.T, dir string, opts driver.Options) csi.NodeClient {
	t.Helper()
	d, err := driver.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "csi.sock")
	lis, err := driver.ListenUnix(sock)
	if err != nil {
		t.Fatal(err)
	}
	gs := driver.NewGRPCServer(d)
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return csi.NewNodeClient(conn)
}

// kubeletRequest is what kubelet sends for pod default/<pod> with an inline
// volume of class below root, its target's parent made and the target
// unmounted at the end of the test; the caller adds tokens and secrets.
func kubeletRequest(t *testing.T, root, pod, class, fsGroup string) *csi.NodePublishVolumeRequest {
	t.Helper()
	parent := filepath.Join(root, "pods", pod, "volumes", "kubernetes.io~csi", "secrets")
	if err := os.MkdirAll(parent, 0o750); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(parent, "mount")
	t.Cleanup(func() { unix.Unmount(target, unix.MNT_DETACH) })
	return &csi.NodePublishVolumeRequest{
		VolumeId:   "csi-" + pod,
		TargetPath: target,
		VolumeCapability: &csi.VolumeCapability{
			AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{VolumeMountGroup: fsGroup}},
			AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY},
		},
		VolumeContext: map[string]string{
			"secretProviderClass":                    class,
			"csi.storage.k8s.io/ephemeral":           "true",
			"csi.storage.k8s.io/pod.name":            pod,
			"csi.storage.k8s.io/pod.namespace":       "default",
			"csi.storage.k8s.io/pod.uid":             "uid-" + pod,
			"csi.storage.k8s.io/serviceAccount.name": "app",
		},
	}
}
