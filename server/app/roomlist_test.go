package app_test

import (
	"fmt"
	"slices"
	"testing"

	"google.golang.org/grpc/codes"

	parleyv1 "github.com/parleychat/parley/gen/parley/v1"
)

// joinQuiet joins room without showing in its presence and waits for the
// joined event.
func (js *joinStream) joinQuiet(room string, after *uint64) *parleyv1.Joined {
	js.t.Helper()
	ref := js.send(&parleyv1.JoinRequest{Frame: &parleyv1.JoinRequest_Join{Join: &parleyv1.JoinRequest_JoinRoom{Room: room, AfterSeq: after, Quiet: true}}})
	if r := js.reply(ref); r.GetCode() != 0 {
		js.t.Fatalf("quiet join %s: %s: %s", room, codes.Code(r.GetCode()), r.GetError())
	}
	return js.next(func(ev *parleyv1.JoinResponse) bool { return ev.GetJoined().GetRoom() == room }, nil).GetJoined()
}

// ready waits until the server serves the stream: it answers a frame (a
// leave of a room it is not in), so the stream's connection is
// registered and hears its user's events.
func (js *joinStream) ready() *joinStream {
	js.t.Helper()
	js.reply(js.send(&parleyv1.JoinRequest{Frame: &parleyv1.JoinRequest_Leave{Leave: &parleyv1.JoinRequest_LeaveRoom{Room: "nowhere"}}}))
	return js
}

func isRoomVisible(room string) func(*parleyv1.JoinResponse) bool {
	return func(ev *parleyv1.JoinResponse) bool { return ev.GetRoomVisible().GetRoom() == room }
}

func presenceUsers(ps []*parleyv1.Presence) []string {
	var users []string
	for _, p := range ps {
		users = append(users, p.GetUser())
	}
	return users
}

// A quiet join receives the room (replayed and live entries, its read
// marker) but does not put its user in the room's presence: the other
// joiners are not told of it, ListPresence does not list it, and leaving
// it announces nothing. Joining again without quiet shows the user.
func TestQuietJoin(t *testing.T) {
	ts := startServer(t)
	ts.createRoom(t, "watched")
	bob, bctx := ts.client(t, "bob")
	sendN(t, bob, bctx, "watched", 2)

	bs := openJoin(t, ts.dial(t), ts.token(t, "bob"))
	if j := bs.join("watched", nil); len(j.GetPresence()) != 1 {
		t.Fatalf("bob's joined presence: %v", presenceUsers(j.GetPresence()))
	}
	alice, actx := ts.client(t, "alice")
	if _, err := alice.MarkRead(actx, &parleyv1.MarkReadRequest{Room: "watched", Seq: 1}); err != nil {
		t.Fatal(err)
	}
	as := openJoin(t, ts.dial(t), ts.token(t, "alice"))
	j := as.joinQuiet("watched", ptr(uint64(1)))
	if got := presenceUsers(j.GetPresence()); len(got) != 1 || got[0] != "bob" || j.GetOnlineCount() != 1 || j.GetHeadSeq() != 2 {
		t.Fatalf("alice's quiet joined: presence %v, online %d, head %d; want [bob], 1, 2", got, j.GetOnlineCount(), j.GetHeadSeq())
	}
	// Its joined leaves out what a room list has from ListRooms.
	if j.GetLastReadSeq() != 0 || len(j.GetReceipts()) != 0 {
		t.Fatalf("alice's quiet joined: last_read_seq %d, receipts %v; want neither", j.GetLastReadSeq(), j.GetReceipts())
	}
	if m := as.next(isMessage("watched"), nil).GetMessage(); m.GetSeq() != 2 {
		t.Fatalf("quiet join after seq 1 replayed seq %d first", m.GetSeq())
	}
	if r := bs.post("watched", "live one", "l1"); r.GetCode() != 0 {
		t.Fatalf("post: %v", r)
	}
	if m := as.next(isMessage("watched"), nil).GetMessage(); m.GetSeq() != 3 || m.GetBody() != "live one" {
		t.Fatalf("quiet joiner got %v, want the live seq 3", m)
	}
	resp, err := bob.ListPresence(bctx, &parleyv1.ListPresenceRequest{Room: "watched"})
	if err != nil {
		t.Fatal(err)
	}
	if got := presenceUsers(resp.GetPresence()); len(got) != 1 || got[0] != "bob" {
		t.Fatalf("ListPresence with alice in quietly: %v, want [bob]", got)
	}

	// alice leaves and joins again to be seen: the first presence diff of
	// her that bob gets is her join (none came for the quiet join or its
	// leave).
	ref := as.send(&parleyv1.JoinRequest{Frame: &parleyv1.JoinRequest_Leave{Leave: &parleyv1.JoinRequest_LeaveRoom{Room: "watched"}}})
	if r := as.reply(ref); r.GetCode() != 0 {
		t.Fatalf("leave: %v", r)
	}
	if j := as.join("watched", ptr(uint64(3))); j.GetOnlineCount() != 2 || j.GetLastReadSeq() != 1 {
		t.Fatalf("alice's loud joined: online %d, last_read_seq %d; want 2, 1", j.GetOnlineCount(), j.GetLastReadSeq())
	}
	ofAlice := func(ev *parleyv1.JoinResponse) bool {
		d := ev.GetPresenceDiff()
		return d.GetRoom() == "watched" && slices.Contains(append(presenceUsers(d.GetJoins()), presenceUsers(d.GetLeaves())...), "alice")
	}
	d := bs.next(ofAlice, nil).GetPresenceDiff()
	if got := presenceUsers(d.GetJoins()); len(got) != 1 || got[0] != "alice" || len(d.GetLeaves()) != 0 || d.GetOnlineCount() != 2 {
		t.Fatalf("bob's first diff: joins %v, leaves %v, online %d; want alice joining, 2 online", got, presenceUsers(d.GetLeaves()), d.GetOnlineCount())
	}
}

// A Join stream hears of a room that became visible to its user: a public
// room created (every user), being added to a private room, a direct
// conversation begun (both users); nobody else hears of a private or
// direct one.
func TestRoomVisibleEvents(t *testing.T) {
	ts := startServer(t)
	alice, actx := ts.client(t, "alice")
	as := openJoin(t, ts.dial(t), ts.token(t, "alice")).ready()
	bs := openJoin(t, ts.dial(t), ts.token(t, "bob")).ready()
	cs := openJoin(t, ts.dial(t), ts.token(t, "carol")).ready()
	// Each of carol's events must be one she may see.
	carolSees := map[string]bool{"news": true, "last": true}
	notCarols := func(ev *parleyv1.JoinResponse) {
		if r := ev.GetRoomVisible().GetRoom(); r != "" && !carolSees[r] {
			t.Errorf("carol was told of room %s", r)
		}
	}

	if _, err := alice.CreateRoom(actx, &parleyv1.CreateRoomRequest{Name: "news"}); err != nil {
		t.Fatal(err)
	}
	for _, js := range []*joinStream{as, bs, cs} {
		js.next(isRoomVisible("news"), nil)
	}

	if _, err := alice.CreateRoom(actx, &parleyv1.CreateRoomRequest{Name: "secret", Visibility: parleyv1.RoomVisibility_ROOM_VISIBILITY_PRIVATE}); err != nil {
		t.Fatal(err)
	}
	as.next(isRoomVisible("secret"), nil) // the creator's other devices
	if _, err := alice.AddMember(actx, &parleyv1.AddMemberRequest{Room: "secret", User: "bob"}); err != nil {
		t.Fatal(err)
	}
	bs.next(isRoomVisible("secret"), nil)

	if _, err := alice.SendMessage(actx, &parleyv1.SendMessageRequest{ToUser: "bob", Body: "psst"}); err != nil {
		t.Fatal(err)
	}
	bs.next(isRoomVisible("dm:alice:bob"), nil)
	as.next(isRoomVisible("dm:alice:bob"), nil)
	// A second message to an existing conversation announces nothing.
	if _, err := alice.SendMessage(actx, &parleyv1.SendMessageRequest{ToUser: "bob", Body: "again"}); err != nil {
		t.Fatal(err)
	}

	// The marker: once carol hears of "last", she would have heard of the
	// others before it.
	if _, err := alice.CreateRoom(actx, &parleyv1.CreateRoomRequest{Name: "last"}); err != nil {
		t.Fatal(err)
	}
	cs.next(isRoomVisible("last"), notCarols)
	bs.next(isRoomVisible("last"), func(ev *parleyv1.JoinResponse) {
		if r := ev.GetRoomVisible().GetRoom(); r != "" {
			t.Errorf("bob was told of room %s again", r)
		}
	})
}

// Two nodes: a room made visible on one node reaches the user's stream on
// the other.
func TestClusterRoomVisible(t *testing.T) {
	nodes := startCluster(t, 2)
	bs := openJoin(t, nodes[1].dial(t), nodes[1].token(t, "bob")).ready()
	alice, actx := nodes[0].client(t, "alice")
	if _, err := alice.SendMessage(actx, &parleyv1.SendMessageRequest{ToUser: "bob", Body: "across"}); err != nil {
		t.Fatal(err)
	}
	bs.next(isRoomVisible("dm:alice:bob"), nil)
	if _, err := alice.CreateRoom(actx, &parleyv1.CreateRoomRequest{Name: "everyone"}); err != nil {
		t.Fatal(err)
	}
	bs.next(isRoomVisible("everyone"), nil)
}

// BenchmarkFollowRooms is what a room list costs the server when it
// connects: following 200 rooms (each with a message after the list, to
// replay) on one Join stream, quietly or as plain joins, against one
// ListRooms of them, which a polling client paid every few seconds.
func BenchmarkFollowRooms(b *testing.B) {
	const n = 200
	ts := startServer(b)
	c, ctx := ts.client(b, "admin")
	for i := range n {
		name := fmt.Sprintf("room-%03d", i)
		if _, err := c.CreateRoom(ctx, &parleyv1.CreateRoomRequest{Name: name}); err != nil {
			b.Fatal(err)
		}
		sendN(b, c, ctx, name, 2)
	}
	reader, rctx := ts.client(b, "reader")
	conn, token := ts.dial(b), ts.token(b, "reader")
	follow := func(b *testing.B, quiet bool) {
		for b.Loop() {
			js := openJoin(b, conn, token)
			refs := make([]string, n)
			for i := range n {
				refs[i] = js.send(&parleyv1.JoinRequest{Frame: &parleyv1.JoinRequest_Join{Join: &parleyv1.JoinRequest_JoinRoom{
					Room: fmt.Sprintf("room-%03d", i), AfterSeq: ptr(uint64(1)), Quiet: quiet}}})
			}
			for _, ref := range refs {
				if r := js.reply(ref); r.GetCode() != 0 {
					b.Fatalf("join: %v", r)
				}
			}
			for range n { // each room's replayed seq 2
				js.next(func(ev *parleyv1.JoinResponse) bool { return ev.GetReplayed() != nil }, nil)
			}
			js.closeAndWait()
		}
	}
	b.Run("quiet", func(b *testing.B) { follow(b, true) })
	b.Run("plain", func(b *testing.B) { follow(b, false) })
	b.Run("ListRooms", func(b *testing.B) {
		for b.Loop() {
			resp, err := reader.ListRooms(rctx, &parleyv1.ListRoomsRequest{PageSize: 200})
			if err != nil || len(resp.GetRooms()) != n {
				b.Fatalf("ListRooms: %d rooms (%v)", len(resp.GetRooms()), err)
			}
		}
	})
}
