package postgres_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/parleychat/parley/server/internal/store/postgres"
	"github.com/parleychat/parley/server/internal/store/storetest"
)

// BenchmarkReadState reads a user's read state in 1,000 rooms of 10,000
// messages each, of each of storetest.ReadBenchShapes
// (storetest.BenchReadState; -short: 200 rooms of 1,000).
// The rooms are written straight into the tables, with the counters the
// writer would have kept, then vacuumed and analysed, as autovacuum would
// have done by the time a database holds that much (without the
// visibility map, each deleted message counted is a heap fetch: see
// docs/performance.md); the bench checks the counts it reads against the
// rooms' contents.
func BenchmarkReadState(b *testing.B) {
	storetest.RunReadBenchShapes(b, func(b *testing.B, rb storetest.ReadBench) {
		schema := postgres.NewSchema(b)
		// The store's connections carry the schema's name, so that the
		// bench can find its backends and their CPU time.
		dsn := postgres.NeedPostgres(b)
		if strings.Contains(dsn, "?") {
			dsn += "&application_name=" + schema
		} else {
			dsn += "?application_name=" + schema
		}
		s := postgres.OpenTest(b, postgres.Config{DSN: dsn, Schema: schema})
		start := time.Now()
		postgres.ExecSQL(b, schema, fillReadBenchSQL(rb))
		postgres.VacuumSchema(b, schema)
		b.Logf("filled %d rooms of %d messages in %v", rb.Rooms, rb.PerRoom, time.Since(start).Round(time.Second))
		server := func() time.Duration { return processesCPU(postgres.Backends(b, schema)) }
		storetest.BenchReadState(b, s, rb, storetest.BenchCPU{Process: cpuTime, Server: server})
	})
}

// fillReadBenchSQL writes rb's rooms as the writer would have left them
// (sqlstore/readstate.go), following storetest.ReadBench's pattern
// (Sender, Deleted, Mentions).
func fillReadBenchSQL(rb storetest.ReadBench) string {
	return fmt.Sprintf(`
		INSERT INTO rooms (name, visibility, created_by, created_at, last_seq, last_message_at, msgs)
			SELECT 'room-' || lpad(i::text, 5, '0'), CASE WHEN i %% 10 = 0 THEN 3 ELSE 2 END, 'u1', now(), %[2]d, now(), %[2]d
			FROM generate_series(0, %[1]d - 1) AS i;
		INSERT INTO members (room, "user") SELECT name, '%[3]s' FROM rooms UNION ALL SELECT name, 'u1' FROM rooms;
		INSERT INTO messages (room, seq, sender, body, sent_at, ord, sord, deleted, mentions)
			SELECT room, s, sender,
				CASE WHEN s %% %[4]d = 0 THEN '' ELSE 'message ' || s || ': some text of a typical length for a chat line' END,
				now(), s, row_number() OVER (PARTITION BY room, sender ORDER BY s), s %% %[4]d = 0,
				CASE WHEN s %% %[5]d = 0 AND s %% %[4]d <> 0 AND s %% 10 <> 3 THEN '["%[3]s"]' ELSE '' END
			FROM (SELECT r.name AS room, s, CASE WHEN s %% 10 = 3 THEN '%[3]s' ELSE 'u' || (s %% 7) END AS sender
				FROM rooms r CROSS JOIN generate_series(1, %[2]d) AS s) AS m
			ORDER BY room, s;
		INSERT INTO room_senders (room, sender, msgs, last_seq)
			SELECT room, sender, count(*), max(seq) FROM messages GROUP BY room, sender;
		INSERT INTO mentions (room, seq, "user") SELECT room, seq, '%[3]s' FROM messages WHERE mentions <> '';`,
		rb.Rooms, rb.PerRoom, rb.Reader, rb.DeleteEvery, rb.MentionEvery)
}
