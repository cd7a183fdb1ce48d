// Package store is an AWS-compatible fake of exactly the calls podsecrets
// sends: Secrets Manager GetSecretValue, BatchGetSecretValue and
// DescribeSecret, SSM GetParameters, STS AssumeRoleWithWebIdentity and the
// EKS Pod Identity agent's credentials endpoint.
//
// It exists so tests can exercise the driver against the real aws-sdk-go-v2
// wire protocols (awsJson1.1, awsQuery, the container credential endpoint,
// SigV4 and service-account JWTs) without an AWS account and without an
// emulator we do not control. One Store serves every service on one
// http.Handler.
//
// Tests write the store's state one way: in process through its methods
// (CreateSecret, PutParameter, AddRole, SetFault, ...), out of process by
// posting a Seed document, which maps onto the same methods, to PathSeed.
//
// The fake is strict where the driver's correctness depends on AWS being
// strict (signatures, token audiences and expiry, role trust, per-resource
// authorization, per-region data, stage and label semantics) and absent
// elsewhere. AWS's account-level request quotas are modelled as token
// buckets per region and API, off unless SetQuotas turns them on (quota.go).
package store

import (
	"context"
	"crypto/rsa"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/http"
	"strings"
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
	// Now is the clock used for token validity, credential expiry and quota
	// buckets, so tests can expire things without sleeping. Default time.Now.
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
	Rate float64 `json:"rate"`
	// Code is the AWS error code returned. FaultThrottling (the default when
	// empty) is answered with HTTP 400 as AWS does; codes starting with
	// "Internal" with HTTP 500.
	Code string `json:"code,omitempty"`
}

// Fault codes understood by SetFault.
const (
	FaultThrottling = "ThrottlingException"
	FaultInternal   = "InternalServiceError"
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
	keys        map[string]*rsa.PublicKey        // kid -> trusted token key
	creds       map[string]*issuedCred           // access key ID -> credentials
	issued      int
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
		keys:        map[string]*rsa.PublicKey{},
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
	return s
}

// SetLatency makes every AWS call (never a control call) wait d before it is
// answered, honouring the request context, so tests can observe timeouts and
// concurrency; 0 disables it.
func (s *Store) SetLatency(d time.Duration) { s.latency.Store(int64(d)) }

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
	f.Rate = min(f.Rate, 1)
	if f.Code == "" {
		f.Code = FaultThrottling
	}
	s.faults[region] = f
}

func (s *Store) faultFor(region string) (Fault, bool) {
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	if f, ok := s.faults[region]; ok {
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

// begin is the common preamble of every counted AWS call: count it, take a
// token from the quota for op in region (when quotas are on), wait the
// configured latency (without holding any lock; a throttled call costs a
// round trip too), then answer throttling or roll for a fault.
func (s *Store) begin(ctx context.Context, op, region string) *apiError {
	s.callMu.Lock()
	s.calls[op]++
	s.callMu.Unlock()
	admitted := s.admit(op, region)
	if d := time.Duration(s.latency.Load()); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return &apiError{http.StatusServiceUnavailable, "RequestCanceled", "client went away during injected latency"}
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
	if strings.HasPrefix(code, "Internal") {
		return &apiError{http.StatusInternalServerError, code, "An error occurred on the server side (injected fault)."}
	}
	return &apiError{http.StatusBadRequest, code, "Rate exceeded"}
}

// apiError is an AWS error as it goes on the wire; the Go methods return it
// too.
type apiError struct {
	status int
	code   string
	msg    string
}

func (e *apiError) Error() string { return e.code + ": " + e.msg }

func badRequest(code, msg string) *apiError {
	return &apiError{http.StatusBadRequest, code, msg}
}
