// Package groupcommit gathers requests from many goroutines into batches
// for one writer goroutine, so that a store pays its commit (an fsync, a
// round trip) once per batch instead of once per request. The SQLite and
// PostgreSQL stores both commit through it: callers queue a Request, the
// writer runs Queue.Run with Answer around its own commit.
package groupcommit

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The stores' batch settings: each store's Config offers these as its
// defaults and bound.
const (
	// DefaultMaxBatch is large because a batch costs mostly per page it
	// touches and per fsync or WAL flush, not per request; batches are only
	// as large as the queue, so a light load still commits one request at a
	// time (docs/performance.md has the measurements).
	DefaultMaxBatch = 4096
	// DefaultMaxDelay is the default group commit window (see collect).
	DefaultMaxDelay = 2 * time.Millisecond
	// MaxMaxBatch bounds a batch: it is one transaction, and its callers
	// wait for all of it.
	MaxMaxBatch = 1 << 16
)

// Queue hands requests to one writer goroutine in batches.
type Queue[T any] struct {
	reqs     chan T
	done     chan struct{}
	maxBatch int
	delay    time.Duration
	lastSize int // size of the previous batch: how many to wait for
	batch    []T // reused between batches
	sizes    prometheus.Histogram
	commits  prometheus.Histogram
	queued   prometheus.GaugeFunc
}

// New returns a queue that batches up to maxBatch requests and may wait
// up to delay for more (see collect). Its buffer holds several batches, so
// senders seldom block on a full queue. store names the store in the
// queue's metrics (see Collectors).
func New[T any](store string, maxBatch int, delay time.Duration) *Queue[T] {
	labels := prometheus.Labels{"store": store}
	q := &Queue[T]{
		reqs: make(chan T, max(4*maxBatch, 4096)), done: make(chan struct{}),
		maxBatch: maxBatch, delay: delay,
		sizes: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "parley_store_batch_size", Help: "Requests (appends, room and member changes) committed together in one batch.",
			ConstLabels: labels, Buckets: prometheus.ExponentialBuckets(1, 2, 13), // 1 .. 4096
		}),
		commits: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "parley_store_commit_seconds", Help: "Time from a batch's start to every request in it being answered: its statements, COMMIT and fsync.",
			ConstLabels: labels, Buckets: prometheus.ExponentialBuckets(100e-6, 2, 14), // 100 µs .. 0.8 s
		}),
	}
	q.queued = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "parley_store_queued_requests", Help: "Requests waiting for the store's writer to take them into a batch.",
		ConstLabels: labels,
	}, func() float64 { return float64(len(q.reqs)) })
	return q
}

// Collectors returns the queue's metrics: the size of each batch, how long
// it took to commit, and how many requests wait for the next one.
func (q *Queue[T]) Collectors() []prometheus.Collector {
	return []prometheus.Collector{q.sizes, q.commits, q.queued}
}

// Put queues r, waiting while the queue is full, unless ctx ends first:
// then it returns ctx's error and r is not queued. Nobody may Put once
// Close has begun.
func (q *Queue[T]) Put(ctx context.Context, r T) error {
	select {
	case q.reqs <- r:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Run calls process with each batch, one at a time, until Close; it is the
// writer goroutine's body. process must not keep the slice.
func (q *Queue[T]) Run(process func([]T)) {
	defer close(q.done)
	for {
		idle := time.Now()
		first, ok := <-q.reqs
		if !ok {
			return
		}
		if q.delay > 0 && time.Since(idle) > q.delay {
			q.lastSize = 1 // the load went away: do not wait for it
		}
		batch := q.collect(first)
		q.lastSize = len(batch)
		start := time.Now()
		process(batch)
		q.commits.Observe(time.Since(start).Seconds())
		q.sizes.Observe(float64(len(batch)))
		q.batch = batch[:0]
	}
}

// collect gathers a batch: first, then whatever is already queued, up to
// maxBatch. When the queue runs dry before the batch is as large as the
// previous one, the senders answered last time are probably about to send
// again, so it waits up to delay for them. A lone sender never waits.
//
// Each wait has a timer of its own. Resetting one timer for every wait
// would be cheaper to allocate but not to run: a reset that moves a timer
// still in the runtime's heap to an earlier time makes the runtime scan
// the whole heap of its P when that time comes, and a server with
// thousands of connections has thousands of timers there (a reset per
// batch took 10% of parleyd's CPU at 1,000 sends/s; docs/performance.md).
func (q *Queue[T]) collect(first T) []T {
	batch := append(q.batch[:0], first)
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for len(batch) < q.maxBatch {
		select {
		case r, ok := <-q.reqs:
			if !ok {
				return batch
			}
			batch = append(batch, r)
			continue
		default:
		}
		if q.delay <= 0 || len(batch) >= q.lastSize {
			return batch
		}
		if timer == nil {
			timer = time.NewTimer(q.delay)
		}
		select {
		case r, ok := <-q.reqs:
			if !ok {
				return batch
			}
			batch = append(batch, r)
		case <-timer.C:
			return batch
		}
	}
	return batch
}

// Close stops taking requests and waits until Run has processed those
// queued. The caller guarantees that nobody is sending.
func (q *Queue[T]) Close() {
	close(q.reqs)
	<-q.done
}
