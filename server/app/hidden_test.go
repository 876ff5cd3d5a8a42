package app_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	parleyv1 "github.com/parleychat/parley/gen/parley/v1"
)

// grpcAnswer is a call's code and message, as a client sees them.
func grpcAnswer(err error) string {
	st := status.Convert(err)
	return fmt.Sprintf("%s %q", st.Code(), st.Message())
}

// restAnswer is an HTTP answer's status and body, byte for byte.
func restAnswer(t *testing.T, method, url, token, body string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	return fmt.Sprintf("%d %s", resp.StatusCode, raw)
}

// A non-member learns nothing about a private or direct room, not even
// that it exists: on every RPC, Join frame and REST route, the answer
// about such a room is, byte for byte, the answer about the same name
// before the room existed.
func TestHiddenRoomsAnswerAsMissing(t *testing.T) {
	ts := startServer(t)
	const private, direct = "vault", "dm:alice:carol"
	bob, bctx := ts.client(t, "bob")
	btok := ts.token(t, "bob")
	bs := openJoin(t, ts.dial(t), btok)
	base := "http://" + ts.Addr() + "/v1/rooms/"
	frame := func(room string, req *parleyv1.JoinRequest) string {
		r := bs.reply(bs.send(req))
		return fmt.Sprintf("%s %q %q", codes.Code(r.GetCode()), r.GetError(), r.GetRoom())
	}
	probes := []struct {
		name string
		ask  func(room string) string
	}{
		{"SendMessage", func(room string) string {
			_, err := bob.SendMessage(bctx, &parleyv1.SendMessageRequest{Room: room, Body: "hi", ClientMsgId: "h1"})
			return grpcAnswer(err)
		}},
		{"ListMessages", func(room string) string {
			_, err := bob.ListMessages(bctx, &parleyv1.ListMessagesRequest{Room: room})
			return grpcAnswer(err)
		}},
		{"ListPresence", func(room string) string {
			_, err := bob.ListPresence(bctx, &parleyv1.ListPresenceRequest{Room: room})
			return grpcAnswer(err)
		}},
		{"ListMembers", func(room string) string {
			_, err := bob.ListMembers(bctx, &parleyv1.ListMembersRequest{Room: room})
			return grpcAnswer(err)
		}},
		{"AddMember", func(room string) string {
			_, err := bob.AddMember(bctx, &parleyv1.AddMemberRequest{Room: room, User: "bob"})
			return grpcAnswer(err)
		}},
		{"RemoveMember", func(room string) string {
			_, err := bob.RemoveMember(bctx, &parleyv1.RemoveMemberRequest{Room: room, User: "alice"})
			return grpcAnswer(err)
		}},
		{"Subscribe", func(room string) string {
			sub, err := bob.Subscribe(bctx, &parleyv1.SubscribeRequest{Room: room, AfterSeq: ptr(uint64(0))})
			if err == nil {
				_, err = sub.Recv()
			}
			return grpcAnswer(err)
		}},
		{"ListRooms", func(room string) string {
			return fmt.Sprint(slices.Contains(roomNames(t, bob, bctx), room))
		}},
		{"Join join", func(room string) string {
			return frame(room, &parleyv1.JoinRequest{Frame: &parleyv1.JoinRequest_Join{Join: &parleyv1.JoinRequest_JoinRoom{Room: room, AfterSeq: ptr(uint64(0))}}})
		}},
		{"Join send", func(room string) string {
			return frame(room, &parleyv1.JoinRequest{Frame: &parleyv1.JoinRequest_Send{Send: &parleyv1.JoinRequest_Post{Room: room, Body: "hi"}}})
		}},
		{"Join typing", func(room string) string {
			return frame(room, &parleyv1.JoinRequest{Frame: &parleyv1.JoinRequest_Typing{Typing: &parleyv1.JoinRequest_SetTyping{Room: room, Active: true}}})
		}},
		{"Join leave", func(room string) string {
			return frame(room, &parleyv1.JoinRequest{Frame: &parleyv1.JoinRequest_Leave{Leave: &parleyv1.JoinRequest_LeaveRoom{Room: room}}})
		}},
		{"GET messages", func(room string) string {
			return restAnswer(t, "GET", base+url.PathEscape(room)+"/messages", btok, "")
		}},
		{"POST messages", func(room string) string {
			return restAnswer(t, "POST", base+url.PathEscape(room)+"/messages", btok, `{"body":"hi"}`)
		}},
		{"GET presence", func(room string) string {
			return restAnswer(t, "GET", base+url.PathEscape(room)+"/presence", btok, "")
		}},
		{"GET members", func(room string) string {
			return restAnswer(t, "GET", base+url.PathEscape(room)+"/members", btok, "")
		}},
		{"POST members", func(room string) string {
			return restAnswer(t, "POST", base+url.PathEscape(room)+"/members", btok, `{"user":"bob"}`)
		}},
		{"DELETE member", func(room string) string {
			return restAnswer(t, "DELETE", base+url.PathEscape(room)+"/members/alice", btok, "")
		}},
		{"GET events", func(room string) string {
			return restAnswer(t, "GET", base+url.PathEscape(room)+"/events?afterSeq=0", btok, "")
		}},
	}
	ask := func() map[string]string {
		answers := make(map[string]string)
		for _, room := range []string{private, direct} {
			for _, p := range probes {
				answers[room+" "+p.name] = p.ask(room)
			}
		}
		return answers
	}
	missing := ask()

	// The rooms come into being, with history, members and someone online.
	alice, actx := ts.client(t, "alice")
	if _, err := alice.CreateRoom(actx, &parleyv1.CreateRoomRequest{Name: private, Visibility: parleyv1.RoomVisibility_ROOM_VISIBILITY_PRIVATE}); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.AddMember(actx, &parleyv1.AddMemberRequest{Room: private, User: "dave"}); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.SendMessage(actx, &parleyv1.SendMessageRequest{Room: private, Body: "secret"}); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.SendMessage(actx, &parleyv1.SendMessageRequest{ToUser: "carol", Body: "psst"}); err != nil {
		t.Fatal(err)
	}
	as := openJoin(t, ts.dial(t), ts.token(t, "alice"))
	as.join(private, nil)
	as.join(direct, nil)

	hidden := ask()
	for _, room := range []string{private, direct} {
		for _, p := range probes {
			k := room + " " + p.name
			if hidden[k] != missing[k] {
				t.Errorf("%s: a non-member is told\n\t%s\nbut about a room that does not exist\n\t%s", k, hidden[k], missing[k])
			}
			if room == private && strings.Contains(hidden[k], "alice") {
				t.Errorf("%s: the answer names the creator: %s", k, hidden[k])
			}
		}
	}
	if t.Failed() {
		return
	}
	if got := missing[private+" ListMessages"]; !strings.HasPrefix(got, "NotFound ") {
		t.Fatalf("ListMessages of a room that does not exist: %s", got)
	}
	// Nothing a non-member did reached the rooms.
	for _, room := range []string{private, direct} {
		if h := roomHead(t, alice, actx, room); h != 1 {
			t.Fatalf("%s: head %d after the non-member's attempts, want 1", room, h)
		}
	}
	// CreateRoom cannot help telling that a name is taken (names are
	// unique); it says no more than for a public room.
	_, err := bob.CreateRoom(bctx, &parleyv1.CreateRoomRequest{Name: private})
	_, errPublic := bob.CreateRoom(bctx, &parleyv1.CreateRoomRequest{Name: "lobby"})
	if grpcAnswer(err) != strings.ReplaceAll(grpcAnswer(errPublic), "lobby", private) {
		t.Fatalf("CreateRoom of a taken private name: %s; of a taken public name: %s", grpcAnswer(err), grpcAnswer(errPublic))
	}
}

// dm: rooms come into being only by a first direct message: CreateRoom
// refuses every dm: name and says how to start a conversation.
func TestCreateRoomRefusesDirectNames(t *testing.T) {
	ts := startServer(t)
	carol, ctx := ts.client(t, "carol")
	for _, name := range []string{"dm:carol:zed", "dm:zed:carol", "dm:", "dm:Bad Name"} {
		_, err := carol.CreateRoom(ctx, &parleyv1.CreateRoomRequest{Name: name, Visibility: parleyv1.RoomVisibility_ROOM_VISIBILITY_PRIVATE})
		wantCode(t, "CreateRoom "+name, err, codes.InvalidArgument, "SendMessage with to_user")
	}
	if names := roomNames(t, carol, ctx); slices.Contains(names, "dm:carol:zed") {
		t.Fatalf("carol sees %v after the refused creations", names)
	}
	resp, err := carol.SendMessage(ctx, &parleyv1.SendMessageRequest{ToUser: "zed", Body: "hi"})
	if err != nil || resp.GetMessage().GetRoom() != "dm:carol:zed" || resp.GetMessage().GetSeq() != 1 {
		t.Fatalf("first direct message: %v %v", resp.GetMessage(), err)
	}
}
