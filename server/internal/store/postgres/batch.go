package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/parleychat/parley/server/internal/store"
	"github.com/parleychat/parley/server/internal/store/internal/sqlstore"
)

// appendSQL is a whole batch in one statement, one round trip: PostgreSQL
// runs it as a transaction of its own and answers only after COMMIT. It
// locks the batch's rooms in name order, moves each room's head by the
// number of its new messages ($2), and inserts them with seqs counted from
// the old head: the writer numbers each room's new messages 1, 2, ... ($4)
// and works out their seqs from the old heads returned.
//
// The rooms are locked by the MATERIALIZED CTE in ORDER BY order; the
// UPDATE touches only rows that CTE has already locked, so a batch waits
// only in that order and two nodes' batches cannot deadlock. FOR NO KEY
// UPDATE (what an UPDATE of a non-key column takes anyway) still lets
// AddMember's foreign-key check through. The UPDATE computes from the
// newest version of the row (READ COMMITTED re-reads a row updated since
// the statement's snapshot), so a batch that waited for another node's
// continues from the head that one left. clock_timestamp() is read per
// room once its row is locked, and a room's time never goes backwards
// (greatest). A room that does not exist is not locked, not updated and
// not returned, and its messages are not inserted.
//
// The same statement keeps the read-state counters (sqlstore/readstate.go):
// each room's msgs moves with its head (every entry of an optimistic batch
// is a message), each message's ord counts from the old msgs, the senders'
// counts in room_senders are upserted (one row per room and sender, added
// up by the writer), each message's sord counts back from its sender's new
// count ($16: the sender's messages in the batch, $17: this one's place
// among them), and the messages' mention rows are inserted; rooms locked
// first keep those rows to one batch at a time.
//
// The statement is optimistic: it does not look up the ClientMsgIDs. A
// message that duplicates a stored one fails it on the unique index, and
// nothing of the batch is stored; the writer then redoes the batch
// carefully (carefulbatch.go). Duplicates within the batch never reach the
// database: the writer answers them with the earlier message.
//
// Rejected: the two-round transaction of the careful path for every batch
// (BEGIN, lock, read heads; insert, update, COMMIT) — it holds the rooms'
// rows for a round trip longer, which is what limits a room that several
// nodes append to, and cost twice the client CPU per batch at one appender
// (docs/performance.md).
const appendSQL = `WITH locked AS MATERIALIZED (
		SELECT name FROM rooms WHERE name = ANY($1::text[]) ORDER BY name FOR NO KEY UPDATE
	), heads AS (
		UPDATE rooms r SET last_seq = r.last_seq + c.n, msgs = r.msgs + c.n,
			last_message_at = greatest(r.last_message_at, clock_timestamp())
		FROM locked l JOIN unnest($1::text[], $2::bigint[]) AS c(name, n) ON c.name = l.name
		WHERE r.name = l.name
		RETURNING r.name, r.last_seq - c.n AS before, r.msgs - c.n AS msgs_before, r.last_message_at AS at
	), senders AS (
		INSERT INTO room_senders (room, sender, msgs, last_seq)
		SELECT s.room, s.sender, s.n, h.before + s.last
		FROM unnest($9::text[], $10::text[], $11::bigint[], $12::bigint[]) AS s(room, sender, n, last)
		JOIN heads h ON h.name = s.room
		ON CONFLICT (room, sender) DO UPDATE SET msgs = room_senders.msgs + excluded.msgs, last_seq = excluded.last_seq
		RETURNING room, sender, msgs
	), ins AS (
		INSERT INTO messages (room, seq, sender, body, sent_at, client_msg_id, ord, sord, mentions)
		SELECT m.room, h.before + m.ord, m.sender, m.body, h.at, m.id, h.msgs_before + m.ord, s.msgs - m.sn + m.sk, m.mentions
		FROM unnest($3::text[], $4::bigint[], $5::text[], $6::text[], $7::text[], $8::text[], $16::bigint[], $17::bigint[])
			AS m(room, ord, sender, body, id, mentions, sn, sk)
		JOIN heads h ON h.name = m.room
		JOIN senders s ON s.room = m.room AND s.sender = m.sender
	), ment AS (
		INSERT INTO mentions (room, seq, "user")
		SELECT x.room, h.before + x.ord, x.usr
		FROM unnest($13::text[], $14::bigint[], $15::text[]) AS x(room, ord, usr)
		JOIN heads h ON h.name = x.room
		ON CONFLICT DO NOTHING
	)
	SELECT name, before, at FROM heads`

// uniqueClientMsgID is the unique index on (room, client_msg_id, sender).
const uniqueClientMsgID = "messages_client_msg_id"

var (
	// errStoredDuplicate means that the unique index turned away a message
	// of an optimistic batch: it duplicates one stored earlier.
	errStoredDuplicate = errors.New("a message duplicates a stored one")
	// errBeforeCommit marks an error after which nothing of the batch can
	// have been stored: COMMIT was never sent.
	errBeforeCommit = errors.New("before commit")
)

// batchState is what the writer knows while it runs one batch. Its maps and
// slices are reused from batch to batch.
type batchState struct {
	names  []string           // the batch's rooms, sorted
	counts map[string]int64   // new messages per room
	ns     []int64            // counts in the order of names
	first  map[dedupKey]int   // the row of each ClientMsgID
	rows   columns            // the new messages; seq holds the ordinal in the room
	ments  [][]string         // each row's mentions, for the answer
	rc     optimisticCounters // the rows' senders and mention rows (readstate.go)
	rowOf  []int              // each request's row: its own or the one it duplicates
	isDup  []bool             // whether a request duplicates an earlier one
	heads  map[string]oldHead // the rooms that exist, as the statement found them
	c      carefulState
}

type dedupKey struct{ room, sender, id string }

// columns holds rows column by column, as unnest wants them.
type columns struct {
	room, sender, body, id []string
	seq                    []int64
	at                     []time.Time
	mentions               []string // JSON, as sqlstore.EncodeMentions
	// Entries other than messages (careful batches only).
	kind                     []int16
	target, replyTo, editSeq []int64
	emoji                    []string
	deleted                  []bool
}

func (c *columns) reset() {
	clear(c.room)
	clear(c.sender)
	clear(c.body)
	clear(c.id)
	clear(c.emoji)
	clear(c.mentions)
	c.room, c.sender, c.body, c.id, c.mentions = c.room[:0], c.sender[:0], c.body[:0], c.id[:0], c.mentions[:0]
	c.seq, c.at = c.seq[:0], c.at[:0]
	c.kind, c.target, c.replyTo, c.editSeq, c.emoji, c.deleted = c.kind[:0], c.target[:0], c.replyTo[:0], c.editSeq[:0], c.emoji[:0], c.deleted[:0]
}

// oldHead is a room's head before the batch, and the time of the batch's
// messages in it.
type oldHead struct {
	seq uint64
	at  time.Time
}

func newBatchState() *batchState {
	return &batchState{
		counts: make(map[string]int64), first: make(map[dedupKey]int),
		heads: make(map[string]oldHead), c: newCarefulState(),
	}
}

// run performs live's appends, in arrival order, as one optimistic
// statement, leaving each answer in r.Out and r.Err. It returns an error marked
// errStoredDuplicate if a message duplicates a stored one.
func (b *batchState) run(ctx context.Context, c *pgx.Conn, live []*request) error {
	b.number(live)
	if err := b.exec(ctx, c); err != nil {
		return err
	}
	for i, r := range live {
		row := b.rowOf[i]
		room := b.rows.room[row]
		h, ok := b.heads[room]
		if !ok {
			r.Out, r.Err = result{}, fmt.Errorf("append to room %q: %w", room, store.ErrRoomNotFound)
			continue
		}
		r.Out, r.Err = result{dup: b.isDup[i], msg: store.Message{
			Room: room, Seq: h.seq + uint64(b.rows.seq[row]), Sender: b.rows.sender[row],
			Body: b.rows.body[row], SentAt: h.at, ClientMsgID: b.rows.id[row], Mentions: b.ments[row],
		}}, nil
	}
	return nil
}

// number lists the batch's rooms, numbers each room's new messages in
// arrival order and points every request at its row: its own, or that of
// the earlier message in the batch it duplicates.
func (b *batchState) number(live []*request) {
	clear(b.names)
	clear(b.counts)
	clear(b.first)
	b.names, b.ns, b.rowOf, b.isDup = b.names[:0], b.ns[:0], b.rowOf[:0], b.isDup[:0]
	b.rows.reset()
	clear(b.ments)
	b.ments = b.ments[:0]
	b.rc.reset()
	for _, r := range live {
		m := r.In
		if m.ClientMsgID != "" {
			key := dedupKey{m.Room, m.Sender, m.ClientMsgID}
			if row, ok := b.first[key]; ok {
				b.rowOf, b.isDup = append(b.rowOf, row), append(b.isDup, true)
				continue
			}
			b.first[key] = len(b.rows.room)
		}
		if b.counts[m.Room] == 0 {
			b.names = append(b.names, m.Room)
		}
		b.counts[m.Room]++
		b.rowOf, b.isDup = append(b.rowOf, len(b.rows.room)), append(b.isDup, false)
		b.rows.room = append(b.rows.room, m.Room)
		b.rows.seq = append(b.rows.seq, b.counts[m.Room])
		b.rows.sender = append(b.rows.sender, m.Sender)
		b.rows.body = append(b.rows.body, m.Body)
		b.rows.id = append(b.rows.id, m.ClientMsgID)
		var ments []string
		if len(m.Mentions) > 0 && (m.Kind == store.KindMessage || m.Kind == store.KindEdit) {
			ments = slices.Clone(m.Mentions)
		}
		b.ments = append(b.ments, ments)
		b.rows.mentions = append(b.rows.mentions, sqlstore.EncodeMentions(ments))
		b.rc.add(m.Room, m.Sender, b.counts[m.Room], ments)
	}
	slices.Sort(b.names) // tidiness only: the lock order is the statement's ORDER BY
	for _, name := range b.names {
		b.ns = append(b.ns, b.counts[name])
	}
}

// exec runs appendSQL and reads the old heads.
func (b *batchState) exec(ctx context.Context, c *pgx.Conn) error {
	r := &b.rows
	rc := &b.rc
	rc.perRow(r.room, r.sender)
	rows, err := c.Query(ctx, appendSQL, b.names, b.ns, r.room, r.seq, r.sender, r.body, r.id, r.mentions,
		rc.sRoom, rc.sSender, rc.sN, rc.sLast, rc.mRoom, rc.mOrd, rc.mUser, rc.rowN, rc.rowK)
	if err != nil {
		return b.execError(err)
	}
	defer rows.Close()
	clear(b.heads)
	for rows.Next() {
		var name string
		var seq int64
		var at time.Time
		if err := rows.Scan(&name, &seq, &at); err != nil {
			return b.execError(err)
		}
		b.heads[name] = oldHead{seq: uint64(seq), at: at.UTC()}
	}
	// Err reads up to ReadyForQuery, PostgreSQL's answer after COMMIT.
	if err := rows.Err(); err != nil {
		return b.execError(err)
	}
	return nil
}

func (b *batchState) execError(err error) error {
	err = fmt.Errorf("append %d messages: %w", len(b.rows.room), err)
	switch {
	case isUniqueViolation(err, uniqueClientMsgID):
		return mark(err, errStoredDuplicate)
	case pgconn.SafeToRetry(err): // failed before anything was sent
		return mark(err, errBeforeCommit)
	}
	return err
}
