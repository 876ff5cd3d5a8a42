// Package store defines how Parley keeps rooms and message history: the
// Store interface that the embedded SQLite store and the PostgreSQL store
// implement, and the records they keep.
//
// The store is the single authority for a room's order: Append assigns each
// entry of the room's log (a message, or an edit, delete or reaction that
// names one) the next seq of its room, and a seq is visible to readers only
// once the entry is durably stored. Besides the log itself (Messages) the
// store keeps each message's current state for History, updated in the
// transaction that stores the entry that changes it. Its words (append,
// entry, seq, head) are those of the glossary in package app.
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
	// LastSeq is the seq of the room's newest log entry (of any kind), 0
	// for an empty room.
	LastSeq uint64
	// LastMessageAt is when the newest entry was stored; zero for an empty room.
	LastMessageAt time.Time
	// Members are stored with a new private or direct room by CreateRoom
	// (with CreatedBy, who is always a member); reads leave it empty.
	Members []string
	// Read is the read state of the user VisibleRooms was asked for;
	// other reads leave it zero.
	Read ReadState
}

// Message is one entry of a room's log, of any kind: a chat message, or an
// edit, delete or reaction that names an earlier message by TargetSeq. Every
// entry has its own seq in the room's one order. It travels between nodes
// as JSON, so every field has an explicit tag; the zero Kind is a message,
// so entries written before kinds existed read as messages.
type Message struct {
	Room   string `json:"room"`
	Seq    uint64 `json:"seq"`
	Kind   Kind   `json:"kind,omitempty"`
	Sender string `json:"sender"`
	// Body is the text of a message or of an edit (the new text); empty
	// for other kinds, and for a message or edit erased by a delete.
	Body        string    `json:"body"`
	SentAt      time.Time `json:"sent_at"`
	ClientMsgID string    `json:"client_msg_id"`
	// TargetSeq is the message that an edit, delete or reaction is about.
	TargetSeq uint64 `json:"target_seq,omitempty"`
	// ReplyToSeq is, for a message, the earlier message of the same room
	// that it replies to; 0 for none.
	ReplyToSeq uint64 `json:"reply_to_seq,omitempty"`
	// Emoji is a reaction's emoji.
	Emoji string `json:"emoji,omitempty"`
	// Mentions are the users a message's or an edit's text mentions, as
	// the API parsed them when it was sent (see NewMessage.Mentions);
	// empty for other kinds and once the text is erased by a delete.
	Mentions []string `json:"mentions,omitempty"`
}

// NewMessage is an entry to append; the store assigns its seq and time.
// Kind and the fields it uses say what it is: a message (Body, optional
// ReplyToSeq), an edit (TargetSeq, Body: the new text), a delete
// (TargetSeq), a reaction added or removed (TargetSeq, Emoji).
type NewMessage struct {
	Room        string
	Kind        Kind
	Sender      string
	Body        string
	ClientMsgID string
	TargetSeq   uint64
	ReplyToSeq  uint64
	Emoji       string
	// Mentions are the users a message's or an edit's Body mentions,
	// parsed and checked by the caller (the store does not parse bodies).
	// An edit replaces the message's mentions with its own; a delete
	// clears them.
	Mentions []string
}

// ReadMarker is how far a user has read a room: every entry up to Seq.
// It is per-user state beside the room's log, not an entry of it, and it
// only moves forward.
type ReadMarker struct {
	Room string
	User string
	Seq  uint64
	// ReadAt is when the marker last moved; zero for a marker never set.
	ReadAt time.Time
}

// ReadState is a user's read state in one room: the marker and what lies
// after it.
type ReadState struct {
	// LastReadSeq is the user's marker in the room, 0 if never set.
	LastReadSeq uint64
	// Unread counts the room's messages (entries of kind message) after
	// LastReadSeq that are not the user's own and not deleted.
	Unread int
	// Mentions counts those of the Unread messages whose current text
	// mentions the user; in a direct room it is Unread.
	Mentions int
	// HeadSeq is the room's head the counts were taken at.
	HeadSeq uint64
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

// Retention says which entries Prune deletes. Zero fields keep everything.
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
	// Append stores an entry of any kind and returns it with its seq and
	// time. It returns only after the entry is durable. If the room already
	// holds an entry (of any kind) from the same sender with the same
	// non-empty ClientMsgID, Append stores nothing and returns that entry
	// with duplicate set. It returns ErrRoomNotFound for an unknown room.
	//
	// The rules of the log are checked in the same transaction as the
	// write (see Rules): a rejected entry stores nothing, takes no seq and
	// returns one of ErrInvalidEntry, ErrTargetNotFound, ErrTargetDeleted,
	// ErrNotAllowed, ErrBadReply or ErrTooManyReactions. An entry that
	// would change nothing (a reaction added twice, one removed that is not
	// there, a delete of a deleted message) stores nothing too and returns
	// the entry asked for with Seq 0, duplicate set and a nil error: the
	// caller answers it as done and broadcasts nothing.
	Append(ctx context.Context, m NewMessage) (msg Message, duplicate bool, err error)
	// StartAppend is Append in two steps: it queues m, waiting only while the
	// store's queue is full, and returns a wait function that blocks until
	// m is stored and returns what Append would. Appends started one
	// after another get a room's seqs in the order they were started, so
	// a caller may have many in flight and still keep its order. Call wait
	// exactly once.
	StartAppend(ctx context.Context, m NewMessage) (wait func() (msg Message, duplicate bool, err error))
	// Messages returns the log entries of a room, of every kind, that match
	// q, in seq order (descending if q.Descending): what a subscriber
	// replays. A deleted message and its edits come back with empty
	// bodies. It returns ErrRoomNotFound for an unknown room.
	Messages(ctx context.Context, room string, q Query) ([]Message, error)
	// History returns the room's messages (entries of kind message only)
	// that match q as they are now, seen by viewer: see MessageView. q's
	// bounds are seqs; q.Limit counts messages, so a page holds up to
	// q.Limit messages however many other entries lie between them. It
	// returns ErrRoomNotFound for an unknown room.
	History(ctx context.Context, room, viewer string, q Query) ([]MessageView, error)
	// VisibleRooms is ListRooms restricted to the rooms user may see: the
	// public ones and those user is a member of, each with user's
	// ReadState. The counts cost no scan of the rooms' logs: a page of
	// rooms takes about the same time however many messages they hold.
	VisibleRooms(ctx context.Context, user, afterName string, limit int) ([]Room, error)
	// SetReadMarkers moves each marker forward, all of them in one
	// transaction, or for a large batch in a few (the SQLite store commits
	// up to a few hundred at a time between appends; each marker moves in
	// exactly one, and a call that fails may have moved some): a marker
	// at or below the stored one leaves it as it is, one beyond its room's
	// head is taken as the head. It returns the markers as they are after,
	// in the order given (one given twice is answered twice, as it ends),
	// with ReadAt set (zero for a marker never set, as in an empty room);
	// a marker of an unknown room is left out. Markers are not entries:
	// they take no seq.
	SetReadMarkers(ctx context.Context, ms []ReadMarker) ([]ReadMarker, error)
	// ReadState returns user's read state in room; ErrRoomNotFound for an
	// unknown room.
	ReadState(ctx context.Context, user, room string) (ReadState, error)
	// ReadMarkers returns up to limit markers set in room, by user id;
	// ErrRoomNotFound for an unknown room.
	ReadMarkers(ctx context.Context, room string, limit int) ([]ReadMarker, error)
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
	// Prune deletes, in every room, the entries older than p.MaxAge and
	// those up to the oldest of the newest p.MaxMessages messages (a zero
	// limit is no limit; only entries of kind message count), in small
	// steps so appends are not held up. A pruned message takes every entry
	// that targets it (edits, deletes, reactions) and its reactions with
	// it, whatever their age. It returns how many log entries it deleted.
	// Seqs are never reused: a room's head stays where it was. Pruned
	// messages leave the read counts; read markers stay where they are, and
	// one below the pruned seqs counts only the messages still stored.
	Prune(ctx context.Context, p Retention) (int, error)
	// Close releases the store's resources; pending appends finish first.
	Close() error
}
