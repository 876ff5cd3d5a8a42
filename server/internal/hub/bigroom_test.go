package hub

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/parleychat/parley/server/internal/store"
	"github.com/parleychat/parley/server/internal/store/memory"
)

// bigRoomHub returns a hub with room "r" whose rooms are big from
// threshold users, with pages of pageSize users; waiting presence changes
// are announced only when the test calls flush (the window is an hour),
// a changed count with them (no bound on count-only diffs).
func bigRoomHub(t *testing.T, threshold, pageSize int) *Hub {
	return bigRoomHubWith(t, Config{PresencePageThreshold: threshold, PresencePageSize: pageSize, PresenceCountRate: 1 << 40})
}

func bigRoomHubWith(t *testing.T, cfg Config) *Hub {
	t.Helper()
	st := memory.New()
	if _, err := st.CreateRoom(context.Background(), store.Room{Name: "r", Visibility: store.Public}); err != nil {
		t.Fatal(err)
	}
	encode := func(ev Event) ([]byte, error) { return json.Marshal(ev) }
	cfg.PresenceBatchWindow = time.Hour
	return New(cfg, st, encode, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

// flush announces room r's waiting presence changes, as its timer would.
func flush(t *testing.T, h *Hub) {
	t.Helper()
	r, err := h.room(context.Background(), "r")
	if err != nil {
		t.Fatal(err)
	}
	defer r.release()
	r.flushDiffs()
}

func joinR(t *testing.T, h *Hub, user string) *Conn {
	t.Helper()
	c := h.Connect(user, "", true)
	if err := h.Join(context.Background(), c, "r", JoinOptions{}); err != nil {
		t.Fatal(err)
	}
	return c
}

// queued returns the events queued for c, without waiting.
func queued(t *testing.T, c *Conn) []Event {
	t.Helper()
	var out []Event
	for c.QueuedBytes() > 0 {
		frames, err := c.Next(nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range frames {
			var ev Event
			if err := json.Unmarshal(f.Data, &ev); err != nil {
				t.Fatalf("frame %q: %v", f.Data, err)
			}
			out = append(out, ev)
		}
	}
	return out
}

func usersOf(ps []Presence) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.User)
	}
	return out
}

func metaCount(ps []Presence) int {
	n := 0
	for _, p := range ps {
		n += len(p.Metas)
	}
	return n
}

// Below the threshold a joiner gets the whole presence, itself included,
// and everyone a diff at once. The join that makes the room big waits
// for the window, and its joiner gets everything announced, as the
// members hold it; the window's diff then brings every member's view down
// to the first page (the users past it go out of the view, named as
// leaves) with the online count. From then on a joiner gets the online
// count and the first page of what was announced, with where the next
// page starts, and a join past the first page is a diff of the count
// alone.
// With the default threshold a room of 31 users is small — its joiner is
// handed everyone, itself included, and every member gets the join at once
// — and the 32nd user makes it big: that joiner's own join waits for the
// room's next diff. (docs/performance.md, "Join storms again", has why 32.)
func TestDefaultPageThresholdIs32Users(t *testing.T) {
	h := bigRoomHubWith(t, Config{})
	var first *Conn
	for i := range 30 {
		c := joinR(t, h, fmt.Sprintf("u%02d", i))
		if first == nil {
			first = c
		}
	}
	queued(t, first)
	evs := queued(t, joinR(t, h, "u30"))
	if len(evs) != 1 || len(evs[0].Presence) != 31 || evs[0].OnlineCount != 31 {
		t.Fatalf("the 31st joiner got %+v, want a joined state of all 31 users", evs)
	}
	if d := queued(t, first); len(d) != 1 || d[0].Kind != EventPresenceDiff || metaCount(d[0].Joins) != 1 {
		t.Fatalf("a member got %+v for the 31st join, want its diff at once", d)
	}
	evs = queued(t, joinR(t, h, "u31"))
	if len(evs) != 1 || len(evs[0].Presence) != 31 || evs[0].OnlineCount != 31 {
		t.Fatalf("the 32nd joiner got %+v, want the 31 announced users, itself not yet", evs)
	}
	if d := queued(t, first); len(d) != 0 {
		t.Fatalf("a member got %+v for the 32nd join before the room's next diff", d)
	}
	flush(t, h)
	if d := queued(t, first); len(d) != 1 || d[0].Kind != EventPresenceDiff || d[0].OnlineCount != 32 {
		t.Fatalf("a member got %+v at the next diff, want the 32nd join with online count 32", d)
	}
}

func TestBigRoomThreshold(t *testing.T) {
	const threshold, page = 5, 2
	for _, n := range []int{threshold - 1, threshold, threshold + 1} {
		t.Run(fmt.Sprint(n, " users"), func(t *testing.T) {
			h := bigRoomHub(t, threshold, page)
			var members []*Conn
			for i := range n - 1 {
				members = append(members, joinR(t, h, fmt.Sprintf("u%02d", i)))
				flush(t, h)
			}
			queued(t, members[0])
			last := joinR(t, h, fmt.Sprintf("u%02d", n-1))
			evs := queued(t, last)
			if len(evs) != 1 || evs[0].Kind != EventJoined {
				t.Fatalf("joiner got %v, want its joined state", evs)
			}
			st := evs[0]
			switch {
			case n < threshold:
				if len(st.Presence) != n || st.OnlineCount != n || st.PresenceNext != (PageCursor{}) {
					t.Fatalf("state in a room of %d users: %v, online %d, next %q; want all %d, itself included", n, usersOf(st.Presence), st.OnlineCount, st.PresenceNext, n)
				}
				d := queued(t, members[0])
				if len(d) != 1 || d[0].Kind != EventPresenceDiff || metaCount(d[0].Joins) != 1 || d[0].OnlineCount != n {
					t.Fatalf("member got %+v for the join, want one diff with it and online count %d", d, n)
				}
			case n == threshold:
				if got := usersOf(st.Presence); len(got) != n-1 || st.OnlineCount != n-1 || st.PresenceNext != (PageCursor{}) {
					t.Fatalf("state as the room turns big: %v, online %d, next %q; want the %d announced, no next page", got, st.OnlineCount, st.PresenceNext, n-1)
				}
				flush(t, h)
				d := queued(t, members[0])
				if len(d) != 1 || d[0].Kind != EventPresenceDiff || len(d[0].Joins) != 0 || !slices.Equal(usersOf(d[0].Leaves), []string{"u02", "u03"}) || d[0].OnlineCount != n {
					t.Fatalf("member got %+v as the room turned big, want one diff taking u02 and u03 out of its view, online count %d", d, n)
				}
			default:
				if got := usersOf(st.Presence); !slices.Equal(got, []string{"u00", "u01"}) || st.OnlineCount != n-1 || st.PresenceNext != (PageCursor{User: "u01"}) {
					t.Fatalf("state in a big room of %d users: %v, online %d, next %q; want [u00 u01], the %d announced, next after u01", n, got, st.OnlineCount, st.PresenceNext, n-1)
				}
				flush(t, h)
				d := queued(t, members[0])
				if len(d) != 1 || d[0].Kind != EventPresenceDiff || len(d[0].Joins)+len(d[0].Leaves) != 0 || d[0].OnlineCount != n {
					t.Fatalf("member got %+v for a join past the first page, want one diff with the online count %d alone", d, n)
				}
			}
		})
	}
}

// Paging through a big room's presence while users join and leave between
// the pages lists every user online throughout exactly once, in order,
// whether the pages are asked for on a connection or not.
func TestPresencePagesCoverEveryUserOnce(t *testing.T) {
	for _, onConn := range []bool{false, true} {
		t.Run(fmt.Sprint("on a connection: ", onConn), func(t *testing.T) {
			h := bigRoomHub(t, 10, 100)
			conns := map[string]*Conn{}
			for i := range 60 {
				u := fmt.Sprintf("u%03d", 2*i) // even ids: joiners below fall between them
				conns[u] = joinR(t, h, u)
			}
			flush(t, h)
			reader := conns["u000"]
			queued(t, reader)
			pageOf := func(after PageCursor) PresencePage {
				if !onConn {
					p, err := h.PresencePage(context.Background(), "r", after, 7)
					if err != nil {
						t.Fatal(err)
					}
					return p
				}
				var page PresencePage
				err := h.QueuePresencePage(reader, "r", after, 7, func(p PresencePage) ([]byte, error) {
					page = p
					return []byte(`{"k":"joined"}`), nil // what the frame holds is the caller's
				})
				if err != nil {
					t.Fatal(err)
				}
				return page
			}
			seen := map[string]int{}
			after, round := PageCursor{}, 0
			for {
				p := pageOf(after)
				for _, u := range p.Presence {
					if u.User <= after.User {
						t.Fatalf("page after %q holds %q", after, u.User)
					}
					seen[u.User]++
				}
				if p.Next == (PageCursor{}) {
					break
				}
				after = p.Next
				// Between pages: someone joins before the cursor and after
				// it, someone leaves before and after it; every other round
				// the changes are announced before the next page.
				round++
				joinR(t, h, fmt.Sprintf("u%03d", 2*round*5+1))
				joinR(t, h, fmt.Sprintf("u%03d", 2*round+1))
				for _, u := range []string{fmt.Sprintf("u%03d", 2*round*6), fmt.Sprintf("u%03d", 2*(round*6+1))} {
					if c := conns[u]; c != nil && u != "u000" {
						c.Close()
						delete(conns, u)
					}
				}
				if round%2 == 0 {
					flush(t, h)
				}
			}
			for u := range conns { // online throughout
				if seen[u] != 1 {
					t.Errorf("%s is listed %d times, want once", u, seen[u])
				}
			}
			for u, n := range seen {
				if n > 1 {
					t.Errorf("%s is listed %d times", u, n)
				}
			}
			if round < 5 {
				t.Fatalf("only %d pages", round+1)
			}
		})
	}
}

// In a big room, many joins within one window reach each member as one
// diff with all of them and the online count after them; a connection
// that joins and leaves within the window is never announced, and a
// window in which nothing changed in the end sends nothing.
func TestBigRoomDiffsCoalesced(t *testing.T) {
	h := bigRoomHub(t, 5, 100)
	var members []*Conn
	for i := range 10 {
		members = append(members, joinR(t, h, fmt.Sprintf("m%d", i)))
	}
	flush(t, h)
	for _, m := range members {
		queued(t, m)
	}
	for i := range 50 {
		joinR(t, h, fmt.Sprintf("j%02d", i))
	}
	ghost := joinR(t, h, "ghost")
	ghost.Close()
	members[9].Close()
	flush(t, h)
	for i, m := range members[:9] {
		evs := queued(t, m)
		if len(evs) != 1 || evs[0].Kind != EventPresenceDiff {
			t.Fatalf("member %d got %d frames for 52 joins and 2 leaves, want one diff", i, len(evs))
		}
		d := evs[0]
		if metaCount(d.Joins) != 50 || slices.Contains(usersOf(d.Joins), "ghost") || !slices.Equal(usersOf(d.Leaves), []string{"m9"}) || d.OnlineCount != 59 {
			t.Fatalf("member %d's diff: joins %v, leaves %v, online %d; want the 50 joiners, m9 leaving, 59 online", i, usersOf(d.Joins), usersOf(d.Leaves), d.OnlineCount)
		}
	}
	late := joinR(t, h, "late")
	late.Close()
	flush(t, h)
	for i, m := range members[:9] {
		if evs := queued(t, m); len(evs) != 0 {
			t.Fatalf("member %d got %v for a join and leave within one window, want nothing", i, evs)
		}
	}
}

// The online count counts users, not connections: a user with many
// connections counts once until the last one leaves. A big room's diffs
// name only the metas that came into or went out of the first page, which
// holds a user with more connections than a page alone: the rest of the
// user's metas are never named, and a connection past the page that
// changes neither the page nor the count sends nothing.
func TestOnlineCountWithManyMetas(t *testing.T) {
	h := bigRoomHub(t, 3, 100)
	watcher := joinR(t, h, "watcher")
	joinR(t, h, "other")
	var bot []*Conn
	for range 1000 {
		bot = append(bot, joinR(t, h, "bot"))
	}
	flush(t, h)
	evs := queued(t, watcher)
	if d := evs[len(evs)-1]; d.OnlineCount != 3 || !slices.Equal(usersOf(d.Joins), []string{"bot"}) || metaCount(d.Joins) != 100 || !slices.Equal(usersOf(d.Leaves), []string{"other", "watcher"}) {
		t.Fatalf("after bot's 1,000 connections joined: online %d, joins %v (%d metas), leaves %v; want 3 online, bot's first 100 metas filling the first page, other and watcher out of it", d.OnlineCount, usersOf(d.Joins), metaCount(d.Joins), usersOf(d.Leaves))
	}
	extra := joinR(t, h, "bot")
	flush(t, h)
	if d := queued(t, watcher); len(d) != 0 {
		t.Fatalf("one more connection of bot, past the first page: %+v, want nothing", d)
	}
	extra.Close()
	for _, c := range bot[1:] {
		c.Close()
	}
	flush(t, h)
	if d := queued(t, watcher); len(d) != 1 || metaCount(d[0].Leaves) != 99 || !slices.Equal(usersOf(d[0].Joins), []string{"other", "watcher"}) || d[0].OnlineCount != 3 {
		t.Fatalf("all but one of bot's connections left: %d diffs, want one with the 99 of the first page leaving, other and watcher back in it, 3 online", len(d))
	}
	bot[0].Close()
	flush(t, h)
	if d := queued(t, watcher); len(d) != 1 || d[0].OnlineCount != 2 || metaCount(d[0].Leaves) != 1 {
		t.Fatalf("bot's last connection left: %+v, want its leave, online 2", d)
	}
	page, err := h.PresencePage(context.Background(), "r", PageCursor{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if page.Online != 2 || !slices.Equal(usersOf(page.Presence), []string{"other", "watcher"}) {
		t.Fatalf("presence after bot left: %v, online %d", usersOf(page.Presence), page.Online)
	}
}

// A member of a big room gets its state once, when it joins: however much
// the room changes after, it receives diffs of what changed, never the
// presence again.
func TestBigRoomMemberNeverGetsTheWholeStateAgain(t *testing.T) {
	h := bigRoomHub(t, 5, 3)
	for i := range 20 {
		joinR(t, h, fmt.Sprintf("u%02d", i))
	}
	flush(t, h)
	member := joinR(t, h, "member")
	var all []Event
	var crowd []*Conn
	for round := range 10 {
		for i := range 30 {
			crowd = append(crowd, joinR(t, h, fmt.Sprintf("c%d-%d", round, i)))
		}
		for _, c := range crowd[len(crowd)-30 : len(crowd)-15] {
			c.Close()
		}
		if _, _, err := h.Send(context.Background(), store.NewMessage{Room: "r", Sender: "s", Body: "b"}); err != nil {
			t.Fatal(err)
		}
		flush(t, h)
		all = append(all, queued(t, member)...)
	}
	joined, diffs := 0, 0
	for _, ev := range all {
		switch ev.Kind {
		case EventJoined:
			joined++
			if len(ev.Presence) != 3 || ev.OnlineCount != 20 {
				t.Fatalf("member's state: %v, online %d; want the first page of 3 of the 20", usersOf(ev.Presence), ev.OnlineCount)
			}
		case EventPresenceDiff:
			// Each round leaves 15 more online (and the member joined in
			// the first); the first round's crowd sorts first and fills
			// the page of 3, after which the page stays and only the
			// count changes.
			if want := 20 + 1 + 15*(diffs+1); ev.OnlineCount != want {
				t.Fatalf("diff %d: online %d, want %d", diffs, ev.OnlineCount, want)
			}
			if n := metaCount(ev.Joins) + metaCount(ev.Leaves); n > 2*3 {
				t.Fatalf("diff %d has %d metas, want at most two pages of 3", diffs, n)
			}
			diffs++
		}
	}
	if joined != 1 || diffs != 10 {
		t.Fatalf("member got %d states and %d diffs over 10 rounds, want 1 and 10", joined, diffs)
	}
}

// Presence from other nodes goes through the same gathering: a crowd
// joining a big room on one node reaches a member on another in a few
// diffs, not one per join, and the member's view built from them holds
// every one of them.
func TestRemotePresenceCoalescedInBigRooms(t *testing.T) {
	url := testNATS(t)
	encode := func(ev Event) ([]byte, error) { return json.Marshal(ev) }
	tc := startTestClusterWith(t, url, 0, Config{HeartbeatInterval: 50 * time.Millisecond, PresencePageThreshold: 5,
		PresenceBatchWindow: 200 * time.Millisecond}, encode, "a", "b")
	a, b := tc.hubs["a"], tc.hubs["b"]
	member := joinTracked(t, b, "member", "r")
	const crowd = 200
	for i := range crowd {
		joinTracked(t, a, fmt.Sprintf("c%03d", i), "r")
	}
	v := &view{t: t, name: "member on b"}
	waitUntil(t, "the member to see the crowd", func() bool {
		for member.QueuedBytes() > 0 {
			frames, err := member.Next(nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range frames {
				v.apply(f.Data)
			}
		}
		return v.online == crowd+1
	})
	// The member's view is the first page, as b pages it.
	page, err := b.PresencePage(context.Background(), "r", PageCursor{}, 100)
	if err != nil {
		t.Fatal(err)
	}
	if page.Online != crowd+1 || !sameView(v.conns, page.Presence) {
		t.Fatalf("member's view: %d metas; first page on b: %d metas of %d users online", len(v.conns), metaCount(page.Presence), page.Online)
	}
	// While the room had fewer than 5 users each join was a diff of its
	// own; then a diff per window, however many joins it gathered.
	if v.diffs > 4+10 {
		t.Fatalf("the member got %d diffs for %d remote joins, want them gathered", v.diffs, crowd)
	}
	t.Logf("%d diffs for %d remote joins", v.diffs, crowd)
}

// sameView reports whether a view's connections are exactly those of ps.
func sameView(conns map[string]string, ps []Presence) bool {
	n := 0
	for _, p := range ps {
		for _, m := range p.Metas {
			if conns[m.ConnID] != p.User {
				return false
			}
			n++
		}
	}
	return n == len(conns)
}

// Connections count toward a big room too: a few users holding many
// connections (bots, a gateway) make a room big, whose changes are
// gathered and whose joiners get a page.
func TestManyConnectionsOfFewUsersMakeARoomBig(t *testing.T) {
	h := bigRoomHub(t, 5, 1)
	first := joinR(t, h, "bot")
	for range 3 { // 4 connections: small, each join a diff at once
		joinR(t, h, "bot")
	}
	if evs := queued(t, first); len(evs) != 4 || evs[3].Kind != EventPresenceDiff || evs[3].OnlineCount != 1 {
		t.Fatalf("first connection got %d frames for 3 more of its user's, want its state and 3 diffs", len(evs))
	}
	joinR(t, h, "bot") // the fifth: big
	joinR(t, h, "alice")
	if evs := queued(t, first); len(evs) != 0 {
		t.Fatalf("joins in a room of 5 connections were announced at once: %v", evs)
	}
	flush(t, h)
	// The window's diff brings the view to the first page, of one meta:
	// alice in, bot's 4 announced metas out.
	if evs := queued(t, first); len(evs) != 1 || !slices.Equal(usersOf(evs[0].Joins), []string{"alice"}) || metaCount(evs[0].Leaves) != 4 || evs[0].OnlineCount != 2 {
		t.Fatalf("after the window: %+v, want one diff with alice joining the first page and bot's 4 metas leaving it, 2 online", evs)
	}
	carol := joinR(t, h, "carol")
	st := queued(t, carol)[0]
	if got := usersOf(st.Presence); !slices.Equal(got, []string{"alice"}) || st.PresenceNext != (PageCursor{User: "alice"}) || st.OnlineCount != 2 {
		t.Fatalf("joiner's state: %v, next %q, online %d; want a page of [alice], next after alice, 2 online", got, st.PresenceNext, st.OnlineCount)
	}
}

// A page holds at most as many metas as users: a user with more
// connections than that fills pages alone, the next page continuing
// where the last ended, so neither a joiner's state nor any page carries
// a crowd of one user's connections; every meta is listed exactly once.
func TestPagesSplitAUserWithManyConnections(t *testing.T) {
	h := bigRoomHub(t, 3, 4)
	joinR(t, h, "a")
	var bot []*Conn
	for range 10 {
		bot = append(bot, joinR(t, h, "bot"))
	}
	joinR(t, h, "c")
	joinR(t, h, "c")
	for range 3 {
		joinR(t, h, "d")
	}
	flush(t, h)
	// bot's 11th connection joins while bot is paged through, so bot's
	// last page holds 3 and c's 2 more do not fit with them.
	want := [][]string{{"a"}, {"bot"}, {"bot"}, {"bot"}, {"c"}, {"d"}}
	seen := map[string]int{}
	after := PageCursor{}
	for i := 0; ; i++ {
		p, err := h.PresencePage(context.Background(), "r", after, 4)
		if err != nil {
			t.Fatal(err)
		}
		if i >= len(want) || !slices.Equal(usersOf(p.Presence), want[i]) || metaCount(p.Presence) > 4 {
			t.Fatalf("page %d: %v with %d metas, want %v with at most 4", i, usersOf(p.Presence), metaCount(p.Presence), want[min(i, len(want)-1)])
		}
		for _, u := range p.Presence {
			for _, m := range u.Metas {
				seen[m.ConnID]++
			}
		}
		if i == 1 {
			joinR(t, h, "bot") // joins while bot is being paged: listed once, later
			flush(t, h)
		}
		if p.Next == (PageCursor{}) {
			break
		}
		after = p.Next
	}
	if len(seen) != 17 {
		t.Fatalf("pages listed %d connections, want all 17", len(seen))
	}
	for conn, n := range seen {
		if n != 1 {
			t.Errorf("connection %s listed %d times", conn, n)
		}
	}
	z := joinR(t, h, "z")
	if st := queued(t, z)[0]; !slices.Equal(usersOf(st.Presence), []string{"a"}) || st.PresenceNext != (PageCursor{User: "a"}) {
		t.Fatalf("joiner's first page: %v, next %+v; want [a] alone (bot's 11 do not fit), next after a", usersOf(st.Presence), st.PresenceNext)
	}
}

// A big room's diffs name only what its members can be looking at, the
// first page: a storm of joins of users who sort past it reaches a member
// as diffs of the online count alone, however large the storm; joins and
// leaves within the page are named, and so are the users that move into
// or out of it as others come and go before them. A member applying the
// diffs as Phoenix does (joins add metas, leaves take them away) holds,
// after every diff, exactly the first page a fresh ListPresence returns,
// with its count; and a window that changes neither sends nothing.
func TestBigRoomDiffsNameOnlyTheFirstPage(t *testing.T) {
	const page = 10
	h := bigRoomHub(t, 5, page)
	users := map[string][]*Conn{}
	join := func(user string) { users[user] = append(users[user], joinR(t, h, user)) }
	leave := func(user string) {
		cs := users[user]
		cs[len(cs)-1].Close()
		if users[user] = cs[:len(cs)-1]; len(users[user]) == 0 {
			delete(users, user)
		}
	}
	for i := range 20 {
		join(fmt.Sprintf("p%02d", i))
	}
	flush(t, h)
	watcher := joinR(t, h, "w")
	v := &view{t: t, name: "watcher"}
	var last Event // the last diff the watcher got in a round
	round := func(what string) int {
		t.Helper()
		flush(t, h)
		n := 0
		last = Event{}
		for _, ev := range queued(t, watcher) {
			data, err := json.Marshal(ev)
			if err != nil {
				t.Fatal(err)
			}
			v.apply(data)
			if ev.Kind == EventPresenceDiff {
				n++
				last = ev
			}
		}
		want, err := h.PresencePage(context.Background(), "r", PageCursor{}, page)
		if err != nil {
			t.Fatal(err)
		}
		if v.online != want.Online || want.Online != len(users)+1 || !sameView(v.conns, want.Presence) {
			t.Fatalf("%s: the watcher holds %d metas, online %d; a fresh first page is %v (%d metas), online %d, of %d users", what, len(v.conns), v.online, usersOf(want.Presence), metaCount(want.Presence), want.Online, len(users)+1)
		}
		return n
	}
	round("the watcher's join") // past the page: nothing named

	// A storm of 500 users who sort after the first page (p00..p09).
	for i := range 500 {
		join(fmt.Sprintf("q%03d", i))
	}
	if n := round("a storm past the first page"); n != 1 || len(last.Joins)+len(last.Leaves) != 0 || last.OnlineCount != 521 {
		t.Fatalf("a storm of 500 joins past the first page: %d diffs, the last naming %d joins and %d leaves, online %d; want one diff of the count 521 alone", n, metaCount(last.Joins), metaCount(last.Leaves), last.OnlineCount)
	}
	for i := range 250 {
		leave(fmt.Sprintf("q%03d", i))
	}
	if n := round("leaves past the first page"); n != 1 || len(last.Joins)+len(last.Leaves) != 0 || last.OnlineCount != 271 {
		t.Fatalf("250 leaves past the first page: %d diffs, the last naming %d joins and %d leaves, online %d; want one diff of the count 271 alone", n, metaCount(last.Joins), metaCount(last.Leaves), last.OnlineCount)
	}

	// Changes within the page are named, and the users they push out of
	// it or pull into it.
	leave("p03")
	join("p03a")
	join("a1")
	if n := round("changes within the first page"); n != 1 || !slices.Equal(usersOf(last.Joins), []string{"a1", "p03a"}) || !slices.Equal(usersOf(last.Leaves), []string{"p03", "p09"}) || last.OnlineCount != 272 {
		t.Fatalf("p03 left, p03a and a1 joined: %d diffs, the last with joins %v, leaves %v, online %d; want joins [a1 p03a], leaves [p03 p09] (p09 pushed out), online 272", n, usersOf(last.Joins), usersOf(last.Leaves), last.OnlineCount)
	}
	leave("a1")
	leave("p00")
	if n := round("leaves pulling users in"); n != 1 || !slices.Equal(usersOf(last.Joins), []string{"p09", "p10"}) || !slices.Equal(usersOf(last.Leaves), []string{"a1", "p00"}) || last.OnlineCount != 270 {
		t.Fatalf("a1 and p00 left: joins %v, leaves %v, online %d; want p09 and p10 pulled in, online 270", usersOf(last.Joins), usersOf(last.Leaves), last.OnlineCount)
	}

	// Nothing the watcher looks at changed: a user's second connection
	// past the page, a join and leave within one window.
	join("q400")
	join("ghost")
	leave("ghost")
	if n := round("no change in view or count"); n != 0 {
		t.Fatalf("a window that changed neither the first page nor the count sent %d diffs", n)
	}

	// Random changes, many users with several connections: after every
	// window the watcher's view is the fresh first page.
	rng := rand.New(rand.NewPCG(1, 21))
	for w := range 40 {
		for range rng.IntN(60) {
			if rng.IntN(2) == 0 || len(users) < 10 {
				join(fmt.Sprintf("%c%02d", 'a'+rng.IntN(26), rng.IntN(30)))
				continue
			}
			names := slices.Sorted(maps.Keys(users))
			leave(names[rng.IntN(len(names))])
		}
		round(fmt.Sprint("random window ", w))
	}

	// Everyone but the watcher goes: the room is small again, the diff
	// that makes it so leaves the watcher holding everyone, and the next
	// join is announced at once, named, as in any small room.
	for len(users) > 0 {
		for user := range users {
			leave(user)
		}
	}
	round("the room turning small")
	if len(v.conns) != 1 || v.online != 1 {
		t.Fatalf("alone in the room, the watcher holds %d metas, online %d", len(v.conns), v.online)
	}
	joinR(t, h, "zz")
	if evs := queued(t, watcher); len(evs) != 1 || !slices.Equal(usersOf(evs[0].Joins), []string{"zz"}) || evs[0].OnlineCount != 2 {
		t.Fatalf("a join into the small room again: %+v, want its diff at once", evs)
	}
}

// A diff that would carry a changed online count and nothing else is sent
// at most every n/PresenceCountRate seconds in a room of n connections:
// the first at once, the next when that time has passed, with the count
// as it is then; a change within the first page goes out with its window
// all the same, carrying the count.
func TestBigRoomCountOnlyDiffsSpaced(t *testing.T) {
	const rate = 20 // 21 connections: 1.05 s between count-only diffs
	h := bigRoomHubWith(t, Config{PresencePageThreshold: 5, PresencePageSize: 5, PresenceCountRate: rate})
	for i := range 20 {
		joinR(t, h, fmt.Sprintf("p%02d", i))
	}
	flush(t, h)
	watcher := joinR(t, h, "w")
	awaitCount := func(want int) time.Time {
		t.Helper()
		var got []Event
		waitUntil(t, fmt.Sprint("the count ", want), func() bool { got = append(got, queued(t, watcher)...); return len(got) > 0 })
		at := time.Now()
		if len(got) != 1 || got[0].OnlineCount != want || len(got[0].Joins)+len(got[0].Leaves) != 0 {
			t.Fatalf("got %+v, want one diff of the count %d alone", got, want)
		}
		return at
	}
	queued(t, watcher) // its state
	flush(t, h)
	last := awaitCount(21)
	joinR(t, h, "q00")
	joinR(t, h, "q01")
	flush(t, h)
	if evs := queued(t, watcher); len(evs) != 0 && time.Since(last) < 800*time.Millisecond {
		t.Fatalf("a count-only diff right after another: %+v, want it to wait", evs)
	}
	joinR(t, h, "q02")
	flush(t, h) // another window: still one timer, one diff
	awaitCount(24)
	if waited := time.Since(last); waited < 800*time.Millisecond {
		t.Fatalf("the next count-only diff came %v after the last, want about 1.05 s", waited)
	}
	// A change within the first page is not held back.
	joinR(t, h, "a")
	flush(t, h)
	if evs := queued(t, watcher); len(evs) != 1 || !slices.Equal(usersOf(evs[0].Joins), []string{"a"}) || evs[0].OnlineCount != 25 {
		t.Fatalf("a join into the first page right after a count: %+v, want its diff at once, with the count 25", evs)
	}
}
