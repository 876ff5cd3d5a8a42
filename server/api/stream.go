package api

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/parleychat/parley/server/hub"
)

// positions records, per room, the last seq written to a stream, so a
// client that is cut off can be told where to resume. Only the stream's
// writer goroutine uses it.
type positions struct {
	seqs map[string]uint64
	room string // the room of the last frame written, not yet in seqs
	seq  uint64
}

func (p *positions) set(room string, seq uint64) {
	if room != p.room && p.room != "" {
		p.flush()
	}
	p.room, p.seq = room, seq
}

func (p *positions) flush() {
	if p.seqs == nil {
		p.seqs = make(map[string]uint64)
	}
	p.seqs[p.room] = p.seq
}

func (p *positions) snapshot() map[string]uint64 {
	out := make(map[string]uint64, len(p.seqs)+1)
	for k, v := range p.seqs {
		out[k] = v
	}
	if p.room != "" {
		out[p.room] = p.seq
	}
	return out
}

// writeLoop is the only code that sends on a stream: it drains the
// connection's queue until the connection ends, and returns why.
func writeLoop(ss grpc.ServerStream, conn *hub.Conn, pos *positions) error {
	var buf []hub.Frame
	for {
		frames, err := conn.Next(buf[:0])
		if err != nil {
			return err
		}
		for _, f := range frames {
			if err := ss.SendMsg(rawFrame(f.Data)); err != nil {
				conn.End(err)
				return err
			}
			if f.Room != "" {
				pos.set(f.Room, f.Seq)
			}
		}
		clear(frames)
		buf = frames
	}
}

// runStream drives a session until it ends and returns the status that
// ends the stream. The handler's goroutine is the writer: it sends what the
// hub queues. read, if not nil, consumes client frames on a second
// goroutine, tracked by s.streams; it ends with the stream. Whatever ends
// the session — the client, the hub, the token's expiry, a failed read or
// write — ends conn first, and the writer returns its cause.
func (s *Service) runStream(ss grpc.ServerStream, conn *hub.Conn, expires func() time.Time, read func() error) error {
	ctx := ss.Context()
	pos := &positions{}
	if read != nil {
		s.streams.Add(1)
		go func() {
			defer s.streams.Done()
			if err := read(); errors.Is(err, io.EOF) {
				conn.Drain() // the client is done sending: write what is queued, then end
			} else {
				conn.End(err)
			}
		}()
	}
	var expiry *time.Timer
	expiry = time.AfterFunc(time.Hour, func() {
		if d := time.Until(expires()); d > 0 {
			expiry.Reset(d) // refreshed
			return
		}
		conn.End(errTokenExpired)
	})
	expiry.Reset(time.Until(expires())) // set only now: the callback reads expiry
	defer expiry.Stop()
	defer conn.EndWith(ctx)()
	err := writeLoop(ss, conn, pos)
	if errors.Is(err, errTokenExpired) {
		return status.Error(codes.Unauthenticated, "token expired: send a refresh frame before exp, or reconnect with a new token")
	}
	return s.endStatus(err, pos)
}

var errTokenExpired = errors.New("token expired")

// endStatus turns the reason a connection ended into the stream's status.
func (s *Service) endStatus(cause error, pos *positions) error {
	switch {
	case errors.Is(cause, hub.ErrConnClosed):
		return nil
	case errors.Is(cause, hub.ErrSlowConsumer):
		return slowConsumerStatus(pos.snapshot())
	}
	return fail(cause)
}

// slowConsumerStatus says where to resume each room: RESOURCE_EXHAUSTED
// with the positions in the message and as ErrorInfo metadata
// ("after_seq/<room>": seq).
func slowConsumerStatus(seqs map[string]uint64) error {
	rooms := make([]string, 0, len(seqs))
	for r := range seqs {
		rooms = append(rooms, r)
	}
	sort.Strings(rooms)
	msg := "you fell too far behind and were disconnected; rejoin with after_seq:"
	meta := make(map[string]string, len(rooms))
	for _, r := range rooms {
		msg += fmt.Sprintf(" %s=%d", r, seqs[r])
		meta["after_seq/"+r] = strconv.FormatUint(seqs[r], 10)
	}
	st := status.New(codes.ResourceExhausted, msg)
	if withInfo, err := st.WithDetails(&errdetails.ErrorInfo{Reason: "SLOW_CONSUMER", Domain: "parley.chat", Metadata: meta}); err == nil {
		st = withInfo
	}
	return st.Err()
}
