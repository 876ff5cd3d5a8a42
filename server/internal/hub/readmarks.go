package hub

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parleychat/parley/server/internal/store"
)

// Read markers are per-user state beside the rooms' logs (see
// store.ReadMarker). A reader marks often — a client marks as messages
// scroll into view — so the hub coalesces: MarkRead keeps the newest
// marker per (user, room) in memory and answers at once, and every
// ReadMarkFlush one flush stores all of them in one store.SetReadMarkers
// batch. A flood of marks from one stream costs one entry and one write
// per interval, and never touches a room's delivery.
//
// What the coalescing costs: the markers marked since the last flush are
// lost if the process dies before the next one (at most ReadMarkFlush of
// them, plus a flush that was being written). A graceful shutdown (Close)
// flushes them.
//
// After a flush each moved marker goes, as an EventReadMarker with the
// user's counts, to the user's Join connections on this node and, on the
// cluster's user subject, on every other; and a receipt may go to the
// room (see receipts.go).
type readMarks struct {
	mu       sync.Mutex
	pending  map[markKey]ReadMark // newest marker per key, not yet being stored
	inflight map[markKey]ReadMark // the batch being stored
	timer    *time.Timer          // runs flushTick; made by the first mark
	armed    bool                 // timer is set to fire
	space    chan struct{}        // closed and replaced after each flush: wakes marks waiting for room
	flushMu  sync.Mutex           // one flush at a time; taken before mu
	// stored counts the flushes that stored a batch; it moves, under mu,
	// when inflight is emptied (see ReadMarkFlushes).
	stored atomic.Uint64
}

// markKey is a user's marker in a room.
type markKey struct{ user, room string }

// readMarkWait bounds how long MarkRead waits for room in a full map of
// pending markers (the store is slow or down) before giving up.
const readMarkWait = 5 * time.Second

// MarkRead records that user has read room up to m.Seq, with user's
// counts at it if they are known (m.HeadSeq set), to be stored with the
// next flush, within Config.ReadMarkFlush. from is the connection it was
// marked on, nil if none: the marker's event skips it, which had the
// marker in its answer. A marker at or below one
// pending for the same room is ignored: markers only move forward. The
// caller checks that user may read the room and clamps m.Seq to its
// head. When Config.MaxPendingReadMarks markers wait already, it waits
// for a flush to make room, and returns ErrReadMarksBacklog if none does
// within a few seconds.
func (h *Hub) MarkRead(ctx context.Context, user, room string, m ReadMark, from *Conn) error {
	k := markKey{user, room}
	m.from = from
	mk := &h.marks
	var giveUp *time.Timer // made when the map is first found full
	for {
		mk.mu.Lock()
		cur, ok := mk.pending[k]
		if ok && cur.Seq >= m.Seq {
			mk.mu.Unlock()
			return nil
		}
		if ok || len(mk.pending) < h.cfg.MaxPendingReadMarks {
			h.putMarkLocked(k, m)
			mk.mu.Unlock()
			return nil
		}
		space := mk.spaceLocked()
		h.armFlushLocked(0)
		mk.mu.Unlock()
		if giveUp == nil {
			giveUp = time.NewTimer(readMarkWait)
			defer giveUp.Stop()
		}
		select {
		case <-space:
		case <-ctx.Done():
			return fmt.Errorf("mark read: %w", ctx.Err())
		case <-giveUp.C:
			return ErrReadMarksBacklog
		}
	}
}

// putMarkLocked stores m as k's pending marker and makes sure a flush
// comes: within ReadMarkFlush, or at once when many markers wait.
func (h *Hub) putMarkLocked(k markKey, m ReadMark) {
	mk := &h.marks
	if mk.pending == nil {
		mk.pending = make(map[markKey]ReadMark)
	}
	mk.pending[k] = m
	if len(mk.pending) >= h.earlyFlushAt() {
		h.armFlushLocked(0)
		return
	}
	h.armFlushLocked(h.cfg.ReadMarkFlush)
}

// earlyFlushAt is the number of pending markers that brings the next
// flush forward: a burst of marks across many rooms is written before
// the map gets near its cap.
func (h *Hub) earlyFlushAt() int { return max(h.cfg.MaxPendingReadMarks/4, 1) }

// armFlushLocked makes the flush timer fire within d. Once armed, a later
// call only brings it forward (d 0).
func (h *Hub) armFlushLocked(d time.Duration) {
	mk := &h.marks
	if mk.timer == nil {
		mk.timer = time.AfterFunc(d, h.life.timed(h.flushTick))
		mk.armed = true
		return
	}
	if !mk.armed || d == 0 {
		mk.timer.Reset(d)
		mk.armed = true
	}
}

// spaceLocked returns the channel closed after the next flush.
func (mk *readMarks) spaceLocked() chan struct{} {
	if mk.space == nil {
		mk.space = make(chan struct{})
	}
	return mk.space
}

// PendingRead returns user's marker in room that waits to be stored (or
// is being stored), if there is one.
func (h *Hub) PendingRead(user, room string) (ReadMark, bool) {
	k := markKey{user, room}
	mk := &h.marks
	mk.mu.Lock()
	defer mk.mu.Unlock()
	p, ok := mk.pending[k]
	if f, in := mk.inflight[k]; in && (!ok || f.Seq > p.Seq) {
		return f, true
	}
	return p, ok
}

// ReadMarkFlushes counts the flushes that have stored pending markers. A
// reader of markers from the store that then asks PendingRead whether a
// newer one waits reads this before and after: a flush may store the
// marker in between, after the store was read and before PendingRead
// looked, and then the count has moved and the store must be read again.
func (h *Hub) ReadMarkFlushes() uint64 { return h.marks.stored.Load() }

// FlushReadMarks stores every pending marker now, and returns once they
// are stored and their events sent.
func (h *Hub) FlushReadMarks(ctx context.Context) error { return h.flushReadMarks(ctx) }

// flushTick is the flush timer's work.
func (h *Hub) flushTick() {
	mk := &h.marks
	mk.mu.Lock()
	mk.armed = false
	mk.mu.Unlock()
	ctx, cancel := h.life.withTimeout(flushTimeout)
	defer cancel()
	if err := h.flushReadMarks(ctx); err != nil {
		h.log.Warn("store read markers; retrying", "err", err)
	}
	mk.mu.Lock()
	defer mk.mu.Unlock()
	switch {
	case len(mk.pending) >= h.earlyFlushAt():
		h.armFlushLocked(0)
	case len(mk.pending) > 0:
		h.armFlushLocked(h.cfg.ReadMarkFlush)
	}
}

// flushTimeout bounds one flush of read markers.
const flushTimeout = 10 * time.Second

// flushReadMarks stores the pending markers in one batch and sends the
// events of those that moved. A batch the store refuses goes back to
// pending, under any newer markers, for the next flush.
func (h *Hub) flushReadMarks(ctx context.Context) error {
	mk := &h.marks
	mk.flushMu.Lock()
	defer mk.flushMu.Unlock()
	mk.mu.Lock()
	batch := mk.pending
	mk.pending, mk.inflight = nil, batch
	mk.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	ms := make([]store.ReadMarker, 0, len(batch))
	for k, m := range batch {
		ms = append(ms, store.ReadMarker{Room: k.room, User: k.user, Seq: m.Seq})
	}
	out, err := h.store.SetReadMarkers(ctx, ms)
	for _, m := range out { // learnt before the batch stops being pending
		h.NoteReadMark(m.User, m.Room, m.Seq)
	}
	mk.mu.Lock()
	if err != nil {
		mk.restoreLocked(batch)
	} else {
		mk.stored.Add(1)
	}
	mk.inflight = nil
	if mk.space != nil {
		close(mk.space)
		mk.space = nil
	}
	mk.mu.Unlock()
	if err != nil {
		return fmt.Errorf("store %d read markers: %w", len(ms), err)
	}
	for _, m := range out {
		h.markerStored(ctx, m, batch[markKey{m.User, m.Room}])
	}
	return nil
}

// restoreLocked puts a batch that was not stored back, under the markers
// marked since.
func (mk *readMarks) restoreLocked(batch map[markKey]ReadMark) {
	if mk.pending == nil {
		mk.pending = batch
		return
	}
	for k, m := range batch {
		if cur, ok := mk.pending[k]; !ok || cur.Seq < m.Seq {
			mk.pending[k] = m
		}
	}
}

// markerStored sends the events of a stored marker: an EventReadMarker
// to the user's connections, here and on the other nodes, and a receipt
// to the room. asked is what was marked: its counts hold unless the store
// kept a marker further on (another node's), whose counts are read.
func (h *Hub) markerStored(ctx context.Context, m store.ReadMarker, asked ReadMark) {
	rm := asked
	rm.ReadAt, rm.from = m.ReadAt, nil
	skip := asked.from
	if m.Seq != asked.Seq || !asked.counted() {
		skip = nil // news to every connection
		rs, err := h.store.ReadState(ctx, m.User, m.Room)
		if err != nil {
			h.log.Warn("read state for a read marker event", "room", m.Room, "err", err)
			return
		}
		rm = ReadMark{Seq: m.Seq, ReadAt: m.ReadAt, Unread: rs.Unread, Mentions: rs.Mentions, HeadSeq: rs.HeadSeq}
	}
	ev := Event{Kind: EventReadMarker, Room: m.Room, User: m.User, Read: &rm}
	h.deliverToUser(ev, skip)
	h.publishUser(ev)
	h.receiptFor(ctx, m)
}

// deliverToUser queues a user event, encoded once, for each of the
// user's Join connections on this node but skip; an event without a user
// goes to every Join connection.
func (h *Hub) deliverToUser(ev Event, skip *Conn) {
	h.connsMu.Lock()
	var conns []*Conn
	if ev.User == "" {
		for _, cs := range h.userConns {
			conns = append(conns, cs...)
		}
	} else {
		conns = slices.Clone(h.userConns[ev.User])
	}
	h.connsMu.Unlock()
	conns = slices.DeleteFunc(conns, func(c *Conn) bool { return c == skip })
	if len(conns) == 0 {
		return
	}
	data, err := h.encode(ev)
	if err != nil {
		h.log.Error("encode a user event", "kind", ev.Kind, "err", err)
		return
	}
	f := h.shared(data, "", 0)
	for _, c := range conns {
		c.Enqueue(f)
	}
}

// addUserConn and dropUserConn keep the index of Join connections by
// user, under connsMu.
func (h *Hub) addUserConnLocked(c *Conn) {
	if h.userConns == nil {
		h.userConns = make(map[string][]*Conn)
	}
	h.userConns[c.User] = append(h.userConns[c.User], c)
}

func (h *Hub) dropUserConnLocked(c *Conn) {
	conns := slices.DeleteFunc(h.userConns[c.User], func(x *Conn) bool { return x == c })
	if len(conns) == 0 {
		delete(h.userConns, c.User)
		return
	}
	h.userConns[c.User] = conns
}

// closeReadMarks stores what is pending, once the hub's own work has
// stopped: the markers acknowledged since the last flush survive a
// graceful shutdown.
func (h *Hub) closeReadMarks() {
	mk := &h.marks
	mk.mu.Lock()
	if mk.timer != nil {
		mk.timer.Stop()
	}
	mk.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), flushTimeout)
	defer cancel()
	if err := h.flushReadMarks(ctx); err != nil {
		h.log.Error("store read markers at shutdown: the newest are lost", "err", err)
	}
}

func (h *Hub) userSubject() string { return h.cfg.Subject + ".user" }

// publishUser sends a user event to the other nodes. One subject carries
// every user's events: each node hears all of them and keeps those of
// its connections' users. A subject per user would spare the others the
// bytes, at the price of a subscription per connected user on every node
// and of escaping user ids (NATS splits subjects at '.'); a marker event
// is a few hundred bytes, at most one per ReadMarkFlush per reader and
// room.
func (h *Hub) publishUser(ev Event) {
	if h.cfg.Broker == nil {
		return
	}
	ev.Version, ev.Node = EventVersion, h.cfg.NodeID
	data, err := json.Marshal(ev)
	if err == nil {
		err = h.cfg.Broker.Publish(h.userSubject(), data)
	}
	if err != nil {
		h.log.Warn("publish a user event to the cluster", "kind", ev.Kind, "err", err)
	}
}

// onUserWire delivers a user event another node published.
func (h *Hub) onUserWire(data []byte) {
	var ev Event
	if err := json.Unmarshal(data, &ev); err != nil || ev.Version != EventVersion {
		h.log.Warn("skip a cluster user event this node cannot read", "version", ev.Version, "err", err)
		return
	}
	if ev.Node == h.cfg.NodeID {
		return
	}
	switch {
	case ev.Kind == EventReadMarker && ev.Read != nil && ev.User != "":
		h.NoteReadMark(ev.User, ev.Room, ev.Read.Seq)
	case ev.Kind == EventRoomVisible && ev.Room != "":
	default:
		return
	}
	h.deliverToUser(ev, nil)
}

// RoomVisible tells user's Join connections, on every node, that a room
// became visible to them, so that a room list lists the rooms again
// instead of polling for new ones; with user "", every Join connection's
// (a public room was created). A room list that hears of it lists once;
// the event is a few dozen bytes.
func (h *Hub) RoomVisible(room, user string) {
	ev := Event{Kind: EventRoomVisible, Room: room, User: user}
	h.deliverToUser(ev, nil)
	h.publishUser(ev)
}
