package load

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
)

// The soak's checker holds every stream to the server's guarantees,
// exactly: per room, a stream delivers every seq above where it started
// (after_seq, or joined.head_seq for a live join) once, in order, with no
// gap; a send's reply never arrives before any message of its room with a
// lower seq, nor before the sent message itself; an idempotent retry is
// answered with the original seq. A stream cut mid-way is checked up to
// where it was cut: the stream that resumes starts where it ended.

// Kinds of violation.
const (
	violGap        = "gap"              // a seq skipped (its predecessors never arrived)
	violDuplicate  = "duplicate"        // a seq delivered twice on one stream
	violReorder    = "reorder"          // a skipped seq arrived late
	violReplyEarly = "reply-before-seq" // a send's reply before a lower seq or the message itself
	violIdempotent = "idempotency"      // a retry answered with another seq, or one id stored twice
	violCutAhead   = "cut-off-ahead"    // a slow-consumer position beyond what arrived
	violLeak       = "leak"             // streams, connections, goroutines or fds not released
	violStream     = "stream-error"     // a stream ended with a status the soak did not cause
)

// checker collects violations from every stream. It prints the first
// maxPrinted as they happen, one line each, and counts all of them.
type checker struct {
	out        io.Writer // where violation lines go (nil: nowhere)
	maxPrinted int

	mu      sync.Mutex
	byKind  map[string]uint64
	printed int
	samples []string // the first few lines, for the report

	deliveries atomic.Uint64 // message frames checked
	replies    atomic.Uint64 // send replies checked
}

func newChecker(out io.Writer) *checker {
	return &checker{out: out, maxPrinted: 200, byKind: make(map[string]uint64)}
}

// violation records one violation of kind, described by format and args.
func (c *checker) violation(kind, format string, args ...any) {
	line := fmt.Sprintf("VIOLATION %s: %s", kind, fmt.Sprintf(format, args...))
	c.mu.Lock()
	defer c.mu.Unlock()
	c.byKind[kind]++
	if len(c.samples) < 10 {
		c.samples = append(c.samples, line)
	}
	if c.out == nil {
		return
	}
	if c.printed < c.maxPrinted {
		fmt.Fprintln(c.out, line)
	} else if c.printed == c.maxPrinted {
		fmt.Fprintf(c.out, "(more violations are counted, not printed)\n")
	}
	c.printed++
}

// count returns the violations of kind, or of every kind for "".
func (c *checker) count(kind string) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if kind != "" {
		return c.byKind[kind]
	}
	var n uint64
	for _, v := range c.byKind {
		n += v
	}
	return n
}

// kinds returns "kind n" for each kind seen, sorted.
func (c *checker) kinds() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for k, v := range c.byKind {
		out = append(out, fmt.Sprintf("%s %d", k, v))
	}
	sort.Strings(out)
	return out
}

// streamView is the checker's record of one stream: per room, the last
// seq delivered. One goroutine (the stream's reader) uses it.
type streamView struct {
	c       *checker
	name    string
	rooms   map[string]*roomView
	explain func(room string) string // optional: what the stream did in room, for violation lines
}

// where names the stream and room in a violation line.
func (v *streamView) where(room string) string {
	if v.explain == nil {
		return v.name + " room " + room
	}
	return fmt.Sprintf("%s room %s (%s)", v.name, room, v.explain(room))
}

// roomView is one room on one stream.
type roomView struct {
	last    uint64              // the highest seq delivered (or the start position)
	missing map[uint64]struct{} // seqs skipped by a gap, not yet delivered
}

func (c *checker) stream(name string) *streamView {
	return &streamView{c: c, name: name, rooms: make(map[string]*roomView)}
}

// start begins checking room from after: the next message must be after+1.
func (v *streamView) start(room string, after uint64) {
	v.rooms[room] = &roomView{last: after}
}

// stop ends checking room (left, or the stream ended); seqs still missing
// are gaps.
func (v *streamView) stop(room string) {
	rv := v.rooms[room]
	if rv == nil {
		return
	}
	delete(v.rooms, room)
	if len(rv.missing) > 0 {
		v.c.violation(violGap, "%s: %d seq(s) skipped and never delivered, e.g. %d", v.where(room), len(rv.missing), anyKey(rv.missing))
	}
}

// stopAll ends checking every room.
func (v *streamView) stopAll() {
	for room := range v.rooms {
		v.stop(room)
	}
}

// last returns the last seq delivered in room, and whether the stream is in it.
func (v *streamView) last(room string) (uint64, bool) {
	rv := v.rooms[room]
	if rv == nil {
		return 0, false
	}
	return rv.last, true
}

// message checks one delivered message.
func (v *streamView) message(room string, seq uint64) {
	v.c.deliveries.Add(1)
	rv := v.rooms[room]
	if rv == nil {
		v.c.violation(violStream, "%s: message %d of room %s, which the stream is not in", v.name, seq, room)
		return
	}
	switch {
	case seq == rv.last+1:
		rv.last = seq
	case seq > rv.last+1:
		if rv.missing == nil {
			rv.missing = make(map[uint64]struct{})
		}
		// A bound on what one gap remembers: a gap this large is reported
		// at the end whether or not its seqs arrive later.
		for s := rv.last + 1; s < seq && len(rv.missing) < 1<<16; s++ {
			rv.missing[s] = struct{}{}
		}
		rv.last = seq
	default:
		if _, ok := rv.missing[seq]; ok {
			delete(rv.missing, seq)
			v.c.violation(violReorder, "%s: seq %d arrived after %d", v.where(room), seq, rv.last)
			return
		}
		v.c.violation(violDuplicate, "%s: seq %d again (last %d)", v.where(room), seq, rv.last)
	}
}

// reply checks the reply to a send stored at seq in room: every lower seq
// and seq itself must have arrived on the stream already.
func (v *streamView) reply(room string, seq uint64) {
	v.c.replies.Add(1)
	rv := v.rooms[room]
	if rv == nil {
		return // left before the reply: nothing of the room is delivered any more
	}
	if seq > rv.last {
		v.c.violation(violReplyEarly, "%s: reply with seq %d arrived when the stream had received up to %d", v.where(room), seq, rv.last)
		return
	}
	if hasMissingBelow(rv.missing, seq) {
		v.c.violation(violReplyEarly, "%s: reply with seq %d arrived before a lower seq", v.where(room), seq)
	}
}

func hasMissingBelow(m map[uint64]struct{}, seq uint64) bool {
	for s := range m {
		if s <= seq {
			return true
		}
	}
	return false
}

func anyKey(m map[uint64]struct{}) uint64 {
	for k := range m {
		return k
	}
	return 0
}

// idLedger checks idempotent sends for one user: per (room,
// client_msg_id), the seq the message was stored at, learnt from the
// user's own messages and the replies. An id that is sent again (watched)
// is kept for the whole run; another is forgotten at its reply, so the
// ledger holds only sends in flight and retried ones.
type idLedger struct {
	c  *checker
	mu sync.Mutex
	m  map[string]*idEntry
}

type idEntry struct {
	seq  uint64 // 0 until known
	keep bool   // the id was or will be sent again
}

func newIDLedger(c *checker) *idLedger { return &idLedger{c: c, m: make(map[string]*idEntry)} }

func ledgerKey(room, id string) string { return room + "\x00" + id }

// watch keeps id's entry for the rest of the run.
func (l *idLedger) watch(room, id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.m[ledgerKey(room, id)]
	if e == nil {
		e = &idEntry{}
		l.m[ledgerKey(room, id)] = e
	}
	e.keep = true
}

// has reports whether id has an entry.
func (l *idLedger) has(room, id string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.m[ledgerKey(room, id)] != nil
}

// message records that the user's message id in room was stored at seq;
// a different seq for the same id means it was stored twice.
func (l *idLedger) message(who, room, id string, seq uint64) {
	l.observe(who, "message", room, id, seq, false)
}

// reply records the seq a send of id was answered with; a different seq
// than before means a retry was not answered with the original.
func (l *idLedger) reply(who, room, id string, seq uint64) {
	l.observe(who, "reply", room, id, seq, true)
}

func (l *idLedger) observe(who, what, room, id string, seq uint64, settle bool) {
	if id == "" {
		return
	}
	key := ledgerKey(room, id)
	l.mu.Lock()
	e := l.m[key]
	if e == nil {
		e = &idEntry{}
		l.m[key] = e
	}
	prev := e.seq
	if prev == 0 {
		e.seq = seq
	}
	if settle && !e.keep {
		delete(l.m, key)
	}
	l.mu.Unlock()
	if prev != 0 && prev != seq {
		l.c.violation(violIdempotent, "%s room %s: client_msg_id %s stored at seq %d, now a %s with seq %d", who, room, id, prev, what, seq)
	}
}

// reportLines are the checker's lines of the summary.
func (c *checker) reportLines() []string {
	kinds := c.kinds()
	if len(kinds) == 0 {
		return []string{"violations\tnone"}
	}
	return []string{"violations\t" + strings.Join(kinds, ", ")}
}
