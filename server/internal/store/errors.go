package store

import "errors"

// Errors returned by every Store implementation; test them with errors.Is.
var (
	// ErrRoomNotFound means no room has that name.
	ErrRoomNotFound = errors.New("room not found")
	// ErrRoomExists means a room with that name already exists.
	ErrRoomExists = errors.New("room already exists")
	// ErrClosed means the store was closed.
	ErrClosed = errors.New("store closed")
	// ErrUnavailable means the store's database cannot be reached now; the
	// call stored nothing and may be retried.
	ErrUnavailable = errors.New("store unavailable")
	// ErrCorrupt means the database is damaged (SQLite found a malformed
	// page or file; PostgreSQL reported data corruption). The call failed;
	// the operator must restore or repair the database.
	ErrCorrupt = errors.New("database damaged")
	// ErrFull means the database's storage is full (the disk, or a
	// configured size limit). The call failed and may be retried once space
	// is freed; a retried append with the same ClientMsgID is stored once.
	ErrFull = errors.New("storage full")
)

// Errors of the log's rules (see Store.Append); each means nothing was
// stored.
var (
	// ErrInvalidEntry means the entry is malformed: an unknown kind, a
	// missing target or emoji, or a field its kind does not use.
	ErrInvalidEntry = errors.New("invalid log entry")
	// ErrTargetNotFound means the entry's target seq names no message of
	// the room: never stored, pruned, or an entry of another kind.
	ErrTargetNotFound = errors.New("target message not found")
	// ErrTargetDeleted means the target message was deleted, so it can no
	// longer be edited or reacted to.
	ErrTargetDeleted = errors.New("target message deleted")
	// ErrNotAllowed means the sender may not do that to the target: only
	// its sender edits a message; its sender or, in a private room, the
	// room's creator deletes it.
	ErrNotAllowed = errors.New("not allowed")
	// ErrBadReply means ReplyToSeq names no message of the room.
	ErrBadReply = errors.New("reply to a message not in the room")
	// ErrTooManyReactions means the message already carries
	// MaxReactionsPerMessage distinct emoji.
	ErrTooManyReactions = errors.New("too many distinct reactions on the message")
)
