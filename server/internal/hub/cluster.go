package hub

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/parleychat/parley/server/internal/store"
)

// Broker carries live events between the nodes of a cluster: stored
// messages, typing, and presence. A node hears only what other nodes
// publish, never its own events.
type Broker interface {
	// Publish sends data to every subscriber of subject on other nodes.
	Publish(subject string, data []byte) error
	// Subscribe calls fn, one call at a time in arrival order, with every
	// message published on subject, until the returned func is called.
	Subscribe(subject string, fn func(data []byte)) (unsubscribe func(), err error)
}

// linkedBroker is a Broker that can tell whether it is connected now. While
// it is not, events from other nodes are missed, kicks among them.
type linkedBroker interface {
	Connected() bool
}

// flusher is a Broker that can wait until the subscriptions made so far
// are in effect (NATS subscribes asynchronously).
type flusher interface {
	Flush(ctx context.Context) error
}

// subscribeConfirmWait bounds how long a room going live waits for the
// broker to confirm its subscription.
const subscribeConfirmWait = 2 * time.Second

// confirmSubscribed waits until the broker has this node's subscriptions,
// without the room's lock. A broker that cannot confirm (unreachable)
// does not fail the join: the room goes live degraded, and the catch-up
// from the store when the broker returns brings in what it missed.
func (h *Hub) confirmSubscribed(ctx context.Context, room string) {
	f, ok := h.cfg.Broker.(flusher)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, subscribeConfirmWait)
	defer cancel()
	if err := f.Flush(ctx); err != nil {
		h.log.Warn("room goes live without the broker's confirmation; what it misses comes from the store", "room", room, "err", err)
	}
}

// brokerConnected reports whether the broker is connected, as far as it
// can tell.
func (h *Hub) brokerConnected() bool {
	lb, ok := h.cfg.Broker.(linkedBroker)
	return !ok || lb.Connected()
}

// remoteNode is what this node knows of another.
type remoteNode struct {
	incarnation int64
	seq         uint64 // the number of its last presence change applied here
	lastSeen    time.Time
}

func (h *Hub) roomSubject(room string) string { return h.cfg.Subject + ".room." + room }

// publish sends a room event to the other nodes.
func (h *Hub) publish(ev Event) {
	if h.cfg.Broker == nil {
		return
	}
	ev.Version, ev.Node = EventVersion, h.cfg.NodeID
	data, err := json.Marshal(ev)
	if err == nil {
		err = h.cfg.Broker.Publish(h.roomSubject(ev.Room), data)
	}
	if err != nil {
		h.log.Warn("publish to the cluster", "room", ev.Room, "kind", ev.Kind, "err", err)
	}
}

// Run publishes this node's heartbeats and presence state, follows the
// other nodes', and drops the presence of a node whose heartbeats stop
// while the broker works, until ctx ends or the hub is closed (Close
// waits for it to return). It first asks the other nodes for their
// presence (see awaitSynced). Without a broker it returns at once; after
// Close, with ErrHubClosed.
func (h *Hub) Run(ctx context.Context) error {
	defer h.markSynced()
	if h.cfg.Broker == nil {
		return nil
	}
	if !h.life.enter() {
		return ErrHubClosed
	}
	defer h.life.exit()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(h.life.ctx, cancel)()
	unsub, err := h.cfg.Broker.Subscribe(h.presenceSubject(), func(data []byte) { h.onNodeMsg(ctx, data) })
	if err != nil {
		return fmt.Errorf("subscribe to cluster presence: %w", err)
	}
	defer unsub()
	unsubUsers, err := h.cfg.Broker.Subscribe(h.userSubject(), h.onUserWire)
	if err != nil {
		return fmt.Errorf("subscribe to cluster user events: %w", err)
	}
	defer unsubUsers()
	if rq, ok := h.cfg.Broker.(requester); ok {
		unserve, err := rq.Serve(h.stateSubject(), h.answerState)
		if err != nil {
			return fmt.Errorf("serve presence state: %w", err)
		}
		defer unserve()
		if f, ok := h.cfg.Broker.(flusher); ok {
			fctx, cancel := context.WithTimeout(ctx, subscribeConfirmWait)
			_ = f.Flush(fctx) // unconfirmed, the others' heartbeats bring their states later
			cancel()
		}
		h.gatherStates(ctx)
	}
	h.markSynced()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { h.followWhileCut(ctx) })
	t := time.NewTicker(h.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		h.sendHeartbeat()
		if !h.brokerConnected() {
			h.noteBrokerDown()
			h.checkMembers(ctx)
		}
		h.reapNodes(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// markSynced lets joins and presence reads waiting for the first sync go.
func (h *Hub) markSynced() { h.syncedOnce.Do(func() { close(h.synced) }) }

// noteBrokerDown records that the broker was unreachable now: the time a
// node's heartbeats may be missing before it is taken for dead counts
// from the broker's return, not from its last heartbeat.
func (h *Hub) noteBrokerDown() {
	h.nodesMu.Lock()
	h.brokerDownAt = h.now()
	h.nodesMu.Unlock()
}

// brokerReachable reports whether the broker answers now: a link that
// looks up but is blackholed is not, and the heartbeats missing then
// say nothing about the other nodes.
func (h *Hub) brokerReachable(ctx context.Context) bool {
	if !h.brokerConnected() {
		return false
	}
	f, ok := h.cfg.Broker.(flusher)
	if !ok {
		return true
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	return f.Flush(ctx) == nil
}

// reapNodes drops the presence of nodes not heard from within NodeTimeout
// of broker time. While the broker is unreachable a dead node cannot be
// told from a dead broker, so nobody is dropped: remote presence stays as
// it was, and is reconciled from the nodes' heartbeats once the broker is
// back (a node that died meanwhile is dropped NodeTimeout after that).
func (h *Hub) reapNodes(ctx context.Context) {
	silent := func() (ids []string) {
		now := h.now()
		h.nodesMu.Lock()
		defer h.nodesMu.Unlock()
		for id, n := range h.nodes {
			if now.Sub(n.lastSeen) > h.cfg.NodeTimeout && now.Sub(h.brokerDownAt) > h.cfg.NodeTimeout {
				ids = append(ids, id)
			}
		}
		return ids
	}
	if len(silent()) == 0 {
		return
	}
	if !h.brokerReachable(ctx) {
		h.noteBrokerDown()
		return
	}
	h.syncMu.Lock()
	defer h.syncMu.Unlock()
	dead := silent()
	h.nodesMu.Lock()
	for _, id := range dead {
		delete(h.nodes, id)
	}
	h.nodesMu.Unlock()
	for _, id := range dead {
		h.log.Warn("cluster node stopped sending heartbeats; dropping its presence", "node", id)
		h.rooms.Range(func(_, v any) bool {
			v.(*room).syncNode(id, nil)
			return true
		})
	}
}

// goLive subscribes the room to the cluster's events before its first
// local subscriber, and brings its head up to the store's: while nobody
// here was in the room, messages went by without this node. The head is
// read once the broker has the subscription: a message stored after the
// read, but published before the broker knew of this node, would be
// missed until a later one revealed the gap.
func (r *room) goLive(ctx context.Context) error {
	b := r.hub.cfg.Broker
	if b == nil {
		return nil
	}
	r.mu.Lock()
	if r.unsub != nil {
		r.mu.Unlock()
		return nil
	}
	unsub, err := b.Subscribe(r.hub.roomSubject(r.name), r.onWire)
	if err != nil {
		r.mu.Unlock()
		return fmt.Errorf("subscribe to room %q: %w", r.name, err)
	}
	r.unsub = unsub
	r.mu.Unlock()
	r.hub.confirmSubscribed(ctx, r.name)
	info, err := r.hub.store.Room(ctx, r.name)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if info.LastSeq > r.head {
		r.head = info.LastSeq
		clear(r.recent)
		r.recent = r.recent[:0]
		for seq, p := range r.pending {
			if seq <= r.head {
				delete(r.pending, seq)
				p.release()
			}
		}
	}
	return nil
}

// goQuietLocked unsubscribes from the cluster when nobody here is in the
// room or joining it (a join holds the room from before goLive until its
// connection is in subs).
func (r *room) goQuietLocked() {
	if r.unsub != nil && len(r.subs) == 0 && r.holds.Load() == 0 {
		r.unsub()
		r.unsub = nil
	}
}

// onWire applies an event another node published about this room.
func (r *room) onWire(data []byte) {
	var ev Event
	if err := json.Unmarshal(data, &ev); err != nil || ev.Version != EventVersion {
		r.hub.log.Warn("skip a cluster event this node cannot read", "room", r.name, "version", ev.Version, "err", err)
		return
	}
	if ev.Node == r.hub.cfg.NodeID || ev.Room != r.name {
		return
	}
	switch ev.Kind {
	case EventMessage:
		if ev.Message.Room == r.name {
			r.hub.remoteIn.Add(1)
			r.deliver(ev.Message)
		}
	case EventTyping:
		data, err := r.hub.encode(Event{Kind: EventTyping, Room: r.name, User: ev.User, Active: ev.Active})
		if err == nil {
			r.mu.Lock()
			r.broadcastLocked(r.hub.shared(data, "", 0), nil)
			r.mu.Unlock()
		}
	case EventRemoved:
		// The room's subject reaches every node where the room is live,
		// which is every node where the user may have a connection in it.
		r.kick(ev.User)
	case EventReceipt:
		if ev.Read != nil {
			r.broadcastReceipts([]Receipt{{User: ev.User, Seq: ev.Read.Seq, ReadAt: ev.Read.ReadAt}})
		}
	}
}

// applyRemote adds or removes another node's meta and announces it here.
func (r *room) applyRemote(user string, m Meta, join bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, had := r.presence[user].get(m.ConnID)
	switch {
	case join && !had:
		r.addMetaLocked(user, m)
		r.grewLocked()
		r.broadcastDiffLocked([]Presence{{User: user, Metas: []Meta{m}}}, nil, nil)
	case !join && had:
		r.removeMetaLocked(user, m.ConnID)
		r.shrankLocked()
		r.broadcastDiffLocked(nil, []Presence{{User: user, Metas: []Meta{m}}}, nil)
		r.unloadIfIdleLocked()
	}
}

func (r *room) hasNode(node string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, metas := range r.presence {
		for _, m := range metas {
			if m.Node == node {
				return true
			}
		}
	}
	return false
}

// syncNode makes node's metas in the room exactly want (user -> metas),
// announcing joins and leaves in one diff.
func (r *room) syncNode(node string, want map[string][]Meta) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var joins, leaves []Presence
	for user, ms := range r.presence {
		var gone []Meta
		ms = slices.DeleteFunc(ms, func(m Meta) bool {
			if m.Node != node {
				return false
			}
			if _, wanted := metas(want[user]).get(m.ConnID); wanted {
				return false
			}
			gone = append(gone, m)
			return true
		})
		if len(gone) > 0 {
			leaves = append(leaves, Presence{User: user, Metas: gone})
		}
		r.setMetasLocked(user, ms)
	}
	for user, ms := range want {
		var added []Meta
		for _, m := range ms {
			if m.Node != node {
				continue
			}
			if _, ok := r.presence[user].get(m.ConnID); !ok {
				r.addMetaLocked(user, m)
				added = append(added, m)
			}
		}
		if len(added) > 0 {
			joins = append(joins, Presence{User: user, Metas: added})
		}
	}
	r.grewLocked()
	r.shrankLocked()
	if len(joins) > 0 || len(leaves) > 0 {
		r.broadcastDiffLocked(joins, leaves, nil)
	}
	r.unloadIfIdleLocked()
}

// checkMembers takes the connections of users who are no longer members out
// of the private and direct rooms live here, reading membership from the
// store: a node that missed a kick on the broker must not go on delivering
// the room to them. It runs while the broker is unreachable and once it is
// back.
func (h *Hub) checkMembers(ctx context.Context) {
	h.rooms.Range(func(_, v any) bool {
		r := v.(*room)
		if r.info.Visibility == store.Public {
			return true
		}
		for _, user := range r.users() {
			member, err := h.store.IsMember(ctx, r.name, user)
			if err != nil {
				h.log.Warn("check a room's members", "room", r.name, "err", err)
				return false
			}
			if !member {
				h.log.Info("taking a removed member out of a room", "room", r.name, "user", user)
				r.kick(user)
			}
		}
		return true
	})
}

// users returns the users with connections in the room on this node.
func (r *room) users() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	seen := map[string]bool{}
	var users []string
	for c := range r.subs {
		if !seen[c.User] {
			seen[c.User] = true
			users = append(users, c.User)
		}
	}
	return users
}

// followWhileCut reads the messages of every room live here from the store
// every GapWait while the broker is unreachable, until ctx ends: other
// nodes' messages no longer arrive, and without them nothing reveals a gap.
func (h *Hub) followWhileCut(ctx context.Context) {
	t := time.NewTicker(h.cfg.GapWait)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if h.brokerConnected() {
			continue
		}
		h.liveRooms(func(r *room) bool {
			r.catchUp(ctx)
			return ctx.Err() == nil
		})
	}
}

// CatchUp reads from the store, for every room live here, the messages
// stored since the room's head, and checks the members of private rooms:
// after the broker connection was lost and came back, what it missed would
// otherwise wait for the next message to reveal the gap, and a member
// removed meanwhile would go on reading. It returns at once; the reads
// run in the background, until they are done or the hub is closed. After
// Close it does nothing.
func (h *Hub) CatchUp() {
	h.life.goCounted(func() {
		ctx, cancel := h.life.withTimeout(catchUpTimeout)
		defer cancel()
		h.checkMembers(ctx)
	})
	h.liveRooms(func(r *room) bool {
		return h.life.goCounted(func() { r.catchUp(h.life.ctx) })
	})
}

// Bounds on the reads from the store that the hub makes of its own accord,
// within its lifetime.
const (
	catchUpTimeout = 30 * time.Second
	gapFillTimeout = 10 * time.Second
)

// liveRooms calls fn for each room subscribed to the cluster's events
// here, until fn returns false.
func (h *Hub) liveRooms(fn func(*room) bool) {
	h.rooms.Range(func(_, v any) bool {
		r := v.(*room)
		r.mu.Lock()
		live := r.unsub != nil
		r.mu.Unlock()
		return !live || fn(r)
	})
}

// catchUp delivers the messages stored after the room's head, until ctx
// ends or catchUpTimeout passes.
func (r *room) catchUp(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, catchUpTimeout)
	defer cancel()
	for {
		r.mu.Lock()
		from := r.head
		r.mu.Unlock()
		msgs, err := r.hub.store.Messages(ctx, r.name, store.Query{After: from, Limit: 1000})
		if err != nil {
			r.hub.log.Warn("catch up from the store", "room", r.name, "err", err)
			return
		}
		r.hub.gapFills.Add(int64(len(msgs)))
		for _, m := range msgs {
			r.deliver(m)
		}
		if len(msgs) < 1000 {
			return
		}
	}
}

// scheduleGapFillLocked arms a timer that reads the store for the messages
// still missing before the pending ones once a gap outlives GapWait: an
// event lost on the broker must not stall a room.
func (r *room) scheduleGapFillLocked() {
	if r.gapTimer != nil || len(r.pending) == 0 {
		return
	}
	r.gapTimer = time.AfterFunc(r.hub.cfg.GapWait, r.hub.life.timed(r.fillGap))
}

func (r *room) fillGap() {
	r.mu.Lock()
	r.gapTimer = nil
	if len(r.pending) == 0 {
		r.unloadIfIdleLocked()
		r.mu.Unlock()
		return
	}
	// One read for every gap before the last held message, not one gap
	// per GapWait: with two nodes sending, every other seq is missing.
	from, to := r.head, uint64(0)
	for seq := range r.pending {
		to = max(to, seq)
	}
	r.mu.Unlock()
	ctx, cancel := r.hub.life.withTimeout(gapFillTimeout)
	defer cancel()
	const page = 1000
	msgs, err := r.hub.store.Messages(ctx, r.name, store.Query{After: from, Before: to, Limit: page})
	if err != nil {
		r.hub.log.Warn("fill a gap from the store", "room", r.name, "after", from, "before", to, "err", err)
	}
	r.hub.gapFills.Add(int64(len(msgs)))
	for _, m := range msgs {
		r.deliver(m)
	}
	r.mu.Lock()
	if err == nil && len(msgs) < page {
		r.skipPrunedLocked(to) // every entry below to that is stored was read
	}
	r.scheduleGapFillLocked()
	r.unloadIfIdleLocked()
	r.mu.Unlock()
}
