package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/parleychat/parley/server/internal/store"
	"github.com/parleychat/parley/server/internal/store/internal/sqlstore"
)

// Read state: how the counts avoid a scan of the log is sqlstore's
// readstate.go. An optimistic batch keeps the counters in its one
// statement (appendSQL); a careful one adds three statements to its
// second round trip. Markers move in one statement of their own, beside
// the writer: a marker row locks nothing that appends wait for.

type senderKey struct{ room, sender string }

// optimisticCounters is what an optimistic batch adds to the counters,
// column by column for appendSQL: per (room, sender) the messages and the
// newest one's ordinal in the batch, and a mention row for each message
// and user it mentions (but its sender), by ordinal.
type optimisticCounters struct {
	at             map[senderKey]int
	sRoom, sSender []string
	sN, sLast      []int64
	mRoom, mUser   []string
	mOrd           []int64
	rowK           []int64 // each row's place among its sender's in the batch
	rowN           []int64 // how many of them there are
}

func (c *optimisticCounters) reset() {
	if c.at == nil {
		c.at = make(map[senderKey]int)
	}
	clear(c.at)
	clear(c.sRoom)
	clear(c.sSender)
	clear(c.mRoom)
	clear(c.mUser)
	c.sRoom, c.sSender, c.sN, c.sLast = c.sRoom[:0], c.sSender[:0], c.sN[:0], c.sLast[:0]
	c.mRoom, c.mUser, c.mOrd = c.mRoom[:0], c.mUser[:0], c.mOrd[:0]
	c.rowK, c.rowN = c.rowK[:0], c.rowN[:0]
}

// add counts a message of the batch, the ord-th new one of its room.
func (c *optimisticCounters) add(room, sender string, ord int64, mentions []string) {
	k := senderKey{room, sender}
	i, ok := c.at[k]
	if !ok {
		i = len(c.sRoom)
		c.at[k] = i
		c.sRoom, c.sSender, c.sN, c.sLast = append(c.sRoom, room), append(c.sSender, sender), append(c.sN, 0), append(c.sLast, 0)
	}
	c.sN[i]++
	c.sLast[i] = ord
	c.rowK = append(c.rowK, c.sN[i])
	for _, u := range sqlstore.MentionedUsers(sender, mentions) {
		c.mRoom, c.mOrd, c.mUser = append(c.mRoom, room), append(c.mOrd, ord), append(c.mUser, u)
	}
}

// perRow fills rowN, once every row was added: for each row (rooms and
// senders, in row order), how many messages its sender has in the batch.
func (c *optimisticCounters) perRow(rooms, senders []string) {
	for i := range rooms {
		c.rowN = append(c.rowN, c.sN[c.at[senderKey{rooms[i], senders[i]}]])
	}
}

// Statements of a careful batch's second round trip that keep the
// counters; counterWrites is how many queueWrites queues.
const (
	upsSendersSQL = `INSERT INTO room_senders (room, sender, msgs, last_seq)
		SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[])
		ON CONFLICT (room, sender) DO UPDATE SET msgs = room_senders.msgs + excluded.msgs, last_seq = excluded.last_seq`
	delMentionsSQL = `DELETE FROM mentions x USING unnest($1::text[], $2::bigint[]) AS u(room, seq)
		WHERE x.room = u.room AND x.seq = u.seq`
	insMentionsSQL = `INSERT INTO mentions (room, seq, "user")
		SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[]) ON CONFLICT DO NOTHING`
	counterWrites = 3
)

// sendersSQL reads the counts of the senders of a careful batch, once
// their rooms are locked.
const sendersSQL = `SELECT rs.room, rs.sender, rs.msgs FROM unnest($1::text[], $2::text[]) AS k(room, sender)
	JOIN room_senders rs ON rs.room = k.room AND rs.sender = k.sender`

// carefulCounters is what a careful batch adds to the counters.
type carefulCounters struct {
	senders  map[senderKey]*senderCount
	stored   map[senderKey]int64 // room_senders' msgs before the batch
	keys     columns             // room, sender: the batch's senders, to read
	mentions map[seqKey][]string // the users to give a row, by message
	replaced []seqKey            // messages stored before the batch whose rows go
}

type senderCount struct{ n, last int64 }

func newCarefulCounters() carefulCounters {
	return carefulCounters{senders: make(map[senderKey]*senderCount), stored: make(map[senderKey]int64), mentions: make(map[seqKey][]string)}
}

// reset lists the senders of live's messages, for queueReads.
func (c *carefulCounters) reset(live []*request) {
	clear(c.senders)
	clear(c.stored)
	clear(c.mentions)
	c.replaced = c.replaced[:0]
	c.keys.reset()
	for _, r := range live {
		if r.In.Kind == store.KindMessage {
			c.keys.room, c.keys.sender = append(c.keys.room, r.In.Room), append(c.keys.sender, r.In.Sender)
		}
	}
}

// queueReads queues the read of the senders' counts (readReads reads it).
func (c *carefulCounters) queueReads(q *pgx.Batch) {
	q.Queue(sendersSQL, c.keys.room, c.keys.sender)
}

func (c *carefulCounters) readReads(br pgx.BatchResults) error {
	rows, err := br.Query()
	if err != nil {
		return fmt.Errorf("read senders' counts: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var k senderKey
		var n int64
		if err := rows.Scan(&k.room, &k.sender, &n); err != nil {
			return fmt.Errorf("read senders' counts: %w", err)
		}
		c.stored[k] = n
	}
	return rows.Err()
}

// apply counts msg, an entry the batch stores, and returns its sord (0
// but for a message); t is its target, for an edit or a delete.
func (c *carefulCounters) apply(msg store.Message, t *target) int64 {
	switch msg.Kind {
	case store.KindMessage:
		k := senderKey{msg.Room, msg.Sender}
		sc := c.senders[k]
		if sc == nil {
			sc = &senderCount{}
			c.senders[k] = sc
		}
		sc.n++
		sc.last = int64(msg.Seq)
		c.replace(msg.Room, msg.Seq, msg.Sender, msg.Mentions, false)
		return c.stored[k] + sc.n
	case store.KindEdit:
		c.replace(msg.Room, msg.TargetSeq, msg.Sender, msg.Mentions, t.row < 0)
	case store.KindDelete:
		c.replace(msg.Room, msg.TargetSeq, "", nil, t.row < 0)
	}
	return 0
}

// replace makes users (by sender) the mentions of room's message seq;
// stored says that it was stored before the batch, so its rows go first.
func (c *carefulCounters) replace(room string, seq uint64, sender string, users []string, stored bool) {
	k := seqKey{room, seq}
	if stored {
		c.replaced = append(c.replaced, k)
	}
	if users = sqlstore.MentionedUsers(sender, users); len(users) > 0 {
		c.mentions[k] = users
	} else {
		delete(c.mentions, k)
	}
}

// queueWrites queues counterWrites statements: the senders' counts, the
// removal of replaced mention rows, then the new rows.
func (c *carefulCounters) queueWrites(q *pgx.Batch) {
	var s columns // room, sender, seq (n), target (last)
	for k, sc := range c.senders {
		s.room, s.sender, s.seq, s.target = append(s.room, k.room), append(s.sender, k.sender), append(s.seq, sc.n), append(s.target, sc.last)
	}
	var gone, add columns // room, seq; add: id (the user)
	for _, k := range c.replaced {
		gone.room, gone.seq = append(gone.room, k.room), append(gone.seq, int64(k.seq))
	}
	for k, users := range c.mentions {
		for _, u := range users {
			add.room, add.seq, add.id = append(add.room, k.room), append(add.seq, int64(k.seq)), append(add.id, u)
		}
	}
	q.Queue(upsSendersSQL, s.room, s.sender, s.seq, s.target)
	q.Queue(delMentionsSQL, gone.room, gone.seq)
	q.Queue(insMentionsSQL, add.room, add.seq, add.id)
}

// setMarkersSQL moves markers in one statement: for each marker asked for
// in a room that exists it clamps the seq to the head, reads the stored
// marker, and for those that move works out the ordinals at the new seq
// (the ord of the newest entry at or before it, at the head, where most
// markers are set, the room's msgs; the user's messages at or before it,
// all of them unless the user wrote after it, else one less than the sord
// of the user's first message after it) and upserts the
// row forward only. It returns every marker as it is after: those it
// wrote, and the others as the statement found them.
const setMarkersSQL = `WITH k AS (
		SELECT k.room, k.usr, least(k.seq, r.last_seq) AS seq, r.last_seq AS head, r.msgs, mk.seq AS old_seq, mk.read_at AS old_at
		FROM unnest($1::text[], $2::text[], $3::bigint[]) AS k(room, usr, seq)
		JOIN rooms r ON r.name = k.room
		LEFT JOIN read_markers mk ON mk.room = k.room AND mk."user" = k.usr
	), moved AS (
		INSERT INTO read_markers (room, "user", seq, ord, own, read_at)
		SELECT k.room, k.usr, k.seq,
			CASE WHEN k.seq = k.head THEN k.msgs
				ELSE coalesce((SELECT m.ord FROM messages m WHERE m.room = k.room AND m.seq <= k.seq ORDER BY m.seq DESC LIMIT 1), 0) END,
			coalesce((SELECT CASE WHEN rs.last_seq <= k.seq THEN rs.msgs ELSE coalesce((SELECT m.sord - 1 FROM messages m
				WHERE m.room = k.room AND m.seq > k.seq AND m.seq <= rs.last_seq AND m.sender = k.usr AND m.kind = 0 ORDER BY m.seq LIMIT 1), rs.msgs) END
				FROM room_senders rs WHERE rs.room = k.room AND rs.sender = k.usr), 0),
			statement_timestamp()
		FROM k WHERE k.seq > coalesce(k.old_seq, 0)
		ON CONFLICT (room, "user") DO UPDATE SET seq = excluded.seq, ord = excluded.ord, own = excluded.own, read_at = excluded.read_at
		WHERE read_markers.seq < excluded.seq
		RETURNING room, "user", seq, read_at
	)
	SELECT k.room, k.usr, coalesce(moved.seq, k.old_seq, 0), coalesce(moved.read_at, k.old_at)
	FROM k LEFT JOIN moved ON moved.room = k.room AND moved."user" = k.usr`

// SetReadMarkers implements store.Store: one statement, one transaction,
// beside the writer. A marker that another call moved further while this
// one ran is answered as this one found it. A marker whose room or user
// PostgreSQL cannot store as text names no room and is left out.
func (s *Store) SetReadMarkers(ctx context.Context, ms []store.ReadMarker) (out []store.ReadMarker, err error) {
	batch := sqlstore.NewMarkerBatch(ms)
	var rooms, users []string
	var seqs []int64
	for i, k := range batch.Keys {
		if storable(k.Room) && storable(k.User) {
			rooms, users, seqs = append(rooms, k.Room), append(users, k.User), append(seqs, sqlstore.ClampSeq(batch.Seqs[i]))
		}
	}
	err = s.call(ctx, func(ctx context.Context) error {
		rows, err := s.pool.Query(ctx, setMarkersSQL, rooms, users, seqs)
		if err != nil {
			return fmt.Errorf("postgres: move read markers: %w", err)
		}
		defer rows.Close()
		got := make(map[sqlstore.MarkerKey]store.ReadMarker, len(rooms))
		for rows.Next() {
			m, err := scanMarker(rows)
			if err != nil {
				return fmt.Errorf("postgres: move read markers: %w", err)
			}
			got[sqlstore.MarkerKey{Room: m.Room, User: m.User}] = m
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("postgres: move read markers: %w", err)
		}
		out = sqlstore.Answer(ms, got)
		return nil
	})
	return out, err
}

func scanMarker(row sqlstore.Row) (store.ReadMarker, error) {
	var m store.ReadMarker
	var seq int64
	var at *time.Time
	if err := row.Scan(&m.Room, &m.User, &seq, &at); err != nil {
		return m, err
	}
	m.Seq = uint64(seq)
	if at != nil {
		m.ReadAt = at.UTC()
	}
	return m, nil
}

// roomStateSQL is a room's row and what user $1's read state there needs
// beside it (sqlstore.ReadCounts): the marker, the room's and the user's
// counters, and the two ranges after the marker that are counted, both
// over small indexes: the deleted messages and the user's mentions (not
// needed in a direct room, where every unread message counts).
var roomStateSQL = fmt.Sprintf(`SELECT r.name, r.visibility, r.created_by, r.created_at, r.last_seq, r.last_message_at,
		coalesce(mk.seq, 0), coalesce(mk.ord, 0), coalesce(mk.own, 0), r.msgs, r.pruned_ord,
		coalesce(rs.msgs, 0), coalesce(rs.pruned, 0),
		(SELECT count(*) FROM messages d WHERE d.room = r.name AND d.deleted AND d.seq > coalesce(mk.seq, 0) AND d.sender <> $1),
		CASE WHEN r.visibility = %d THEN 0 ELSE
			(SELECT count(*) FROM mentions x WHERE x.room = r.name AND x."user" = $1 AND x.seq > coalesce(mk.seq, 0)) END
	FROM rooms r
	LEFT JOIN read_markers mk ON mk.room = r.name AND mk."user" = $1
	LEFT JOIN room_senders rs ON rs.room = r.name AND rs.sender = $1`, store.Direct)

// scanRoomState scans a room with its reader's read state.
func scanRoomState(row sqlstore.Row) (store.Room, error) {
	var r store.Room
	var vis int32
	var seq, mkSeq int64
	var last *time.Time
	var c sqlstore.ReadCounts
	if err := row.Scan(&r.Name, &vis, &r.CreatedBy, &r.CreatedAt, &seq, &last, &mkSeq, &c.MarkerOrd, &c.MarkerOwn,
		&c.RoomMsgs, &c.PrunedOrd, &c.OwnMsgs, &c.OwnPruned, &c.DeletedAfter, &c.MentionsAfter); err != nil {
		return store.Room{}, err
	}
	r.Visibility, r.CreatedAt, r.LastSeq = store.Visibility(vis), r.CreatedAt.UTC(), uint64(seq)
	if last != nil {
		r.LastMessageAt = last.UTC()
	}
	c.Direct, c.Head, c.MarkerSeq = r.Visibility == store.Direct, r.LastSeq, uint64(mkSeq)
	r.Read = c.State()
	return r, nil
}

// ReadState implements store.Store: one statement, so the counts are of
// one snapshot.
func (s *Store) ReadState(ctx context.Context, user, room string) (rs store.ReadState, err error) {
	err = s.call(ctx, func(ctx context.Context) error {
		r, err := scanRoomState(s.pool.QueryRow(ctx, roomStateSQL+" WHERE r.name = $2", user, room))
		rs = r.Read
		return sqlstore.RoomErr("postgres", room, err)
	})
	return rs, err
}

// VisibleRooms implements store.Store.
func (s *Store) VisibleRooms(ctx context.Context, user, afterName string, limit int) (out []store.Room, err error) {
	err = s.call(ctx, func(ctx context.Context) error {
		if limit <= 0 {
			return nil
		}
		rows, err := s.pool.Query(ctx, roomStateSQL+` WHERE r.name > $2
			AND (r.visibility = $3 OR EXISTS (SELECT 1 FROM members WHERE members.room = r.name AND members."user" = $1))
			ORDER BY r.name LIMIT $4`, user, afterName, int32(store.Public), limit)
		if err != nil {
			return fmt.Errorf("postgres: list rooms for %q: %w", user, err)
		}
		defer rows.Close()
		if out, err = sqlstore.Collect(rows, nil, scanRoomState); err != nil {
			return fmt.Errorf("postgres: list rooms for %q: %w", user, err)
		}
		return nil
	})
	return out, err
}

// ReadMarkers implements store.Store.
func (s *Store) ReadMarkers(ctx context.Context, room string, limit int) (out []store.ReadMarker, err error) {
	err = s.call(ctx, func(ctx context.Context) error {
		if err := s.roomExists(ctx, room); err != nil || limit <= 0 {
			return err
		}
		rows, err := s.pool.Query(ctx, `SELECT room, "user", seq, read_at FROM read_markers WHERE room = $1 ORDER BY "user" LIMIT $2`, room, limit)
		if err != nil {
			return fmt.Errorf("postgres: read markers of %q: %w", room, err)
		}
		defer rows.Close()
		if out, err = sqlstore.Collect(rows, nil, scanMarker); err != nil {
			return fmt.Errorf("postgres: read markers of %q: %w", room, err)
		}
		return nil
	})
	return out, err
}
