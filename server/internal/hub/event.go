package hub

import (
	"fmt"
	"time"

	"github.com/parleychat/parley/server/internal/store"
)

// EventKind tells what an Event is and which of its fields are set.
type EventKind int

// The kinds of event. Every kind may be sent to connections; those marked
// "broker" also travel between nodes.
const (
	// EventJoined: Room, HeadSeq, Presence and OnlineCount (the room's
	// state); in a big room Presence is the first page of it, and
	// PresenceNext is set when more users follow.
	EventJoined EventKind = iota + 1
	// EventMessage: Room and Message, an entry of the room's log (broker).
	EventMessage
	// EventReplayed: Room and ThroughSeq.
	EventReplayed
	// EventPresenceDiff: Room, Joins, Leaves and OnlineCount (after them).
	EventPresenceDiff
	// EventTyping: Room, User and Active (broker).
	EventTyping
	// EventRemoved: Room and User; User was removed from the room and
	// their connections taken out of it (broker).
	EventRemoved
	// EventReadMarker: Room, User and Read (the marker and User's counts
	// at it): User's read marker in the room moved. It goes to User's
	// Join connections, not to the room (broker, on the user subject).
	EventReadMarker
	// EventReceipt: Room, User and Read (Seq and ReadAt): a reader of a
	// small room read it further ("seen by"). It travels between nodes
	// only (broker); each node gives it to the room's connections as an
	// EventReceipts.
	EventReceipt
	// EventRoomVisible: Room, and User unless it is for every user: Room
	// became visible to User (a direct conversation began, User was added
	// to a private room), or to every user when User is empty (a public
	// room was created). It goes to Join connections, not to the room
	// (broker, on the user subject).
	EventRoomVisible
	// EventReceipts: Room and Receipts: readers of a small room who read
	// it further, together ("seen by"); it goes to the room's
	// connections.
	EventReceipts
)

// eventKindNames are the kinds' names on the wire; never change one.
var eventKindNames = [...]string{
	EventJoined:       "joined",
	EventMessage:      "message",
	EventReplayed:     "replayed",
	EventPresenceDiff: "presence_diff",
	EventTyping:       "typing",
	EventRemoved:      "removed",
	EventReadMarker:   "read_marker",
	EventReceipt:      "receipt",
	EventRoomVisible:  "room_visible",
	EventReceipts:     "receipts",
}

// String returns the kind's wire name.
func (k EventKind) String() string {
	if k > 0 && int(k) < len(eventKindNames) {
		return eventKindNames[k]
	}
	return fmt.Sprintf("EventKind(%d)", int(k))
}

// MarshalText implements encoding.TextMarshaler.
func (k EventKind) MarshalText() ([]byte, error) {
	if k <= 0 || int(k) >= len(eventKindNames) {
		return nil, fmt.Errorf("hub: unknown event kind %d", int(k))
	}
	return []byte(eventKindNames[k]), nil
}

// UnmarshalText implements encoding.TextUnmarshaler; an unknown name is
// an error, so a node skips an event kind it does not know.
func (k *EventKind) UnmarshalText(text []byte) error {
	for i, name := range eventKindNames {
		if i > 0 && name == string(text) {
			*k = EventKind(i)
			return nil
		}
	}
	return fmt.Errorf("hub: unknown event kind %q", text)
}

// EventVersion is the version of Event's JSON form between nodes. A node
// drops events of another version: nodes of different versions do not
// share live events (see docs/operations.md on upgrades).
const EventVersion = 1

// Event is something that happened in a room, before it is encoded for
// connections (by the Encoder) or, for the kinds marked broker, for the
// other nodes (as JSON, with Version and Node set).
type Event struct {
	Version    int           `json:"v"`
	Kind       EventKind     `json:"k"`
	Node       string        `json:"n,omitempty"` // the node that published it
	Room       string        `json:"r"`
	Message    store.Message `json:"m,omitzero"`
	HeadSeq    uint64        `json:"head,omitempty"`
	ThroughSeq uint64        `json:"through,omitempty"`
	Presence   []Presence    `json:"p,omitempty"`
	Joins      []Presence    `json:"j,omitempty"`
	Leaves     []Presence    `json:"l,omitempty"`
	// OnlineCount is how many distinct users are online in the room.
	OnlineCount int `json:"o,omitempty"`
	// PresenceNext is where the next page of presence starts, when
	// Presence is a page that more users follow (see Hub.PresencePage).
	PresenceNext PageCursor `json:"pn,omitzero"`
	User         string     `json:"u,omitempty"`
	Active       bool       `json:"a,omitempty"`
	Read         *ReadMark  `json:"rd,omitempty"`
	Receipts     []Receipt  `json:"rs,omitempty"`
}

// Receipt is one reader's marker in an EventReceipts.
type Receipt struct {
	User   string    `json:"u"`
	Seq    uint64    `json:"s"`
	ReadAt time.Time `json:"t,omitzero"`
}

// ReadMark is a user's read marker in a room and, in an EventReadMarker,
// the user's counts at it.
type ReadMark struct {
	Seq    uint64    `json:"s"`
	ReadAt time.Time `json:"t,omitzero"`
	// Unread and Mentions count the user's unread messages after Seq, up
	// to and including HeadSeq (see store.ReadState). HeadSeq 0 means
	// they are not known.
	Unread   int    `json:"un,omitempty"`
	Mentions int    `json:"mn,omitempty"`
	HeadSeq  uint64 `json:"h,omitempty"`

	from *Conn // the connection it was marked on, if any: its reply told it
}

// counted reports whether m's counts are known.
func (m ReadMark) counted() bool { return m.HeadSeq != 0 }

// Presence is one user's connections in a room.
type Presence struct {
	User  string `json:"u"`
	Metas []Meta `json:"m"`
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
	// Room and Seq are set for the frames of log entries (of any kind),
	// so the writer can tell how far each room was delivered.
	Room string
	Seq  uint64
	// Tail, if set, is written right after Data (or Wire), in the same
	// message: what one connection alone is told along with an event
	// others share (see JoinOptions.Tail), without copying the shared
	// bytes. The Encoder's format must read the two as one.
	Tail []byte
}
