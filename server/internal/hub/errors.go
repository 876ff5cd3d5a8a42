package hub

import "errors"

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
)
