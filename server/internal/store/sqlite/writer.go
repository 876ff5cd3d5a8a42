package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/parleychat/parley/server/internal/store"
	"github.com/parleychat/parley/server/internal/store/internal/groupcommit"
)

// The writer is the only goroutine that writes to the database. Appends (and
// room creations) from every room arrive on one channel; the writer takes
// what is queued, up to MaxBatch, and commits it as one transaction, so the
// fsync that dominates a durable write is paid once per batch rather than
// once per message. Nobody is answered before COMMIT returns: a seq handed
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
	path string // the database file, for classify
	conn *sql.Conn
	st   *statements
	q    *groupcommit.Queue[*request]
	live []*request // reused between batches
	b    *batchState
}

// request is one append or one room creation waiting for the writer.
type request struct {
	ctx    context.Context
	msg    store.NewMessage
	create *store.Room // non-nil for CreateRoom
	member *memberOp   // non-nil for AddMember and RemoveMember
	prune  *pruneOp    // non-nil for one step of Prune
	res    result
	done   chan struct{} // buffered: the writer never blocks on a caller
}

// requests recycles requests and their done channels: an append would
// otherwise allocate both.
var requests = sync.Pool{New: func() any { return &request{done: make(chan struct{}, 1)} }}

type result struct {
	msg     store.Message
	room    store.Room
	dup     bool
	deleted int64 // by a prune step
	err     error
}

func startWriter(ctx context.Context, db *sql.DB, cfg Config) (*writer, error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("sqlite: writer connection: %w", err)
	}
	if err := limitSize(ctx, conn, cfg.MaxBytes); err != nil {
		conn.Close()
		return nil, err
	}
	st, err := prepare(ctx, conn, cfg.MaxBatch)
	if err != nil {
		conn.Close()
		return nil, err
	}
	w := &writer{path: cfg.Path, conn: conn, st: st, q: groupcommit.New[*request]("sqlite", cfg.MaxBatch, cfg.MaxBatchDelay), b: newBatchState()}
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
	req := newRequest(ctx)
	req.create = &r
	res, err := s.submit(ctx, req)
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

func (s *Store) changeMember(ctx context.Context, op memberOp) error {
	req := newRequest(ctx)
	req.member = &op
	_, err := s.submit(ctx, req)
	return err
}

// Append implements store.Store. It returns once the batch holding m is
// committed. If ctx ends before the batch starts, nothing is stored and
// Append returns ctx's error.
func (s *Store) Append(ctx context.Context, m store.NewMessage) (store.Message, bool, error) {
	req := newRequest(ctx)
	req.msg = m
	res, err := s.submit(ctx, req)
	return res.msg, res.dup, err
}

// Submit implements store.Store: requests join the writer's queue in the
// order Submit is called, and the writer gives a room's seqs in queue
// order.
func (s *Store) Submit(ctx context.Context, m store.NewMessage) func() (store.Message, bool, error) {
	req := newRequest(ctx)
	req.msg = m
	if err := s.queue(ctx, req); err != nil {
		return store.Answered(store.Message{}, false, err)
	}
	return func() (store.Message, bool, error) {
		res, err := s.wait(req)
		return res.msg, res.dup, err
	}
}

// newRequest returns an empty request from the pool.
func newRequest(ctx context.Context) *request {
	r := requests.Get().(*request)
	r.ctx = ctx
	return r
}

// submit hands r to the writer, waits for its answer and returns r to the
// pool. A request whose context ends before it is queued is not sent. Once
// queued, the caller waits for the writer (at most one batch) whatever its
// context does, so an error always means that nothing was stored.
func (s *Store) submit(ctx context.Context, r *request) (result, error) {
	if err := s.queue(ctx, r); err != nil {
		return result{}, err
	}
	return s.wait(r)
}

// queue hands r to the writer; on failure r is back in the pool.
func (s *Store) queue(ctx context.Context, r *request) error {
	if err := s.enter(); err != nil {
		release(r)
		return err
	}
	select {
	case s.w.q.Requests() <- r:
		s.mu.RUnlock()
		return nil
	case <-ctx.Done():
		s.mu.RUnlock()
		release(r)
		return ctx.Err()
	}
}

// wait waits for the writer's answer to a queued r and returns r to the pool.
func (s *Store) wait(r *request) (result, error) {
	<-r.done // from here on the writer no longer touches r
	res := r.res
	release(r)
	return res, res.err
}

func release(r *request) {
	*r = request{done: r.done}
	requests.Put(r)
}

// close stops taking requests, lets the writer finish those queued, and
// waits for it. The caller guarantees that nobody is sending.
func (w *writer) close() error {
	w.q.Close()
	w.st.close()
	if err := w.conn.Close(); err != nil {
		return fmt.Errorf("sqlite: close writer connection: %w", err)
	}
	return nil
}

// process commits one batch and answers every request in it. Requests
// whose context has ended are answered with its error and left out.
// (Handing the answers to a second goroutine, so that the writer could start
// the next batch sooner, made no difference that we could measure.)
func (w *writer) process(batch []*request) {
	live := w.live[:0]
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil {
			r.res = result{err: err}
			continue
		}
		live = append(live, r)
	}
	if len(live) > 0 {
		if err := w.commit(live); err != nil {
			err = classify(w.path, fmt.Errorf("sqlite: commit batch of %d: %w", len(live), err))
			for _, r := range live {
				r.res = result{err: err}
			}
		}
	}
	clear(live)
	w.live = live[:0]
	for _, r := range batch {
		r.done <- struct{}{}
	}
	clear(batch) // let the requests be collected
}

// commit runs live as one transaction, leaving each request's outcome in
// r.res. An error means that the transaction was rolled back.
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
	return err
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
