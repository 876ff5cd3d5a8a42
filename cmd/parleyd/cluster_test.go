package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

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

// SIGKILL one node of three: the others announce its users' leaves within
// 6 s, and its clients resume on another node with after_seq and miss
// nothing.
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
	for i := range 5 {
		resp, err := admin.SendMessage(actx, &parleyv1.SendMessageRequest{Room: "survive", Body: fmt.Sprint("before ", i)})
		if err != nil {
			t.Fatal(err)
		}
		last = resp.GetMessage().GetSeq()
	}
	var seen uint64
	waitEvent(t, victim, func(ev *parleyv1.JoinResponse) bool {
		if m := ev.GetMessage(); m != nil {
			seen = m.GetSeq()
		}
		return seen == last
	})

	// Load through the kill: a sender on node 0 and one on the node that
	// dies, which retries an unacked send on node 1 with the same
	// client_msg_id, as a client of a dead node would.
	type acked struct{ sender, id string }
	ackedSeqs := map[acked]uint64{}
	var ackMu sync.Mutex
	var load sync.WaitGroup
	for _, s := range []struct {
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
			at := 0
			for i := range 150 {
				id := fmt.Sprint(s.user, "-", i)
				for {
					cctx, ccancel := context.WithTimeout(bearer(ctx, tok), 2*time.Second)
					resp, err := clients[s.nodes[at]].SendMessage(cctx, &parleyv1.SendMessageRequest{Room: "survive", Body: id, ClientMsgId: id})
					ccancel()
					if err == nil {
						ackMu.Lock()
						ackedSeqs[acked{s.user, id}] = resp.GetMessage().GetSeq()
						ackMu.Unlock()
						break
					}
					if ctx.Err() != nil {
						t.Errorf("%s: %v", id, err)
						return
					}
					at = min(at+1, len(s.nodes)-1) // its node is gone: the next one
				}
				time.Sleep(5 * time.Millisecond) // pacing, so the load spans the kill
			}
		}()
	}
	waitUntil(t, "the load to be under way", func() bool {
		ackMu.Lock()
		defer ackMu.Unlock()
		return len(ackedSeqs) >= 40
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
	// Every acked message is stored once; the room's seqs are 1..N.
	var stored []*parleyv1.Message
	req := &parleyv1.ListMessagesRequest{Room: "survive", Limit: 200, Order: parleyv1.MessageOrder_MESSAGE_ORDER_OLDEST_FIRST}
	for {
		resp, err := admin.ListMessages(actx, req)
		if err != nil {
			t.Fatal(err)
		}
		stored = append(stored, resp.GetMessages()...)
		if req.PageToken = resp.GetNextPageToken(); req.PageToken == "" {
			break
		}
	}
	byKey := map[acked]uint64{}
	for i, m := range stored {
		if m.GetSeq() != uint64(i+1) {
			t.Fatalf("stored message %d has seq %d", i, m.GetSeq())
		}
		if m.GetClientMsgId() != "" {
			k := acked{m.GetSender(), m.GetClientMsgId()}
			if _, dup := byKey[k]; dup {
				t.Fatalf("%v stored twice", k)
			}
			byKey[k] = m.GetSeq()
		}
	}
	for k, seq := range ackedSeqs {
		if byKey[k] != seq {
			t.Fatalf("acked %v as seq %d, stored as %d", k, seq, byKey[k])
		}
	}
	head := uint64(len(stored))
	// The victim's client resumes on node 1 and misses nothing.
	again, acancel := join(1, "victim", &seen)
	defer acancel()
	want := seen + 1
	waitEvent(t, again, func(ev *parleyv1.JoinResponse) bool {
		if m := ev.GetMessage(); m != nil {
			if m.GetSeq() != want {
				t.Fatalf("resumed on another node: seq %d, want %d", m.GetSeq(), want)
			}
			want++
		}
		return want == head+1
	})
	t.Logf("%d messages stored, %d acked (300 sent by two senders through the kill), victim resumed after seq %d", head, len(ackedSeqs), seen)
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
