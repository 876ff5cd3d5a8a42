package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	parleyv1 "github.com/parleychat/parley/gen/parley/v1"
)

// dialDaemon connects to a daemon that may be restarting: reconnection
// backs off briefly, and calls wait for the connection to be ready.
func dialDaemon(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 20 * time.Millisecond, Multiplier: 1.5, MaxDelay: 200 * time.Millisecond},
			MinConnectTimeout: time.Second,
		}),
		grpc.WithDefaultCallOptions(grpc.WaitForReady(true)),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func bearer(ctx context.Context, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

// history reads a room's whole history, oldest first.
func history(t *testing.T, c parleyv1.ChatServiceClient, ctx context.Context, room string) []*parleyv1.Message {
	t.Helper()
	var out []*parleyv1.Message
	req := &parleyv1.ListMessagesRequest{Room: room, Limit: 200, Order: parleyv1.MessageOrder_MESSAGE_ORDER_OLDEST_FIRST}
	for {
		resp, err := c.ListMessages(ctx, req)
		if err != nil {
			t.Fatalf("history of %s: %v", room, err)
		}
		out = append(out, resp.GetMessages()...)
		if resp.GetNextPageToken() == "" {
			return out
		}
		req.PageToken = resp.GetNextPageToken()
	}
}

// Rooms, history and heads survive a graceful restart and a SIGKILL, and
// each room continues from its stored head.
func TestRestartKeepsRoomsHistoryAndHeads(t *testing.T) {
	d := startDaemon(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ctx = bearer(ctx, d.token(t, "keeper"))
	c := parleyv1.NewChatServiceClient(dialDaemon(t, d.addr))
	if _, err := c.CreateRoom(ctx, &parleyv1.CreateRoomRequest{Name: "kept", Visibility: parleyv1.RoomVisibility_ROOM_VISIBILITY_PRIVATE}); err != nil {
		t.Fatal(err)
	}
	send := func(body string) uint64 {
		t.Helper()
		resp, err := c.SendMessage(ctx, &parleyv1.SendMessageRequest{Room: "kept", Body: body})
		if err != nil {
			t.Fatalf("send %q: %v", body, err)
		}
		return resp.GetMessage().GetSeq()
	}
	for i := range 10 {
		send(fmt.Sprint("m", i))
	}
	check := func(when string, n int) {
		t.Helper()
		msgs := history(t, c, ctx, "kept")
		if len(msgs) != n || msgs[n-1].GetSeq() != uint64(n) {
			t.Fatalf("%s: %d messages, want %d", when, len(msgs), n)
		}
		rooms, err := c.ListRooms(ctx, &parleyv1.ListRoomsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rooms.GetRooms() {
			if r.GetName() == "kept" {
				if r.GetLastSeq() != uint64(n) || r.GetVisibility() != parleyv1.RoomVisibility_ROOM_VISIBILITY_PRIVATE || r.GetCreatedBy() != "keeper" {
					t.Fatalf("%s: room %v", when, r)
				}
				return
			}
		}
		t.Fatalf("%s: room kept is gone", when)
	}
	d.stop(t)
	d.start(t)
	check("after graceful restart", 10)
	if s := send("after restart"); s != 11 {
		t.Fatalf("first send after restart got seq %d, want 11", s)
	}
	d.kill(t)
	d.start(t)
	check("after SIGKILL", 11)
	if s := send("after kill"); s != 12 {
		t.Fatalf("first send after SIGKILL got seq %d, want 12", s)
	}
}

// crashStats are the counts the crash test prints.
type crashStats struct {
	sent, retried, acked, delivered atomic.Int64
}

// The server is killed with SIGKILL at random moments while senders send
// and receivers receive; senders retry unacked sends with the same
// client_msg_id after reconnecting, receivers resume from the last seq they
// saw. Every acked message must be stored exactly once, each room's seqs
// must be exactly 1..N, and every receiver must see every message once, in
// order.
func TestCrashLosesNothingAcked(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test runs the real binary for several seconds")
	}
	d := startDaemon(t, "--send-rate", "-1")
	rooms := []string{"crash-a", "crash-b"}
	admin := parleyv1.NewChatServiceClient(dialDaemon(t, d.addr))
	actx := bearer(context.Background(), d.token(t, "admin"))
	for _, r := range rooms {
		if _, err := admin.CreateRoom(actx, &parleyv1.CreateRoomRequest{Name: r}); err != nil {
			t.Fatal(err)
		}
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))

	const senders, receivers, minPerSender, kills = 4, 3, 100, 6
	var st crashStats
	var killing atomic.Bool
	killing.Store(true)
	type ackKey struct{ sender, id string }
	var ackMu sync.Mutex
	acked := map[ackKey]*parleyv1.Message{}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	for s := range senders {
		user := fmt.Sprint("sender", s)
		tok := d.token(t, user)
		conn := dialDaemon(t, d.addr)
		wg.Add(1)
		go func() {
			defer wg.Done()
			snd := &crashSender{conn: conn, token: tok}
			defer snd.close()
			for i := 0; i < minPerSender || killing.Load(); i++ {
				if ctx.Err() != nil {
					t.Errorf("%s: gave up: %v", user, ctx.Err())
					return
				}
				room, id := rooms[i%len(rooms)], fmt.Sprint(user, "-", i)
				st.sent.Add(1)
				m := snd.sendUntilAcked(ctx, t, room, fmt.Sprint("body of ", id), id, &st)
				if m == nil {
					return
				}
				ackMu.Lock()
				acked[ackKey{user, id}] = m
				ackMu.Unlock()
				st.acked.Add(1)
				time.Sleep(2 * time.Millisecond) // pacing, so sends span the kills
			}
		}()
	}
	recvs := make([]*crashReceiver, receivers)
	for r := range recvs {
		recvs[r] = &crashReceiver{conn: dialDaemon(t, d.addr), token: d.token(t, fmt.Sprint("receiver", r)), rooms: rooms, last: map[string]uint64{}, stats: &st}
		go recvs[r].run(ctx)
	}

	for k := range kills {
		time.Sleep(time.Duration(150+rng.IntN(450)) * time.Millisecond) // a random moment under load
		d.kill(t)
		d.start(t)
		t.Logf("kill %d done; %d acked so far", k+1, st.acked.Load())
	}
	killing.Store(false)
	wg.Wait()
	if t.Failed() {
		return
	}

	// Every acked message is stored exactly once, and seqs are 1..N.
	stored := map[ackKey]uint64{}
	heads := map[string]uint64{}
	for _, room := range rooms {
		msgs := history(t, admin, actx, room)
		for i, m := range msgs {
			if m.GetSeq() != uint64(i+1) {
				t.Fatalf("room %s: message %d has seq %d", room, i, m.GetSeq())
			}
			k := ackKey{m.GetSender(), m.GetClientMsgId()}
			if _, dup := stored[k]; dup {
				t.Fatalf("room %s: %v stored twice", room, k)
			}
			stored[k] = m.GetSeq()
		}
		heads[room] = uint64(len(msgs))
	}
	for k, m := range acked {
		if seq, ok := stored[k]; !ok || seq != m.GetSeq() {
			t.Fatalf("acked %v with seq %d; stored with seq %d (%v)", k, m.GetSeq(), seq, ok)
		}
	}
	// Every receiver catches up to every head, having seen each seq once in order.
	for i, r := range recvs {
		waitUntil(t, fmt.Sprint("receiver ", i, " to catch up"), func() bool { return r.caughtUp(heads) })
		r.stop()
		if err := r.violation(); err != nil {
			t.Fatalf("receiver %d: %v", i, err)
		}
	}
	t.Logf("sent %d (retried %d), acked %d, stored %d (heads %v), delivered %d to %d receivers, kills %d",
		st.sent.Load(), st.retried.Load(), len(acked), len(stored), heads, st.delivered.Load(), receivers, kills)
	if len(stored) != len(acked) {
		// Sends whose ack was lost in a crash are stored once and acked on retry,
		// so stored and acked must match exactly.
		t.Fatalf("stored %d messages, acked %d", len(stored), len(acked))
	}
}

// waitUntil polls cond until it holds or a deadline passes.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond) // polling interval
	}
}

// crashSender sends on a Join stream, reopening it after a failure.
type crashSender struct {
	conn   *grpc.ClientConn
	token  string
	stream grpc.BidiStreamingClient[parleyv1.JoinRequest, parleyv1.JoinResponse]
	cancel context.CancelFunc
	joined map[string]bool
	ref    int
}

func (s *crashSender) close() {
	if s.cancel != nil {
		s.cancel()
	}
}

// sendUntilAcked sends one message, retrying with the same client_msg_id on
// a new stream until it is acked.
func (s *crashSender) sendUntilAcked(ctx context.Context, t *testing.T, room, body, id string, st *crashStats) *parleyv1.Message {
	for attempt := 0; ; attempt++ {
		if ctx.Err() != nil {
			t.Errorf("send %s: %v", id, ctx.Err())
			return nil
		}
		if attempt > 0 {
			st.retried.Add(1)
		}
		m, err := s.try(ctx, room, body, id)
		if err == nil {
			return m
		}
		if c := status.Code(err); c != codes.Unavailable && c != codes.Canceled && c != codes.Unknown && c != codes.Internal {
			t.Errorf("send %s: %v", id, err)
			return nil
		}
		s.close()
		s.stream = nil
	}
}

func (s *crashSender) try(ctx context.Context, room, body, id string) (*parleyv1.Message, error) {
	if s.stream == nil {
		sctx, cancel := context.WithCancel(bearer(ctx, s.token))
		stream, err := parleyv1.NewChatServiceClient(s.conn).Join(sctx)
		if err != nil {
			cancel()
			return nil, err
		}
		s.stream, s.cancel, s.joined = stream, cancel, map[string]bool{}
	}
	if !s.joined[room] {
		if _, err := s.call(&parleyv1.JoinRequest{Frame: &parleyv1.JoinRequest_Join{Join: &parleyv1.JoinRequest_JoinRoom{Room: room}}}); err != nil {
			return nil, err
		}
		s.joined[room] = true
	}
	r, err := s.call(&parleyv1.JoinRequest{Frame: &parleyv1.JoinRequest_Send{Send: &parleyv1.JoinRequest_Post{Room: room, Body: body, ClientMsgId: id}}})
	if err != nil {
		return nil, err
	}
	return r.GetMessage(), nil
}

// call sends a frame and reads until its reply, skipping other events.
func (s *crashSender) call(req *parleyv1.JoinRequest) (*parleyv1.Reply, error) {
	s.ref++
	req.Ref = fmt.Sprint(s.ref)
	if err := s.stream.Send(req); err != nil {
		_, err = s.stream.Recv() // the stream's real status
		return nil, err
	}
	for {
		ev, err := s.stream.Recv()
		if err != nil {
			return nil, err
		}
		if r := ev.GetReply(); r != nil && r.GetRef() == req.Ref {
			if r.GetCode() != 0 {
				return nil, status.Error(codes.Code(r.GetCode()), r.GetError())
			}
			return r, nil
		}
	}
}

// crashReceiver stays joined to rooms across crashes, resuming each from the
// last seq it saw, and records any gap, duplicate or reorder.
type crashReceiver struct {
	conn  *grpc.ClientConn
	token string
	rooms []string
	stats *crashStats

	mu      sync.Mutex
	last    map[string]uint64
	bad     error
	stopped bool
	cancel  context.CancelFunc
}

func (r *crashReceiver) run(ctx context.Context) {
	for ctx.Err() == nil {
		r.mu.Lock()
		if r.stopped {
			r.mu.Unlock()
			return
		}
		sctx, cancel := context.WithCancel(bearer(ctx, r.token))
		r.cancel = cancel
		r.mu.Unlock()
		r.session(sctx)
		cancel()
	}
}

func (r *crashReceiver) session(ctx context.Context) {
	stream, err := parleyv1.NewChatServiceClient(r.conn).Join(ctx)
	if err != nil {
		return
	}
	for i, room := range r.rooms {
		r.mu.Lock()
		after := r.last[room]
		r.mu.Unlock()
		if err := stream.Send(&parleyv1.JoinRequest{Ref: fmt.Sprint(i), Frame: &parleyv1.JoinRequest_Join{Join: &parleyv1.JoinRequest_JoinRoom{Room: room, AfterSeq: &after}}}); err != nil {
			return
		}
	}
	for {
		ev, err := stream.Recv()
		if err != nil {
			return
		}
		if rep := ev.GetReply(); rep != nil && rep.GetCode() != 0 {
			r.fail(fmt.Errorf("join %s: %s", rep.GetRoom(), rep.GetError()))
			return
		}
		if m := ev.GetMessage(); m != nil {
			r.mu.Lock()
			if want := r.last[m.GetRoom()] + 1; m.GetSeq() != want && r.bad == nil {
				r.bad = fmt.Errorf("room %s: got seq %d, want %d", m.GetRoom(), m.GetSeq(), want)
			}
			r.last[m.GetRoom()] = m.GetSeq()
			r.mu.Unlock()
			r.stats.delivered.Add(1)
		}
	}
}

func (r *crashReceiver) fail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.bad == nil {
		r.bad = err
	}
}

func (r *crashReceiver) caughtUp(heads map[string]uint64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for room, h := range heads {
		if r.last[room] < h {
			return false
		}
	}
	return true
}

func (r *crashReceiver) stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stopped = true
	if r.cancel != nil {
		r.cancel()
	}
}

func (r *crashReceiver) violation() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.bad
}
