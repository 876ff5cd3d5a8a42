package hub

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/parleychat/parley/server/internal/store"
)

// Receipts ("seen by") tell a small room's readers how far each of them
// has read it. A room is small when it has at most ReceiptsMaxMembers
// readers: a private or direct room's members, or, for a public room
// (which has no member list), the users holding a read marker in it.
// Bigger rooms have no receipts, as in Slack and Discord: an event per
// reader to every reader grows with the square of the room.
//
// When a reader's marker moves in a small room, a receipt goes to the
// room's connections on every node. Receipts are coalesced per room: the
// first move in a quiet room goes at once and opens a window of
// ReceiptInterval and a random part of up to a quarter of it (see
// windowLength); the moves made during it wait, only the newest of each
// reader kept, and go together when it ends, as one EventReceipts,
// opening the next. So a reader causes at most one receipt per room per
// interval however fast it marks, and a room whose readers all mark
// costs each of its connections one frame a window rather than one per
// reader.
type receipts struct {
	mu      sync.Mutex
	windows map[string]*receiptWindow // by room; open windows only
	sizes   map[string]roomSize       // cached answers of smallRoom
}

// receiptWindow is one room's open window: the readers who moved since
// it opened, each with their newest marker, to send when it ends.
type receiptWindow struct {
	held  []store.ReadMarker // one per reader: a small room has few
	timer *time.Timer
}

// hold keeps m as its reader's newest move in the window.
func (w *receiptWindow) hold(m store.ReadMarker) {
	for i := range w.held {
		if w.held[i].User == m.User {
			w.held[i] = m
			return
		}
	}
	w.held = append(w.held, m)
}

// roomSize is a cached answer to whether a room is small.
type roomSize struct {
	small bool
	at    time.Time
}

// Bounds of the cache of room sizes: an answer is used for roomSizeTTL
// (so a room that grows past the limit stops sending receipts within it),
// and the cache is swept when it holds roomSizesMax rooms.
const (
	roomSizeTTL  = 5 * time.Second
	roomSizesMax = 10000
)

// privateMarkerScan bounds the markers read for a private room's
// receipts: its members' and, mixed in by user id, those of users removed
// since.
const privateMarkerScan = 1000

// receiptFor sends a receipt for a stored marker of a small room now, or
// holds it until the room's window ends.
func (h *Hub) receiptFor(ctx context.Context, m store.ReadMarker) {
	if h.cfg.ReceiptsMaxMembers < 0 || !h.receiptsIn(ctx, m.Room) {
		return
	}
	rc := &h.receipts
	rc.mu.Lock()
	if w := rc.windows[m.Room]; w != nil {
		w.hold(m)
		rc.mu.Unlock()
		return
	}
	if rc.windows == nil {
		rc.windows = make(map[string]*receiptWindow)
	}
	w := &receiptWindow{}
	w.timer = time.AfterFunc(h.windowLength(), h.life.timed(func() { h.receiptWindowEnd(m.Room, w) }))
	rc.windows[m.Room] = w
	rc.mu.Unlock()
	h.sendReceipts(m.Room, []store.ReadMarker{m})
}

// windowLength returns how long a receipt window stays open:
// ReceiptInterval and a random part of up to a quarter of it. Windows
// open when a flush stores markers, many rooms' at once, so with windows
// of one length those rooms would send their receipts at the same
// instant window after window: 5,000 readers marking once a second made
// a burst of frames every flush period that held up the messages
// delivered beside it (docs/performance.md, "Read markers under load").
// The random part drifts the rooms apart; the interval stays the least
// time between two receipts of a room.
func (h *Hub) windowLength() time.Duration {
	iv := h.cfg.ReceiptInterval
	return iv + rand.N(iv/4+1)
}

// receiptWindowEnd sends the receipts held in w, if any, and keeps the
// window open for another window length; otherwise it closes it.
func (h *Hub) receiptWindowEnd(room string, w *receiptWindow) {
	rc := &h.receipts
	rc.mu.Lock()
	held := w.held
	if len(held) == 0 {
		delete(rc.windows, room)
		rc.mu.Unlock()
		return
	}
	w.held = nil
	w.timer.Reset(h.windowLength())
	rc.mu.Unlock()
	ctx, cancel := h.life.withTimeout(flushTimeout)
	defer cancel()
	if h.receiptsIn(ctx, room) { // it may have grown meanwhile
		h.sendReceipts(room, held)
	}
}

// receiptsIn reports whether a room is small enough for receipts; an
// error counting its readers is logged, and means no.
func (h *Hub) receiptsIn(ctx context.Context, room string) bool {
	small, err := h.smallRoom(ctx, room)
	if err != nil {
		h.log.Warn("count a room's readers for receipts", "room", room, "err", err)
	}
	return small
}

// sendReceipts sends receipts of a room to its connections here, as one
// event, and to the other nodes, one event each.
func (h *Hub) sendReceipts(name string, ms []store.ReadMarker) {
	if r, ok := h.rooms.Load(name); ok {
		rs := make([]Receipt, len(ms))
		for i, m := range ms {
			rs[i] = Receipt{User: m.User, Seq: m.Seq, ReadAt: m.ReadAt}
		}
		r.(*room).broadcastReceipts(rs)
	}
	for _, m := range ms {
		h.publish(Event{Kind: EventReceipt, Room: name, User: m.User, Read: &ReadMark{Seq: m.Seq, ReadAt: m.ReadAt}})
	}
}

// broadcastReceipts encodes receipts once, as one EventReceipts, and
// queues it for everyone in the room but a reader whose own receipt is
// all it holds: a reader knows how far they have read.
func (r *room) broadcastReceipts(rs []Receipt) {
	data, err := r.hub.encode(Event{Kind: EventReceipts, Room: r.name, Receipts: rs})
	if err != nil {
		r.hub.log.Error("encode receipts", "room", r.name, "err", err)
		return
	}
	f := r.hub.shared(data, "", 0)
	var only string
	if len(rs) == 1 {
		only = rs[0].User
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for c := range r.subs {
		if c.User != only {
			c.Enqueue(f)
		}
	}
}

// smallRoom reports whether a room has few enough readers for receipts,
// from the cache when it knows.
func (h *Hub) smallRoom(ctx context.Context, name string) (bool, error) {
	rc := &h.receipts
	rc.mu.Lock()
	sz, ok := rc.sizes[name]
	rc.mu.Unlock()
	if ok && h.now().Sub(sz.at) < roomSizeTTL {
		return sz.small, nil
	}
	_, err := h.Receipts(ctx, name)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, ErrTooManyReaders):
		return false, nil
	}
	return false, err
}

// Receipts returns the read markers of a small room's readers, by user
// id, or ErrTooManyReaders for a room with more than ReceiptsMaxMembers
// (see receipts). It returns store.ErrRoomNotFound for an unknown room.
func (h *Hub) Receipts(ctx context.Context, name string) ([]store.ReadMarker, error) {
	limit := h.cfg.ReceiptsMaxMembers
	if limit < 0 {
		return nil, ErrTooManyReaders
	}
	info, err := h.Room(ctx, name)
	if err != nil {
		return nil, err
	}
	var ms []store.ReadMarker
	if info.Visibility == store.Public {
		ms, err = h.store.ReadMarkers(ctx, name, limit+1)
		if err != nil {
			return nil, err
		}
		h.noteSize(name, len(ms) <= limit)
	} else {
		if ms, err = h.memberMarkers(ctx, name, limit); err != nil {
			return nil, err
		}
	}
	if len(ms) > limit {
		return nil, ErrTooManyReaders
	}
	return ms, nil
}

// ReceiptsMaxMembers returns the most readers a room may have for
// receipts; negative when receipts are off.
func (h *Hub) ReceiptsMaxMembers() int { return h.cfg.ReceiptsMaxMembers }

// memberMarkers returns the markers of a private or direct room's
// members, or ErrTooManyReaders if it has more than limit members.
func (h *Hub) memberMarkers(ctx context.Context, name string, limit int) ([]store.ReadMarker, error) {
	members, err := h.store.Members(ctx, name)
	if err != nil {
		return nil, err
	}
	h.noteSize(name, len(members) <= limit)
	if len(members) > limit {
		return nil, ErrTooManyReaders
	}
	ms, err := h.store.ReadMarkers(ctx, name, privateMarkerScan)
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(ms, func(m store.ReadMarker) bool {
		_, member := slices.BinarySearch(members, m.User)
		return !member
	}), nil
}

// noteSize caches whether a room is small.
func (h *Hub) noteSize(name string, small bool) {
	rc := &h.receipts
	now := h.now()
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.sizes == nil {
		rc.sizes = make(map[string]roomSize)
	}
	if len(rc.sizes) >= roomSizesMax {
		for n, sz := range rc.sizes {
			if now.Sub(sz.at) >= roomSizeTTL {
				delete(rc.sizes, n)
			}
		}
		if len(rc.sizes) >= roomSizesMax {
			clear(rc.sizes)
		}
	}
	rc.sizes[name] = roomSize{small: small, at: now}
}

// ReadersChanged forgets what is known of a room's size: its members
// changed, so whether it has receipts may have.
func (h *Hub) ReadersChanged(name string) {
	rc := &h.receipts
	rc.mu.Lock()
	defer rc.mu.Unlock()
	delete(rc.sizes, name)
}

// stopReceipts stops the receipt windows' timers: after Close they would
// find the hub's lifetime over and send nothing anyway.
func (h *Hub) stopReceipts() {
	rc := &h.receipts
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for k, w := range rc.windows {
		w.timer.Stop()
		delete(rc.windows, k)
	}
}
