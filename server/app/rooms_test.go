package app_test

import (
	"context"
	"fmt"
	"testing"

	parleyv1 "github.com/parleychat/parley/gen/parley/v1"
)

// Rooms are loaded while they are used and unloaded when nobody is in them:
// reads, access checks (allowed or refused), direct messages, Join and
// Subscribe streams all leave no room loaded once they are done
// (parley_rooms_live on /metrics).
func TestRoomsUnloadWhenIdle(t *testing.T) {
	ts := startServer(t)
	const public, private, dms = 40, 10, 40
	admin, adminCtx := ts.client(t, "admin")
	for i := range public + private {
		vis := parleyv1.RoomVisibility_ROOM_VISIBILITY_PUBLIC
		if i >= public {
			vis = parleyv1.RoomVisibility_ROOM_VISIBILITY_PRIVATE
		}
		if _, err := admin.CreateRoom(adminCtx, &parleyv1.CreateRoomRequest{Name: fmt.Sprint("idle-", i), Visibility: vis}); err != nil {
			t.Fatal(err)
		}
	}
	c, ctx := ts.client(t, "reader")
	for i := range public + private {
		room := fmt.Sprint("idle-", i)
		_, err := c.ListMessages(ctx, &parleyv1.ListMessagesRequest{Room: room})
		if (err != nil) != (i >= public) {
			t.Fatalf("ListMessages %s: %v", room, err)
		}
		_, err = c.ListPresence(ctx, &parleyv1.ListPresenceRequest{Room: room})
		if (err != nil) != (i >= public) {
			t.Fatalf("ListPresence %s: %v", room, err)
		}
	}
	for i := range dms {
		if _, err := c.SendMessage(ctx, &parleyv1.SendMessageRequest{ToUser: fmt.Sprint("friend", i), Body: "hi"}); err != nil {
			t.Fatal(err)
		}
	}
	waitRoomsLive(t, ts, 0)

	// Streams keep their rooms loaded, and only those.
	js := openJoin(t, ts.dial(t), ts.token(t, "joiner"))
	for i := range 5 {
		js.join(fmt.Sprint("idle-", i), nil)
	}
	js.post("idle-0", "m", "")
	subCtx, cancelSub := context.WithCancel(ctx)
	defer cancelSub()
	sub, err := c.Subscribe(subCtx, &parleyv1.SubscribeRequest{Room: "idle-9"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sub.Recv(); err != nil { // the joined state: the room is loaded
		t.Fatal(err)
	}
	waitRoomsLive(t, ts, 6)
	for i := range 3 {
		js.send(&parleyv1.JoinRequest{Frame: &parleyv1.JoinRequest_Leave{Leave: &parleyv1.JoinRequest_LeaveRoom{Room: fmt.Sprint("idle-", i)}}})
	}
	waitRoomsLive(t, ts, 3)
	js.closeAndWait()
	waitRoomsLive(t, ts, 1) // the Subscribe stream is still open
	cancelSub()
	waitRoomsLive(t, ts, 0)
}

func waitRoomsLive(t *testing.T, ts *testServer, want float64) {
	t.Helper()
	var got float64
	waitFor(t, fmt.Sprintf("parley_rooms_live to be %v", want), func() bool {
		got = scrape(t, ts.Addr())["parley_rooms_live"]
		return got == want
	})
}

// In a cluster a room unloads on every node once nobody is in it, ending
// its broker subscription, and a later join subscribes again: messages
// sent on another node reach it.
func TestClusterRoomsUnloadAndResubscribe(t *testing.T) {
	nodes := startCluster(t, 2)
	nodes[0].createRoom(t, "roaming")
	a := openJoin(t, nodes[0].dial(t), nodes[0].token(t, "a"))
	a.join("roaming", nil)
	waitRoomsLive(t, nodes[1], 1) // the heartbeats carry a's presence
	a.send(&parleyv1.JoinRequest{Frame: &parleyv1.JoinRequest_Leave{Leave: &parleyv1.JoinRequest_LeaveRoom{Room: "roaming"}}})
	for _, n := range nodes {
		waitRoomsLive(t, n, 0)
	}
	a.join("roaming", nil)
	b := openJoin(t, nodes[1].dial(t), nodes[1].token(t, "b"))
	b.join("roaming", nil)
	seq := b.post("roaming", "across", "").GetMessage().GetSeq()
	got := a.next(isMessage("roaming"), nil).GetMessage()
	if got.GetSeq() != seq || got.GetBody() != "across" {
		t.Fatalf("a got %v, want seq %d from node 1", got, seq)
	}
}
