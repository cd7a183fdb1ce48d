// Command awsfake serves the podsecrets AWS fake (Secrets Manager, SSM, STS
// AssumeRoleWithWebIdentity and the EKS Pod Identity agent endpoint) on one
// HTTP endpoint, for e2e tests and local runs:
//
//	go run ./test/awsfake -addr 127.0.0.1:4566
//
// It starts empty: post a seed document (store.Seed: secrets, parameters,
// roles, the cluster's JWKS, ...) to /_fake/seed. Point SDKs at it with
// AWS_ENDPOINT_URL and, for pod identity,
// AWS_CONTAINER_CREDENTIALS_FULL_URI=http://<addr>/v1/credentials.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/podsecrets/podsecrets/test/awsfake/store"
)

// serve runs the fake on ln until ctx is cancelled.
func serve(ctx context.Context, ln net.Listener, log *slog.Logger) error {
	srv := &http.Server{Handler: store.New(store.Options{Logger: log}).Handler(), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("awsfake listening", "addr", ln.Addr().String())
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(shutCtx)
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("awsfake", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:4566", "listen address")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	return serve(ctx, ln, slog.New(slog.NewTextHandler(stderr, nil)))
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "awsfake:", err)
		os.Exit(1)
	}
}
