package hub

import (
	"context"
	"fmt"
	"maps"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parleychat/parley/server/internal/store"
)

// room is a room's live state: who is in it, its presence, and the seq of
// the last message it delivered. It is guarded by its own lock alone; a
// conn's lock may be taken while holding it, never the other way round
// (the lock order is written down in the package comment).
//
// A room is loaded while anyone uses it and unloaded when nobody does
// (see unloadIfIdleLocked), so the hub's memory follows live rooms, not
// every room a request ever touched.
type room struct {
	name string
	info store.Room // as loaded; LastSeq and LastMessageAt are not kept current
	hub  *Hub

	mu       sync.Mutex
	head     uint64                   // seq of the last delivered message
	pending  map[uint64]*pendingEntry // stored messages that arrived ahead of a gap
	recent   []recentFrame            // ring of the last delivered entries' frames
	subs     map[*Conn]bool           // true once the conn receives live messages
	presence map[string]metas         // by user
	unsub    func()                   // ends the room's broker subscription; nil when not subscribed
	gapTimer *time.Timer              // armed while messages wait for a gap to fill
	// metaCount counts the metas in presence: the connections online.
	metaCount int
	// marks are the stored read markers of the users whose marker this
	// node learnt while the room was loaded, by user (see
	// Hub.MarkReadLive): each is the stored marker at some moment, so
	// never ahead of it.
	marks map[string]uint64

	// holds counts the callers of Hub.room that have not released the room
	// yet; -1 once the room is unloaded, when a hold fails. Atomic, so that
	// a send holds a room without waiting for the room's fan-out.
	holds atomic.Int32
	// The most entries subs and presence held since they were last made:
	// Go maps keep the space of their peak (see shrinkMap).
	subsPeak, presencePeak int

	// In a large room, presence changes wait here to be announced together
	// (see broadcastDiffLocked), at most one per meta; diffTimer is armed
	// while they wait. leftOf holds the metas whose leave waits, by user.
	waiting   map[changeKey]presenceChange
	leftOf    map[string]metas
	diffTimer *time.Timer
	// shown are the users of the presence the room's connections were told
	// of (the announced presence), sorted: pages of presence are cut from
	// it by user id.
	shown []string
	// paged is set while the room's connections hold only the first page
	// of the announced presence (the room was big when it was last
	// announced), not all of it; see flushDiffs.
	paged bool
	// sentOnline is the online count of the last diff sent, sentAt when a
	// diff last carried a change of it; countTimer is armed while a count
	// that changed waits to be sent alone (see flushDiffs).
	sentOnline int
	sentAt     time.Time
	countTimer *time.Timer

	// announced counts presence diffs sent. In a large room the joined
	// state (what was announced, and the head) changes only with it or with
	// the head, so joiners in between share one encoding of it.
	announced uint64
	joined    []byte    // the shared joined state; nil when there is none
	joinedKey [3]uint64 // announced, head and whether the joined state was paged when encoded
}

// pendingEntry is a stored message that waits for a gap before it to fill.
type pendingEntry struct {
	msg  store.Message
	from *Conn         // the connection it was sent on, if any (see deliverFrom)
	done chan struct{} // closed once the room has delivered it; nil if nobody waits
}

// recentFrame is a frame of the room's ring of recent entries, and the
// message whose text it carries: a message's own seq, an edit's target,
// 0 for an entry without text. A message or an edit keeps, besides, what
// counting unread messages needs (see countAfterLocked).
type recentFrame struct {
	Frame
	text     uint64
	kind     store.Kind
	sender   string   // of a message or an edit
	mentions []string // of a message's or an edit's text
	sentAt   int64    // of a message, in Unix nanoseconds
}

// newRecentFrame is the ring's frame f of entry m.
func newRecentFrame(f Frame, m store.Message) recentFrame {
	rf := recentFrame{Frame: f, text: textOf(m), kind: m.Kind}
	if rf.text != 0 {
		rf.sender, rf.mentions, rf.sentAt = m.Sender, m.Mentions, m.SentAt.UnixNano()
	}
	return rf
}

// textOf is the message whose text m carries, 0 if none.
func textOf(m store.Message) uint64 {
	switch m.Kind {
	case store.KindMessage:
		return m.Seq
	case store.KindEdit:
		return m.TargetSeq
	}
	return 0
}

func newRoom(h *Hub, info store.Room) *room {
	return &room{
		name: info.Name, info: info, hub: h, head: info.LastSeq,
		subs:     make(map[*Conn]bool),
		presence: make(map[string]metas),
	}
}

// hold keeps the room loaded until release; false if it was unloaded.
func (r *room) hold() bool {
	for {
		n := r.holds.Load()
		if n < 0 {
			return false
		}
		if r.holds.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// release ends a hold taken by Hub.room. The last hold of a room nobody is
// in ends its broker subscription and unloads it.
func (r *room) release() {
	if r.holds.Add(-1) > 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.goQuietLocked()
	r.unloadIfIdleLocked()
}

// idleLocked reports whether nothing needs the room: no connection in or
// joining it, no presence (a remote node's included), no send or request
// holding it, no message waiting for a gap to fill, no presence change
// waiting to be announced.
func (r *room) idleLocked() bool {
	return r.holds.Load() == 0 && len(r.subs) == 0 && len(r.presence) == 0 &&
		len(r.pending) == 0 && r.gapTimer == nil && len(r.waiting) == 0 && r.diffTimer == nil && r.countTimer == nil
}

// unloadIfIdleLocked takes an idle room out of the hub; the next request
// for it loads it afresh from the store, with the head the store has then.
// Nothing is lost: an idle room holds no state the store does not have.
//
// A join or send that races with the unload either held the room first
// (then it is not idle, and the swap of holds from 0 to -1 fails) or holds
// it after: then its hold fails, and Hub.room loads a fresh room, which
// the unload's CompareAndDelete leaves in the map.
func (r *room) unloadIfIdleLocked() {
	if !r.idleLocked() || !r.holds.CompareAndSwap(0, -1) {
		return
	}
	if r.unsub != nil {
		r.unsub()
		r.unsub = nil
	}
	r.hub.rooms.CompareAndDelete(r.name, r)
}

// mapShrinkMin is the peak below which a room's maps are kept as they are.
const mapShrinkMin = 64

// shrinkMap returns m, or a copy of it once it holds a quarter or less of
// its peak: a Go map never gives back the space of the most entries it
// held, so a room that once had thousands of connections and now a few
// would keep the thousands' buckets. Each copy costs at most a quarter of
// the deletions since the last one.
func shrinkMap[K comparable, V any](m map[K]V, peak *int) map[K]V {
	if *peak < mapShrinkMin || len(m) > *peak/4 {
		return m
	}
	fresh := make(map[K]V, len(m))
	maps.Copy(fresh, m)
	*peak = len(fresh)
	return fresh
}

// grewLocked notes the size of the room's maps after entries were added.
func (r *room) grewLocked() {
	r.subsPeak = max(r.subsPeak, len(r.subs))
	r.presencePeak = max(r.presencePeak, len(r.presence))
}

// shrankLocked replaces the room's maps that fell far below their peak.
func (r *room) shrankLocked() {
	r.subs = shrinkMap(r.subs, &r.subsPeak)
	r.presence = shrinkMap(r.presence, &r.presencePeak)
}

// deliver hands a stored message to every live subscriber, in seq order:
// a message ahead of a gap waits until the gap is filled, one already
// delivered is dropped.
func (r *room) deliver(m store.Message) { r.deliverFrom(m, nil) }

// deliverFrom is deliver where from, if not nil, gets the message after
// the room's other connections (see Hub.StartSend). It returns the message's
// encoded event (nil if encoding failed), and a nil channel once the
// message is delivered or dropped. A message from a connection that must
// wait for a gap returns a channel instead, closed once the room has
// delivered it: until then its sender must not be told it was sent, for
// the sender takes the answer's seq as its position in the room and would
// skip the messages of the gap.
func (r *room) deliverFrom(m store.Message, from *Conn) (event []byte, delivered <-chan struct{}) {
	data, err := r.hub.encode(Event{Kind: EventMessage, Room: r.name, Message: m})
	if err != nil {
		r.hub.log.Error("encode message", "room", r.name, "seq", m.Seq, "err", err)
		return nil, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case m.Seq <= r.head:
		return data, nil
	case m.Seq > r.head+1:
		return data, r.holdLocked(m, from)
	}
	r.fanOutLocked(r.hub.shared(data, r.name, m.Seq), m, from)
	r.deliverPendingLocked()
	return data, nil
}

// deliverPendingLocked delivers the held messages that follow the head
// without a gap.
func (r *room) deliverPendingLocked() {
	for {
		next, ok := r.pending[r.head+1]
		if !ok {
			return
		}
		delete(r.pending, next.msg.Seq)
		data, err := r.hub.encode(Event{Kind: EventMessage, Room: r.name, Message: next.msg})
		if err != nil {
			r.hub.log.Error("encode message", "room", r.name, "seq", next.msg.Seq, "err", err)
			next.release()
			return
		}
		r.fanOutLocked(r.hub.shared(data, r.name, next.msg.Seq), next.msg, next.from)
		next.release()
	}
}

// skipPrunedLocked moves the head past the seqs below the first held
// message that the store no longer holds, and delivers what waited behind
// them. The caller has read every entry of the store between the head and
// below before: a seq is stored only after every lower one of its room,
// so one missing below a stored (held) entry was pruned by retention
// (pruning a message prunes its later edits and reactions) and will never
// come.
func (r *room) skipPrunedLocked(before uint64) {
	first := uint64(0)
	for seq := range r.pending {
		if first == 0 || seq < first {
			first = seq
		}
	}
	if first == 0 || first <= r.head+1 || first > before {
		return
	}
	r.hub.log.Info("skip seqs the store no longer holds", "room", r.name, "from", r.head+1, "to", first-1)
	// Retention took the gap's seqs, and may have taken the ring's (all
	// below them) too: the ring no longer tells what the store holds, for
	// a resume or for counting unread messages.
	clear(r.recent)
	r.recent = r.recent[:0]
	r.head = first - 1
	r.deliverPendingLocked()
}

// holdLocked keeps a message that arrived ahead of a gap until the gap is
// filled, and returns the channel its sender waits on (nil without one).
// A message held already (a retried send, a broker's redelivery) keeps
// its first sender and shares its channel.
func (r *room) holdLocked(m store.Message, from *Conn) <-chan struct{} {
	if r.pending == nil {
		r.pending = make(map[uint64]*pendingEntry)
	}
	p := r.pending[m.Seq]
	if p == nil {
		p = &pendingEntry{msg: m}
		r.pending[m.Seq] = p
	}
	if p.from == nil {
		p.from = from
	}
	if from != nil && p.done == nil {
		p.done = make(chan struct{})
	}
	r.scheduleGapFillLocked()
	if from == nil {
		return nil
	}
	return p.done
}

// release tells whoever waits for the message that the room is done with it.
func (p *pendingEntry) release() {
	if p.done != nil {
		close(p.done)
	}
}

// fanOutLocked queues f, the frame of entry m, for every live subscriber,
// last after the others, and keeps it in the ring of recent frames.
func (r *room) fanOutLocked(f Frame, m store.Message, last *Conn) {
	r.head = f.Seq
	// The ring grows as entries come, so an idle room costs nothing.
	rf := newRecentFrame(f, m)
	if n := r.hub.cfg.RecentMessages; len(r.recent) == n {
		copy(r.recent, r.recent[1:])
		r.recent[n-1] = rf
	} else {
		r.recent = append(r.recent, rf)
	}
	if m.Kind == store.KindDelete {
		r.eraseRecentLocked(m.TargetSeq)
	}
	n := 0
	for c, live := range r.subs {
		if live && c != last && c.Enqueue(f) {
			n++
		}
	}
	if last != nil && r.subs[last] && last.EnqueueUrgent(f) {
		n++
	}
	r.hub.messages.Add(1)
	r.hub.deliveries.Add(int64(n))
}

// eraseRecentLocked takes the text of a deleted message out of the ring:
// it drops every frame up to the last one that carries the message's text
// (the message's own, or an edit's), so a resume from before them reads
// the store, where the delete erased it. Re-encoding those frames with
// the text erased would keep more of the ring, but means the hub making
// the store's tombstones itself; dropping a prefix keeps the ring a run
// of consecutive seqs, which resume relies on.
func (r *room) eraseRecentLocked(target uint64) {
	last := -1
	for i, f := range r.recent {
		if f.text == target {
			last = i
		}
	}
	if last < 0 {
		return
	}
	n := copy(r.recent, r.recent[last+1:])
	clear(r.recent[n:])
	r.recent = r.recent[:n]
}

// broadcastLocked sends an encoded event to every subscriber but skip.
func (r *room) broadcastLocked(f Frame, skip *Conn) {
	for c := range r.subs {
		if c != skip {
			c.Enqueue(f)
		}
	}
}

// join adds c to the room and queues the room's state for it. With after
// set, it replays the stored messages after that seq before c receives
// live ones.
func (r *room) join(ctx context.Context, c *Conn, opts JoinOptions) error {
	if err := r.goLive(ctx); err != nil {
		return err
	}
	r.mu.Lock()
	if opts.After != nil && *opts.After > r.head {
		head := r.head
		r.mu.Unlock()
		return fmt.Errorf("%w: after_seq %d, head %d", ErrAfterSeqBeyondHead, *opts.After, head)
	}
	if err := r.addLocked(c, opts); err != nil {
		r.mu.Unlock()
		return err
	}
	r.mu.Unlock()
	if opts.After == nil {
		return nil
	}
	if err := r.replay(ctx, c, *opts.After); err != nil {
		return &ReplayError{Room: r.name, Err: err}
	}
	return nil
}

// replay queues the stored messages after seq for c, then switches c to
// live delivery with no gap and no duplicate: the store is read outside the
// room's lock up to a head seen under it, and the last stretch, delivered
// while the store was being read, comes from the ring of recent frames under
// the lock, in the same critical section that makes c live.
//
// The store is always read first: it alone knows what retention removed, so
// the ring only serves messages delivered while the store was being read.
func (r *room) replay(ctx context.Context, c *Conn, pos uint64) error {
	for read := false; ; read = true {
		r.mu.Lock()
		head := r.head
		if _, in := r.subs[c]; !in {
			r.mu.Unlock()
			return fmt.Errorf("room %q: %w", r.name, ErrNotJoined)
		}
		if frames, ok := r.recentAfterLocked(pos); ok && (read || pos == head) {
			for _, f := range frames {
				if !c.Enqueue(f.Frame) {
					r.mu.Unlock()
					return c.Err()
				}
			}
			r.subs[c] = true
			err := r.enqueueReplayedLocked(c, head)
			r.mu.Unlock()
			return err
		}
		r.mu.Unlock()
		var err error
		if pos, err = r.replayStored(ctx, c, pos, head); err != nil {
			return err
		}
	}
}

// recentAfterLocked returns the recent frames after pos if the ring holds
// every entry from pos+1 to the head.
func (r *room) recentAfterLocked(pos uint64) ([]recentFrame, bool) {
	if pos == r.head {
		return nil, true
	}
	if len(r.recent) == 0 || r.recent[0].Seq > pos+1 {
		return nil, false
	}
	i := sort.Search(len(r.recent), func(i int) bool { return r.recent[i].Seq > pos })
	return r.recent[i:], true
}

func (r *room) enqueueReplayedLocked(c *Conn, through uint64) error {
	data, err := r.hub.encode(Event{Kind: EventReplayed, Room: r.name, ThroughSeq: through})
	if err != nil {
		return fmt.Errorf("encode replayed: %w", err)
	}
	if !c.Enqueue(Frame{Data: data}) {
		return c.Err()
	}
	return nil
}

// replayStored queues stored messages in (pos, head] and returns the new
// position. It reads a page at a time; when the client's queue is full it
// drops what it read but could not queue, waits for the client, and reads
// again from where it got to, asking for about twice what fit: a replay
// waiting for a slow client holds none of the history it read.
func (r *room) replayStored(ctx context.Context, c *Conn, pos, head uint64) (uint64, error) {
	limit := r.hub.cfg.ReplayPage
	for pos < head {
		msgs, err := r.hub.store.Messages(ctx, r.name, store.Query{After: pos, Before: head + 1, Limit: limit})
		if err != nil {
			return pos, fmt.Errorf("replay room %q: %w", r.name, err)
		}
		if len(msgs) == 0 {
			// Retention removed the rest: nothing more to replay.
			return head, nil
		}
		fit := 0
		for _, m := range msgs {
			data, err := r.hub.encode(Event{Kind: EventMessage, Room: r.name, Message: m})
			if err != nil {
				return pos, fmt.Errorf("encode message: %w", err)
			}
			queued, err := c.enqueueReplay(Frame{Data: data, Room: r.name, Seq: m.Seq})
			if err != nil {
				return pos, err
			}
			if !queued {
				break
			}
			pos, fit = m.Seq, fit+1
		}
		if fit == len(msgs) {
			limit = r.hub.cfg.ReplayPage
			continue
		}
		limit = min(r.hub.cfg.ReplayPage, max(2*fit, replayMinRead))
		if err := c.awaitRoom(ctx); err != nil {
			return pos, err
		}
	}
	return pos, nil
}

// replayMinRead is the fewest stored messages a replay reads at a time.
const replayMinRead = 16

// leave removes c from the room and announces its presence leave.
func (r *room) leave(c *Conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.subs[c]; !ok {
		return
	}
	delete(r.subs, c)
	defer r.unloadIfIdleLocked()
	defer r.shrankLocked()
	r.goQuietLocked()
	if !c.tracked {
		return
	}
	meta, ok := r.presence[c.User].get(c.ID)
	if !ok {
		return
	}
	r.removeMetaLocked(c.User, c.ID)
	r.broadcastDiffLocked(nil, []Presence{{User: c.User, Metas: []Meta{meta}}}, c)
	r.hub.publishPresence(r.name, c.User, meta, false)
}

// kick takes user's connections out of the room and tells them why.
func (r *room) kick(user string) {
	notice, err := r.hub.encode(Event{Kind: EventRemoved, Room: r.name})
	if err != nil {
		r.hub.log.Error("encode a removal notice", "room", r.name, "err", err)
	}
	r.mu.Lock()
	var victims []*Conn
	for c := range r.subs {
		if c.User == user {
			victims = append(victims, c)
		}
	}
	r.mu.Unlock()
	for _, c := range victims {
		if c.release(r.name) == r {
			r.leave(c)
			switch {
			case !c.tracked: // a Subscribe stream: no frame can say why
				c.End(fmt.Errorf("%w %s", ErrRemoved, r.name))
			case notice != nil:
				c.Enqueue(Frame{Data: notice})
			}
		}
	}
}

// typing tells everyone in the room but c that c's user is typing or stopped.
func (r *room) typing(c *Conn, active bool) error {
	data, err := r.hub.encode(Event{Kind: EventTyping, Room: r.name, User: c.User, Active: active})
	if err != nil {
		return fmt.Errorf("encode typing: %w", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.subs[c]; !ok {
		return fmt.Errorf("room %q: %w", r.name, ErrNotJoined)
	}
	r.broadcastLocked(r.hub.shared(data, "", 0), c)
	r.hub.publish(Event{Kind: EventTyping, Room: r.name, User: c.User, Active: active})
	return nil
}
