package api

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/parleychat/parley/server/internal/auth"
	"github.com/parleychat/parley/server/internal/hub"
	"github.com/parleychat/parley/server/internal/store"
)

// The service's own errors. Handlers wrap the first seven with errorf, so a
// client reads the text that follows the sentinel's; statusOf gives each
// its code.
var (
	errInvalid         = errors.New("invalid argument")    // INVALID_ARGUMENT
	errNotFound        = errors.New("not found")           // NOT_FOUND
	errExists          = errors.New("already exists")      // ALREADY_EXISTS
	errPrecondition    = errors.New("failed precondition") // FAILED_PRECONDITION
	errDenied          = errors.New("permission denied")   // PERMISSION_DENIED
	errUnauthenticated = errors.New("unauthenticated")     // UNAUTHENTICATED
	errUnavailable     = errors.New("unavailable")         // UNAVAILABLE

	// errShuttingDown ends streams when the server drains (UNAVAILABLE).
	errShuttingDown = errors.New("server shutting down, reconnect")
	// errTokenExpired ends a stream whose token expired (UNAUTHENTICATED).
	errTokenExpired = errors.New("token expired")
)

// sentinelCodes are the codes of the sentinels wrapped by errorf.
var sentinelCodes = []struct {
	err  error
	code codes.Code
}{
	{errInvalid, codes.InvalidArgument},
	{errNotFound, codes.NotFound},
	{errExists, codes.AlreadyExists},
	{errPrecondition, codes.FailedPrecondition},
	{errDenied, codes.PermissionDenied},
	{errUnauthenticated, codes.Unauthenticated},
	{errUnavailable, codes.Unavailable},
}

// errorf wraps kind, one of the sentinels above, with a message for the
// client.
func errorf(kind error, format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{kind}, args...)...)
}

// invalidf is errorf(errInvalid, ...): a request that fails validation.
func invalidf(format string, args ...any) error {
	return errorf(errInvalid, format, args...)
}

// retryError refuses a request that may be retried after a delay.
type retryError struct {
	after time.Duration
	msg   string
}

func (e *retryError) Error() string { return e.msg }

// retryable is a retryError; an unbounded delay becomes a minute.
func retryable(after time.Duration, msg string) error {
	if after == rate.InfDuration || after > time.Duration(math.MaxInt64/2) {
		after = time.Minute
	}
	return &retryError{after: after, msg: msg}
}

// slowConsumerError ends a stream that fell too far behind; seqs are the
// last seq written to it in each room, where the client resumes.
type slowConsumerError struct{ seqs map[string]uint64 }

func (e *slowConsumerError) Error() string { return hub.ErrSlowConsumer.Error() }
func (e *slowConsumerError) Unwrap() error { return hub.ErrSlowConsumer }

// statusOf maps an error from any layer to the gRPC status a client sees.
// It is the one place where errors become codes and messages.
func statusOf(err error) *status.Status {
	if err == nil {
		return status.New(codes.OK, "")
	}
	if s, ok := status.FromError(err); ok {
		return s
	}
	for _, sc := range sentinelCodes {
		if errors.Is(err, sc.err) {
			return status.New(sc.code, strings.TrimPrefix(err.Error(), sc.err.Error()+": "))
		}
	}
	if st := detailedStatus(err); st != nil {
		return st
	}
	code := domainCode(err)
	if code == codes.Internal {
		return status.New(codes.Internal, "internal error") // the cause is for the log (answer)
	}
	return status.New(code, err.Error())
}

// detailedStatus is the status of the errors whose status carries a
// detail or a message of its own, or nil for any other error.
func detailedStatus(err error) *status.Status {
	var retry *retryError
	var slow *slowConsumerError
	switch {
	case errors.As(err, &retry):
		return withDetail(status.New(codes.ResourceExhausted, retry.msg), &errdetails.RetryInfo{RetryDelay: durationpb.New(retry.after)})
	case errors.As(err, &slow):
		return slowConsumerStatus(slow.seqs)
	case errors.Is(err, errTokenExpired):
		return status.New(codes.Unauthenticated, "token expired: send a refresh frame before exp, or reconnect with a new token")
	case errors.Is(err, store.ErrFull):
		return storageStatus("STORAGE_FULL", "the server's storage is full: nothing was stored; retry later (a send with the same client_msg_id is stored at most once)")
	case errors.Is(err, store.ErrCorrupt):
		return storageStatus("STORAGE_DAMAGED", "the server's database is damaged and its operator must repair it: nothing was stored; retry later (a send with the same client_msg_id is stored at most once)")
	case errors.Is(err, store.ErrUnavailable):
		return status.New(codes.Unavailable, "message store unavailable: the request may not have been carried out; retry (a send with the same client_msg_id is stored at most once)")
	}
	return nil
}

// domainCode is the code of an error of the hub, the store, auth or
// context, whose own text is the status message; Internal for any other.
func domainCode(err error) codes.Code {
	switch {
	case errors.Is(err, store.ErrRoomNotFound):
		return codes.NotFound
	case errors.Is(err, store.ErrRoomExists):
		return codes.AlreadyExists
	case errors.Is(err, store.ErrTargetNotFound):
		return codes.NotFound
	case errors.Is(err, store.ErrInvalidEntry), errors.Is(err, store.ErrBadReply):
		return codes.InvalidArgument
	case errors.Is(err, store.ErrNotAllowed):
		return codes.PermissionDenied
	case errors.Is(err, store.ErrTargetDeleted), errors.Is(err, store.ErrTooManyReactions):
		// Not RESOURCE_EXHAUSTED for too many reactions: that code says
		// "retry later", and the message stays full until someone takes
		// a reaction back.
		return codes.FailedPrecondition
	case errors.Is(err, hub.ErrAlreadyJoined), errors.Is(err, hub.ErrNotJoined):
		return codes.FailedPrecondition
	case errors.Is(err, hub.ErrAfterSeqBeyondHead):
		return codes.OutOfRange
	case errors.Is(err, hub.ErrTooManyRooms), errors.Is(err, hub.ErrSlowConsumer):
		return codes.ResourceExhausted
	case errors.Is(err, hub.ErrRemoved):
		return codes.PermissionDenied
	case errors.Is(err, hub.ErrReadMarksBacklog):
		return codes.Unavailable
	case errors.Is(err, hub.ErrTooManyReaders):
		return codes.FailedPrecondition
	case errors.Is(err, auth.ErrNoToken), errors.Is(err, auth.ErrExpired), errors.Is(err, auth.ErrInvalid):
		return codes.Unauthenticated
	case errors.Is(err, store.ErrClosed), errors.Is(err, errShuttingDown):
		return codes.Unavailable
	case errors.Is(err, context.Canceled):
		return codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded
	}
	return codes.Internal
}

// storageStatus is UNAVAILABLE for a fault of the server's storage, with a
// google.rpc.ErrorInfo detail whose reason tells the faults apart. Not
// INTERNAL (a bug) nor DATA_LOSS (which clients read as final): the request
// may be retried, and succeeds once the operator has freed space or
// restored the database.
func storageStatus(reason, msg string) *status.Status {
	return withDetail(status.New(codes.Unavailable, msg), &errdetails.ErrorInfo{Reason: reason, Domain: "parley.chat"})
}

// slowConsumerStatus says where to resume each room: RESOURCE_EXHAUSTED
// with the positions in the message and as ErrorInfo metadata
// ("after_seq/<room>": seq).
func slowConsumerStatus(seqs map[string]uint64) *status.Status {
	rooms := make([]string, 0, len(seqs))
	for r := range seqs {
		rooms = append(rooms, r)
	}
	sort.Strings(rooms)
	msg := "you fell too far behind and were disconnected; rejoin with after_seq:"
	meta := make(map[string]string, len(rooms))
	for _, r := range rooms {
		msg += fmt.Sprintf(" %s=%d", r, seqs[r])
		meta["after_seq/"+r] = strconv.FormatUint(seqs[r], 10)
	}
	return withDetail(status.New(codes.ResourceExhausted, msg), &errdetails.ErrorInfo{Reason: "SLOW_CONSUMER", Domain: "parley.chat", Metadata: meta})
}

// withDetail adds detail to st; st stays as it is if the detail cannot be
// marshalled.
func withDetail(st *status.Status, detail protoadapt.MessageV1) *status.Status {
	if with, err := st.WithDetails(detail); err == nil {
		return with
	}
	return st
}

// retryDelay returns the RetryInfo delay in st's details, or 0.
func retryDelay(st *status.Status) time.Duration {
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			return ri.GetRetryDelay().AsDuration()
		}
	}
	return 0
}

// answer is the status a client sees for err, the error a call or frame
// of method failed with; the cause of an INTERNAL answer, never a
// request's contents, is logged.
func (s *Service) answer(method string, err error) *status.Status {
	st := statusOf(err)
	if st.Code() == codes.Internal {
		s.log.Error("answered INTERNAL", "method", method, "cause", err)
	}
	return st
}

// edge is the error a ChatService call ends with: err's status. Other
// services' errors (health, reflection) pass as they are.
func (s *Service) edge(method string, err error) error {
	if err == nil || !isChatService(method) {
		return err
	}
	return s.answer(method, err).Err()
}

// roomNotFound is the answer for a room the caller cannot see: one that
// does not exist, or a private or direct room they are not a member of.
// It must not depend on which.
func roomNotFound(name string) error {
	if isDirectRoomName(name) {
		return errorf(errNotFound, "room %q does not exist or is not yours; a direct room begins with the first message to the user (SendMessage with to_user)", name)
	}
	return errorf(errNotFound, "room %q does not exist, or it is private and you are not a member; create it, or ask its creator to add you", name)
}
