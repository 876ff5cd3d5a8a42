package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	parleyv1 "github.com/parleychat/parley/gen/parley/v1"
)

// clusterDeps returns the PostgreSQL DSN and NATS URL for cluster tests,
// skipping when either is missing (unless PARLEY_REQUIRE_POSTGRES=1 or
// PARLEY_REQUIRE_NATS=1).
func clusterDeps(t *testing.T) (dsn, natsURL string) {
	t.Helper()
	dsn = os.Getenv("PARLEY_TEST_POSTGRES")
	if dsn == "" {
		dsn = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	}
	natsURL = os.Getenv("PARLEY_TEST_NATS")
	if natsURL == "" {
		natsURL = "nats://127.0.0.1:4222"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		if os.Getenv("PARLEY_REQUIRE_POSTGRES") == "1" {
			t.Fatalf("PostgreSQL: %v", err)
		}
		t.Skipf("PostgreSQL not reachable at %s: %v", dsn, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	if c, err := net.DialTimeout("tcp", natsURL[len("nats://"):], 2*time.Second); err != nil {
		if os.Getenv("PARLEY_REQUIRE_NATS") == "1" {
			t.Fatalf("NATS: %v", err)
		}
		t.Skipf("NATS not reachable at %s: %v", natsURL, err)
	} else {
		c.Close()
	}
	return dsn, natsURL
}

// SIGKILL one node of three under a load of messages, edits, deletes and
// reactions: the others announce its users' leaves within 6 s, its
// clients resume on another node with after_seq and miss nothing, every
// acked entry is stored once at its seq, clients on every node are
// delivered every entry once and in order, and every view (both living
// nodes' ListMessages, each client's entries applied in seq order) is
// what applying the acked entries gives.
func TestClusterNodeDeath(t *testing.T) {
	dsn, natsURL := clusterDeps(t)
	id := rand.Uint32()
	schema := fmt.Sprintf("parley_node_death_%d", id)
	t.Cleanup(func() {
		if conn, err := pgx.Connect(context.Background(), dsn); err == nil {
			conn.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
			conn.Close(context.Background())
		}
	})
	dir := t.TempDir()
	nodes := make([]*daemon, 3)
	for i := range nodes {
		nodes[i] = &daemon{dir: dir, addr: "127.0.0.1:0", args: []string{
			"--store", dsn, "--postgres-schema", schema, "--broker", natsURL,
			"--broker-subject", fmt.Sprintf("parley-death-%d", id), "--node-id", fmt.Sprint("node", i), "--send-rate", "-1",
		}}
		nodes[i].start(t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin := parleyv1.NewChatServiceClient(dialDaemon(t, nodes[0].addr))
	actx := bearer(ctx, nodes[0].token(t, "admin"))
	if _, err := admin.CreateRoom(actx, &parleyv1.CreateRoomRequest{Name: "survive"}); err != nil {
		t.Fatal(err)
	}
	// Clients on the two nodes that live record every entry they are
	// delivered, checking that each comes once, in order.
	observers := make([]*crashReceiver, 2)
	for n := range observers {
		observers[n] = &crashReceiver{conn: dialDaemon(t, nodes[n].addr), token: nodes[n].token(t, fmt.Sprint("observer", n)),
			rooms: []string{"survive"}, last: map[string]uint64{}, stats: &crashStats{}}
		go observers[n].run(ctx)
	}
	join := func(node int, user string, after *uint64) (parleyv1.ChatService_JoinClient, context.CancelFunc) {
		t.Helper()
		sctx, scancel := context.WithCancel(bearer(ctx, nodes[node].token(t, user)))
		s, err := parleyv1.NewChatServiceClient(dialDaemon(t, nodes[node].addr)).Join(sctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Send(&parleyv1.JoinRequest{Ref: "j", Frame: &parleyv1.JoinRequest_Join{Join: &parleyv1.JoinRequest_JoinRoom{Room: "survive", AfterSeq: after}}}); err != nil {
			t.Fatal(err)
		}
		return s, scancel
	}
	watcher, wcancel := join(0, "watcher", nil)
	defer wcancel()
	// The victim joins only once the watcher's room is live on node 0, so
	// that its arrival is a diff the watcher sees, not part of its state.
	waitEvent(t, watcher, func(ev *parleyv1.JoinResponse) bool { return ev.GetJoined() != nil })
	victim, vcancel := join(2, "victim", nil)
	defer vcancel()
	// The watcher sees the victim arrive (from node 2, through the broker).
	waitEvent(t, watcher, func(ev *parleyv1.JoinResponse) bool {
		for _, p := range ev.GetPresenceDiff().GetJoins() {
			if p.GetUser() == "victim" {
				return true
			}
		}
		return false
	})
	var last uint64
	var before []*crashOp
	for i := range 5 {
		resp, err := admin.SendMessage(actx, &parleyv1.SendMessageRequest{Room: "survive", Body: fmt.Sprint("before ", i)})
		if err != nil {
			t.Fatal(err)
		}
		last = resp.GetMessage().GetSeq()
		before = append(before, &crashOp{entry: logEntry{kind: kindMessage, room: "survive", seq: last, sender: "admin", body: fmt.Sprint("before ", i)}})
	}
	var seen uint64
	var victimSaw []logEntry // what the victim's client was delivered, on node 2 then node 1
	waitEvent(t, victim, func(ev *parleyv1.JoinResponse) bool {
		if e, ok := entryOf(ev); ok {
			seen = e.seq
			victimSaw = append(victimSaw, e)
		}
		return seen == last
	})

	// Load through the kill: a sender on node 0 and one on the node that
	// dies, which retries an unacked call on node 1 with the same
	// client_msg_id, as a client of a dead node would. Each sends 150
	// entries: messages (some replies), edits and deletes of its own
	// messages, and reactions to anyone's, added and taken back.
	var ackMu sync.Mutex
	var done []*crashOp
	pool := &crashPool{}
	var retried atomic.Int64
	var load sync.WaitGroup
	for i, s := range []struct {
		user  string
		nodes []int
	}{{"steady", []int{0}}, {"stranded", []int{2, 1}}} {
		load.Add(1)
		go func() {
			defer load.Done()
			clients := map[int]parleyv1.ChatServiceClient{}
			for _, n := range s.nodes {
				clients[n] = parleyv1.NewChatServiceClient(dialDaemon(t, nodes[n].addr))
			}
			tok := nodes[0].token(t, s.user)
			pl := &crashPlanner{user: s.user, rooms: []string{"survive"}, rng: rand.New(rand.NewPCG(uint64(id), uint64(i))), pool: pool, reacted: map[crashReactKey]bool{}}
			at := 0
			for pl.n < 150 {
				ops := pl.plan()
				for _, op := range ops {
					for {
						cctx, ccancel := context.WithTimeout(bearer(ctx, tok), 2*time.Second)
						err := unaryOp(cctx, clients[s.nodes[at]], op)
						ccancel()
						if err == nil {
							break
						}
						if c := status.Code(err); c != codes.Unavailable && c != codes.DeadlineExceeded && c != codes.Canceled && c != codes.Unknown && c != codes.Internal {
							t.Errorf("%+v: %v", op.entry, err)
							return
						}
						if ctx.Err() != nil {
							t.Errorf("%+v: %v", op.entry, err)
							return
						}
						retried.Add(1)
						at = min(at+1, len(s.nodes)-1) // its node is gone: the next one
					}
				}
				pl.record(ops)
				ackMu.Lock()
				done = append(done, ops...)
				ackMu.Unlock()
				time.Sleep(5 * time.Millisecond) // pacing, so the load spans the kill
			}
		}()
	}
	waitUntil(t, "the load to be under way", func() bool {
		ackMu.Lock()
		defer ackMu.Unlock()
		return len(done) >= 40
	})
	killed := time.Now()
	nodes[2].kill(t)
	waitEvent(t, watcher, func(ev *parleyv1.JoinResponse) bool {
		for _, p := range ev.GetPresenceDiff().GetLeaves() {
			if p.GetUser() == "victim" {
				return true
			}
		}
		return false
	})
	if d := time.Since(killed); d > 6*time.Second {
		t.Fatalf("the dead node's user left presence after %v, want within 6s", d)
	} else {
		t.Logf("the dead node's user left presence %v after SIGKILL", d.Round(10*time.Millisecond))
	}
	load.Wait()
	if t.Failed() {
		return
	}
	// Every acked entry is stored once, at its acked seq, and nothing
	// else; both nodes that live replay the same log, seqs 1..N.
	acked, kinds, noops, refused := ackedEntries(t, append(before, done...))
	want := applyEntries(acked)
	stored, heads := replayAll(t, actx, admin, "survive")
	checkStored(t, want, acked, stored)
	checkRefusals(t, want, done)
	node1 := parleyv1.NewChatServiceClient(dialDaemon(t, nodes[1].addr))
	stored1, _ := replayAll(t, actx, node1, "survive")
	if !slices.Equal(stored, stored1) {
		t.Fatalf("node 1 replays %d entries, node 0 %d, or other ones", len(stored1), len(stored))
	}
	head := heads["survive"]
	// The victim's client resumes on node 1 and misses nothing.
	again, acancel := join(1, "victim", &seen)
	defer acancel()
	want1 := seen + 1
	waitEvent(t, again, func(ev *parleyv1.JoinResponse) bool {
		if e, ok := entryOf(ev); ok {
			if e.seq != want1 {
				t.Fatalf("resumed on another node: seq %d, want %d", e.seq, want1)
			}
			victimSaw = append(victimSaw, e)
			want1++
		}
		return want1 == head+1
	})
	// Both nodes' ListMessages, the clients on nodes 0 and 1, and the
	// victim's client show what applying the acked entries gives.
	for n, c := range []parleyv1.ChatServiceClient{admin, node1} {
		if err := compareView(want["survive"], history(t, c, actx, "survive"), "admin"); err != nil {
			t.Fatalf("ListMessages on node %d: %v", n, err)
		}
		sctx := bearer(ctx, nodes[0].token(t, "steady"))
		if err := compareView(want["survive"], history(t, c, sctx, "survive"), "steady"); err != nil {
			t.Fatalf("ListMessages on node %d, as steady: %v", n, err)
		}
	}
	for n, o := range observers {
		waitUntil(t, fmt.Sprint("the client on node ", n, " to catch up"), func() bool { return o.caughtUp(heads) })
		o.stop()
		if err := o.violation(); err != nil {
			t.Fatalf("client on node %d: %v", n, err)
		}
		o.mu.Lock()
		err := compareView(applyEntries(o.entries)["survive"], history(t, admin, actx, "survive"), "admin")
		o.mu.Unlock()
		if err != nil {
			t.Fatalf("view of the client on node %d: %v", n, err)
		}
	}
	if err := compareView(applyEntries(victimSaw)["survive"], history(t, admin, actx, "survive"), "admin"); err != nil {
		t.Fatalf("view of the victim's client: %v", err)
	}
	t.Logf("%d entries stored and acked (%d messages, %d edits, %d deletes, %d reactions added, %d removed; %d no-ops, %d refused; %d calls retried), victim resumed after seq %d",
		head, kinds[kindMessage], kinds[kindEdit], kinds[kindDelete], kinds[kindReact], kinds[kindUnreact], noops, refused, retried.Load(), seen)
}

// unaryOp asks for op with the unary RPC of its kind, and takes in the
// answer.
func unaryOp(ctx context.Context, c parleyv1.ChatServiceClient, op *crashOp) error {
	e := op.entry
	var err error
	switch e.kind {
	case kindMessage:
		var r *parleyv1.SendMessageResponse
		r, err = c.SendMessage(ctx, &parleyv1.SendMessageRequest{Room: e.room, Body: e.body, ClientMsgId: e.id, ReplyToSeq: e.replyTo})
		if err == nil && (r.GetMessage().GetBody() != e.body || r.GetMessage().GetReplyToSeq() != e.replyTo) {
			return status.Errorf(codes.DataLoss, "sent %+v, acked %v", e, r.GetMessage())
		}
		op.entry.seq = r.GetMessage().GetSeq()
	case kindEdit:
		var r *parleyv1.EditMessageResponse
		r, err = c.EditMessage(ctx, &parleyv1.EditMessageRequest{Room: e.room, Seq: e.target, Body: e.body, ClientMsgId: e.id})
		op.entry.seq = r.GetEdit().GetSeq()
	case kindDelete:
		var r *parleyv1.DeleteMessageResponse
		r, err = c.DeleteMessage(ctx, &parleyv1.DeleteMessageRequest{Room: e.room, Seq: e.target, ClientMsgId: e.id})
		op.entry.seq = r.GetDelete().GetSeq()
	case kindReact:
		var r *parleyv1.AddReactionResponse
		r, err = c.AddReaction(ctx, &parleyv1.AddReactionRequest{Room: e.room, Seq: e.target, Emoji: e.emoji, ClientMsgId: e.id})
		op.entry.seq = r.GetReaction().GetSeq()
	case kindUnreact:
		var r *parleyv1.RemoveReactionResponse
		r, err = c.RemoveReaction(ctx, &parleyv1.RemoveReactionRequest{Room: e.room, Seq: e.target, Emoji: e.emoji, ClientMsgId: e.id})
		op.entry.seq = r.GetReaction().GetSeq()
	}
	if status.Code(err) == codes.FailedPrecondition && (e.kind == kindReact || e.kind == kindUnreact) {
		op.rejected = true // its owner deleted the message meanwhile
		return nil
	}
	return err
}

// waitEvent reads s until match holds, failing after 20 s.
func waitEvent(t *testing.T, s parleyv1.ChatService_JoinClient, match func(*parleyv1.JoinResponse) bool) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		for {
			ev, err := s.Recv()
			if err != nil {
				done <- err
				return
			}
			if match(ev) {
				done <- nil
				return
			}
		}
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("stream ended: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no matching event within 20s")
	}
}

// A node restarted at once after SIGKILL comes back as a new incarnation
// with no connections: the others drop its old entries on its first
// heartbeat, long before the node timeout (no ghosts).
func TestClusterRestartedNodeLeavesNoGhosts(t *testing.T) {
	dsn, natsURL := clusterDeps(t)
	id := rand.Uint32()
	schema := fmt.Sprintf("parley_ghosts_%d", id)
	t.Cleanup(func() {
		if conn, err := pgx.Connect(context.Background(), dsn); err == nil {
			conn.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
			conn.Close(context.Background())
		}
	})
	dir := t.TempDir()
	nodes := make([]*daemon, 2)
	for i := range nodes {
		nodes[i] = &daemon{dir: dir, addr: "127.0.0.1:0", args: []string{
			"--store", dsn, "--postgres-schema", schema, "--broker", natsURL,
			"--broker-subject", fmt.Sprintf("parley-ghosts-%d", id), "--node-id", fmt.Sprint("node", i),
			"--node-timeout", "30s", // far longer than the test: only the new incarnation can clear the ghost
		}}
		nodes[i].start(t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := parleyv1.NewChatServiceClient(dialDaemon(t, nodes[0].addr))
	if _, err := c.CreateRoom(bearer(ctx, nodes[0].token(t, "admin")), &parleyv1.CreateRoomRequest{Name: "haunted"}); err != nil {
		t.Fatal(err)
	}
	open := func(node int, user string) parleyv1.ChatService_JoinClient {
		s, err := parleyv1.NewChatServiceClient(dialDaemon(t, nodes[node].addr)).Join(bearer(ctx, nodes[node].token(t, user)))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Send(&parleyv1.JoinRequest{Ref: "j", Frame: &parleyv1.JoinRequest_Join{Join: &parleyv1.JoinRequest_JoinRoom{Room: "haunted"}}}); err != nil {
			t.Fatal(err)
		}
		return s
	}
	watcher := open(0, "watcher")
	// The ghost joins only once the watcher's room is live on node 0: before
	// that, its arrival could be part of the watcher's joined state rather
	// than the diff waited for below, which then never came.
	waitEvent(t, watcher, func(ev *parleyv1.JoinResponse) bool { return ev.GetJoined() != nil })
	open(1, "ghost")
	hasUser := func(ps []*parleyv1.Presence) bool {
		for _, p := range ps {
			if p.GetUser() == "ghost" {
				return true
			}
		}
		return false
	}
	waitEvent(t, watcher, func(ev *parleyv1.JoinResponse) bool { return hasUser(ev.GetPresenceDiff().GetJoins()) })
	nodes[1].kill(t)
	restarted := time.Now()
	nodes[1].start(t)
	waitEvent(t, watcher, func(ev *parleyv1.JoinResponse) bool { return hasUser(ev.GetPresenceDiff().GetLeaves()) })
	if d := time.Since(restarted); d > 5*time.Second {
		t.Fatalf("the restarted node's old entry stayed %v", d)
	} else {
		t.Logf("the restarted node's old entry was dropped %v after the restart began", d.Round(10*time.Millisecond))
	}
}
