package app_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	parleyv1 "github.com/parleychat/parley/gen/parley/v1"
	"github.com/parleychat/parley/server/app"
	"github.com/parleychat/parley/server/internal/hub"
)

// joinCrowd joins n users (prefix and a number) to room, each on a Join
// stream of its own, streams sharing a few connections, and returns them
// once the room has announced the last of them.
func joinCrowd(t *testing.T, ts *testServer, room, prefix string, n int) []*joinStream {
	t.Helper()
	var conn *grpc.ClientConn
	var out []*joinStream
	for i := range n {
		if i%50 == 0 {
			conn = ts.dial(t)
		}
		js := openJoin(t, conn, ts.token(t, fmt.Sprintf("%s%03d", prefix, i)))
		js.join(room, nil)
		out = append(out, js)
	}
	if n > 1 {
		out[0].awaitOnline(room, n)
	}
	return out
}

// awaitOnline waits until js receives a diff of room with online count
// n: in a big room, joins past the first page are not named, but the
// count is always there.
func (js *joinStream) awaitOnline(room string, n int) *parleyv1.PresenceDiff {
	js.t.Helper()
	return js.next(func(ev *parleyv1.JoinResponse) bool {
		return ev.GetPresenceDiff().GetRoom() == room && ev.GetPresenceDiff().GetOnlineCount() == int32(n)
	}, nil).GetPresenceDiff()
}

// awaitJoinOf waits until js receives the diff announcing user in room.
func (js *joinStream) awaitJoinOf(room, user string) *parleyv1.PresenceDiff {
	js.t.Helper()
	return js.next(func(ev *parleyv1.JoinResponse) bool {
		return ev.GetPresenceDiff().GetRoom() == room && slices.ContainsFunc(ev.GetPresenceDiff().GetJoins(), func(p *parleyv1.Presence) bool { return p.GetUser() == user })
	}, nil).GetPresenceDiff()
}

func usersOf(ps []*parleyv1.Presence) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.GetUser())
	}
	return out
}

// The threshold over real gRPC: with one user fewer than it, a joiner's
// state lists everyone. The join that makes the room big still gets
// everything announced (what the members hold), and the window's diff
// brings every view down to the first 100 users by id. From then on a
// joiner gets the first 100 users by id, the online count, and a token
// for the rest, which ListPresence pages through; a join past the first
// page reaches everyone as a diff of the online count alone.
func TestPresencePageThreshold(t *testing.T) {
	const threshold = 105
	for _, n := range []int{threshold - 1, threshold, threshold + 1} {
		t.Run(fmt.Sprint(n, " users"), func(t *testing.T) {
			ts := startServer(t, func(c *app.Config) { c.PresencePageThreshold = threshold })
			ts.createRoom(t, "big")
			crowd := joinCrowd(t, ts, "big", "u", n-1)
			last := openJoin(t, ts.dial(t), ts.token(t, "zz-last"))
			st := last.join("big", nil)
			if n < threshold {
				// All of them; like every change in a room of 100
				// connections or more, the joiner's own comes in a diff.
				if len(st.GetPresence()) != n-1 || st.GetOnlineCount() != int32(n-1) || st.GetPresenceNextPageToken() != "" {
					t.Fatalf("joined of a room of %d: %d users, online %d, token %q; want all %d announced", n, len(st.GetPresence()), st.GetOnlineCount(), st.GetPresenceNextPageToken(), n-1)
				}
				last.awaitJoinOf("big", "zz-last")
				return
			}
			users := usersOf(st.GetPresence())
			var wantLeaves []string // out of the first page
			if n == threshold {
				if len(users) != n-1 || st.GetOnlineCount() != int32(n-1) || st.GetPresenceNextPageToken() != "" {
					t.Fatalf("joined of the room turning big: %d users, online %d, token %q; want the %d announced, no token", len(users), st.GetOnlineCount(), st.GetPresenceNextPageToken(), n-1)
				}
				wantLeaves = users[100:]
			} else if len(users) != 100 || !slices.IsSorted(users) || users[0] != "u000" || st.GetOnlineCount() != int32(n-1) || st.GetPresenceNextPageToken() == "" {
				t.Fatalf("joined of a big room of %d: %d users from %s, online %d, token %q; want the first 100 of the %d announced and a token",
					n, len(users), users[0], st.GetOnlineCount(), st.GetPresenceNextPageToken(), n-1)
			}
			// The next diff, to the joiner and to a member alike: the
			// count with the joiner, and no join (zz-last sorts past the
			// first page).
			for who, js := range map[string]*joinStream{"joiner": last, "member": crowd[0]} {
				d := js.awaitOnline("big", n)
				if len(d.GetJoins()) != 0 || !slices.Equal(usersOf(d.GetLeaves()), wantLeaves) {
					t.Fatalf("%s's diff with the joiner: joins %v, leaves %v; want no joins, leaves %v", who, usersOf(d.GetJoins()), usersOf(d.GetLeaves()), wantLeaves)
				}
			}
			c, ctx := ts.client(t, "reader")
			first, err := c.ListPresence(ctx, &parleyv1.ListPresenceRequest{Room: "big", PageSize: 100})
			if err != nil {
				t.Fatal(err)
			}
			rest, err := c.ListPresence(ctx, &parleyv1.ListPresenceRequest{Room: "big", PageToken: first.GetNextPageToken()})
			if err != nil {
				t.Fatal(err)
			}
			want := []string{}
			for i := 100; i < n-1; i++ {
				want = append(want, fmt.Sprintf("u%03d", i))
			}
			want = append(want, "zz-last")
			if got := usersOf(rest.GetPresence()); !slices.Equal(got, want) || rest.GetNextPageToken() != "" || rest.GetOnlineCount() != int32(n) {
				t.Fatalf("second page: %v, token %q, online %d; want %v, the last page, %d online", got, rest.GetNextPageToken(), rest.GetOnlineCount(), want, n)
			}
		})
	}
}

// Paging through a big room's presence — with ListPresence, REST and the
// Join stream's presence_page frame — lists every user online throughout
// exactly once, in order, though users join and leave between the pages.
func TestPresencePagingUnderChurn(t *testing.T) {
	ts := startServer(t, func(c *app.Config) { c.PresencePageThreshold = 10 })
	ts.createRoom(t, "big")
	crowd := joinCrowd(t, ts, "big", "u", 40)
	reader := crowd[0]
	c, ctx := ts.client(t, "reader")
	tok := ts.token(t, "reader")
	ways := map[string]func(token string) (users []string, next string, online int32){
		"ListPresence": func(token string) ([]string, string, int32) {
			r, err := c.ListPresence(ctx, &parleyv1.ListPresenceRequest{Room: "big", PageSize: 7, PageToken: token})
			if err != nil {
				t.Fatal(err)
			}
			return usersOf(r.GetPresence()), r.GetNextPageToken(), r.GetOnlineCount()
		},
		"REST": func(token string) ([]string, string, int32) {
			code, _, out := restRaw(t, "GET", "http://"+ts.Addr()+"/v1/rooms/big/presence?pageSize=7&pageToken="+url.QueryEscape(token), tok, "", "")
			if code != http.StatusOK {
				t.Fatalf("REST page: %d %v", code, out)
			}
			var users []string
			list, _ := out["presence"].([]any)
			for _, p := range list {
				users = append(users, p.(map[string]any)["user"].(string))
			}
			next, _ := out["nextPageToken"].(string)
			online, _ := out["onlineCount"].(float64)
			return users, next, int32(online)
		},
		"presence_page": func(token string) ([]string, string, int32) {
			ref := reader.send(&parleyv1.JoinRequest{Frame: &parleyv1.JoinRequest_PresencePage{PresencePage: &parleyv1.JoinRequest_PresencePageRequest{
				Room: "big", PageToken: token, PageSize: 7}}})
			r := reader.reply(ref)
			if r.GetCode() != 0 || r.GetPresencePage() == nil {
				t.Fatalf("presence_page: %s %s", codes.Code(r.GetCode()), r.GetError())
			}
			p := r.GetPresencePage()
			return usersOf(p.GetPresence()), p.GetNextPageToken(), p.GetOnlineCount()
		},
	}
	round := 0
	for name, page := range ways {
		t.Run(name, func(t *testing.T) {
			seen := map[string]int{}
			token, last, pages := "", "", 0
			for {
				users, next, online := page(token)
				pages++
				if online < 10 {
					t.Fatalf("online count %d in a room of 40 or so", online)
				}
				for _, u := range users {
					if u <= last {
						t.Fatalf("page %d: %s after %s", pages, u, last)
					}
					last = u
					seen[u]++
				}
				if next == "" {
					break
				}
				token = next
				// Churn between pages: a newcomer and a leaver on each
				// side of the cursor.
				round++
				for _, u := range []string{"a-new" + fmt.Sprint(round), "z-new" + fmt.Sprint(round)} {
					openJoin(t, ts.dial(t), ts.token(t, u)).join("big", nil)
				}
			}
			for i := range 40 { // online throughout
				if u := fmt.Sprintf("u%03d", i); seen[u] != 1 {
					t.Errorf("%s listed %d times, want once", u, seen[u])
				}
			}
			if pages < 6 {
				t.Fatalf("%d pages of 7 for 40 users", pages)
			}
		})
	}
}

// Bad page requests get INVALID_ARGUMENT (FAILED_PRECONDITION for a room
// not joined on the stream) with a message that says what to do, and the
// stream goes on.
func TestPresencePageBadInput(t *testing.T) {
	ts := startServer(t, func(c *app.Config) { c.PresencePageThreshold = 3 })
	ts.createRoom(t, "big")
	ts.createRoom(t, "other")
	crowd := joinCrowd(t, ts, "big", "u", 5)
	other := joinCrowd(t, ts, "other", "o", 5)
	other[4].join("big", nil)
	crowd[0].awaitJoinOf("big", "o004")
	c, ctx := ts.client(t, "reader")
	r, err := c.ListPresence(ctx, &parleyv1.ListPresenceRequest{Room: "other", PageSize: 2})
	if err != nil || r.GetNextPageToken() == "" {
		t.Fatalf("a page of other: %v %v", r, err)
	}
	tokenOfOther := r.GetNextPageToken()
	cases := []struct {
		name  string
		size  int32
		token string
		code  codes.Code
		msg   string
	}{
		{"negative size", -1, "", codes.InvalidArgument, "page_size must be between 1 and 1000"},
		{"size too large", 1001, "", codes.InvalidArgument, "page_size must be between 1 and 1000"},
		{"token not base64", 0, "!!!", codes.InvalidArgument, "page_token is not one this server issued"},
		{"token of another kind", 0, b64("r1|big"), codes.InvalidArgument, "page_token is not one this server issued"},
		{"token with a bad user", 0, b64("p1|big|../*"), codes.InvalidArgument, "page_token is not one this server issued"},
		{"token without a user", 0, b64("p1|big"), codes.InvalidArgument, "page_token is not one this server issued"},
		{"token with a bad time", 0, b64("p1|big|u001|soon|ABCD"), codes.InvalidArgument, "page_token is not one this server issued"},
		{"token with a bad connection", 0, b64("p1|big|u001|12|abc!"), codes.InvalidArgument, "page_token is not one this server issued"},
		{"token of another room", 0, tokenOfOther, codes.InvalidArgument, `issued for the presence of room "other", not "big"`},
		{"token too long", 0, strings.Repeat("A", 300), codes.InvalidArgument, "page_token is not one this server issued"},
	}
	js := crowd[0]
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.ListPresence(ctx, &parleyv1.ListPresenceRequest{Room: "big", PageSize: tc.size, PageToken: tc.token})
			if s := statusOf(err); s.Code() != tc.code || !strings.Contains(s.Message(), tc.msg) {
				t.Errorf("ListPresence: %v %q, want %v with %q", s.Code(), s.Message(), tc.code, tc.msg)
			}
			ref := js.send(&parleyv1.JoinRequest{Frame: &parleyv1.JoinRequest_PresencePage{PresencePage: &parleyv1.JoinRequest_PresencePageRequest{
				Room: "big", PageSize: tc.size, PageToken: tc.token}}})
			rep := js.reply(ref)
			if codes.Code(rep.GetCode()) != tc.code || !strings.Contains(rep.GetError(), tc.msg) || rep.GetPresencePage() != nil {
				t.Errorf("presence_page: %v %q (page %v), want %v with %q", codes.Code(rep.GetCode()), rep.GetError(), rep.GetPresencePage(), tc.code, tc.msg)
			}
		})
	}
	ref := js.send(&parleyv1.JoinRequest{Frame: &parleyv1.JoinRequest_PresencePage{PresencePage: &parleyv1.JoinRequest_PresencePageRequest{Room: "other"}}})
	if rep := js.reply(ref); codes.Code(rep.GetCode()) != codes.FailedPrecondition || !strings.Contains(rep.GetError(), `join room "other" on this stream`) {
		t.Errorf("presence_page of a room not joined: %v %q", codes.Code(rep.GetCode()), rep.GetError())
	}
	// The stream still works: a good page follows, starting at the top.
	ref = js.send(&parleyv1.JoinRequest{Frame: &parleyv1.JoinRequest_PresencePage{PresencePage: &parleyv1.JoinRequest_PresencePageRequest{Room: "big", PageSize: 2}}})
	rep := js.reply(ref)
	if rep.GetCode() != 0 || !slices.Equal(usersOf(rep.GetPresencePage().GetPresence()), []string{"o004", "u000"}) {
		t.Fatalf("a good page after bad ones: %v %q %v", codes.Code(rep.GetCode()), rep.GetError(), usersOf(rep.GetPresencePage().GetPresence()))
	}
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// A user with more connections than a page holds is split over pages, the
// token carrying where inside the user the next page starts: ListPresence
// and presence_page list each connection exactly once.
func TestPresencePagesSplitAUserWithManyConnections(t *testing.T) {
	ts := startServer(t, func(c *app.Config) { c.PresencePageThreshold = 3 })
	ts.createRoom(t, "big")
	crowd := joinCrowd(t, ts, "big", "u", 4)
	conn, tok := ts.dial(t), ts.token(t, "bot")
	for range 5 {
		openJoin(t, conn, tok).join("big", nil)
	}
	waitFor(t, "bot's 5 connections announced", func() bool {
		r, err := ts.Hub().PresencePage(context.Background(), "big", hub.PageCursor{}, 1000)
		n := 0
		for _, p := range r.Presence {
			n += len(p.Metas)
		}
		return err == nil && r.Online == 5 && n == 9
	})
	c, ctx := ts.client(t, "reader")
	for _, way := range []string{"ListPresence", "presence_page"} {
		t.Run(way, func(t *testing.T) {
			seen := map[string]int{}
			token, pages := "", 0
			for {
				var ps []*parleyv1.Presence
				if way == "ListPresence" {
					r, err := c.ListPresence(ctx, &parleyv1.ListPresenceRequest{Room: "big", PageSize: 2, PageToken: token})
					if err != nil {
						t.Fatal(err)
					}
					ps, token = r.GetPresence(), r.GetNextPageToken()
				} else {
					ref := crowd[0].send(&parleyv1.JoinRequest{Frame: &parleyv1.JoinRequest_PresencePage{PresencePage: &parleyv1.JoinRequest_PresencePageRequest{
						Room: "big", PageToken: token, PageSize: 2}}})
					r := crowd[0].reply(ref)
					if r.GetCode() != 0 {
						t.Fatalf("presence_page: %s", r.GetError())
					}
					ps, token = r.GetPresencePage().GetPresence(), r.GetPresencePage().GetNextPageToken()
				}
				pages++
				n := 0
				for _, p := range ps {
					for _, m := range p.GetMetas() {
						seen[p.GetUser()+"/"+m.GetConnId()]++
						n++
					}
				}
				if n > 2 || n == 0 {
					t.Fatalf("page %d holds %d connections, want 1 or 2", pages, n)
				}
				if token == "" {
					break
				}
			}
			if len(seen) != 9 {
				t.Fatalf("pages listed %d connections, want 9: %v", len(seen), seen)
			}
			for k, n := range seen {
				if n != 1 {
					t.Errorf("%s listed %d times", k, n)
				}
			}
		})
	}
}
