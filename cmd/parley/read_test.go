package main

import (
	"context"
	"regexp"
	"testing"

	"github.com/parleychat/parley/cmd/parley/internal/cli"
	parleyv1 "github.com/parleychat/parley/gen/parley/v1"
)

func sendAs(t *testing.T, c parleyv1.ChatServiceClient, ctx context.Context, room string, bodies ...string) uint64 {
	t.Helper()
	var seq uint64
	for _, b := range bodies {
		resp, err := c.SendMessage(ctx, &parleyv1.SendMessageRequest{Room: room, Body: b})
		if err != nil {
			t.Fatal(err)
		}
		seq = resp.GetMessage().GetSeq()
	}
	return seq
}

// parley rooms shows the caller's unread and mention counts.
func TestRoomsShowsUnreadAndMentions(t *testing.T) {
	s := startServer(t)
	bob, bctx := apiClient(t, s, "bob")
	sendAs(t, bob, bctx, "lobby", "hi", "hey @alice", "bye")
	tok := mint(t, s, "alice")
	r := parley(t, s.Addr(), tok, "rooms", "--json")
	wantCode(t, r, cli.ExitOK)
	if rooms := decodeRooms(t, r.stdout); len(rooms) != 1 || rooms[0].GetUnreadCount() != 3 || rooms[0].GetMentionCount() != 1 {
		t.Fatalf("rooms --json = %v, want lobby with 3 unread, 1 mention", rooms)
	}
	r = parley(t, s.Addr(), tok, "rooms")
	wantCode(t, r, cli.ExitOK)
	if !regexp.MustCompile(`ROOM +VISIBILITY +ONLINE +UNREAD +MENTIONS +LAST SEQ`).MatchString(r.stdout) ||
		!regexp.MustCompile(`(?m)^lobby +public +0 +3 +1 +3 `).MatchString(r.stdout) {
		t.Fatalf("rooms table:\n%s", r.stdout)
	}
}

// parley chat marks a room read as it prints its messages, and shows a
// mark made on another device and another reader's receipt.
func TestChatMarksReadAndShowsReadState(t *testing.T) {
	s := startServer(t)
	alice, actx := apiClient(t, s, "alice")
	if _, err := alice.CreateRoom(actx, &parleyv1.CreateRoomRequest{Name: "news"}); err != nil {
		t.Fatal(err)
	}
	bob, bctx := apiClient(t, s, "bob")
	sendAs(t, bob, bctx, "news", "old one", "old two")
	chat, _ := startChatPipes(t, s.Addr(), mint(t, s, "alice"), "lobby", "news")
	chat.waitOutput("joined #news")

	seq := sendAs(t, bob, bctx, "lobby", "hello @alice")
	chat.waitOutput("bob: hello @alice")
	waitFor(t, "the chat to mark lobby read", func() bool {
		resp, err := alice.ListRooms(actx, &parleyv1.ListRoomsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range resp.GetRooms() {
			if r.GetName() == "lobby" {
				return r.GetLastReadSeq() == seq && r.GetUnreadCount() == 0
			}
		}
		return false
	})

	// news was joined at its head: nothing of it was printed, so a mark
	// on another device is news to this one.
	if _, err := alice.MarkRead(actx, &parleyv1.MarkReadRequest{Room: "news", Seq: 2}); err != nil {
		t.Fatal(err)
	}
	chat.waitOutput("* #news read up to [2] on another device: all read")

	if _, err := bob.MarkRead(bctx, &parleyv1.MarkReadRequest{Room: "lobby", Seq: seq}); err != nil {
		t.Fatal(err)
	}
	chat.waitOutput("#lobby ✓ bob has read up to [1]")
}
