package hub

import (
	"runtime"
	"slices"
	"sync"
	"time"
)

// writers runs the push-mode writes of a hub's connections (ServeWrites)
// on a few goroutines. A connection with frames queued waits in a line of
// ready connections; a writer takes the first, writes what its queue holds
// and, if more came meanwhile, puts it back at the end. So a room's
// fan-out to thousands of connections starts no goroutine per connection:
// starting one cost a goroutine, a stack grown to grpc-go's depth and the
// scheduler's work each time, and thousands queued at once made every
// delivery's last step (grpc-go's writer, which yields once before it
// flushes) wait behind all of them.
//
// At most GOMAXPROCS writers run, started as connections get ready and
// ending when the line is empty, so an idle hub holds none. A write can
// block for long — HTTP/2 flow control holds a client that does not read
// — so a writer that has made no progress for a whole check period while
// connections wait no longer counts, and another starts in its place.
//
// close stops new writers from starting and waits for the running ones,
// which finish the line first; a connection readied after close is
// refused (ready returns false).
type writers struct {
	mu      sync.Mutex
	line    deque         // connections ready to write, in turn
	running []*writer     // writers running, stuck ones included
	stuck   int           // how many of running are stuck
	max     int           // writers that may run, not counting stuck ones
	check   *time.Timer   // armed while connections wait and no writer may start
	armed   bool          // check is armed
	period  time.Duration // of check: stuckAfter (tests change it)
	closed  bool          // set by close: no writer starts any more
	wg      sync.WaitGroup
}

// writer is one writer goroutine's record, guarded by writers.mu.
type writer struct {
	turns int  // connections taken so far
	seen  int  // turns at the last check
	stuck bool // no progress for a whole check period
}

// stuckAfter is the check period: a writer that takes no connection for a
// whole period while others wait is stuck, so one in a single write for
// one to two periods gets another writer started beside it.
const stuckAfter = 10 * time.Millisecond

func newWriters() *writers {
	w := &writers{max: runtime.GOMAXPROCS(0), period: stuckAfter}
	w.check = time.AfterFunc(time.Hour, w.checkStuck)
	w.check.Stop()
	return w
}

// ready puts c in line, at the front if urgent, and starts a writer if
// one may start. After close it queues nothing and returns false.
func (w *writers) ready(c *Conn, urgent bool) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return false
	}
	w.enlineLocked(c, urgent)
	w.startLocked()
	return true
}

// enlineLocked puts c in line, at the front if urgent, noting when for
// the line-wait histogram.
func (w *writers) enlineLocked(c *Conn, urgent bool) {
	c.readyAt = time.Now()
	w.line.push(c, urgent)
}

// close lets no writer start any more and waits for the running ones,
// which write the connections still in line before they return.
func (w *writers) close() {
	w.mu.Lock()
	w.closed = true
	w.check.Stop()
	w.armed = false
	w.mu.Unlock()
	w.wg.Wait()
}

// startLocked starts a writer if connections wait and fewer than max
// writers make progress, or else has the line checked for stuck writers.
func (w *writers) startLocked() {
	if len(w.running)-w.stuck < w.max {
		wr := &writer{}
		w.running = append(w.running, wr)
		w.wg.Go(func() { w.run(wr) }) // under w.mu: before close's Wait
		return
	}
	if !w.armed {
		w.armed = true
		w.check.Reset(w.period)
	}
}

// run takes connections from the line and writes them until the line is
// empty, or until it has been replaced as stuck and others run enough.
func (w *writers) run(wr *writer) {
	w.mu.Lock()
	for {
		if wr.stuck {
			wr.stuck = false
			w.stuck--
		}
		if w.line.len() == 0 || len(w.running)-w.stuck > w.max {
			w.running = slices.DeleteFunc(w.running, func(x *writer) bool { return x == wr })
			w.mu.Unlock()
			return
		}
		c := w.line.popFront()
		wr.turns++
		waited := since(c.readyAt)
		w.mu.Unlock()
		c.hub.lat.lineWait.Observe(waited)
		again, urgent := c.writeTurn()
		w.mu.Lock()
		if again {
			w.enlineLocked(c, urgent)
		}
	}
}

// checkStuck runs a check period after connections found no writer free:
// a writer that took no connection since the last check is stuck in a
// write, and another may start in its place.
func (w *writers) checkStuck() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	w.armed = false
	for _, wr := range w.running {
		if !wr.stuck && wr.turns == wr.seen {
			wr.stuck = true
			w.stuck++
		}
		wr.seen = wr.turns
	}
	if w.line.len() > 0 {
		w.startLocked()
	}
}

// deque is a ring of connections.
type deque struct {
	buf  []*Conn
	head int
	n    int
}

func (d *deque) len() int { return d.n }

func (d *deque) grow() {
	if d.n < len(d.buf) {
		return
	}
	buf := make([]*Conn, max(16, 2*len(d.buf)))
	for i := range d.n {
		buf[i] = d.buf[(d.head+i)%len(d.buf)]
	}
	d.buf, d.head = buf, 0
}

// push puts c at the back, or at the front.
func (d *deque) push(c *Conn, front bool) {
	d.grow()
	if front {
		d.head = (d.head - 1 + len(d.buf)) % len(d.buf)
		d.buf[d.head] = c
	} else {
		d.buf[(d.head+d.n)%len(d.buf)] = c
	}
	d.n++
}

func (d *deque) popFront() *Conn {
	if d.n == 0 {
		return nil
	}
	c := d.buf[d.head]
	d.buf[d.head] = nil
	d.head = (d.head + 1) % len(d.buf)
	d.n--
	return c
}
