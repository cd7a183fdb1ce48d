package aws

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	smithy "github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/podsecrets/podsecrets/provider"
)

// httpErr wraps an API error the way the SDK does, with an HTTP status.
func httpErr(status int, code, msg string) error {
	return &smithy.OperationError{ServiceID: "Secrets Manager", OperationName: "GetSecretValue", Err: &awshttp.ResponseError{
		ResponseError: &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: &http.Response{StatusCode: status}},
			Err: &smithy.GenericAPIError{Code: code, Message: msg}},
		RequestID: "req-1",
	}}
}

func TestDescribeErr(t *testing.T) {
	tests := map[string]struct {
		err  error
		kind error
		code string
	}{
		"AccessDeniedException":                    {err: httpErr(400, "AccessDeniedException", "no"), kind: provider.ErrPermissionDenied, code: "AccessDeniedException"},
		"STS AccessDenied":                         {err: httpErr(403, "AccessDenied", "no"), kind: provider.ErrPermissionDenied, code: "AccessDenied"},
		"InvalidIdentityToken":                     {err: httpErr(400, "InvalidIdentityToken", "bad"), kind: provider.ErrPermissionDenied, code: "InvalidIdentityToken"},
		"ExpiredTokenException":                    {err: httpErr(400, "ExpiredTokenException", "old"), kind: provider.ErrPermissionDenied, code: "ExpiredTokenException"},
		"KMS decryption":                           {err: httpErr(400, "DecryptionFailure", "kms"), kind: provider.ErrPermissionDenied, code: "DecryptionFailure"},
		"ResourceNotFoundException":                {err: httpErr(400, "ResourceNotFoundException", "x"), kind: provider.ErrNotFound, code: "ResourceNotFoundException"},
		"ParameterNotFound":                        {err: httpErr(400, "ParameterNotFound", "x"), kind: provider.ErrNotFound, code: "ParameterNotFound"},
		"ParameterVersionNotFound":                 {err: httpErr(400, "ParameterVersionNotFound", "x"), kind: provider.ErrNotFound, code: "ParameterVersionNotFound"},
		"InvalidParameters in a body":              {err: &apiError{code: "InvalidParameters", message: "x"}, kind: provider.ErrNotFound, code: "InvalidParameters"},
		"ThrottlingException":                      {err: httpErr(400, "ThrottlingException", "slow down"), kind: provider.ErrUnavailable, code: "ThrottlingException"},
		"InternalServiceError":                     {err: httpErr(500, "InternalServiceError", "oops"), kind: provider.ErrUnavailable, code: "InternalServiceError"},
		"unknown 503":                              {err: httpErr(503, "Whatever", "x"), kind: provider.ErrUnavailable, code: "Whatever"},
		"unknown 429":                              {err: httpErr(429, "Whatever", "x"), kind: provider.ErrUnavailable, code: "Whatever"},
		"validation":                               {err: httpErr(400, "ValidationException", "x"), kind: provider.ErrInvalid, code: "ValidationException"},
		"secret scheduled for deletion in a batch": {err: &apiError{code: "InvalidRequestException", message: "marked for deletion"}, kind: provider.ErrInvalid, code: "InvalidRequestException"},
		"throttled in a batch":                     {err: &apiError{code: "ThrottlingException", message: "x"}, kind: provider.ErrUnavailable, code: "ThrottlingException"},
		"deadline":                                 {err: fmt.Errorf("op: %w", context.DeadlineExceeded), kind: provider.ErrUnavailable, code: "Timeout"},
		"canceled":                                 {err: fmt.Errorf("op: %w", context.Canceled), kind: provider.ErrUnavailable, code: "Canceled"},
		"network":                                  {err: &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}, kind: provider.ErrUnavailable, code: "NetworkError"},
		"anything else":                            {err: errors.New("weird"), kind: provider.ErrUnavailable, code: "Error"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			kind, code, text := describeErr(tc.err)
			if kind != tc.kind || code != tc.code || text == "" {
				t.Errorf("describeErr = %v, %q, %q; want %v, %q", kind, code, text, tc.kind, tc.code)
			}
		})
	}
}

func TestStoreErrorRedactsAndWraps(t *testing.T) {
	cause := httpErr(400, "InvalidIdentityToken", "token eyJhbGciOi.secret.sig is bad")
	err := storeError(cause, "sts AssumeRoleWithWebIdentity", east, "role "+roleWeb, "eyJhbGciOi.secret.sig")
	if strings.Contains(err.Error(), "eyJhbGciOi") {
		t.Errorf("token not redacted: %v", err)
	}
	want := "sts AssumeRoleWithWebIdentity in region us-east-1 as role " + roleWeb + ": InvalidIdentityToken: token [redacted] is bad"
	if err.Error() != want {
		t.Errorf("error = %q\nwant    %q", err, want)
	}
	var ae smithy.APIError
	if !errors.Is(err, provider.ErrPermissionDenied) || !errors.As(err, &ae) || ae.ErrorCode() != "InvalidIdentityToken" {
		t.Errorf("error does not wrap its kind and cause: %v", err)
	}
}

// TestNoValueIsInternal: a read no call finished is this provider's bug,
// which the driver reports as Internal: it wraps no provider kind, and the
// failover wrapping keeps it so.
func TestNoValueIsInternal(t *testing.T) {
	err := noValue(`secretsmanager "db" (objects[0])`)
	if got, want := err.Error(), `secretsmanager "db" (objects[0]): no value was fetched`; got != want {
		t.Errorf("message %q, want %q", got, want)
	}
	for _, k := range []error{provider.ErrInvalid, provider.ErrNotFound, provider.ErrPermissionDenied, provider.ErrUnavailable} {
		if errors.Is(err, k) {
			t.Errorf("%v wraps %v", err, k)
		}
	}
	if kindOf(err) != errInternal {
		t.Errorf("kindOf(%v) = %v, want errInternal", err, kindOf(err))
	}
}

func TestContextErr(t *testing.T) {
	// A store call that hit its own timeout, as storeError builds it.
	callTimeout := storeError(fmt.Errorf("operation error: %w", context.DeadlineExceeded), `secretsmanager "db"`, east, "role r")
	denied := storeError(httpErr(400, "AccessDeniedException", "no"), `secretsmanager "db"`, east, "role r")
	live := context.Background()
	expired, cancel := context.WithTimeout(live, -1)
	defer cancel()
	canceled, cancel := context.WithCancel(live)
	cancel()
	tests := map[string]struct {
		ctx     context.Context
		err     error
		kind    error
		want    error // the context error it wraps, if any
		sameErr bool  // returned as is
	}{
		"call timeout, the request alive": {ctx: live, err: callTimeout, kind: provider.ErrUnavailable},
		"call timeout, request deadline":  {ctx: expired, err: callTimeout, kind: provider.ErrUnavailable, want: context.DeadlineExceeded, sameErr: true},
		"call timeout, request canceled":  {ctx: canceled, err: callTimeout, kind: provider.ErrUnavailable, want: context.Canceled},
		"denied, the request alive":       {ctx: live, err: denied, kind: provider.ErrPermissionDenied, sameErr: true},
		"denied, request deadline":        {ctx: expired, err: denied, kind: provider.ErrPermissionDenied, want: context.DeadlineExceeded},
		"bug, request canceled":           {ctx: canceled, err: noValue("x"), kind: errInternal, want: context.Canceled},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := contextErr(tc.ctx, tc.err)
			if got.Error() != tc.err.Error() {
				t.Errorf("message %q, want %q", got, tc.err)
			}
			if kindOf(got) != tc.kind {
				t.Errorf("kind %v, want %v", kindOf(got), tc.kind)
			}
			for _, c := range []error{context.DeadlineExceeded, context.Canceled} {
				if errors.Is(got, c) != (c == tc.want) {
					t.Errorf("%v: wraps %v = %v, want %v", got, c, errors.Is(got, c), c == tc.want)
				}
			}
			if tc.sameErr && got != tc.err {
				t.Errorf("rebuilt an error that was right as it was")
			}
		})
	}
}
