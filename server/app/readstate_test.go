package app_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	parleyv1 "github.com/parleychat/parley/gen/parley/v1"
	"github.com/parleychat/parley/server/app"
)

// markRead sends a mark_read frame and returns its reply.
func (js *joinStream) markRead(room string, seq uint64) *parleyv1.Reply {
	js.t.Helper()
	return js.frame(&parleyv1.JoinRequest{Frame: &parleyv1.JoinRequest_MarkRead_{MarkRead: &parleyv1.JoinRequest_MarkRead{Room: room, Seq: seq}}})
}

func isReadMarker(room string) func(*parleyv1.JoinResponse) bool {
	return func(ev *parleyv1.JoinResponse) bool { return ev.GetReadMarker().GetRoom() == room }
}

// marker is a ReadMarker as "seq/unread/mentions@head", for comparisons.
func marker(m *parleyv1.ReadMarker) string {
	return fmt.Sprintf("%d/%d/%d@%d", m.GetSeq(), m.GetUnreadCount(), m.GetMentionCount(), m.GetHeadSeq())
}

// roomRead is a room's read state in the caller's ListRooms, as
// "last_read_seq/unread/mentions of last_seq".
func roomRead(t testing.TB, c parleyv1.ChatServiceClient, ctx context.Context, name string) string {
	t.Helper()
	req := &parleyv1.ListRoomsRequest{PageSize: 200}
	for {
		resp, err := c.ListRooms(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range resp.GetRooms() {
			if r.GetName() == name {
				return fmt.Sprintf("%d/%d/%d of %d", r.GetLastReadSeq(), r.GetUnreadCount(), r.GetMentionCount(), r.GetLastSeq())
			}
		}
		if resp.GetNextPageToken() == "" {
			t.Fatalf("room %s is not in the caller's ListRooms", name)
		}
		req.PageToken = resp.GetNextPageToken()
	}
}

func sendN(t testing.TB, c parleyv1.ChatServiceClient, ctx context.Context, room string, n int) uint64 {
	t.Helper()
	var seq uint64
	for i := range n {
		resp, err := c.SendMessage(ctx, &parleyv1.SendMessageRequest{Room: room, Body: fmt.Sprint("m", i)})
		if err != nil {
			t.Fatal(err)
		}
		seq = resp.GetMessage().GetSeq()
	}
	return seq
}

func discardLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func isPostgresURL(s string) bool {
	return strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://")
}

// freshSchema names a PostgreSQL schema of the test's own, dropped when it ends.
func freshSchema(t testing.TB) string {
	schema := fmt.Sprintf("parley_read_%d", rand.Uint32())
	dropSchema(t, testStore(), schema)
	return schema
}

// A read marker only moves forward, whichever way it is marked (unary,
// Join frame, REST): a lower seq changes nothing and answers with the
// marker as it is, one past the head is taken as the head, and every
// answer carries the caller's counts at the marker, marked a moment ago
// or long since. A room need not be joined to be marked read.
func TestReadMarkerOnlyMovesForward(t *testing.T) {
	ts := startServer(t)
	ts.createRoom(t, "forward")
	bob, bctx := ts.client(t, "bob")
	sendN(t, bob, bctx, "forward", 5)
	alice, actx := ts.client(t, "alice")
	mark := func(seq uint64, want string) {
		t.Helper()
		resp, err := alice.MarkRead(actx, &parleyv1.MarkReadRequest{Room: "forward", Seq: seq})
		if err != nil {
			t.Fatalf("mark %d: %v", seq, err)
		}
		if got := marker(resp.GetMarker()); got != want || resp.GetMarker().GetRoom() != "forward" {
			t.Fatalf("mark %d: marker %s in %q, want %s", seq, got, resp.GetMarker().GetRoom(), want)
		}
	}
	if got := roomRead(t, alice, actx, "forward"); got != "0/5/0 of 5" {
		t.Fatalf("before any mark: %s", got)
	}
	mark(3, "3/2/0@5")
	mark(2, "3/2/0@5")

	as := openJoin(t, ts.dial(t), ts.token(t, "alice")) // in no room
	for _, c := range []struct {
		seq  uint64
		want string
	}{{4, "4/1/0@5"}, {1, "4/1/0@5"}, {4, "4/1/0@5"}} {
		r := as.markRead("forward", c.seq)
		if r.GetCode() != 0 || r.GetRoom() != "forward" || marker(r.GetReadMarker()) != c.want {
			t.Fatalf("frame mark %d: %v, want marker %s", c.seq, r, c.want)
		}
	}
	code, body := restDo(t, http.MethodPost, "http://"+ts.Addr()+"/v1/rooms/forward/read", ts.token(t, "alice"), map[string]any{"seq": "100"})
	if m, _ := body["marker"].(map[string]any); code != http.StatusOK || m["seq"] != "5" || m["headSeq"] != "5" || (m["unreadCount"] != nil && m["unreadCount"] != 0.0) {
		t.Fatalf("REST mark beyond the head: %d %v, want the marker clamped to 5 with nothing unread", code, body)
	}
	mark(3, "5/0/0@5")
	if got := roomRead(t, alice, actx, "forward"); got != "5/0/0 of 5" {
		t.Fatalf("after marking: %s", got)
	}
	sendN(t, bob, bctx, "forward", 2)
	mark(6, "6/1/0@7")
	if got := roomRead(t, alice, actx, "forward"); got != "6/1/0 of 7" {
		t.Fatalf("after two more and a mark: %s", got)
	}
	// Joining tells the joiner its marker, however the room was marked.
	if j := as.join("forward", nil); j.GetLastReadSeq() != 6 || j.GetHeadSeq() != 7 {
		t.Fatalf("joined: last_read_seq %d, head %d; want 6, 7", j.GetLastReadSeq(), j.GetHeadSeq())
	}
}

// A graceful shutdown stores the markers marked since the last flush:
// with a flush interval far longer than the test, the marker is there
// after a restart only because shutting down flushed it.
func TestReadMarkerSurvivesGracefulShutdown(t *testing.T) {
	if testStore() == "memory" {
		t.Skip("the memory store keeps nothing across a restart")
	}
	cfg := app.Config{Listen: "127.0.0.1:0", DataDir: t.TempDir(), Store: testStore(), Dev: true, SendRate: -1,
		ShutdownTimeout: 5 * time.Second, ReadMarkerFlush: time.Hour, Log: discardLog()}
	if isPostgresURL(cfg.Store) {
		cfg.PostgresSchema = freshSchema(t)
	}
	first, err := app.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			first.Shutdown(context.Background())
		}
	})
	ts := &testServer{Server: first, cfg: cfg}
	ts.createRoom(t, "kept")
	bob, bctx := ts.client(t, "bob")
	sendN(t, bob, bctx, "kept", 3)
	alice, actx := ts.client(t, "alice")
	if _, err := alice.MarkRead(actx, &parleyv1.MarkReadRequest{Room: "kept", Seq: 2}); err != nil {
		t.Fatal(err)
	}
	stopped = true
	if err := first.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	again := startServer(t, func(c *app.Config) { *c = cfg })
	alice, actx = again.client(t, "alice")
	if got := roomRead(t, alice, actx, "kept"); got != "2/1/0 of 3" {
		t.Fatalf("after a restart: %s, want the marker at 2", got)
	}
}

// After a flush, every other Join stream of the user gets the new marker
// with the user's counts within a second, joined to the room or not; the
// stream that marked (its reply said it all), the user's Subscribe
// streams and other users get nothing.
func TestReadMarkerSyncsToTheUsersConnections(t *testing.T) {
	ts := startServer(t, func(c *app.Config) { c.ReceiptsMaxMembers = -1 }) // bob is to hear nothing
	ts.createRoom(t, "synced")
	bob, bctx := ts.client(t, "bob")
	for _, body := range []string{"one", "hey @alice", "three"} {
		if _, err := bob.SendMessage(bctx, &parleyv1.SendMessageRequest{Room: "synced", Body: body}); err != nil {
			t.Fatal(err)
		}
	}
	conn := ts.dial(t)
	a1, a2 := openJoin(t, conn, ts.token(t, "alice")), openJoin(t, ts.dial(t), ts.token(t, "alice"))
	a1.join("synced", nil)
	bs := openJoin(t, conn, ts.token(t, "bob"))
	bs.join("synced", nil)
	alice, actx := ts.client(t, "alice")
	sub, err := alice.Subscribe(actx, &parleyv1.SubscribeRequest{Room: "synced"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sub.Recv(); err != nil { // joined
		t.Fatal(err)
	}

	start := time.Now()
	if r := a1.markRead("synced", 1); marker(r.GetReadMarker()) != "1/2/1@3" {
		t.Fatalf("mark: %v", r)
	}
	if got := marker(a2.next(isReadMarker("synced"), nil).GetReadMarker()); got != "1/2/1@3" {
		t.Fatalf("the other stream got read_marker %s, want 1/2/1@3", got)
	}
	took := time.Since(start)
	t.Logf("the other stream heard of the marker %v after the mark", took)
	if limit := time.Second; took > limit && !raceEnabled {
		t.Fatalf("the marker took %v to reach the user's other stream, more than %v", took, limit)
	}
	// Bob (another user), and alice's Subscribe stream, hear nothing of it:
	// each one's next event is the message sent after the flush.
	if _, err := bob.SendMessage(bctx, &parleyv1.SendMessageRequest{Room: "synced", Body: "sentinel"}); err != nil {
		t.Fatal(err)
	}
	for who, js := range map[string]*joinStream{"bob": bs, "the marking stream": a1} {
		if ev := js.next(func(ev *parleyv1.JoinResponse) bool { return ev.GetPresenceDiff() == nil }, nil); ev.GetMessage().GetBody() != "sentinel" {
			t.Fatalf("%s got %v before the sentinel", who, ev)
		}
	}
	for {
		ev, err := sub.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if ev.GetPresenceDiff() != nil {
			continue
		}
		if ev.GetMessage().GetBody() != "sentinel" {
			t.Fatalf("alice's Subscribe stream got %v before the sentinel", ev)
		}
		break
	}
}

// Bad input to a mark gets its status and changes nothing: a bad room
// name, a room that does not exist, a private room of which the caller is
// no member (the same answer as a room that does not exist), seq 0; a
// marker past the head is clamped, a lower one answered as it is, and a
// readable room need not be joined. Each goes through the Join frame and
// the unary call.
func TestMarkReadBadInput(t *testing.T) {
	ts := startServer(t)
	ts.createRoom(t, "open")
	owner, octx := ts.client(t, "owner")
	if _, err := owner.CreateRoom(octx, &parleyv1.CreateRoomRequest{Name: "closed", Visibility: parleyv1.RoomVisibility_ROOM_VISIBILITY_PRIVATE}); err != nil {
		t.Fatal(err)
	}
	sendN(t, owner, octx, "open", 4)
	sendN(t, owner, octx, "closed", 4)
	mallory, mctx := ts.client(t, "mallory")
	ms := openJoin(t, ts.dial(t), ts.token(t, "mallory"))
	if _, err := mallory.MarkRead(mctx, &parleyv1.MarkReadRequest{Room: "open", Seq: 2}); err != nil {
		t.Fatal(err)
	}
	notFound := func(room string) string { return fmt.Sprintf("room %q does not exist, or it is private", room) }
	for _, tc := range []struct {
		name   string
		room   string
		seq    uint64
		code   codes.Code
		msg    string // in the error, or the marker as "seq/unread/mentions@head"
		unjoin bool
	}{
		{"bad room name", "Open Room!", 1, codes.InvalidArgument, "room name \"Open Room!\" must be 1-64 characters", false},
		{"empty room name", "", 1, codes.InvalidArgument, "room name \"\" must be", false},
		{"unknown room", "nowhere", 1, codes.NotFound, notFound("nowhere"), false},
		{"private room of a non-member", "closed", 1, codes.NotFound, notFound("closed"), false},
		{"direct room of others", "dm:alice:bob", 1, codes.NotFound, "does not exist or is not yours", false},
		{"seq 0", "open", 0, codes.InvalidArgument, "seq must be the seq of the last entry read, 1 or more", false},
		{"below the marker", "open", 1, codes.OK, "2/2/0@4", false},
		{"at the marker", "open", 2, codes.OK, "2/2/0@4", false},
		{"beyond the head", "open", 1 << 62, codes.OK, "4/0/0@4", false},
		{"below again", "open", 3, codes.OK, "4/0/0@4", false},
	} {
		r := ms.markRead(tc.room, tc.seq)
		resp, err := mallory.MarkRead(mctx, &parleyv1.MarkReadRequest{Room: tc.room, Seq: tc.seq})
		if tc.code != codes.OK {
			if codes.Code(r.GetCode()) != tc.code || !strings.Contains(r.GetError(), tc.msg) || r.GetReadMarker() != nil {
				t.Errorf("%s (frame): %s %q, want %s containing %q", tc.name, codes.Code(r.GetCode()), r.GetError(), tc.code, tc.msg)
			}
			if st := statusOf(err); st.Code() != tc.code || !strings.Contains(st.Message(), tc.msg) {
				t.Errorf("%s (unary): %v, want %s containing %q", tc.name, st, tc.code, tc.msg)
			}
			continue
		}
		if r.GetCode() != 0 || marker(r.GetReadMarker()) != tc.msg {
			t.Errorf("%s (frame): %v, want marker %s", tc.name, r, tc.msg)
		}
		if err != nil || marker(resp.GetMarker()) != tc.msg {
			t.Errorf("%s (unary): %v %v, want marker %s", tc.name, resp, err, tc.msg)
		}
	}
	// The unknown room and the private one answer alike, but for the name.
	_, e1 := mallory.MarkRead(mctx, &parleyv1.MarkReadRequest{Room: "nowhere", Seq: 1})
	_, e2 := mallory.MarkRead(mctx, &parleyv1.MarkReadRequest{Room: "closed", Seq: 1})
	if a, b := statusOf(e1), statusOf(e2); a.Code() != b.Code() || strings.ReplaceAll(a.Message(), "nowhere", "closed") != b.Message() {
		t.Fatalf("a private room answers otherwise than a missing one: %v / %v", a, b)
	}
	// Nothing was stored for the refused marks: the owner's receipts of
	// the private room do not name mallory.
	rc, err := owner.ListReceipts(octx, &parleyv1.ListReceiptsRequest{Room: "closed"})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rc.GetReceipts() {
		if r.GetUser() == "mallory" {
			t.Fatalf("a non-member's refused mark was stored: %v", r)
		}
	}
	if got := roomRead(t, mallory, mctx, "open"); got != "4/0/0 of 4" {
		t.Fatalf("mallory's read state: %s", got)
	}
	if slices.Contains(roomNames(t, mallory, mctx), "closed") {
		t.Fatal("the private room shows in a non-member's list")
	}
}

// A flood of marks on one stream is coalesced: the stream is not cut off
// and every mark is answered, the room's messages keep reaching its
// members meanwhile, at most one marker per key waits in memory, and the
// user's other stream hears of the marker about once per flush, not once
// per mark.
func TestMarkReadFloodIsCoalesced(t *testing.T) {
	ts := startServer(t)
	ts.createRoom(t, "flood")
	sender := openJoin(t, ts.dial(t), ts.token(t, "sender"))
	sender.join("flood", nil)
	for i := range 10 {
		okSeq(t, sender.post("flood", fmt.Sprint("m", i), ""))
	}
	reader := openJoin(t, ts.dial(t), ts.token(t, "reader"))
	reader.join("flood", nil)
	flooder := openJoin(t, ts.dial(t), ts.token(t, "alice"))
	flooder.join("flood", nil)
	other := openJoin(t, ts.dial(t), ts.token(t, "alice"))

	const frames, sends = 10000, 200
	start := time.Now()
	done := make(chan struct{})
	maxPending := 0
	go func() {
		defer close(done)
		for i := range sends {
			if r := sender.post("flood", fmt.Sprint("during ", i), ""); r.GetCode() != 0 {
				t.Errorf("send during the flood: %s", r.GetError())
				return
			}
		}
	}()
	refs := make([]string, frames)
	for i := range frames {
		// Forward most of the time (the head grows as the sender sends;
		// beyond it is clamped), back now and then.
		seq := uint64(1 + i/40)
		if i%7 == 0 {
			seq = 1
		}
		refs[i] = flooder.send(&parleyv1.JoinRequest{Frame: &parleyv1.JoinRequest_MarkRead_{MarkRead: &parleyv1.JoinRequest_MarkRead{Room: "flood", Seq: seq}}})
		if i%100 == 0 {
			maxPending = max(maxPending, ts.Hub().Stats().PendingReadMarks)
		}
	}
	for i, ref := range refs {
		if r := flooder.reply(ref); r.GetCode() != 0 {
			t.Fatalf("mark %d: %s: %s", i, codes.Code(r.GetCode()), r.GetError())
		}
	}
	<-done
	took := time.Since(start)
	for i := range sends { // the reader joined after the first 10
		ev := reader.next(isMessage("flood"), nil)
		if ev.GetMessage().GetSeq() != uint64(11+i) {
			t.Fatalf("the reader got seq %d, want %d", ev.GetMessage().GetSeq(), 11+i)
		}
	}
	if r := flooder.post("flood", "still here", ""); r.GetCode() != 0 {
		t.Fatalf("the flooding stream after the flood: %s", r.GetError())
	}
	if maxPending > 2 {
		t.Fatalf("%d markers waited at once for one user in one room", maxPending)
	}
	// The other stream: the marker, once per flush at most.
	flushes := int(took/app.DefaultReadMarkerFlush) + 2
	got := 0
	deadline := time.After(2 * app.DefaultReadMarkerFlush)
	for waiting := true; waiting; {
		select {
		case ev := <-other.events:
			if ev.GetReadMarker() != nil {
				got++
			}
		case <-deadline:
			waiting = false
		}
	}
	t.Logf("%d marks in %v: %d read_marker events on the user's other stream", frames, took, got)
	if got == 0 || got > flushes {
		t.Fatalf("%d read_marker events for %d marks over %v; want 1 to %d", got, frames, took, flushes)
	}
}
