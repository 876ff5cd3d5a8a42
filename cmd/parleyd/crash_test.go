package main

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
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
// messages, edits, deletes and reactions, pipelined on Join streams, and
// receivers receive; senders retry unacked frames with the same
// client_msg_id after reconnecting, receivers resume from the last seq they
// saw. After the last restart: every acked entry is stored exactly once
// with its acked seq (a replay from seq 0 gives each room's seqs 1..N, and
// nothing that was not acked); every receiver saw each entry once, in
// order; ListMessages shows what applying the acked entries in seq order
// gives, as do the receivers' own views. Then the server stops cleanly,
// and no file of its data directory holds the text of a deleted message
// or of any of its edits.
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

	const senders, receivers, minPerSender, kills = 4, 3, 150, 6
	var st crashStats
	var killing atomic.Bool
	killing.Store(true)
	var ackMu sync.Mutex
	var done []*crashOp // acked or rejected, in no particular order
	pool := &crashPool{}

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
			pl := &crashPlanner{user: user, rooms: rooms, rng: rand.New(rand.NewPCG(seed, uint64(s)+2)), pool: pool, reacted: map[crashReactKey]bool{}}
			for pl.n < minPerSender || killing.Load() {
				if ctx.Err() != nil {
					t.Errorf("%s: gave up: %v", user, ctx.Err())
					return
				}
				ops := pl.plan()
				st.sent.Add(int64(len(ops)))
				if !snd.doUntilAcked(ctx, t, ops, &st) {
					return
				}
				pl.record(ops)
				ackMu.Lock()
				done = append(done, ops...)
				ackMu.Unlock()
				st.acked.Add(int64(len(ops)))
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

	// What the acks say the log holds, and what it must show.
	acked, kinds, noops, rejected := ackedEntries(t, done)
	want := applyEntries(acked)
	// Every acked entry is stored exactly once, with its seq, and nothing
	// else is: a replay from seq 0 gives 1..N in each room.
	stored, heads := replayAll(t, actx, admin, rooms...)
	checkStored(t, want, acked, stored)
	checkRefusals(t, want, done)

	// ListMessages shows what applying the acked entries gives, to anyone.
	sender0 := bearer(context.Background(), d.token(t, "sender0"))
	for _, room := range rooms {
		for _, caller := range []struct {
			name string
			ctx  context.Context
		}{{"admin", actx}, {"sender0", sender0}} {
			if err := compareView(want[room], history(t, admin, caller.ctx, room), caller.name); err != nil {
				t.Fatalf("room %s as seen by %s after the crashes: %v", room, caller.name, err)
			}
		}
	}
	// Every receiver catches up to every head, having seen each seq once in
	// order, and its view is the same.
	for i, r := range recvs {
		waitUntil(t, fmt.Sprint("receiver ", i, " to catch up"), func() bool { return r.caughtUp(heads) })
		r.stop()
		if err := r.violation(); err != nil {
			t.Fatalf("receiver %d: %v", i, err)
		}
		r.mu.Lock()
		views := applyEntries(r.entries)
		r.mu.Unlock()
		for _, room := range rooms {
			if err := compareView(views[room], history(t, admin, actx, room), "admin"); err != nil {
				t.Fatalf("receiver %d's view of %s: %v", i, room, err)
			}
		}
	}
	t.Logf("sent %d (retried %d), acked %d (%d messages, %d edits, %d deletes, %d reactions added, %d removed; %d no-ops, %d refused), stored %d (heads %v), delivered %d to %d receivers, kills %d",
		st.sent.Load(), st.retried.Load(), st.acked.Load(), kinds[kindMessage], kinds[kindEdit], kinds[kindDelete], kinds[kindReact], kinds[kindUnreact],
		noops, rejected, len(stored), heads, st.delivered.Load(), receivers, kills)

	// A clean stop checkpoints the WAL; then no file holds a deleted text,
	// while every text still shown is there (so the search can find one).
	var gone, kept []string
	for _, a := range acked {
		if a.kind != kindMessage && a.kind != kindEdit {
			continue
		}
		if erased(want, a) {
			gone = append(gone, a.body)
		}
	}
	for _, v := range want {
		for _, m := range v.msgs {
			if !m.deleted {
				kept = append(kept, m.body)
			}
		}
	}
	if len(gone) == 0 || len(kept) == 0 {
		t.Fatalf("%d deleted texts and %d kept: the test needs both", len(gone), len(kept))
	}
	d.stop(t)
	files := dataFiles(t, d.dir)
	for _, text := range gone {
		for name, b := range files {
			if bytes.Contains(b, []byte(text)) {
				t.Fatalf("deleted text %q is still in %s", text, name)
			}
		}
	}
	for _, text := range kept {
		found := false
		for _, b := range files {
			found = found || bytes.Contains(b, []byte(text))
		}
		if !found {
			t.Fatalf("text %q, still shown, is in no file of the data directory", text)
		}
	}
	names := slices.Sorted(maps.Keys(files))
	t.Logf("after a clean stop, %d deleted texts are in none of %v; %d shown texts are found", len(gone), names, len(kept))
}

// dataFiles reads every file under dir, by path relative to it.
func dataFiles(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		files[rel] = b
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
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

// crashOp is one entry a sender asks for, and the server's answer.
type crashOp struct {
	entry    logEntry // as asked; entry.seq is the acked seq, 0 for a no-op
	noop     bool     // asked for what is so already: must be answered OK with no seq
	rejected bool     // refused with FAILED_PRECONDITION: the target was deleted
	done     bool
}

// frame is the Join frame that asks for op.
func (op *crashOp) frame() *parleyv1.JoinRequest {
	e := op.entry
	switch e.kind {
	case kindMessage:
		return &parleyv1.JoinRequest{Frame: &parleyv1.JoinRequest_Send{Send: &parleyv1.JoinRequest_Post{Room: e.room, Body: e.body, ClientMsgId: e.id, ReplyToSeq: e.replyTo}}}
	case kindEdit:
		return &parleyv1.JoinRequest{Frame: &parleyv1.JoinRequest_Edit{Edit: &parleyv1.JoinRequest_EditMessage{Room: e.room, Seq: e.target, Body: e.body, ClientMsgId: e.id}}}
	case kindDelete:
		return &parleyv1.JoinRequest{Frame: &parleyv1.JoinRequest_Delete{Delete: &parleyv1.JoinRequest_DeleteMessage{Room: e.room, Seq: e.target, ClientMsgId: e.id}}}
	case kindReact:
		return &parleyv1.JoinRequest{Frame: &parleyv1.JoinRequest_React_{React: &parleyv1.JoinRequest_React{Room: e.room, Seq: e.target, Emoji: e.emoji, ClientMsgId: e.id}}}
	default:
		return &parleyv1.JoinRequest{Frame: &parleyv1.JoinRequest_Unreact{Unreact: &parleyv1.JoinRequest_React{Room: e.room, Seq: e.target, Emoji: e.emoji, ClientMsgId: e.id}}}
	}
}

// crashPool holds every acked message of every sender, for reactions and
// replies.
type crashPool struct {
	mu   sync.Mutex
	msgs []crashMsg
}

type crashMsg struct {
	room string
	seq  uint64
}

type crashReactKey struct {
	msg   crashMsg
	emoji string
}

// crashPlanner chooses a sender's next frames: new messages (some replying
// to any sender's message), edits and deletes of its own messages, and
// reactions to anyone's, added or taken back.
type crashPlanner struct {
	user    string
	rooms   []string
	rng     *rand.Rand
	pool    *crashPool
	n       int        // frames planned so far
	mine    []crashMsg // own messages not deleted
	reacted map[crashReactKey]bool
}

var crashEmoji = []string{"👍", "🎉", "+1", "❤️"}

// plan returns 1 to 4 frames to pipeline, no two of them on one message.
func (p *crashPlanner) plan() []*crashOp {
	p.pool.mu.Lock()
	pool := slices.Clone(p.pool.msgs)
	p.pool.mu.Unlock()
	used := map[crashMsg]bool{}
	pick := func(from []crashMsg) (crashMsg, bool) {
		if len(from) == 0 {
			return crashMsg{}, false
		}
		m := from[p.rng.IntN(len(from))]
		return m, !used[m]
	}
	var ops []*crashOp
	for range 1 + p.rng.IntN(4) {
		e, noop := logEntry{sender: p.user, id: fmt.Sprint(p.user, "-", p.n)}, false
		p.n++
		r := p.rng.IntN(100)
		if m, ok := pick(p.mine); ok && r < 20 {
			e.kind, e.room, e.target, e.body = kindEdit, m.room, m.seq, fmt.Sprintf("edit %s of seq %d %016x", e.id, m.seq, p.rng.Uint64())
			used[m] = true
		} else if m, ok := pick(p.mine); ok && r < 30 {
			e.kind, e.room, e.target = kindDelete, m.room, m.seq
			used[m] = true
		} else if k, ok := p.pickReacted(used); ok && r < 45 {
			// Take a reaction back, or, once in a while, add it again: a
			// no-op, which stores nothing, even when retried.
			e.kind, e.room, e.target, e.emoji = kindUnreact, k.msg.room, k.msg.seq, k.emoji
			if p.rng.IntN(5) == 0 {
				e.kind, noop = kindReact, true
			}
			used[k.msg] = true
		} else if m, ok := pick(pool); ok && r < 60 {
			e.kind, e.room, e.target, e.emoji = kindReact, m.room, m.seq, crashEmoji[p.rng.IntN(len(crashEmoji))]
			if p.reacted[crashReactKey{m, e.emoji}] {
				e.kind = kindUnreact
			}
			used[m] = true
		} else {
			e.kind, e.room, e.body = kindMessage, p.rooms[p.n%len(p.rooms)], fmt.Sprintf("body of %s %016x", e.id, p.rng.Uint64())
			if m, ok := pick(pool); ok && m.room == e.room && p.rng.IntN(3) == 0 {
				e.replyTo = m.seq
			}
		}
		ops = append(ops, &crashOp{entry: e, noop: noop})
	}
	return ops
}

// pickReacted returns one of the sender's reactions, on a message not in
// used.
func (p *crashPlanner) pickReacted(used map[crashMsg]bool) (crashReactKey, bool) {
	var keys []crashReactKey
	for k, on := range p.reacted {
		if on && !used[k.msg] {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return crashReactKey{}, false
	}
	slices.SortFunc(keys, func(a, b crashReactKey) int { // map order is random: keep the seed's run repeatable
		return cmpOr(strings.Compare(a.msg.room, b.msg.room), cmpOr(int(a.msg.seq)-int(b.msg.seq), strings.Compare(a.emoji, b.emoji)))
	})
	return keys[p.rng.IntN(len(keys))], true
}

// record takes in the answers to ops.
func (p *crashPlanner) record(ops []*crashOp) {
	for _, op := range ops {
		e := op.entry
		m := crashMsg{e.room, e.target}
		switch {
		case op.rejected:
		case e.kind == kindMessage:
			m.seq = e.seq
			p.mine = append(p.mine, m)
			p.pool.mu.Lock()
			p.pool.msgs = append(p.pool.msgs, m)
			p.pool.mu.Unlock()
		case e.kind == kindDelete:
			// Others may still react to it until they plan again: refused.
			gone := func(x crashMsg) bool { return x == m }
			p.mine = slices.DeleteFunc(p.mine, gone)
			p.pool.mu.Lock()
			p.pool.msgs = slices.DeleteFunc(p.pool.msgs, gone)
			p.pool.mu.Unlock()
		case e.kind == kindReact, e.kind == kindUnreact:
			// A no-op answer (seq 0) means the reaction was already so.
			p.reacted[crashReactKey{m, e.emoji}] = e.kind == kindReact
		}
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

// doUntilAcked pipelines ops, retrying those not answered yet with the
// same client_msg_ids on a new stream until each is acked (or refused
// because its target was deleted).
func (s *crashSender) doUntilAcked(ctx context.Context, t *testing.T, ops []*crashOp, st *crashStats) bool {
	for attempt := 0; ; attempt++ {
		if ctx.Err() != nil {
			t.Errorf("send %v: %v", ops[0].entry, ctx.Err())
			return false
		}
		if attempt > 0 {
			st.retried.Add(1)
		}
		err := s.try(ctx, ops)
		if err == nil {
			for _, op := range ops {
				if !op.done {
					t.Errorf("%+v: not answered, yet no error", op.entry)
					return false
				}
			}
			return true
		}
		if c := status.Code(err); c != codes.Unavailable && c != codes.Canceled && c != codes.Unknown && c != codes.Internal {
			t.Errorf("send: %v", err)
			return false
		}
		s.close()
		s.stream = nil
	}
}

func (s *crashSender) try(ctx context.Context, ops []*crashOp) error {
	if s.stream == nil {
		sctx, cancel := context.WithCancel(bearer(ctx, s.token))
		stream, err := parleyv1.NewChatServiceClient(s.conn).Join(sctx)
		if err != nil {
			cancel()
			return err
		}
		s.stream, s.cancel, s.joined = stream, cancel, map[string]bool{}
	}
	for _, op := range ops {
		if room := op.entry.room; !s.joined[room] {
			if _, err := s.call(&parleyv1.JoinRequest{Frame: &parleyv1.JoinRequest_Join{Join: &parleyv1.JoinRequest_JoinRoom{Room: room}}}); err != nil {
				return err
			}
			s.joined[room] = true
		}
	}
	pending := map[string]*crashOp{}
	for _, op := range ops {
		if op.done {
			continue
		}
		req := op.frame()
		s.ref++
		req.Ref = fmt.Sprint(s.ref)
		if err := s.stream.Send(req); err != nil {
			return s.status()
		}
		pending[req.Ref] = op
	}
	for len(pending) > 0 {
		ev, err := s.stream.Recv()
		if err != nil {
			return err
		}
		r := ev.GetReply()
		op := pending[r.GetRef()]
		if op == nil {
			continue
		}
		switch code := codes.Code(r.GetCode()); {
		case code == codes.OK:
			op.entry.seq = r.GetSeq()
			if m := r.GetMessage(); op.entry.kind == kindMessage {
				if m.GetBody() != op.entry.body || m.GetClientMsgId() != op.entry.id || m.GetReplyToSeq() != op.entry.replyTo {
					return status.Errorf(codes.DataLoss, "sent %+v, acked %v", op.entry, m)
				}
				op.entry.seq = m.GetSeq()
			}
			// Only a reaction can be a no-op here: a sender deletes its
			// message once.
			if op.entry.seq == 0 && op.entry.kind != kindReact && op.entry.kind != kindUnreact {
				return status.Errorf(codes.DataLoss, "%+v acked with no seq: %v", op.entry, r)
			}
		case code == codes.FailedPrecondition && (op.entry.kind == kindReact || op.entry.kind == kindUnreact):
			op.rejected = true // someone deleted the message meanwhile
		default:
			return status.Errorf(code, "%+v: %s", op.entry, r.GetError())
		}
		op.done = true
		delete(pending, r.GetRef())
	}
	return nil
}

// status returns the stream's real status once Send failed: Recv first
// returns the events still buffered, then the error.
func (s *crashSender) status() error {
	for {
		if _, err := s.stream.Recv(); err != nil {
			return err
		}
	}
}

// call sends a frame and reads until its reply, skipping other events.
func (s *crashSender) call(req *parleyv1.JoinRequest) (*parleyv1.Reply, error) {
	s.ref++
	req.Ref = fmt.Sprint(s.ref)
	if err := s.stream.Send(req); err != nil {
		return nil, s.status()
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
// last seq it saw, records every entry, and records any gap, duplicate or
// reorder.
type crashReceiver struct {
	conn  *grpc.ClientConn
	token string
	rooms []string
	stats *crashStats

	mu      sync.Mutex
	last    map[string]uint64
	entries []logEntry
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
		if e, ok := entryOf(ev); ok {
			r.mu.Lock()
			if want := r.last[e.room] + 1; e.seq != want && r.bad == nil {
				r.bad = fmt.Errorf("room %s: got seq %d (%s), want %d", e.room, e.seq, e.kind, want)
			}
			r.last[e.room] = e.seq
			r.entries = append(r.entries, e)
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
