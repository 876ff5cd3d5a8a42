package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/parleychat/parley/server/internal/store"
	"github.com/parleychat/parley/server/internal/store/internal/groupcommit"
)

// The writer is the only goroutine that writes to the database. Appends,
// room creations, membership changes and prune steps of every room arrive
// on one queue; the writer takes what is queued, up to MaxBatch, and
// commits it as one transaction, so the fsync that dominates a durable
// write is paid once per batch rather than once per message. Nobody is answered before COMMIT returns: a seq handed
// out is a seq on disk, and readers never see a message before it is durable.
//
// Seqs are computed inside the transaction from the rooms' heads; the heads
// a batch moved are remembered only once its COMMIT has succeeded (and
// forgotten when a batch fails), so a batch that rolls back consumes nothing.
//
// Rejected: one writer per room (SQLite has one write lock per database, so
// rooms would queue for it and each pay their own fsync); a seq counter in
// memory (a failed commit would leave its seqs as gaps); answering callers
// before the fsync and syncing in the background (readers of the read pool
// would see messages that a crash could still take away).
type writer struct {
	path    string // the database file, for classify
	conn    *sql.Conn
	st      *statements
	q       *groupcommit.Queue[*request]
	process func(batch []*request) // commits a batch and answers its requests
	b       *batchState
}

// request is a caller's op waiting for the writer's result.
type request = groupcommit.Request[op, result]

// op is what a request asks the writer to do: one of a room creation, a
// membership change, a prune step or a chunk of read markers to move if
// set, else an append of msg.
type op struct {
	msg     store.NewMessage
	create  *store.Room
	member  *memberOp
	prune   *pruneOp
	markers []markerRow
}

// room is the name of the room op changes.
func (o *op) room() string {
	switch {
	case o.create != nil:
		return o.create.Name
	case o.member != nil:
		return o.member.room
	case o.prune != nil:
		return o.prune.room
	}
	return o.msg.Room
}

// requests recycles requests.
var requests groupcommit.Pool[op, result]

// result is what the writer answers a request with: the message appended
// (or the one it duplicates), the room created, how many messages a
// prune step deleted, or the markers as they are after moving.
type result struct {
	msg     store.Message
	room    store.Room
	dup     bool
	deleted int64
	markers []store.ReadMarker
}

func startWriter(ctx context.Context, db *sql.DB, cfg Config, l *ledger) (*writer, error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("sqlite: writer connection: %w", err)
	}
	if err := limitSize(ctx, conn, cfg.MaxBytes); err != nil {
		conn.Close()
		return nil, err
	}
	if err := recountSenders(ctx, conn, l, cfg.Path); err != nil {
		conn.Close()
		return nil, err
	}
	st, err := prepare(ctx, conn, cfg.MaxBatch)
	if err != nil {
		conn.Close()
		return nil, err
	}
	w := &writer{path: cfg.Path, conn: conn, st: st, q: groupcommit.New[*request]("sqlite", cfg.MaxBatch, cfg.MaxBatchDelay),
		b: newBatchState(l, cfg.senderFlushAge)}
	w.process = groupcommit.Answer(w.commit)
	go w.q.Run(w.process)
	return w, nil
}

// limitSize sets the writer connection's max_page_count to maxBytes, if
// positive. (SQLite keeps it at least the database's current page count.)
func limitSize(ctx context.Context, conn *sql.Conn, maxBytes int64) error {
	if maxBytes <= 0 {
		return nil
	}
	var pageSize int64
	if err := conn.QueryRowContext(ctx, "PRAGMA page_size").Scan(&pageSize); err != nil {
		return fmt.Errorf("sqlite: read page size: %w", err)
	}
	if _, err := conn.ExecContext(ctx, fmt.Sprintf("PRAGMA max_page_count = %d", max(maxBytes/pageSize, 1))); err != nil {
		return fmt.Errorf("sqlite: limit the database to %d bytes: %w", maxBytes, err)
	}
	return nil
}

// CreateRoom implements store.Store. Like an append, it is committed by the
// writer.
func (s *Store) CreateRoom(ctx context.Context, r store.Room) (store.Room, error) {
	res, err := s.do(ctx, op{create: &r})
	return res.room, err
}

// memberOp adds or removes a room member.
type memberOp struct {
	room, user string
	remove     bool
}

// AddMember implements store.Store; the writer commits it.
func (s *Store) AddMember(ctx context.Context, room, user string) error {
	return s.changeMember(ctx, memberOp{room: room, user: user})
}

// RemoveMember implements store.Store; the writer commits it.
func (s *Store) RemoveMember(ctx context.Context, room, user string) error {
	return s.changeMember(ctx, memberOp{room: room, user: user, remove: true})
}

func (s *Store) changeMember(ctx context.Context, m memberOp) error {
	_, err := s.do(ctx, op{member: &m})
	return err
}

// Append implements store.Store. It returns once the batch holding m is
// committed. If ctx ends before the batch starts, nothing is stored and
// Append returns ctx's error.
func (s *Store) Append(ctx context.Context, m store.NewMessage) (store.Message, bool, error) {
	if err := m.Check(); err != nil {
		return store.Message{}, false, err
	}
	res, err := s.do(ctx, op{msg: m})
	return res.msg, res.dup, err
}

// StartAppend implements store.Store: requests join the writer's queue in the
// order StartAppend is called, and the writer gives a room's seqs in queue
// order.
func (s *Store) StartAppend(ctx context.Context, m store.NewMessage) func() (store.Message, bool, error) {
	if err := m.Check(); err != nil {
		return store.Answered(store.Message{}, false, err)
	}
	r, err := s.queue(ctx, op{msg: m})
	if err != nil {
		return store.Answered(store.Message{}, false, err)
	}
	return func() (store.Message, bool, error) {
		res, err := s.wait(r)
		return res.msg, res.dup, err
	}
}

// do hands o to the writer and waits for its answer. A request whose
// context ends before it is queued is not sent. Once queued, the caller
// waits for the writer (at most one batch) whatever its context does, so
// an error always means that nothing was stored.
func (s *Store) do(ctx context.Context, o op) (result, error) {
	r, err := s.queue(ctx, o)
	if err != nil {
		return result{}, err
	}
	return s.wait(r)
}

// queue hands o to the writer as a request from the pool.
func (s *Store) queue(ctx context.Context, o op) (*request, error) {
	if err := s.gate.Enter(); err != nil {
		return nil, err
	}
	defer s.gate.Exit()
	r := requests.Get(ctx, o)
	if err := s.w.q.Put(ctx, r); err != nil {
		requests.Put(r)
		return nil, err
	}
	return r, nil
}

// wait waits for the writer's answer to a queued r and returns r to the pool.
func (s *Store) wait(r *request) (result, error) {
	<-r.Done() // from here on the writer no longer touches r
	res, err := r.Out, r.Err
	requests.Put(r)
	return res, err
}

// close stops taking requests, lets the writer finish those queued, and
// waits for it. The caller guarantees that nobody is sending.
func (w *writer) close() error {
	w.q.Close()
	w.flushAll()
	w.st.close()
	if err := w.conn.Close(); err != nil {
		return fmt.Errorf("sqlite: close writer connection: %w", err)
	}
	return nil
}

// commit runs live as one transaction, leaving each request's answer in
// r.Out and r.Err. An error means that the transaction was rolled back.
//
// The first attempt is optimistic: it does not look up each ClientMsgID but
// lets the unique index find duplicates while inserting (INSERT OR IGNORE
// skips the row). Retries are rare, so almost every batch commits on the
// first attempt. If a row was skipped, the seqs handed out after it would
// leave a gap, so the batch is rolled back and run again carefully, looking
// up every ClientMsgID first.
func (w *writer) commit(live []*request) error {
	err := w.attempt(live, false)
	if errors.Is(err, errSkippedRow) {
		err = w.attempt(live, true)
	}
	if err != nil {
		return classify(w.path, fmt.Errorf("sqlite: commit batch of %d: %w", len(live), err))
	}
	return nil
}

// errSkippedRow means that INSERT OR IGNORE skipped a row the batch had
// counted on.
var errSkippedRow = errors.New("a message row was not inserted")

func (w *writer) attempt(live []*request, careful bool) error {
	ctx := context.Background() // one caller's context must not cut the batch short
	if _, err := w.st.begin.ExecContext(ctx); err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	err := w.b.apply(ctx, w.st, live, careful)
	if err == nil {
		if _, err = w.st.commit.ExecContext(ctx); err != nil {
			err = fmt.Errorf("commit: %w", err)
		}
	}
	if err != nil {
		w.b.rolledBack()
		if _, rerr := w.st.rollback.ExecContext(ctx); rerr != nil && !noTransaction(rerr) {
			err = errors.Join(err, fmt.Errorf("rollback: %w", rerr))
		}
		return err
	}
	w.b.committed()
	return nil
}

// Collectors returns the store's Prometheus metrics: batch sizes and commit
// times of the writer.
func (s *Store) Collectors() []prometheus.Collector { return s.w.q.Collectors() }
