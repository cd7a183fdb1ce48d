// Package store is an AWS-compatible fake of the parts of Secrets Manager,
// SSM Parameter Store, STS and the EKS Pod Identity agent that podsecrets
// talks to.
//
// It exists so tests can exercise the driver against the real aws-sdk-go-v2
// wire protocols (awsJson1.1, awsQuery, the container credential endpoint,
// SigV4 and service-account JWTs) without an AWS account and without an
// emulator we do not control. One Store serves every service on one
// http.Handler; the same Store is also driven directly from Go tests through
// its methods.
//
// The fake is deliberately strict where the driver's correctness depends on
// AWS being strict (signatures, token audiences, role trust, per-resource
// authorization, per-region data, stage/label semantics) and deliberately
// simple elsewhere (no KMS, no resource policies, no replication). AWS's
// account-level request quotas are modelled as token buckets per account,
// region and API, off unless SetQuotas turns them on (quota.go).
package store

import (
	"context"
	"crypto"
	"errors"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultAccountID is the account the fake pretends to be when Options.AccountID
// is empty. It is the documentation account AWS itself uses in examples, so it
// can never collide with a real account in logs.
const DefaultAccountID = "111122223333"

// Options configures a Store. The zero value is usable.
type Options struct {
	// AccountID appears in every ARN the fake mints. Default DefaultAccountID.
	AccountID string
	// Latency is slept at the start of every Secrets Manager, SSM, STS and pod
	// identity call (never control calls), honouring the request context, so
	// tests can observe timeouts and concurrency behaviour. Change it later
	// with SetLatency.
	Latency time.Duration
	// Now is the clock used for token validity, credential expiry and
	// timestamps, so tests can expire things without sleeping. Default time.Now.
	Now func() time.Time
	// Logger receives one record per AWS call (operation, region, caller
	// role, outcome). Secret values and tokens are never logged. Nil discards.
	Logger *slog.Logger
}

// Fault describes injected failures, used to test the driver's retry and
// error paths.
type Fault struct {
	// Rate is the fraction (0..1) of calls that fail. 1 fails every call
	// deterministically; 0 disables the fault.
	Rate float64
	// Code is the AWS error code returned. "ThrottlingException" (the default
	// when empty) is answered with HTTP 400 as AWS does; codes starting with
	// "Internal" (e.g. "InternalServiceError") with HTTP 500.
	Code string
}

// Fault codes understood by SetFault.
const (
	FaultThrottling = "ThrottlingException"
	FaultInternal   = "InternalServiceError"
)

// Sentinel errors returned (wrapped) by the data methods so tests can branch
// with errors.Is without parsing messages.
var (
	// ErrNotFound reports a missing secret, secret version, parameter or
	// parameter version.
	ErrNotFound = errors.New("not found")
	// ErrInvalid reports an argument AWS would reject (bad label, bad stage
	// move, bad type, malformed ARN, ...).
	ErrInvalid = errors.New("invalid argument")
)

// Store is the fake's state: secrets and parameters per region, IAM roles,
// pod identity associations, trusted token keys, issued credentials, call
// counters and fault settings. All methods are safe for concurrent use.
type Store struct {
	accountID string
	now       func() time.Time
	log       *slog.Logger

	latency atomic.Int64 // nanoseconds

	faultMu sync.Mutex
	faults  map[string]Fault

	callMu    sync.Mutex
	calls     map[string]int
	throttles map[string]int // calls answered as over their quota

	quota quotaState

	// mu guards everything below.
	mu          sync.RWMutex
	secrets     map[string]map[string]*secret    // region -> name -> secret
	params      map[string]map[string]*parameter // region -> name -> parameter
	roles       map[string]Role                  // role ARN -> role
	podIdentity map[string]string                // "ns/sa" -> role ARN
	keys        map[string]crypto.PublicKey      // kid -> key
	anonKeys    []crypto.PublicKey               // keys published without kid
	creds       map[string]*issuedCred           // access key ID -> credentials
	issued      int

	jwksMu        sync.Mutex
	jwksSource    func(ctx context.Context) ([]byte, error)
	lastJWKSFetch time.Time
}

// New returns an empty Store.
func New(opts Options) *Store {
	s := &Store{
		accountID:   opts.AccountID,
		now:         opts.Now,
		log:         opts.Logger,
		faults:      map[string]Fault{},
		calls:       map[string]int{},
		throttles:   map[string]int{},
		secrets:     map[string]map[string]*secret{},
		params:      map[string]map[string]*parameter{},
		roles:       map[string]Role{},
		podIdentity: map[string]string{},
		keys:        map[string]crypto.PublicKey{},
		creds:       map[string]*issuedCred{},
	}
	if s.accountID == "" {
		s.accountID = DefaultAccountID
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.latency.Store(int64(opts.Latency))
	return s
}

// AccountID returns the account used in minted ARNs.
func (s *Store) AccountID() string { return s.accountID }

// SetLatency changes the per-call latency (see Options.Latency); 0 disables it.
func (s *Store) SetLatency(d time.Duration) { s.latency.Store(int64(d)) }

// Latency returns the current per-call latency.
func (s *Store) Latency() time.Duration { return time.Duration(s.latency.Load()) }

// SetFault injects failures into calls for region ("" = every region, and the
// only setting that applies to STS and pod identity calls, which carry no
// region). A region-specific fault takes precedence over the "" one. A Rate
// of 0 clears the setting for that region.
func (s *Store) SetFault(region string, f Fault) {
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	if f.Rate <= 0 {
		delete(s.faults, region)
		return
	}
	if f.Rate > 1 {
		f.Rate = 1
	}
	if f.Code == "" {
		f.Code = FaultThrottling
	}
	s.faults[region] = f
}

func (s *Store) faultFor(region string) (Fault, bool) {
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	if f, ok := s.faults[region]; ok && region != "" {
		return f, true
	}
	f, ok := s.faults[""]
	return f, ok
}

// Calls returns how many times op was called since the last ResetCalls,
// including calls that failed or were answered with an injected fault. op is
// "<service>.<Operation>" with service one of "secretsmanager", "ssm", "sts"
// (e.g. "ssm.GetParameters"), or "eks-auth.PodIdentity" for the pod identity
// credential endpoint.
func (s *Store) Calls(op string) int {
	s.callMu.Lock()
	defer s.callMu.Unlock()
	return s.calls[op]
}

// CallCounts returns a snapshot of every non-zero counter.
func (s *Store) CallCounts() map[string]int {
	s.callMu.Lock()
	defer s.callMu.Unlock()
	return maps.Clone(s.calls)
}

// ResetCalls zeroes every counter, the throttle counters included.
func (s *Store) ResetCalls() {
	s.callMu.Lock()
	defer s.callMu.Unlock()
	clear(s.calls)
	clear(s.throttles)
}

func (s *Store) count(op string) {
	s.callMu.Lock()
	s.calls[op]++
	s.callMu.Unlock()
}

// begin is the common preamble of every counted AWS call: count it, take a
// token from account's quota for op in region (when quotas are on), sleep the
// configured latency (without holding any lock; a throttled call costs a
// round trip too), then answer throttling or roll for a fault.
func (s *Store) begin(ctx context.Context, op, account, region string) *apiError {
	s.count(op)
	admitted := s.admit(op, account, region)
	if d := s.Latency(); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return &apiError{status: http.StatusServiceUnavailable, code: "RequestCanceled", msg: "client went away during injected latency"}
		}
	}
	if !admitted {
		s.countThrottle(op)
		return throttleError(op)
	}
	if f, ok := s.faultFor(region); ok && (f.Rate >= 1 || rand.Float64() < f.Rate) {
		return faultError(f.Code)
	}
	return nil
}

func faultError(code string) *apiError {
	if code == "" {
		code = FaultThrottling
	}
	e := &apiError{status: http.StatusBadRequest, code: code, msg: "Rate exceeded"}
	if len(code) >= len("Internal") && code[:len("Internal")] == "Internal" {
		e.status = http.StatusInternalServerError
		e.msg = "An error occurred on the server side (injected fault)."
	}
	return e
}

// apiError is an AWS error as it goes on the wire, and also the error type
// returned by the data methods (wrapping ErrNotFound/ErrInvalid).
type apiError struct {
	status int
	code   string
	msg    string
	kind   error
}

func (e *apiError) Error() string { return e.code + ": " + e.msg }
func (e *apiError) Unwrap() error { return e.kind }

func notFound(code, msg string) *apiError {
	return &apiError{status: http.StatusBadRequest, code: code, msg: msg, kind: ErrNotFound}
}

func invalid(code, msg string) *apiError {
	return &apiError{status: http.StatusBadRequest, code: code, msg: msg, kind: ErrInvalid}
}

func sortedKeys[M ~map[string]V, V any](m M) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
