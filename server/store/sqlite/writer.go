package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"os"
	"time"

	"github.com/parleychat/parley/server/store"
)

// The writer is the only goroutine that writes to the database. Appends (and
// room creations) from every room arrive on one channel; the writer takes
// what is queued, up to MaxBatch, and commits it as one transaction, so
// SQLite's fsync — the cost that dominates a durable write — is paid once per
// batch rather than once per message. Nobody is answered before COMMIT
// returns: a seq handed out is a seq on disk.
//
// Seqs are computed inside the transaction from rooms.last_seq, never cached
// across batches, so a batch that fails and rolls back consumes nothing.
//
// Rejected: one writer per room (SQLite has one write lock per database, so
// rooms would queue for it and each pay their own fsync), and a shared
// in-memory seq counter (it would hand out seqs that a failed commit then
// leaves as gaps).
type writer struct {
	conn     *sql.Conn
	reqs     chan *request
	done     chan struct{}
	maxBatch int
	delay    time.Duration
	st       *statements
	batch    []*request // reused between batches
	b        *batchState
}

// request is one append or one room creation waiting for the writer.
type request struct {
	ctx    context.Context
	msg    store.NewMessage
	create *store.Room // non-nil for CreateRoom
	reply  chan result // buffered: the writer never blocks on a caller
	res    result
}

type result struct {
	msg  store.Message
	room store.Room
	dup  bool
	err  error
}

func startWriter(ctx context.Context, db *sql.DB, cfg Config) (*writer, error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("sqlite: writer connection: %w", err)
	}
	st, err := prepare(ctx, conn, cfg.MaxBatch)
	if err != nil {
		conn.Close()
		return nil, err
	}
	w := &writer{
		conn: conn, st: st, maxBatch: cfg.MaxBatch, delay: cfg.MaxBatchDelay,
		reqs: make(chan *request, cfg.MaxBatch), done: make(chan struct{}),
		b: newBatchState(),
	}
	go w.run()
	return w, nil
}

// submit hands r to the writer and waits for its answer. A request whose
// context ends before it is queued is not sent; once queued, the caller
// waits for the writer (at most one batch), so an error from Append always
// means nothing was stored.
func (s *Store) submit(ctx context.Context, r *request) (result, error) {
	if err := s.enter(); err != nil {
		return result{}, err
	}
	select {
	case s.w.reqs <- r:
		s.mu.RUnlock()
	case <-ctx.Done():
		s.mu.RUnlock()
		return result{}, ctx.Err()
	}
	res := <-r.reply
	return res, res.err
}

func (w *writer) run() {
	defer close(w.done)
	for first := range w.reqs {
		w.process(w.collect(first))
	}
}

// collect gathers a batch: first, then whatever is already queued, up to
// maxBatch. When the queue runs dry it waits up to delay for more, but only
// while the last batch suggests more are coming.
func (w *writer) collect(first *request) []*request {
	batch := append(w.batch[:0], first)
	for len(batch) < w.maxBatch {
		select {
		case r, ok := <-w.reqs:
			if !ok {
				return batch
			}
			batch = append(batch, r)
		default:
			return batch
		}
	}
	return batch
}

// close stops taking requests, lets the writer finish those queued, and
// waits for it. The caller guarantees that nobody is sending.
func (w *writer) close() error {
	close(w.reqs)
	<-w.done
	w.st.close()
	if err := w.conn.Close(); err != nil {
		return fmt.Errorf("sqlite: close writer connection: %w", err)
	}
	return nil
}

// process commits one batch and answers every request in it.
func (w *writer) process(batch []*request) {
	live := batch[:0:0]
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil {
			r.res = result{err: err}
			continue
		}
		live = append(live, r)
	}
	if len(live) > 0 {
		if err := w.commit(live); err != nil {
			err = fmt.Errorf("sqlite: commit batch of %d: %w", len(live), err)
			for _, r := range live {
				r.res = result{err: err}
			}
		}
	}
	for _, r := range batch {
		r.reply <- r.res
	}
}

// commit runs live as one transaction, leaving each request's outcome in
// r.res. An error means the transaction was rolled back.
func (w *writer) commit(live []*request) error {
	ctx := context.Background() // callers' contexts must not cut a batch short
	if _, err := w.st.begin.ExecContext(ctx); err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	err := w.apply(ctx, live)
	if err == nil {
		_, err = w.st.commit.ExecContext(ctx)
	}
	if err != nil {
		if _, rerr := w.st.rollback.ExecContext(ctx); rerr != nil {
			err = errors.Join(err, fmt.Errorf("rollback: %w", rerr))
		}
	}
	return err
}

// apply performs the batch's statements in arrival order.
func (w *writer) apply(ctx context.Context, live []*request) error {
	b := w.b
	b.reset(time.Now())
	for _, r := range live {
		var err error
		if r.create != nil {
			r.res, err = w.createRoom(ctx, b, *r.create)
		} else {
			r.res, err = w.appendOne(ctx, b, r.msg)
		}
		if err != nil {
			return err
		}
	}
	if err := w.insertRows(ctx, b.rows); err != nil {
		return err
	}
	return w.updateHeads(ctx, b)
}

// batchState is what one batch knows about the rooms it touches.
type batchState struct {
	now   int64
	heads map[string]*head
	dedup map[dedupKey]store.Message
	rows  []store.Message
}

type head struct {
	exists  bool
	changed bool
	seq     uint64
	at      int64 // unix nanoseconds of the newest message
}

type dedupKey struct{ room, sender, id string }

func newBatchState() *batchState {
	return &batchState{heads: make(map[string]*head), dedup: make(map[dedupKey]store.Message)}
}

func (b *batchState) reset(now time.Time) {
	b.now = now.UnixNano()
	clear(b.heads)
	clear(b.dedup)
	b.rows = b.rows[:0]
}

// head returns the room's head as of this batch, reading it once.
func (w *writer) head(ctx context.Context, b *batchState, room string) (*head, error) {
	if h, ok := b.heads[room]; ok {
		return h, nil
	}
	h := &head{}
	var seq, at int64
	err := w.st.selHead.QueryRowContext(ctx, room).Scan(&seq, &at)
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return nil, fmt.Errorf("read head of %q: %w", room, err)
	default:
		h.exists, h.seq, h.at = true, uint64(seq), at
	}
	b.heads[room] = h
	return h, nil
}

func (w *writer) createRoom(ctx context.Context, b *batchState, r store.Room) (result, error) {
	h, err := w.head(ctx, b, r.Name)
	if err != nil {
		return result{}, err
	}
	if h.exists {
		return result{err: fmt.Errorf("create room %q: %w", r.Name, store.ErrRoomExists)}, nil
	}
	r.CreatedAt, r.LastSeq, r.LastMessageAt = fromNanos(b.now), 0, time.Time{}
	if _, err := w.st.insRoom.ExecContext(ctx, r.Name, int(r.Visibility), r.CreatedBy, b.now); err != nil {
		return result{}, fmt.Errorf("insert room %q: %w", r.Name, err)
	}
	*h = head{exists: true}
	return result{room: r}, nil
}

func (w *writer) appendOne(ctx context.Context, b *batchState, m store.NewMessage) (result, error) {
	h, err := w.head(ctx, b, m.Room)
	if err != nil {
		return result{}, err
	}
	if !h.exists {
		return result{err: fmt.Errorf("append to room %q: %w", m.Room, store.ErrRoomNotFound)}, nil
	}
	if orig, ok, err := w.findDuplicate(ctx, b, m); err != nil || ok {
		return result{msg: orig, dup: ok}, err
	}
	h.seq++
	h.at = max(h.at, b.now) // a room's times never go backwards, even if the clock does
	h.changed = true
	msg := store.Message{Room: m.Room, Seq: h.seq, Sender: m.Sender, Body: m.Body, SentAt: fromNanos(h.at), ClientMsgID: m.ClientMsgID}
	b.rows = append(b.rows, msg)
	if m.ClientMsgID != "" {
		b.dedup[dedupKey{m.Room, m.Sender, m.ClientMsgID}] = msg
	}
	return result{msg: msg}, nil
}

// findDuplicate looks for an earlier message with m's key, first in this
// batch, then in the database.
func (w *writer) findDuplicate(ctx context.Context, b *batchState, m store.NewMessage) (store.Message, bool, error) {
	if m.ClientMsgID == "" {
		return store.Message{}, false, nil
	}
	if orig, ok := b.dedup[dedupKey{m.Room, m.Sender, m.ClientMsgID}]; ok {
		return orig, true, nil
	}
	orig := store.Message{Room: m.Room, Sender: m.Sender, ClientMsgID: m.ClientMsgID}
	var seq, at int64
	err := w.st.selDup.QueryRowContext(ctx, m.Room, m.Sender, m.ClientMsgID).Scan(&seq, &orig.Body, &at)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return store.Message{}, false, nil
	case err != nil:
		return store.Message{}, false, fmt.Errorf("look up client_msg_id: %w", err)
	}
	orig.Seq, orig.SentAt = uint64(seq), fromNanos(at)
	return orig, true, nil
}

// insertRows inserts the batch's new messages with as few statements as
// possible: multi-row INSERTs whose sizes are powers of two, each prepared
// once.
func (w *writer) insertRows(ctx context.Context, rows []store.Message) error {
	args := make([]any, 0, 6*min(len(rows), w.maxBatch))
	for len(rows) > 0 {
		n := w.st.largestInsert(len(rows))
		args = args[:0]
		for _, m := range rows[:n] {
			args = append(args, m.Room, int64(m.Seq), m.Sender, m.Body, m.SentAt.UnixNano(), m.ClientMsgID)
		}
		if _, err := w.st.insMsgs[n].ExecContext(ctx, args...); err != nil {
			return fmt.Errorf("insert %d messages: %w", n, err)
		}
		rows = rows[n:]
	}
	return nil
}

func (w *writer) updateHeads(ctx context.Context, b *batchState) error {
	for room, h := range b.heads {
		if !h.changed {
			continue
		}
		if _, err := w.st.updHead.ExecContext(ctx, int64(h.seq), h.at, room); err != nil {
			return fmt.Errorf("update head of %q: %w", room, err)
		}
	}
	return nil
}

// statements are the writer's prepared statements, bound to its connection.
type statements struct {
	begin, commit, rollback *sql.Stmt
	selHead, selDup         *sql.Stmt
	insRoom, updHead        *sql.Stmt
	insMsgs                 map[int]*sql.Stmt // by number of rows: 1, 2, 4, ...
}

func prepare(ctx context.Context, conn *sql.Conn, maxBatch int) (*statements, error) {
	st := &statements{insMsgs: make(map[int]*sql.Stmt)}
	var err error
	p := func(q string) *sql.Stmt {
		if err != nil {
			return nil
		}
		var s *sql.Stmt
		if s, err = conn.PrepareContext(ctx, q); err != nil {
			err = fmt.Errorf("sqlite: prepare %q: %w", q, err)
		}
		return s
	}
	// BEGIN IMMEDIATE takes the write lock up front, so a batch cannot fail
	// half way for want of it.
	st.begin, st.commit, st.rollback = p("BEGIN IMMEDIATE"), p("COMMIT"), p("ROLLBACK")
	st.selHead = p("SELECT last_seq, last_message_at FROM rooms WHERE name = ?")
	st.selDup = p("SELECT seq, body, sent_at FROM messages WHERE room = ? AND sender = ? AND client_msg_id = ? AND client_msg_id <> ''")
	st.insRoom = p("INSERT INTO rooms (name, visibility, created_by, created_at) VALUES (?, ?, ?, ?)")
	st.updHead = p("UPDATE rooms SET last_seq = ?, last_message_at = ? WHERE name = ?")
	lim := maxBatch
	if os.Getenv("PARLEY_EXP_SINGLE") != "" {
		lim = 1
	}
	for n := 1; n <= lim; n *= 2 {
		st.insMsgs[n] = p(insertSQL(n))
	}
	if err != nil {
		st.close()
		return nil, err
	}
	return st, nil
}

func insertSQL(rows int) string {
	var sb strings.Builder
	sb.WriteString("INSERT " + os.Getenv("PARLEY_EXP_OR") + " INTO messages (room, seq, sender, body, sent_at, client_msg_id) VALUES ")
	for i := range rows {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString("(?, ?, ?, ?, ?, ?)")
	}
	return sb.String()
}

// largestInsert returns the largest prepared insert size not above n.
func (st *statements) largestInsert(n int) int {
	size := 1
	for size*2 <= n && st.insMsgs[size*2] != nil {
		size *= 2
	}
	return size
}

func (st *statements) close() {
	all := []*sql.Stmt{st.begin, st.commit, st.rollback, st.selHead, st.selDup, st.insRoom, st.updHead}
	for _, s := range st.insMsgs {
		all = append(all, s)
	}
	for _, s := range all {
		if s != nil {
			s.Close()
		}
	}
}

func fromNanos(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns).UTC()
}
