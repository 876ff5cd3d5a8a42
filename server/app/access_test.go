package app_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	parleyv1 "github.com/parleychat/parley/gen/parley/v1"
)

func roomNames(t *testing.T, c parleyv1.ChatServiceClient, ctx context.Context) []string {
	t.Helper()
	resp, err := c.ListRooms(ctx, &parleyv1.ListRoomsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range resp.GetRooms() {
		names = append(names, r.GetName())
	}
	return names
}

func wantCode(t *testing.T, what string, err error, code codes.Code, msg string) {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != code || !strings.Contains(st.Message(), msg) {
		t.Fatalf("%s: %v, want %s containing %q", what, st, code, msg)
	}
}

// Private rooms: only members see, join, read and send; the creator adds
// and removes members, and a removed member is taken out at once.
func TestPrivateRoomMembership(t *testing.T) {
	ts := startServer(t)
	alice, actx := ts.client(t, "alice")
	bob, bctx := ts.client(t, "bob")
	if _, err := alice.CreateRoom(actx, &parleyv1.CreateRoomRequest{Name: "secret", Visibility: parleyv1.RoomVisibility_ROOM_VISIBILITY_PRIVATE}); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.SendMessage(actx, &parleyv1.SendMessageRequest{Room: "secret", Body: "for members"}); err != nil {
		t.Fatal(err)
	}
	if slices.Contains(roomNames(t, bob, bctx), "secret") {
		t.Fatal("a non-member sees the private room in ListRooms")
	}
	bs := openJoin(t, ts.dial(t), ts.token(t, "bob"))
	ref := bs.send(&parleyv1.JoinRequest{Frame: &parleyv1.JoinRequest_Join{Join: &parleyv1.JoinRequest_JoinRoom{Room: "secret", AfterSeq: ptr(uint64(0))}}})
	if r := bs.reply(ref); codes.Code(r.GetCode()) != codes.NotFound {
		t.Fatalf("non-member join: %v", r)
	}
	_, err := bob.ListMessages(bctx, &parleyv1.ListMessagesRequest{Room: "secret"})
	wantCode(t, "non-member history", err, codes.NotFound, "does not exist")
	_, err = bob.SendMessage(bctx, &parleyv1.SendMessageRequest{Room: "secret", Body: "let me in"})
	wantCode(t, "non-member send", err, codes.NotFound, "does not exist")
	_, err = bob.AddMember(bctx, &parleyv1.AddMemberRequest{Room: "secret", User: "bob"})
	wantCode(t, "non-member adds himself", err, codes.NotFound, "does not exist")

	if _, err := alice.AddMember(actx, &parleyv1.AddMemberRequest{Room: "secret", User: "bob"}); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(roomNames(t, bob, bctx), "secret") {
		t.Fatal("a member does not see the private room")
	}
	bs.join("secret", ptr(uint64(0)))
	if m := bs.next(isMessage("secret"), nil).GetMessage(); m.GetBody() != "for members" {
		t.Fatalf("member's replay: %v", m)
	}
	_, err = bob.AddMember(bctx, &parleyv1.AddMemberRequest{Room: "secret", User: "carol"})
	wantCode(t, "member adds another", err, codes.PermissionDenied, "only the creator")
	members, err := bob.ListMembers(bctx, &parleyv1.ListMembersRequest{Room: "secret"})
	if err != nil || !slices.Equal(members.GetMembers(), []string{"alice", "bob"}) {
		t.Fatalf("ListMembers: %v %v", members, err)
	}
	_, err = alice.RemoveMember(actx, &parleyv1.RemoveMemberRequest{Room: "secret", User: "alice"})
	wantCode(t, "creator removes herself", err, codes.FailedPrecondition, "cannot be removed")

	if _, err := alice.RemoveMember(actx, &parleyv1.RemoveMemberRequest{Room: "secret", User: "bob"}); err != nil {
		t.Fatal(err)
	}
	if r := bs.reply(""); codes.Code(r.GetCode()) != codes.PermissionDenied || r.GetRoom() != "secret" {
		t.Fatalf("removed member's notice: %v", r)
	}
	if r := bs.post("secret", "still here?", ""); codes.Code(r.GetCode()) != codes.NotFound {
		t.Fatalf("removed member's send: %v", r)
	}
	_, err = bob.ListMessages(bctx, &parleyv1.ListMessagesRequest{Room: "secret"})
	wantCode(t, "removed member's history", err, codes.NotFound, "does not exist")
	_, err = alice.AddMember(actx, &parleyv1.AddMemberRequest{Room: "lobby", User: "bob"})
	wantCode(t, "members of a public room", err, codes.FailedPrecondition, "only private rooms")
}

// Direct messages: sending to a user creates their direct room; only the
// two may see, join, read, subscribe to or send in it.
func TestDirectMessages(t *testing.T) {
	ts := startServer(t)
	alice, actx := ts.client(t, "alice")
	resp, err := alice.SendMessage(actx, &parleyv1.SendMessageRequest{ToUser: "bob", Body: "psst", ClientMsgId: "d1"})
	if err != nil {
		t.Fatal(err)
	}
	dm := resp.GetMessage().GetRoom()
	if dm != "dm:alice:bob" || resp.GetMessage().GetSeq() != 1 {
		t.Fatalf("direct message stored as %v", resp.GetMessage())
	}
	bob, bctx := ts.client(t, "bob")
	if !slices.Contains(roomNames(t, bob, bctx), dm) {
		t.Fatal("bob does not see his direct room")
	}
	again, err := bob.SendMessage(bctx, &parleyv1.SendMessageRequest{ToUser: "alice", Body: "hi"})
	if err != nil || again.GetMessage().GetRoom() != dm || again.GetMessage().GetSeq() != 2 {
		t.Fatalf("bob's reply went to %v (%v), want seq 2 in %s", again.GetMessage(), err, dm)
	}
	bs := openJoin(t, ts.dial(t), ts.token(t, "bob"))
	bs.join(dm, ptr(uint64(0)))
	if m := bs.next(isMessage(dm), nil).GetMessage(); m.GetBody() != "psst" {
		t.Fatalf("bob's replay: %v", m)
	}

	carol, cctx := ts.client(t, "carol")
	if slices.Contains(roomNames(t, carol, cctx), dm) {
		t.Fatal("carol sees alice and bob's direct room")
	}
	_, err = carol.ListMessages(cctx, &parleyv1.ListMessagesRequest{Room: dm})
	wantCode(t, "carol reads", err, codes.NotFound, "is not yours")
	_, err = carol.SendMessage(cctx, &parleyv1.SendMessageRequest{Room: dm, Body: "hello?"})
	wantCode(t, "carol sends", err, codes.NotFound, "is not yours")
	_, err = carol.ListPresence(cctx, &parleyv1.ListPresenceRequest{Room: dm})
	wantCode(t, "carol's presence", err, codes.NotFound, "is not yours")
	sub, err := carol.Subscribe(cctx, &parleyv1.SubscribeRequest{Room: dm})
	if err == nil {
		_, err = sub.Recv()
	}
	wantCode(t, "carol subscribes", err, codes.NotFound, "is not yours")
	cs := openJoin(t, ts.dial(t), ts.token(t, "carol"))
	ref := cs.send(&parleyv1.JoinRequest{Frame: &parleyv1.JoinRequest_Join{Join: &parleyv1.JoinRequest_JoinRoom{Room: dm}}})
	if r := cs.reply(ref); codes.Code(r.GetCode()) != codes.NotFound {
		t.Fatalf("carol joins: %v", r)
	}
	_, err = carol.SendMessage(cctx, &parleyv1.SendMessageRequest{ToUser: "carol", Body: "me"})
	wantCode(t, "message to oneself", err, codes.InvalidArgument, "another user")
	_, err = carol.SendMessage(cctx, &parleyv1.SendMessageRequest{Room: "lobby", ToUser: "bob", Body: "both"})
	wantCode(t, "room and to_user", err, codes.InvalidArgument, "not both")
	if h := roomHead(t, alice, actx, dm); h != 2 {
		t.Fatalf("head of %s is %d after carol's attempts, want 2", dm, h)
	}
}

// REST can start a direct conversation: POST /v1/users/{to_user}/messages.
func TestDirectMessageOverREST(t *testing.T) {
	ts := startServer(t)
	code, body := restDo(t, http.MethodPost, "http://"+ts.Addr()+"/v1/users/bob/messages", ts.token(t, "carol"), map[string]string{"body": "hi bob"})
	m, _ := body["message"].(map[string]any)
	if code != http.StatusOK || m["room"] != "dm:bob:carol" || m["seq"] != "1" {
		t.Fatalf("POST /v1/users/bob/messages: %d %v", code, body)
	}
}
