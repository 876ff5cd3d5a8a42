package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/parleychat/parley/server/store"
)

// A batch's transaction takes two round trips, each a pipeline of
// statements sent at once:
//
//	BEGIN; lock the rooms and read their heads; read the clock
//	       [; look up the ClientMsgIDs (careful attempt)]
//	insert the messages; write the heads; COMMIT
//
// Between the two, the writer assigns the seqs. If a statement of the
// second pipeline fails, PostgreSQL skips the rest of it, COMMIT included.
const (
	lockHeadsSQL = `SELECT name, last_seq, last_message_at FROM rooms
		WHERE name = ANY($1) ORDER BY name FOR NO KEY UPDATE`
	// The clock is read after the locks are granted, so a batch that waited
	// for another node's never stamps its messages earlier than that one's.
	clockSQL = "SELECT clock_timestamp()"
	// "client_msg_id <> ''" lets PostgreSQL use the partial unique index.
	lookupSQL = `SELECT m.room, m.client_msg_id, m.sender, m.seq, m.body, m.sent_at
		FROM unnest($1::text[], $2::text[], $3::text[]) AS k(room, id, sender)
		JOIN messages m ON m.room = k.room AND m.client_msg_id = k.id AND m.sender = k.sender
		WHERE m.client_msg_id <> ''`
	insertSQL = `INSERT INTO messages (room, seq, sender, body, sent_at, client_msg_id)
		SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::timestamptz[], $6::text[])`
	updateHeadsSQL = `UPDATE rooms SET last_seq = u.seq, last_message_at = u.at
		FROM unnest($1::text[], $2::bigint[], $3::timestamptz[]) AS u(name, seq, at)
		WHERE rooms.name = u.name`
)

// errBeforeCommit marks an error of a batch's first pipeline: COMMIT was
// not sent, so nothing of the batch can have been stored.
var errBeforeCommit = errors.New("before commit")

// uniqueClientMsgID is the unique index on (room, client_msg_id, sender).
const uniqueClientMsgID = "messages_client_msg_id"

// errStoredDuplicate means that the unique index turned away a message of
// an optimistic attempt: it duplicates one stored by an earlier batch.
var errStoredDuplicate = errors.New("a message duplicates a stored one")

// batchState is what the writer knows inside one batch's transaction. Its
// maps and slices are reused from batch to batch.
type batchState struct {
	careful bool
	now     time.Time                  // the database's clock once the rooms are locked
	names   []string                   // the batch's rooms
	seen    map[string]bool            // the batch's rooms, as a set
	heads   map[string]*head           // rooms that exist
	dedup   map[dedupKey]store.Message // this batch's messages with a ClientMsgID
	stored  map[dedupKey]store.Message // careful: messages already stored
	keys    columns                    // careful: the ClientMsgIDs to look up
	rows    columns                    // new messages
}

// head is a room's head as the batch sees it.
type head struct {
	changed bool
	seq     uint64
	at      time.Time // of the newest message; zero for none
}

type dedupKey struct{ room, sender, id string }

// columns holds rows column by column, as unnest wants them.
type columns struct {
	room, sender, body, id []string
	seq                    []int64
	at                     []time.Time
}

func (c *columns) reset() {
	clear(c.room)
	clear(c.sender)
	clear(c.body)
	clear(c.id)
	c.room, c.sender, c.body, c.id = c.room[:0], c.sender[:0], c.body[:0], c.id[:0]
	c.seq, c.at = c.seq[:0], c.at[:0]
}

func newBatchState() *batchState {
	return &batchState{
		seen: make(map[string]bool), heads: make(map[string]*head),
		dedup: make(map[dedupKey]store.Message), stored: make(map[dedupKey]store.Message),
	}
}

// run performs live's appends in arrival order as one transaction on c,
// leaving each outcome in r.res. On error the transaction may still be
// open (the caller rolls it back), and no r.res is to be trusted.
func (b *batchState) run(ctx context.Context, c *pgx.Conn, live []*request, careful bool) error {
	b.reset(live, careful)
	if err := b.begin(ctx, c); err != nil {
		return mark(err, errBeforeCommit)
	}
	for _, r := range live {
		r.res = b.appendOne(r.msg)
	}
	return b.finish(ctx, c)
}

func (b *batchState) reset(live []*request, careful bool) {
	b.careful = careful
	clear(b.heads)
	clear(b.dedup)
	clear(b.stored)
	b.keys.reset()
	b.rows.reset()
	clear(b.names)
	b.names = b.names[:0]
	clear(b.seen)
	for _, r := range live {
		if !b.seen[r.msg.Room] {
			b.seen[r.msg.Room] = true
			b.names = append(b.names, r.msg.Room)
		}
		if careful && r.msg.ClientMsgID != "" {
			b.keys.room = append(b.keys.room, r.msg.Room)
			b.keys.id = append(b.keys.id, r.msg.ClientMsgID)
			b.keys.sender = append(b.keys.sender, r.msg.Sender)
		}
	}
	slices.Sort(b.names) // tidiness only: the lock order is the query's ORDER BY
}

// begin opens the transaction, locks the batch's rooms and reads their
// heads and the clock, and in a careful attempt the stored messages that
// the batch's ClientMsgIDs name.
func (b *batchState) begin(ctx context.Context, c *pgx.Conn) error {
	q := &pgx.Batch{}
	q.Queue("BEGIN")
	q.Queue(lockHeadsSQL, b.names)
	q.Queue(clockSQL)
	if b.careful {
		q.Queue(lookupSQL, b.keys.room, b.keys.id, b.keys.sender)
	}
	br := c.SendBatch(ctx, q)
	if err := b.readBegin(br); err != nil {
		br.Close()
		return err
	}
	return br.Close()
}

func (b *batchState) readBegin(br pgx.BatchResults) error {
	if _, err := br.Exec(); err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := b.readHeads(br); err != nil {
		return fmt.Errorf("lock rooms: %w", err)
	}
	if err := br.QueryRow().Scan(&b.now); err != nil {
		return fmt.Errorf("read clock: %w", err)
	}
	if b.careful {
		if err := b.readStored(br); err != nil {
			return fmt.Errorf("look up client_msg_ids: %w", err)
		}
	}
	return nil
}

func (b *batchState) readHeads(br pgx.BatchResults) error {
	rows, err := br.Query()
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var name string
		var seq int64
		var at *time.Time
		if err := rows.Scan(&name, &seq, &at); err != nil {
			return err
		}
		h := &head{seq: uint64(seq)}
		if at != nil {
			h.at = *at
		}
		b.heads[name] = h
	}
	return rows.Err()
}

func (b *batchState) readStored(br pgx.BatchResults) error {
	rows, err := br.Query()
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var m store.Message
		var seq int64
		if err := rows.Scan(&m.Room, &m.ClientMsgID, &m.Sender, &seq, &m.Body, &m.SentAt); err != nil {
			return err
		}
		m.Seq, m.SentAt = uint64(seq), m.SentAt.UTC()
		b.stored[dedupKey{m.Room, m.Sender, m.ClientMsgID}] = m
	}
	return rows.Err()
}

// appendOne gives m the next seq of its room, or finds the message it
// duplicates. An unknown room is the caller's error, not the batch's.
func (b *batchState) appendOne(m store.NewMessage) result {
	h, ok := b.heads[m.Room]
	if !ok {
		return result{err: fmt.Errorf("append to room %q: %w", m.Room, store.ErrRoomNotFound)}
	}
	key := dedupKey{m.Room, m.Sender, m.ClientMsgID}
	if m.ClientMsgID != "" {
		if orig, ok := b.dedup[key]; ok {
			return result{msg: orig, dup: true}
		}
		if orig, ok := b.stored[key]; ok {
			return result{msg: orig, dup: true}
		}
	}
	h.seq++
	if b.now.After(h.at) { // a room's times never go backwards, even if the clock does
		h.at = b.now
	}
	h.changed = true
	msg := store.Message{
		Room: m.Room, Seq: h.seq, Sender: m.Sender, Body: m.Body,
		SentAt: h.at.UTC(), ClientMsgID: m.ClientMsgID,
	}
	b.rows.room = append(b.rows.room, msg.Room)
	b.rows.seq = append(b.rows.seq, int64(msg.Seq))
	b.rows.sender = append(b.rows.sender, msg.Sender)
	b.rows.body = append(b.rows.body, msg.Body)
	b.rows.at = append(b.rows.at, h.at)
	b.rows.id = append(b.rows.id, msg.ClientMsgID)
	if m.ClientMsgID != "" {
		b.dedup[key] = msg
	}
	return result{msg: msg}
}

// finish inserts the new messages, writes the new heads and commits.
func (b *batchState) finish(ctx context.Context, c *pgx.Conn) error {
	var names []string
	var seqs []int64
	var ats []time.Time
	for _, name := range b.names {
		if h := b.heads[name]; h != nil && h.changed {
			names, seqs, ats = append(names, name), append(seqs, int64(h.seq)), append(ats, h.at)
		}
	}
	q := &pgx.Batch{}
	if len(b.rows.room) > 0 {
		r := &b.rows
		q.Queue(insertSQL, r.room, r.seq, r.sender, r.body, r.at, r.id)
		q.Queue(updateHeadsSQL, names, seqs, ats)
	}
	q.Queue("COMMIT")
	br := c.SendBatch(ctx, q)
	if err := b.readFinish(br, len(names)); err != nil {
		br.Close()
		return err
	}
	return br.Close()
}

func (b *batchState) readFinish(br pgx.BatchResults, heads int) error {
	if n := len(b.rows.room); n > 0 {
		tag, err := br.Exec()
		switch {
		case err != nil && !b.careful && isUniqueViolation(err, uniqueClientMsgID):
			return mark(fmt.Errorf("insert %d messages: %w", n, err), errStoredDuplicate)
		case err != nil:
			return fmt.Errorf("insert %d messages: %w", n, err)
		case tag.RowsAffected() != int64(n):
			return fmt.Errorf("insert %d messages: %d inserted", n, tag.RowsAffected())
		}
		if tag, err = br.Exec(); err != nil {
			return fmt.Errorf("update room heads: %w", err)
		} else if tag.RowsAffected() != int64(heads) {
			return fmt.Errorf("update room heads: %d of %d rows updated", tag.RowsAffected(), heads)
		}
	}
	tag, err := br.Exec()
	if err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	if tag.String() != "COMMIT" {
		return fmt.Errorf("commit: the transaction was rolled back (%s)", tag)
	}
	return nil
}
