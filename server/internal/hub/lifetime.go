package hub

import (
	"context"
	"sync"
	"time"
)

// lifetime owns the goroutines a hub starts: each derives its context
// from ctx, which Close cancels, and counts in wg, which Close waits on.
// Once closed, nothing new starts: go and the functions made by timed do
// nothing, so a timer that fires after Close touches nothing.
type lifetime struct {
	ctx    context.Context
	cancel context.CancelFunc
	mu     sync.Mutex // guards closed and orders wg.Add before wg.Wait
	closed bool
	wg     sync.WaitGroup
}

func newLifetime() *lifetime {
	ctx, cancel := context.WithCancel(context.Background())
	return &lifetime{ctx: ctx, cancel: cancel}
}

// enter counts one more goroutine, unless closed; exit ends its count.
func (l *lifetime) enter() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.wg.Add(1)
	return true
}

func (l *lifetime) exit() { l.wg.Done() }

// do runs fn counted, on this goroutine, and reports whether it did.
func (l *lifetime) do(fn func()) bool {
	if !l.enter() {
		return false
	}
	defer l.exit()
	fn()
	return true
}

// goCounted starts fn on a counted goroutine, unless closed.
func (l *lifetime) goCounted(fn func()) bool {
	if !l.enter() {
		return false
	}
	go func() {
		defer l.exit()
		fn()
	}()
	return true
}

// timed returns fn for time.AfterFunc: it runs counted, or not at all
// once closed.
func (l *lifetime) timed(fn func()) func() { return func() { l.do(fn) } }

// withTimeout is the lifetime's context bounded by d.
func (l *lifetime) withTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(l.ctx, d)
}

// close cancels the lifetime's context, lets nothing new start, and waits
// for what runs to return. It may be called more than once.
func (l *lifetime) close() {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	l.cancel()
	l.wg.Wait()
}
