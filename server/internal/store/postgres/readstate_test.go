package postgres_test

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"testing"

	"github.com/parleychat/parley/server/internal/store"
	"github.com/parleychat/parley/server/internal/store/postgres"
)

// Markers, and the counts they give, survive a restart; a second node
// sees them too.
func TestReadMarkersSurviveReopen(t *testing.T) {
	ctx := context.Background()
	schema := postgres.NewSchema(t)
	s := postgres.OpenTest(t, postgres.Config{Schema: schema})
	if _, err := s.CreateRoom(ctx, store.Room{Name: "r", Visibility: store.Public, CreatedBy: "o"}); err != nil {
		t.Fatal(err)
	}
	for _, m := range []store.NewMessage{
		{Room: "r", Sender: "alice", Body: "1"},
		{Room: "r", Sender: "alice", Body: "@bob 2", Mentions: []string{"bob"}},
		{Room: "r", Sender: "bob", Body: "3"},
		{Room: "r", Sender: "alice", Body: "@bob 4", Mentions: []string{"bob"}},
	} {
		mustAppend(t, s, m)
	}
	set, err := s.SetReadMarkers(ctx, []store.ReadMarker{{Room: "r", User: "bob", Seq: 2}, {Room: "r", User: "carol", Seq: 9}})
	if err != nil {
		t.Fatal(err)
	}
	before, err := s.ReadState(ctx, "bob", "r")
	if err != nil || before != (store.ReadState{LastReadSeq: 2, Unread: 1, Mentions: 1, HeadSeq: 4}) {
		t.Fatalf("ReadState before the restart = %+v (%v)", before, err)
	}
	other := postgres.OpenTest(t, postgres.Config{Schema: schema})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = postgres.OpenTest(t, postgres.Config{Schema: schema})
	for i, st := range []store.Store{s, other} {
		if got, err := st.ReadState(ctx, "bob", "r"); err != nil || got != before {
			t.Errorf("store %d: ReadState after the restart = %+v (%v), want %+v", i, got, err, before)
		}
		ms, err := st.ReadMarkers(ctx, "r", 10)
		if err != nil || !reflect.DeepEqual(ms, set) {
			t.Errorf("store %d: ReadMarkers after the restart = %+v (%v), want %+v", i, ms, err, set)
		}
	}
	if got, err := other.SetReadMarkers(ctx, []store.ReadMarker{{Room: "r", User: "carol", Seq: 1}}); err != nil || !reflect.DeepEqual(got, set[1:]) {
		t.Errorf("moving carol back after the restart = %+v (%v), want %+v", got, err, set[1:])
	}
}

// A marker whose user PostgreSQL cannot store names no marker: it is left
// out and the others of its batch move; a mention it cannot store is
// refused with the entry.
func TestReadStateUnstorableText(t *testing.T) {
	ctx := context.Background()
	s := postgres.OpenTest(t, postgres.Config{})
	if _, err := s.CreateRoom(ctx, store.Room{Name: "r", Visibility: store.Public, CreatedBy: "o"}); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, s, store.NewMessage{Room: "r", Sender: "alice", Body: "1"})
	got, err := s.SetReadMarkers(ctx, []store.ReadMarker{{Room: "r", User: "bad\x00", Seq: 1}, {Room: "r", User: "bob", Seq: 1}})
	if err != nil || len(got) != 1 || got[0].User != "bob" || got[0].Seq != 1 {
		t.Errorf("SetReadMarkers with an unstorable user = %+v (%v), want bob's alone", got, err)
	}
	if _, _, err := s.Append(ctx, store.NewMessage{Room: "r", Sender: "alice", Body: "@x", Mentions: []string{"x\xff"}}); !errors.Is(err, postgres.ErrInvalidText) {
		t.Errorf("Append with an unstorable mention = %v, want ErrInvalidText", err)
	}
}

// TestUpgradeToReadState opens a schema that the previous version (3)
// holds entries of every kind in: the upgrade counts them, and the
// counts, markers and mentions work on them and on new ones.
func TestUpgradeToReadState(t *testing.T) {
	ctx := context.Background()
	schema := postgres.NewSchema(t)
	postgres.MigrateTo(t, schema, 3)
	postgres.ExecSQL(t, schema, `INSERT INTO rooms (name, visibility, created_by, created_at, last_seq, last_message_at) VALUES
			('r', 1, 'alice', now(), 8, now()), ('q', 1, 'alice', now(), 2, now()), ('empty', 1, 'alice', now(), 0, NULL);
		INSERT INTO messages (room, seq, sender, body, sent_at, kind, target_seq, edit_seq, deleted, emoji) VALUES
			('r', 1, 'alice', 'a1', now(), 0, 0, 5, false, ''),
			('r', 2, 'bob', 'b1', now(), 0, 0, 0, false, ''),
			('r', 3, 'alice', '', now(), 3, 1, 0, false, '👍'),
			('r', 4, 'carol', '', now(), 0, 0, 0, true, ''),
			('r', 5, 'alice', 'a1!', now(), 1, 1, 0, false, ''),
			('r', 6, 'carol', '', now(), 2, 4, 0, false, ''),
			('r', 7, 'bob', 'b2', now(), 0, 0, 0, false, ''),
			('r', 8, 'alice', 'a2', now(), 0, 0, 0, false, ''),
			('q', 1, 'bob', 'q1', now(), 0, 0, 0, false, ''),
			('q', 2, 'alice', 'q2', now(), 0, 0, 0, false, '');
		INSERT INTO reactions (room, target_seq, emoji, "user", seq) VALUES ('r', 1, '👍', 'alice', 3);
		INSERT INTO reaction_counts (room, target_seq, emoji, count, first_seq, users) VALUES ('r', 1, '👍', 1, 3, '{alice}');`)
	s := postgres.OpenTest(t, postgres.Config{Schema: schema})
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
	mustAppend(t, s, store.NewMessage{Room: "r", Sender: "alice", Body: "@bob @carol", Mentions: []string{"bob", "carol"}}) // 9
	mustAppend(t, s, store.NewMessage{Room: "r", Sender: "bob", Body: "b3"})                                                // 10
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
