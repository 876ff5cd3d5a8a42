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
