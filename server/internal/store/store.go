// Package store defines how Parley keeps rooms and message history: the
// Store interface that the embedded SQLite store and the PostgreSQL store
// implement, and the records they keep.
//
// The store is the single authority for a room's order: Append assigns each
// message the next seq of its room, and a seq is visible to readers only once
// the message is durably stored. Its words (append, seq, head) are those of
// the glossary in package app.
package store

import (
	"context"
	"time"
)

// Visibility says who may see and join a room.
type Visibility int

// Room visibilities.
const (
	Public Visibility = iota + 1
	Private
	Direct
)

// String returns the visibility's lower-case name.
func (v Visibility) String() string {
	switch v {
	case Public:
		return "public"
	case Private:
		return "private"
	case Direct:
		return "direct"
	}
	return "unknown"
}

// Room is a chat room and its head.
type Room struct {
	Name       string
	Visibility Visibility
	CreatedBy  string
	CreatedAt  time.Time
	// LastSeq is the seq of the newest stored message, 0 for an empty room.
	LastSeq uint64
	// LastMessageAt is when the newest message was stored; zero for an empty room.
	LastMessageAt time.Time
	// Members are stored with a new private or direct room by CreateRoom
	// (with CreatedBy, who is always a member); reads leave it empty.
	Members []string
}

// Message is one stored chat message.
type Message struct {
	Room        string
	Seq         uint64
	Sender      string
	Body        string
	SentAt      time.Time
	ClientMsgID string
}

// NewMessage is a message to append; the store assigns its seq and time.
type NewMessage struct {
	Room        string
	Sender      string
	Body        string
	ClientMsgID string
}

// Query selects a page of a room's messages. After and Before are exclusive
// bounds; zero means unbounded.
type Query struct {
	After  uint64
	Before uint64
	// Limit is the most messages to return; it must be positive.
	Limit int
	// Descending returns the highest seqs first.
	Descending bool
}

// Retention says which messages Prune deletes. Zero fields keep everything.
type Retention struct {
	MaxAge      time.Duration
	MaxMessages int
}

// Answered returns a wait function (see Store.StartAppend) for an append whose
// answer is known already: stored at once, or refused before it was queued.
func Answered(msg Message, duplicate bool, err error) func() (Message, bool, error) {
	return func() (Message, bool, error) { return msg, duplicate, err }
}

// Store keeps rooms and their history. Implementations are safe for
// concurrent use.
type Store interface {
	// CreateRoom stores a new room. It returns ErrRoomExists if the name is taken.
	CreateRoom(ctx context.Context, r Room) (Room, error)
	// Room returns a room with its head, or ErrRoomNotFound.
	Room(ctx context.Context, name string) (Room, error)
	// ListRooms returns up to limit rooms whose names sort after afterName,
	// ordered by name.
	ListRooms(ctx context.Context, afterName string, limit int) ([]Room, error)
	// Append stores a message and returns it with its seq and time. It returns
	// only after the message is durable. If the room already holds a message
	// from the same sender with the same non-empty ClientMsgID, Append stores
	// nothing and returns that message with duplicate set. It returns
	// ErrRoomNotFound for an unknown room.
	Append(ctx context.Context, m NewMessage) (msg Message, duplicate bool, err error)
	// StartAppend is Append in two steps: it queues m, waiting only while the
	// store's queue is full, and returns a wait function that blocks until
	// m is stored and returns what Append would. Appends started one
	// after another get a room's seqs in the order they were started, so
	// a caller may have many in flight and still keep its order. Call wait
	// exactly once.
	StartAppend(ctx context.Context, m NewMessage) (wait func() (msg Message, duplicate bool, err error))
	// Messages returns the messages of a room that match q, in seq order
	// (descending if q.Descending). It returns ErrRoomNotFound for an unknown room.
	Messages(ctx context.Context, room string, q Query) ([]Message, error)
	// VisibleRooms is ListRooms restricted to the rooms user may see: the
	// public ones and those user is a member of.
	VisibleRooms(ctx context.Context, user, afterName string, limit int) ([]Room, error)
	// AddMember makes user a member of room (again: no error); ErrRoomNotFound
	// for an unknown room.
	AddMember(ctx context.Context, room, user string) error
	// RemoveMember ends user's membership of room (if any); ErrRoomNotFound
	// for an unknown room.
	RemoveMember(ctx context.Context, room, user string) error
	// IsMember reports whether user is a member of room.
	IsMember(ctx context.Context, room, user string) (bool, error)
	// Members returns room's members, sorted; ErrRoomNotFound for an unknown room.
	Members(ctx context.Context, room string) ([]string, error)
	// Prune deletes, in every room, the messages older than p.MaxAge and all
	// but the newest p.MaxMessages (a zero limit is no limit), in small
	// steps so appends are not held up, and returns how many it deleted.
	// Seqs are never reused: a room's head stays where it was.
	Prune(ctx context.Context, p Retention) (int, error)
	// Close releases the store's resources; pending appends finish first.
	Close() error
}
