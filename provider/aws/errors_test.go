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
