package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/parleychat/parley/server/internal/store"
)

// RunReadState runs the conformance tests of read markers, read state
// and mentions against stores made by open, as Run does.
func RunReadState(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"MarkersMoveForward", testMarkersMoveForward},
		{"MarkersBatch", testMarkersBatch},
		{"ReadMarkersList", testReadMarkersList},
		{"UnreadCounts", testUnreadCounts},
		{"MentionCounts", testMentionCounts},
		{"DirectRoomMentions", testDirectRoomMentions},
		{"MentionsInLogAndHistory", testMentionsInLogAndHistory},
		{"VisibleRoomsRead", testVisibleRoomsRead},
		{"ReadStateAfterPrune", testReadStateAfterPrune},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() { closeStore(t, s) })
			tc.fn(t, s)
		})
	}
}

func mention(m store.NewMessage, users ...string) store.NewMessage {
	m.Mentions = users
	return m
}

func mustMark(t *testing.T, s store.Store, ms ...store.ReadMarker) []store.ReadMarker {
	t.Helper()
	got, err := s.SetReadMarkers(context.Background(), ms)
	if err != nil {
		t.Fatalf("SetReadMarkers(%+v): %v", ms, err)
	}
	return got
}

func mustReadState(t *testing.T, s store.Store, user, room string) store.ReadState {
	t.Helper()
	rs, err := s.ReadState(context.Background(), user, room)
	if err != nil {
		t.Fatalf("ReadState(%s, %s): %v", user, room, err)
	}
	return rs
}

// checkState compares user's read state in room with want.
func checkState(t *testing.T, s store.Store, user, room string, want store.ReadState) {
	t.Helper()
	if got := mustReadState(t, s, user, room); got != want {
		t.Errorf("ReadState(%s, %s) = %+v, want %+v", user, room, got, want)
	}
}

// sameMarker compares markers, ReadAt within the stores' precision.
func sameMarker(a, b store.ReadMarker) bool {
	d := a.ReadAt.Sub(b.ReadAt)
	return a.Room == b.Room && a.User == b.User && a.Seq == b.Seq && a.ReadAt.IsZero() == b.ReadAt.IsZero() && d < timeSlack && d > -timeSlack
}

func checkMarkers(t *testing.T, what string, got, want []store.ReadMarker) {
	t.Helper()
	if !slices.EqualFunc(got, want, sameMarker) {
		t.Errorf("%s = %+v, want %+v", what, got, want)
	}
}

// testMarkersMoveForward: a marker moves only forward, is clamped to the
// head, and answers as it is; ReadAt says when it last moved.
func testMarkersMoveForward(t *testing.T, s store.Store) {
	mustCreate(t, s, "r", "empty")
	for i := range 5 {
		mustStore(t, s, msg("r", "alice", fmt.Sprint("m", i)))
	}
	before := time.Now()
	got := mustMark(t, s, store.ReadMarker{Room: "r", User: "bob", Seq: 3})
	if len(got) != 1 || got[0].Room != "r" || got[0].User != "bob" || got[0].Seq != 3 {
		t.Fatalf("first marker: %+v", got)
	}
	checkTimeBetween(t, "ReadAt", got[0].ReadAt, before, time.Now())
	at3 := got[0]
	for _, seq := range []uint64{2, 3, 0} { // lower or equal: no change, same ReadAt
		checkMarkers(t, fmt.Sprintf("marker set back to %d", seq), mustMark(t, s, store.ReadMarker{Room: "r", User: "bob", Seq: seq}), []store.ReadMarker{at3})
	}
	got = mustMark(t, s, store.ReadMarker{Room: "r", User: "bob", Seq: 99}) // beyond the head
	if len(got) != 1 || got[0].Seq != 5 || got[0].ReadAt.Before(at3.ReadAt) {
		t.Errorf("marker beyond the head: %+v, want seq 5 (the head)", got)
	}
	checkState(t, s, "bob", "r", store.ReadState{LastReadSeq: 5, HeadSeq: 5})
	mustStore(t, s, msg("r", "alice", "later"))
	checkState(t, s, "bob", "r", store.ReadState{LastReadSeq: 5, Unread: 1, HeadSeq: 6})
	// An empty room's head is 0: the marker stays unset.
	checkMarkers(t, "marker in an empty room", mustMark(t, s, store.ReadMarker{Room: "empty", User: "bob", Seq: 4}),
		[]store.ReadMarker{{Room: "empty", User: "bob"}})
	if ms, err := s.ReadMarkers(context.Background(), "empty", 10); err != nil || len(ms) != 0 {
		t.Errorf("ReadMarkers of a room whose markers never moved: %+v (%v)", ms, err)
	}
	checkState(t, s, "bob", "empty", store.ReadState{})
	if _, err := s.ReadState(context.Background(), "bob", "nowhere"); !errors.Is(err, store.ErrRoomNotFound) {
		t.Errorf("ReadState of an unknown room: %v, want ErrRoomNotFound", err)
	}
}

// testMarkersBatch: one call moves many markers; unknown rooms are left
// out of the answer, a marker given twice ends at the higher seq.
func testMarkersBatch(t *testing.T, s store.Store) {
	mustCreate(t, s, "a", "b")
	for i := range 4 {
		mustStore(t, s, msg("a", "alice", fmt.Sprint("a", i)))
		mustStore(t, s, msg("b", "alice", fmt.Sprint("b", i)))
	}
	mustMark(t, s, store.ReadMarker{Room: "b", User: "carol", Seq: 3})
	got := mustMark(t, s,
		store.ReadMarker{Room: "a", User: "bob", Seq: 2},
		store.ReadMarker{Room: "nowhere", User: "bob", Seq: 2},
		store.ReadMarker{Room: "b", User: "bob", Seq: 1},
		store.ReadMarker{Room: "a", User: "bob", Seq: 4},
		store.ReadMarker{Room: "b", User: "carol", Seq: 2}, // behind the stored 3
		store.ReadMarker{Room: "a", User: "bob", Seq: 3},
	)
	want := []struct {
		room, user string
		seq        uint64
	}{{"a", "bob", 4}, {"b", "bob", 1}, {"a", "bob", 4}, {"b", "carol", 3}, {"a", "bob", 4}}
	if len(got) != len(want) {
		t.Fatalf("answer %+v, want %d markers", got, len(want))
	}
	for i, w := range want {
		if got[i].Room != w.room || got[i].User != w.user || got[i].Seq != w.seq || got[i].ReadAt.IsZero() {
			t.Errorf("answer %d = %+v, want %s/%s at %d with ReadAt", i, got[i], w.room, w.user, w.seq)
		}
	}
	if got, err := s.SetReadMarkers(context.Background(), nil); err != nil || len(got) != 0 {
		t.Errorf("SetReadMarkers(nil) = %+v, %v", got, err)
	}
	// A batch as large as the API sends moves every marker.
	var big []store.ReadMarker
	for i := range 600 {
		big = append(big, store.ReadMarker{Room: []string{"a", "b"}[i%2], User: fmt.Sprintf("u%03d", i/2), Seq: uint64(1 + i%4)})
	}
	got = mustMark(t, s, big...)
	if len(got) != len(big) {
		t.Fatalf("big batch: %d answers, want %d", len(got), len(big))
	}
	for i, m := range got {
		if m.Room != big[i].Room || m.User != big[i].User || m.Seq != big[i].Seq || m.ReadAt.IsZero() {
			t.Fatalf("big batch answer %d = %+v, want %+v", i, m, big[i])
		}
	}
	ms, err := s.ReadMarkers(context.Background(), "a", 1000)
	if err != nil || len(ms) != 301 { // u000..u299 and bob
		t.Fatalf("ReadMarkers(a) = %d markers (%v), want 301", len(ms), err)
	}
}

// testReadMarkersList: ReadMarkers lists a room's markers by user, up to
// the limit.
func testReadMarkersList(t *testing.T, s store.Store) {
	ctx := context.Background()
	mustCreate(t, s, "r", "other")
	for i := range 3 {
		mustStore(t, s, msg("r", "alice", fmt.Sprint(i)))
		mustStore(t, s, msg("other", "alice", fmt.Sprint(i)))
	}
	set := mustMark(t, s, store.ReadMarker{Room: "r", User: "carol", Seq: 1}, store.ReadMarker{Room: "r", User: "alice", Seq: 3},
		store.ReadMarker{Room: "r", User: "bob", Seq: 2}, store.ReadMarker{Room: "other", User: "dan", Seq: 2})
	ms, err := s.ReadMarkers(ctx, "r", 10)
	if err != nil {
		t.Fatal(err)
	}
	checkMarkers(t, "ReadMarkers(r, 10)", ms, []store.ReadMarker{set[1], set[2], set[0]})
	if ms, err := s.ReadMarkers(ctx, "r", 2); err != nil || len(ms) != 2 || ms[0].User != "alice" || ms[1].User != "bob" {
		t.Errorf("ReadMarkers(r, 2) = %+v (%v), want alice and bob", ms, err)
	}
	for _, limit := range []int{0, -1} {
		if ms, err := s.ReadMarkers(ctx, "r", limit); err != nil || len(ms) != 0 {
			t.Errorf("ReadMarkers(r, %d) = %+v (%v), want none", limit, ms, err)
		}
	}
	if _, err := s.ReadMarkers(ctx, "nowhere", 10); !errors.Is(err, store.ErrRoomNotFound) {
		t.Errorf("ReadMarkers of an unknown room: %v, want ErrRoomNotFound", err)
	}
}

// testUnreadCounts: unread counts the messages after the marker that are
// neither the reader's own nor deleted; edits, deletes and reactions are
// not messages.
func testUnreadCounts(t *testing.T, s store.Store) {
	mustCreate(t, s, "r")
	mustStore(t, s, msg("r", "alice", "a1"))                              // 1
	mustStore(t, s, msg("r", "bob", "b1"))                                // 2: bob's own
	mustStore(t, s, msg("r", "alice", "a2"))                              // 3
	mustStore(t, s, react("r", "alice", 2, "👍"))                          // 4
	mustStore(t, s, edit("r", "alice", 3, "a2!"))                         // 5
	mustStore(t, s, msg("r", "carol", "c1"))                              // 6
	mustStore(t, s, del("r", "carol", 6))                                 // 7: c1 deleted
	mustStore(t, s, reply("r", "alice", "re b1", 2))                      // 8
	mustStore(t, s, msg("r", "bob", "b2"))                                // 9: bob's own
	mustStore(t, s, msg("r", "alice", "a3"))                              // 10
	mustStore(t, s, unreact("r", "alice", 2, "👍"))                        // 11
	checkState(t, s, "bob", "r", store.ReadState{Unread: 4, HeadSeq: 11}) // 1, 3, 8, 10
	checkState(t, s, "alice", "r", store.ReadState{Unread: 2, HeadSeq: 11})
	checkState(t, s, "carol", "r", store.ReadState{Unread: 6, HeadSeq: 11}) // her deleted one is not unread either
	checkState(t, s, "nobody", "r", store.ReadState{Unread: 6, HeadSeq: 11})
	for _, c := range []struct {
		seq    uint64
		unread int
	}{{1, 3}, {2, 3}, {3, 2}, {5, 2}, {7, 2}, {8, 1}, {9, 1}, {10, 0}, {11, 0}} {
		mustMark(t, s, store.ReadMarker{Room: "r", User: "bob", Seq: c.seq})
		checkState(t, s, "bob", "r", store.ReadState{LastReadSeq: c.seq, Unread: c.unread, HeadSeq: 11})
	}
	// A deletion after the marker is taken off; one before it changes nothing.
	mustMark(t, s, store.ReadMarker{Room: "r", User: "dan", Seq: 3})
	checkState(t, s, "dan", "r", store.ReadState{LastReadSeq: 3, Unread: 3, HeadSeq: 11}) // 8, 9, 10
	mustStore(t, s, del("r", "alice", 10))                                                // 12
	mustStore(t, s, del("r", "alice", 1))                                                 // 13
	checkState(t, s, "dan", "r", store.ReadState{LastReadSeq: 3, Unread: 2, HeadSeq: 13})
	checkState(t, s, "bob", "r", store.ReadState{LastReadSeq: 11, HeadSeq: 13})
	// Own messages sent after the marker are not unread.
	mustStore(t, s, msg("r", "dan", "d1"))
	mustStore(t, s, msg("r", "dan", "d2"))
	checkState(t, s, "dan", "r", store.ReadState{LastReadSeq: 3, Unread: 2, HeadSeq: 15})
	// A marker between one's own messages counts those after it as own.
	mustMark(t, s, store.ReadMarker{Room: "r", User: "dan", Seq: 14})
	mustStore(t, s, msg("r", "erin", "e1"))
	checkState(t, s, "dan", "r", store.ReadState{LastReadSeq: 14, Unread: 1, HeadSeq: 16})
	mustMark(t, s, store.ReadMarker{Room: "r", User: "bob", Seq: 5})
	checkState(t, s, "bob", "r", store.ReadState{LastReadSeq: 11, Unread: 3, HeadSeq: 16}) // behind: unchanged
}

// testMentionCounts: mentions count the unread messages whose current
// text mentions the reader: an edit changes them, a delete erases them;
// one's own messages never count.
func testMentionCounts(t *testing.T, s store.Store) {
	mustCreate(t, s, "r")
	mustStore(t, s, mention(msg("r", "alice", "@bob hi"), "bob"))                     // 1
	mustStore(t, s, mention(msg("r", "alice", "@bob @carol"), "bob", "carol", "bob")) // 2
	mustStore(t, s, mention(msg("r", "bob", "@bob me"), "bob"))                       // 3: own
	mustStore(t, s, msg("r", "alice", "no one"))                                      // 4
	mustStore(t, s, mention(msg("r", "carol", "@bob"), "bob"))                        // 5
	checkState(t, s, "bob", "r", store.ReadState{Unread: 4, Mentions: 3, HeadSeq: 5})
	checkState(t, s, "carol", "r", store.ReadState{Unread: 4, Mentions: 1, HeadSeq: 5})
	mustStore(t, s, edit("r", "alice", 1, "hi all"))                                  // 6: bob's mention goes
	mustStore(t, s, mention(edit("r", "alice", 4, "@bob after all"), "bob"))          // 7: and comes on 4
	mustStore(t, s, mention(edit("r", "alice", 2, "@carol only"), "carol"))           // 8
	checkState(t, s, "bob", "r", store.ReadState{Unread: 4, Mentions: 2, HeadSeq: 8}) // 4, 5
	checkState(t, s, "carol", "r", store.ReadState{Unread: 4, Mentions: 1, HeadSeq: 8})
	mustStore(t, s, del("r", "carol", 5)) // 9
	checkState(t, s, "bob", "r", store.ReadState{Unread: 3, Mentions: 1, HeadSeq: 9})
	mustMark(t, s, store.ReadMarker{Room: "r", User: "bob", Seq: 4})
	checkState(t, s, "bob", "r", store.ReadState{LastReadSeq: 4, HeadSeq: 9})
	mustStore(t, s, mention(msg("r", "dan", "@bob again"), "bob")) // 10
	mustStore(t, s, mention(msg("r", "dan", "@carol"), "carol"))   // 11
	checkState(t, s, "bob", "r", store.ReadState{LastReadSeq: 4, Unread: 2, Mentions: 1, HeadSeq: 11})
	// Entries written in one batch: a message, its edit and its delete.
	ctx := context.Background()
	waits := []func() (store.Message, bool, error){
		s.StartAppend(ctx, mention(msg("r", "erin", "@bob 1"), "bob")),              // 12
		s.StartAppend(ctx, mention(edit("r", "erin", 12, "@bob 1!"), "bob")),        // 13
		s.StartAppend(ctx, mention(msg("r", "erin", "@bob 2"), "bob")),              // 14
		s.StartAppend(ctx, edit("r", "erin", 14, "nobody")),                         // 15
		s.StartAppend(ctx, mention(msg("r", "erin", "@bob 3"), "bob")),              // 16
		s.StartAppend(ctx, del("r", "erin", 16)),                                    // 17
		s.StartAppend(ctx, mention(edit("r", "dan", 11, "@bob now"), "bob", "dan")), // 18
	}
	for i, w := range waits {
		if m, dup, err := w(); err != nil || dup || m.Seq != uint64(12+i) {
			t.Fatalf("pipelined entry %d: seq %d dup %v (%v)", i, m.Seq, dup, err)
		}
	}
	checkState(t, s, "bob", "r", store.ReadState{LastReadSeq: 4, Unread: 4, Mentions: 3, HeadSeq: 18}) // 10, 11, 12, 14 unread; 10, 11, 12 mention
	checkState(t, s, "dan", "r", store.ReadState{Unread: 6, Mentions: 0, HeadSeq: 18})                 // 1-4, 12, 14; his own 11 mentions him
}

// testDirectRoomMentions: in a direct room every unread message counts as
// a mention.
func testDirectRoomMentions(t *testing.T, s store.Store) {
	createRoom(t, s, "dm:alice:bob", store.Direct, "alice")
	mustStore(t, s, msg("dm:alice:bob", "alice", "hi"))
	mustStore(t, s, msg("dm:alice:bob", "alice", "there"))
	mustStore(t, s, mention(msg("dm:alice:bob", "alice", "@bob"), "bob"))
	mustStore(t, s, msg("dm:alice:bob", "bob", "hello"))
	mustStore(t, s, react("dm:alice:bob", "bob", 1, "👍"))
	checkState(t, s, "bob", "dm:alice:bob", store.ReadState{Unread: 3, Mentions: 3, HeadSeq: 5})
	checkState(t, s, "alice", "dm:alice:bob", store.ReadState{Unread: 1, Mentions: 1, HeadSeq: 5})
	mustMark(t, s, store.ReadMarker{Room: "dm:alice:bob", User: "bob", Seq: 2})
	checkState(t, s, "bob", "dm:alice:bob", store.ReadState{LastReadSeq: 2, Unread: 1, Mentions: 1, HeadSeq: 5})
}

// testMentionsInLogAndHistory: the log keeps each entry's own mentions,
// the history a message's current ones; a delete erases both.
func testMentionsInLogAndHistory(t *testing.T, s store.Store) {
	mustCreate(t, s, "r")
	m1 := mustStore(t, s, mention(withID(msg("r", "alice", "@bob @carol"), "m1"), "bob", "carol")) // 1
	if !slices.Equal(m1.Mentions, []string{"bob", "carol"}) {
		t.Errorf("Append answered mentions %v", m1.Mentions)
	}
	mustStore(t, s, mention(edit("r", "alice", 1, "@dan"), "dan"))                 // 2
	mustStore(t, s, mention(msg("r", "bob", "@alice"), "alice"))                   // 3
	mustStore(t, s, mention(react("r", "bob", 1, "👍"), "ignored"))                 // 4: only texts mention
	mustStore(t, s, msg("r", "bob", "plain"))                                      // 5
	mustStore(t, s, mention(msg("r", "carol", "@alice again"), "alice"))           // 6
	mustStore(t, s, mention(edit("r", "carol", 6, "@alice @bob"), "alice", "bob")) // 7
	want := map[uint64][]string{1: {"bob", "carol"}, 2: {"dan"}, 3: {"alice"}, 6: {"alice"}, 7: {"alice", "bob"}}
	for _, m := range mustMessages(t, s, "r", store.Query{Limit: 10}) {
		if !slices.Equal(m.Mentions, want[m.Seq]) {
			t.Errorf("log seq %d mentions %v, want %v", m.Seq, m.Mentions, want[m.Seq])
		}
	}
	if dup, isDup := mustAppend(t, s, mention(withID(msg("r", "alice", "@bob @carol"), "m1"), "bob", "carol")); !isDup || !slices.Equal(dup.Mentions, want[1]) {
		t.Errorf("retry answered %+v dup %v, want the original's mentions", dup, isDup)
	}
	view := map[uint64][]string{1: {"dan"}, 3: {"alice"}, 5: nil, 6: {"alice", "bob"}}
	for _, v := range mustHistory(t, s, "r", "bob", store.Query{Limit: 10}) {
		if !slices.Equal(v.Mentions, view[v.Seq]) {
			t.Errorf("history seq %d mentions %v, want %v", v.Seq, v.Mentions, view[v.Seq])
		}
	}
	mustStore(t, s, del("r", "alice", 1)) // 8
	for _, m := range mustMessages(t, s, "r", store.Query{Limit: 2}) {
		if m.Mentions != nil {
			t.Errorf("log seq %d kept mentions %v after the delete", m.Seq, m.Mentions)
		}
	}
	if v := mustView(t, s, "r", "bob", 1); v.Mentions != nil {
		t.Errorf("deleted message shows mentions %v", v.Mentions)
	}
}

// testVisibleRoomsRead: VisibleRooms gives each room the caller's read
// state, page after page.
func testVisibleRoomsRead(t *testing.T, s store.Store) {
	ctx := context.Background()
	mustCreate(t, s, "pub-a", "pub-b")
	createRoom(t, s, "priv", store.Private, "alice") // bob is a member
	createRoom(t, s, "dm:alice:bob", store.Direct, "alice")
	if _, err := s.CreateRoom(ctx, store.Room{Name: "hidden", Visibility: store.Private, CreatedBy: "carol"}); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		mustStore(t, s, msg("pub-a", "alice", fmt.Sprint(i)))
	}
	mustStore(t, s, mention(msg("pub-b", "alice", "@bob"), "bob"))
	mustStore(t, s, msg("pub-b", "bob", "mine"))
	mustStore(t, s, msg("priv", "alice", "p"))
	mustStore(t, s, msg("dm:alice:bob", "alice", "d1"))
	mustStore(t, s, msg("dm:alice:bob", "alice", "d2"))
	mustStore(t, s, msg("hidden", "carol", "h"))
	mustMark(t, s, store.ReadMarker{Room: "pub-a", User: "bob", Seq: 2}, store.ReadMarker{Room: "priv", User: "bob", Seq: 1},
		store.ReadMarker{Room: "pub-b", User: "alice", Seq: 1})
	want := map[string]store.ReadState{
		"dm:alice:bob": {Unread: 2, Mentions: 2, HeadSeq: 2},
		"priv":         {LastReadSeq: 1, HeadSeq: 1},
		"pub-a":        {LastReadSeq: 2, Unread: 1, HeadSeq: 3},
		"pub-b":        {Unread: 1, Mentions: 1, HeadSeq: 2},
	}
	got := map[string]store.ReadState{}
	for after := ""; ; {
		page, err := s.VisibleRooms(ctx, "bob", after, 3)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range page {
			got[r.Name] = r.Read
		}
		if len(page) < 3 {
			break
		}
		after = page[len(page)-1].Name
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("VisibleRooms(bob) read states %v, want %v", got, want)
	}
	rooms, err := s.VisibleRooms(ctx, "alice", "", 10)
	if err != nil || len(rooms) != 4 {
		t.Fatalf("VisibleRooms(alice) = %d rooms (%v)", len(rooms), err)
	}
	if r := rooms[3]; r.Name != "pub-b" || r.Read != (store.ReadState{LastReadSeq: 1, Unread: 1, HeadSeq: 2}) {
		t.Errorf("alice's pub-b: %+v", r)
	}
	for _, name := range []string{"pub-a", "priv"} {
		if r := mustRoom(t, s, name); r.Read != (store.ReadState{}) {
			t.Errorf("Room(%s).Read = %+v, want zero: only VisibleRooms fills it", name, r.Read)
		}
	}
}

// testReadStateAfterPrune: pruned messages leave the counts; a marker
// below the pruned seqs keeps its seq and counts only what is stored.
func testReadStateAfterPrune(t *testing.T, s store.Store) {
	ctx := context.Background()
	mustCreate(t, s, "r")
	for i := range 10 { // 1..10: alice, bob alternating, every third mentions carol
		m := msg("r", []string{"alice", "bob"}[i%2], fmt.Sprint(i))
		if i%3 == 0 {
			m = mention(m, "carol")
		}
		mustStore(t, s, m)
	}
	mustStore(t, s, react("r", "carol", 9, "👍")) // 11
	mustStore(t, s, del("r", "alice", 7))        // 12
	mustMark(t, s, store.ReadMarker{Room: "r", User: "alice", Seq: 2}, store.ReadMarker{Room: "r", User: "carol", Seq: 8})
	checkState(t, s, "alice", "r", store.ReadState{LastReadSeq: 2, Unread: 4, HeadSeq: 12})              // 4, 6, 8, 10
	checkState(t, s, "carol", "r", store.ReadState{LastReadSeq: 8, Unread: 2, Mentions: 1, HeadSeq: 12}) // 9, 10; 10 mentions
	checkState(t, s, "carol", "r", store.ReadState{LastReadSeq: 8, Unread: 2, Mentions: 1, HeadSeq: 12})
	if n, err := s.Prune(ctx, store.Retention{MaxMessages: 4}); err != nil || n != 6 {
		t.Fatalf("Prune deleted %d (%v), want 6", n, err) // 1..6 go; 7..10 stay
	}
	checkState(t, s, "alice", "r", store.ReadState{LastReadSeq: 2, Unread: 2, HeadSeq: 12})              // 8, 10
	checkState(t, s, "bob", "r", store.ReadState{Unread: 1, HeadSeq: 12})                                // 9; 7 deleted
	checkState(t, s, "carol", "r", store.ReadState{LastReadSeq: 8, Unread: 2, Mentions: 1, HeadSeq: 12}) // as before
	checkState(t, s, "dan", "r", store.ReadState{Unread: 3, Mentions: 0, HeadSeq: 12})
	// The marker below the pruned seqs moves on from where it is.
	mustMark(t, s, store.ReadMarker{Room: "r", User: "alice", Seq: 9})
	checkState(t, s, "alice", "r", store.ReadState{LastReadSeq: 9, Unread: 1, HeadSeq: 12})
	mustMark(t, s, store.ReadMarker{Room: "r", User: "erin", Seq: 3}) // a new marker in the pruned range
	checkState(t, s, "erin", "r", store.ReadState{LastReadSeq: 3, Unread: 3, HeadSeq: 12})
	if n, err := s.Prune(ctx, store.Retention{MaxAge: time.Nanosecond}); err != nil || n != 6 {
		t.Fatalf("Prune of everything deleted %d (%v), want 6", n, err)
	}
	for _, u := range []string{"alice", "bob", "carol", "dan", "erin"} {
		if rs := mustReadState(t, s, u, "r"); rs.Unread != 0 || rs.Mentions != 0 || rs.HeadSeq != 12 {
			t.Errorf("%s after pruning everything: %+v", u, rs)
		}
	}
	mustStore(t, s, mention(msg("r", "bob", "@carol new"), "carol"))
	checkState(t, s, "carol", "r", store.ReadState{LastReadSeq: 8, Unread: 1, Mentions: 1, HeadSeq: 13})
	checkState(t, s, "bob", "r", store.ReadState{HeadSeq: 13})
}

// CheckReadStateUpgrade checks a store just opened, and so upgraded to
// read state, on a database that the schema before read state filled as
// each store's TestUpgradeToReadState does: room r, at head 8, holds every
// kind of entry (1 alice, 2 bob, 3 alice's 👍 on 1, 4 carol's deleted
// message, 5 alice's edit of 1, 6 carol's delete of 4, 7 bob, 8 alice),
// q, at head 2, holds 1 bob and 2 alice, and empty holds nothing. The
// upgrade counts those entries, and the counts, markers, mentions and
// retention work on them and on new ones.
func CheckReadStateUpgrade(t *testing.T, s store.Store) {
	t.Helper()
	ctx := context.Background()
	// r's messages: 1 alice, 2 bob, 4 carol (deleted), 7 bob, 8 alice.
	for _, c := range []struct {
		user, room string
		want       store.ReadState
	}{
		{"bob", "r", store.ReadState{Unread: 2, HeadSeq: 8}},
		{"alice", "r", store.ReadState{Unread: 2, HeadSeq: 8}},
		{"carol", "r", store.ReadState{Unread: 4, HeadSeq: 8}},
		{"bob", "q", store.ReadState{Unread: 1, HeadSeq: 2}},
		{"bob", "empty", store.ReadState{}},
	} {
		if got, err := s.ReadState(ctx, c.user, c.room); err != nil || got != c.want {
			t.Errorf("ReadState(%s, %s) after the upgrade = %+v (%v), want %+v", c.user, c.room, got, err, c.want)
		}
	}
	if _, err := s.SetReadMarkers(ctx, []store.ReadMarker{{Room: "r", User: "bob", Seq: 3}, {Room: "r", User: "carol", Seq: 7}}); err != nil {
		t.Fatal(err)
	}
	mustStore(t, s, mention(msg("r", "alice", "@bob @carol"), "bob", "carol")) // 9
	mustStore(t, s, msg("r", "bob", "b3"))                                     // 10
	for _, c := range []struct {
		user string
		want store.ReadState
	}{
		{"bob", store.ReadState{LastReadSeq: 3, Unread: 2, Mentions: 1, HeadSeq: 10}},   // 8, 9
		{"carol", store.ReadState{LastReadSeq: 7, Unread: 3, Mentions: 1, HeadSeq: 10}}, // 8, 9, 10
	} {
		if got, err := s.ReadState(ctx, c.user, "r"); err != nil || got != c.want {
			t.Errorf("ReadState(%s, r) after new messages = %+v (%v), want %+v", c.user, got, err, c.want)
		}
	}
	ms, err := s.Messages(ctx, "r", store.Query{Limit: 20})
	if err != nil || len(ms) != 10 {
		t.Fatalf("Messages = %d (%v)", len(ms), err)
	}
	for _, m := range ms {
		var want []string
		if m.Seq == 9 {
			want = []string{"bob", "carol"}
		}
		if !slices.Equal(m.Mentions, want) {
			t.Errorf("seq %d has mentions %v, want %v", m.Seq, m.Mentions, want)
		}
	}
	// Retention counts the upgraded rows out like new ones.
	if n, err := s.Prune(ctx, store.Retention{MaxMessages: 3}); err != nil || n != 7 { // 1-7 and the reaction
		t.Fatalf("Prune = %d (%v), want 7", n, err)
	}
	if got, err := s.ReadState(ctx, "carol", "r"); err != nil || got != (store.ReadState{LastReadSeq: 7, Unread: 3, Mentions: 1, HeadSeq: 10}) {
		t.Errorf("carol after pruning = %+v (%v)", got, err)
	}
	if got, err := s.ReadState(ctx, "dan", "r"); err != nil || got != (store.ReadState{Unread: 3, HeadSeq: 10}) {
		t.Errorf("dan after pruning = %+v (%v)", got, err)
	}
}
