package hub

import (
	"context"
	"encoding/json"
	"time"
)

// Presence between nodes. Each node numbers the changes of its own
// presence (a connection joining or leaving a room) and publishes each on
// the cluster's presence subject with its number; its heartbeats carry
// only the number of its last change. Another node applies the changes in
// order; a change it missed (a gap in the numbers), a heartbeat whose
// number differs from the last it applied, or a node it does not know (or
// a new incarnation of one) makes it ask that node for its whole presence
// (request/reply), which it then holds as of the number the state came
// with. So steady-state traffic follows changes, not the number of
// connections, and a missed change costs one request.
//
// A node that starts asks every node for its state before answering a
// join or a presence read (Hub.awaitSynced), so its first answer holds
// the remote connections.

// requester is a Broker that carries requests with any number of replies.
type requester interface {
	// Gather publishes a request and calls fn with each reply until fn
	// returns false or ctx ends.
	Gather(ctx context.Context, subject string, data []byte, fn func([]byte) bool) error
	// Serve answers each request on subject with the replies fn returns.
	Serve(subject string, fn func([]byte) [][]byte) (unsubscribe func(), err error)
}

// nodeMsg is a heartbeat (Kind "") or one presence change ("join",
// "leave") of a node, on the presence subject.
type nodeMsg struct {
	Node        string `json:"n"`
	Incarnation int64  `json:"i"`
	// Seq numbers the node's presence changes: a change's own number, or
	// in a heartbeat the number of the node's last change.
	Seq  uint64 `json:"s"`
	Kind string `json:"k,omitempty"`
	Room string `json:"r,omitempty"`
	User string `json:"u,omitempty"`
	Meta *Meta  `json:"m,omitempty"`
}

// stateRequest asks one node (To) or all (To empty) for their presence.
type stateRequest struct {
	To string `json:"to,omitempty"`
}

// statePart is one of the Parts replies that together carry a node's
// whole presence as of its change Seq; large states are split so each
// reply stays under the broker's payload limit.
type statePart struct {
	Node        string                       `json:"n"`
	Incarnation int64                        `json:"i"`
	Seq         uint64                       `json:"s"`
	Part        int                          `json:"pt"`
	Parts       int                          `json:"pts"`
	Peers       []string                     `json:"peers,omitempty"` // the nodes the responder knows
	Presence    map[string]map[string][]Meta `json:"p,omitempty"`
}

const (
	// stateWait bounds a request for one node's state.
	stateWait = 2 * time.Second
	// syncWaitMax bounds how long a join or presence read waits for a
	// starting node's first presence sync.
	syncWaitMax = 3 * time.Second
	// statePartBytes is the most presence one state reply carries
	// (roughly), well under NATS's default 1 MiB payload limit.
	statePartBytes = 256 << 10
)

func (h *Hub) presenceSubject() string { return h.cfg.Subject + ".presence" }
func (h *Hub) stateSubject() string    { return h.cfg.Subject + ".state" }

// awaitSynced waits, within syncWaitMax or ctx, for the first presence
// sync of a node that just started.
func (h *Hub) awaitSynced(ctx context.Context) {
	select {
	case <-h.synced:
		return
	default:
	}
	t := time.NewTimer(syncWaitMax)
	defer t.Stop()
	select {
	case <-h.synced:
	case <-t.C:
	case <-ctx.Done():
	}
}

// publishPresence numbers one change of this node's presence and
// publishes it. Called under the room's mu; pubMu keeps the numbers in
// the order of publication.
func (h *Hub) publishPresence(room, user string, m Meta, join bool) {
	if h.cfg.Broker == nil {
		return
	}
	kind := "leave"
	if join {
		kind = "join"
	}
	h.pubMu.Lock()
	defer h.pubMu.Unlock()
	h.presenceSeq++
	data, err := json.Marshal(nodeMsg{Node: h.cfg.NodeID, Incarnation: h.incarnation, Seq: h.presenceSeq, Kind: kind, Room: room, User: user, Meta: &m})
	if err == nil {
		err = h.cfg.Broker.Publish(h.presenceSubject(), data)
	}
	if err != nil {
		// The gap in the numbers makes the other nodes ask for the state.
		h.log.Warn("publish a presence change to the cluster", "room", room, "err", err)
	}
}

// sendHeartbeat announces this node and the number of its last presence
// change: a few dozen bytes, whatever the number of connections.
func (h *Hub) sendHeartbeat() {
	h.pubMu.Lock()
	defer h.pubMu.Unlock()
	data, err := json.Marshal(nodeMsg{Node: h.cfg.NodeID, Incarnation: h.incarnation, Seq: h.presenceSeq})
	if err == nil {
		err = h.cfg.Broker.Publish(h.presenceSubject(), data)
	}
	if err != nil {
		h.log.Warn("publish heartbeat", "err", err)
	}
}

// onNodeMsg applies another node's heartbeat or presence change, asking
// for its whole state when what this node holds of it is not current.
func (h *Hub) onNodeMsg(ctx context.Context, data []byte) {
	var msg nodeMsg
	if err := json.Unmarshal(data, &msg); err != nil || msg.Node == "" || msg.Node == h.cfg.NodeID {
		return
	}
	h.syncMu.Lock()
	defer h.syncMu.Unlock()
	h.nodesMu.Lock()
	n := h.nodes[msg.Node]
	known := n != nil && n.incarnation == msg.Incarnation
	var held uint64
	if known {
		n.lastSeen, held = h.now(), n.seq
	}
	h.nodesMu.Unlock()
	switch {
	case !known && msg.Kind == "" && msg.Seq == 0:
		// A node that has had no connection yet: nothing to ask for, but
		// an earlier incarnation's connections are gone.
		h.applyState(ctx, statePart{Node: msg.Node, Incarnation: msg.Incarnation})
	case !known:
		h.fetchState(ctx, msg.Node)
	case msg.Kind == "":
		if msg.Seq != held {
			h.fetchState(ctx, msg.Node)
		}
	case msg.Seq <= held:
		// Already in the state this node fetched.
	case msg.Seq == held+1:
		h.nodesMu.Lock()
		n.seq = msg.Seq
		h.nodesMu.Unlock()
		if msg.Meta == nil || msg.Meta.Node != msg.Node || msg.Room == "" {
			return
		}
		r, err := h.room(ctx, msg.Room)
		if err != nil {
			return
		}
		r.applyRemote(msg.User, *msg.Meta, msg.Kind == "join")
		r.release()
	default:
		h.fetchState(ctx, msg.Node)
	}
}

// fetchState asks node for its whole presence and applies it. Called
// under syncMu; changes that arrive meanwhile wait in the subscription.
func (h *Hub) fetchState(ctx context.Context, node string) {
	rq, ok := h.cfg.Broker.(requester)
	if !ok {
		return
	}
	wctx, cancel := context.WithTimeout(ctx, stateWait)
	defer cancel()
	req, _ := json.Marshal(stateRequest{To: node})
	var st *stateAssembly
	err := rq.Gather(wctx, h.stateSubject(), req, func(data []byte) bool {
		var p statePart
		if json.Unmarshal(data, &p) != nil || p.Node != node {
			return true
		}
		if st == nil || st.Incarnation != p.Incarnation || st.Seq != p.Seq {
			st = newStateAssembly(p)
		}
		return !st.add(p)
	})
	if err != nil || st == nil || !st.done() {
		h.log.Warn("ask a cluster node for its presence", "node", node, "err", err)
		return
	}
	h.applyState(ctx, st.statePart)
}

// gatherStates asks every node for its presence when this node starts,
// and applies each state, until every node named by a reply has answered
// or HeartbeatInterval has passed (every live node heartbeats within it,
// so a node not heard of by then is taken later, from its heartbeat).
func (h *Hub) gatherStates(ctx context.Context) {
	rq, ok := h.cfg.Broker.(requester)
	if !ok {
		return
	}
	h.syncMu.Lock()
	defer h.syncMu.Unlock()
	wctx, cancel := context.WithTimeout(ctx, max(h.cfg.HeartbeatInterval, 100*time.Millisecond))
	defer cancel()
	req, _ := json.Marshal(stateRequest{})
	states := map[string]*stateAssembly{}
	waiting := map[string]bool{}
	_ = rq.Gather(wctx, h.stateSubject(), req, func(data []byte) bool {
		var p statePart
		if json.Unmarshal(data, &p) != nil || p.Node == "" || p.Node == h.cfg.NodeID {
			return true
		}
		st := states[p.Node]
		if st == nil || st.Incarnation != p.Incarnation || st.Seq != p.Seq {
			st = newStateAssembly(p)
			states[p.Node] = st
		}
		for _, peer := range p.Peers {
			if peer != h.cfg.NodeID && (states[peer] == nil || !states[peer].done()) {
				waiting[peer] = true
			}
		}
		if st.add(p) {
			delete(waiting, p.Node)
			h.applyState(ctx, st.statePart)
		} else {
			waiting[p.Node] = true
		}
		return len(waiting) > 0
	})
}

// stateAssembly gathers the parts of one node's state.
type stateAssembly struct {
	statePart
	got map[int]bool
}

func newStateAssembly(p statePart) *stateAssembly {
	return &stateAssembly{statePart: statePart{Node: p.Node, Incarnation: p.Incarnation, Seq: p.Seq, Parts: p.Parts,
		Presence: map[string]map[string][]Meta{}}, got: map[int]bool{}}
}

// add merges a part and reports whether the state is complete.
func (st *stateAssembly) add(p statePart) bool {
	if !st.got[p.Part] {
		st.got[p.Part] = true
		for room, users := range p.Presence {
			if st.Presence[room] == nil {
				st.Presence[room] = map[string][]Meta{}
			}
			for user, ms := range users {
				st.Presence[room][user] = append(st.Presence[room][user], ms...)
			}
		}
	}
	return st.done()
}

func (st *stateAssembly) done() bool { return len(st.got) >= st.Parts }

// applyState makes this node's view of another node's presence exactly
// the state it sent, announcing the differences in one diff per room, and
// holds the node as of the state's change number.
func (h *Hub) applyState(ctx context.Context, st statePart) {
	h.nodesMu.Lock()
	n := h.nodes[st.Node]
	if n == nil {
		n = &remoteNode{}
		h.nodes[st.Node] = n
	}
	n.incarnation, n.seq, n.lastSeen = st.Incarnation, st.Seq, h.now()
	h.nodesMu.Unlock()
	// Rooms where the node has metas now, or had them before.
	names := map[string]bool{}
	for name := range st.Presence {
		names[name] = true
	}
	h.rooms.Range(func(k, v any) bool {
		if v.(*room).hasNode(st.Node) {
			names[k.(string)] = true
		}
		return true
	})
	for name := range names {
		r, err := h.room(ctx, name)
		if err != nil {
			continue
		}
		r.syncNode(st.Node, st.Presence[name])
		r.release()
	}
}

// answerState answers a request for this node's presence (addressed to it
// or to all) with its state in as many parts as it takes.
func (h *Hub) answerState(data []byte) [][]byte {
	var req stateRequest
	if json.Unmarshal(data, &req) != nil || (req.To != "" && req.To != h.cfg.NodeID) {
		return nil
	}
	// The number is read before the rooms: every change up to it is in
	// them. Later ones may be too; the requester applies them again after
	// the state, which changes nothing for a join or leave already there.
	h.pubMu.Lock()
	seq := h.presenceSeq
	h.pubMu.Unlock()
	var peers []string
	h.nodesMu.Lock()
	for id := range h.nodes {
		peers = append(peers, id)
	}
	h.nodesMu.Unlock()

	var parts []map[string]map[string][]Meta
	cur, size := map[string]map[string][]Meta{}, 0
	h.rooms.Range(func(_, v any) bool {
		r := v.(*room)
		r.mu.Lock()
		for user, ms := range r.presence {
			for _, m := range ms {
				if m.Node != h.cfg.NodeID {
					continue
				}
				if size >= statePartBytes {
					parts = append(parts, cur)
					cur, size = map[string]map[string][]Meta{}, 0
				}
				if cur[r.name] == nil {
					cur[r.name] = map[string][]Meta{}
					size += len(r.name) + 8
				}
				if cur[r.name][user] == nil {
					size += len(user) + 8
				}
				cur[r.name][user] = append(cur[r.name][user], m)
				size += len(m.ConnID) + len(m.Client) + len(m.Node) + 64
			}
		}
		r.mu.Unlock()
		return true
	})
	parts = append(parts, cur)
	out := make([][]byte, 0, len(parts))
	for i, p := range parts {
		b, err := json.Marshal(statePart{Node: h.cfg.NodeID, Incarnation: h.incarnation, Seq: seq,
			Part: i, Parts: len(parts), Peers: peers, Presence: p})
		if err != nil {
			h.log.Error("encode presence state", "err", err)
			return nil
		}
		out = append(out, b)
	}
	return out
}
