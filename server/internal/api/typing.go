package api

import (
	"sync"
	"time"

	"github.com/parleychat/parley/server/internal/hub"
)

// defaultTypingInterval is the shortest time between two typing changes
// of one user in one room that are forwarded to the room: 4 per second.
const defaultTypingInterval = 250 * time.Millisecond

// typingLimiter forwards at most one typing change per user per room per
// interval, so that a client sending typing frames as fast as it can
// costs the room's members a few events a second instead of cutting them
// off as slow consumers. A change that comes while a window is open is
// held, latest wins, and forwarded when the window ends if it differs
// from the state last forwarded; so the room always ends with the user's
// last state, whatever the flood. The limit is applied where the frame
// arrives, so it covers the other nodes of a cluster too.
//
// Lock order: mu, then a key's fwd. fwd is taken under mu, in the order
// the decisions are made, so the forwards of one key happen in that order.
type typingLimiter struct {
	interval time.Duration
	forward  func(c *hub.Conn, room string, active bool) error

	mu   sync.Mutex
	keys map[typingKey]*typingWindow // a key only while its window is open
}

type typingKey struct{ user, room string }

// typingWindow is one user's open window in one room.
type typingWindow struct {
	fwd     sync.Mutex // held while forwarding
	last    bool       // the state last forwarded
	held    bool       // a change waits for the window's end
	active  bool       // the change held
	conn    *hub.Conn  // the connection the held change came from
	timer   *time.Timer
	stopped bool // the limiter was stopped: forward nothing more
}

func newTypingLimiter(interval time.Duration, forward func(*hub.Conn, string, bool) error) *typingLimiter {
	return &typingLimiter{interval: interval, forward: forward, keys: make(map[typingKey]*typingWindow)}
}

// typing forwards c's user's typing change in room now, or holds it until
// the user's window in the room ends.
func (l *typingLimiter) typing(c *hub.Conn, room string, active bool) error {
	k := typingKey{c.User, room}
	l.mu.Lock()
	if w := l.keys[k]; w != nil {
		w.held, w.active, w.conn = true, active, c
		l.mu.Unlock()
		return nil
	}
	w := &typingWindow{last: active}
	w.timer = time.AfterFunc(l.interval, func() { l.windowEnd(k, w) })
	l.keys[k] = w
	w.fwd.Lock()
	l.mu.Unlock()
	defer w.fwd.Unlock()
	return l.forward(c, room, active)
}

// windowEnd forwards the change held in w, if it changes anything, and
// then keeps the window open for another interval; otherwise it closes it.
func (l *typingLimiter) windowEnd(k typingKey, w *typingWindow) {
	l.mu.Lock()
	if w.stopped || !w.held || w.active == w.last {
		delete(l.keys, k)
		l.mu.Unlock()
		return
	}
	c, active := w.conn, w.active
	w.last, w.held, w.conn = active, false, nil
	w.timer.Reset(l.interval)
	w.fwd.Lock()
	l.mu.Unlock()
	defer w.fwd.Unlock()
	_ = l.forward(c, k.room, active) // fails only if c has left the room or ended: nobody to tell
}

// stop forwards nothing more and stops every window's timer.
func (l *typingLimiter) stop() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for k, w := range l.keys {
		w.stopped = true
		w.timer.Stop()
		delete(l.keys, k)
	}
}
