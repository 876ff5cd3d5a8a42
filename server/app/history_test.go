package app_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	parleyv1 "github.com/parleychat/parley/gen/parley/v1"
)

// A receiver that left rejoins with after_seq and gets exactly the
// messages it missed, in order, then the replayed marker, then live ones,
// while senders keep sending through the hand-over.
func TestResumeReplaysMissedThenLiveWithNoGapOrDuplicate(t *testing.T) {
	ts := startServer(t)
	ts.createRoom(t, "resume")
	sender := openJoin(t, ts.dial(t), ts.token(t, "sender"))
	sender.join("resume", nil)
	recv := openJoin(t, ts.dial(t), ts.token(t, "reader"))
	recv.join("resume", nil)
	for i := range 5 {
		sender.post("resume", fmt.Sprint("before ", i), "")
	}
	var last uint64
	for last < 5 {
		last = recv.next(isMessage("resume"), nil).GetMessage().GetSeq()
	}
	recv.closeAndWait()

	const missed = 1000
	sendMany(t, ts, "resume", missed, 10)

	// Keep sending while the receiver rejoins, so the hand-over from stored
	// to live messages happens under load.
	const during = 300
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range during {
			if r := sender.post("resume", fmt.Sprint("during ", i), ""); r.GetCode() != 0 {
				t.Errorf("send during rejoin: %s", r.GetError())
				return
			}
		}
	}()
	again := openJoin(t, ts.dial(t), ts.token(t, "reader"))
	j := again.join("resume", ptr(last))
	if j.GetHeadSeq() < last+missed {
		t.Fatalf("joined head %d, want at least %d", j.GetHeadSeq(), last+missed)
	}
	final := last + missed + during
	var through uint64
	for want := last + 1; want <= final; want++ {
		ev := again.next(func(ev *parleyv1.JoinResponse) bool {
			return ev.GetMessage() != nil || ev.GetReplayed() != nil
		}, nil)
		if rp := ev.GetReplayed(); rp != nil {
			if through != 0 || rp.GetThroughSeq() != want-1 {
				t.Fatalf("replayed through %d arrived before seq %d (earlier marker at %d)", rp.GetThroughSeq(), want, through)
			}
			through = rp.GetThroughSeq()
			want--
			continue
		}
		if got := ev.GetMessage().GetSeq(); got != want {
			t.Fatalf("after rejoin got seq %d, want %d", got, want)
		}
	}
	wg.Wait()
	if through < last+missed {
		if through == 0 {
			ev := again.next(func(ev *parleyv1.JoinResponse) bool { return ev.GetReplayed() != nil }, nil)
			through = ev.GetReplayed().GetThroughSeq()
		}
		if through < last+missed {
			t.Fatalf("replayed through %d, want at least %d", through, last+missed)
		}
	}
	t.Logf("rejoined after seq %d: %d replayed (through %d), %d live, none lost or repeated", last, through-last, through, final-through)
	// And nothing after the last message: a new one is the very next.
	r := sender.post("resume", "after", "")
	if m := again.next(isMessage("resume"), nil).GetMessage(); m.GetSeq() != r.GetMessage().GetSeq() {
		t.Fatalf("next message is seq %d, want %d", m.GetSeq(), r.GetMessage().GetSeq())
	}
}

// sendMany sends n messages to room from `senders` concurrent clients.
func sendMany(t *testing.T, ts *testServer, room string, n, senders int) {
	t.Helper()
	var wg sync.WaitGroup
	for s := range senders {
		c, ctx := ts.client(t, fmt.Sprint("bulk", s))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := s; i < n; i += senders {
				if _, err := c.SendMessage(ctx, &parleyv1.SendMessageRequest{Room: room, Body: fmt.Sprint("bulk ", i)}); err != nil {
					t.Errorf("send: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// Walking a 10,000-message room backwards and forwards with page tokens
// visits every message once.
func TestPagingVisitsEveryMessageOnce(t *testing.T) {
	ts := startServer(t)
	ts.createRoom(t, "big")
	const n = 10000
	sendMany(t, ts, "big", n, 20)
	c, ctx := ts.client(t, "pager")
	for _, order := range []parleyv1.MessageOrder{parleyv1.MessageOrder_MESSAGE_ORDER_UNSPECIFIED, parleyv1.MessageOrder_MESSAGE_ORDER_OLDEST_FIRST} {
		seen := make(map[uint64]bool, n)
		req := &parleyv1.ListMessagesRequest{Room: "big", Limit: 200, Order: order}
		var prev uint64
		pages := 0
		for {
			resp, err := c.ListMessages(ctx, req)
			if err != nil {
				t.Fatalf("%v page %d: %v", order, pages, err)
			}
			pages++
			if resp.GetHeadSeq() != n {
				t.Fatalf("head %d, want %d", resp.GetHeadSeq(), n)
			}
			for _, m := range resp.GetMessages() {
				s := m.GetSeq()
				if seen[s] {
					t.Fatalf("%v: seq %d seen twice", order, s)
				}
				if prev != 0 && ((order == parleyv1.MessageOrder_MESSAGE_ORDER_OLDEST_FIRST) != (s > prev)) {
					t.Fatalf("%v: seq %d after %d", order, s, prev)
				}
				seen[s], prev = true, s
			}
			if resp.GetNextPageToken() == "" {
				break
			}
			req.PageToken = resp.GetNextPageToken()
		}
		if len(seen) != n || pages != n/200 {
			t.Fatalf("%v: visited %d messages in %d pages, want %d in %d", order, len(seen), pages, n, n/200)
		}
	}
	// Bounds narrow the walk: after 100 and before 151 is seqs 101..150.
	resp, err := c.ListMessages(ctx, &parleyv1.ListMessagesRequest{Room: "big", AfterSeq: ptr(uint64(100)), BeforeSeq: ptr(uint64(151)), Limit: 200})
	if err != nil || len(resp.GetMessages()) != 50 || resp.GetMessages()[0].GetSeq() != 150 || resp.GetNextPageToken() != "" {
		t.Fatalf("bounded page: %d messages, first %v, token %q, err %v", len(resp.GetMessages()), resp.GetMessages()[0].GetSeq(), resp.GetNextPageToken(), err)
	}
	// The default page is the newest 50.
	resp, err = c.ListMessages(ctx, &parleyv1.ListMessagesRequest{Room: "big"})
	if err != nil || len(resp.GetMessages()) != 50 || resp.GetMessages()[0].GetSeq() != n {
		t.Fatalf("default page: %d messages, err %v", len(resp.GetMessages()), err)
	}
}

// History requests with bad paging get INVALID_ARGUMENT and say why.
func TestHistoryBadInput(t *testing.T) {
	ts := startServer(t)
	ts.createRoom(t, "hist")
	c, ctx := ts.client(t, "h")
	sendMany(t, ts, "hist", 3, 1)
	other, err := c.ListMessages(ctx, &parleyv1.ListMessagesRequest{Room: "lobby", Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	_ = other
	full, err := c.ListMessages(ctx, &parleyv1.ListMessagesRequest{Room: "hist", Limit: 1})
	if err != nil || full.GetNextPageToken() == "" {
		t.Fatalf("first page: %v", err)
	}
	// A bounded walk pages within its bounds while the request keeps them.
	bounded, err := c.ListMessages(ctx, &parleyv1.ListMessagesRequest{Room: "hist", Limit: 1, BeforeSeq: ptr(uint64(3))})
	if err != nil || bounded.GetMessages()[0].GetSeq() != 2 {
		t.Fatalf("bounded first page: %v %v", bounded.GetMessages(), err)
	}
	next, err := c.ListMessages(ctx, &parleyv1.ListMessagesRequest{Room: "hist", Limit: 1, BeforeSeq: ptr(uint64(3)), PageToken: bounded.GetNextPageToken()})
	if err != nil || len(next.GetMessages()) != 1 || next.GetMessages()[0].GetSeq() != 1 {
		t.Fatalf("bounded second page: %v %v", next.GetMessages(), err)
	}
	cases := []struct {
		name string
		req  *parleyv1.ListMessagesRequest
		code codes.Code
		msg  string
	}{
		{"negative limit", &parleyv1.ListMessagesRequest{Room: "hist", Limit: -1}, codes.InvalidArgument, "limit must be between 1 and 200"},
		{"huge limit", &parleyv1.ListMessagesRequest{Room: "hist", Limit: 1 << 30}, codes.InvalidArgument, "limit must be between 1 and 200"},
		{"malformed cursor", &parleyv1.ListMessagesRequest{Room: "hist", PageToken: "%%%not base64"}, codes.InvalidArgument, "page_token"},
		{"forged cursor", &parleyv1.ListMessagesRequest{Room: "hist", PageToken: "bTF8aGlzdHxkfHh8eQ"}, codes.InvalidArgument, "page_token"},
		{"cursor of another room", &parleyv1.ListMessagesRequest{Room: "lobby", PageToken: full.GetNextPageToken()}, codes.InvalidArgument, "page_token"},
		{"cursor with the other order", &parleyv1.ListMessagesRequest{Room: "hist", PageToken: full.GetNextPageToken(), Order: parleyv1.MessageOrder_MESSAGE_ORDER_OLDEST_FIRST}, codes.InvalidArgument, "order"},
		{"cursor with another before_seq", &parleyv1.ListMessagesRequest{Room: "hist", PageToken: full.GetNextPageToken(), BeforeSeq: ptr(uint64(2))}, codes.InvalidArgument, "page_token was issued for before_seq 0, not 2"},
		{"cursor with another after_seq", &parleyv1.ListMessagesRequest{Room: "hist", PageToken: full.GetNextPageToken(), AfterSeq: ptr(uint64(1))}, codes.InvalidArgument, "page_token was issued for after_seq 0, not 1"},
		{"bounded cursor without its bound", &parleyv1.ListMessagesRequest{Room: "hist", PageToken: bounded.GetNextPageToken()}, codes.InvalidArgument, "page_token was issued for before_seq 3, not 0"},
		{"unknown room", &parleyv1.ListMessagesRequest{Room: "nowhere"}, codes.NotFound, "does not exist"},
		{"bad room name", &parleyv1.ListMessagesRequest{Room: "../etc"}, codes.InvalidArgument, "room name"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.ListMessages(ctx, tc.req)
			st := status.Convert(err)
			if st.Code() != tc.code || !strings.Contains(st.Message(), tc.msg) {
				t.Fatalf("got %v, want %s containing %q", st, tc.code, tc.msg)
			}
		})
	}
	// limit 0 means the default page.
	resp, err := c.ListMessages(ctx, &parleyv1.ListMessagesRequest{Room: "hist"})
	if err != nil || len(resp.GetMessages()) != 3 {
		t.Fatalf("limit 0: %d messages, %v", len(resp.GetMessages()), err)
	}
}

// A retried send with the same client_msg_id returns the original message
// and stores nothing, from any front door.
func TestIdempotentSend(t *testing.T) {
	ts := startServer(t)
	ts.createRoom(t, "idem")
	c, ctx := ts.client(t, "retrier")
	first, err := c.SendMessage(ctx, &parleyv1.SendMessageRequest{Room: "idem", Body: "once", ClientMsgId: "k1"})
	if err != nil {
		t.Fatal(err)
	}
	js := openJoin(t, ts.dial(t), ts.token(t, "retrier"))
	js.join("idem", nil)
	again := js.post("idem", "once, retried", "k1")
	if again.GetMessage().GetSeq() != first.GetMessage().GetSeq() || !again.GetMessage().GetSentAt().AsTime().Equal(first.GetMessage().GetSentAt().AsTime()) || again.GetMessage().GetBody() != "once" {
		t.Fatalf("retry returned %v, want the original %v", again.GetMessage(), first.GetMessage())
	}
	// Another sender may use the same id.
	other, _ := ts.client(t, "someone-else")
	o, err := other.SendMessage(authCtx(t, ts.token(t, "someone-else")), &parleyv1.SendMessageRequest{Room: "idem", Body: "mine", ClientMsgId: "k1"})
	if err != nil || o.GetMessage().GetSeq() != 2 {
		t.Fatalf("other sender's k1: %v %v", o, err)
	}
	if h := roomHead(t, c, ctx, "idem"); h != 2 {
		t.Fatalf("head %d, want 2", h)
	}
	// The joined stream saw seq 2 only: the retry broadcast nothing new.
	if m := js.next(isMessage("idem"), nil).GetMessage(); m.GetSeq() != 2 {
		t.Fatalf("stream saw seq %d, want 2", m.GetSeq())
	}
}

// Retention deletes old messages in the background; a resume from before
// them replays only what is kept, and the head does not move.
func TestRetentionKeepsNewestMessages(t *testing.T) {
	ts := startServer(t, func(c *appConfig) {
		c.Retention.MaxMessages, c.RetentionInterval = 5, 20*time.Millisecond
	})
	ts.createRoom(t, "brief")
	sendMany(t, ts, "brief", 20, 1)
	c, ctx := ts.client(t, "reader")
	waitFor(t, "retention to keep 5 messages", func() bool {
		resp, err := c.ListMessages(ctx, &parleyv1.ListMessagesRequest{Room: "brief", Limit: 100})
		return err == nil && len(resp.GetMessages()) == 5 && resp.GetHeadSeq() == 20
	})
	js := openJoin(t, ts.dial(t), ts.token(t, "reader"))
	js.join("brief", ptr(uint64(0)))
	for want := uint64(16); want <= 20; want++ {
		if m := js.next(isMessage("brief"), nil).GetMessage(); m.GetSeq() != want {
			t.Fatalf("replay after retention: seq %d, want %d", m.GetSeq(), want)
		}
	}
	if rp := js.next(func(ev *parleyv1.JoinResponse) bool { return ev.GetReplayed() != nil }, nil); rp.GetReplayed().GetThroughSeq() != 20 {
		t.Fatalf("replayed through %d", rp.GetReplayed().GetThroughSeq())
	}
	if r := js.post("brief", "next", ""); r.GetMessage().GetSeq() != 21 {
		t.Fatalf("send after retention got seq %d, want 21", r.GetMessage().GetSeq())
	}
}
