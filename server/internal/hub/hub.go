// Package hub is Parley's live core: rooms, the connections in them,
// per-room ordered fan-out, presence and typing. It knows nothing of gRPC or
// SQL: messages are stored through the store.Store interface and events are
// encoded by an Encoder the caller provides, once per event.
//
// Lock order: Hub.syncMu, then Hub.loadMu, then a room's mu, then a
// Conn's mu, then the writers' or the trimmer's mu; Hub.pubMu may be taken
// under a room's mu; Hub.connsMu and Hub.nodesMu are taken alone, and no
// room's mu is held while another room's is taken. The read markers'
// readMarks.flushMu is taken before their readMarks.mu and before a room's
// mu; their mu is never held with a room's.
//
// A room is loaded while it is used and unloaded when it is not: Hub.room
// finds or loads it and holds it (room.hold, an atomic count); the holder
// releases it (room.release) once its connection is in the room or its
// message delivered; whoever leaves a room, or releases its last hold,
// unloads it if it is idle, under the room's mu, by swapping the count
// from 0 to -1, which makes later holds fail (room.unloadIfIdleLocked).
//
// Its words (connection, join, send, deliver, ...) are those of the
// glossary in package app.
package hub

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parleychat/parley/server/internal/store"
)

// Config tunes the hub. The zero value of each field means its default.
type Config struct {
	// MaxQueueBytes bounds each connection's outbound queue (default
	// DefaultMaxQueueBytes).
	MaxQueueBytes int
	// MaxRoomsPerConn bounds the rooms one connection may be in (default
	// DefaultMaxRoomsPerConn).
	MaxRoomsPerConn int
	// RecentMessages is how many recent entries' frames each room keeps to
	// hand a resuming connection over to live delivery (default 256).
	RecentMessages int
	// ReplayPage is how many stored messages a replay reads at a time, and
	// queues for a connection at most (default 500).
	ReplayPage int
	// ReplayStall is how long a replay waits for a client that reads
	// nothing before cutting it off with ErrSlowConsumer (default 30s): a
	// client that stopped reading would otherwise hold a page of history
	// for as long as its connection lasts.
	ReplayStall time.Duration
	// QueueTrimDelay is how often connections' queues that grew in a burst
	// are looked at to give their memory back (default 10s; see trimmer).
	QueueTrimDelay time.Duration

	// Broker, if set, joins this hub to a cluster: stored messages, typing
	// and presence travel between nodes on subjects under Subject (default
	// DefaultSubject). NodeID names this node (required with a broker).
	Broker  Broker
	Subject string
	NodeID  string
	// HeartbeatInterval is how often this node announces its presence
	// (default 500ms); a node silent for NodeTimeout (default
	// DefaultNodeTimeout) is taken for dead and its presence dropped.
	HeartbeatInterval time.Duration
	NodeTimeout       time.Duration
	// GapWait is how long a message that arrived ahead of a gap waits for
	// the gap to fill before the store is read (default 200ms).
	GapWait time.Duration
	// PresenceBatchMin is the number of connections from which a room
	// gathers its presence joins and leaves and announces them together,
	// one diff per PresenceBatchWindow at most (defaults 100 and
	// DefaultPresenceBatchWindow); a big room does so too. Smaller rooms
	// announce each at once.
	PresenceBatchMin    int
	PresenceBatchWindow time.Duration
	// PresencePageThreshold is the number of distinct users online, or of
	// connections, from which a room is big: a joiner's state holds the
	// online count and the first PresencePageSize users of its presence,
	// not all of them, the rest is paged through on request, and changes
	// are gathered (defaults DefaultPresencePageThreshold and 100; see
	// presence.go).
	PresencePageThreshold int
	PresencePageSize      int
	// PresenceCountRate bounds the diffs a big room sends that carry a
	// changed online count and nothing else: at most PresenceCountRate
	// frames a second over all its connections, so that a room of n waits
	// n/PresenceCountRate seconds between two (never less than
	// PresenceBatchWindow). Default DefaultPresenceCountRate.
	PresenceCountRate int

	// ReadMarkFlush is how often pending read markers are stored, in one
	// batch (default DefaultReadMarkFlush); MaxPendingReadMarks bounds
	// how many wait (default DefaultMaxPendingReadMarks), and a quarter
	// of it brings the next flush forward (see readMarks).
	ReadMarkFlush       time.Duration
	MaxPendingReadMarks int
	// ReceiptsMaxMembers is the most readers a room may have for its
	// readers to get receipts (default DefaultReceiptsMaxMembers;
	// negative: no receipts); ReceiptInterval is the shortest time
	// between two receipts of one reader in one room (default
	// DefaultReceiptInterval).
	ReceiptsMaxMembers int
	ReceiptInterval    time.Duration
	// Retention is what the store's retention deletes (zero: nothing),
	// the same on every node: a mark is counted from a room's recent
	// entries only where retention cannot have taken any of them (see
	// MarkReadLive).
	Retention store.Retention

	// WireForm, if set, turns the bytes of a frame that many connections
	// receive (messages, presence diffs, typing) into the form the
	// transport sends, once for all of them; it becomes Frame.Wire.
	WireForm func([]byte) any
}

// Defaults of the Config fields that parleyd shows in its flags.
const (
	DefaultMaxQueueBytes   = 1 << 20
	DefaultMaxRoomsPerConn = 256
	DefaultSubject         = "parley"
	DefaultNodeTimeout     = 5 * time.Second

	DefaultReadMarkFlush         = 250 * time.Millisecond
	DefaultMaxPendingReadMarks   = 100000
	DefaultReceiptsMaxMembers    = 50
	DefaultReceiptInterval       = time.Second
	DefaultPresenceBatchWindow   = 250 * time.Millisecond
	DefaultPresencePageThreshold = 32
	// DefaultPresenceCountRate is the default PresenceCountRate: a room
	// of 25,000 connections or fewer sends a changed count once per diff
	// interval, one of 100,000 every 4 s (see docs/performance.md).
	DefaultPresenceCountRate = 25_000
)

func (c *Config) setDefaults() {
	if c.MaxQueueBytes <= 0 {
		c.MaxQueueBytes = DefaultMaxQueueBytes
	}
	if c.MaxRoomsPerConn <= 0 {
		c.MaxRoomsPerConn = DefaultMaxRoomsPerConn
	}
	if c.RecentMessages <= 0 {
		c.RecentMessages = 256
	}
	if c.ReplayPage <= 0 {
		c.ReplayPage = 500
	}
	if c.ReplayStall <= 0 {
		c.ReplayStall = 30 * time.Second
	}
	if c.QueueTrimDelay <= 0 {
		c.QueueTrimDelay = 10 * time.Second
	}
	if c.Subject == "" {
		c.Subject = DefaultSubject
	}
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = 500 * time.Millisecond
	}
	if c.NodeTimeout <= 0 {
		c.NodeTimeout = DefaultNodeTimeout
	}
	if c.GapWait <= 0 {
		c.GapWait = 200 * time.Millisecond
	}
	if c.PresenceBatchMin <= 0 {
		c.PresenceBatchMin = 100
	}
	if c.PresenceBatchWindow <= 0 {
		c.PresenceBatchWindow = DefaultPresenceBatchWindow
	}
	if c.PresencePageThreshold <= 0 {
		c.PresencePageThreshold = DefaultPresencePageThreshold
	}
	if c.PresencePageSize <= 0 {
		c.PresencePageSize = 100
	}
	if c.PresenceCountRate <= 0 {
		c.PresenceCountRate = DefaultPresenceCountRate
	}
	if c.ReadMarkFlush <= 0 {
		c.ReadMarkFlush = DefaultReadMarkFlush
	}
	if c.MaxPendingReadMarks <= 0 {
		c.MaxPendingReadMarks = DefaultMaxPendingReadMarks
	}
	if c.ReceiptsMaxMembers == 0 {
		c.ReceiptsMaxMembers = DefaultReceiptsMaxMembers
	}
	if c.ReceiptInterval <= 0 {
		c.ReceiptInterval = DefaultReceiptInterval
	}
}

// Hub holds the live rooms of one server.
type Hub struct {
	cfg    Config
	store  store.Store
	encode Encoder
	log    *slog.Logger
	now    func() time.Time

	writers   *writers  // write the queues of connections in push mode
	lat       latencies // where messages wait (latency.go)
	trim      trimmer   // gives back the memory of queues after a burst
	life      *lifetime // owns the goroutines the hub starts; ended by Close
	closeOnce sync.Once

	rooms     sync.Map   // name -> *room
	loadMu    sync.Mutex // serializes loading a room from the store; taken before a room's mu
	connsMu   sync.Mutex
	conns     map[*Conn]struct{}
	userConns map[string][]*Conn // the Join (tracked) connections, by user; under connsMu

	marks    readMarks // read markers waiting to be stored
	receipts receipts  // receipts being coalesced, and room sizes

	messages   atomic.Int64 // messages delivered to rooms
	deliveries atomic.Int64 // message frames queued for connections
	slowCuts   atomic.Int64 // connections cut off as slow consumers
	remoteIn   atomic.Int64 // messages received from other nodes
	gapFills   atomic.Int64 // messages read from the store to fill a gap
	closing    error        // set by EndAll: new connections end at once with it
	// Marks MarkReadLive answered from memory, and those it left to the
	// store.
	marksInMemory, marksFromStore atomic.Int64

	incarnation int64 // tells this run of the node from earlier ones
	// pubMu orders this node's presence changes: presenceSeq numbers the
	// last one published (see presencesync.go).
	pubMu       sync.Mutex
	presenceSeq uint64
	// syncMu serializes applying other nodes' presence: their changes,
	// states and the dropping of silent nodes.
	syncMu       sync.Mutex
	nodesMu      sync.Mutex
	nodes        map[string]*remoteNode
	brokerDownAt time.Time // under nodesMu; the last time the broker was seen unreachable
	// synced is closed once a starting node has asked the others for their
	// presence (or without a broker that answers requests).
	synced     chan struct{}
	syncedOnce sync.Once
}

// New returns a hub that stores messages in st and encodes events with enc.
// The hub lives until Close.
func New(cfg Config, st store.Store, enc Encoder, log *slog.Logger) *Hub {
	cfg.setDefaults()
	h := &Hub{
		cfg: cfg, store: st, encode: enc, log: log, now: time.Now,
		conns:       make(map[*Conn]struct{}),
		incarnation: time.Now().UnixNano(),
		nodes:       make(map[string]*remoteNode),
		synced:      make(chan struct{}),
		writers:     newWriters(),
		lat:         newLatencies(),
		trim:        trimmer{delay: cfg.QueueTrimDelay},
		life:        newLifetime(),
	}
	h.trim.fire = h.life.timed(h.trim.run)
	if _, ok := cfg.Broker.(requester); !ok {
		h.markSynced() // nobody to ask
	}
	return h
}

// Close ends the hub's life. It ends every connection still open (with
// the cause EndAll gave, else ErrHubClosed), cancels the work the hub
// started of its own accord — catch-up and member checks (CatchUp), gap
// fills, Run and what it runs, presence batches, queue trims — and
// returns once all of it, and the writers still writing queues, have
// returned. Call it after the transport has stopped (a write blocked on
// a client that does not read holds Close up) and before closing the
// store, which that work reads. Close may be called more than once; later
// calls return once the first has.
//
// After Close, nothing new starts: Run returns ErrHubClosed, CatchUp does
// nothing, Connect returns a connection that has already ended, and a
// gap in a room is no longer filled from the store. Calls made on a
// caller's behalf (Join, Send, Presence...) still reach the store.
func (h *Hub) Close() {
	h.closeOnce.Do(func() {
		h.connsMu.Lock()
		if h.closing == nil {
			h.closing = ErrHubClosed
		}
		cause := h.closing
		h.connsMu.Unlock()
		h.EndAll(cause)
		h.life.close()
		h.closeReadMarks()
		h.stopReceipts()
		h.writers.close()
		h.trim.close()
		// The timers left would find the lifetime closed and do nothing;
		// stopped, they do not even start a goroutine.
		h.rooms.Range(func(_, v any) bool {
			r := v.(*room)
			r.mu.Lock()
			for _, t := range []*time.Timer{r.gapTimer, r.diffTimer, r.countTimer} {
				if t != nil {
					t.Stop()
				}
			}
			r.mu.Unlock()
			return true
		})
	})
}

// shared returns a frame for data that many connections receive.
func (h *Hub) shared(data []byte, room string, seq uint64) Frame {
	f := Frame{Data: data, Room: room, Seq: seq}
	if h.cfg.WireForm != nil {
		f.Wire = h.cfg.WireForm(data)
	}
	return f
}

// Connect registers a new connection for user. A tracked connection shows
// in the presence of the rooms it joins; an untracked one only receives.
func (h *Hub) Connect(user, client string, tracked bool) *Conn {
	c := &Conn{
		ID: newConnID(), User: user, Client: client,
		hub: h, tracked: tracked,
		maxBytes: h.cfg.MaxQueueBytes,
	}
	h.connsMu.Lock()
	h.conns[c] = struct{}{}
	if tracked {
		h.addUserConnLocked(c)
	}
	closing := h.closing
	h.connsMu.Unlock()
	if closing != nil {
		c.End(closing)
	}
	return c
}

func (h *Hub) connClosed(c *Conn) {
	h.connsMu.Lock()
	delete(h.conns, c)
	if c.tracked {
		h.dropUserConnLocked(c)
	}
	h.connsMu.Unlock()
}

// EndAll ends every open connection, and every later one, with cause, as
// on shutdown.
func (h *Hub) EndAll(cause error) {
	h.connsMu.Lock()
	h.closing = cause
	conns := make([]*Conn, 0, len(h.conns))
	for c := range h.conns {
		conns = append(conns, c)
	}
	h.connsMu.Unlock()
	for _, c := range conns {
		c.End(cause)
	}
}

// ConnCount returns the number of open connections.
func (h *Hub) ConnCount() int {
	h.connsMu.Lock()
	defer h.connsMu.Unlock()
	return len(h.conns)
}

// room returns the live state of a room, loading its head from the store
// if it is not loaded, and holds it loaded until the caller calls release
// (once). It returns store.ErrRoomNotFound for an unknown room.
//
// A room is unloaded when the last of its holds is released and nobody is
// in it (see room.unloadIfIdleLocked). A room found in the map may have
// been unloaded: hold fails then, and a fresh room is loaded in its place.
func (h *Hub) room(ctx context.Context, name string) (*room, error) {
	if r, ok := h.rooms.Load(name); ok && r.(*room).hold() {
		return r.(*room), nil
	}
	h.loadMu.Lock()
	defer h.loadMu.Unlock()
	if r, ok := h.rooms.Load(name); ok && r.(*room).hold() {
		return r.(*room), nil
	}
	info, err := h.store.Room(ctx, name)
	if err != nil {
		return nil, err
	}
	r := newRoom(h, info)
	r.holds.Store(1) // before anyone else can see it
	h.rooms.Store(name, r)
	return r, nil
}

// JoinOptions says how a connection joins a room.
type JoinOptions struct {
	// After, when set, asks for the stored messages after this seq before
	// live ones.
	After *uint64
	// Ack, when set, is queued just before the room's state, once the join
	// is known to succeed.
	Ack []byte
	// Tail, when set, follows the room's state in its frame (see
	// Frame.Tail): what the joiner alone is told, such as its read
	// marker, while the state itself may be shared by many joiners.
	Tail []byte
	// Quiet, when set, keeps the connection out of the room's presence
	// for this join: it receives the room as any joiner does, but its
	// user is not online in the room through it. A room list follows the
	// rooms its user is not looking at this way, for their unread counts.
	Quiet bool
}

// Join adds c to a room. The room's state (head and presence) is queued for
// c first; with opts.After set, the stored messages after that seq follow,
// then a replayed marker, then live messages. Joining a room twice is
// ErrAlreadyJoined; a position past the head is ErrAfterSeqBeyondHead. A
// replay that fails once the state (and opts.Ack) were queued returns a
// *ReplayError, and c is out of the room again.
func (h *Hub) Join(ctx context.Context, c *Conn, name string, opts JoinOptions) error {
	// At the limit, say so before looking the room up: a client joining
	// thousands of rooms learns of the limit, not of each missing room.
	if err := c.underRoomLimit(h.cfg.MaxRoomsPerConn); err != nil {
		return err
	}
	h.awaitSynced(ctx)
	r, err := h.room(ctx, name)
	if err != nil {
		return err
	}
	defer r.release()
	if err := c.reserve(r, h.cfg.MaxRoomsPerConn); err != nil {
		return err
	}
	if err := r.join(ctx, c, opts); err != nil {
		if c.release(name) == r {
			r.leave(c)
		}
		return err
	}
	return nil
}

// CanJoinMore returns ErrTooManyRooms if c is in as many rooms as it may be.
func (h *Hub) CanJoinMore(c *Conn) error { return c.underRoomLimit(h.cfg.MaxRoomsPerConn) }

// Leave removes c from a room and announces its leave; ErrNotJoined if c
// was not in it.
func (h *Hub) Leave(c *Conn, name string) error {
	r := c.release(name)
	if r == nil {
		return fmt.Errorf("room %q: %w", name, ErrNotJoined)
	}
	r.leave(c)
	return nil
}

// Kick takes every connection of user out of a room, on this node and, via
// the broker, on every other, announcing the leaves and queuing an
// EventRemoved for each of those connections: user was removed from it.
func (h *Hub) Kick(name, user string) {
	h.kickHere(name, user)
	h.publish(Event{Kind: EventRemoved, Room: name, User: user})
}

// kickHere is Kick on this node only.
func (h *Hub) kickHere(name, user string) {
	if r, ok := h.rooms.Load(name); ok {
		r.(*room).kick(user)
	}
}

// Typing tells the others in a room that c's user started or stopped typing.
func (h *Hub) Typing(c *Conn, name string, active bool) error {
	r := c.joined(name)
	if r == nil {
		return fmt.Errorf("room %q: %w", name, ErrNotJoined)
	}
	return r.typing(c, active)
}

// Joined reports whether c is in the room.
func (h *Hub) Joined(c *Conn, name string) bool { return c.joined(name) != nil }

// Send stores a message and delivers it to the room. It returns the stored
// message; duplicate is set when a retry with the same client_msg_id found
// the original.
func (h *Hub) Send(ctx context.Context, m store.NewMessage) (msg store.Message, duplicate bool, err error) {
	r, err := h.room(ctx, m.Room)
	if err != nil {
		return store.Message{}, false, err
	}
	defer r.release()
	msg, duplicate, err = h.store.Append(ctx, m)
	sent, err := h.stored(ctx, r, msg, duplicate, err, nil)
	return sent.Message, sent.Duplicate, err
}

// StartSend is Send in two steps, like store.Store's StartAppend: it queues the
// message for the store, and wait stores it, delivers it and returns what
// Send would. Messages started one after another are stored, and so
// delivered, in that order. Call wait exactly once.
//
// from is the connection the message was sent on, nil if none. wait
// returns only once the room has queued the message for from, and so
// every message of the room before it: a reply queued for from after wait
// returns follows them. (Two sends stored together may be delivered in
// either order, and a remote message may arrive after a local one with a
// higher seq: the room holds a message until the gap before it fills.)
// from gets the message after the room's other connections, as an urgent
// frame: at the front of the writers' line, behind none of the room's
// fan-out, and likely still there when the send's reply (urgent too) is
// queued after wait returns, so that one turn writes both.
func (h *Hub) StartSend(ctx context.Context, m store.NewMessage, from *Conn) (wait func() (msg store.Message, duplicate bool, err error)) {
	held, err := h.Hold(ctx, m.Room)
	if err != nil {
		return store.Answered(store.Message{}, false, err)
	}
	sent := held.StartSend(ctx, m, from)
	return func() (store.Message, bool, error) {
		s, err := sent()
		return s.Message, s.Duplicate, err
	}
}

// Held is a room held loaded for a send, from Hold or HoldJoined: the
// caller checks the send against the room's record (Info), then either
// sends the message (StartSend) or lets the room go (Release), once.
type Held struct {
	h *Hub
	r *room
}

// Hold finds a room, loading its head from the store if it is not loaded,
// and holds it loaded for a send. It returns store.ErrRoomNotFound for an
// unknown room.
func (h *Hub) Hold(ctx context.Context, name string) (Held, error) {
	r, err := h.room(ctx, name)
	if err != nil {
		return Held{}, err
	}
	return Held{h: h, r: r}, nil
}

// HoldJoined is Hold for a room c is in, found without a lookup; false if
// c is not in it.
func (h *Hub) HoldJoined(c *Conn, name string) (Held, bool) {
	r := c.joined(name)
	if r == nil || !r.hold() { // a room c was just taken out of may be unloaded
		return Held{}, false
	}
	return Held{h: h, r: r}, true
}

// CutOff reports whether this cluster node has lost its link to the
// broker (never on a single node). While it has, a member's removal on
// another node does not take this node's connections out of the room (it
// learns of removals from the store only, see checkMembers), and the
// other nodes' presence is kept as it was (see reapNodes), which may be
// out of date until the link returns.
func (h *Hub) CutOff() bool { return h.cfg.Broker != nil && !h.brokerConnected() }

// Info returns the held room's record, as loaded when it went live.
func (x Held) Info() store.Room { return x.r.info }

// Release lets the room go without a send.
func (x Held) Release() { x.r.release() }

// Sent is a message as a send's wait answers it.
type Sent struct {
	Message store.Message
	// Duplicate is set when a retry with the same client_msg_id found the
	// original.
	Duplicate bool
	// Event is the entry's EventMessage as the Encoder encoded it for
	// the room, to be read, not modified; nil if it was not encoded (or,
	// for an entry that changed nothing, not delivered).
	Event []byte
}

// StartSend is Hub.StartSend into the held room, which it takes over: the room
// is released once the message is delivered. m.Room must be the room's
// name.
func (x Held) StartSend(ctx context.Context, m store.NewMessage, from *Conn) (wait func() (Sent, error)) {
	start := time.Now()
	stored := x.h.store.StartAppend(ctx, m)
	return func() (Sent, error) {
		// The room stays loaded until the message is delivered: a room
		// loaded afresh meanwhile could read a head that misses it.
		defer x.r.release()
		msg, duplicate, err := stored()
		x.h.lat.storeWait.Observe(since(start))
		return x.h.stored(ctx, x.r, msg, duplicate, err, from)
	}
}

// stored delivers a message the store answered for, and returns the answer.
// from, if not nil, gets the message last, and the answer waits until it
// has (see StartSend), or until from or ctx ends: then nobody is left to
// answer in order.
func (h *Hub) stored(ctx context.Context, r *room, msg store.Message, duplicate bool, err error, from *Conn) (Sent, error) {
	if err != nil {
		return Sent{}, err
	}
	if msg.Seq == 0 { // an entry that changed nothing: nothing to deliver
		return Sent{Message: msg, Duplicate: duplicate}, nil
	}
	if !duplicate {
		h.publish(Event{Kind: EventMessage, Room: msg.Room, Message: msg})
	}
	// A duplicate was delivered when it was first stored; deliver drops it
	// by seq, so handing it over again is harmless and covers a first
	// attempt that stored the message but did not get to deliver it.
	event, delivered := r.deliverFrom(msg, from)
	if delivered != nil {
		select {
		case <-delivered:
		case <-from.Done():
		case <-ctx.Done():
		}
	}
	return Sent{Message: msg, Duplicate: duplicate, Event: event}, nil
}

// Room returns a room's record: its name, visibility and creator, as
// loaded when it went live, or from the store if it is not loaded (an
// access check loads no room). It returns store.ErrRoomNotFound for an
// unknown room.
func (h *Hub) Room(ctx context.Context, name string) (store.Room, error) {
	if r, ok := h.rooms.Load(name); ok {
		return r.(*room).info, nil // never changes, even in a room being unloaded
	}
	return h.store.Room(ctx, name)
}

// Presence returns who is online in a room and the room's delivered head.
// Nobody is online in a room that is not loaded; its head is the store's.
func (h *Hub) Presence(ctx context.Context, name string) ([]Presence, uint64, error) {
	h.awaitSynced(ctx)
	if r, ok := h.rooms.Load(name); ok {
		p, head := r.(*room).snapshot()
		return p, head, nil
	}
	info, err := h.store.Room(ctx, name)
	if err != nil {
		return nil, 0, err
	}
	return nil, info.LastSeq, nil
}

// OnlineCount returns how many distinct users are online in a room that is
// live on this server, 0 otherwise.
func (h *Hub) OnlineCount(name string) int {
	r, ok := h.rooms.Load(name)
	if !ok {
		return 0
	}
	return r.(*room).onlineCount()
}

var connIDEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

func newConnID() string {
	var b [10]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return connIDEncoding.EncodeToString(b[:])
}

// Stats are the hub's counters and gauges, for metrics.
type Stats struct {
	// Conns is the number of open connections (Join and Subscribe streams).
	Conns int
	// Rooms is the number of rooms loaded on this server: rooms with
	// connections, presence or work in flight.
	Rooms int
	// QueuedBytes is the sum of every connection's outbound queue.
	QueuedBytes int64
	// Messages counts messages delivered to rooms.
	Messages int64
	// Deliveries counts message frames queued for connections.
	Deliveries int64
	// SlowConsumers counts connections cut off for falling behind.
	SlowConsumers int64
	// RemoteMessages counts messages received from other nodes.
	RemoteMessages int64
	// GapFills counts messages read from the store because the broker had
	// not delivered them in time.
	GapFills int64
	// PendingReadMarks is the number of read markers waiting to be
	// stored, or being stored.
	PendingReadMarks int
	// MarksInMemory counts the marks MarkReadLive answered, and counted,
	// without the store; MarksFromStore those it left to the store.
	MarksInMemory, MarksFromStore int64
}

// Stats returns the hub's current counters.
func (h *Hub) Stats() Stats {
	st := Stats{Messages: h.messages.Load(), Deliveries: h.deliveries.Load(), SlowConsumers: h.slowCuts.Load(),
		RemoteMessages: h.remoteIn.Load(), GapFills: h.gapFills.Load(),
		MarksInMemory: h.marksInMemory.Load(), MarksFromStore: h.marksFromStore.Load()}
	h.rooms.Range(func(any, any) bool { st.Rooms++; return true })
	h.marks.mu.Lock()
	st.PendingReadMarks = len(h.marks.pending) + len(h.marks.inflight)
	h.marks.mu.Unlock()
	h.connsMu.Lock()
	conns := make([]*Conn, 0, len(h.conns))
	for c := range h.conns {
		conns = append(conns, c)
	}
	h.connsMu.Unlock()
	st.Conns = len(conns)
	for _, c := range conns {
		st.QueuedBytes += int64(c.QueuedBytes())
	}
	return st
}
