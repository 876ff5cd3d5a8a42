package app_test

import (
	"context"
	"crypto/rand"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	parleyv1 "github.com/parleychat/parley/gen/parley/v1"
	"github.com/parleychat/parley/server/internal/auth"
)

// rawCodec sends and receives bytes as they are, to put on the wire what
// no well-behaved client would.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }
func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(*v.(*[]byte))}, nil
}
func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*v.(*[]byte) = data.Materialize()
	return nil
}

// badUTF8Send is a JoinRequest whose send body is not UTF-8.
func badUTF8Send(room string) []byte {
	var send []byte
	send = protowire.AppendTag(send, 1, protowire.BytesType)
	send = protowire.AppendString(send, room)
	send = protowire.AppendTag(send, 2, protowire.BytesType)
	send = protowire.AppendBytes(send, []byte{'h', 0xff, 'i'})
	var req []byte
	req = protowire.AppendTag(req, 1, protowire.BytesType)
	req = protowire.AppendString(req, "utf8")
	req = protowire.AppendTag(req, 4, protowire.BytesType)
	return protowire.AppendBytes(req, send)
}

func otherKeyToken(t *testing.T, user string) string {
	t.Helper()
	secret := make([]byte, 32)
	rand.Read(secret)
	k, err := auth.NewKeys(auth.Config{Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	tok, _, err := k.Mint(user, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// Every bad input gets its exact status, and nothing is stored or
// broadcast: the room's head does not move and an observer's next event is
// the sentinel sent after the attempt.
func TestBadInputIsRejectedAndChangesNothing(t *testing.T) {
	ts := startServer(t)
	ts.createRoom(t, "guarded")
	conn := ts.dial(t)
	client := parleyv1.NewChatServiceClient(conn)
	observer := openJoin(t, conn, ts.token(t, "observer"))
	observer.join("guarded", nil)
	mallory := openJoin(t, conn, ts.token(t, "mallory"))
	mallory.join("guarded", nil)
	observer.next(isDiff("guarded"), nil) // mallory's arrival
	mctx := authCtx(t, ts.token(t, "mallory"))

	frame := func(req *parleyv1.JoinRequest) (codes.Code, string) {
		r := mallory.reply(mallory.send(req))
		return codes.Code(r.GetCode()), r.GetError()
	}
	post := func(room, body, id string) (codes.Code, string) {
		return frame(&parleyv1.JoinRequest{Frame: &parleyv1.JoinRequest_Send{Send: &parleyv1.JoinRequest_Post{Room: room, Body: body, ClientMsgId: id}}})
	}
	unary := func(ctx context.Context, room, body string) (codes.Code, string) {
		_, err := client.SendMessage(ctx, &parleyv1.SendMessageRequest{Room: room, Body: body})
		st := status.Convert(err)
		return st.Code(), st.Message()
	}
	joinWith := func(token string) (codes.Code, string) {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		if token != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
		}
		s, err := client.Join(ctx)
		if err == nil {
			_, err = s.Recv()
		}
		st := status.Convert(err)
		return st.Code(), st.Message()
	}
	expired, _, err := ts.Keys.Mint("mallory", -time.Minute)
	if err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name string
		want codes.Code
		msg  string // a part of the status message
		do   func() (codes.Code, string)
	}{
		{"no token, unary", codes.Unauthenticated, "missing authorization", func() (codes.Code, string) { return unary(context.Background(), "guarded", "x") }},
		{"no token, Join", codes.Unauthenticated, "missing authorization", func() (codes.Code, string) { return joinWith("") }},
		{"bad signature", codes.Unauthenticated, "invalid token", func() (codes.Code, string) { return joinWith(otherKeyToken(t, "observer")) }},
		{"bad signature, unary", codes.Unauthenticated, "invalid token", func() (codes.Code, string) {
			return unary(authCtx(t, otherKeyToken(t, "observer")), "guarded", "forged")
		}},
		{"expired token", codes.Unauthenticated, "expired", func() (codes.Code, string) { return unary(authCtx(t, expired), "guarded", "late") }},
		{"garbage token", codes.Unauthenticated, "invalid token", func() (codes.Code, string) { return unary(authCtx(t, "not.a.jwt"), "guarded", "x") }},
		{"empty body", codes.InvalidArgument, "must not be empty", func() (codes.Code, string) { return post("guarded", "", "") }},
		{"empty body, unary", codes.InvalidArgument, "must not be empty", func() (codes.Code, string) { return unary(mctx, "guarded", "") }},
		{"body over the limit", codes.InvalidArgument, "the limit is 4096", func() (codes.Code, string) { return post("guarded", strings.Repeat("a", 4097), "") }},
		{"NUL in the body", codes.InvalidArgument, "NUL", func() (codes.Code, string) { return post("guarded", "a\x00b", "") }},
		{"invalid UTF-8", codes.InvalidArgument, "UTF-8", func() (codes.Code, string) {
			s, err := conn.NewStream(mctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, parleyv1.ChatService_Join_FullMethodName, grpc.ForceCodecV2(rawCodec{}))
			if err != nil {
				t.Fatal(err)
			}
			msg := badUTF8Send("guarded")
			if err := s.SendMsg(&msg); err != nil {
				t.Fatal(err)
			}
			var out []byte
			if err := s.RecvMsg(&out); err != nil {
				return status.Code(err), err.Error()
			}
			var resp parleyv1.JoinResponse
			if err := proto.Unmarshal(out, &resp); err != nil {
				t.Fatal(err)
			}
			return codes.Code(resp.GetReply().GetCode()), resp.GetReply().GetError()
		}},
		{"bad room name", codes.InvalidArgument, "1-64 characters", func() (codes.Code, string) {
			return frame(&parleyv1.JoinRequest{Frame: &parleyv1.JoinRequest_Join{Join: &parleyv1.JoinRequest_JoinRoom{Room: "Bad Room!"}}})
		}},
		{"unknown room for send", codes.NotFound, "does not exist", func() (codes.Code, string) { return unary(mctx, "nowhere", "hello?") }},
		{"unknown room for send, Join", codes.NotFound, "does not exist", func() (codes.Code, string) { return post("nowhere", "hello?", "") }},
		{"join twice", codes.FailedPrecondition, "already joined", func() (codes.Code, string) {
			return frame(&parleyv1.JoinRequest{Frame: &parleyv1.JoinRequest_Join{Join: &parleyv1.JoinRequest_JoinRoom{Room: "guarded"}}})
		}},
		{"leave a room not joined", codes.FailedPrecondition, "not joined", func() (codes.Code, string) {
			return frame(&parleyv1.JoinRequest{Frame: &parleyv1.JoinRequest_Leave{Leave: &parleyv1.JoinRequest_LeaveRoom{Room: "lobby"}}})
		}},
		{"missing oneof", codes.InvalidArgument, "must set one of", func() (codes.Code, string) { return frame(&parleyv1.JoinRequest{}) }},
		{"ref too long", codes.InvalidArgument, "ref is 65 bytes", func() (codes.Code, string) {
			// The reply echoes the ref cut to its limit.
			mallory.send(&parleyv1.JoinRequest{Ref: strings.Repeat("r", 65), Frame: &parleyv1.JoinRequest_Send{Send: &parleyv1.JoinRequest_Post{Room: "guarded", Body: "x"}}})
			r := mallory.reply(strings.Repeat("r", 64))
			return codes.Code(r.GetCode()), r.GetError()
		}},
		{"client_msg_id too long", codes.InvalidArgument, "client_msg_id", func() (codes.Code, string) { return post("guarded", "x", strings.Repeat("i", 65)) }},
		{"after_seq beyond head", codes.OutOfRange, "head", func() (codes.Code, string) {
			return frame(&parleyv1.JoinRequest{Frame: &parleyv1.JoinRequest_Join{Join: &parleyv1.JoinRequest_JoinRoom{Room: "lobby", AfterSeq: ptr(uint64(1 << 40))}}})
		}},
		{"oversized frame", codes.ResourceExhausted, "larger than max", func() (codes.Code, string) {
			s := startJoin(t, conn, ts.token(t, "mallory"))
			s.send(&parleyv1.JoinRequest{Frame: &parleyv1.JoinRequest_Send{Send: &parleyv1.JoinRequest_Post{Room: "guarded", Body: strings.Repeat("z", 100<<10)}}})
			_, err := s.stream.Recv()
			st := status.Convert(err)
			return st.Code(), st.Message()
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			headBefore := roomHead(t, client, mctx, "guarded")
			code, msg := tc.do()
			if code != tc.want || !strings.Contains(msg, tc.msg) {
				t.Fatalf("got %s %q, want %s containing %q", code, msg, tc.want, tc.msg)
			}
			if h := roomHead(t, client, mctx, "guarded"); h != headBefore {
				t.Fatalf("head moved from %d to %d", headBefore, h)
			}
			// Nothing was broadcast: the observer's next event is the sentinel.
			r := observer.post("guarded", "sentinel "+tc.name, "")
			ev := observer.next(func(*parleyv1.JoinResponse) bool { return true }, nil)
			if ev.GetMessage().GetSeq() != r.GetMessage().GetSeq() {
				t.Fatalf("observer saw %v before the sentinel", ev)
			}
			mallory.next(isMessage("guarded"), nil) // mallory sees the sentinel too
		})
	}
}

func roomHead(t *testing.T, c parleyv1.ChatServiceClient, ctx context.Context, room string) uint64 {
	t.Helper()
	resp, err := c.ListMessages(ctx, &parleyv1.ListMessagesRequest{Room: room, Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetHeadSeq()
}

// A request of another service (here gRPC health) that does not decode is
// answered INVALID_ARGUMENT too, saying what it is not.
func TestUndecodableHealthCheckIsInvalid(t *testing.T) {
	ts := startServer(t)
	var req []byte
	req = protowire.AppendTag(req, 1, protowire.BytesType)
	req = protowire.AppendBytes(req, []byte{'x', 0xff})
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	var resp []byte
	err := ts.dial(t).Invoke(ctx, "/grpc.health.v1.Health/Check", &req, &resp, grpc.ForceCodecV2(rawCodec{}))
	st := status.Convert(err)
	if st.Code() != codes.InvalidArgument || !strings.HasPrefix(st.Message(), "request is not a valid grpc.health.v1.HealthCheckRequest: ") {
		t.Fatalf("undecodable health check: %v %q, want INVALID_ARGUMENT", st.Code(), st.Message())
	}
}
