package load

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/cmd/parley/internal/cli"
	parleyv1 "github.com/parleychat/parley/gen/parley/v1"
)

var (
	joinDesc      = &grpc.StreamDesc{StreamName: "Join", ServerStreams: true, ClientStreams: true}
	subscribeDesc = &grpc.StreamDesc{StreamName: "Subscribe", ServerStreams: true}
)

// receiver is one receiving stream in one room. Its goroutine owns every
// field but the atomic counters, which the progress line and the report
// read.
type receiver struct {
	b      *bench
	id     int
	room   int
	stream grpc.ClientStream
	last   uint64 // last seq seen in the room

	seen      atomic.Uint64          // last, for the marking loop
	mark      func(seq uint64) error // sends a mark_read frame; nil on Subscribe
	markedSeq uint64                 // the last seq marked (the marking loop's)

	frames   atomic.Uint64 // message frames received
	measured atomic.Uint64 // distinct messages sent in the measured window
	dups     atomic.Uint64 // seq not above the last one seen
	gaps     atomic.Uint64 // seq more than one above the last one seen
	foreign  atomic.Uint64 // messages that are not the bench's
	presence atomic.Uint64 // presence diffs received after the joined frame
}

// request is what opens r's stream: the method and its first message,
// and whether the client keeps sending (Join) or is done (Subscribe).
func (r *receiver) request() (method string, msg proto.Message, desc *grpc.StreamDesc) {
	room := r.b.roomNames[r.room]
	if r.b.cfg.subscribe {
		return parleyv1.ChatService_Subscribe_FullMethodName, &parleyv1.SubscribeRequest{Room: room}, subscribeDesc
	}
	return parleyv1.ChatService_Join_FullMethodName,
		&parleyv1.JoinRequest{Ref: "j", Frame: &parleyv1.JoinRequest_Join{Join: &parleyv1.JoinRequest_JoinRoom{Room: room}}}, joinDesc
}

// joined reads a frame that arrived before the stream joined its room: it
// reports whether this is the joined frame (and keeps its head), or the
// error a refused join replied.
func (r *receiver) joined(f *wireFrame) (bool, error) {
	switch {
	case f.kind == kindReply && f.code != 0:
		return false, status.Error(codes.Code(f.code), f.errMsg)
	case f.kind == kindJoined && f.roomOK:
		r.last = f.seq
		return true, nil
	}
	return false, nil
}

// name identifies r in errors.
func (r *receiver) name() string { return fmt.Sprintf("receiver %d (%s)", r.id, r.b.roomNames[r.room]) }

// open starts the stream with grpc-go in streamCtx, joins the room, and
// waits for the joined frame; if wait ends first, the stream ends too.
func (r *receiver) open(wait, streamCtx context.Context, conn *grpc.ClientConn, token string) error {
	room := r.b.roomNames[r.room]
	method, msg, desc := r.request()
	ctx, cancel := context.WithCancel(streamCtx)
	defer context.AfterFunc(wait, cancel)()
	var err error
	r.stream, err = conn.NewStream(cli.WithAuth(ctx, token), desc, method, grpc.ForceCodecV2(r.b.codec))
	if err == nil {
		err = r.stream.SendMsg(msg)
	}
	if err == nil && !desc.ClientStreams {
		err = r.stream.CloseSend()
	}
	if err != nil {
		return fmt.Errorf("open stream in %s: %w", room, err)
	}
	f := &wireFrame{wantRoom: room}
	for {
		if err := r.stream.RecvMsg(f); err != nil {
			return fmt.Errorf("join %s: %w", room, err)
		}
		if ok, err := r.joined(f); ok || err != nil {
			if err != nil {
				return fmt.Errorf("join %s: %w", room, err)
			}
			if desc.ClientStreams {
				r.mark = func(seq uint64) error {
					return r.stream.SendMsg(&parleyv1.JoinRequest{Ref: "m", Frame: &parleyv1.JoinRequest_MarkRead_{
						MarkRead: &parleyv1.JoinRequest_MarkRead{Room: room, Seq: seq}}})
				}
			}
			return nil
		}
	}
}

// receive reads the stream until it ends: the hot path. It checks each
// message's seq against the last one seen in the room and records the
// delivery latency of messages sent in the measured window.
func (r *receiver) receive() {
	b := r.b
	f := &wireFrame{wantRoom: b.roomNames[r.room]}
	for {
		if err := r.stream.RecvMsg(f); err != nil {
			b.streamEnded(r.name(), err)
			return
		}
		switch f.kind {
		case kindMessage:
			r.deliver(f)
		case kindReply:
			r.reply(f)
		case kindPresence:
			r.presence.Add(1)
		}
	}
}

// deliver checks a message frame's seq against the last one seen in the
// room and records its delivery latency. Only the stream's reader calls it.
func (r *receiver) deliver(f *wireFrame) {
	b := r.b
	now := b.now()
	r.frames.Add(1)
	if !f.roomOK || f.sent < 0 {
		r.foreign.Add(1)
		return
	}
	switch seq := f.seq; {
	case seq <= r.last:
		r.dups.Add(1)
		return
	case seq > r.last+1:
		r.gaps.Add(1)
	}
	r.last = f.seq
	if r.b.cfg.markRate > 0 {
		r.seen.Store(f.seq)
	}
	lat := time.Duration(now - f.sent)
	b.live.record(r.id, lat)
	if b.inWindow(f.sent) {
		r.measured.Add(1)
		b.e2e.record(r.id, lat)
	}
}

// ackSlot remembers an unacknowledged send. Written by the send loop,
// read by the sender's reader, so its fields are atomic.
type ackSlot struct {
	ref  atomic.Uint64
	sent atomic.Int64
	room atomic.Int32
}

// sender is one Join stream that sends to its rooms at its share of the
// rate, keeping at most cap(window) sends unacknowledged.
type sender struct {
	b      *bench
	id     int
	rooms  []int
	stream grpc.ClientStream
	window chan struct{} // a token per unacknowledged send
	ring   []ackSlot
	ready  chan error // the reader saw every room joined, or a failure
	next   int        // the next send's number (--ramp: sendRound)

	// With --send-via unary: no stream, a SendMessage call per send.
	api   parleyv1.ChatServiceClient
	token string

	sent     atomic.Uint64
	acked    atomic.Uint64
	failed   atomic.Uint64
	measured atomic.Uint64 // sends in the measured window
}

func newSender(b *bench, id int, rooms []int, window int) *sender {
	n := 1
	for n < 2*window {
		n <<= 1
	}
	return &sender{b: b, id: id, rooms: rooms, window: make(chan struct{}, window), ring: make([]ackSlot, n), ready: make(chan error, 1)}
}

// open starts the sender's Join stream and joins its rooms.
func (s *sender) open(ctx context.Context, conn *grpc.ClientConn, token string) error {
	var err error
	s.stream, err = conn.NewStream(cli.WithAuth(ctx, token), joinDesc, parleyv1.ChatService_Join_FullMethodName, grpc.ForceCodecV2(s.b.codec))
	if err != nil {
		return fmt.Errorf("sender %d: open stream: %w", s.id, err)
	}
	for i, room := range s.rooms {
		req := &parleyv1.JoinRequest{Ref: "j" + strconv.Itoa(i), Frame: &parleyv1.JoinRequest_Join{Join: &parleyv1.JoinRequest_JoinRoom{Room: s.b.roomNames[room]}}}
		if err := s.stream.SendMsg(req); err != nil {
			return fmt.Errorf("sender %d: join: %w", s.id, err)
		}
	}
	s.b.readers.Add(1)
	go func() {
		defer s.b.readers.Done()
		s.read()
	}()
	select {
	case err := <-s.ready:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// read handles the sender's stream: join replies, then acks. Messages
// (the sender is in its rooms too) are dropped.
func (s *sender) read() {
	b := s.b
	f := &wireFrame{}
	joined := 0
	for {
		if err := s.stream.RecvMsg(f); err != nil {
			s.signal(fmt.Errorf("sender %d: %w", s.id, err))
			b.streamEnded(fmt.Sprintf("sender %d", s.id), err)
			return
		}
		switch {
		case f.kind == kindJoined:
			if joined++; joined == len(s.rooms) {
				s.signal(nil)
			}
		case f.kind == kindReply && !f.refOK && f.code != 0:
			s.signal(fmt.Errorf("sender %d: join: %w", s.id, status.Error(codes.Code(f.code), f.errMsg)))
		case f.kind == kindReply && f.refOK:
			s.ack(f)
		}
	}
}

// signal reports the outcome of the joins to open; only the first counts.
func (s *sender) signal(err error) {
	select {
	case s.ready <- err:
	default:
	}
}

func (s *sender) ack(f *wireFrame) {
	b := s.b
	now := b.now()
	slot := &s.ring[f.ref&uint64(len(s.ring)-1)]
	if slot.ref.Load() != f.ref {
		b.countError(codes.Internal, fmt.Sprintf("sender %d: reply to unknown ref %d", s.id, f.ref))
		return
	}
	s.settleAt(now, int(slot.room.Load()), slot.sent.Load(), codes.Code(f.code), f.errMsg)
}

// settle counts the answer to a send to room stamped sent: an ack, or a
// failure with its code and message; and frees its place in the window.
func (s *sender) settle(room int, sent int64, code codes.Code, msg string) {
	s.settleAt(s.b.now(), room, sent, code, msg)
}

func (s *sender) settleAt(now int64, room int, sent int64, code codes.Code, msg string) {
	b := s.b
	if code != codes.OK {
		s.failed.Add(1)
		b.countError(code, fmt.Sprintf("send: %s", msg))
	} else {
		s.acked.Add(1)
		lat := time.Duration(now - sent)
		b.ackLive.record(s.id, lat)
		if b.inWindow(sent) {
			b.roomAcked[room].Add(1)
			b.ack.record(s.id, lat)
		}
	}
	<-s.window
}

// run sends until the measured window ends: at the fixed rate given by
// interval (messages are stamped with their scheduled time, so a sender
// that falls behind shows it in the latencies), or, with interval 0, as
// fast as the window of unacknowledged sends allows.
func (s *sender) run(ctx context.Context, start int64, interval time.Duration) {
	b := s.b
	end := b.winEnd.Load()
	body := make([]byte, 0, b.cfg.size)
	next := start
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for k := 0; ; k++ {
		if interval > 0 {
			if next >= end {
				return
			}
			if d := time.Duration(next - b.now()); d > 0 {
				timer.Reset(d)
				select {
				case <-timer.C:
				case <-ctx.Done():
					return
				}
			}
		} else if b.now() >= end {
			return
		}
		select {
		case s.window <- struct{}{}:
		case <-ctx.Done():
			return
		}
		stamp := next
		if interval == 0 {
			stamp = b.now()
		} else {
			b.noteLag(b.now() - stamp)
			next += int64(interval)
		}
		if err := s.send(k, stamp, &body); err != nil {
			return
		}
	}
}

func (s *sender) send(k int, stamp int64, body *[]byte) error {
	b := s.b
	room := s.rooms[k%len(s.rooms)]
	ref := uint64(k) + 1
	refs := strconv.FormatUint(ref, 10)
	*body = appendBody((*body)[:0], stamp, b.cfg.size)
	s.sent.Add(1)
	if b.inWindow(stamp) {
		s.measured.Add(1)
	}
	if s.api != nil {
		s.sendUnary(room, stamp, string(*body), b.clientMsgID(stamp, s.id, refs))
		return nil
	}
	slot := &s.ring[ref&uint64(len(s.ring)-1)]
	slot.sent.Store(stamp)
	slot.room.Store(int32(room))
	slot.ref.Store(ref)
	req := &parleyv1.JoinRequest{Ref: refs, Frame: &parleyv1.JoinRequest_Send{Send: &parleyv1.JoinRequest_Post{
		Room: b.roomNames[room], Body: string(*body), ClientMsgId: b.clientMsgID(stamp, s.id, refs),
	}}}
	if err := s.stream.SendMsg(req); err != nil {
		<-s.window
		return err // the reader reports why the stream ended
	}
	return nil
}

// sendUnary sends a message to room with SendMessage and, when it is
// answered, counts it as ack counts a reply on a Join stream. The call runs
// on a goroutine of its own, so a sender keeps up to cap(window) calls in
// flight; with --rate 0 that is one, and the sender waits for each answer.
func (s *sender) sendUnary(room int, stamp int64, body, msgID string) {
	b := s.b
	b.readers.Add(1)
	go func() {
		defer b.readers.Done()
		_, err := s.api.SendMessage(cli.WithAuth(b.streamCtx, s.token),
			&parleyv1.SendMessageRequest{Room: b.roomNames[room], Body: body, ClientMsgId: msgID})
		if err != nil && b.stopping.Load() {
			<-s.window
			return // the bench ended the call
		}
		st := status.Convert(err)
		s.settle(room, stamp, st.Code(), st.Message())
	}()
}

// drained waits until every send is acknowledged or until deadline.
func (s *sender) drained(deadline time.Time) bool {
	for time.Now().Before(deadline) {
		if len(s.window) == 0 {
			return true
		}
		time.Sleep(5 * time.Millisecond) // polling interval
	}
	return len(s.window) == 0
}

// sendRound sends one message to each of the sender's rooms, now, and
// waits until deadline for their acks (--ramp).
func (s *sender) sendRound(ctx context.Context, deadline time.Time) error {
	body := make([]byte, 0, s.b.cfg.size)
	for range s.rooms {
		select {
		case s.window <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		k := s.next
		s.next++
		if err := s.send(k, s.b.now(), &body); err != nil {
			return fmt.Errorf("sender %d: %w", s.id, err)
		}
	}
	if !s.drained(deadline) {
		return fmt.Errorf("sender %d: %d sends not acknowledged within --drain", s.id, len(s.window))
	}
	return nil
}
