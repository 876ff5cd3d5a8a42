package hub

import (
	"context"
	"slices"
	"time"

	"github.com/parleychat/parley/server/internal/store"
)

// A mark usually lands at or near the head of a room that is live here,
// whose last entries are in the room's ring. The hub then answers it
// without the store: it knows the user's stored marker (it stored it, read
// it, or heard of it from the node that stored it) and counts what lies
// after the new one from the ring. That is MarkReadLive; the store answers
// the rest (a room not live here, a marker the hub has not learnt, a long
// unread stretch), and the caller tells the hub what it read
// (NoteReadMark).
//
// What the hub knows of a stored marker is the stored marker at some
// moment, so never ahead of it; it is behind only when another node
// stored a marker further on and its event has not come yet (or, on one
// node, in the rare race of a read and a flush across a room's reload).
// A mark at a seq in between is then answered as moving the marker
// there; the store keeps the further one, and the flush, finding it,
// sends the marker as it is, with the store's counts, to every stream of
// the user, the marking one included, within a flush interval (see
// markerStored). The store's own answer is no better across nodes: a
// marker pending on another node is in no store.

// retentionMargin is how much younger than the retention's age a message
// must be for the ring to count it: retention may run any time on any
// node, whose clocks may differ a little.
const retentionMargin = time.Minute

// MarkReadLive moves user's read marker in room forward to seq, as
// MarkRead does, and returns the marker as it is then with user's counts
// at it, through the room's head on this node, without reading the store.
// A seq at or below the marker (stored or pending) changes nothing and
// returns the marker as it is. from is as for MarkRead. The caller checks
// that user may read the room.
//
// ok is false, and nothing is marked, when the hub cannot answer alone:
// the room is not live here, seq is beyond its head here (the store may
// know a further head), the hub has not learnt user's marker in it, or the
// ring does not hold every entry after the marker, or retention may have
// taken some of them from the store (see countAfterLocked). The caller
// then asks the store.
func (h *Hub) MarkReadLive(ctx context.Context, user, room string, seq uint64, from *Conn) (ReadMark, bool, error) {
	m, ok := h.countLive(user, room, seq)
	if !ok {
		h.marksFromStore.Add(1)
		return ReadMark{}, false, nil
	}
	if m.moved {
		if err := h.MarkRead(ctx, user, room, m.ReadMark, from); err != nil {
			return ReadMark{}, false, err
		}
	}
	h.marksInMemory.Add(1)
	return m.ReadMark, true, nil
}

// liveMark is a marker counted by countLive, and whether it moves.
type liveMark struct {
	ReadMark
	moved bool
}

// countLive is MarkReadLive's look at the room: user's marker at seq (or
// where it is, if further on) and the counts after it.
func (h *Hub) countLive(user, name string, seq uint64) (m liveMark, ok bool) {
	v, loaded := h.rooms.Load(name)
	if !loaded || !v.(*room).hold() {
		return liveMark{}, false
	}
	r := v.(*room)
	defer r.release()
	p, pending := h.PendingRead(user, name)
	r.mu.Lock()
	defer r.mu.Unlock()
	stored, known := r.marks[user]
	// A room not subscribed to the cluster misses the other nodes' entries.
	live := h.cfg.Broker == nil || r.unsub != nil
	if !known || !live || seq > r.head {
		return liveMark{}, false
	}
	cur := stored
	if pending {
		cur = max(cur, p.Seq)
	}
	m.Seq, m.HeadSeq, m.moved = max(cur, seq), r.head, seq > cur
	if m.Unread, m.Mentions, ok = r.countAfterLocked(user, m.Seq, h.now()); !ok {
		return liveMark{}, false
	}
	return m, true
}

// countAfterLocked counts, from the ring, user's unread messages in the
// room after seq through its head, and how many of them mention user, as
// store.ReadState does: messages (not edits, deletes or reactions) that
// are not user's own and not deleted; a message mentions user if the
// text of its newest edit does, or its own without an edit; in a direct
// room every unread message is a mention. No deleted message is in the
// ring: a delete cuts the ring past the message (eraseRecentLocked).
//
// ok is false when the ring does not hold every entry after seq, or when
// retention (Config.Retention) may have taken a message of the stretch
// from the store: one within retentionMargin of its age limit, or a
// stretch of more than half its message limit (the store may hold newer
// messages than the ring).
func (r *room) countAfterLocked(user string, seq uint64, now time.Time) (unread, mentions int, ok bool) {
	frames, ok := r.recentAfterLocked(seq)
	if !ok {
		return 0, 0, false
	}
	ret := r.hub.cfg.Retention
	oldest := int64(0) // the youngest a counted message may be sent
	if ret.MaxAge > 0 {
		oldest = now.Add(-ret.MaxAge + retentionMargin).UnixNano()
	}
	direct := r.info.Visibility == store.Direct
	var edited map[uint64]bool // by message: whether its newest edit mentions user
	msgs := 0
	for i := len(frames) - 1; i >= 0; i-- { // newest first: an edit before its message
		f := &frames[i]
		switch f.kind {
		case store.KindEdit:
			if edited == nil {
				edited = make(map[uint64]bool)
			}
			if _, newer := edited[f.text]; !newer {
				edited[f.text] = slices.Contains(f.mentions, user)
			}
		case store.KindMessage:
			msgs++
			if f.sender == user {
				continue
			}
			if f.sentAt < oldest {
				return 0, 0, false
			}
			unread++
			mentioned, wasEdited := edited[f.Seq]
			if !wasEdited {
				mentioned = slices.Contains(f.mentions, user)
			}
			if direct || mentioned {
				mentions++
			}
		}
	}
	if ret.MaxMessages > 0 && 2*msgs > ret.MaxMessages {
		return 0, 0, false
	}
	return unread, mentions, true
}

// NoteReadMark tells the hub that user's marker in room is stored at seq
// (or further on): what the caller read from the store, for
// MarkReadLive. It only matters while the room is loaded here.
func (h *Hub) NoteReadMark(user, name string, seq uint64) {
	if v, ok := h.rooms.Load(name); ok {
		r := v.(*room)
		r.mu.Lock()
		r.noteMarkLocked(user, seq)
		r.mu.Unlock()
	}
}

// roomMarksMin is the number of markers a room keeps in marks whatever
// its size; beyond it, twice its connections.
const roomMarksMin = 1024

// noteMarkLocked keeps seq as user's stored marker, unless a further one
// is known. A room that has learnt the markers of many more users than it
// has connections (of users marking it without joining, or who left)
// forgets them all: they are read from the store again when needed.
func (r *room) noteMarkLocked(user string, seq uint64) {
	if cur, ok := r.marks[user]; ok {
		r.marks[user] = max(cur, seq)
		return
	}
	if len(r.marks) >= max(roomMarksMin, 2*len(r.subs)) {
		r.marks = nil
	}
	if r.marks == nil {
		r.marks = make(map[string]uint64)
	}
	r.marks[user] = seq
}
