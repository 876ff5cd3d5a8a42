package postgres

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/parleychat/parley/server/internal/store"
	"github.com/parleychat/parley/server/internal/store/internal/sqlstore"
)

// A careful batch is the rare one that met a duplicate of a stored message
// in the optimistic statement (batch.go). It runs as a transaction of two
// round trips, each a pipeline of statements sent at once:
//
//	BEGIN; lock the rooms and read their heads; read the clock;
//	       look up the batch's ClientMsgIDs
//	insert the new messages; write the heads; COMMIT
//
// The lookup runs after the locks are granted, in a statement of its own,
// so it sees every message stored in those rooms by any node (READ
// COMMITTED takes a new snapshot per statement), and no other node can
// store one until COMMIT. Between the two round trips the writer assigns
// the seqs. If a statement of the second pipeline fails, PostgreSQL skips
// the rest of it, COMMIT included.
const (
	lockHeadsSQL = `SELECT name, last_seq, last_message_at, visibility, created_by, msgs FROM rooms
		WHERE name = ANY($1) ORDER BY name FOR NO KEY UPDATE`
	// The clock is read after the locks are granted, so a batch that waited
	// for another node's never stamps its messages earlier than that one's.
	clockSQL = "SELECT clock_timestamp()"
	// "client_msg_id <> ''" lets PostgreSQL use the partial unique index.
	lookupSQL = `SELECT m.room, m.client_msg_id, m.sender, m.seq, m.body, m.sent_at, m.kind, m.target_seq, m.reply_to_seq, m.emoji, m.mentions
		FROM unnest($1::text[], $2::text[], $3::text[]) AS k(room, id, sender)
		JOIN messages m ON m.room = k.room AND m.client_msg_id = k.id AND m.sender = k.sender
		WHERE m.client_msg_id <> ''`
	insertSQL = `INSERT INTO messages (room, seq, sender, body, sent_at, client_msg_id, kind, target_seq, reply_to_seq, emoji, edit_seq, deleted, ord, sord, mentions)
		SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::timestamptz[], $6::text[],
			$7::smallint[], $8::bigint[], $9::bigint[], $10::text[], $11::bigint[], $12::boolean[], $13::bigint[], $14::bigint[], $15::text[])`
	updateHeadsSQL = `UPDATE rooms SET last_seq = u.seq, last_message_at = u.at, msgs = u.msgs
		FROM unnest($1::text[], $2::bigint[], $3::timestamptz[], $4::bigint[]) AS u(name, seq, at, msgs)
		WHERE rooms.name = u.name`
)

// carefulState is what the writer knows inside a careful batch's
// transaction.
type carefulState struct {
	now    time.Time                  // the database's clock once the rooms are locked
	heads  map[string]*head           // rooms that exist
	dedup  map[dedupKey]store.Message // this batch's messages with a ClientMsgID
	stored map[dedupKey]store.Message // messages already stored
	keys   columns                    // the ClientMsgIDs to look up
	rows   columns                    // new entries
	ords   []int64                    // each new entry's ord
	sords  []int64                    // each new entry's sord
	e      entryState                 // what the entries name (entries.go)
	rc     carefulCounters            // what the entries add to the read-state counters (readstate.go)
}

// head is a room's head as the careful batch sees it.
type head struct {
	changed bool
	seq     uint64
	at      time.Time // of the newest message; zero for none
	msgs    int64     // entries of kind message ever appended
	vis     store.Visibility
	creator string
}

func newCarefulState() carefulState {
	return carefulState{
		heads: make(map[string]*head), dedup: make(map[dedupKey]store.Message),
		stored: make(map[dedupKey]store.Message), e: newEntryState(), rc: newCarefulCounters(),
	}
}

// runCareful performs live's appends in arrival order as one transaction
// on c, looking up every ClientMsgID, and leaves each answer in r.Out and
// r.Err. On error the transaction may still be open (the caller rolls it
// back), and no answer is to be trusted. b.names must hold the batch's rooms (run
// leaves them there).
func (b *batchState) runCareful(ctx context.Context, c *pgx.Conn, live []*request) error {
	cs := &b.c
	cs.reset(live)
	if err := cs.begin(ctx, c, b.names); err != nil {
		return mark(err, errBeforeCommit)
	}
	for _, r := range live {
		r.Out, r.Err = cs.appendOne(r.In)
	}
	return cs.finish(ctx, c, b.names)
}

func (cs *carefulState) reset(live []*request) {
	clear(cs.heads)
	clear(cs.dedup)
	clear(cs.stored)
	cs.keys.reset()
	cs.rows.reset()
	cs.ords, cs.sords = cs.ords[:0], cs.sords[:0]
	cs.e.reset(live)
	cs.rc.reset(live)
	for _, r := range live {
		if r.In.ClientMsgID != "" {
			cs.keys.room = append(cs.keys.room, r.In.Room)
			cs.keys.id = append(cs.keys.id, r.In.ClientMsgID)
			cs.keys.sender = append(cs.keys.sender, r.In.Sender)
		}
	}
}

// begin opens the transaction, locks the batch's rooms, and reads their
// heads, the clock and the stored messages that the batch's ClientMsgIDs
// name.
func (cs *carefulState) begin(ctx context.Context, c *pgx.Conn, names []string) error {
	q := &pgx.Batch{}
	q.Queue("BEGIN")
	q.Queue(lockHeadsSQL, names)
	q.Queue(clockSQL)
	q.Queue(lookupSQL, cs.keys.room, cs.keys.id, cs.keys.sender)
	cs.e.queueReads(q)
	cs.rc.queueReads(q)
	br := c.SendBatch(ctx, q)
	if err := cs.readBegin(br); err != nil {
		br.Close()
		return err
	}
	return br.Close()
}

func (cs *carefulState) readBegin(br pgx.BatchResults) error {
	if _, err := br.Exec(); err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := cs.readHeads(br); err != nil {
		return fmt.Errorf("lock rooms: %w", err)
	}
	if err := br.QueryRow().Scan(&cs.now); err != nil {
		return fmt.Errorf("read clock: %w", err)
	}
	if err := cs.readStored(br); err != nil {
		return fmt.Errorf("look up client_msg_ids: %w", err)
	}
	if err := cs.e.readReads(br); err != nil {
		return err
	}
	return cs.rc.readReads(br)
}

func (cs *carefulState) readHeads(br pgx.BatchResults) error {
	rows, err := br.Query()
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var name, creator string
		var seq, msgs int64
		var vis int32
		var at *time.Time
		if err := rows.Scan(&name, &seq, &at, &vis, &creator, &msgs); err != nil {
			return err
		}
		h := &head{seq: uint64(seq), msgs: msgs, vis: store.Visibility(vis), creator: creator}
		if at != nil {
			h.at = *at
		}
		cs.heads[name] = h
	}
	return rows.Err()
}

func (cs *carefulState) readStored(br pgx.BatchResults) error {
	rows, err := br.Query()
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var m store.Message
		var seq, target, replyTo int64
		var kind int16
		var mentions string
		if err := rows.Scan(&m.Room, &m.ClientMsgID, &m.Sender, &seq, &m.Body, &m.SentAt, &kind, &target, &replyTo, &m.Emoji, &mentions); err != nil {
			return err
		}
		m.Seq, m.SentAt, m.Kind, m.TargetSeq, m.ReplyToSeq = uint64(seq), m.SentAt.UTC(), store.Kind(kind), uint64(target), uint64(replyTo)
		if m.Mentions, err = sqlstore.DecodeMentions(mentions); err != nil {
			return err
		}
		cs.stored[dedupKey{m.Room, m.Sender, m.ClientMsgID}] = m
	}
	return rows.Err()
}

// appendOne gives m the next seq of its room, or finds the entry it
// duplicates, after checking it against the rules of the log. An unknown
// room or a broken rule is the caller's error, not the batch's.
func (cs *carefulState) appendOne(m store.NewMessage) (result, error) {
	h, ok := cs.heads[m.Room]
	if !ok {
		return result{}, fmt.Errorf("append to room %q: %w", m.Room, store.ErrRoomNotFound)
	}
	key := dedupKey{m.Room, m.Sender, m.ClientMsgID}
	if m.ClientMsgID != "" {
		if orig, ok := cs.dedup[key]; ok {
			return result{msg: orig, dup: true}, nil
		}
		if orig, ok := cs.stored[key]; ok {
			return result{msg: orig, dup: true}, nil
		}
	}
	if noop, err := cs.e.decide(m, h); err != nil || noop {
		if noop {
			return result{msg: m.Noop(), dup: true}, nil
		}
		return result{}, err
	}
	h.seq++
	if cs.now.After(h.at) { // a room's times never go backwards, even if the clock does
		h.at = cs.now
	}
	h.changed = true
	msg := store.Message{
		Room: m.Room, Seq: h.seq, Kind: m.Kind, Sender: m.Sender, Body: m.Body,
		SentAt: h.at.UTC(), ClientMsgID: m.ClientMsgID,
		TargetSeq: m.TargetSeq, ReplyToSeq: m.ReplyToSeq, Emoji: m.Emoji,
	}
	if len(m.Mentions) > 0 && (m.Kind == store.KindMessage || m.Kind == store.KindEdit) {
		msg.Mentions = slices.Clone(m.Mentions)
	}
	if m.Kind == store.KindMessage {
		h.msgs++
	}
	cs.ords = append(cs.ords, h.msgs)
	r := &cs.rows
	r.room, r.seq, r.sender = append(r.room, msg.Room), append(r.seq, int64(msg.Seq)), append(r.sender, msg.Sender)
	r.body, r.at, r.id = append(r.body, msg.Body), append(r.at, h.at), append(r.id, msg.ClientMsgID)
	r.kind, r.target, r.replyTo = append(r.kind, int16(msg.Kind)), append(r.target, int64(msg.TargetSeq)), append(r.replyTo, int64(msg.ReplyToSeq))
	r.emoji, r.editSeq, r.deleted = append(r.emoji, msg.Emoji), append(r.editSeq, 0), append(r.deleted, false)
	r.mentions = append(r.mentions, sqlstore.EncodeMentions(msg.Mentions))
	if m.ClientMsgID != "" {
		cs.dedup[key] = msg
	}
	cs.e.apply(msg, len(r.room)-1, r)
	cs.sords = append(cs.sords, cs.rc.apply(msg, cs.e.targets[seqKey{msg.Room, msg.TargetSeq}]))
	return result{msg: msg}, nil
}

// finish inserts the new messages, writes the new heads and commits.
func (cs *carefulState) finish(ctx context.Context, c *pgx.Conn, names []string) error {
	var changed []string
	var seqs, msgs []int64
	var ats []time.Time
	for _, name := range names {
		if h := cs.heads[name]; h != nil && h.changed {
			changed, seqs, ats, msgs = append(changed, name), append(seqs, int64(h.seq)), append(ats, h.at), append(msgs, h.msgs)
		}
	}
	q := &pgx.Batch{}
	if len(cs.rows.room) > 0 {
		r := &cs.rows
		q.Queue(insertSQL, r.room, r.seq, r.sender, r.body, r.at, r.id, r.kind, r.target, r.replyTo, r.emoji, r.editSeq, r.deleted, cs.ords, cs.sords, r.mentions)
		q.Queue(updateHeadsSQL, changed, seqs, ats, msgs)
		cs.e.queueWrites(q)
		cs.rc.queueWrites(q)
	}
	q.Queue("COMMIT")
	br := c.SendBatch(ctx, q)
	if err := cs.readFinish(br, len(changed)); err != nil {
		br.Close()
		return err
	}
	return br.Close()
}

func (cs *carefulState) readFinish(br pgx.BatchResults, heads int) error {
	if n := len(cs.rows.room); n > 0 {
		if tag, err := br.Exec(); err != nil {
			return fmt.Errorf("insert %d messages: %w", n, err)
		} else if tag.RowsAffected() != int64(n) {
			return fmt.Errorf("insert %d messages: %d inserted", n, tag.RowsAffected())
		}
		if tag, err := br.Exec(); err != nil {
			return fmt.Errorf("update room heads: %w", err)
		} else if tag.RowsAffected() != int64(heads) {
			return fmt.Errorf("update room heads: %d of %d rows updated", tag.RowsAffected(), heads)
		}
		for range entryWrites + counterWrites {
			if _, err := br.Exec(); err != nil {
				return fmt.Errorf("write what the entries change: %w", err)
			}
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
