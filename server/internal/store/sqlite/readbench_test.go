package sqlite_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
	"time"

	"github.com/parleychat/parley/server/internal/store/sqlite"
	"github.com/parleychat/parley/server/internal/store/storetest"
)

// BenchmarkReadState reads a user's read state in 1,000 rooms of 10,000
// messages each, of each of storetest.ReadBenchShapes
// (storetest.BenchReadState; -short: 200 rooms of 1,000). The rooms are
// written straight into the tables, with the counters the writer would
// have kept, which takes a minute instead of the writer's ten; the bench
// checks the counts it reads against the rooms' contents.
func BenchmarkReadState(b *testing.B) {
	storetest.RunReadBenchShapes(b, func(b *testing.B, rb storetest.ReadBench) {
		path := filepath.Join(b.TempDir(), "parley.db")
		openTemp(b, sqlite.Config{Path: path}).Close() // the schema
		start := time.Now()
		fillReadBench(b, path, rb)
		b.Logf("filled %d rooms of %d messages in %v", rb.Rooms, rb.PerRoom, time.Since(start).Round(time.Second))
		s := openTemp(b, sqlite.Config{Path: path})
		defer s.Close()
		storetest.BenchReadState(b, s, rb, storetest.BenchCPU{Process: cpuTime})
	})
}

// fillReadBench writes rb's rooms into the database at path, room by
// room, as the writer would have left them (sqlstore/readstate.go).
func fillReadBench(b *testing.B, path string, rb storetest.ReadBench) {
	ctx := context.Background()
	db, err := sql.Open("sqlite", path+"?_pragma=synchronous(OFF)&_pragma=busy_timeout(5000)")
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	// The pattern of storetest.ReadBench: Sender, Deleted, Mentions.
	const fill = `WITH RECURSIVE s(seq) AS (SELECT 1 UNION ALL SELECT seq + 1 FROM s WHERE seq < ?2),
		m AS (SELECT seq, CASE WHEN seq % 10 = 3 THEN ?3 ELSE 'u' || (seq % 7) END AS sender FROM s)
		INSERT INTO messages (room, seq, sender, body, sent_at, ord, sord, deleted, mentions)
		SELECT ?1, seq, sender,
			CASE WHEN seq % ?4 = 0 THEN '' ELSE 'message ' || seq || ': some text of a typical length for a chat line' END,
			seq, seq, row_number() OVER (PARTITION BY sender ORDER BY seq), seq % ?4 = 0,
			CASE WHEN seq % ?5 = 0 AND seq % ?4 <> 0 AND seq % 10 <> 3 THEN json_array(?3) ELSE '' END
		FROM m ORDER BY seq`
	for i := range rb.Rooms {
		name := rb.RoomName(i)
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			b.Fatal(err)
		}
		for _, q := range []struct {
			sql  string
			args []any
		}{
			{`INSERT INTO rooms (name, visibility, created_by, created_at, last_seq, last_message_at, msgs) VALUES (?1, ?2, 'u1', 1, ?3, ?3, ?3)`,
				[]any{name, int(rb.Visibility(i)), rb.PerRoom}},
			{`INSERT INTO members (room, user) VALUES (?1, ?2), (?1, 'u1')`, []any{name, rb.Reader}},
			{fill, []any{name, rb.PerRoom, rb.Reader, rb.DeleteEvery, rb.MentionEvery}},
			{`INSERT INTO room_senders (room, sender, msgs, last_seq)
				SELECT room, sender, count(*), max(seq) FROM messages WHERE room = ? GROUP BY sender`, []any{name}},
			{`INSERT INTO mentions (room, seq, user) SELECT room, seq, ?2 FROM messages WHERE room = ?1 AND mentions <> ''`, []any{name, rb.Reader}},
		} {
			if _, err := tx.ExecContext(ctx, q.sql, q.args...); err != nil {
				b.Fatalf("fill %s: %v", name, err)
			}
		}
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := db.ExecContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkUpgradeToReadState times Open of a database that schema 4
// left with 1,000 rooms of 1,000 messages (-short: 100 rooms): the
// migration to read state counts them all and rewrites every row once.
func BenchmarkUpgradeToReadState(b *testing.B) {
	rooms := 1000
	if testing.Short() {
		rooms = 100
	}
	for b.Loop() {
		b.StopTimer()
		path := filepath.Join(b.TempDir(), "parley.db")
		db, err := sql.Open("sqlite", path+"?_pragma=synchronous(OFF)")
		if err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		if err := sqlite.MigrateTo(ctx, db, 4); err != nil {
			b.Fatal(err)
		}
		for _, q := range []string{
			`WITH RECURSIVE r(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM r WHERE i + 1 < ?1)
				INSERT INTO rooms (name, visibility, created_by, created_at, last_seq) SELECT printf('room-%05d', i), 1, 'u1', 1, 1000 FROM r`,
			`WITH RECURSIVE s(seq) AS (SELECT 1 UNION ALL SELECT seq + 1 FROM s WHERE seq < 1000)
				INSERT INTO messages (room, seq, sender, body, sent_at)
				SELECT name, seq, 'u' || (seq % 7), 'message ' || seq || ': some text of a typical length for a chat line', seq
				FROM rooms, s ORDER BY name, seq`,
		} {
			if _, err := db.ExecContext(ctx, q, rooms); err != nil {
				b.Fatal(err)
			}
		}
		db.Close()
		b.StartTimer()
		s := openTemp(b, sqlite.Config{Path: path})
		b.StopTimer()
		if r, err := s.ReadState(ctx, "u1", "room-00000"); err != nil || r.Unread != 857 {
			b.Fatalf("after the upgrade: %+v (%v), want 857 unread", r, err)
		}
		s.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(rooms*1000)/(b.Elapsed().Seconds()/float64(b.N)), "msgs/s")
}
