package aws

import (
	"context"
	"fmt"
	"regexp"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials/endpointcreds"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/podsecrets/podsecrets/provider"
)

// The identity sources: the token audiences the CSIDriver's tokenRequests must
// list, the IRSA annotation and the Pod Identity agent.
const (
	// AudienceSTS is the audience of the token used for IRSA.
	AudienceSTS = "sts.amazonaws.com"
	// AudiencePodIdentity is the audience of the token used for EKS Pod Identity.
	AudiencePodIdentity = "pods.eks.amazonaws.com"
	// RoleARNAnnotation is the ServiceAccount annotation naming the IRSA role.
	RoleARNAnnotation = "eks.amazonaws.com/role-arn"
	// DefaultPodIdentityEndpoint is the EKS Pod Identity agent's IPv4 endpoint.
	DefaultPodIdentityEndpoint = "http://169.254.170.23/v1/credentials"
	// podIdentityEndpointIPv6 is the agent's IPv6 endpoint
	// (preferredAddressType: ipv6).
	podIdentityEndpointIPv6 = "http://[fd00:ec2::23]/v1/credentials"
)

// refreshBefore is how long before expiry cached credentials are replaced.
const refreshBefore = 5 * time.Minute

// roleARNRE checks an IAM role ARN's shape; validRoleARN checks the length
// of its path and name (1–512) apart, because a counted repetition of 512
// made the expression take 5 ms to compile at every start of the binary,
// which runs again for every volume write (package memcg).
var roleARNRE = regexp.MustCompile(`^arn:[a-z0-9-]+:iam::\d{12}:role/([\w+=,.@/-]+)$`)

func validRoleARN(s string) bool {
	m := roleARNRE.FindStringSubmatch(s)
	return m != nil && len(m[1]) <= 512
}

// identity is the pod identity a Fetch uses: who, and with which token.
type identity struct {
	namespace, serviceAccount, pod string
	podIdentity                    bool
	role                           string // IRSA role ARN
	agent                          string // Pod Identity agent endpoint
	token                          string
}

// String names the identity in messages: the role ARN, or pod identity.
func (id *identity) String() string {
	if id.podIdentity {
		return fmt.Sprintf("pod identity (service account %s/%s)", id.namespace, id.serviceAccount)
	}
	return "role " + id.role
}

// credKey keys the credential cache. It never holds a token.
type credKey struct {
	namespace, serviceAccount, role, region string
}

// credKey is id's key in region: of its credentials and of the store reads
// it shares (see share.go).
func (id *identity) credKey(region string) credKey {
	key := credKey{namespace: id.namespace, serviceAccount: id.serviceAccount, role: id.role, region: region}
	if id.podIdentity {
		key.role = "pod-identity"
	}
	return key
}

// credCache caches credentials per credKey until refreshBefore their
// expiry, and lets concurrent callers for one key share one fetch.
type credCache struct {
	now     func() time.Time
	timeout time.Duration

	mu       sync.Mutex
	entries  map[credKey]aws.Credentials
	inflight map[credKey]*credCall
}

type credCall struct {
	done  chan struct{}
	creds aws.Credentials
	err   error
}

func newCredCache(now func() time.Time, timeout time.Duration) *credCache {
	return &credCache{now: now, timeout: timeout, entries: map[credKey]aws.Credentials{}, inflight: map[credKey]*credCall{}}
}

// fresh reports whether c may be handed out at time now.
func fresh(c aws.Credentials, now time.Time) bool {
	return c.CanExpire && now.Before(c.Expires.Add(-refreshBefore))
}

// get returns cached credentials for key, or runs fetch (once for all
// concurrent callers of the key). cached reports a cache hit. The fetch runs
// detached from any one caller's cancellation, bounded by c.timeout; each
// caller waits no longer than its own ctx.
func (c *credCache) get(ctx context.Context, key credKey, fetch func(context.Context) (aws.Credentials, error)) (creds aws.Credentials, cached bool, err error) {
	c.mu.Lock()
	if cr, ok := c.entries[key]; ok && fresh(cr, c.now()) {
		c.mu.Unlock()
		return cr, true, nil
	}
	call, ok := c.inflight[key]
	if !ok {
		call = &credCall{done: make(chan struct{})}
		c.inflight[key] = call
		go c.run(context.WithoutCancel(ctx), key, call, fetch)
	}
	c.mu.Unlock()

	select {
	case <-call.done:
		return call.creds, false, call.err
	case <-ctx.Done():
		return aws.Credentials{}, false, &kindError{kind: provider.ErrUnavailable, msg: "waiting for credentials: " + ctx.Err().Error(), cause: ctx.Err()}
	}
}

func (c *credCache) run(ctx context.Context, key credKey, call *credCall, fetch func(context.Context) (aws.Credentials, error)) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	creds, err := fetch(ctx)

	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.inflight, key)
	call.creds, call.err = creds, err
	close(call.done)
	if err != nil {
		return
	}
	now := c.now()
	for k, e := range c.entries { // prune what can't be used any more
		if !fresh(e, now) {
			delete(c.entries, k)
		}
	}
	if fresh(creds, now) {
		c.entries[key] = creds
	}
}

// sessionNameRE matches characters STS does not allow in RoleSessionName.
var sessionNameRE = regexp.MustCompile(`[^\w+=,.@-]`)

// sessionName derives an STS RoleSessionName from the pod: CloudTrail shows it.
func sessionName(namespace, pod string) string {
	s := sessionNameRE.ReplaceAllString("podsecrets-"+namespace+"-"+pod, "-")
	if len(s) > 64 {
		s = s[:64]
	}
	return s
}

// resolveIdentity picks the pod's identity for cfg: its token for the right
// audience and, for IRSA, the role from its ServiceAccount.
func (p *Provider) resolveIdentity(ctx context.Context, pod *provider.Pod, cfg *config) (*identity, error) {
	if pod.ServiceAccount == "" || pod.Namespace == "" {
		return nil, &kindError{kind: provider.ErrPermissionDenied, msg: fmt.Sprintf("pod %s/%s: no service account in the request: the CSIDriver needs podInfoOnMount: true", pod.Namespace, pod.Name)}
	}
	id := &identity{namespace: pod.Namespace, serviceAccount: pod.ServiceAccount, pod: pod.Name, podIdentity: cfg.PodIdentity}
	aud := AudienceSTS
	if cfg.PodIdentity {
		aud = AudiencePodIdentity
		id.agent = p.podIdentityEndpoint
		if cfg.IPv6Agent && !p.agentSet {
			id.agent = podIdentityEndpointIPv6
		}
	}
	tok, ok := pod.Tokens[aud]
	if !ok || tok.Value == "" {
		return nil, &kindError{kind: provider.ErrPermissionDenied, msg: fmt.Sprintf(
			"pod %s/%s has no service account token for audience %q: the CSIDriver needs tokenRequests with audience %q",
			pod.Namespace, pod.Name, aud, aud)}
	}
	if !tok.ExpiresAt.IsZero() && !p.now().Before(tok.ExpiresAt) {
		return nil, &kindError{kind: provider.ErrPermissionDenied, msg: fmt.Sprintf(
			"pod %s/%s: the service account token for audience %q expired at %s", pod.Namespace, pod.Name, aud, tok.ExpiresAt.UTC().Format(time.RFC3339))}
	}
	id.token = tok.Value
	if cfg.PodIdentity {
		return id, nil
	}

	sa := pod.Namespace + "/" + pod.ServiceAccount
	if role, ok := p.roles.get(sa, p.now()); ok {
		id.role = role
		return id, nil
	}
	anns, err := p.serviceAccounts.ServiceAccountAnnotations(ctx, pod.Namespace, pod.ServiceAccount)
	if err != nil {
		kind := kindOf(err)
		if kind == nil {
			kind = provider.ErrUnavailable
		}
		return nil, &kindError{kind: kind, msg: fmt.Sprintf("reading service account %s: %v", sa, err), cause: err}
	}
	role := anns[RoleARNAnnotation]
	if role == "" {
		return nil, &kindError{kind: provider.ErrPermissionDenied, msg: fmt.Sprintf(
			"service account %s has no %q annotation: IRSA needs it to name the IAM role (or set usePodIdentity: \"true\")", sa, RoleARNAnnotation)}
	}
	if !validRoleARN(role) {
		return nil, &kindError{kind: provider.ErrInvalid, msg: fmt.Sprintf(
			"service account %s: annotation %q is %q, not an IAM role ARN", sa, RoleARNAnnotation, role)}
	}
	id.role = role
	p.roles.put(sa, role, p.now())
	return id, nil
}

// roleTTL is how long a service account's role annotation is reused. Every
// Fetch needs it, and a rotation check of each volume is a Fetch: without
// reuse 100 pods of a service account cost 100 GETs per poll interval, and a
// burst of 100 mounts 100 GETs at once. IRSA itself applies a changed
// annotation only to pods started after the change, so a new pod waiting up
// to 30 s for it loses nothing a user can rely on.
const roleTTL = 30 * time.Second

// maxRoles bounds the role cache; past it, it starts over.
const maxRoles = 4096

// roleCache remembers the role annotation of service accounts.
type roleCache struct {
	mu sync.Mutex
	m  map[string]roleEntry // "namespace/name" → role
}

type roleEntry struct {
	role string
	at   time.Time
}

func (c *roleCache) get(sa string, now time.Time) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[sa]
	if !ok || now.Sub(e.at) >= roleTTL || now.Before(e.at) {
		return "", false
	}
	return e.role, true
}

func (c *roleCache) put(sa, role string, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= maxRoles {
		c.m = map[string]roleEntry{}
	}
	c.m[sa] = roleEntry{role: role, at: now}
}

// credentials returns AWS credentials for id in region, cached.
func (p *Provider) credentials(ctx context.Context, id *identity, region string) (aws.Credentials, bool, error) {
	key := id.credKey(region)
	token, role, agent, sess := id.token, id.role, id.agent, sessionName(id.namespace, id.pod)
	who := id.String()
	return p.creds.get(ctx, key, func(ctx context.Context) (aws.Credentials, error) {
		if agent != "" {
			return p.podIdentityCredentials(ctx, agent, token, region, who)
		}
		return p.assumeRole(ctx, role, sess, token, region, who)
	})
}

// assumeRole exchanges the pod's token for role credentials with STS.
func (p *Provider) assumeRole(ctx context.Context, role, session, token, region, who string) (aws.Credentials, error) {
	out, err := p.sts.AssumeRoleWithWebIdentity(ctx, &sts.AssumeRoleWithWebIdentityInput{
		RoleArn:          aws.String(role),
		RoleSessionName:  aws.String(session),
		WebIdentityToken: aws.String(token),
	}, func(o *sts.Options) {
		o.Region = region
		o.Credentials = aws.AnonymousCredentials{}
	})
	if err != nil {
		return aws.Credentials{}, storeError(err, "sts AssumeRoleWithWebIdentity", region, who, token)
	}
	c := out.Credentials
	if c == nil || c.AccessKeyId == nil || c.SecretAccessKey == nil {
		return aws.Credentials{}, &kindError{kind: provider.ErrUnavailable, msg: fmt.Sprintf("sts AssumeRoleWithWebIdentity in region %s as %s: response has no credentials", region, who)}
	}
	creds := aws.Credentials{
		AccessKeyID:     aws.ToString(c.AccessKeyId),
		SecretAccessKey: aws.ToString(c.SecretAccessKey),
		SessionToken:    aws.ToString(c.SessionToken),
		Source:          "podsecrets-irsa",
	}
	if c.Expiration != nil {
		creds.CanExpire, creds.Expires = true, *c.Expiration
	}
	return creds, nil
}

// podIdentityCredentials asks the EKS Pod Identity agent for credentials.
func (p *Provider) podIdentityCredentials(ctx context.Context, endpoint, token, region, who string) (aws.Credentials, error) {
	cp := endpointcreds.New(endpoint, func(o *endpointcreds.Options) {
		o.AuthorizationToken = token
		o.HTTPClient = p.agentHTTP
		o.Retryer = p.newRetryer()
	})
	creds, err := cp.Retrieve(ctx)
	if err != nil {
		return aws.Credentials{}, storeError(err, "eks pod identity agent "+endpoint, region, who, token)
	}
	if creds.AccessKeyID == "" || creds.SecretAccessKey == "" {
		return aws.Credentials{}, &kindError{kind: provider.ErrUnavailable, msg: fmt.Sprintf("eks pod identity agent %s as %s: response has no credentials", endpoint, who)}
	}
	creds.Source = "podsecrets-pod-identity"
	return creds, nil
}
