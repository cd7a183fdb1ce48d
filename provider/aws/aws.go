// Package aws is the provider for AWS Secrets Manager and SSM Parameter Store.
//
// It accepts the SecretProviderClass parameters of the incumbent AWS provider
// (objects, region, failoverRegion, pathTranslation, usePodIdentity) and
// fetches every object with the pod's own identity: IRSA (the pod's token for
// audience sts.amazonaws.com and the role named by its ServiceAccount's
// eks.amazonaws.com/role-arn annotation) or EKS Pod Identity (the pod's token
// for audience pods.eks.amazonaws.com, sent to the node's agent). The node's
// own AWS credentials are never used.
//
// Secrets Manager objects at AWSCURRENT are fetched with parallel
// GetSecretValue calls or BatchGetSecretValue (20 per call), whichever uses
// less of its quota (see ReadStrategy), other versions with GetSecretValue,
// and SSM parameters with GetParameters (10 per call), all in parallel.
// Fetches of one identity on the node share their reads (see
// Options.ShareWindow).
package aws

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go/logging"

	"github.com/podsecrets/podsecrets/internal/logkey"
	"github.com/podsecrets/podsecrets/provider"
)

// Name is the SecretProviderClass spec.provider value of this provider.
const Name = "aws"

const (
	// defaultMaxConcurrency bounds one Fetch's parallel calls. Current
	// secrets are read one call each (quota headroom, see strategy.go), so
	// the bound must cover a volume's secrets for the mount to stay one
	// round trip: 8 made a 10-secret volume two.
	defaultMaxConcurrency = 32
	// defaultCallTimeout bounds one store or STS call, SDK retries included.
	defaultCallTimeout = 20 * time.Second
	// defaultFetchTimeout bounds a whole Fetch, failover included, well inside
	// kubelet's 2-minute deadline for a CSI call.
	defaultFetchTimeout = 100 * time.Second
	retryMaxAttempts    = 3
)

// Options configure the provider; cmd wires them.
type Options struct {
	// Region is the driver's default region (from a flag, AWS_REGION or the
	// node's topology label, resolved by cmd), used when a class has no
	// region parameter.
	Region string
	// ServiceAccounts reads the pod's ServiceAccount annotations (the IRSA
	// role ARN). Required.
	ServiceAccounts ServiceAccountGetter
	// PodIdentityEndpoint is the EKS Pod Identity agent's credentials URL;
	// default DefaultPodIdentityEndpoint.
	PodIdentityEndpoint string
	// EndpointURL, if set, is the endpoint of Secrets Manager, SSM and STS
	// alike, overriding the AWS_ENDPOINT_URL* environment variables (which
	// are honoured otherwise). It is a hook for tests and for private
	// endpoints.
	EndpointURL string
	// HTTPClient is shared by all SDK clients and the Pod Identity agent
	// client; optional.
	HTTPClient *http.Client
	// Logger receives debug and info lines; optional. It never receives
	// secret values or tokens.
	Logger *slog.Logger
	// Now is the clock of the credential cache; optional.
	Now func() time.Time
	// MaxConcurrency bounds the parallel store calls of one Fetch; default 32.
	MaxConcurrency int
	// ShareWindow is how long a value read for one Fetch is reused by
	// Fetches of the same identity (namespace, service account, role,
	// region) needing the same object, after it arrived; such Fetches also
	// wait for a read already in flight instead of calling. 0 shares
	// nothing: every Fetch reads for itself. At most MaxShareWindow; cmd
	// defaults it to DefaultShareWindow.
	ShareWindow time.Duration
	// ReadStrategy selects the API of current Secrets Manager values;
	// default ReadByQuota.
	ReadStrategy ReadStrategy
	// Quotas are the account's request quotas ReadByQuota weighs reads
	// against; zero fields take AWS's defaults.
	Quotas Quotas

	// retryer, if set, replaces the standard retryer (tests use one without
	// backoff delays).
	retryer func() aws.Retryer
	// callTimeout, if set, replaces defaultCallTimeout.
	callTimeout time.Duration
	// onShare, if set, is told how each Fetch's reads were split into
	// owned, waited for and reused (tests).
	onShare func(owned, waited, reused int)
}

// ServiceAccountGetter reads ServiceAccounts.
type ServiceAccountGetter interface {
	// ServiceAccountAnnotations returns the annotations of ServiceAccount
	// namespace/name. Errors may wrap a provider error kind; others are
	// treated as provider.ErrUnavailable.
	ServiceAccountAnnotations(ctx context.Context, namespace, name string) (map[string]string, error)
}

// Provider fetches secrets from AWS Secrets Manager and SSM Parameter Store.
// It is safe for concurrent use.
type Provider struct {
	serviceAccounts     ServiceAccountGetter
	podIdentityEndpoint string
	agentSet            bool // PodIdentityEndpoint was set explicitly
	agentHTTP           *http.Client
	log                 *slog.Logger
	now                 func() time.Time
	maxConcurrency      int
	callTimeout         time.Duration
	newRetryer          func() aws.Retryer
	strategy            ReadStrategy
	quotas              Quotas
	share               *shareTable // nil: reads are not shared
	versions            *versionTable
	roles               roleCache

	sm     *secretsmanager.Client
	ssm    *ssm.Client
	sts    *sts.Client
	creds  *credCache
	parsed parseCache
}

var _ provider.Provider = (*Provider)(nil)

// noCredentials is the credentials provider of the shared SDK config: every
// call must set the pod's credentials, so using it is a bug that fails
// loudly instead of falling back to the node's credentials.
type noCredentials struct{}

func (noCredentials) Retrieve(context.Context) (aws.Credentials, error) {
	return aws.Credentials{}, errors.New("podsecrets: no pod credentials set for this call")
}

// New returns a provider, or an error naming the option it refuses. It
// builds the one SDK configuration all calls share instead of loading one:
// no shared config or credential files, no credential source (IMDS,
// environment, SSO) but the pod's own per call, and of the environment
// only the endpoint variables, unless Options.EndpointURL is set.
func New(opts Options) (*Provider, error) {
	if opts.ServiceAccounts == nil {
		return nil, errors.New("aws: Options.ServiceAccounts is required")
	}
	if opts.Region != "" && !validRegion(opts.Region) {
		return nil, fmt.Errorf("aws: default region %q is not a region code", opts.Region)
	}
	if opts.ShareWindow < 0 || opts.ShareWindow > MaxShareWindow {
		return nil, fmt.Errorf("aws: Options.ShareWindow %v: want 0 (no sharing) up to %v", opts.ShareWindow, MaxShareWindow)
	}
	if _, ok := readStrategyNames[opts.ReadStrategy]; !ok {
		return nil, fmt.Errorf("aws: Options.ReadStrategy %v: want ReadByQuota or ReadBatch", opts.ReadStrategy)
	}
	quotas, err := opts.Quotas.withDefaults()
	if err != nil {
		return nil, err
	}
	p := &Provider{
		parsed:              parseCache{region: opts.Region},
		serviceAccounts:     opts.ServiceAccounts,
		podIdentityEndpoint: opts.PodIdentityEndpoint,
		agentSet:            opts.PodIdentityEndpoint != "",
		log:                 opts.Logger,
		now:                 opts.Now,
		maxConcurrency:      opts.MaxConcurrency,
		callTimeout:         opts.callTimeout,
		newRetryer:          opts.retryer,
		strategy:            opts.ReadStrategy,
		quotas:              quotas,
	}
	if opts.ShareWindow > 0 {
		p.share = newShareTable(opts.ShareWindow, opts.onShare)
	}
	if p.podIdentityEndpoint == "" {
		p.podIdentityEndpoint = DefaultPodIdentityEndpoint
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	if p.now == nil {
		p.now = time.Now
	}
	if p.maxConcurrency <= 0 {
		p.maxConcurrency = defaultMaxConcurrency
	}
	if p.callTimeout <= 0 {
		p.callTimeout = defaultCallTimeout
	}
	if p.newRetryer == nil {
		p.newRetryer = func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) { o.MaxAttempts = retryMaxAttempts })
		}
	}
	p.agentHTTP = opts.HTTPClient
	if p.agentHTTP == nil {
		// The agent is link-local: never reach it through a proxy.
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.Proxy = nil
		p.agentHTTP = &http.Client{Transport: tr}
	}

	// The SDK configuration is built here rather than loaded: the loader
	// would read the node's shared config and credential files and link
	// every credential source (SSO, IMDS, ...) into the binary, none of
	// which the driver may use. Only the endpoint variables are honoured.
	httpClient := aws.HTTPClient(awshttp.NewBuildableClient())
	if opts.HTTPClient != nil {
		httpClient = opts.HTTPClient
	}
	cfg := aws.Config{
		Credentials:      noCredentials{},
		HTTPClient:       httpClient,
		Retryer:          p.newRetryer,
		RetryMaxAttempts: retryMaxAttempts,
		RetryMode:        aws.RetryModeStandard,
		Logger:           logging.Nop{},
	}
	endpoint := func(serviceEnv string) *string {
		if opts.EndpointURL != "" {
			return aws.String(opts.EndpointURL)
		}
		return endpointFromEnv(serviceEnv)
	}
	p.sm = secretsmanager.NewFromConfig(cfg, func(o *secretsmanager.Options) { o.BaseEndpoint = endpoint("SECRETS_MANAGER") })
	p.ssm = ssm.NewFromConfig(cfg, func(o *ssm.Options) { o.BaseEndpoint = endpoint("SSM") })
	p.sts = sts.NewFromConfig(cfg, func(o *sts.Options) { o.BaseEndpoint = endpoint("STS") })
	p.creds = newCredCache(p.now, p.callTimeout)
	p.versions = newVersionTable(p.now)
	return p, nil
}

// endpointFromEnv reads the SDK's standard endpoint variables for one
// service: AWS_ENDPOINT_URL_<SERVICE>, else AWS_ENDPOINT_URL, unless
// AWS_IGNORE_CONFIGURED_ENDPOINT_URLS is true. Nil means the service's
// regional endpoint.
func endpointFromEnv(service string) *string {
	if strings.EqualFold(os.Getenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"), "true") {
		return nil
	}
	for _, v := range []string{"AWS_ENDPOINT_URL_" + service, "AWS_ENDPOINT_URL"} {
		if u := os.Getenv(v); u != "" {
			return aws.String(u)
		}
	}
	return nil
}

// Name returns "aws".
func (p *Provider) Name() string { return Name }

// CanPin implements provider.Pinner: a pinned object is read by its
// VersionId or version label (see pin.go).
func (p *Provider) CanPin() bool { return true }

// Fetch returns every file of the volume described by req, fetched with the
// pod's identity, or an error wrapping a provider error kind. With a
// failoverRegion, the failover region is tried only when the primary region
// fails with a retryable (provider.ErrUnavailable) error. An error wraps
// ctx's error when ctx ended, and no context error otherwise (see
// contextErr).
func (p *Provider) Fetch(ctx context.Context, req *provider.Request) (*provider.Response, error) {
	if req == nil {
		return nil, invalidf("no request")
	}
	start := time.Now()
	cfg, err := p.parsed.get(req.Parameters, req.Class)
	if err != nil {
		return nil, err
	}
	if len(cfg.Ignored) > 0 {
		p.log.Debug("aws: ignoring unknown parameters", logkey.Class, req.Class, logkey.Keys, cfg.Ignored)
	}

	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultFetchTimeout)
		defer cancel()
	}
	resp, err := p.fetch(ctx, req, cfg, start)
	if err != nil {
		return nil, contextErr(ctx, err)
	}
	return resp, nil
}

// fetch reads the volume with the pod's identity from cfg's region and,
// when that fails with a retryable error, from its failover region.
func (p *Provider) fetch(ctx context.Context, req *provider.Request, cfg *config, start time.Time) (*provider.Response, error) {
	region := cfg.Region
	logArgs := []any{logkey.Class, req.Class, logkey.Namespace, req.Pod.Namespace, logkey.Pod, req.Pod.Name}
	id, err := p.resolveIdentity(ctx, &req.Pod, cfg)
	if err != nil {
		p.log.Debug("aws: no identity", append(logArgs, logkey.Error, err.Error())...)
		return nil, err
	}
	logArgs = append(logArgs, logkey.Identity, id.String())

	resp, err := p.fetchRegion(ctx, id, cfg, region, false, req)
	if err == nil {
		p.log.Debug("aws: fetched", append(logArgs, logkey.Region, region, logkey.ObjectCount, len(cfg.Objects), logkey.DurationMS, ms(time.Since(start)))...)
		return withClassWarnings(req, cfg, resp), nil
	}
	if cfg.FailoverRegion == "" || !errors.Is(err, provider.ErrUnavailable) || ctx.Err() != nil {
		p.log.Debug("aws: fetch failed", append(logArgs, logkey.Region, region, logkey.Error, err.Error())...)
		return nil, err
	}
	p.log.Info("aws: primary region failed, trying the failover region", append(logArgs, logkey.Region, region, logkey.FailoverRegion, cfg.FailoverRegion, logkey.Error, err.Error())...)
	resp, ferr := p.fetchRegion(ctx, id, cfg, cfg.FailoverRegion, true, req)
	if ferr != nil {
		kind := kindOf(ferr)
		if kind == nil {
			kind = provider.ErrUnavailable
		}
		ferr = &kindError{kind: kind, msg: fmt.Sprintf("%v (after region %s failed: %v)", ferr, region, err), cause: ferr}
		p.log.Debug("aws: fetch failed", append(logArgs, logkey.Region, cfg.FailoverRegion, logkey.Error, ferr.Error())...)
		return nil, ferr
	}
	p.log.Debug("aws: fetched from the failover region", append(logArgs, logkey.Region, cfg.FailoverRegion, logkey.ObjectCount, len(cfg.Objects), logkey.DurationMS, ms(time.Since(start)))...)
	return withClassWarnings(req, cfg, resp), nil
}

// withClassWarnings adds the class's own warnings (unknown keys) to a
// publish's: the pod gets them once, at its publish, and its rotation
// checks, whose warnings the driver also puts on the pod, repeat only their
// own (an optional object gone), not one event per interval for a typo.
func withClassWarnings(req *provider.Request, cfg *config, resp *provider.Response) *provider.Response {
	if req.Held == nil {
		resp.Warnings = append(cfg.warnings(req.Class), resp.Warnings...)
	}
	return resp
}

// fetchRegion fetches the whole volume from one region: with req.Held, a
// rotation check that reuses what did not change (see check.go); with
// req.Pin, at a revision's recorded versions (see pin.go).
func (p *Provider) fetchRegion(ctx context.Context, id *identity, cfg *config, region string, failover bool, req *provider.Request) (*provider.Response, error) {
	f, err := p.newFetcher(ctx, id, region, failover)
	if err != nil {
		return nil, err
	}
	objs := cfg.Objects
	if !failover {
		objs = pinObjects(objs, req.Pin, region)
	}
	out, err := f.run(ctx, objs, req.Held)
	if err != nil {
		return nil, err
	}
	return buildResponse(objs, out, region, failover, req.Class)
}

// newFetcher gets id's credentials in region and a fetcher that reads
// with them.
func (p *Provider) newFetcher(ctx context.Context, id *identity, region string, failover bool) (*fetcher, error) {
	creds, cached, err := p.credentials(ctx, id, region)
	if err != nil {
		return nil, err
	}
	p.log.Debug("aws: credentials", logkey.Identity, id.String(), logkey.Region, region, logkey.Cached, cached)
	return &fetcher{p: p, region: region, who: id.String(), id: id.credKey(region), creds: creds, failover: failover}, nil
}

// ms renders a duration for logs in milliseconds, the unit logkey.DurationMS
// names.
func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
