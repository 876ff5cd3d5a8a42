package app_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"nhooyr.io/websocket"

	parleyv1 "github.com/parleychat/parley/gen/parley/v1"
)

// orderedJoin is a Join stream read one frame at a time, in the order the
// server wrote them, over either front door that carries Join.
type orderedJoin interface {
	Send(*parleyv1.JoinRequest) error
	Recv() (*parleyv1.JoinResponse, error)
}

// openNativeJoin opens a Join stream over native gRPC.
func openNativeJoin(t *testing.T, ts *testServer, user string) orderedJoin {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+ts.token(t, user))
	stream, err := parleyv1.NewChatServiceClient(ts.dial(t)).Join(ctx)
	if err != nil {
		t.Fatalf("open join: %v", err)
	}
	return stream
}

// wsJoin is a Join stream over grpc-web's WebSocket transport, spoken as
// the browser app's library (@improbable-eng/grpc-web) speaks it: the
// request headers as the first message; then each request as a message of
// its own, a 0 byte before its gRPC frame; the server's side is one byte
// stream of grpc-web frames (a set high bit marks headers and trailers)
// cut into messages anywhere.
type wsJoin struct {
	ctx  context.Context
	conn *websocket.Conn
	buf  []byte // received bytes not yet taken as frames
}

func openWebSocketJoin(t *testing.T, ts *testServer, user string) orderedJoin {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	conn, _, err := websocket.Dial(ctx, "ws://"+ts.Addr()+parleyv1.ChatService_Join_FullMethodName,
		&websocket.DialOptions{Subprotocols: []string{"grpc-websockets"}})
	if err != nil {
		t.Fatalf("open the WebSocket: %v", err)
	}
	conn.SetReadLimit(1 << 20)
	t.Cleanup(func() { conn.Close(websocket.StatusNormalClosure, "") })
	headers := "authorization: Bearer " + ts.token(t, user) + "\r\ncontent-type: application/grpc-web+proto\r\nx-grpc-web: 1\r\n"
	if err := conn.Write(ctx, websocket.MessageBinary, []byte(headers)); err != nil {
		t.Fatalf("write the request headers: %v", err)
	}
	return &wsJoin{ctx: ctx, conn: conn}
}

func (w *wsJoin) Send(req *parleyv1.JoinRequest) error {
	data, err := proto.Marshal(req)
	if err != nil {
		return err
	}
	msg := make([]byte, 6, 6+len(data))
	binary.BigEndian.PutUint32(msg[2:6], uint32(len(data)))
	return w.conn.Write(w.ctx, websocket.MessageBinary, append(msg, data...))
}

func (w *wsJoin) Recv() (*parleyv1.JoinResponse, error) {
	for {
		if len(w.buf) >= 5 {
			n := 5 + int(binary.BigEndian.Uint32(w.buf[1:5]))
			if len(w.buf) >= n {
				flags, payload := w.buf[0], w.buf[5:n]
				w.buf = w.buf[n:]
				if flags&0x80 == 0 {
					resp := &parleyv1.JoinResponse{}
					return resp, proto.Unmarshal(payload, resp)
				}
				if err := trailerStatus(payload); err != nil {
					return nil, err
				}
				continue // the response headers
			}
		}
		_, data, err := w.conn.Read(w.ctx)
		if err != nil {
			return nil, err
		}
		w.buf = append(w.buf, data...)
	}
}

// trailerStatus returns io.EOF for trailers with grpc-status 0, an error
// for another status, and nil for headers without one.
func trailerStatus(block []byte) error {
	text := string(block)
	if !strings.HasSuffix(text, "\r\n\r\n") {
		text += "\r\n" // a block may lack its final empty line
	}
	h, err := textproto.NewReader(bufio.NewReader(strings.NewReader(text))).ReadMIMEHeader()
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("grpc-web headers: %w", err)
	}
	switch code := http.Header(h).Get("grpc-status"); code {
	case "":
		return nil
	case "0":
		return io.EOF
	default:
		return fmt.Errorf("stream ended with grpc-status %s: %s", code, http.Header(h).Get("grpc-message"))
	}
}

// On every Join front door, with sends pipelined on many streams so that
// the store commits many of them together and their deliveries race, a
// send's reply comes after every message of the room up to its seq: a
// client that takes the reply's seq as its position (docs/clients.md)
// then never skips a message. Messages come in seq order, with no gap and
// no duplicate.
func TestReplyNeverOvertakesAnEarlierMessage(t *testing.T) {
	const (
		perDoor = 4  // streams on each front door
		sends   = 64 // pipelined sends per stream and round, the most a stream keeps in flight
		rounds  = 3
	)
	ts := startServer(t)
	ts.createRoom(t, "order")
	var streams []orderedJoin
	var names []string
	for i := range perDoor {
		streams = append(streams, openNativeJoin(t, ts, fmt.Sprint("grpc", i)), openWebSocketJoin(t, ts, fmt.Sprint("ws", i)))
		names = append(names, fmt.Sprint("native gRPC stream ", i), fmt.Sprint("WebSocket stream ", i))
	}
	readers := make([]*orderReader, len(streams))
	for i, s := range streams {
		readers[i] = &orderReader{stream: s, name: names[i]}
		if err := s.Send(&parleyv1.JoinRequest{Ref: "join", Frame: &parleyv1.JoinRequest_Join{Join: &parleyv1.JoinRequest_JoinRoom{Room: "order"}}}); err != nil {
			t.Fatal(err)
		}
		if err := readers[i].until(func(ev *parleyv1.JoinResponse) bool { return ev.GetJoined() != nil }); err != nil {
			t.Fatal(err)
		}
	}
	for round := range rounds {
		var wg sync.WaitGroup
		errs := make(chan error, len(streams))
		for i, s := range streams {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for n := range sends {
					req := &parleyv1.JoinRequest{Ref: fmt.Sprint(round, "-", n), Frame: &parleyv1.JoinRequest_Send{
						Send: &parleyv1.JoinRequest_Post{Room: "order", Body: fmt.Sprint(names[i], " ", n)}}}
					if err := s.Send(req); err != nil {
						errs <- err
						return
					}
				}
				r := readers[i]
				want := r.replies + sends
				errs <- r.until(func(*parleyv1.JoinResponse) bool {
					return r.replies == want && r.last == uint64((round+1)*sends*len(streams))
				})
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
	}
}

// orderReader reads a Join stream and checks, frame by frame, that the
// room's messages come in seq order and that no reply comes before the
// message of its seq.
type orderReader struct {
	stream  orderedJoin
	name    string
	last    uint64 // the last seq received
	replies int    // successful send replies received
}

// until reads frames until done holds after one of them, failing on the
// first frame out of order.
func (r *orderReader) until(done func(*parleyv1.JoinResponse) bool) error {
	for {
		ev, err := r.stream.Recv()
		if err != nil {
			return fmt.Errorf("%s: %w", r.name, err)
		}
		if m := ev.GetMessage(); m != nil {
			if m.GetSeq() != r.last+1 {
				return fmt.Errorf("%s: message seq %d after seq %d", r.name, m.GetSeq(), r.last)
			}
			r.last = m.GetSeq()
		}
		if rep := ev.GetReply(); rep != nil && rep.GetRef() != "join" {
			if rep.GetCode() != 0 {
				return fmt.Errorf("%s: send %s failed: %s", r.name, rep.GetRef(), rep.GetError())
			}
			if seq := rep.GetMessage().GetSeq(); seq > r.last {
				return fmt.Errorf("%s: the reply to send %s (seq %d) came when the stream had received only up to seq %d",
					r.name, rep.GetRef(), seq, r.last)
			}
			r.replies++
		}
		if done(ev) {
			return nil
		}
	}
}
