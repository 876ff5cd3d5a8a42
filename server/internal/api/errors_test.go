package api

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/parleychat/parley/server/internal/hub"
	"github.com/parleychat/parley/server/internal/store"
)

// TestStatusOf pins the status each kind of error becomes: its code and
// the exact message a client reads.
func TestStatusOf(t *testing.T) {
	for _, tc := range []struct {
		err  error
		code codes.Code
		msg  string
	}{
		{nil, codes.OK, ""},
		{invalidf("limit must be between 1 and %d", 200), codes.InvalidArgument, "limit must be between 1 and 200"},
		{roomNotFound("secret"), codes.NotFound, `room "secret" does not exist, or it is private and you are not a member; create it, or ask its creator to add you`},
		{errorf(errExists, "room %q already exists", "x"), codes.AlreadyExists, `room "x" already exists`},
		{errorf(errPrecondition, "p"), codes.FailedPrecondition, "p"},
		{errorf(errDenied, "d"), codes.PermissionDenied, "d"},
		{errorf(errUnauthenticated, "u"), codes.Unauthenticated, "u"},
		{status.Error(codes.Aborted, "as is"), codes.Aborted, "as is"},
		{fmt.Errorf("room %q: %w", "r", hub.ErrNotJoined), codes.FailedPrecondition, `room "r": not joined`},
		{store.ErrRoomNotFound, codes.NotFound, "room not found"},
		{fmt.Errorf("edit of seq 9: %w", store.ErrTargetNotFound), codes.NotFound, "edit of seq 9: target message not found"},
		{store.ErrTargetDeleted, codes.FailedPrecondition, "target message deleted"},
		{store.ErrNotAllowed, codes.PermissionDenied, "not allowed"},
		{store.ErrBadReply, codes.InvalidArgument, "reply to a message not in the room"},
		{store.ErrTooManyReactions, codes.FailedPrecondition, "too many distinct reactions on the message"},
		{store.ErrInvalidEntry, codes.InvalidArgument, "invalid log entry"},
		{hub.ErrSlowConsumer, codes.ResourceExhausted, hub.ErrSlowConsumer.Error()},
		{hub.ErrReadMarksBacklog, codes.Unavailable, hub.ErrReadMarksBacklog.Error()},
		{hub.ErrTooManyReaders, codes.FailedPrecondition, "room has too many readers for receipts"},
		{errShuttingDown, codes.Unavailable, "server shutting down, reconnect"},
		{errTokenExpired, codes.Unauthenticated, "token expired: send a refresh frame before exp, or reconnect with a new token"},
		{context.Canceled, codes.Canceled, "context canceled"},
		{errors.New("disk on fire"), codes.Internal, "internal error"},
	} {
		st := statusOf(tc.err)
		if st.Code() != tc.code || st.Message() != tc.msg {
			t.Errorf("statusOf(%v) = %v %q, want %v %q", tc.err, st.Code(), st.Message(), tc.code, tc.msg)
		}
	}
}

// TestStatusDetails checks the details that tell clients when to retry,
// which storage fault it is, and where to resume.
func TestStatusDetails(t *testing.T) {
	st := statusOf(retryable(1500*time.Millisecond, "sending too fast"))
	if st.Code() != codes.ResourceExhausted || st.Message() != "sending too fast" || retryDelay(st) != 1500*time.Millisecond {
		t.Errorf("retryable: %v %q, delay %v", st.Code(), st.Message(), retryDelay(st))
	}
	st = statusOf(fmt.Errorf("append: %w", store.ErrFull))
	if info := errorInfo(st); st.Code() != codes.Unavailable || info.GetReason() != "STORAGE_FULL" {
		t.Errorf("store full: %v, reason %q", st.Code(), info.GetReason())
	}
	st = statusOf(&slowConsumerError{seqs: map[string]uint64{"b": 2, "a": 1}})
	info := errorInfo(st)
	if st.Code() != codes.ResourceExhausted || info.GetMetadata()["after_seq/a"] != "1" ||
		st.Message() != "you fell too far behind and were disconnected; rejoin with after_seq: a=1 b=2" {
		t.Errorf("slow consumer: %v %q, metadata %v", st.Code(), st.Message(), info.GetMetadata())
	}
}

func errorInfo(st *status.Status) *errdetails.ErrorInfo {
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info
		}
	}
	return nil
}
