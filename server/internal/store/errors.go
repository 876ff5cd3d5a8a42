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
)
