package api

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/parleychat/parley/server/internal/auth"
	"github.com/parleychat/parley/server/internal/hub"
	"github.com/parleychat/parley/server/internal/store"
)

// errInvalid marks a request that fails validation; its text is the status message.
var errInvalid = errors.New("invalid argument")

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errInvalid}, args...)...)
}

// statusOf maps an error from any layer to the gRPC status a client sees.
// It is the one place where errors become codes.
func statusOf(err error) *status.Status {
	if s, ok := status.FromError(err); ok {
		return s
	}
	var code codes.Code
	switch {
	case errors.Is(err, errInvalid):
		return status.New(codes.InvalidArgument, trimPrefix(err.Error(), errInvalid.Error()+": "))
	case errors.Is(err, store.ErrRoomNotFound):
		code = codes.NotFound
	case errors.Is(err, store.ErrRoomExists):
		code = codes.AlreadyExists
	case errors.Is(err, hub.ErrAlreadyJoined), errors.Is(err, hub.ErrNotJoined):
		code = codes.FailedPrecondition
	case errors.Is(err, hub.ErrAfterSeqBeyondHead):
		code = codes.OutOfRange
	case errors.Is(err, hub.ErrTooManyRooms), errors.Is(err, hub.ErrSlowConsumer):
		code = codes.ResourceExhausted
	case errors.Is(err, auth.ErrNoToken), errors.Is(err, auth.ErrExpired), errors.Is(err, auth.ErrInvalid):
		code = codes.Unauthenticated
	case errors.Is(err, store.ErrUnavailable):
		return status.New(codes.Unavailable, "message store unavailable: the request may not have been carried out; retry (a send with the same client_msg_id is stored at most once)")
	case errors.Is(err, store.ErrClosed), errors.Is(err, errShuttingDown):
		code = codes.Unavailable
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	default:
		return status.New(codes.Internal, "internal error")
	}
	return status.New(code, err.Error())
}

func trimPrefix(s, prefix string) string {
	if len(s) >= len(prefix) && s[:len(prefix)] == prefix {
		return s[len(prefix):]
	}
	return s
}

// roomNotFound is the answer for a room the caller cannot see: one that
// does not exist, or a private or direct room they are not a member of.
// It must not depend on which.
func roomNotFound(name string) error {
	if isDirectRoomName(name) {
		return status.Errorf(codes.NotFound, "room %q does not exist or is not yours; a direct room begins with the first message to the user (SendMessage with to_user)", name)
	}
	return status.Errorf(codes.NotFound, "room %q does not exist, or it is private and you are not a member; create it, or ask its creator to add you", name)
}

// errShuttingDown ends streams when the server drains.
var errShuttingDown = errors.New("server shutting down, reconnect")

func statusErrorf(c codes.Code, format string, args ...any) error {
	return status.Errorf(c, format, args...)
}
