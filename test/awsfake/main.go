// Command awsfake serves the podsecrets AWS fake (Secrets Manager, SSM, STS
// AssumeRoleWithWebIdentity and the EKS Pod Identity agent endpoint) on one
// HTTP endpoint, for e2e tests and local runs:
//
//	go run ./test/awsfake -addr 127.0.0.1:4566 -seed seed.json -jwks-file jwks.json
//
// Point SDKs at it with AWS_ENDPOINT_URL (or the per-service variants) and,
// for pod identity, AWS_CONTAINER_CREDENTIALS_FULL_URI=http://<addr>/v1/credentials.
// Tests drive it at runtime through the /_fake/ control endpoints.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/podsecrets/podsecrets/test/awsfake/store"
)

type config struct {
	addr           string
	seed           string
	latency        time.Duration
	faultRate      float64
	faultCode      string
	jwksFile       string
	jwksURL        string
	jwksCA         string
	jwksBearerFile string
	accountID      string
	quotaScale     float64
}

func parseFlags(args []string, out io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("awsfake", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&c.addr, "addr", "127.0.0.1:4566", "listen address")
	fs.StringVar(&c.seed, "seed", "", "JSON seed file (secrets, parameters, roles, podIdentity, jwks)")
	fs.DurationVar(&c.latency, "latency", 0, "latency injected into every AWS call")
	fs.Float64Var(&c.faultRate, "fault-rate", 0, "fraction (0..1) of AWS calls answered with -fault-code")
	fs.StringVar(&c.faultCode, "fault-code", store.FaultThrottling, "injected error: ThrottlingException (HTTP 400) or InternalServiceError (HTTP 500)")
	fs.StringVar(&c.jwksFile, "jwks-file", "", "JWKS file of trusted service-account token keys")
	fs.StringVar(&c.jwksURL, "jwks-url", "", "JWKS URL (e.g. https://kubernetes.default.svc/openid/v1/jwks), fetched at start and on unknown kid")
	fs.StringVar(&c.jwksCA, "jwks-ca", "", "PEM CA bundle for -jwks-url")
	fs.StringVar(&c.jwksBearerFile, "jwks-bearer-file", "", "file holding a bearer token for -jwks-url (re-read on every fetch)")
	fs.StringVar(&c.accountID, "account-id", store.DefaultAccountID, "AWS account ID used in ARNs")
	fs.Float64Var(&c.quotaScale, "quota-scale", 0, "enforce AWS's default request quotas per account and region, scaled by this factor "+
		"(0.01: BatchGetSecretValue 1/s), answering ThrottlingException over them; 0 disables")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	switch {
	case fs.NArg() > 0:
		return c, fmt.Errorf("unexpected arguments: %v", fs.Args())
	case c.latency < 0:
		return c, errors.New("-latency must not be negative")
	case c.quotaScale < 0:
		return c, errors.New("-quota-scale must not be negative")
	case c.faultRate < 0 || c.faultRate > 1:
		return c, errors.New("-fault-rate must be within 0..1")
	case c.faultCode != store.FaultThrottling && c.faultCode != store.FaultInternal:
		return c, fmt.Errorf("-fault-code must be %s or %s", store.FaultThrottling, store.FaultInternal)
	case (c.jwksCA != "" || c.jwksBearerFile != "") && c.jwksURL == "":
		return c, errors.New("-jwks-ca and -jwks-bearer-file need -jwks-url")
	case len(c.accountID) != 12 || strings.Trim(c.accountID, "0123456789") != "":
		return c, errors.New("-account-id must be 12 digits")
	}
	return c, nil
}

// jwksFetcher returns a function fetching the JWKS URL with the configured CA
// and bearer token (re-read each time: projected tokens rotate).
func jwksFetcher(c config) (func(context.Context) ([]byte, error), error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if c.jwksCA != "" {
		pem, err := os.ReadFile(c.jwksCA)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s: no PEM certificates", c.jwksCA)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	return func(ctx context.Context) ([]byte, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.jwksURL, nil)
		if err != nil {
			return nil, err
		}
		if c.jwksBearerFile != "" {
			tok, err := os.ReadFile(c.jwksBearerFile)
			if err != nil {
				return nil, err
			}
			req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
		}
		req.Header.Set("Accept", "application/jwk-set+json, application/json")
		resp, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("GET %s: %s", c.jwksURL, resp.Status)
		}
		return body, nil
	}, nil
}

func newStore(ctx context.Context, c config, log *slog.Logger) (*store.Store, error) {
	s := store.New(store.Options{AccountID: c.accountID, Latency: c.latency, Logger: log})
	if c.quotaScale > 0 {
		s.SetQuotas(store.QuotaConfig{Scale: c.quotaScale})
	}
	if c.faultRate > 0 {
		s.SetFault("", store.Fault{Rate: c.faultRate, Code: c.faultCode})
	}
	if c.seed != "" {
		b, err := os.ReadFile(c.seed)
		if err != nil {
			return nil, err
		}
		if err := s.LoadSeed(b); err != nil {
			return nil, fmt.Errorf("%s: %w", c.seed, err)
		}
	}
	if c.jwksFile != "" {
		b, err := os.ReadFile(c.jwksFile)
		if err != nil {
			return nil, err
		}
		if err := s.TrustJWKS(b); err != nil {
			return nil, fmt.Errorf("%s: %w", c.jwksFile, err)
		}
	}
	if c.jwksURL != "" {
		fetch, err := jwksFetcher(c)
		if err != nil {
			return nil, err
		}
		s.SetJWKSSource(fetch)
		// The API server may not be reachable yet; unknown kids retry later.
		if b, err := fetch(ctx); err != nil {
			log.Error("initial JWKS fetch failed; will retry on unknown key IDs", "url", c.jwksURL, "error", err)
		} else if err := s.TrustJWKS(b); err != nil {
			log.Error("initial JWKS unusable", "url", c.jwksURL, "error", err)
		}
	}
	return s, nil
}

// serve runs the fake on ln until ctx is cancelled.
func serve(ctx context.Context, c config, ln net.Listener, log *slog.Logger) error {
	s, err := newStore(ctx, c, log)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("awsfake listening", "addr", ln.Addr().String(), "account", s.AccountID())
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
	c, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	ln, err := net.Listen("tcp", c.addr)
	if err != nil {
		return err
	}
	return serve(ctx, c, ln, log)
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
