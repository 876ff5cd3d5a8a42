package hub

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// Presence in a room: who is online (room.presence), what the room's
// connections were told of it (the announced presence), and how changes
// are announced.
//
// A small room behaves like Phoenix.Presence: a joiner's state holds every
// user, and each change is a diff of its own, at once. A room where that
// would cost O(n) frames per change — PresenceBatchMin connections or
// more, or a big room — gathers its changes for PresenceBatchWindow and
// announces them in one diff, encoded once for every connection; a change
// that undoes a waiting one (a meta that joined and left within the
// window) cancels it. A big room (PresencePageThreshold distinct users or
// more, or as many connections) also stops handing every joiner the whole
// presence: its state holds the online count and the first page, of
// PresencePageSize users and metas at most, and the rest is paged through
// on request, by user id (PresencePage, QueuePresencePage). Its diffs name
// only what came into or went out of that first page, with the online
// count (flushDiffs), so that their size does not grow with the crowd.
//
// The announced presence is the presence with the waiting changes undone:
// the users in shown, each with its metas but those whose join waits, and
// with those whose leave waits (leftOf). Every diff makes it the presence
// again.

// presenceChange is one meta joining or leaving, not yet announced.
type presenceChange struct {
	user string
	meta Meta
	join bool
}

// changeKey names one meta of a room: a user's connection.
type changeKey struct{ user, conn string }

// PresencePage is a page of a room's presence, by user id.
type PresencePage struct {
	// Presence is the page's users, sorted, each with its metas sorted by
	// online time.
	Presence []Presence
	// Next is where the next page starts; zero on the last page.
	Next PageCursor
	// Online is how many distinct users are online in the room.
	Online int
}

// PageCursor is where a page of presence ended: after User, or, when Conn
// is set, after that meta of User (online at OnlineAt), whose later metas
// the next page continues with. The zero PageCursor is the start.
type PageCursor struct {
	User     string    `json:"u"`
	OnlineAt time.Time `json:"t,omitzero"`
	Conn     string    `json:"c,omitempty"`
}

// PresencePage returns a page of a room's presence after the cursor
// after, sorted by user id, as the room's connections were told of it (at
// most a PresenceBatchWindow behind in a large room). A page holds at
// most limit users and at most limit metas: users whole, but for one with
// more metas than a page holds, which fills pages alone, each next page
// going on where the last ended, so that a user with thousands of
// connections never makes a page that large. Users joining or leaving
// between two pages do not shift the others: each page starts where the
// one before ended. limit 0 asks for every user of a small room, as
// Presence has it, and a page of PresencePageSize in a big one. Nobody is
// online in a room that is not loaded; an unknown room is
// store.ErrRoomNotFound.
func (h *Hub) PresencePage(ctx context.Context, name string, after PageCursor, limit int) (PresencePage, error) {
	h.awaitSynced(ctx)
	if v, ok := h.rooms.Load(name); ok {
		r := v.(*room)
		r.mu.Lock()
		defer r.mu.Unlock()
		if limit == 0 && after == (PageCursor{}) && !r.bigLocked() {
			p := r.presenceLocked()
			return PresencePage{Presence: p, Online: len(p)}, nil
		}
		if limit == 0 && r.bigLocked() {
			limit = h.cfg.PresencePageSize
		}
		return r.shownPageLocked(after, limit), nil
	}
	if _, err := h.store.Room(ctx, name); err != nil {
		return PresencePage{}, err
	}
	return PresencePage{}, nil
}

// QueuePresencePage queues for c a page of the presence of a room c is in
// (see PresencePage; limit must be positive), encoded by encode, as an
// urgent frame. The page is taken and queued under the room's lock, so it
// falls between two of the presence diffs c receives and is exactly what
// was announced of those users up to that point. A big room's diffs keep
// only its first page up to date (see flushDiffs): a later page is as
// fresh as when it was queued. ErrNotJoined if c is not in the room.
func (h *Hub) QueuePresencePage(c *Conn, name string, after PageCursor, limit int, encode func(PresencePage) ([]byte, error)) error {
	r := c.joined(name)
	if r == nil {
		return fmt.Errorf("room %q: %w", name, ErrNotJoined)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, in := r.subs[c]; !in {
		return fmt.Errorf("room %q: %w", name, ErrNotJoined)
	}
	data, err := encode(r.shownPageLocked(after, limit))
	if err != nil {
		return fmt.Errorf("encode presence page: %w", err)
	}
	if !c.EnqueueUrgent(Frame{Data: data}) {
		return c.Err()
	}
	return nil
}

func (r *room) addLocked(c *Conn, opts JoinOptions) error {
	var diff []Presence
	if c.tracked && !opts.Quiet {
		meta := Meta{ConnID: c.ID, OnlineAt: r.hub.now().UTC(), Client: c.Client, Node: r.hub.cfg.NodeID}
		r.addMetaLocked(c.User, meta)
		diff = []Presence{{User: c.User, Metas: []Meta{meta}}}
	}
	// Decided with the joiner counted, so the join that makes a room big
	// waits with the others.
	batch := r.batchingLocked()
	if diff != nil && batch {
		r.queueDiffLocked(diff, nil)
	}
	state, err := r.joinedStateLocked(batch)
	// The joined frame carries the position from which the connection
	// receives the room, so a writer knows where to resume it.
	pos := r.head
	if opts.After != nil {
		pos = *opts.After
	}
	if err != nil || (opts.Ack != nil && !c.Enqueue(Frame{Data: opts.Ack})) || !c.Enqueue(Frame{Data: state, Tail: opts.Tail, Room: r.name, Seq: pos}) {
		// c ended (a state larger than its queue cuts it off), or its
		// state could not be made: it never joined, so it must not stay
		// in the presence.
		if diff != nil {
			r.removeMetaLocked(c.User, c.ID)
			if batch {
				r.queueDiffLocked(nil, diff) // cancels its join, still waiting
			}
		}
		if err != nil {
			return err
		}
		return c.Err()
	}
	r.subs[c] = opts.After == nil
	r.grewLocked()
	if diff != nil {
		if !batch {
			r.sendDiffLocked(diff, nil, c)
		}
		r.hub.publishPresence(r.name, c.User, diff[0].Metas[0], true)
	}
	return nil
}

// joinedStateLocked encodes a joiner's state: the room's head and what it
// has announced of its presence, with the online count; in a paged room
// (one that was big when its presence was last announced) only the first
// page of it, which is what the room's diffs keep up to date. A room that
// has grown big since its last diff hands out everything announced, as its
// members hold it, until that diff: a small room's worth. In a large room
// (batch) that does not hold the changes still waiting, the joiner's own
// included (the diff that announces them reaches the joiner too, if it
// names them), so it stays the same until the next diff is sent or the
// head moves, and every joiner until then gets the same encoding: a crowd
// joining costs one state per window instead of one per joiner. In a
// small room each join is announced at once, so the state is encoded for
// each joiner.
func (r *room) joinedStateLocked(batch bool) ([]byte, error) {
	key := [3]uint64{r.announced, r.head, 0}
	if r.paged {
		key[2] = 1
	}
	if batch && r.joined != nil && r.joinedKey == key {
		return r.joined, nil
	}
	ev := Event{Kind: EventJoined, Room: r.name, HeadSeq: r.head}
	if r.paged { // and so batching
		page := r.shownPageLocked(PageCursor{}, r.hub.cfg.PresencePageSize)
		ev.Presence, ev.PresenceNext, ev.OnlineCount = page.Presence, page.Next, page.Online
	} else {
		ev.Presence = r.announcedPresenceLocked()
		ev.OnlineCount = len(ev.Presence)
	}
	state, err := r.hub.encode(ev)
	if err != nil {
		return nil, fmt.Errorf("encode joined: %w", err)
	}
	r.joined = nil
	if batch {
		r.joined, r.joinedKey = state, key
	}
	return state, nil
}

// bigLocked reports whether the room has PresencePageThreshold distinct
// users online or more, or as many connections: too many for every joiner
// to be handed all of them, and for every change to be a diff of its own.
func (r *room) bigLocked() bool {
	return max(len(r.presence), r.metaCount) >= r.hub.cfg.PresencePageThreshold
}

// batchingLocked reports whether presence changes wait to be announced
// together: in a room with PresenceBatchMin connections or more, where
// announcing each join to everyone would cost O(n) frames per join and
// O(n²) for a crowd, in a big room (its connections may be on other
// nodes), and while earlier changes still wait (they go first) or the
// room's connections hold only its first page (see flushDiffs).
func (r *room) batchingLocked() bool {
	return len(r.waiting) > 0 || len(r.subs) >= r.hub.cfg.PresenceBatchMin || r.bigLocked() || r.paged
}

// broadcastDiffLocked announces joins and leaves to every subscriber but
// skip, at once in a small room, else with the other changes of the next
// PresenceBatchWindow.
func (r *room) broadcastDiffLocked(joins, leaves []Presence, skip *Conn) {
	if r.batchingLocked() {
		r.queueDiffLocked(joins, leaves)
		return
	}
	r.sendDiffLocked(joins, leaves, skip)
}

// queueDiffLocked adds changes to those waiting.
func (r *room) queueDiffLocked(joins, leaves []Presence) {
	for _, p := range joins {
		for _, m := range p.Metas {
			r.waitLocked(p.User, m, true)
		}
	}
	for _, p := range leaves {
		for _, m := range p.Metas {
			r.waitLocked(p.User, m, false)
		}
	}
	if r.diffTimer == nil && len(r.waiting) > 0 {
		r.diffTimer = time.AfterFunc(r.hub.cfg.PresenceBatchWindow, r.hub.life.timed(r.flushDiffs))
	}
}

// waitLocked adds one change to those waiting. A change that undoes a
// waiting one (a connection that leaves before its join was announced)
// cancels it: nobody was told. So does a connection that leaves and joins
// again within the window: its meta stays as announced, which clients
// that key metas by connection need (a diff with its join and its leave
// would take it away from them).
func (r *room) waitLocked(user string, m Meta, join bool) {
	k := changeKey{user, m.ConnID}
	if prev, ok := r.waiting[k]; ok {
		if !prev.join {
			r.leftOf[user] = r.leftOf[user].without(m.ConnID)
			if len(r.leftOf[user]) == 0 {
				delete(r.leftOf, user)
			}
		}
		if prev.join != join {
			delete(r.waiting, k)
			return
		}
	}
	if r.waiting == nil {
		r.waiting = make(map[changeKey]presenceChange)
	}
	r.waiting[k] = presenceChange{user: user, meta: m, join: join}
	if !join {
		if r.leftOf == nil {
			r.leftOf = make(map[string]metas)
		}
		r.leftOf[user] = append(r.leftOf[user], m)
	}
}

// flushDiffs announces the waiting changes in one diff, to everyone.
//
// In a small room the diff names every change, as Phoenix does. In a big
// room, or one whose connections hold only its first page (paged), it
// names only what changed in the view the connections hold: the metas
// that came into the first page of the announced presence, by joining or
// by moving up as users before them left, and the metas that went out of
// it, by leaving or by moving down as users before them joined; with the
// online count. So a diff holds at most two pages of metas, however many
// joined or left: a crowd joining a room of n costs each member a frame
// per window of a bounded size, not n metas. A window whose changes left
// the view and the count as they were sends nothing; one that changed the
// count alone sends it at most every n/PresenceCountRate seconds
// (countLocked).
func (r *room) flushDiffs() {
	r.mu.Lock()
	defer r.mu.Unlock()
	defer r.unloadIfIdleLocked()
	r.diffTimer = nil
	if len(r.waiting) == 0 {
		return
	}
	if !r.paged && !r.bigLocked() {
		joins, leaves := groupChanges(r.waiting)
		r.waiting, r.leftOf = nil, nil // a crowd's changes would otherwise keep their peak
		r.sendDiffLocked(joins, leaves, nil)
		return
	}
	before := r.viewLocked() // what the connections hold (the waiting changes undone)
	joins, leaves := groupChanges(r.waiting)
	r.waiting, r.leftOf = nil, nil
	r.showLocked(joins, leaves)
	r.paged = r.bigLocked()
	joins, leaves = viewDiff(before, r.viewLocked())
	r.announced++
	r.joined = nil
	if len(joins) == 0 && len(leaves) == 0 {
		r.countLocked()
		return
	}
	r.sendViewDiffLocked(joins, leaves)
}

// countLocked sends a diff of the online count alone if it changed since
// the last diff, and the last diff that changed it is long enough ago: a
// room of n connections sends such a diff at most every
// n/PresenceCountRate seconds, so that a storm of joins past the first
// page of a room of 100,000 costs each member a frame every few seconds,
// not four a second. Otherwise it arms countTimer to send it then.
func (r *room) countLocked() {
	if len(r.shown) == r.sentOnline || r.countTimer != nil {
		return
	}
	gap := time.Duration(len(r.subs)) * time.Second / time.Duration(r.hub.cfg.PresenceCountRate)
	if wait := gap - r.hub.now().Sub(r.sentAt); wait > 0 {
		r.countTimer = time.AfterFunc(wait, r.hub.life.timed(r.flushCount))
		return
	}
	r.sendViewDiffLocked(nil, nil)
}

// flushCount sends the online count that waited (countLocked), unless a
// diff with it went out meanwhile or changes wait (their diff will carry
// it).
func (r *room) flushCount() {
	r.mu.Lock()
	defer r.mu.Unlock()
	defer r.unloadIfIdleLocked()
	r.countTimer = nil
	if len(r.waiting) > 0 || len(r.shown) == r.sentOnline {
		return
	}
	r.sendViewDiffLocked(nil, nil)
}

// sendViewDiffLocked sends a big room's diff, of its first page and its
// online count, to every subscriber.
func (r *room) sendViewDiffLocked(joins, leaves []Presence) {
	if len(r.shown) != r.sentOnline {
		r.sentAt = r.hub.now()
	}
	r.broadcastPresenceDiffLocked(joins, leaves, nil)
}

// viewLocked returns the announced presence the room's connections hold:
// its first page in a paged room, all of it otherwise.
func (r *room) viewLocked() []Presence {
	if r.paged {
		return r.shownPageLocked(PageCursor{}, r.hub.cfg.PresencePageSize).Presence
	}
	return r.shownPageLocked(PageCursor{}, 0).Presence
}

// viewDiff returns the metas in after but not before (joins) and in
// before but not after (leaves), by user and connection, each grouped by
// user as groupChanges does. Both are sorted by user, each user's metas
// by online time.
func viewDiff(before, after []Presence) (joins, leaves []Presence) {
	in := func(ps []Presence) map[changeKey]bool {
		m := make(map[changeKey]bool, len(ps))
		for _, p := range ps {
			for _, meta := range p.Metas {
				m[changeKey{p.User, meta.ConnID}] = true
			}
		}
		return m
	}
	missing := func(ps []Presence, other map[changeKey]bool) []Presence {
		var out []Presence
		for _, p := range ps {
			var ms []Meta
			for _, meta := range p.Metas {
				if !other[changeKey{p.User, meta.ConnID}] {
					ms = append(ms, meta)
				}
			}
			if len(ms) > 0 {
				out = append(out, Presence{User: p.User, Metas: ms})
			}
		}
		return out
	}
	return missing(after, in(before)), missing(before, in(after))
}

// groupChanges groups changes by user into joins and leaves, each sorted
// by user, and each user's metas by online time.
func groupChanges(changes map[changeKey]presenceChange) (joins, leaves []Presence) {
	at := map[changeKey]int{} // (user, "j" or "l") -> index in joins or leaves
	for _, ch := range changes {
		list, k := &joins, changeKey{ch.user, "j"}
		if !ch.join {
			list, k = &leaves, changeKey{ch.user, "l"}
		}
		i, ok := at[k]
		if !ok {
			i = len(*list)
			at[k] = i
			*list = append(*list, Presence{User: ch.user})
		}
		(*list)[i].Metas = append((*list)[i].Metas, ch.meta)
	}
	for _, list := range [][]Presence{joins, leaves} {
		slices.SortFunc(list, func(a, b Presence) int { return strings.Compare(a.User, b.User) })
		for _, p := range list {
			sortMetas(p.Metas)
		}
	}
	return joins, leaves
}

// sendDiffLocked announces joins and leaves to every subscriber but skip,
// in one frame encoded once, with the online count after them; the room's
// presence is then all announced.
func (r *room) sendDiffLocked(joins, leaves []Presence, skip *Conn) {
	r.announced++
	r.joined = nil
	r.showLocked(joins, leaves)
	r.broadcastPresenceDiffLocked(joins, leaves, skip)
}

// broadcastPresenceDiffLocked encodes a diff of joins and leaves with the
// online count of what is shown, once, for every subscriber but skip.
func (r *room) broadcastPresenceDiffLocked(joins, leaves []Presence, skip *Conn) {
	r.sentOnline = len(r.shown)
	data, err := r.hub.encode(Event{Kind: EventPresenceDiff, Room: r.name, Joins: joins, Leaves: leaves, OnlineCount: len(r.shown)})
	if err != nil {
		r.hub.log.Error("encode presence diff", "room", r.name, "err", err)
		return
	}
	r.broadcastLocked(r.hub.shared(data, "", 0), skip)
}

// showLocked brings shown up to the presence for the users of a diff
// being sent: no change waits once it is.
func (r *room) showLocked(joins, leaves []Presence) {
	var add, drop []string
	for _, list := range [][]Presence{joins, leaves} {
		for _, p := range list {
			_, shown := slices.BinarySearch(r.shown, p.User)
			switch present := len(r.presence[p.User]) > 0; {
			case present && !shown:
				add = append(add, p.User)
			case !present && shown:
				drop = append(drop, p.User)
			}
		}
	}
	switch {
	case len(add) == 1 && len(drop) == 0: // a small room's join: no copy
		i, _ := slices.BinarySearch(r.shown, add[0])
		r.shown = slices.Insert(r.shown, i, add[0])
	case len(add) == 0 && len(drop) == 1:
		i, _ := slices.BinarySearch(r.shown, drop[0])
		r.shown = slices.Delete(r.shown, i, i+1)
	case len(add)+len(drop) > 0:
		r.shown = mergeUsers(r.shown, add, drop)
	}
}

// mergeUsers returns the sorted users with add put in and drop taken out,
// in one pass: a crowd's diff costs O(n + k log k), not O(n·k).
func mergeUsers(users, add, drop []string) []string {
	slices.Sort(add)
	add = slices.Compact(add)
	slices.Sort(drop)
	out := make([]string, 0, len(users)+len(add)-len(drop))
	i := 0
	for _, u := range users {
		for i < len(add) && add[i] < u {
			out = append(out, add[i])
			i++
		}
		if _, gone := slices.BinarySearch(drop, u); !gone {
			out = append(out, u)
		}
	}
	return append(out, add[i:]...)
}

// shownPageLocked returns a page of the announced presence after the
// cursor after, of at most limit users and limit metas (0: all of them):
// whole users, but for one with more than limit metas, which a page holds
// alone and ends inside (see Hub.PresencePage).
func (r *room) shownPageLocked(after PageCursor, limit int) PresencePage {
	i, found := slices.BinarySearch(r.shown, after.User)
	if found && after.Conn == "" {
		i++
	}
	page := PresencePage{Online: len(r.shown)}
	full := func(n int) bool { return limit > 0 && n >= limit }
	metas := 0
	for ; i < len(r.shown) && !full(len(page.Presence)) && !full(metas); i++ {
		u := r.shown[i]
		ms := r.shownMetasLocked(u)
		if u == after.User && after.Conn != "" {
			ms = ms[sort.Search(len(ms), func(k int) bool { return metaAfter(ms[k], after.OnlineAt, after.Conn) }):]
			if len(ms) == 0 {
				continue
			}
		}
		if limit > 0 && metas+len(ms) > limit {
			if metas > 0 {
				break // the user comes whole on the next page
			}
			// More metas than a page holds: the page ends inside the user.
			ms = ms[:limit]
			last := ms[len(ms)-1]
			page.Presence = append(page.Presence, Presence{User: u, Metas: ms})
			page.Next = PageCursor{User: u, OnlineAt: last.OnlineAt, Conn: last.ConnID}
			return page
		}
		page.Presence = append(page.Presence, Presence{User: u, Metas: ms})
		metas += len(ms)
	}
	if i < len(r.shown) {
		page.Next = PageCursor{User: page.Presence[len(page.Presence)-1].User}
	}
	return page
}

// metaAfter reports whether m comes after the meta online at at with
// connection conn, in the order of sortMetas.
func metaAfter(m Meta, at time.Time, conn string) bool {
	return m.OnlineAt.After(at) || (m.OnlineAt.Equal(at) && m.ConnID > conn)
}

// shownMetasLocked returns the metas of user in the announced presence,
// sorted by online time.
func (r *room) shownMetasLocked(user string) []Meta {
	ms := make([]Meta, 0, len(r.presence[user])+len(r.leftOf[user]))
	for _, m := range r.presence[user] {
		if ch, waits := r.waiting[changeKey{user, m.ConnID}]; !waits || !ch.join {
			ms = append(ms, m)
		}
	}
	ms = append(ms, r.leftOf[user]...)
	sortMetas(ms)
	return ms
}

// removeMetaLocked takes one connection's meta out of the presence.
func (r *room) removeMetaLocked(user, connID string) {
	r.setMetasLocked(user, r.presence[user].without(connID))
}

// addMetaLocked adds one connection's meta to the presence.
func (r *room) addMetaLocked(user string, m Meta) {
	r.presence[user] = append(r.presence[user], m)
	r.metaCount++
}

// setMetasLocked makes ms user's metas; a user without any is not present.
func (r *room) setMetasLocked(user string, ms metas) {
	r.metaCount += len(ms) - len(r.presence[user])
	if len(ms) > 0 {
		r.presence[user] = ms
	} else {
		delete(r.presence, user)
	}
}

// metas are one user's presence metas in a room, one per connection. Most
// users have one or two connections in a room: a slice costs a few dozen
// bytes where a map by connection id would cost most of a KiB.
type metas []Meta

func (ms metas) get(connID string) (Meta, bool) {
	for _, m := range ms {
		if m.ConnID == connID {
			return m, true
		}
	}
	return Meta{}, false
}

// without removes connID's meta, in place.
func (ms metas) without(connID string) metas {
	return slices.DeleteFunc(ms, func(m Meta) bool { return m.ConnID == connID })
}

// presenceLocked returns the room's presence, sorted by user and online time.
func (r *room) presenceLocked() []Presence {
	out := make([]Presence, 0, len(r.presence))
	for user, ms := range r.presence {
		p := Presence{User: user, Metas: slices.Clone([]Meta(ms))}
		sortMetas(p.Metas)
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b Presence) int { return strings.Compare(a.User, b.User) })
	return out
}

// announcedPresenceLocked returns the presence the room's subscribers have
// been told of: without the joins still waiting, with the leaves.
func (r *room) announcedPresenceLocked() []Presence {
	if len(r.waiting) == 0 {
		return r.presenceLocked()
	}
	return r.shownPageLocked(PageCursor{}, 0).Presence
}

func sortMetas(metas []Meta) {
	sort.Slice(metas, func(i, j int) bool {
		a, b := metas[i], metas[j]
		return a.OnlineAt.Before(b.OnlineAt) || (a.OnlineAt.Equal(b.OnlineAt) && a.ConnID < b.ConnID)
	})
}

func (r *room) snapshot() (presence []Presence, head uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.presenceLocked(), r.head
}

func (r *room) onlineCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.presence)
}
