package hub

import (
	"errors"
	"fmt"
)

// Errors returned by the hub; the API maps them to status codes.
var (
	// ErrAlreadyJoined means the connection is already in the room.
	ErrAlreadyJoined = errors.New("already joined")
	// ErrNotJoined means the connection is not in the room.
	ErrNotJoined = errors.New("not joined")
	// ErrTooManyRooms means the connection is in as many rooms as it may be.
	ErrTooManyRooms = errors.New("too many rooms on one connection")
	// ErrAfterSeqBeyondHead means a resume position is past the room's newest message.
	ErrAfterSeqBeyondHead = errors.New("after_seq is beyond the room's newest message")
	// ErrSlowConsumer means a connection's outbound queue overflowed and it was cut off.
	ErrSlowConsumer = errors.New("connection fell too far behind")
	// ErrRemoved ends a receive-only connection (one that gets no notice
	// frames) whose user was removed from one of its rooms; the room's name
	// follows it in the message.
	ErrRemoved = errors.New("you were removed from room")
	// ErrConnClosed means the connection was closed.
	ErrConnClosed = errors.New("connection closed")
	// ErrHubClosed ends the connections still open, or opened, after
	// Hub.Close.
	ErrHubClosed = errors.New("hub closed")
	// ErrReadMarksBacklog means too many read markers wait to be stored
	// (the store is slow or down) to take another now.
	ErrReadMarksBacklog = errors.New("too many read markers are waiting to be stored (the store is slow or out of reach); mark the room read again later")
	// ErrTooManyReaders means a room has too many readers to keep
	// receipts for (see Config.ReceiptsMaxMembers).
	ErrTooManyReaders = errors.New("room has too many readers for receipts")
)

// ReplayError is a join whose replay failed after the join was
// acknowledged and the room's joined state queued (Err says why, say the
// store did not answer in time): the connection was taken out of the room
// again, and its client must hear of it some other way than an answer to
// the join.
type ReplayError struct {
	Room string
	Err  error
}

func (e *ReplayError) Error() string { return fmt.Sprintf("replay of room %q: %v", e.Room, e.Err) }

// Unwrap returns the cause.
func (e *ReplayError) Unwrap() error { return e.Err }
