// Package sanity runs the CSI community's conformance suite, csi-sanity,
// against the real gRPC server of the driver.
package sanity

import (
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/kubernetes-csi/csi-test/v5/pkg/sanity"
	"github.com/onsi/ginkgo/v2"
	"github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"

	"github.com/podsecrets/podsecrets/driver"
	"github.com/podsecrets/podsecrets/kube"
	"github.com/podsecrets/podsecrets/mount"
	"github.com/podsecrets/podsecrets/provider"
	"github.com/podsecrets/podsecrets/provider/fake"
	"github.com/podsecrets/podsecrets/volume"
)

// skipped lists the csi-sanity specs that cannot apply to a node-only driver.
// Every other spec must pass; nothing in the driver knows about these tests.
var skipped = []string{
	// podsecrets has no controller service (GetPluginCapabilities does not
	// advertise CONTROLLER_SERVICE): there is nothing to provision.
	"Controller Server",
	// This spec creates its volume with CreateVolume, a controller call, and
	// does not skip itself when the controller service is absent.
	"should remove target path",
}

func TestSanity(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "csi.sock")
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{kube.ClassGVR: "SecretProviderClassList"})
	d, err := driver.New(driver.Options{
		NodeID:    "sanity-node",
		Version:   "sanity",
		Providers: provider.NewRegistry(&fake.Provider{}),
		Classes:   kube.Classes{Client: dyn},
		Volumes:   volume.New(volume.Options{Mounter: mount.System{}, TmpfsSize: 1 << 20}),
		Logger:    slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	d.SetReady(true)
	lis, err := driver.ListenUnix(sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := driver.NewGRPCServer(d)
	go srv.Serve(lis)
	defer srv.Stop()

	cfg := sanity.NewTestConfig()
	cfg.Address = "unix://" + sock
	cfg.TargetPath = filepath.Join(dir, "target")
	cfg.StagingPath = filepath.Join(dir, "staging")
	sc := sanity.GinkgoTest(&cfg)
	gomega.RegisterFailHandler(ginkgo.Fail)
	suite, reporter := ginkgo.GinkgoConfiguration()
	reporter.NoColor = true
	suite.SkipStrings = append(suite.SkipStrings, skipped...)
	ginkgo.RunSpecs(t, "podsecrets csi-sanity", suite, reporter)
	sc.Finalize()
}
