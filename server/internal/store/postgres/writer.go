package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/parleychat/parley/server/internal/store"
	"github.com/parleychat/parley/server/internal/store/internal/groupcommit"
)

// The writer is the only goroutine of a process that appends: it commits
// the queued appends of all rooms as one transaction (group commit), so
// the WAL flush is paid per batch rather than per message, and answers
// nobody before COMMIT returns: a seq handed out is a seq on disk. How a
// batch keeps each room's seqs gap-free across nodes is appendSQL's
// comment (batch.go). Seqs are never cached across batches, so a batch
// that fails consumes nothing.
//
// Rejected: a seq counter per room in memory or a PostgreSQL sequence per
// room (neither is shared by nodes without a round trip, and a failed
// commit would leave gaps); one writer per room (each room would pay its
// own WAL flush); SERIALIZABLE transactions (the row lock already orders
// the batches, and serialization failures would turn into retries).
type writer struct {
	pool    *pgxpool.Pool
	q       *groupcommit.Queue[*request]
	process func(batch []*request) // commits a batch and answers its appends
	timeout time.Duration
	b       *batchState
	batches atomic.Int64 // batches committed or failed, for tests and benchmarks
	careful atomic.Int64 // batches redone carefully, for tests and benchmarks
}

// request is a caller's append waiting for the writer's result.
type request = groupcommit.Request[store.NewMessage, result]

// requests recycles requests.
var requests groupcommit.Pool[store.NewMessage, result]

// result is what the writer answers an append with: the message stored, or
// the one it duplicates.
type result struct {
	msg store.Message
	dup bool
}

func startWriter(pool *pgxpool.Pool, cfg Config) *writer {
	w := &writer{pool: pool, q: groupcommit.New[*request]("postgres", cfg.MaxBatch, cfg.MaxBatchDelay), timeout: cfg.QueryTimeout, b: newBatchState()}
	w.process = groupcommit.Answer(w.commit)
	go w.q.Run(w.process)
	return w
}

// Append implements store.Store. It returns once the batch holding m is
// committed, or with an error: ctx's if ctx ends first. If ctx ends before
// the batch starts, nothing is stored; an error once the batch is under way
// (ctx ending, or the connection lost during COMMIT) does not prove that
// nothing was stored, and a retry with the same ClientMsgID returns the
// stored message as a duplicate. Errors that mean PostgreSQL is out of
// reach wrap store.ErrUnavailable; a message PostgreSQL cannot store is
// rejected with ErrInvalidText before it joins a batch.
func (s *Store) Append(ctx context.Context, m store.NewMessage) (store.Message, bool, error) {
	r, err := s.queue(ctx, m)
	if err != nil {
		return store.Message{}, false, err
	}
	return s.wait(ctx, r)
}

// StartAppend implements store.Store: requests join the writer's queue in the
// order StartAppend is called, and the writer gives a room's seqs in queue
// order. wait returns early, with ctx's error, if ctx ends first.
func (s *Store) StartAppend(ctx context.Context, m store.NewMessage) func() (store.Message, bool, error) {
	r, err := s.queue(ctx, m)
	if err != nil {
		return store.Answered(store.Message{}, false, err)
	}
	return func() (store.Message, bool, error) { return s.wait(ctx, r) }
}

// queue checks m and hands it to the writer as a request from the pool.
func (s *Store) queue(ctx context.Context, m store.NewMessage) (*request, error) {
	if err := m.Check(); err != nil {
		return nil, err
	}
	if err := checkText(m); err != nil {
		return nil, err
	}
	if err := s.gate.Enter(); err != nil {
		return nil, err
	}
	defer s.gate.Exit()
	r := requests.Get(ctx, m)
	if err := s.w.q.Put(ctx, r); err != nil {
		requests.Put(r)
		return nil, err
	}
	return r, nil
}

// wait waits for the writer's answer to a queued r, or for ctx to end.
func (s *Store) wait(ctx context.Context, r *request) (store.Message, bool, error) {
	select {
	case <-r.Done(): // from here on the writer no longer touches r
	case <-ctx.Done():
		select {
		case <-r.Done(): // answered meanwhile: the answer wins
		default:
			// The writer still owns r and will answer it; it is left to the
			// garbage collector rather than returned to the pool.
			return store.Message{}, false, fmt.Errorf("postgres: append to room %q: %w", r.In.Room, ctx.Err())
		}
	}
	res, err := r.Out, r.Err
	requests.Put(r)
	return res.msg, res.dup, err
}

// close stops taking requests, lets the writer finish those queued, and
// waits for it. The caller guarantees that nobody is sending.
func (w *writer) close() {
	w.q.Close()
}

// commit runs live as one transaction, leaving each request's answer in
// r.Out and r.Err. An error means that the transaction was rolled back,
// or that its outcome is unknown because the connection was lost before
// PostgreSQL answered COMMIT.
func (w *writer) commit(live []*request) error {
	w.batches.Add(1)
	if err := w.commitRetry(live); err != nil {
		return fmt.Errorf("postgres: commit batch of %d: %w", len(live), classify(err))
	}
	return nil
}

// commitRetry bounds the batch by the writer's timeout: one caller's
// context must not cut it short, and a server that stops answering must
// not hold the writer. A dead connection means the server probably
// restarted and took the pool's others with it: the pool is emptied, so
// that the next batches and reads dial afresh, and a batch that failed
// before it was sent is tried once more. (Connections idle for longer than
// pingIdle are pinged before use, so a restart while the store is quiet
// costs no caller an error.)
func (w *writer) commitRetry(live []*request) error {
	ctx, cancel := context.WithTimeout(context.Background(), w.timeout)
	defer cancel()
	for try := 0; ; try++ {
		err := w.commitOn(ctx, live)
		if !errors.Is(err, errConnLost) {
			return err
		}
		w.pool.Reset()
		if try > 0 || !errors.Is(err, errBeforeCommit) || ctx.Err() != nil {
			return err
		}
	}
}

// errConnLost marks a batch error after which the connection was closed.
var errConnLost = errors.New("connection lost")

// commitOn runs live on one connection, optimistically first (batch.go):
// the unique index, not a lookup, finds duplicates of stored messages.
// Those are rare (a client retrying a send that was stored); when the
// index turns a row away nothing was stored, and the batch runs again
// carefully (carefulbatch.go), looking up every ClientMsgID. A batch
// holding an entry other than a plain message (an edit, delete, reaction
// or reply: see plain) runs carefully at once, for the rules of the log
// need the rows it names read under the rooms' locks.
func (w *writer) commitOn(ctx context.Context, live []*request) error {
	conn, err := w.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("connection: %w", err)
	}
	defer conn.Release()
	c := conn.Conn()
	if plain(live) {
		err = w.b.run(ctx, c, live)
		if errors.Is(err, errStoredDuplicate) {
			w.careful.Add(1)
		}
	} else {
		w.b.number(live)
		err = errStoredDuplicate // not really: the entries need the careful way
	}
	if errors.Is(err, errStoredDuplicate) {
		if err = w.b.runCareful(ctx, c, live); err != nil {
			rollback(ctx, c)
		}
	}
	if err != nil && c.IsClosed() {
		err = mark(err, errConnLost)
	}
	return err
}

// plain reports whether live holds only messages that reply to nothing:
// entries that the optimistic statement can store without reading
// anything.
func plain(live []*request) bool {
	for _, r := range live {
		if r.In.Kind != store.KindMessage || r.In.ReplyToSeq != 0 {
			return false
		}
	}
	return true
}

// rollback ends a failed transaction. If that fails too, the connection
// is closed, so that the pool does not hand it out again.
func rollback(ctx context.Context, c *pgx.Conn) {
	if c.IsClosed() || c.PgConn().TxStatus() == 'I' {
		return
	}
	if _, err := c.Exec(ctx, "ROLLBACK"); err != nil {
		c.Close(context.Background()) //nolint:errcheck // the connection is being dropped
	}
}

// Collectors returns the store's Prometheus metrics: batch sizes and commit
// times of the writer.
func (s *Store) Collectors() []prometheus.Collector { return s.w.q.Collectors() }
