package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
)

// maxInsertRows bounds the rows of one INSERT statement, well inside
// SQLite's limit of 32,766 bound parameters.
const maxInsertRows = 1024

// statements are the writer's prepared statements, bound to its connection.
type statements struct {
	begin, commit, rollback *sql.Stmt
	selHeads, selDup        *sql.Stmt
	insRoom                 *sql.Stmt
	updHeads                map[int]*sql.Stmt // by number of rooms, as insMsgs
	insMember, delMember    *sql.Stmt
	delMsgs                 *sql.Stmt
	insMsgs                 map[int]*sql.Stmt // by number of rows: 1, 2, 4, ...

	// The texts (see migration 8): appended, erased in place, pruned.
	insBodies                    map[int]*sql.Stmt // by number of rows, as insMsgs
	selLastBody, delPrunedBodies *sql.Stmt
	eraseBody, eraseEditBodies   *sql.Stmt

	// Entries other than messages (entries.go), and retention's cascade.
	selTarget, selReactionCounts, selReacted      *sql.Stmt
	insReaction, delReaction                      *sql.Stmt
	updEdit, updDelete, eraseEdits                *sql.Stmt
	upsReactionCount, delReactionCount, insEntry  *sql.Stmt
	delTargeting, delReactions, delReactionCounts *sql.Stmt

	// Read state (readstate.go): the counters appends keep, what retention
	// does to them, and the markers.
	upsSenders                                map[int]*sql.Stmt // by number of rows, as insMsgs
	selSenders, clearUncounted                *sql.Stmt
	insMentions, delMentions                  *sql.Stmt
	updPrunedOrd, updPrunedSenders            *sql.Stmt
	delPrunedMentions, upsMarkers, selMarkers *sql.Stmt
}

func prepare(ctx context.Context, conn *sql.Conn, maxBatch int) (*statements, error) {
	st := &statements{insMsgs: make(map[int]*sql.Stmt), updHeads: make(map[int]*sql.Stmt), upsSenders: make(map[int]*sql.Stmt),
		insBodies: make(map[int]*sql.Stmt)}
	var err error
	p := func(q string) *sql.Stmt {
		if err != nil {
			return nil
		}
		var s *sql.Stmt
		if s, err = conn.PrepareContext(ctx, q); err != nil {
			err = fmt.Errorf("sqlite: prepare %.60q: %w", q, err)
		}
		return s
	}
	// BEGIN IMMEDIATE takes the write lock up front, so that a batch cannot
	// fail half way for want of it.
	st.begin, st.commit, st.rollback = p("BEGIN IMMEDIATE"), p("COMMIT"), p("ROLLBACK")
	// Room names and heads travel as one JSON array, so that a batch reads
	// and writes the heads of all its rooms with one statement each.
	st.selHeads = p(`SELECT name, last_seq, last_message_at, visibility, created_by, msgs FROM rooms
		WHERE name IN (SELECT value FROM json_each(?))`)
	// "client_msg_id <> ''" lets SQLite use the partial unique index.
	st.selDup = p(`SELECT seq, kind, ` + bodyOf("messages") + `, sent_at, target_seq, reply_to_seq, emoji, mentions FROM messages
		WHERE room = ? AND client_msg_id = ? AND sender = ? AND client_msg_id <> ''`)
	st.insRoom = p("INSERT INTO rooms (name, visibility, created_by, created_at) VALUES (?, ?, ?, ?)")
	st.insMember = p("INSERT OR IGNORE INTO members (room, user) VALUES (?, ?)")
	st.delMember = p("DELETE FROM members WHERE room = ? AND user = ?")
	st.delMsgs = p("DELETE FROM messages WHERE room = ? AND seq > ? AND seq <= ?")
	prepareBodies(p, st)
	prepareEntries(p, st)
	prepareReadState(p, st, maxBatch)
	for n := 1; n <= min(maxBatch, maxInsertRows); n *= 2 {
		st.insMsgs[n] = p(insertSQL(n))
		st.insBodies[n] = p(insertBodiesSQL(n))
		st.updHeads[n] = p(updateHeadsSQL(n))
	}
	if err != nil {
		st.close()
		return nil, err
	}
	return st, nil
}

// insertSQL returns an INSERT of rows messages, their texts named by
// body_id. OR IGNORE: a row that the unique index turns away is skipped
// rather than failing the statement; the writer counts the rows and redoes
// the batch carefully (see commit).
func insertSQL(rows int) string {
	var sb strings.Builder
	sb.WriteString("INSERT OR IGNORE INTO messages (room, seq, sender, body, body_id, sent_at, client_msg_id, ord, sord, mentions) VALUES ")
	writeTuples(&sb, rows, "(?,?,?,'',?,?,?,?,?,?)")
	return sb.String()
}

// insertBodiesSQL returns an INSERT of rows texts, as (id, body) rows.
func insertBodiesSQL(rows int) string {
	var sb strings.Builder
	sb.WriteString("INSERT INTO bodies (id, body) VALUES ")
	writeValueRows(&sb, rows, 2)
	return sb.String()
}

// writeValueRows writes rows tuples of cols parameters, comma-separated:
// the VALUES of a statement prepared for that many rows.
func writeValueRows(sb *strings.Builder, rows, cols int) {
	writeTuples(sb, rows, "("+strings.Repeat("?,", cols-1)+"?)")
}

// writeTuples writes rows copies of tuple, comma-separated.
func writeTuples(sb *strings.Builder, rows int, tuple string) {
	for i := range rows {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(tuple)
	}
}

// updateHeadsSQL returns an UPDATE of the heads of rooms rooms, bound as
// (name, seq, at, msgs, uncounted_from) rows. Bound parameters, not one
// JSON array: it runs in every batch, and encoding and taking apart the
// JSON cost more than the update (a profile of 100 appenders over 100
// rooms: 12 % of the process).
func updateHeadsSQL(rooms int) string {
	var sb strings.Builder
	sb.WriteString(`UPDATE rooms SET last_seq = u.column2, last_message_at = u.column3, msgs = u.column4, uncounted_from = u.column5
		FROM (VALUES `)
	writeValueRows(&sb, rooms, 5)
	sb.WriteString(") AS u WHERE rooms.name = u.column1")
	return sb.String()
}

// execRows runs the statements prepared per number of rows (bySize) over
// items, in as few as the prepared sizes allow, binding each item's
// values with bind into args (a buffer kept between calls). With a
// mismatch error, each statement must affect as many rows as it bound,
// else the error wraps mismatch. what names the rows in errors.
func execRows[T any](ctx context.Context, bySize map[int]*sql.Stmt, items []T, args *[]any, what string, mismatch error, bind func([]any, T) []any) error {
	for len(items) > 0 {
		n := largest(bySize, len(items))
		a := (*args)[:0]
		for _, it := range items[:n] {
			a = bind(a, it)
		}
		res, err := bySize[n].ExecContext(ctx, a...)
		clear(a)
		*args = a[:0]
		if err != nil {
			return fmt.Errorf("%s (%d): %w", what, n, err)
		}
		if mismatch != nil {
			if got, err := res.RowsAffected(); err != nil || got != int64(n) {
				return fmt.Errorf("%s: %d of %d rows (%v): %w", what, got, n, err, mismatch)
			}
		}
		items = items[n:]
	}
	return nil
}

// largest returns the largest size of the statements by size not above n.
func largest(bySize map[int]*sql.Stmt, n int) int {
	size := 1
	for size*2 <= n && bySize[size*2] != nil {
		size *= 2
	}
	return size
}

func (st *statements) close() {
	all := []*sql.Stmt{st.begin, st.commit, st.rollback, st.selHeads, st.selDup, st.insRoom, st.insMember, st.delMember, st.delMsgs,
		st.selTarget, st.selReactionCounts, st.selReacted, st.insReaction, st.delReaction, st.updEdit, st.updDelete, st.eraseEdits,
		st.upsReactionCount, st.delReactionCount, st.insEntry, st.delTargeting, st.delReactions, st.delReactionCounts,
		st.selSenders, st.clearUncounted, st.insMentions, st.delMentions, st.updPrunedOrd, st.updPrunedSenders, st.delPrunedMentions, st.upsMarkers, st.selMarkers,
		st.selLastBody, st.delPrunedBodies, st.eraseBody, st.eraseEditBodies}
	for _, s := range st.insMsgs {
		all = append(all, s)
	}
	for _, s := range st.updHeads {
		all = append(all, s)
	}
	for _, s := range st.upsSenders {
		all = append(all, s)
	}
	for _, s := range st.insBodies {
		all = append(all, s)
	}
	for _, s := range all {
		if s != nil {
			s.Close()
		}
	}
}
