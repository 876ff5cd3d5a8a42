package sqlite_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/parleychat/parley/server/internal/store"
	"github.com/parleychat/parley/server/internal/store/sqlite"
	"github.com/parleychat/parley/server/internal/store/storetest"
)

// The read-state suite with the senders' counts written to room_senders
// in every batch, and never (all of them in the writer's memory, added by
// the readers): the counts are the same either way.
func TestConformanceSenderFlush(t *testing.T) {
	for _, age := range []time.Duration{time.Nanosecond, -1} {
		t.Run(fmt.Sprint("flushAge=", age), func(t *testing.T) {
			open := func(t *testing.T) store.Store { return openTemp(t, sqlite.WithSenderFlushAge(sqlite.Config{}, age)) }
			storetest.RunReadState(t, open)
		})
	}
}

// senderRow is a row of room_senders.
type senderRow struct {
	Room, Sender       string
	Msgs, Last, Pruned int64
}

// rawSenders reads room_senders and each room's uncounted_from from the
// database at path, beside any store that has it open.
func rawSenders(t *testing.T, path string) ([]senderRow, map[string]int64) {
	t.Helper()
	db, err := sql.Open("sqlite", path+"?_pragma=query_only(1)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	rows, err := db.QueryContext(ctx, "SELECT room, sender, msgs, last_seq, pruned FROM room_senders ORDER BY room, sender")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []senderRow
	for rows.Next() {
		var r senderRow
		if err := rows.Scan(&r.Room, &r.Sender, &r.Msgs, &r.Last, &r.Pruned); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	rooms, err := db.QueryContext(ctx, "SELECT name, uncounted_from FROM rooms")
	if err != nil {
		t.Fatal(err)
	}
	defer rooms.Close()
	from := make(map[string]int64)
	for rooms.Next() {
		var name string
		var n int64
		if err := rooms.Scan(&name, &n); err != nil {
			t.Fatal(err)
		}
		from[name] = n
	}
	return out, from
}

func checkReadState(t *testing.T, s store.Store, user, room string, want store.ReadState) {
	t.Helper()
	if got, err := s.ReadState(context.Background(), user, room); err != nil || got != want {
		t.Errorf("ReadState(%s, %s) = %+v (%v), want %+v", user, room, got, err, want)
	}
}

// crashImage copies the database at path, with its WAL, to a new file as
// a crash of the process holding it would leave it (no write is under
// way: every append has returned), and returns the copy's path.
func crashImage(t *testing.T, path string) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "crashed.db")
	for _, suffix := range []string{"", "-wal"} {
		b, err := os.ReadFile(path + suffix)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(img+suffix, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return img
}

// A database left by a crash while the senders' counts of its newest
// messages were only in the writer's memory: Open counts those messages
// into room_senders, and the counts, and the sords of new messages, carry
// on exactly. A clean Close writes them itself.
func TestSenderCountsRecountedAtOpen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "parley.db")
	s := openTemp(t, sqlite.WithSenderFlushAge(sqlite.Config{Path: path}, -1))
	mustCreateRoom(t, s, "r")
	mustCreateRoom(t, s, "q")
	for _, m := range []store.NewMessage{
		{Room: "r", Sender: "alice", Body: "1"},
		{Room: "r", Sender: "bob", Body: "2"},
		{Room: "r", Sender: "alice", Body: "3"},
		{Room: "r", Kind: store.KindReactionAdd, Sender: "carol", TargetSeq: 1, Emoji: "👍"}, // 4: not a message
		{Room: "r", Sender: "alice", Body: "5"},
		{Room: "r", Sender: "carol", Body: "6"},
		{Room: "q", Sender: "bob", Body: "1"},
	} {
		if _, _, err := s.Append(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.SetReadMarkers(ctx, []store.ReadMarker{{Room: "r", User: "bob", Seq: 2}}); err != nil {
		t.Fatal(err)
	}
	want := map[string]store.ReadState{
		"alice": {Unread: 2, HeadSeq: 6},                 // 2, 6
		"bob":   {LastReadSeq: 2, Unread: 3, HeadSeq: 6}, // 3, 5, 6
		"carol": {Unread: 4, HeadSeq: 6},
	}
	for user, w := range want {
		checkReadState(t, s, user, "r", w)
	}
	if rows, from := rawSenders(t, path); len(rows) != 0 || from["r"] != 1 || from["q"] != 1 {
		t.Fatalf("before the crash: room_senders %+v, uncounted_from %v; want nothing counted from seq 1", rows, from)
	}
	crashed := crashImage(t, path)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wantRows := []senderRow{{"q", "bob", 1, 1, 0}, {"r", "alice", 3, 5, 0}, {"r", "bob", 1, 2, 0}, {"r", "carol", 1, 6, 0}}
	if rows, from := rawSenders(t, path); !reflect.DeepEqual(rows, wantRows) || from["r"] != 0 || from["q"] != 0 {
		t.Errorf("after Close: room_senders %+v, uncounted_from %v; want %+v, all counted", rows, from, wantRows)
	}

	cfg := sqlite.WithSenderFlushAge(sqlite.Config{Path: crashed}, -1)
	s = openTemp(t, cfg)
	defer s.Close()
	if rows, from := rawSenders(t, crashed); !reflect.DeepEqual(rows, wantRows) || from["r"] != 0 || from["q"] != 0 {
		t.Errorf("after the crash: room_senders %+v, uncounted_from %v; want %+v, all counted", rows, from, wantRows)
	}
	for user, w := range want {
		checkReadState(t, s, user, "r", w)
	}
	// New messages count on from the recounted rows: alice's 8th is her
	// 4th, so a marker at 7 has 3 of hers before it.
	mustAppend(t, s, store.NewMessage{Room: "r", Sender: "bob", Body: "7"})
	mustAppend(t, s, store.NewMessage{Room: "r", Sender: "alice", Body: "8"})
	if _, err := s.SetReadMarkers(ctx, []store.ReadMarker{{Room: "r", User: "alice", Seq: 7}, {Room: "r", User: "carol", Seq: 4}}); err != nil {
		t.Fatal(err)
	}
	checkReadState(t, s, "alice", "r", store.ReadState{LastReadSeq: 7, HeadSeq: 8})
	checkReadState(t, s, "carol", "r", store.ReadState{LastReadSeq: 4, Unread: 3, HeadSeq: 8}) // 5, 7, 8
	checkReadState(t, s, "bob", "r", store.ReadState{LastReadSeq: 2, Unread: 4, HeadSeq: 8})   // 3, 5, 6, 8
}

// TestUpgradeToLazySenderCounts opens a database that the previous schema
// (version 5) wrote read state into, with room_senders counting every
// message: the upgrade takes them all as counted, and the counts work on
// them and on new messages, across a restart.
func TestUpgradeToLazySenderCounts(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "parley.db")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if err := sqlite.MigrateTo(ctx, db, 5); err != nil {
		t.Fatalf("schema 5: %v", err)
	}
	// r: 1 alice, 2 bob, 3 alice; bob has read up to 2.
	for _, q := range []string{
		`INSERT INTO rooms (name, visibility, created_by, created_at, last_seq, last_message_at, msgs) VALUES ('r', 1, 'alice', 1, 3, 4, 3)`,
		`INSERT INTO messages (room, seq, sender, body, sent_at, ord, sord) VALUES
			('r', 1, 'alice', 'a1', 2, 1, 1), ('r', 2, 'bob', 'b1', 3, 2, 1), ('r', 3, 'alice', 'a2', 4, 3, 2)`,
		`INSERT INTO room_senders (room, sender, msgs, last_seq) VALUES ('r', 'alice', 2, 3), ('r', 'bob', 1, 2)`,
		`INSERT INTO read_markers (room, user, seq, ord, own, read_at) VALUES ('r', 'bob', 2, 2, 1, 9)`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	db.Close()

	cfg := sqlite.WithSenderFlushAge(sqlite.Config{Path: path}, -1)
	s := openTemp(t, cfg)
	checkReadState(t, s, "bob", "r", store.ReadState{LastReadSeq: 2, Unread: 1, HeadSeq: 3})
	checkReadState(t, s, "alice", "r", store.ReadState{Unread: 1, HeadSeq: 3})
	mustAppend(t, s, store.NewMessage{Room: "r", Sender: "bob", Body: "b2"})   // 4
	mustAppend(t, s, store.NewMessage{Room: "r", Sender: "alice", Body: "a3"}) // 5
	if _, err := s.SetReadMarkers(ctx, []store.ReadMarker{{Room: "r", User: "alice", Seq: 4}}); err != nil {
		t.Fatal(err)
	}
	want := map[string]store.ReadState{
		"alice": {LastReadSeq: 4, HeadSeq: 5},
		"bob":   {LastReadSeq: 2, Unread: 2, HeadSeq: 5}, // 3, 5
		"carol": {Unread: 5, HeadSeq: 5},
	}
	for user, w := range want {
		checkReadState(t, s, user, "r", w)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTemp(t, cfg)
	defer s.Close()
	for user, w := range want {
		checkReadState(t, s, user, "r", w)
	}
	wantRows := []senderRow{{"r", "alice", 3, 5, 0}, {"r", "bob", 2, 4, 0}}
	if rows, from := rawSenders(t, path); !reflect.DeepEqual(rows, wantRows) || from["r"] != 0 {
		t.Errorf("room_senders %+v, uncounted_from %v; want %+v, all counted", rows, from, wantRows)
	}
}

// A crash image whose messages are damaged still opens (Open serves what
// can be read; Check reports the damage), though the count of what the
// crash left uncounted cannot be made.
func TestCrashImageDamagedOpens(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "parley.db")
	s := openTemp(t, sqlite.Config{Path: path})
	fillRooms(t, s, 40, 200)
	crashed := crashImage(t, path)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Checkpoint the image's WAL into it, so that the damage hits pages
	// its messages are read from.
	db, err := sql.Open("sqlite", crashed)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	damage(t, crashed, 8<<10)
	s = openTemp(t, sqlite.Config{Path: crashed})
	defer s.Close()
	if err := s.Check(ctx); !errors.Is(err, store.ErrCorrupt) {
		t.Errorf("Check of the damaged image = %v, want store.ErrCorrupt", err)
	}
	if _, err := s.ReadState(ctx, "bob", "room-00"); err != nil && !errors.Is(err, store.ErrCorrupt) {
		t.Errorf("ReadState = %v, want nil or store.ErrCorrupt", err)
	}
}
