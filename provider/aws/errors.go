package aws

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws/retry"
	smithy "github.com/aws/smithy-go"

	"github.com/podsecrets/podsecrets/provider"
)

// kindError is an error with a controlled message that wraps one of the
// provider error kinds and, optionally, its cause. Its message is built only
// from names, codes and store messages: never values or tokens. The cause is
// kept for errors.As (e.g. smithy.APIError) but not printed.
type kindError struct {
	kind  error
	msg   string
	cause error
}

func (e *kindError) Error() string { return e.msg }

func (e *kindError) Unwrap() []error {
	if e.cause == nil {
		return []error{e.kind}
	}
	return []error{e.kind, e.cause}
}

// errInternal is the kind of a bug of this provider. It is none of the
// provider kinds, so the driver reports codes.Internal: a retry meets the
// same bug, and ErrUnavailable would send the user to look at a store that
// is fine.
var errInternal = errors.New("internal error")

// kindOf returns the provider error kind (or errInternal) err wraps, or nil.
func kindOf(err error) error {
	for _, k := range []error{provider.ErrInvalid, provider.ErrNotFound, provider.ErrPermissionDenied, provider.ErrUnavailable, errInternal} {
		if errors.Is(err, k) {
			return k
		}
	}
	return nil
}

var (
	deniedCodes = map[string]bool{
		"AccessDenied": true, "AccessDeniedException": true, "UnauthorizedOperation": true,
		"UnrecognizedClientException": true, "InvalidClientTokenId": true, "InvalidSignatureException": true,
		"SignatureDoesNotMatch": true, "ExpiredToken": true, "ExpiredTokenException": true,
		"InvalidIdentityToken": true, "IDPRejectedClaim": true, "InvalidIdentityTokenException": true,
		"RegionDisabledException": true, "PackedPolicyTooLarge": true, "MissingAuthenticationToken": true,
		// Secrets Manager: the role may not use the secret's KMS key.
		"DecryptionFailure": true, "KMSAccessDeniedException": true,
	}
	notFoundCodes = map[string]bool{
		"ResourceNotFoundException": true, "ParameterNotFound": true, "ParameterVersionNotFound": true,
		"InvalidParameters": true, "ParameterVersionLabelNotFound": true,
	}
	unavailableCodes = map[string]bool{
		"Throttling": true, "ThrottlingException": true, "ThrottledException": true, "TooManyRequestsException": true,
		"RequestThrottled": true, "RequestThrottledException": true, "RequestLimitExceeded": true,
		"ProvisionedThroughputExceededException": true, "SlowDown": true, "PriorRequestNotComplete": true,
		"BandwidthLimitExceeded": true, "EC2ThrottledException": true, "LimitExceededException": true,
		"InternalServiceError": true, "InternalServiceErrorException": true, "InternalFailure": true,
		"InternalServerError": true, "InternalError": true, "ServiceUnavailable": true, "ServiceUnavailableException": true,
		"IDPCommunicationError": true, "RequestTimeout": true, "RequestTimeoutException": true,
	}
)

// classifyCode maps an AWS error code (and HTTP status, 0 if unknown) to an
// error kind.
func classifyCode(code string, status int) error {
	switch {
	case deniedCodes[code] || strings.HasPrefix(code, "AccessDenied"):
		return provider.ErrPermissionDenied
	case notFoundCodes[code]:
		return provider.ErrNotFound
	case unavailableCodes[code] || status >= 500 || status == 429:
		return provider.ErrUnavailable
	case status == 401 || status == 403:
		return provider.ErrPermissionDenied
	case status == 404:
		return provider.ErrNotFound
	case status >= 400:
		return provider.ErrInvalid
	case status == 0 && code != "":
		// An error reported inside a response (BatchGetSecretValue's
		// Errors) with a code not listed above, e.g. InvalidRequestException
		// for a secret scheduled for deletion: a client-side problem that
		// another region won't fix.
		return provider.ErrInvalid
	}
	return provider.ErrUnavailable
}

// describeErr returns the kind of an error from an AWS call and a short
// description ("Code: message") that is safe to show: redact lists strings
// (tokens) that must not appear in it.
func describeErr(err error, redact ...string) (kind error, code, text string) {
	var status int
	var hs interface{ HTTPStatusCode() int }
	if errors.As(err, &hs) {
		status = hs.HTTPStatusCode()
	}
	var ae smithy.APIError
	var ne net.Error
	switch {
	case errors.As(err, &ae):
		code = ae.ErrorCode()
		text = code
		if m := ae.ErrorMessage(); m != "" {
			text += ": " + m
		}
		kind = classifyCode(code, status)
	case errors.Is(err, context.DeadlineExceeded):
		code, text, kind = "Timeout", "timed out: "+err.Error(), provider.ErrUnavailable
	case errors.Is(err, context.Canceled):
		code, text, kind = "Canceled", "canceled: "+err.Error(), provider.ErrUnavailable
	case errors.As(err, &ne):
		code, text, kind = "NetworkError", err.Error(), provider.ErrUnavailable
	default:
		code, text, kind = "Error", err.Error(), provider.ErrUnavailable
		if status != 0 {
			kind = classifyCode("", status)
		}
	}
	for _, r := range redact {
		if r != "" {
			text = strings.ReplaceAll(text, r, "[redacted]")
		}
	}
	if len(text) > 1024 {
		text = text[:1024] + "…"
	}
	return kind, code, text
}

// storeError builds the error of a failed AWS call. what names the call and
// its objects, e.g. `secretsmanager object "db" (objects[0])`; who names the
// identity.
func storeError(err error, what, region, who string, redact ...string) error {
	kind, _, text := describeErr(err, redact...)
	return &kindError{
		kind:  kind,
		msg:   fmt.Sprintf("%s in region %s as %s: %s", what, region, who, text),
		cause: err,
	}
}

// storeErrorThen is storeError for a read that failed with err and whose
// fallback call op then failed with then: err's kind, both errors' texts.
func storeErrorThen(err error, what, region, who, op string, then error) error {
	kind, _, text := describeErr(err)
	_, _, thenText := describeErr(then)
	return &kindError{
		kind:  kind,
		msg:   fmt.Sprintf("%s in region %s as %s: %s; then %s: %s", what, region, who, text, op, thenText),
		cause: err,
	}
}

// isThrottle reports whether err, from a store call whose SDK retries are
// spent, says the account's request quota is exceeded: the codes the SDK
// itself retries as throttles, or HTTP 429.
func isThrottle(err error) bool {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		if _, ok := retry.DefaultThrottleErrorCodes[ae.ErrorCode()]; ok {
			return true
		}
	}
	var hs interface{ HTTPStatusCode() int }
	return errors.As(err, &hs) && hs.HTTPStatusCode() == 429
}

// apiError is an AWS error reported inside a successful response (the
// per-secret Errors of BatchGetSecretValue, the InvalidParameters of
// GetParameters).
type apiError struct {
	code, message string
}

func (e *apiError) Error() string                 { return e.code + ": " + e.message }
func (e *apiError) ErrorCode() string             { return e.code }
func (e *apiError) ErrorMessage() string          { return e.message }
func (e *apiError) ErrorFault() smithy.ErrorFault { return smithy.FaultUnknown }

// contextErr is err, the error of a Fetch whose context is ctx, made to
// wrap a context error exactly when ctx ended, and then ctx's own. The
// driver reports context.DeadlineExceeded and context.Canceled ahead of
// ErrUnavailable (see provider.Provider), and only the request running out
// of time or being canceled deserves that. A store call's own timeout (the
// call timeout, or a detached shared read's, see share.go) is the store
// being slow while the request still had time: it stays ErrUnavailable,
// which a retry may fix, although the SDK's error wraps
// context.DeadlineExceeded. The rebuilt error keeps err's kind and message
// but not the rest of its chain, which only the driver reads, by kind.
func contextErr(ctx context.Context, err error) error {
	end := ctx.Err()
	if errors.Is(err, context.DeadlineExceeded) == (end == context.DeadlineExceeded) &&
		errors.Is(err, context.Canceled) == (end == context.Canceled) {
		return err
	}
	kind := kindOf(err)
	if kind == nil {
		kind = provider.ErrUnavailable
	}
	return &kindError{kind: kind, msg: err.Error(), cause: end}
}
