package groupcommit

import (
	"context"
	"sync"
)

// Request is one caller's request to a writer: In says what to do; the
// writer leaves the answer in Out and Err, then wakes the caller (Done).
// Until then only the writer touches it.
type Request[In, Out any] struct {
	Ctx  context.Context
	In   In
	Out  Out
	Err  error
	done chan struct{} // buffered: the writer never blocks on a caller
}

// NewRequest returns a request for in on behalf of a caller with ctx.
func NewRequest[In, Out any](ctx context.Context, in In) *Request[In, Out] {
	return &Request[In, Out]{Ctx: ctx, In: in, done: make(chan struct{}, 1)}
}

// Done is ready once the writer has answered r and no longer touches it.
func (r *Request[In, Out]) Done() <-chan struct{} { return r.done }

// Pool recycles requests and their done channels: an append would
// otherwise allocate both. The zero value is ready to use.
type Pool[In, Out any] struct{ p sync.Pool }

// Get returns a request for in from the pool.
func (p *Pool[In, Out]) Get(ctx context.Context, in In) *Request[In, Out] {
	r, _ := p.p.Get().(*Request[In, Out])
	if r == nil {
		return NewRequest[In, Out](ctx, in)
	}
	r.Ctx, r.In = ctx, in
	return r
}

// Put returns r to the pool. The caller must own r: never queued, or
// answered (Done).
func (p *Pool[In, Out]) Put(r *Request[In, Out]) {
	*r = Request[In, Out]{done: r.done}
	p.p.Put(r)
}

// Answer returns the function that Queue.Run calls with each batch of
// requests. It answers a request whose context has ended with the
// context's error and leaves it out; it hands the others to commit, which
// runs them as one transaction and leaves each answer in r.Out and r.Err;
// if commit fails, every one of them is answered with its error, for
// nothing of the batch was stored. Then it wakes every caller.
//
// Rejected: handing the answers to a second goroutine so that the writer
// could start the next batch sooner (no difference that we could measure).
func Answer[In, Out any](commit func(live []*Request[In, Out]) error) func(batch []*Request[In, Out]) {
	var live []*Request[In, Out] // reused between batches
	return func(batch []*Request[In, Out]) {
		live = live[:0]
		for _, r := range batch {
			if err := r.Ctx.Err(); err != nil {
				r.Err = err
				continue
			}
			live = append(live, r)
		}
		if len(live) > 0 {
			if err := commit(live); err != nil {
				var none Out
				for _, r := range live {
					r.Out, r.Err = none, err
				}
			}
		}
		clear(live) // let the requests be collected
		for _, r := range batch {
			r.done <- struct{}{}
		}
		clear(batch)
	}
}
