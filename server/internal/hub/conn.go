package hub

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"
)

// Conn is one client session (a Join or Subscribe stream): the rooms it is
// in and its bounded outbound queue. The room's broadcast appends to the
// queue and never blocks. The queue is drained in one of two ways: by a
// goroutine that owns the stream's sends and calls Next, or — after
// ServeWrites — by the hub's writers, a few goroutines that take turns at
// the connections with frames queued (see writers), so an idle connection
// holds no goroutine. A queue that grows past its byte limit cuts the
// connection off with ErrSlowConsumer.
type Conn struct {
	// What a delivery touches comes first, to share as few cache lines as
	// can be: a room's fan-out reaches thousands of connections.
	mu       sync.Mutex // guards the fields up to onEnd, but writers; taken after a room's lock, never before
	err      error      // why the connection ended, once it has
	queue    []Frame
	queued   int // what the queue counts against maxBytes (see cost)
	maxBytes int
	// The queue's memory is given back after a burst (see trimmer).
	peak       int  // the most frames queued since the trimmer last looked
	trimListed bool // on the trimmer's list
	// Push mode (ServeWrites).
	spare   []Frame             // the last batch written, reused as the next queue
	write   func([]Frame) error // sends frames to the client; nil in pull mode
	writers sync.WaitGroup      // the turn in line or being written
	writing bool                // in the writers' line or being written
	readyAt time.Time           // when it joined the writers' line; guarded by the writers' mu
	urgent  bool                // an urgent frame was queued while writing

	draining bool          // Next returns ErrConnClosed once the queue is empty
	rooms    []*room       // the rooms it is in or joining: few, so a slice (a map costs ~250 B more)
	notify   chan struct{} // a frame was queued or the conn ended (cap 1; made by Next)
	drained  chan struct{} // Next or the writer emptied the queue (cap 1; made by awaitRoom)
	done     chan struct{} // closed when err is set; made by Done (an idle stream seldom asks)
	onEnd    func()        // called once when the connection ends

	// ID is unique per connection; it is the conn_id of its presence metas.
	ID string
	// User is the authenticated user id.
	User string
	// Client is the client's self-reported name.
	Client string

	hub     *Hub
	tracked bool // counted in presence
}

// Enqueue queues a frame without blocking. It cuts the connection off with
// ErrSlowConsumer if the queue would exceed its byte limit, and reports
// whether the frame was queued.
func (c *Conn) Enqueue(f Frame) bool { return c.enqueue(f, false) }

// EnqueueUrgent is Enqueue for a frame the client waits on — the answer to
// its own request, its own message — rather than one that everyone in a
// room gets: if the connection has to wait for the hub's writers, it
// waits at the front of their line.
func (c *Conn) EnqueueUrgent(f Frame) bool { return c.enqueue(f, true) }

func (c *Conn) enqueue(f Frame, urgent bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return false
	}
	if c.queued+c.cost(f) > c.maxBytes {
		c.cutOffLocked()
		return false
	}
	c.pushLocked(f, urgent)
	return true
}

// enqueueReplay queues a replayed frame if the queue has room for it: it
// is at most half full and holds less than a replay page of frames.
// Replays are per connection, so they wait for the client (awaitRoom)
// instead of cutting it off, and a replay of a long history has a page or
// so of it queued at a time, not as much as the queue's byte limit allows.
func (c *Conn) enqueueReplay(f Frame) (queued bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return false, c.err
	}
	if c.queued == 0 || (c.queued+c.cost(f) <= c.maxBytes/2 && len(c.queue) < c.hub.cfg.ReplayPage) {
		c.pushLocked(f, false)
		return true, nil
	}
	return false, nil
}

// awaitRoom waits until the client has read what is queued. A client that
// reads nothing for ReplayStall is cut off as a slow consumer all the
// same: it resumes from what it has.
func (c *Conn) awaitRoom(ctx context.Context) error {
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return err
	}
	if c.queued == 0 {
		c.mu.Unlock()
		return nil
	}
	if c.drained == nil {
		c.drained = make(chan struct{}, 1)
	}
	drained, done := c.drained, c.doneLocked()
	c.mu.Unlock()
	stall := time.NewTimer(c.hub.cfg.ReplayStall)
	defer stall.Stop()
	select {
	case <-drained:
		return nil
	case <-done:
		return c.Err()
	case <-ctx.Done():
		return fmt.Errorf("replay: %w", ctx.Err())
	case <-stall.C:
		c.cutOff()
		return c.Err()
	}
}

// cutOff ends the connection as a slow consumer.
func (c *Conn) cutOff() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		c.cutOffLocked()
	}
}

// cutOffLocked ends the live connection as a slow consumer, and counts it.
func (c *Conn) cutOffLocked() {
	c.endLocked(ErrSlowConsumer)
	c.hub.slowCuts.Add(1)
}

// cost is what a frame counts for against the queue's byte limit: its size,
// but at most half the limit. A single frame larger than the limit — the
// joined state of a room with ~15,000 connections or more, a presence diff
// after a mass reconnect — would otherwise cut off every connection it is
// queued for, none of them behind; counted so, it fits a queue without a
// backlog and cuts off only a connection that has one.
func (c *Conn) cost(f Frame) int { return min(len(f.Data)+len(f.Tail), c.maxBytes/2) }

func (c *Conn) pushLocked(f Frame, urgent bool) {
	c.queue = append(c.queue, f)
	c.queued += c.cost(f)
	c.peak = max(c.peak, len(c.queue))
	if cap(c.queue) > queueTrimMin && !c.trimListed {
		c.trimListed = true
		c.hub.trim.list(c)
	}
	if c.write != nil {
		c.startWriterLocked(urgent)
		return
	}
	select {
	case c.notify <- struct{}{}:
	default:
	}
}

// signalDrainedLocked wakes a replay waiting for room in the queue (awaitRoom).
func (c *Conn) signalDrainedLocked() {
	select {
	case c.drained <- struct{}{}: // a nil channel (nobody waited yet) is never ready
	default:
	}
}

// Next waits for queued frames and returns all of them, appending to buf.
// It returns the reason once the connection has ended: ErrSlowConsumer,
// ErrConnClosed, or the cause given to End. It waits for nothing else: a
// caller whose context can end calls End then (see EndWith).
func (c *Conn) Next(buf []Frame) ([]Frame, error) {
	for {
		c.mu.Lock()
		if c.err != nil {
			err := c.err
			c.mu.Unlock()
			return buf, err
		}
		if len(c.queue) > 0 {
			buf = append(buf, c.queue...)
			clear(c.queue)
			c.queue = c.queue[:0]
			c.queued = 0
			c.signalDrainedLocked()
			c.mu.Unlock()
			return buf, nil
		}
		if c.draining {
			c.endLocked(ErrConnClosed)
			c.mu.Unlock()
			continue
		}
		if c.notify == nil {
			c.notify = make(chan struct{}, 1)
		}
		notify := c.notify
		c.mu.Unlock()
		<-notify
	}
}

// ServeWrites puts the connection in push mode: whenever frames are
// queued, the connection gets in the line of the hub's writers, and the
// writer whose turn it is calls write with everything queued, in order;
// frames queued meanwhile wait for its next turn. write may block (flow
// control); an error from it ends the connection. Call it once, before
// frames are queued, and do not call Next afterwards. After the connection
// has ended, WaitWriter waits for a turn still in line or being written.
func (c *Conn) ServeWrites(write func([]Frame) error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.write = write
	if len(c.queue) > 0 {
		c.startWriterLocked(false)
	}
}

// startWriterLocked puts the connection in the writers' line unless it
// is there or being written; an urgent frame moves it to the front of the
// line at its next turn.
func (c *Conn) startWriterLocked(urgent bool) {
	if c.err != nil {
		return
	}
	if c.writing {
		c.urgent = c.urgent || urgent
		return
	}
	c.writing = true
	c.writers.Add(1)
	if !c.hub.writers.ready(c, urgent) {
		// The hub is closed: nothing will write the queue.
		c.writing = false
		c.writers.Done()
		c.endLocked(ErrHubClosed)
	}
}

// writeTurn is the connection's turn with a writer: it hands everything
// queued to write, and reports whether frames came meanwhile (again), so
// that the connection needs another turn, and whether one of them is
// urgent. Queue and batch swap places, so a busy connection copies no
// frames.
func (c *Conn) writeTurn() (again, urgent bool) {
	c.mu.Lock()
	if c.err == nil && len(c.queue) > 0 { // it may have ended while in line
		batch := c.queue
		c.queue, c.spare, c.queued, c.urgent = c.spare, nil, 0, false
		c.signalDrainedLocked()
		c.mu.Unlock()
		if err := c.write(batch); err != nil {
			c.End(err)
		}
		c.mu.Lock()
		if c.err == nil && (c.trimListed || cap(batch) <= queueTrimMin) {
			clear(batch)
			c.spare = batch[:0]
		}
	}
	if c.err != nil || len(c.queue) == 0 {
		c.doneWritingLocked()
		return false, false
	}
	urgent = c.urgent
	c.mu.Unlock()
	return true, urgent
}

// doneWritingLocked ends the connection's turns, and the connection once
// it has drained; it unlocks c.mu.
func (c *Conn) doneWritingLocked() {
	if c.err == nil && c.draining {
		c.endLocked(ErrConnClosed)
	}
	c.writing = false
	c.mu.Unlock()
	c.writers.Done()
}

// WaitWriter waits until the connection is neither in the writers' line
// nor being written (push mode). Call it only after the connection has
// ended (Done is closed): it does not get in line again then.
func (c *Conn) WaitWriter() { c.writers.Wait() }

// OnEnd makes the connection call f once when it ends (at once if it has
// ended already), whatever the cause — for example to start finishing the
// stream it serves. f runs with the connection's lock held, before Done is
// closed (so what f sets is seen by whoever waited on Done): it must not
// block or call the connection.
func (c *Conn) OnEnd(f func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		f()
		return
	}
	c.onEnd = f
}

// EndWith ends the connection with ctx's error when ctx ends, until stop
// is called.
func (c *Conn) EndWith(ctx context.Context) (stop func() bool) {
	return context.AfterFunc(ctx, func() { c.End(ctx.Err()) })
}

// Drain lets Next (or the hub's writers) write what is queued and then
// end the connection with ErrConnClosed: the client is done sending and the
// stream ends once everything was written.
func (c *Conn) Drain() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.draining = true
	if c.write != nil {
		if !c.writing && len(c.queue) == 0 {
			c.endLocked(ErrConnClosed)
		}
		return
	}
	select {
	case c.notify <- struct{}{}:
	default:
	}
}

// End ends the connection with cause (if it has not ended already).
func (c *Conn) End(cause error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.endLocked(cause)
}

func (c *Conn) endLocked(cause error) {
	if c.err != nil {
		return
	}
	c.err = cause
	clear(c.queue)
	c.queue, c.queued, c.spare = nil, 0, nil
	if c.onEnd != nil { // before done is closed: what f sets is seen by those who waited for it
		c.onEnd()
		c.onEnd = nil
	}
	if c.done != nil {
		close(c.done)
	}
	select {
	case c.notify <- struct{}{}:
	default:
	}
}

// Done is closed when the connection has ended.
func (c *Conn) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.doneLocked()
}

func (c *Conn) doneLocked() chan struct{} {
	if c.done == nil {
		if c.err != nil {
			return closedChan
		}
		c.done = make(chan struct{})
	}
	return c.done
}

// closedChan is Done of a connection that ended before anyone asked.
var closedChan = func() chan struct{} {
	ch := make(chan struct{})
	close(ch)
	return ch
}()

// Err returns why the connection ended, or nil while it is open.
func (c *Conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// QueuedBytes returns what the frames waiting in the connection's queue
// count against its limit: their bytes, each frame at most half the limit.
func (c *Conn) QueuedBytes() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.queued
}

// Rooms returns the names of the rooms the connection is in.
func (c *Conn) Rooms() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	names := make([]string, len(c.rooms))
	for i, r := range c.rooms {
		names[i] = r.name
	}
	return names
}

// Close leaves every room the connection is in and ends it with
// ErrConnClosed if it had not ended for another reason.
func (c *Conn) Close() {
	c.End(ErrConnClosed)
	c.mu.Lock()
	rooms := c.rooms
	c.rooms = nil
	c.mu.Unlock()
	for _, r := range rooms {
		r.leave(c)
	}
	c.hub.connClosed(c)
}

// reserve records that the connection is joining r, enforcing the room limit.
func (c *Conn) reserve(r *room, limit int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return c.err
	}
	if c.roomLocked(r.name) >= 0 {
		return fmt.Errorf("room %q: %w", r.name, ErrAlreadyJoined)
	}
	if limit > 0 && len(c.rooms) >= limit {
		return fmt.Errorf("%w (limit %d)", ErrTooManyRooms, limit)
	}
	c.rooms = append(c.rooms, r)
	return nil
}

func (c *Conn) underRoomLimit(limit int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if limit > 0 && len(c.rooms) >= limit {
		return fmt.Errorf("%w (limit %d)", ErrTooManyRooms, limit)
	}
	return nil
}

// release forgets name and returns its room, or nil if the connection was not in it.
func (c *Conn) release(name string) *room {
	c.mu.Lock()
	defer c.mu.Unlock()
	i := c.roomLocked(name)
	if i < 0 {
		return nil
	}
	r := c.rooms[i]
	c.rooms = slices.Delete(c.rooms, i, i+1)
	return r
}

func (c *Conn) joined(name string) *room {
	c.mu.Lock()
	defer c.mu.Unlock()
	if i := c.roomLocked(name); i >= 0 {
		return c.rooms[i]
	}
	return nil
}

// roomLocked returns the index of room name in c.rooms, or -1.
func (c *Conn) roomLocked(name string) int {
	return slices.IndexFunc(c.rooms, func(r *room) bool { return r.name == name })
}
