package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"strings"

	"github.com/parleychat/parley/server/internal/store"
	"github.com/parleychat/parley/server/internal/store/internal/sqlstore"
)

// Read state: how the counts avoid a scan of the log is sqlstore's
// readstate.go. The writer keeps the counters as it appends (the senders'
// counts in memory, written to room_senders about once a second per room:
// senders.go; mention rows for the rare messages that mention someone); a
// marker's ordinals are worked out on the read pool, so the writer only
// upserts the marker rows.

func prepareReadState(p func(string) *sql.Stmt, st *statements, maxBatch int) {
	for n := 1; n <= min(maxBatch, maxInsertRows); n *= 2 {
		st.upsSenders[n] = p(upsertSendersSQL(n))
	}
	st.selSenders = p(`SELECT k.value ->> 'r', k.value ->> 's', rs.msgs FROM json_each(?) AS k
		JOIN room_senders rs ON rs.room = k.value ->> 'r' AND rs.sender = k.value ->> 's'`)
	st.clearUncounted = p("UPDATE rooms SET uncounted_from = 0 WHERE name IN (SELECT value FROM json_each(?))")
	st.insMentions = p(`INSERT OR IGNORE INTO mentions (room, seq, user)
		SELECT value ->> 'r', value ->> 's', value ->> 'u' FROM json_each(?)`)
	st.delMentions = p("DELETE FROM mentions WHERE room = ? AND seq = ?")
	// Retention removes a prefix of the room's seqs: the newest ord it
	// removes is the ord of the newest row in the step's range.
	st.updPrunedOrd = p(`UPDATE rooms SET pruned_ord = max(pruned_ord, coalesce(
		(SELECT ord FROM messages WHERE room = ?1 AND seq > ?2 AND seq <= ?3 ORDER BY seq DESC LIMIT 1), 0))
		WHERE name = ?1`)
	st.updPrunedSenders = p(`UPDATE room_senders SET pruned = pruned + p.n
		FROM (SELECT sender, count(*) AS n FROM messages WHERE room = ?1 AND seq > ?2 AND seq <= ?3 AND kind = 0 GROUP BY sender) AS p
		WHERE room_senders.room = ?1 AND room_senders.sender = p.sender`)
	st.delPrunedMentions = p("DELETE FROM mentions WHERE room = ? AND seq > ? AND seq <= ?")
	// A marker moves only forward: the upsert leaves a row whose seq is
	// not below the new one as it is, and RETURNING names only the rows
	// it wrote.
	st.upsMarkers = p(`INSERT INTO read_markers (room, user, seq, ord, own, read_at)
		SELECT value ->> 'r', value ->> 'u', value ->> 's', value ->> 'o', value ->> 'w', ?2 FROM json_each(?1) WHERE true
		ON CONFLICT (room, user) DO UPDATE SET seq = excluded.seq, ord = excluded.ord, own = excluded.own, read_at = excluded.read_at
		WHERE excluded.seq > read_markers.seq
		RETURNING room, user, seq, read_at`)
	st.selMarkers = p(`SELECT mk.room, mk.user, mk.seq, mk.read_at FROM json_each(?) AS k
		JOIN read_markers mk ON mk.room = k.value ->> 'r' AND mk.user = k.value ->> 'u'`)
}

// upsertSendersSQL returns an upsert of rows (room, sender, n, last)
// into room_senders: a flush of the ledger (senders.go). Bound
// parameters, not JSON: a flush may write thousands of rows.
func upsertSendersSQL(rows int) string {
	var sb strings.Builder
	sb.WriteString("INSERT INTO room_senders (room, sender, msgs, last_seq) VALUES ")
	writeValueRows(&sb, rows, 4)
	sb.WriteString(" ON CONFLICT (room, sender) DO UPDATE SET msgs = msgs + excluded.msgs, last_seq = excluded.last_seq")
	return sb.String()
}

// readCounters is what a batch adds to the mention rows: those of the
// messages it stored or whose mentions an edit or delete replaced. (The
// senders' counts are senders.go's.)
type readCounters struct {
	mentions map[seqKey][]string // the users to give a row, by message
}

func newReadCounters() readCounters {
	return readCounters{mentions: make(map[seqKey][]string)}
}

func (rc *readCounters) reset() {
	clear(rc.mentions)
}

// message notes the mentions of a message the batch stores.
func (rc *readCounters) message(m store.Message) {
	if users := sqlstore.MentionedUsers(m.Sender, m.Mentions); len(users) > 0 {
		rc.mentions[seqKey{m.Room, m.Seq}] = users
	}
}

// replaceMentions makes users (by sender) the mentions of room's message
// seq: an edit's, or none for a delete. stored says that the message was
// stored before the batch, so its rows in the table go now.
func (rc *readCounters) replaceMentions(ctx context.Context, st *statements, room string, seq uint64, sender string, users []string, stored bool) error {
	if stored {
		if _, err := st.delMentions.ExecContext(ctx, room, int64(seq)); err != nil {
			return fmt.Errorf("replace the mentions of seq %d of room %q: %w", seq, room, err)
		}
	}
	k := seqKey{room, seq}
	if users = sqlstore.MentionedUsers(sender, users); len(users) > 0 {
		rc.mentions[k] = users
	} else {
		delete(rc.mentions, k)
	}
	return nil
}

// writeMentions stores the batch's mention rows, if any, in one
// statement.
func (rc *readCounters) writeMentions(ctx context.Context, st *statements) error {
	if len(rc.mentions) == 0 {
		return nil
	}
	type mention struct {
		Room string `json:"r"`
		Seq  uint64 `json:"s"`
		User string `json:"u"`
	}
	var ms []mention
	for k, users := range rc.mentions {
		for _, u := range users {
			ms = append(ms, mention{k.room, k.seq, u})
		}
	}
	if err := rc.exec(ctx, st.insMentions, ms); err != nil {
		return fmt.Errorf("store mentions: %w", err)
	}
	return nil
}

// exec runs stmt with v as its one JSON argument, if v is not empty.
func (rc *readCounters) exec(ctx context.Context, stmt *sql.Stmt, v any) error {
	b, err := json.Marshal(v)
	if err != nil || string(b) == "[]" {
		return err
	}
	_, err = stmt.ExecContext(ctx, string(b))
	return err
}

// markerRow is a marker to move, with its ordinals (sqlstore/readstate.go).
type markerRow struct {
	Room string `json:"r"`
	User string `json:"u"`
	Seq  int64  `json:"s"`
	Ord  int64  `json:"o"`
	Own  int64  `json:"w"`
}

// markerChunk is the most markers one writer request moves: a request is
// part of one transaction with the appends of its batch, and a flood of
// markers must not hold them up for long (docs/performance.md has the
// figures).
const markerChunk = 250

// SetReadMarkers implements store.Store. It works out on the read pool
// which markers move and their ordinals, then hands those to the writer
// in chunks of markerChunk, each committed with whatever appends share
// its batch: a marker is durable once SetReadMarkers returns, and a large
// call spans several transactions (each marker moves in exactly one). A
// call that fails may have moved some of its markers; calling it again
// does no harm.
func (s *Store) SetReadMarkers(ctx context.Context, ms []store.ReadMarker) ([]store.ReadMarker, error) {
	batch := sqlstore.NewMarkerBatch(ms)
	got, moves, err := s.planMarkers(ctx, batch)
	if err != nil {
		return nil, err
	}
	for len(moves) > 0 {
		n := min(len(moves), markerChunk)
		res, err := s.do(ctx, op{markers: moves[:n]})
		if err != nil {
			return nil, err
		}
		for _, m := range res.markers {
			got[sqlstore.MarkerKey{Room: m.Room, User: m.User}] = m
		}
		moves = moves[n:]
	}
	return sqlstore.Answer(ms, got), nil
}

// planMarkersSQL reads, for each marker asked for (a JSON array of
// {r, u, s}) in a room that exists, its seq clamped to the head, the
// stored marker, and if it moves the ordinals at the new seq: the ord of
// the newest entry at or before it (at the head, the room's msgs: most
// markers are set there), and what the user's own messages at or before
// it take: room_senders' msgs, and if the user's newest counted message
// is after it, one less than the sord of their first message after it
// (a walk from the new seq to that message; rows retention took are
// simply not found); also the room's uncounted_from and head, for the
// ledger (planMarkers). The markers' fields are taken out of the JSON
// once, in a materialized CTE: reading them where they are used took
// five extractions a marker, a third of the read's time.
const planMarkersSQL = `WITH k AS MATERIALIZED (SELECT value ->> 'r' AS r, value ->> 'u' AS u, value ->> 's' AS s FROM json_each(?))
	SELECT c.r, c.u, c.s, c.old, c.at,
		CASE WHEN c.s <= c.old THEN NULL WHEN c.s = c.head THEN c.msgs
			ELSE coalesce((SELECT m.ord FROM messages m WHERE m.room = c.r AND m.seq <= c.s ORDER BY m.seq DESC LIMIT 1), 0) END,
		coalesce(rs.msgs, 0),
		CASE WHEN c.s > c.old AND rs.last_seq > c.s THEN (SELECT m.sord - 1 FROM messages m
			WHERE m.room = c.r AND m.seq > c.s AND m.seq <= rs.last_seq AND m.sender = c.u AND m.kind = 0 ORDER BY m.seq LIMIT 1) END,
		c.uf, c.head
	FROM (SELECT k.r AS r, k.u AS u, min(k.s, rm.last_seq) AS s,
			rm.last_seq AS head, rm.msgs AS msgs, rm.uncounted_from AS uf, coalesce(mk.seq, 0) AS old, coalesce(mk.read_at, 0) AS at
		FROM k
		JOIN rooms rm ON rm.name = k.r
		LEFT JOIN read_markers mk ON mk.room = k.r AND mk.user = k.u) AS c
	LEFT JOIN room_senders rs ON rs.room = c.r AND rs.sender = c.u`

// planMarkers returns the markers of batch that stay as they are (by key;
// a marker never set has seq 0), and those that move. Markers of unknown
// rooms are in neither.
func (s *Store) planMarkers(ctx context.Context, batch *sqlstore.MarkerBatch) (_ map[sqlstore.MarkerKey]store.ReadMarker, _ []markerRow, err error) {
	if err := s.gate.Enter(); err != nil {
		return nil, nil, err
	}
	defer s.exit(&err)
	in := make([]markerRow, len(batch.Keys))
	for i, k := range batch.Keys {
		in[i] = markerRow{Room: k.Room, User: k.User, Seq: sqlstore.ClampSeq(batch.Seqs[i])}
	}
	list, err := json.Marshal(in)
	if err != nil {
		return nil, nil, fmt.Errorf("sqlite: encode read markers: %w", err)
	}
	type plan struct {
		got   map[sqlstore.MarkerKey]store.ReadMarker
		moves []markerRow
	}
	p, err := readAgain(ctx, func() (plan, error) {
		got, moves, err := s.readMarkerPlan(ctx, string(list), len(in))
		return plan{got, moves}, err
	})
	return p.got, p.moves, err
}

// errLedgerAhead means that a read's snapshot is not the ledger's
// (ledger.count): the read is done again.
var errLedgerAhead = errors.New("sqlite: the senders' counts in memory do not match the read's snapshot")

// ledgerReads bounds how many times readAgain reads. A snapshot and the
// ledger differ only while the writer takes a commit in (microseconds)
// or when a flush committed during the read, so the next read nearly
// always matches; reads that keep missing mean a bug, not bad luck. The
// bound counts reads, not time: under load one read may wait long for
// the read pool, and a read that missed once must still be read again
// (a bound of one second did not, and a join storm beside 5,000 marks a
// second got INTERNAL for it).
const ledgerReads = 1000

// readAgain runs read until its snapshot and the ledger match, at most
// ledgerReads times, or until ctx ends.
func readAgain[T any](ctx context.Context, read func() (T, error)) (T, error) {
	for n := 1; ; n++ {
		v, err := read()
		if !errors.Is(err, errLedgerAhead) || n == ledgerReads {
			return v, err
		}
		if err := ctx.Err(); err != nil {
			return v, err
		}
		runtime.Gosched()
	}
}

// readMarkerPlan runs planMarkersSQL once.
func (s *Store) readMarkerPlan(ctx context.Context, list string, n int) (map[sqlstore.MarkerKey]store.ReadMarker, []markerRow, error) {
	rows, err := s.reads.query(ctx, planMarkersSQL, list)
	if err != nil {
		return nil, nil, fmt.Errorf("sqlite: read markers: %w", err)
	}
	defer rows.Close()
	got := make(map[sqlstore.MarkerKey]store.ReadMarker, n)
	var moves []markerRow
	for rows.Next() {
		var m markerRow
		var old, at, counted, uf, head int64
		var ord, walked sql.NullInt64
		if err := rows.Scan(&m.Room, &m.User, &m.Seq, &old, &at, &ord, &counted, &walked, &uf, &head); err != nil {
			return nil, nil, fmt.Errorf("sqlite: read markers: %w", err)
		}
		if m.Seq <= old {
			got[sqlstore.MarkerKey{Room: m.Room, User: m.User}] = store.ReadMarker{Room: m.Room, User: m.User, Seq: uint64(old), ReadAt: fromNanos(at)}
			continue
		}
		m.Ord, m.Own = ord.Int64, walked.Int64
		if !walked.Valid {
			// Every counted message of the user is at or before the new
			// seq (or was pruned): add the uncounted ones that are too.
			more, ok := s.counts.count(m.Room, m.User, uint64(uf), uint64(head), uint64(m.Seq))
			if !ok {
				return nil, nil, errLedgerAhead
			}
			m.Own = counted + more
		}
		moves = append(moves, m)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("sqlite: read markers: %w", err)
	}
	return got, moves, nil
}

// setMarkers moves a chunk of markers in the writer's transaction and
// answers with them as they are after: those another call moved further
// meanwhile are read back.
func (b *batchState) setMarkers(ctx context.Context, st *statements, req *request) error {
	list, err := json.Marshal(req.In.markers)
	if err != nil {
		return fmt.Errorf("encode read markers: %w", err)
	}
	rows, err := st.upsMarkers.QueryContext(ctx, string(list), b.now)
	if err != nil {
		return fmt.Errorf("move read markers: %w", err)
	}
	out, err := sqlstore.Collect(rows, make([]store.ReadMarker, 0, len(req.In.markers)), scanMarker)
	rows.Close()
	if err != nil {
		return fmt.Errorf("move read markers: %w", err)
	}
	if len(out) < len(req.In.markers) {
		if out, err = b.readMarkersBack(ctx, st, req.In.markers, out); err != nil {
			return err
		}
	}
	req.Out.markers = out
	return nil
}

// readMarkersBack adds to out the markers of ms that the upsert left as
// they were.
func (b *batchState) readMarkersBack(ctx context.Context, st *statements, ms []markerRow, out []store.ReadMarker) ([]store.ReadMarker, error) {
	moved := make(map[sqlstore.MarkerKey]bool, len(out))
	for _, m := range out {
		moved[sqlstore.MarkerKey{Room: m.Room, User: m.User}] = true
	}
	var rest []markerRow
	for _, m := range ms {
		if !moved[sqlstore.MarkerKey{Room: m.Room, User: m.User}] {
			rest = append(rest, m)
		}
	}
	list, err := json.Marshal(rest)
	if err != nil {
		return nil, fmt.Errorf("encode read markers: %w", err)
	}
	rows, err := st.selMarkers.QueryContext(ctx, string(list))
	if err != nil {
		return nil, fmt.Errorf("read markers back: %w", err)
	}
	defer rows.Close()
	return sqlstore.Collect(rows, out, scanMarker)
}

func scanMarker(row sqlstore.Row) (store.ReadMarker, error) {
	var m store.ReadMarker
	var seq, at int64
	err := row.Scan(&m.Room, &m.User, &seq, &at)
	m.Seq, m.ReadAt = uint64(seq), fromNanos(at)
	return m, err
}

// readStateColumns is what a room's row needs beside it for user ?1's read
// state (sqlstore.ReadCounts): the marker, the room's and the user's
// counters (with uncounted_from, for the ledger: roomStateScanner), and
// the two ranges after the marker that are counted, both over small
// indexes: the deleted messages and the user's mentions (not needed in a
// direct room, where every unread message counts).
var (
	readStateColumns = fmt.Sprintf(`, coalesce(mk.seq, 0), coalesce(mk.ord, 0), coalesce(mk.own, 0), r.msgs, r.pruned_ord,
		coalesce(rs.msgs, 0), coalesce(rs.pruned, 0), r.uncounted_from,
		(SELECT count(*) FROM messages d WHERE d.room = r.name AND d.deleted = 1 AND d.seq > coalesce(mk.seq, 0) AND d.sender <> ?1),
		CASE WHEN r.visibility = %d THEN 0 ELSE
			(SELECT count(*) FROM mentions x WHERE x.room = r.name AND x.user = ?1 AND x.seq > coalesce(mk.seq, 0)) END`, store.Direct)
	roomStateColumns = "r.name, r.visibility, r.created_by, r.created_at, r.last_seq, r.last_message_at" + readStateColumns
)

const readStateJoins = ` FROM rooms r
	LEFT JOIN read_markers mk ON mk.room = r.name AND mk.user = ?1
	LEFT JOIN room_senders rs ON rs.room = r.name AND rs.sender = ?1`

// The read-state queries, built once: user ?1's state in room ?2, and a
// page of the rooms after ?2 that ?1 may see (public: ?3), at most ?4.
var (
	readStateSQL    = "SELECT " + roomStateColumns + readStateJoins + " WHERE r.name = ?2"
	visibleRoomsSQL = "SELECT " + roomStateColumns + readStateJoins + ` WHERE r.name > ?2
		AND (r.visibility = ?3 OR EXISTS (SELECT 1 FROM members WHERE members.room = r.name AND members.user = ?1))
		ORDER BY r.name LIMIT ?4`
)

// roomStateScanner returns a scanner of rooms with user's read state,
// which adds the user's uncounted messages from the ledger; it fails with
// errLedgerAhead if the ledger cannot tell them for the row's snapshot.
func (s *Store) roomStateScanner(user string) func(row sqlstore.Row) (store.Room, error) {
	return func(row sqlstore.Row) (store.Room, error) {
		var r store.Room
		var vis int
		var created, seq, last, mkSeq, uf int64
		var c sqlstore.ReadCounts
		if err := row.Scan(&r.Name, &vis, &r.CreatedBy, &created, &seq, &last, &mkSeq, &c.MarkerOrd, &c.MarkerOwn,
			&c.RoomMsgs, &c.PrunedOrd, &c.OwnMsgs, &c.OwnPruned, &uf, &c.DeletedAfter, &c.MentionsAfter); err != nil {
			return store.Room{}, err
		}
		r.Visibility, r.CreatedAt = store.Visibility(vis), fromNanos(created)
		r.LastSeq, r.LastMessageAt = uint64(seq), fromNanos(last)
		more, ok := s.counts.count(r.Name, user, uint64(uf), r.LastSeq, r.LastSeq)
		if !ok {
			return store.Room{}, errLedgerAhead
		}
		c.OwnMsgs += more
		c.Direct, c.Head, c.MarkerSeq = r.Visibility == store.Direct, r.LastSeq, uint64(mkSeq)
		r.Read = c.State()
		return r, nil
	}
}

// ReadState implements store.Store: one statement, so the counts are of
// one snapshot.
func (s *Store) ReadState(ctx context.Context, user, room string) (_ store.ReadState, err error) {
	if err := s.gate.Enter(); err != nil {
		return store.ReadState{}, err
	}
	defer s.exit(&err)
	scan := s.roomStateScanner(user)
	r, err := readAgain(ctx, func() (store.Room, error) {
		return scan(s.reads.queryRow(ctx, readStateSQL, user, room))
	})
	return r.Read, sqlstore.RoomErr("sqlite", room, err)
}

// VisibleRooms implements store.Store.
func (s *Store) VisibleRooms(ctx context.Context, user, afterName string, limit int) (_ []store.Room, err error) {
	if err := s.gate.Enter(); err != nil {
		return nil, err
	}
	defer s.exit(&err)
	if limit <= 0 {
		return nil, nil
	}
	return readAgain(ctx, func() ([]store.Room, error) { return s.visibleRooms(ctx, user, afterName, limit) })
}

func (s *Store) visibleRooms(ctx context.Context, user, afterName string, limit int) ([]store.Room, error) {
	rows, err := s.reads.query(ctx, visibleRoomsSQL, user, afterName, int(store.Public), limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list rooms for %q: %w", user, err)
	}
	defer rows.Close()
	out, err := sqlstore.Collect(rows, nil, s.roomStateScanner(user))
	if err != nil && !errors.Is(err, errLedgerAhead) {
		return nil, fmt.Errorf("sqlite: list rooms for %q: %w", user, err)
	}
	return out, err
}

// ReadMarkers implements store.Store.
func (s *Store) ReadMarkers(ctx context.Context, room string, limit int) (_ []store.ReadMarker, err error) {
	if err := s.gate.Enter(); err != nil {
		return nil, err
	}
	defer s.exit(&err)
	// One read for the room and its markers: a row of NULLs for a room
	// without any, none for an unknown room. (Every join of a small room
	// reads its receipts, so a storm of joins makes many of these.)
	rows, err := s.reads.query(ctx, `SELECT m.user, m.seq, m.read_at FROM rooms r
		LEFT JOIN read_markers m ON m.room = r.name WHERE r.name = ? ORDER BY m.user LIMIT ?`, room, max(limit, 1))
	if err != nil {
		return nil, fmt.Errorf("sqlite: read markers of %q: %w", room, err)
	}
	defer rows.Close()
	var out []store.ReadMarker
	found := false
	for rows.Next() {
		found = true
		var user sql.NullString
		var seq, at sql.NullInt64
		if err := rows.Scan(&user, &seq, &at); err != nil {
			return nil, fmt.Errorf("sqlite: read markers of %q: %w", room, err)
		}
		if user.Valid && limit > 0 {
			out = append(out, store.ReadMarker{Room: room, User: user.String, Seq: uint64(seq.Int64), ReadAt: fromNanos(at.Int64)})
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: read markers of %q: %w", room, err)
	}
	if !found {
		return nil, sqlstore.RoomErr("sqlite", room, sql.ErrNoRows)
	}
	return out, nil
}
