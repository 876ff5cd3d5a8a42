package load

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	parleyv1 "github.com/parleychat/parley/gen/parley/v1"
)

// Read markers under load (--mark-read-rate): the receiving Join streams
// take turns marking their room read up to the last seq they received,
// as readers scrolling do, so the server's read-marker path runs beside
// the delivery it must not slow. Marks go on the receivers' own streams;
// their replies, and the read_marker events the server sends back, are
// read and dropped with the other non-message frames (a failed reply
// counts as an error).

// markTick is how often the marking loop sends the marks it owes.
const markTick = 10 * time.Millisecond

// markFrame encodes a mark_read frame for room up to seq.
func markFrame(room string, seq uint64) ([]byte, error) {
	return proto.Marshal(&parleyv1.JoinRequest{Ref: "m", Frame: &parleyv1.JoinRequest_MarkRead_{
		MarkRead: &parleyv1.JoinRequest_MarkRead{Room: room, Seq: seq}}})
}

// markReads sends --mark-read-rate marks per second, from start until the
// measured window ends, cycling over the receivers; a receiver that has
// received nothing yet, or whose last mark is still its newest seq, is
// skipped.
func (b *bench) markReads(ctx context.Context, start int64) {
	if b.cfg.markRate <= 0 || len(b.receivers) == 0 || b.sleepUntil(ctx, start) != nil {
		return
	}
	t := time.NewTicker(markTick)
	defer t.Stop()
	owed, last, next := 0.0, time.Now(), 0
	for b.now() < b.winEnd.Load() {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			owed += b.cfg.markRate * now.Sub(last).Seconds()
			last = now
		}
		for tries := 0; owed >= 1 && tries < len(b.receivers); tries++ {
			r := b.receivers[next%len(b.receivers)]
			next++
			if r.markOne() {
				owed--
			}
		}
		owed = min(owed, b.cfg.markRate) // a stall is not made up in a burst
	}
}

// markOne marks r's room read up to the last seq r received, if that
// moved since r's last mark; it reports whether it sent a mark. With
// --mark-read-stale every mark after r's first repeats it, so that no
// marker moves: the server answers each from memory and stores nothing,
// which is the cost of the frames alone.
func (r *receiver) markOne() bool {
	seq := r.seen.Load()
	switch {
	case r.mark == nil || seq == 0 || (seq == r.markedSeq && !r.b.cfg.markStale):
		return false
	case r.b.cfg.markStale && r.markedSeq != 0:
		seq = r.markedSeq
	}
	r.markedSeq = seq
	if err := r.mark(seq); err != nil {
		r.b.countError(status.Code(err), fmt.Sprintf("%s: mark_read: %v", r.name(), err))
		return false
	}
	r.b.marks.Add(1)
	if r.b.inWindow(r.b.now()) {
		r.b.marksMeasured.Add(1)
	}
	return true
}

// reply handles a reply on a receiving stream after its join: only marks
// are answered there, and a failed one is an error of the run.
func (r *receiver) reply(f *wireFrame) {
	if f.code != 0 {
		r.b.countError(codes.Code(f.code), fmt.Sprintf("%s: mark_read: %s", r.name(), f.errMsg))
	}
}
