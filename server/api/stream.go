package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"sync"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/parleychat/parley/server/hub"
)

// positions records, per room, the last seq written to a stream, so a
// client that is cut off can be told where to resume.
type positions struct {
	mu   sync.Mutex
	seqs map[string]uint64
}

func (p *positions) set(room string, seq uint64) {
	p.mu.Lock()
	if p.seqs == nil {
		p.seqs = make(map[string]uint64)
	}
	p.seqs[room] = seq
	p.mu.Unlock()
}

func (p *positions) snapshot() map[string]uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]uint64, len(p.seqs))
	for k, v := range p.seqs {
		out[k] = v
	}
	return out
}

// writeLoop is the only code that sends on a stream: it drains the
// connection's queue until the connection ends, and returns why.
func writeLoop(ctx context.Context, ss grpc.ServerStream, conn *hub.Conn, pos *positions) error {
	var buf []hub.Frame
	for {
		frames, err := conn.Next(ctx, buf[:0])
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

// runStream drives a session until it ends: the writer sends what the hub
// queues; read, if not nil, consumes client frames. It returns the status
// that ends the stream. The reader and writer goroutines are tracked by
// s.streams: when the handler returns they end with the stream.
func (s *Service) runStream(ss grpc.ServerStream, conn *hub.Conn, expires func() time.Time, read func() error) error {
	ctx := ss.Context()
	pos := &positions{}
	s.streams.Add(1)
	go func() {
		defer s.streams.Done()
		_ = writeLoop(ctx, ss, conn, pos) // its cause is recorded on conn
	}()
	var readDone chan error
	if read != nil {
		readDone = make(chan error, 1)
		s.streams.Add(1)
		go func() {
			defer s.streams.Done()
			readDone <- read()
		}()
	}
	expiry := time.NewTimer(time.Until(expires()))
	defer expiry.Stop()
	for {
		select {
		case <-conn.Done():
			return s.endStatus(conn.Err(), pos)
		case err := <-readDone:
			if errors.Is(err, io.EOF) {
				// The client is done sending: write what is queued, then end.
				conn.Drain()
				readDone = nil
				continue
			}
			conn.End(err)
			return fail(err)
		case <-expiry.C:
			if d := time.Until(expires()); d > 0 {
				expiry.Reset(d) // refreshed
				continue
			}
			conn.End(errTokenExpired)
			return status.Error(codes.Unauthenticated, "token expired: send a refresh frame before exp, or reconnect with a new token")
		case <-ctx.Done():
			conn.End(ctx.Err())
			return fail(ctx.Err())
		}
	}
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
