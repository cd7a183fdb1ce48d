package driver

import (
	"context"
	"errors"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/podsecrets/podsecrets/kube"
	"github.com/podsecrets/podsecrets/memcg"
	"github.com/podsecrets/podsecrets/provider"
	"github.com/podsecrets/podsecrets/volume"
)

// codeOf is the one place errors become gRPC codes; everything below the RPC
// edge returns plain wrapped errors.
//
// The request's own end (context.DeadlineExceeded, context.Canceled) is
// checked before Unavailable: a fetch that ran out of kubelet's time or was
// canceled says so, whatever its last store error was; and after the kinds
// that are an answer (invalid, not found, denied), which stay true however
// late they came. A store call's own timeout while the request still had
// time is the store being slow: Unavailable, retryable. The provider
// contract tells the two apart (provider.Provider.Fetch): a provider's
// error wraps a context error only when the request's context ended.
func codeOf(err error) codes.Code {
	var inv *invalidArgument
	switch {
	case err == nil:
		return codes.OK
	case errors.As(err, &inv), errors.Is(err, provider.ErrInvalid):
		return codes.InvalidArgument
	case errors.Is(err, kube.ErrClassNotFound), errors.Is(err, provider.ErrNotFound):
		return codes.NotFound
	case errors.Is(err, kube.ErrClassInvalid), errors.Is(err, volume.ErrForeign), errors.Is(err, memcg.ErrNoPodCgroup):
		return codes.FailedPrecondition
	case errors.Is(err, provider.ErrPermissionDenied):
		return codes.PermissionDenied
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		return codes.Canceled
	case errors.Is(err, provider.ErrUnavailable):
		return codes.Unavailable
	case errors.Is(err, volume.ErrTooLarge), errors.Is(err, memcg.ErrPodMemory), errors.Is(err, unix.ENOSPC):
		return codes.ResourceExhausted
	}
	return codes.Internal
}

// toStatus turns err into the gRPC status kubelet shows in pod events.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	return status.Error(codeOf(err), err.Error())
}
