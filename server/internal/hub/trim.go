package hub

import (
	"sync"
	"time"
)

// queueTrimMin is the capacity, in frames, up to which a connection's
// queue is kept however long it goes unused: about what a connection
// written as fast as its messages come needs.
const queueTrimMin = 16

// trimmer gives back the memory of connections' queues after a burst. A
// queue is a slice that grows as frames come faster than they are written
// (a crowd's presence, a replay, a client slow to read) and, like any Go
// slice, keeps the largest size it reached; so do the batches it swaps
// with (Conn.spare). A connection whose queue grew past queueTrimMin is
// put on a list; every delay, each listed connection whose queue held at
// most queueTrimMin frames since the last look drops its arrays, and leaves
// the list; one still busy keeps them, so a connection under steady load
// does not allocate its queue afresh at every turn. So a queue gives its
// memory back one to two delays after its last burst.
type trimmer struct {
	delay time.Duration
	mu    sync.Mutex // taken after a Conn's mu, never before
	conns []*Conn    // listed connections (Conn.trimListed)
	timer *time.Timer
	armed bool
	fire  func() // calls run, counted by the hub's lifetime (see Hub.New)
	done  bool   // set by close: the timer is not armed again
}

// list puts c on the list; c.mu is held and c.trimListed was false.
func (t *trimmer) list(c *Conn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.done {
		return
	}
	t.conns = append(t.conns, c)
	if !t.armed {
		t.armed = true
		if t.timer == nil {
			t.timer = time.AfterFunc(t.delay, t.fire)
		} else {
			t.timer.Reset(t.delay)
		}
	}
}

// run looks at every listed connection once, and comes back after delay
// while any is still listed.
func (t *trimmer) run() {
	t.mu.Lock()
	conns := t.conns
	t.conns = nil // a fresh list: the old one kept its peak
	t.mu.Unlock()
	var keep []*Conn
	for _, c := range conns {
		if c.trimQueue() {
			keep = append(keep, c)
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.conns = append(t.conns, keep...)
	t.armed = len(t.conns) > 0 && !t.done
	if t.armed {
		t.timer.Reset(t.delay)
	}
}

// close disarms the timer for good: the hub is closing.
func (t *trimmer) close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.done = true
	t.conns = nil
	if t.timer != nil {
		t.timer.Stop()
	}
}

// trimQueue drops the queue's arrays if it held at most queueTrimMin
// frames since the last look, and reports whether c stays listed.
func (c *Conn) trimQueue() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	busy := c.peak
	c.peak = len(c.queue)
	if c.err == nil && busy > queueTrimMin {
		return true
	}
	c.trimListed = false
	c.spare = nil // a batch being written is dropped when it comes back (writeTurn)
	if len(c.queue) == 0 {
		c.queue = nil
	} else {
		c.queue = append([]Frame(nil), c.queue...)
	}
	return false
}

// QueueCap returns how many frames the connection's queue and its spare
// batch can hold without growing: the memory they keep.
func (c *Conn) QueueCap() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return cap(c.queue) + cap(c.spare)
}
