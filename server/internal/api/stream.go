package api

import (
	"context"
	"errors"
	"io"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"

	parleyv1 "github.com/parleychat/parley/gen/parley/v1"

	"github.com/parleychat/parley/server/internal/hub"
)

// positions records, per room, the last seq written to a stream, so a
// client that is cut off can be told where to resume. Only the stream's
// writer uses it (one at a time, each after the last has finished), and
// the handler once the writer is done.
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

// stream is one Join or Subscribe stream being served. Frames the hub
// queues for its connection are sent by the hub's writers, a few
// goroutines that take turns at the connections with frames queued (push
// mode); the handler's goroutine reads the client's frames (Join) or just
// waits. An idle Join stream served by grpc-go's own transport thus holds
// one goroutine. Whatever ends the session — the client, the hub, the token's
// expiry, a failed read or write — ends the connection, and its cause
// becomes the stream's status.
type stream struct {
	s    *Service
	conn *hub.Conn
	pos  positions // written by the writer; read once it is done

	expiry *time.Timer   // ends conn when the token expires
	ended  chan struct{} // closed once the early status is written; nil without one
	final  error         // why the stream ended, its status written early; set before ended is closed
}

// startStream starts sending conn's frames on ss, and ends conn when the
// token expires (expires may move: refresh). The caller ends conn when the
// client goes: a Recv fails then; without one, use conn.EndWith.
func (s *Service) startStream(ss grpc.ServerStream, conn *hub.Conn, expires func() time.Time) *stream {
	st := &stream{s: s, conn: conn}
	conn.ServeWrites(func(frames []hub.Frame) error {
		for i := range frames {
			f := &frames[i] // a pointer: boxing a Frame would allocate per delivery
			if err := ss.SendMsg(f); err != nil {
				return err
			}
			if f.Room != "" {
				st.pos.set(f.Room, f.Seq)
			}
		}
		return nil
	})
	st.expiry = time.AfterFunc(time.Hour, func() {
		if d := time.Until(expires()); d > 0 {
			st.expiry.Reset(d) // refreshed
			return
		}
		conn.End(errTokenExpired)
	})
	st.expiry.Reset(time.Until(expires())) // set only now: the callback reads st.expiry
	return st
}

// read runs read until it returns: io.EOF means the client is done sending
// (what is queued is still written before the stream ends); any other
// error ends the connection.
//
// A Recv that waits for the client can only be ended by cancelling the
// stream's context, and cancelling it otherwise than through grpc-go makes
// grpc-go answer the stream with CANCELLED itself. So read runs on the
// calling goroutine only when the stream can first be finished with its
// real status: on grpc-go's own transport (StreamTap marks those streams),
// whose transport stream can write it (statusWriter) and, in writing it,
// cancels the stream's context, which ends the Recv. Ending the connection
// writes the status once the writer is done. Otherwise (streams served
// through net/http: grpc-web, or TLS) read runs on a new goroutine,
// tracked by s.streams, that ends when the stream does.
func (st *stream) read(ctx context.Context, read func() error) {
	finish := func(err error) {
		if errors.Is(err, io.EOF) {
			st.conn.Drain()
		} else {
			st.conn.End(err)
		}
	}
	_, native := ctx.Value(nativeStreamKey{}).(struct{})
	ws, canWrite := grpc.ServerTransportStreamFromContext(ctx).(statusWriter)
	if native && canWrite {
		st.conn.OnEnd(func() {
			st.ended = make(chan struct{}) // only now: an idle stream holds none; wait reads it once Done is closed
			go func() {
				defer close(st.ended)
				st.conn.WaitWriter()
				st.final = st.status()
				_ = ws.WriteStatus(statusOf(st.final)) // fails only if the stream has ended already
			}()
		})
		finish(read())
		return
	}
	st.s.streams.Add(1)
	go func() {
		defer st.s.streams.Done()
		finish(read())
	}()
}

// statusWriter is grpc-go's own server transport stream (what
// grpc.ServerTransportStreamFromContext returns), which can end a stream
// with a status before its handler returns; the handler's status is then
// ignored. Writing it finishes the stream, which cancels the stream's
// context. Neither is documented API: if a grpc-go release drops the
// method, Join falls back to a reading goroutine per stream; if writing
// the status stopped cancelling the context, a Recv would outlive its
// stream, which TestStreamEndStatusOnBothTransports would catch (it waits
// for the handlers to return while the clients keep their connections).
type statusWriter interface {
	WriteStatus(*status.Status) error
}

// wait waits for the connection to end and its writer to finish, and
// returns why the stream ended (see status).
func (st *stream) wait() error {
	<-st.conn.Done()
	st.conn.WaitWriter()
	st.expiry.Stop()
	if st.ended != nil {
		<-st.ended // OnEnd has run: nothing outlives the handler
		return st.final
	}
	return st.status()
}

// status is why the stream ended, once the connection has ended and its
// writer finished: nil if it was closed, otherwise an error for statusOf.
func (st *stream) status() error {
	cause := st.conn.Err()
	switch {
	case errors.Is(cause, hub.ErrConnClosed):
		return nil
	case errors.Is(cause, hub.ErrSlowConsumer):
		return &slowConsumerError{seqs: st.pos.snapshot()}
	}
	return cause
}

type nativeStreamKey struct{}

// StreamTap is the grpc.InTapHandle of a server serving Service: it marks
// each Join stream that grpc-go's own transport serves (streams served
// through net/http do not pass the tap), so that its handler's goroutine
// may read (see stream.read). A mark, not a cancellable context: that
// would cost each stream a context, its done channel and an entry in its
// parent's map of children.
func StreamTap(ctx context.Context, info *tap.Info) (context.Context, error) {
	if info.FullMethodName != parleyv1.ChatService_Join_FullMethodName {
		return ctx, nil
	}
	return context.WithValue(ctx, nativeStreamKey{}, struct{}{}), nil
}
