// Command pluginfake serves the conformance plugin (package pluginfake) on a
// unix socket, as its own process, the way a real plugin runs beside the
// driver. Its objects come from a seed file (JSON, pluginfake.Seed) read at
// every Mount, so a test changes them by rewriting the file; answer "crash"
// exits the process mid-call.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

	"google.golang.org/grpc"

	"github.com/podsecrets/podsecrets/provider/plugin/v1alpha1"
	"github.com/podsecrets/podsecrets/test/pluginfake"
)

func main() {
	socket := flag.String("socket", "", "unix socket to serve, e.g. /var/run/secrets-store-csi-providers/fake.sock")
	seedFile := flag.String("seed", "", "JSON seed file (pluginfake.Seed), read at every Mount")
	flag.Parse()
	if *socket == "" || *seedFile == "" {
		fmt.Fprintln(os.Stderr, "pluginfake: -socket and -seed are required")
		os.Exit(2)
	}
	srv := &pluginfake.Server{
		Load: func() (pluginfake.Seed, error) {
			var s pluginfake.Seed
			b, err := os.ReadFile(*seedFile)
			if err != nil {
				return s, err
			}
			return s, json.Unmarshal(b, &s)
		},
		Crash: func() {
			fmt.Fprintln(os.Stderr, "pluginfake: crashing mid-call, as scripted")
			os.Exit(3)
		},
	}
	_ = os.Remove(*socket)
	l, err := net.Listen("unix", *socket)
	if err != nil {
		fmt.Fprintln(os.Stderr, "pluginfake:", err)
		os.Exit(1)
	}
	g := grpc.NewServer()
	v1alpha1.RegisterCSIDriverProviderServer(g, srv)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sig
		g.Stop()
	}()
	fmt.Fprintln(os.Stderr, "pluginfake: serving", *socket)
	if err := g.Serve(l); err != nil {
		fmt.Fprintln(os.Stderr, "pluginfake:", err)
		os.Exit(1)
	}
}
