package api

import (
	"encoding/base64"
	"strings"
	"testing"
	"unicode/utf8"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	parleyv1 "github.com/parleychat/parley/gen/parley/v1"
	"github.com/parleychat/parley/server/internal/auth"
)

// FuzzJoinFrame decodes arbitrary bytes as a Join frame the way the server
// does and runs every field validator on the result: nothing panics, a
// frame that did not decode is marked malformed, and what the validators
// accept is within the limits.
func FuzzJoinFrame(f *testing.F) {
	seeds := []*parleyv1.JoinRequest{
		{Ref: "1", Frame: &parleyv1.JoinRequest_Join{Join: &parleyv1.JoinRequest_JoinRoom{Room: "lobby", AfterSeq: proto.Uint64(7)}}},
		{Ref: "2", Frame: &parleyv1.JoinRequest_Send{Send: &parleyv1.JoinRequest_Post{Room: "lobby", Body: "hello", ClientMsgId: "c-1"}}},
		{Ref: "3", Frame: &parleyv1.JoinRequest_Typing{Typing: &parleyv1.JoinRequest_SetTyping{Room: "dm:alice:bob", Active: true}}},
		{Ref: "4", Frame: &parleyv1.JoinRequest_Leave{Leave: &parleyv1.JoinRequest_LeaveRoom{Room: "lobby"}}},
		{Ref: "5", Frame: &parleyv1.JoinRequest_Refresh{Refresh: &parleyv1.JoinRequest_RefreshToken{Token: "a.b.c"}}},
		{},
	}
	for _, s := range seeds {
		b, err := proto.Marshal(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{0x0a, 0x01, 0xff, 0x22, 0x03, 0x12, 0x01, 0xff})
	codec := NewCodec()
	svc := New(Config{})
	f.Fuzz(func(t *testing.T, data []byte) {
		var req parleyv1.JoinRequest
		if err := codec.Unmarshal(mem.BufferSlice{mem.SliceBuffer(data)}, &req); err != nil {
			t.Fatalf("codec returned an error instead of marking the frame: %v", err)
		}
		if proto.Unmarshal(data, new(parleyv1.JoinRequest)) != nil && malformed(&req) == nil {
			t.Fatal("undecodable frame not marked malformed")
		}
		if validateRef(req.GetRef()) == nil && len(req.GetRef()) > maxRefBytes {
			t.Fatal("ref over the limit accepted")
		}
		var room, body, id string
		switch fr := req.GetFrame().(type) {
		case *parleyv1.JoinRequest_Join:
			room = fr.Join.GetRoom()
		case *parleyv1.JoinRequest_Send:
			room, body, id = fr.Send.GetRoom(), fr.Send.GetBody(), fr.Send.GetClientMsgId()
		case *parleyv1.JoinRequest_Typing:
			room = fr.Typing.GetRoom()
		case *parleyv1.JoinRequest_Leave:
			room = fr.Leave.GetRoom()
		}
		if validateRoom(room) == nil && (len(room) == 0 || len(room) > 3+2*64+1) {
			t.Fatalf("room %q accepted", room)
		}
		if svc.validateBody(body) == nil && (body == "" || len(body) > svc.cfg.MaxBodyBytes || !utf8.ValidString(body)) {
			t.Fatalf("body of %d bytes accepted", len(body))
		}
		if validateClientMsgID(id) == nil && len(id) > maxClientMsgIDBytes {
			t.Fatal("client_msg_id over the limit accepted")
		}
	})
}

// FuzzRoomName checks that accepted room names are plain names or
// canonical direct-room names, and that every canonical name is accepted.
func FuzzRoomName(f *testing.F) {
	for _, s := range []string{"lobby", "a", strings.Repeat("z", 64), "dm:alice:bob", "dm:bob:alice", "dm:a:a", "DM:a:b", "dm::b", "Bad Room", "../x"} {
		f.Add(s, "alice", "bob")
	}
	f.Fuzz(func(t *testing.T, name, a, b string) {
		if validateRoom(name) == nil && !roomRE.MatchString(name) {
			rest, ok := strings.CutPrefix(name, "dm:")
			x, y, _ := strings.Cut(rest, ":")
			if !ok || x >= y || directRoomName(y, x) != name {
				t.Fatalf("accepted %q, neither a plain nor a canonical direct room name", name)
			}
		}
		if a != b && auth.ValidUser(a) && auth.ValidUser(b) {
			dm := directRoomName(a, b)
			if validateRoom(dm) != nil || dm != directRoomName(b, a) {
				t.Fatalf("direct room of %q and %q: %q not accepted or not canonical", a, b, dm)
			}
		}
	})
}

// FuzzMessageCursor checks that page tokens round-trip, that no token,
// however forged, panics or escapes its room, and that a token is refused
// with bounds or an order other than its own.
func FuzzMessageCursor(f *testing.F) {
	f.Add("room", uint64(0), uint64(0), uint64(10), true, uint64(0), "")
	f.Add("lobby", uint64(5), uint64(90), uint64(50), false, uint64(90), "bTJ8bG9iYnl8ZHwwfDB8NQ")
	f.Fuzz(func(t *testing.T, room string, after, before, pos uint64, desc bool, otherBefore uint64, forged string) {
		c := messageCursor{room: room, desc: desc, after: after, before: before, pos: pos}
		order := parleyv1.MessageOrder_MESSAGE_ORDER_OLDEST_FIRST
		if desc {
			order = parleyv1.MessageOrder_MESSAGE_ORDER_NEWEST_FIRST
		}
		req := &parleyv1.ListMessagesRequest{Room: room, AfterSeq: &after, BeforeSeq: &before, Order: order, PageToken: c.String()}
		got, err := parseMessageCursor(req.GetPageToken(), req)
		if err == nil {
			if got != c {
				t.Fatalf("round trip of %+v gave %+v", c, got)
			}
		} else if validateRoom(room) == nil {
			t.Fatalf("token for room %q did not parse: %v", room, err)
		}
		req.BeforeSeq = &otherBefore
		if _, err := parseMessageCursor(req.GetPageToken(), req); err == nil && otherBefore != before {
			t.Fatalf("token for before_seq %d accepted with before_seq %d", before, otherBefore)
		}
		other := &parleyv1.ListMessagesRequest{Room: "other-room"}
		if _, err := parseMessageCursor(forged, other); err == nil {
			if !strings.Contains(decodeForTest(forged), "|other-room|") {
				t.Fatalf("forged token %q accepted for a room it does not name", forged)
			}
		}
	})
}

func decodeForTest(tok string) string {
	raw, _ := base64.RawURLEncoding.DecodeString(tok)
	return string(raw)
}
