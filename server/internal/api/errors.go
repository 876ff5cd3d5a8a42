package api

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
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
	case errors.Is(err, store.ErrFull):
		return storageStatus("STORAGE_FULL", "the server's storage is full: nothing was stored; retry later (a send with the same client_msg_id is stored at most once)")
	case errors.Is(err, store.ErrCorrupt):
		return storageStatus("STORAGE_DAMAGED", "the server's database is damaged and its operator must repair it: nothing was stored; retry later (a send with the same client_msg_id is stored at most once)")
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

// storageStatus is UNAVAILABLE for a fault of the server's storage, with a
// google.rpc.ErrorInfo detail whose reason tells the faults apart. Not
// INTERNAL (a bug) nor DATA_LOSS (which clients read as final): the request
// may be retried, and succeeds once the operator has freed space or
// restored the database.
func storageStatus(reason, msg string) *status.Status {
	st := status.New(codes.Unavailable, msg)
	if withInfo, err := st.WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: "parley.chat"}); err == nil {
		return withInfo
	}
	return st
}

// fail is the error a handler returns for err: its status, or for an
// unexpected error an internalError that the edge logs (logInternal).
func fail(err error) error {
	st := statusOf(err)
	if st.Code() == codes.Internal {
		return &internalError{cause: err}
	}
	return st.Err()
}

// internalError is an unexpected error on its way to a client, who sees
// only INTERNAL "internal error"; its cause is for the server's log.
type internalError struct{ cause error }

func (e *internalError) Error() string { return "internal error" }
func (e *internalError) Unwrap() error { return e.cause }

// GRPCStatus is the status grpc-go sends for e.
func (e *internalError) GRPCStatus() *status.Status {
	return status.New(codes.Internal, "internal error")
}

// logInternal logs, once per failed call or frame, an INTERNAL answer and
// its cause: the error that was mapped to it, never a request's contents.
func (s *Service) logInternal(method string, err error) {
	if status.Code(err) != codes.Internal {
		return
	}
	var ie *internalError
	if errors.As(err, &ie) {
		err = ie.cause
	}
	s.log.Error("answered INTERNAL", "method", method, "cause", err)
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
