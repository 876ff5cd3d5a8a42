package app_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	parleyv1 "github.com/parleychat/parley/gen/parley/v1"
	"github.com/parleychat/parley/server/app"
)

// receiptOf returns user's receipt in ev if ev is a receipts event of
// room that holds one, nil otherwise.
func receiptOf(ev *parleyv1.JoinResponse, room, user string) *parleyv1.Receipt {
	if ev.GetReceipts().GetRoom() != room {
		return nil
	}
	for _, r := range ev.GetReceipts().GetReceipts() {
		if r.GetUser() == user {
			return r
		}
	}
	return nil
}

func isReceipt(room, user string) func(*parleyv1.JoinResponse) bool {
	return func(ev *parleyv1.JoinResponse) bool { return receiptOf(ev, room, user) != nil }
}

// privateRoom creates a private room of owner's with members.
func privateRoom(t *testing.T, ts *testServer, owner, room string, members ...string) {
	t.Helper()
	c, ctx := ts.client(t, owner)
	if _, err := c.CreateRoom(ctx, &parleyv1.CreateRoomRequest{Name: room, Visibility: parleyv1.RoomVisibility_ROOM_VISIBILITY_PRIVATE}); err != nil {
		t.Fatal(err)
	}
	for _, m := range members {
		if _, err := c.AddMember(ctx, &parleyv1.AddMemberRequest{Room: room, User: m}); err != nil {
			t.Fatal(err)
		}
	}
}

func receiptList(t *testing.T, c parleyv1.ChatServiceClient, ctx context.Context, room string) string {
	t.Helper()
	resp, err := c.ListReceipts(ctx, &parleyv1.ListReceiptsRequest{Room: room})
	if err != nil {
		t.Fatal(err)
	}
	return receiptsString(resp.GetReceipts())
}

func receiptsString(rs []*parleyv1.Receipt) string {
	var out []string
	for _, r := range rs {
		if r.GetReadAt() == nil {
			out = append(out, "no read_at")
		}
		out = append(out, fmt.Sprint(r.GetUser(), "@", r.GetSeq()))
	}
	return fmt.Sprint(out)
}

// In a small room a reader's moves reach the other members as receipts
// (Join and Subscribe streams alike), coalesced: a reader marking 100
// times in a second causes at most 2 receipts in that second, and the
// last one carries the newest marker. The joined state and ListReceipts
// carry the receipts.
func TestReceiptsAreCoalesced(t *testing.T) {
	ts := startServer(t, func(c *app.Config) { c.ReceiptsMaxMembers = 3 })
	alice, actx, head, bs := readersRoom(t, ts, "small", 100)
	bob, bctx := ts.client(t, "bob")
	sub, err := bob.Subscribe(bctx, &parleyv1.SubscribeRequest{Room: "small"})
	if err != nil {
		t.Fatal(err)
	}
	subReceipts := make(chan *parleyv1.Receipt, 100)
	go func() {
		for {
			ev, err := sub.Recv()
			if err != nil {
				return
			}
			for _, r := range ev.GetReceipts().GetReceipts() {
				subReceipts <- r
			}
		}
	}()

	carol, cctx := ts.client(t, "carol")
	start := time.Now()
	var arrivals []time.Duration
	last := uint64(0)
	collect := func(until time.Time) {
		for time.Now().Before(until) {
			select {
			case ev := <-bs.events:
				if r := receiptOf(ev, "small", "carol"); r != nil {
					arrivals = append(arrivals, time.Since(start))
					last = r.GetSeq()
				}
			case <-time.After(time.Until(until)):
			}
		}
	}
	for seq := range head {
		if _, err := carol.MarkRead(cctx, &parleyv1.MarkReadRequest{Room: "small", Seq: seq + 1}); err != nil {
			t.Fatal(err)
		}
		collect(start.Add(time.Duration(seq+1) * 10 * time.Millisecond)) // 100 marks over about a second
	}
	marking := time.Since(start)
	inSecond := 0
	for _, a := range arrivals {
		if a <= time.Second {
			inSecond++
		}
	}
	// The newest marker comes within a window of the last mark.
	for last != head {
		collect(time.Now().Add(50 * time.Millisecond))
		if time.Since(start) > marking+waitTimeout {
			t.Fatalf("the receipts stopped at seq %d, want %d", last, head)
		}
	}
	t.Logf("100 marks in %v: bob's Join stream got carol's receipts at %v", marking, arrivals)
	if inSecond > 2 || len(arrivals) > int(time.Since(start)/time.Second)+2 {
		t.Fatalf("%d receipts in the first second, %d in all, over %v: not coalesced", inSecond, len(arrivals), time.Since(start))
	}
	// The Subscribe stream got them too, ending with the newest.
	for r := range subReceipts {
		if r.GetUser() == "carol" && r.GetSeq() == head {
			break
		}
	}

	if _, err := bob.MarkRead(bctx, &parleyv1.MarkReadRequest{Room: "small", Seq: 40}); err != nil {
		t.Fatal(err)
	}
	roomRead(t, bob, bctx, "small") // stores bob's marker (ListRooms stores the caller's pending ones)
	if got := receiptList(t, alice, actx, "small"); got != fmt.Sprintf("[bob@40 carol@%d]", head) {
		t.Fatalf("ListReceipts: %s", got)
	}
	again := openJoin(t, ts.dial(t), ts.token(t, "bob"))
	j := again.join("small", nil)
	if j.GetLastReadSeq() != 40 || receiptsString(j.GetReceipts()) != fmt.Sprintf("[bob@40 carol@%d]", head) || len(j.GetPresence()) == 0 {
		t.Fatalf("joined: last_read_seq %d, receipts %s, presence %v", j.GetLastReadSeq(), receiptsString(j.GetReceipts()), j.GetPresence())
	}
}

// A room with more readers than --receipts-max-members has no receipts:
// ListReceipts says why, the joined state carries none (but the joiner's
// marker), and moving a marker sends the room nothing, where the same move
// in a small room does.
func TestNoReceiptsInABigRoom(t *testing.T) {
	ts := startServer(t, func(c *app.Config) { c.ReceiptsMaxMembers = 3 })
	privateRoom(t, ts, "alice", "big", "bob", "carol", "dave")
	privateRoom(t, ts, "alice", "small", "bob")
	alice, actx := ts.client(t, "alice")
	sendN(t, alice, actx, "big", 3)
	sendN(t, alice, actx, "small", 3)
	_, err := alice.ListReceipts(actx, &parleyv1.ListReceiptsRequest{Room: "big"})
	wantCode(t, "receipts of a big room", err, codes.FailedPrecondition, `room "big" has more than 3 readers, and receipts ("seen by") are kept only for rooms with at most 3`)
	_, err = alice.ListReceipts(actx, &parleyv1.ListReceiptsRequest{Room: "nowhere"})
	wantCode(t, "receipts of a missing room", err, codes.NotFound, "does not exist")

	bs := openJoin(t, ts.dial(t), ts.token(t, "bob"))
	if r := bs.markRead("big", 2); r.GetCode() != 0 {
		t.Fatal(r.GetError())
	}
	for _, room := range []string{"big", "small"} {
		j := bs.join(room, nil)
		if room == "big" && (j.GetLastReadSeq() != 2 || len(j.GetReceipts()) != 0) {
			t.Fatalf("joined a big room: last_read_seq %d, receipts %v", j.GetLastReadSeq(), j.GetReceipts())
		}
	}
	for _, room := range []string{"big", "small"} {
		if _, err := alice.MarkRead(actx, &parleyv1.MarkReadRequest{Room: room, Seq: 3}); err != nil {
			t.Fatal(err)
		}
		roomRead(t, alice, actx, room) // the flush: its receipts, if any, are sent when it returns
		if _, err := alice.SendMessage(actx, &parleyv1.SendMessageRequest{Room: room, Body: "sentinel"}); err != nil {
			t.Fatal(err)
		}
		ev := bs.next(func(ev *parleyv1.JoinResponse) bool { return ev.GetPresenceDiff() == nil && ev.GetReadMarker() == nil }, nil)
		switch {
		case room == "big" && ev.GetMessage().GetBody() != "sentinel":
			t.Fatalf("bob got %v in the big room before the sentinel: no receipts there", ev)
		case room == "small" && receiptOf(ev, "small", "alice").GetSeq() != 3:
			t.Fatalf("bob got %v in the small room, want alice's receipt before the sentinel", ev)
		}
	}
}

// --receipt-interval sets the window receipts are coalesced over: with
// 3 s, a reader marking for 1.5 s causes one receipt at once and the
// newest only when the window ends (with the default 1 s, a second one
// would come after about a second).
func TestReceiptIntervalIsConfigurable(t *testing.T) {
	ts := startServer(t, func(c *app.Config) { c.ReceiptsMaxMembers, c.ReceiptInterval = 3, 3*time.Second })
	_, _, head, bs := readersRoom(t, ts, "slow", 30)
	carol, cctx := ts.client(t, "carol")
	start := time.Now()
	for seq := range head {
		if _, err := carol.MarkRead(cctx, &parleyv1.MarkReadRequest{Room: "slow", Seq: seq + 1}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond) // pacing the reader, not waiting on the server
	}
	var early int
	var newest time.Duration
	for newest == 0 {
		select {
		case ev := <-bs.events:
			if r := receiptOf(ev, "slow", "carol"); r != nil {
				at := time.Since(start)
				if at < 2500*time.Millisecond {
					early++
				}
				if r.GetSeq() == head {
					newest = at
				}
			}
		case <-time.After(waitTimeout):
			t.Fatalf("carol's newest receipt never came")
		}
	}
	if early > 1 || newest < 2500*time.Millisecond {
		t.Fatalf("%d receipts in the first 2.5 s, the newest at %v: want 1, and the newest when the 3 s window ends", early, newest)
	}
}

// readersRoom makes alice's private room with bob and carol, sends n
// messages to it as alice, and joins it on a Join stream of bob's. It
// returns alice's client, the room's head and bob's stream.
func readersRoom(t *testing.T, ts *testServer, room string, n int) (parleyv1.ChatServiceClient, context.Context, uint64, *joinStream) {
	t.Helper()
	privateRoom(t, ts, "alice", room, "bob", "carol")
	alice, actx := ts.client(t, "alice")
	head := sendN(t, alice, actx, room, n)
	bs := openJoin(t, ts.dial(t), ts.token(t, "bob"))
	bs.join(room, nil)
	return alice, actx, head, bs
}
