package app_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	parleyv1 "github.com/parleychat/parley/gen/parley/v1"
	"github.com/parleychat/parley/server/app"
)

// ListRooms counts, per room and for the caller: messages after the
// caller's marker that are not the caller's own and not deleted (edits and
// reactions are not messages); of those, the ones whose current text
// mentions the caller; in a direct room every unread message is a
// mention. A marker moves the counts, through any path.
func TestListRoomsCountsUnreadAndMentions(t *testing.T) {
	ts := startServer(t)
	ts.createRoom(t, "tally")
	bs := openJoin(t, ts.dial(t), ts.token(t, "bob"))
	bs.join("tally", nil)
	as := openJoin(t, ts.dial(t), ts.token(t, "alice"))
	as.join("tally", nil)

	m1 := okSeq(t, bs.post("tally", "hi @alice", ""))            // 1: mentions alice, until edited
	m2 := okSeq(t, bs.post("tally", "plain", ""))                // 2
	m3 := okSeq(t, bs.post("tally", "soon gone @alice", ""))     // 3: deleted below
	okSeq(t, as.post("tally", "mine, @alice @bob", ""))          // 4: alice's own
	okSeq(t, bs.edit("tally", m1, "hi all", ""))                 // 5: m1 no longer mentions alice
	okSeq(t, bs.edit("tally", m2, "plain, @alice (edited)", "")) // 6: m2 now does
	okSeq(t, bs.react("tally", m1, "👍", ""))                     // 7
	okSeq(t, bs.del("tally", m3, ""))                            // 8
	okSeq(t, as.react("tally", m2, "🎉", ""))                     // 9

	alice, actx := ts.client(t, "alice")
	bob, bctx := ts.client(t, "bob")
	for _, c := range []struct {
		who  string
		got  string
		want string
	}{
		{"alice", roomRead(t, alice, actx, "tally"), "0/2/1 of 9"}, // m1, m2; m2 mentions her
		{"bob", roomRead(t, bob, bctx, "tally"), "0/1/1 of 9"},     // alice's message mentions him
	} {
		if c.got != c.want {
			t.Errorf("%s's read state of tally: %s, want %s", c.who, c.got, c.want)
		}
	}
	if r := as.markRead("tally", m1); marker(r.GetReadMarker()) != "1/1/1@9" {
		t.Fatalf("alice marks m1: %v", r.GetReadMarker())
	}
	if got := roomRead(t, alice, actx, "tally"); got != "1/1/1 of 9" {
		t.Fatalf("alice after marking m1: %s", got)
	}
	if r := as.markRead("tally", 5); marker(r.GetReadMarker()) != "5/0/0@9" {
		t.Fatalf("alice marks 5: %v", r.GetReadMarker())
	}

	// A direct room: every unread message counts as a mention.
	for range 2 {
		if _, err := bob.SendMessage(bctx, &parleyv1.SendMessageRequest{ToUser: "alice", Body: "psst"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := alice.SendMessage(actx, &parleyv1.SendMessageRequest{ToUser: "bob", Body: "yes?"}); err != nil {
		t.Fatal(err)
	}
	if got := roomRead(t, alice, actx, "dm:alice:bob"); got != "0/2/2 of 3" {
		t.Fatalf("alice's direct room: %s, want 2 unread, both mentions", got)
	}
	if got := roomRead(t, bob, bctx, "dm:alice:bob"); got != "0/1/1 of 3" {
		t.Fatalf("bob's direct room: %s", got)
	}
	if resp, err := alice.MarkRead(actx, &parleyv1.MarkReadRequest{Room: "dm:alice:bob", Seq: 1}); err != nil || marker(resp.GetMarker()) != "1/1/1@3" {
		t.Fatalf("alice marks the direct room at 1: %v %v", resp, err)
	}
}

// The server parses mentions and every path carries them: the live event,
// the send's reply, a replay, history, an edit's event; a deleted message
// has none. In a private room only members count; in a public room any
// well-formed user id does.
func TestMentionsOnEveryPath(t *testing.T) {
	ts := startServer(t)
	alice, actx := ts.client(t, "alice")
	if _, err := alice.CreateRoom(actx, &parleyv1.CreateRoomRequest{Name: "club", Visibility: parleyv1.RoomVisibility_ROOM_VISIBILITY_PRIVATE}); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.AddMember(actx, &parleyv1.AddMemberRequest{Room: "club", User: "bob"}); err != nil {
		t.Fatal(err)
	}
	ts.createRoom(t, "square")
	bs := openJoin(t, ts.dial(t), ts.token(t, "bob"))
	as := openJoin(t, ts.dial(t), ts.token(t, "alice"))
	for _, js := range []*joinStream{as, bs} {
		js.join("club", nil)
		js.join("square", nil)
	}
	mentions := func(m *parleyv1.Message) string { return fmt.Sprint(m.GetMentions()) }

	r := bs.post("club", "@carol @alice and @bob, mail x@y.org", "")
	if got := mentions(r.GetMessage()); got != "[alice bob]" {
		t.Fatalf("reply in a private room: %s, want members only", got)
	}
	if got := mentions(as.next(isMessage("club"), nil).GetMessage()); got != "[alice bob]" {
		t.Fatalf("live event: %s", got)
	}
	r = bs.post("square", "@carol, meet @alice. @carol!", "")
	if got := mentions(r.GetMessage()); got != "[carol alice]" {
		t.Fatalf("public room: %s, want every well-formed id", got)
	}
	if got := mentions(as.next(isMessage("square"), nil).GetMessage()); got != "[carol alice]" {
		t.Fatalf("live event in the public room: %s", got)
	}
	first := r.GetMessage().GetSeq()
	okSeq(t, bs.edit("square", first, "only @dave now", ""))
	if ev := as.next(func(ev *parleyv1.JoinResponse) bool { return ev.GetEdit() != nil }, nil); fmt.Sprint(ev.GetEdit().GetMentions()) != "[dave]" {
		t.Fatalf("edit event: %v", ev.GetEdit())
	}
	gone := okSeq(t, bs.post("square", "bye @alice", ""))
	okSeq(t, bs.del("square", gone, ""))

	// Replay: the entries as they were sent, a deleted one without text.
	replay := openJoin(t, ts.dial(t), ts.token(t, "alice"))
	replay.join("square", ptr(uint64(0)))
	var got []string
	for _, ev := range replay.entries(1, 4) {
		switch {
		case ev.GetMessage() != nil:
			got = append(got, "m"+mentions(ev.GetMessage()))
		case ev.GetEdit() != nil:
			got = append(got, "e"+fmt.Sprint(ev.GetEdit().GetMentions()))
		}
	}
	if fmt.Sprint(got) != "[m[carol alice] e[dave] m[]]" {
		t.Fatalf("replayed mentions: %v", got)
	}
	// History: each message with the mentions of its current text.
	hist, err := alice.ListMessages(actx, &parleyv1.ListMessagesRequest{Room: "square", Order: parleyv1.MessageOrder_MESSAGE_ORDER_OLDEST_FIRST})
	if err != nil {
		t.Fatal(err)
	}
	var listed []string
	for _, m := range hist.GetMessages() {
		listed = append(listed, mentions(m))
	}
	if !slices.Equal(listed, []string{"[dave]", "[]"}) {
		t.Fatalf("history mentions: %v", listed)
	}
	club, err := alice.ListMessages(actx, &parleyv1.ListMessagesRequest{Room: "club"})
	if err != nil || len(club.GetMessages()) != 1 || mentions(club.GetMessages()[0]) != "[alice bob]" {
		t.Fatalf("private room history: %v %v", club, err)
	}
}

// A mark in a room live on the server is answered from memory — the
// room's recent entries and the marker the server stored — with the
// counts the store gives ListRooms, at every seq, on a Join stream and in
// a unary call: own messages, a reaction, edits that drop or add a
// mention, a delete, and a direct room. A user's first mark, and a mark
// before the delete's cut of the room's ring (seq 5 onwards after the
// delete of 4), read the store.
func TestMarksCountedInMemoryAreTheStoresCounts(t *testing.T) {
	ts := startServer(t)
	ts.createRoom(t, "tally")
	bs := openJoin(t, ts.dial(t), ts.token(t, "bob"))
	bs.join("tally", nil)
	as := openJoin(t, ts.dial(t), ts.token(t, "alice"))
	as.join("tally", nil)

	m1 := okSeq(t, bs.post("tally", "hi @alice", ""))        // 1
	m2 := okSeq(t, bs.post("tally", "plain", ""))            // 2
	okSeq(t, as.post("tally", "mine, @bob", ""))             // 3: alice's own
	m4 := okSeq(t, bs.post("tally", "soon gone @alice", "")) // 4
	okSeq(t, bs.react("tally", m1, "👍", ""))                 // 5
	okSeq(t, bs.post("tally", "@alice @carol", ""))          // 6
	okSeq(t, bs.edit("tally", m1, "hi all", ""))             // 7
	okSeq(t, bs.del("tally", m4, ""))                        // 8
	okSeq(t, bs.edit("tally", m2, "plain @alice", ""))       // 9: an edit of a message before the cut
	okSeq(t, as.post("tally", "@carol see", ""))             // 10
	okSeq(t, bs.post("tally", "last", ""))                   // 11

	// A direct room both are in.
	alice, actx := ts.client(t, "alice")
	bob, bctx := ts.client(t, "bob")
	if _, err := bob.SendMessage(bctx, &parleyv1.SendMessageRequest{ToUser: "alice", Body: "psst"}); err != nil {
		t.Fatal(err)
	}
	as.join("dm:alice:bob", nil)
	bs.join("dm:alice:bob", nil)
	okSeq(t, as.post("dm:alice:bob", "yes?", ""))
	okSeq(t, bs.post("dm:alice:bob", "@alice look", ""))
	okSeq(t, bs.post("dm:alice:bob", "and this", ""))

	carol, cctx := ts.client(t, "carol")
	unary := func(c parleyv1.ChatServiceClient, ctx context.Context) func(string, uint64) *parleyv1.ReadMarker {
		return func(room string, seq uint64) *parleyv1.ReadMarker {
			resp, err := c.MarkRead(ctx, &parleyv1.MarkReadRequest{Room: room, Seq: seq})
			if err != nil {
				t.Fatalf("mark %s at %d: %v", room, seq, err)
			}
			return resp.GetMarker()
		}
	}
	frame := func(js *joinStream) func(string, uint64) *parleyv1.ReadMarker {
		return func(room string, seq uint64) *parleyv1.ReadMarker {
			r := js.markRead(room, seq)
			if r.GetCode() != 0 {
				t.Fatalf("mark %s at %d: %v", room, seq, r)
			}
			return r.GetReadMarker()
		}
	}
	before := ts.Hub().Stats()
	inMemory := 0
	for _, c := range []struct {
		user   string
		room   string
		head   uint64
		mark   func(string, uint64) *parleyv1.ReadMarker
		client parleyv1.ChatServiceClient
		ctx    context.Context
		cut    uint64 // marks below it read the store
	}{
		{"alice", "tally", 11, frame(as), alice, actx, 4},
		{"bob", "tally", 11, frame(bs), bob, bctx, 4},
		{"carol", "tally", 11, unary(carol, cctx), carol, cctx, 4}, // marks without joining
		{"alice", "dm:alice:bob", 4, unary(alice, actx), alice, actx, 2},
		{"bob", "dm:alice:bob", 4, frame(bs), bob, bctx, 2},
	} {
		for seq := uint64(1); seq <= c.head; seq++ {
			got := marker(c.mark(c.room, seq))
			want := roomRead(t, c.client, c.ctx, c.room) // stores the marker first
			var s, h uint64
			var u, m int
			if _, err := fmt.Sscanf(want, "%d/%d/%d of %d", &s, &u, &m, &h); err != nil {
				t.Fatal(err)
			}
			if w := fmt.Sprintf("%d/%d/%d@%d", s, u, m, h); got != w {
				t.Fatalf("%s marks %s at %d: %s, but ListRooms says %s", c.user, c.room, seq, got, w)
			}
			if seq >= c.cut {
				inMemory++
			}
		}
	}
	after := ts.Hub().Stats()
	if n := after.MarksInMemory - before.MarksInMemory; n != int64(inMemory) {
		t.Errorf("%d marks answered from memory, want %d", n, inMemory)
	}
}

// A user's first mark in a room reads the store, and tells the server the
// marker it found: the next one, before any flush, is counted in memory.
func TestSecondMarkIsCountedInMemory(t *testing.T) {
	ts := startServer(t, func(c *app.Config) { c.ReadMarkerFlush = time.Hour })
	ts.createRoom(t, "second")
	as := openJoin(t, ts.dial(t), ts.token(t, "alice"))
	as.join("second", nil)
	bob, bctx := ts.client(t, "bob")
	sendN(t, bob, bctx, "second", 3)
	before := ts.Hub().Stats()
	if r := as.markRead("second", 1); marker(r.GetReadMarker()) != "1/2/0@3" {
		t.Fatalf("first mark: %v", r)
	}
	if r := as.markRead("second", 2); marker(r.GetReadMarker()) != "2/1/0@3" {
		t.Fatalf("second mark: %v", r)
	}
	if after := ts.Hub().Stats(); after.MarksFromStore-before.MarksFromStore != 1 || after.MarksInMemory-before.MarksInMemory != 1 {
		t.Fatalf("%d marks read the store, %d were counted in memory; want 1 and 1",
			after.MarksFromStore-before.MarksFromStore, after.MarksInMemory-before.MarksInMemory)
	}
}
