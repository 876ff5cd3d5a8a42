package sqlite_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/parleychat/parley/server/internal/store"
	"github.com/parleychat/parley/server/internal/store/sqlite"
	"github.com/parleychat/parley/server/internal/store/storetest"
)

// Markers, and the counts they give, survive a restart.
func TestReadMarkersSurviveReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "parley.db")
	s := openTemp(t, sqlite.Config{Path: path})
	mustCreateRoom(t, s, "r")
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
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTemp(t, sqlite.Config{Path: path})
	defer s.Close()
	if got, err := s.ReadState(ctx, "bob", "r"); err != nil || got != before {
		t.Errorf("ReadState after the restart = %+v (%v), want %+v", got, err, before)
	}
	ms, err := s.ReadMarkers(ctx, "r", 10)
	if err != nil || !reflect.DeepEqual(ms, set) {
		t.Errorf("ReadMarkers after the restart = %+v (%v), want %+v", ms, err, set)
	}
	// Still forward only.
	if got, err := s.SetReadMarkers(ctx, []store.ReadMarker{{Room: "r", User: "carol", Seq: 1}}); err != nil || !reflect.DeepEqual(got, set[1:]) {
		t.Errorf("moving carol back after the restart = %+v (%v), want %+v", got, err, set[1:])
	}
}

// TestUpgradeToReadState opens a database that the previous schema
// (version 4) holds entries of every kind in: the upgrade counts them,
// and the counts, markers and mentions work on them and on new ones.
func TestUpgradeToReadState(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "parley.db")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if err := sqlite.MigrateTo(ctx, db, 4); err != nil {
		t.Fatalf("schema 4: %v", err)
	}
	for _, q := range []string{
		`INSERT INTO rooms (name, visibility, created_by, created_at, last_seq, last_message_at) VALUES
			('r', 1, 'alice', 1, 8, 9), ('q', 1, 'alice', 1, 2, 9), ('empty', 1, 'alice', 1, 0, 0)`,
		`INSERT INTO messages (room, seq, sender, body, sent_at, kind, target_seq, edit_seq, deleted, emoji) VALUES
			('r', 1, 'alice', 'a1', 2, 0, 0, 5, 0, ''),
			('r', 2, 'bob', 'b1', 3, 0, 0, 0, 0, ''),
			('r', 3, 'alice', '', 4, 3, 1, 0, 0, '👍'),
			('r', 4, 'carol', '', 5, 0, 0, 0, 1, ''),
			('r', 5, 'alice', 'a1!', 6, 1, 1, 0, 0, ''),
			('r', 6, 'carol', '', 7, 2, 4, 0, 0, ''),
			('r', 7, 'bob', 'b2', 8, 0, 0, 0, 0, ''),
			('r', 8, 'alice', 'a2', 9, 0, 0, 0, 0, ''),
			('q', 1, 'bob', 'q1', 2, 0, 0, 0, 0, ''),
			('q', 2, 'alice', 'q2', 3, 0, 0, 0, 0, '')`,
		`INSERT INTO reactions (room, target_seq, emoji, user, seq) VALUES ('r', 1, '👍', 'alice', 3)`,
		`INSERT INTO reaction_counts (room, target_seq, emoji, count, first_seq, users) VALUES ('r', 1, '👍', 1, 3, '["alice"]')`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	db.Close()

	s := openTemp(t, sqlite.Config{Path: path})
	defer s.Close()
	storetest.CheckReadStateUpgrade(t, s)
}
