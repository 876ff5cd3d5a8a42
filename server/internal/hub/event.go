package hub

import (
	"time"

	"github.com/parleychat/parley/server/internal/store"
)

// EventKind tells which field of an Event is set.
type EventKind int

// The kinds of event the hub sends to connections.
const (
	// EventJoined: Room, HeadSeq and Presence (the room's state).
	EventJoined EventKind = iota + 1
	// EventMessage: Message.
	EventMessage
	// EventReplayed: Room and ThroughSeq.
	EventReplayed
	// EventPresenceDiff: Room, Joins and Leaves.
	EventPresenceDiff
	// EventTyping: Room, User and Active.
	EventTyping
	// EventRemoved: Room; the connection's user was removed from the room
	// and the connection taken out of it.
	EventRemoved
)

// Event is something that happened in a room, before it is encoded.
type Event struct {
	Kind       EventKind
	Room       string
	Message    store.Message
	HeadSeq    uint64
	ThroughSeq uint64
	Presence   []Presence
	Joins      []Presence
	Leaves     []Presence
	User       string
	Active     bool
}

// Presence is one user's connections in a room.
type Presence struct {
	User  string
	Metas []Meta
}

// Meta describes one connection that is online in a room.
type Meta struct {
	ConnID   string    `json:"c"`
	OnlineAt time.Time `json:"t"`
	Client   string    `json:"cl,omitempty"`
	// Node is the cluster node that holds the connection.
	Node string `json:"n,omitempty"`
}

// Encoder turns an event into the bytes sent on the wire. The hub calls it
// once per event, however many connections receive it.
type Encoder func(Event) ([]byte, error)

// Frame is an encoded event queued for one connection. Frames may be shared
// by many connections and must not be modified.
type Frame struct {
	Data []byte
	// Wire is Data in the form the transport sends, made once per frame by
	// Config.WireForm for frames that go to many connections; nil if not.
	Wire any
	// Room and Seq are set for message frames, so the writer can tell how
	// far each room was delivered.
	Room string
	Seq  uint64
}
