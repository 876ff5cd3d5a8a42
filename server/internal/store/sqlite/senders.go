package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/parleychat/parley/server/internal/store"
)

// Per-sender counts without a write per batch.
//
// Read state needs, per (room, sender), how many messages the sender
// appended there (room_senders.msgs), and on every message its sord
// (sqlstore/readstate.go). Issue 17 upserted a room_senders row per room
// and sender in every batch: under many senders one scattered row per
// message, which cost appends 30-60 % more CPU (docs/performance.md, "What
// the counters cost an append"). Now the writer counts the newest
// messages in memory and writes them to room_senders in rounds (five to
// ten seconds after a room's first uncounted message; see flushBudget),
// inside whatever batches run then, so that each sender's row is written
// once a round however many batches appended to it:
//
//   - rooms.uncounted_from is the first seq of the room whose messages
//     room_senders does not count yet, 0 if it counts them all. Every
//     batch that appends to a room sets it (in the heads update it makes
//     anyway); a flush of the room clears it.
//   - The ledger holds, for each room with uncounted messages, each
//     sender's uncounted seqs. A reader on the read pool adds to
//     room_senders' msgs the user's uncounted messages that its snapshot
//     holds (those up to the snapshot's last_seq). The writer updates the
//     ledger after each COMMIT; a reader whose snapshot does not match it
//     (another uncounted_from: a flush since, or a head the ledger has
//     not taken in yet) reads again: see ledger.count.
//   - A message's sord is its sender's count before the batch (the
//     writer's cache of counts, else room_senders plus the ledger) plus
//     its place among the sender's messages in the batch.
//   - After a crash, Open counts each room's messages from its
//     uncounted_from into room_senders (recountSenders): at most about
//     two flushAges of appends. A clean Close writes the ledger first
//     (flushAll).
//   - A prune step flushes its room first: retention subtracts what it
//     deletes from room_senders (pruned), so the rows must be there.
//
// Rejected (measured in docs/performance.md): the room_senders upsert in
// every batch (issue 17's way); an index on (room, sender, seq) to find a
// sender's newest sord and count their messages after a marker through it
// (no table, but still one scattered index entry per message). PostgreSQL
// keeps the upsert: its nodes share the database, and no node's memory
// can hold what the others appended.

// How the writer flushes: in rounds. When the ledger's oldest room has
// waited flushAge, a round starts that writes every room in the ledger at
// that moment, at most flushBudget senders' rows per batch, so that a
// round of many rooms spreads over batches instead of stalling one; rooms
// that get uncounted messages meanwhile wait for the next round. A round
// writes each (room, sender) once however many messages it appended, and
// the rows of many rooms in key order, sharing pages: at a thousand rooms
// of a message a second each, a round every five seconds instead of a
// page written per batch. Five seconds, not one: with 1,000 appenders over
// 100 rooms (100,000 pairs, each sending every few seconds) a round a
// second wrote about a row per message, as the upserts had. What it
// costs: memory (~16 bytes a message, at most maxUncounted) and what
// Open recounts after a crash (ten seconds of appends at most, a fraction
// of a second to count). Past maxUncounted messages in the ledger a round
// starts whatever the age, with eight times the budget.
const (
	defaultFlushAge = 5 * time.Second
	maxUncounted    = 1 << 20
	flushBudget     = 2048
)

// ledger is the uncounted messages of each room, shared by the writer,
// which alone changes it (under mu), and the readers.
type ledger struct {
	mu    sync.Mutex
	rooms map[string]*roomLedger
	// The writer's own bookkeeping, read and changed by it alone.
	queue    []*roomLedger // by age, oldest first; flushed entries are skipped
	msgs     int           // uncounted messages in rooms
	pairs    int           // (room, sender) pairs in rooms
	roundEnd int64         // the round flushes the rooms in the ledger since then; 0: no round
}

// roomLedger is one room's uncounted messages.
type roomLedger struct {
	name    string
	from    uint64              // the room's uncounted_from
	through uint64              // the head up to which seqs holds every message
	since   int64               // unix nanoseconds when from was set
	seqs    map[string][]uint64 // by sender, ascending
	flushed bool
}

func newLedger() *ledger { return &ledger{rooms: make(map[string]*roomLedger)} }

// count returns how many of user's uncounted messages in room a snapshot
// holds whose rooms row has uncountedFrom and head, up to seq upto; ok is
// false if the ledger cannot tell for that snapshot, which must then be
// read again. A snapshot that counts every message (uncountedFrom 0)
// needs nothing from the ledger.
func (l *ledger) count(room, user string, uncountedFrom, head, upto uint64) (n int64, ok bool) {
	if uncountedFrom == 0 {
		return 0, true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.rooms[room]
	if r == nil || r.from != uncountedFrom || r.through < head {
		// Either a flush committed after the snapshot (the ledger no
		// longer has what the snapshot does not count), or a batch did
		// and the writer has not taken it in yet: a moment's matter.
		return 0, false
	}
	seqs := r.seqs[user]
	return int64(sort.Search(len(seqs), func(i int) bool { return seqs[i] > min(head, upto) })), true
}

// pending returns how many of sender's messages in room the ledger holds,
// for the writer.
func (l *ledger) pending(room, sender string) int64 {
	if r := l.rooms[room]; r != nil {
		return int64(len(r.seqs[sender]))
	}
	return 0
}

// from returns the uncounted_from that a batch appending to room, whose
// head before the batch is head, leaves it with: the ledger's, unless the
// batch flushes the room or the room has no ledger yet.
func (l *ledger) from(room string, head uint64, flushing map[string]bool) uint64 {
	if r := l.rooms[room]; r != nil && !flushing[room] {
		return r.from
	}
	return head + 1
}

// dueRooms returns the rooms that a batch at now should flush: those of
// the round (see flushBudget), oldest first, within the budget, and those
// of force (rooms a prune step of the batch deletes from). The round's
// state changes here, before the batch commits: a batch that rolls back
// leaves its rooms at the queue's head for the next one.
func (l *ledger) dueRooms(now int64, flushAge time.Duration, force []string) []*roomLedger {
	var out []*roomLedger
	for _, name := range force {
		if r := l.rooms[name]; r != nil && !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	forced := len(out)
	i := 0
	for i < len(l.queue) && l.queue[i].flushed {
		i++
	}
	if i == len(l.queue) {
		return out
	}
	oldest := l.queue[i].since
	if l.roundEnd != 0 && oldest > l.roundEnd {
		l.roundEnd = 0 // the round is done
	}
	budget := flushBudget
	switch {
	case l.msgs > maxUncounted:
		l.roundEnd, budget = now, 8*flushBudget
	case l.roundEnd == 0 && flushAge >= 0 && now-oldest >= int64(flushAge):
		l.roundEnd = now
	}
	if l.roundEnd == 0 {
		return out
	}
	for _, r := range l.queue[i:] {
		if budget <= 0 || r.since > l.roundEnd {
			break
		}
		if r.flushed || slices.Contains(out[:forced], r) {
			continue
		}
		out = append(out, r)
		budget -= len(r.seqs)
	}
	return out
}

// senderCounts is what a batch does to the counts: the messages it
// appends per (room, sender), and the rooms it flushes.
type senderCounts struct {
	senders  map[senderKey]*senderCount
	keys     []senderKey
	from     map[string]uint64 // the uncounted_from of each room the batch appends to
	flushing map[string]bool
	flush    []*roomLedger
	misses   []senderKey
	args     []any
}

type senderKey struct{ room, sender string }

// senderCount is what a batch appended from one sender to one room.
type senderCount struct {
	base int64 // the sender's messages in the room before the batch
	seqs []uint64
}

func newSenderCounts() senderCounts {
	return senderCounts{senders: make(map[senderKey]*senderCount), from: make(map[string]uint64), flushing: make(map[string]bool)}
}

func (sc *senderCounts) reset() {
	clear(sc.senders)
	clear(sc.from)
	clear(sc.flushing)
	clear(sc.flush)
	sc.flush = sc.flush[:0]
}

// add counts a message of the batch and returns its place among its
// sender's messages to its room in the batch (1, 2, ...).
func (sc *senderCounts) add(room, sender string, seq uint64) int64 {
	k := senderKey{room, sender}
	c := sc.senders[k]
	if c == nil {
		c = &senderCount{}
		sc.senders[k] = c
	}
	c.seqs = append(c.seqs, seq)
	return int64(len(c.seqs))
}

// sord is the sord of the sender's kth message of the batch in room.
func (sc *senderCounts) sord(room, sender string, k int64) int64 {
	return sc.senders[senderKey{room, sender}].base + k
}

// maxCachedCounts bounds the writer's cache of senders' counts, as
// maxKnownHeads the heads.
const maxCachedCounts = 1 << 17

// loadBases gives every sender of the batch its count before it: from the
// writer's cache, else 0 in a room this writer created (all of whose
// senders the cache holds, b.fresh), else room_senders (as this
// transaction sees it, after the batch's flushes) plus the ledger's
// uncounted messages (none for a room the batch flushes).
func (b *batchState) loadBases(ctx context.Context, st *statements) error {
	sc := &b.sc
	sc.misses = sc.misses[:0]
	for k, c := range sc.senders {
		if n, ok := b.counts[k]; ok || b.fresh[k.room] {
			c.base = n
			continue
		}
		c.base = 0
		if !sc.flushing[k.room] {
			c.base = b.ledger.pending(k.room, k.sender)
		}
		sc.misses = append(sc.misses, k)
	}
	if len(sc.misses) == 0 {
		return nil
	}
	type key struct {
		Room   string `json:"r"`
		Sender string `json:"s"`
	}
	keys := make([]key, len(sc.misses))
	for i, k := range sc.misses {
		keys[i] = key{k.room, k.sender}
	}
	list, err := json.Marshal(keys)
	if err != nil {
		return fmt.Errorf("encode senders: %w", err)
	}
	rows, err := st.selSenders.QueryContext(ctx, string(list))
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
		if c := sc.senders[k]; c != nil {
			c.base += n
		}
	}
	return rows.Err()
}

// flushDue writes to room_senders the counts of the rooms due (see
// dueRooms; prune names the rooms the batch's prune steps delete from)
// and clears their uncounted_from, in sender order so that consecutive
// rows share pages. The ledger forgets them once the batch commits.
func (b *batchState) flushDue(ctx context.Context, st *statements, prune []string) error {
	b.sc.flush = b.ledger.dueRooms(b.now, b.flushAge, prune)
	return b.writeFlush(ctx, st)
}

// writeFlush writes the counts of the rooms in b.sc.flush.
func (b *batchState) writeFlush(ctx context.Context, st *statements) error {
	sc := &b.sc
	if len(sc.flush) == 0 {
		return nil
	}
	slices.SortFunc(sc.flush, func(x, y *roomLedger) int { return strings.Compare(x.name, y.name) })
	names := make([]string, len(sc.flush))
	sc.keys = sc.keys[:0]
	for i, r := range sc.flush {
		names[i] = r.name
		sc.flushing[r.name] = true
		for sender := range r.seqs {
			sc.keys = append(sc.keys, senderKey{r.name, sender})
		}
	}
	slices.SortFunc(sc.keys, func(x, y senderKey) int {
		return cmp.Or(strings.Compare(x.room, y.room), strings.Compare(x.sender, y.sender))
	})
	err := execRows(ctx, st.upsSenders, sc.keys, &sc.args, "count the messages of senders", nil, func(args []any, k senderKey) []any {
		seqs := b.ledger.rooms[k.room].seqs[k.sender]
		return append(args, k.room, k.sender, len(seqs), int64(seqs[len(seqs)-1]))
	})
	if err != nil {
		return err
	}
	list, err := json.Marshal(names)
	if err != nil {
		return fmt.Errorf("encode room names: %w", err)
	}
	if _, err := st.clearUncounted.ExecContext(ctx, string(list)); err != nil {
		return fmt.Errorf("mark %d rooms counted: %w", len(names), err)
	}
	return nil
}

// countsCommitted takes a committed batch into the ledger and the cache:
// the rooms it flushed go, its messages join their rooms' (new or kept)
// entries, and every room it appended to is complete up to its new head.
func (b *batchState) countsCommitted() {
	l, sc := b.ledger, &b.sc
	if len(b.counts) > maxCachedCounts || len(b.fresh) > maxCachedCounts {
		b.counts, b.fresh = make(map[senderKey]int64), make(map[string]bool)
	}
	for k, c := range sc.senders {
		b.counts[k] = c.base + int64(len(c.seqs))
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range sc.flush {
		r.flushed = true
		delete(l.rooms, r.name)
		l.msgs -= countSeqs(r)
		l.pairs -= len(r.seqs)
	}
	for name, from := range sc.from {
		r := l.rooms[name]
		if r == nil {
			r = &roomLedger{name: name, from: from, since: b.now, seqs: make(map[string][]uint64)}
			l.rooms[name] = r
			l.queue = append(l.queue, r)
		}
		r.through = b.heads[name].seq
	}
	for k, c := range sc.senders {
		r := l.rooms[k.room]
		if len(r.seqs[k.sender]) == 0 {
			l.pairs++
		}
		r.seqs[k.sender] = append(r.seqs[k.sender], c.seqs...)
		l.msgs += len(c.seqs)
	}
	l.compactQueue()
}

// compactQueue drops the flushed rooms at the queue's head, and all of
// them once they are most of it.
func (l *ledger) compactQueue() {
	i := 0
	for i < len(l.queue) && l.queue[i].flushed {
		i++
	}
	l.queue = l.queue[i:]
	if len(l.queue) > 2*len(l.rooms)+64 {
		l.queue = slices.DeleteFunc(slices.Clone(l.queue), func(r *roomLedger) bool { return r.flushed })
	}
}

func countSeqs(r *roomLedger) int {
	n := 0
	for _, s := range r.seqs {
		n += len(s)
	}
	return n
}

// flushAll writes the counts of every room in the ledger, as the writer
// stops, so that the next Open has nothing to count. If it fails, that
// Open counts them (recountSenders).
func (w *writer) flushAll() {
	b, ctx := w.b, context.Background()
	b.reset(time.Now(), false)
	for _, r := range b.ledger.rooms {
		b.sc.flush = append(b.sc.flush, r)
	}
	if len(b.sc.flush) == 0 {
		return
	}
	if _, err := w.st.begin.ExecContext(ctx); err != nil {
		return
	}
	if err := b.writeFlush(ctx, w.st); err != nil {
		w.st.rollback.ExecContext(ctx) //nolint:errcheck // the next Open counts them
		return
	}
	w.st.commit.ExecContext(ctx) //nolint:errcheck // the next Open counts them
}

// recountSenders counts into room_senders the messages of every room
// from its uncounted_from, which the ledger of the process that wrote
// them held when it stopped, and marks the rooms counted. Run at Open,
// before the writer starts. In a damaged database whose messages cannot
// all be read it counts nothing and takes the rooms into l instead, with
// none of their uncounted messages: their counts then take those for
// unread, but the rest of the database is served (as Open does for a
// damaged database: the operator has Check).
func recountSenders(ctx context.Context, conn *sql.Conn, l *ledger, path string) error {
	err := countUncounted(ctx, conn)
	if err == nil || !errors.Is(classify(path, err), store.ErrCorrupt) {
		return err
	}
	rows, lerr := conn.QueryContext(ctx, "SELECT name, uncounted_from, last_seq FROM rooms WHERE uncounted_from > 0")
	if lerr != nil {
		return err
	}
	defer rows.Close()
	now := time.Now().UnixNano()
	for rows.Next() {
		r := &roomLedger{since: now, seqs: make(map[string][]uint64)}
		var from, head int64
		if err := rows.Scan(&r.name, &from, &head); err != nil {
			return err
		}
		r.from, r.through = uint64(from), uint64(head)
		l.rooms[r.name] = r
		l.queue = append(l.queue, r)
	}
	if rows.Err() != nil {
		return err
	}
	return nil
}

func countUncounted(ctx context.Context, conn *sql.Conn) error {
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: count senders: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op
	for _, q := range []string{
		`INSERT INTO room_senders (room, sender, msgs, last_seq)
			SELECT m.room, m.sender, count(*), max(m.seq) FROM rooms r JOIN messages m ON m.room = r.name AND m.seq >= r.uncounted_from
			WHERE r.uncounted_from > 0 AND m.kind = 0 GROUP BY m.room, m.sender
			ON CONFLICT (room, sender) DO UPDATE SET msgs = msgs + excluded.msgs, last_seq = excluded.last_seq`,
		"UPDATE rooms SET uncounted_from = 0 WHERE uncounted_from > 0",
	} {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("sqlite: count senders: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: count senders: %w", err)
	}
	return nil
}
