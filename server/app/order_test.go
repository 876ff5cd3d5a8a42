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

// openWebSocketJoin opens a Join stream over grpc-web's WebSocket transport.
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
	ts := startServer(t)
	ts.createRoom(t, "order")
	checkReplyOrder(t, []*testServer{ts}, 4)
}

// The same in a cluster, where a message stored by one node reaches the
// other over the broker, often after the other stored a later one.
func TestClusterReplyNeverOvertakesAnEarlierMessage(t *testing.T) {
	nodes := startCluster(t, 2)
	nodes[0].createRoom(t, "order")
	checkReplyOrder(t, nodes, 2)
}

// checkReplyOrder opens perDoor Join streams on each front door of each
// server, joins them to room "order", and has every stream pipeline sends
// to it, a few rounds, checking the order of what each stream receives.
func checkReplyOrder(t *testing.T, servers []*testServer, perDoor int) {
	const (
		sends  = 64 // pipelined sends per stream and round, the most a stream keeps in flight
		rounds = 3
	)
	var readers []*orderReader
	for n, ts := range servers {
		for i := range perDoor {
			readers = append(readers,
				&orderReader{stream: openNativeJoin(t, ts, fmt.Sprint("grpc", n, "-", i)), name: fmt.Sprint("node ", n, " native gRPC stream ", i)},
				&orderReader{stream: openWebSocketJoin(t, ts, fmt.Sprint("ws", n, "-", i)), name: fmt.Sprint("node ", n, " WebSocket stream ", i)})
		}
	}
	for _, r := range readers {
		if err := r.stream.Send(&parleyv1.JoinRequest{Ref: "join", Frame: &parleyv1.JoinRequest_Join{Join: &parleyv1.JoinRequest_JoinRoom{Room: "order"}}}); err != nil {
			t.Fatal(err)
		}
		if err := r.until(func(ev *parleyv1.JoinResponse) bool { return ev.GetJoined() != nil }); err != nil {
			t.Fatal(err)
		}
	}
	for round := range rounds {
		errs := make(chan error, len(readers))
		for _, r := range readers {
			go func() { errs <- r.sendRound(round, sends, uint64((round+1)*sends*len(readers))) }()
		}
		for range readers {
			if err := <-errs; err != nil {
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

// sendRound writes n sends to room "order" without waiting, then reads
// until their replies came and the room's messages through seq head.
func (r *orderReader) sendRound(round, n int, head uint64) error {
	for i := range n {
		req := &parleyv1.JoinRequest{Ref: fmt.Sprint(round, "-", i), Frame: &parleyv1.JoinRequest_Send{
			Send: &parleyv1.JoinRequest_Post{Room: "order", Body: fmt.Sprint(r.name, " ", i)}}}
		if err := r.stream.Send(req); err != nil {
			return fmt.Errorf("%s: %w", r.name, err)
		}
	}
	want := r.replies + n
	return r.until(func(*parleyv1.JoinResponse) bool { return r.replies == want && r.last == head })
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
