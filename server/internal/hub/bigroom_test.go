package hub

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/parleychat/parley/server/internal/store"
	"github.com/parleychat/parley/server/internal/store/memory"
)

// bigRoomHub returns a hub with room "r" whose rooms are big from
// threshold users, with pages of pageSize users; waiting presence changes
// are announced only when the test calls flush (the window is an hour).
func bigRoomHub(t *testing.T, threshold, pageSize int) *Hub {
	t.Helper()
	st := memory.New()
	if _, err := st.CreateRoom(context.Background(), store.Room{Name: "r", Visibility: store.Public}); err != nil {
		t.Fatal(err)
	}
	encode := func(ev Event) ([]byte, error) { return json.Marshal(ev) }
	return New(Config{PresencePageThreshold: threshold, PresencePageSize: pageSize, PresenceBatchWindow: time.Hour},
		st, encode, slog.New(slog.NewTextHandler(io.Discard, nil)))
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
// and everyone a diff at once; from it on, the online count and the first
// page of what was announced (the joiner comes in the next diff, like
// every change in a room that gathers them), with where the next page
// starts.
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
			if n < threshold {
				if len(st.Presence) != n || st.OnlineCount != n || st.PresenceNext != (PageCursor{}) {
					t.Fatalf("state in a room of %d users: %v, online %d, next %q; want all %d, itself included", n, usersOf(st.Presence), st.OnlineCount, st.PresenceNext, n)
				}
			} else {
				if got := usersOf(st.Presence); !slices.Equal(got, []string{"u00", "u01"}) || st.OnlineCount != n-1 || st.PresenceNext != (PageCursor{User: "u01"}) {
					t.Fatalf("state in a big room of %d users: %v, online %d, next %q; want [u00 u01], the %d announced, next after u01", n, got, st.OnlineCount, st.PresenceNext, n-1)
				}
				flush(t, h)
			}
			d := queued(t, members[0])
			if len(d) != 1 || d[0].Kind != EventPresenceDiff || metaCount(d[0].Joins) != 1 || d[0].OnlineCount != n {
				t.Fatalf("member got %+v for the join, want one diff with it and online count %d", d, n)
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
// connections counts once until the last one leaves, and a diff carries
// only the metas that changed, never the user's others.
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
	if d := evs[len(evs)-1]; d.OnlineCount != 3 || metaCount(d.Joins) != 1000 {
		t.Fatalf("after bot's 1,000 connections joined: online %d, %d metas; want 3 online, 1,000 metas", d.OnlineCount, metaCount(d.Joins))
	}
	extra := joinR(t, h, "bot")
	flush(t, h)
	if d := queued(t, watcher); len(d) != 1 || metaCount(d[0].Joins) != 1 || d[0].OnlineCount != 3 {
		t.Fatalf("one more connection of bot: %+v, want one diff with its meta alone, 3 online", d)
	}
	extra.Close()
	for _, c := range bot[1:] {
		c.Close()
	}
	flush(t, h)
	if d := queued(t, watcher); len(d) != 1 || metaCount(d[0].Leaves) != 1000 || d[0].OnlineCount != 3 {
		t.Fatalf("all but one of bot's connections left: %d diffs, want one with 1,000 leaves and 3 online", len(d))
	}
	bot[0].Close()
	flush(t, h)
	if d := queued(t, watcher); len(d) != 1 || d[0].OnlineCount != 2 {
		t.Fatalf("bot's last connection left: %+v, want online 2", d)
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
			// A round's 30 joins less the 15 that left within it, and
			// the member's own join in the first.
			want := 15
			if diffs == 0 {
				want = 16
			}
			if n := metaCount(ev.Joins) + metaCount(ev.Leaves); n != want {
				t.Fatalf("diff %d has %d metas, want %d", diffs, n, want)
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
		return len(v.conns) == crowd+1
	})
	// While the room had fewer than 5 users each join was a diff of its
	// own; then a diff per window, however many joins it gathered.
	if v.diffs > 4+10 {
		t.Fatalf("the member got %d diffs for %d remote joins, want them gathered", v.diffs, crowd)
	}
	t.Logf("%d diffs for %d remote joins", v.diffs, crowd)
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
	if evs := queued(t, first); len(evs) != 1 || metaCount(evs[0].Joins) != 2 || evs[0].OnlineCount != 2 {
		t.Fatalf("after the window: %+v, want one diff with the 2 joins, 2 online", evs)
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
