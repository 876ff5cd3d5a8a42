package postgres_test

import (
	"context"
	"errors"
	"reflect"
	"testing"

	"github.com/parleychat/parley/server/internal/store"
	"github.com/parleychat/parley/server/internal/store/postgres"
	"github.com/parleychat/parley/server/internal/store/storetest"
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
	storetest.CheckReadStateUpgrade(t, s)
}
