package app_test

import (
	"cmp"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	parleyv1 "github.com/parleychat/parley/gen/parley/v1"
)

// startClusterVia starts one in-process node per broker URL, sharing a
// fresh PostgreSQL schema and NATS subjects of their own: a node may reach
// the broker through a proxy the test cuts.
func startClusterVia(t *testing.T, urls ...string) []*testServer {
	t.Helper()
	dsn := postgresDSN(t)
	id := rand.Uint32()
	schema := fmt.Sprintf("parley_faults_%d", id)
	dropSchema(t, dsn, schema)
	nodes := make([]*testServer, len(urls))
	for i, url := range urls {
		nodes[i] = startServer(t, func(c *appConfig) {
			c.Store, c.PostgresSchema = dsn, schema
			c.Broker, c.BrokerSubject, c.NodeID = url, fmt.Sprintf("parley-faults-%d", id), fmt.Sprintf("node-%d", i)
			c.NodeTimeout = 2 * time.Second
		})
	}
	return nodes
}

// privateRoomWithBob has alice create a private room on node a and add bob,
// and opens bob's Join stream on node b, in the room.
func privateRoomWithBob(t *testing.T, a, b *testServer, room string) *joinStream {
	t.Helper()
	alice, actx := a.client(t, "alice")
	if _, err := alice.CreateRoom(actx, &parleyv1.CreateRoomRequest{Name: room, Visibility: parleyv1.RoomVisibility_ROOM_VISIBILITY_PRIVATE}); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.AddMember(actx, &parleyv1.AddMemberRequest{Room: room, User: "bob"}); err != nil {
		t.Fatal(err)
	}
	bs := openJoin(t, b.dial(t), b.token(t, "bob"))
	bs.join(room, nil)
	return bs
}

// removeBob has alice remove bob through node a.
func removeBob(t *testing.T, a *testServer, room string) {
	t.Helper()
	alice, actx := a.client(t, "alice")
	if _, err := alice.RemoveMember(actx, &parleyv1.RemoveMemberRequest{Room: room, User: "bob"}); err != nil {
		t.Fatal(err)
	}
}

// wantRemoved waits for the ref-less PERMISSION_DENIED notice a removed
// member's stream gets, within limit.
func wantRemoved(t *testing.T, bs *joinStream, room string, start time.Time, limit time.Duration) {
	t.Helper()
	r := bs.reply("")
	if codes.Code(r.GetCode()) != codes.PermissionDenied || r.GetRoom() != room || !strings.Contains(r.GetError(), "removed") {
		t.Fatalf("removed member's notice: %v", r)
	}
	if d := time.Since(start); d > limit {
		t.Fatalf("removed member's stream on the other node was cut after %v, want within %v", d, limit)
	}
}

// A member removed through one node is taken out of the room on every
// node within a second, told so as on a single node, and reads no more.
func TestClusterRemovalReachesEveryNode(t *testing.T) {
	url := natsURL(t)
	nodes := startClusterVia(t, url, url)
	bs := privateRoomWithBob(t, nodes[0], nodes[1], "secret")
	as := openJoin(t, nodes[0].dial(t), nodes[0].token(t, "alice"))
	as.join("secret", nil)
	if r := as.post("secret", "before", ""); r.GetCode() != 0 {
		t.Fatalf("send: %v", r)
	}
	bs.next(isMessage("secret"), nil) // the room is live for bob on node 1
	bob, bctx := nodes[1].client(t, "bob")
	sub, err := bob.Subscribe(bctx, &parleyv1.SubscribeRequest{Room: "secret"})
	if err != nil {
		t.Fatal(err)
	}
	if ev, err := sub.Recv(); err != nil || ev.GetJoined() == nil {
		t.Fatalf("Subscribe's joined state: %v %v", ev, err)
	}

	start := time.Now()
	removeBob(t, nodes[0], "secret")
	wantRemoved(t, bs, "secret", start, time.Second)
	subEnded := make(chan error, 1)
	go func() {
		for {
			if _, err := sub.Recv(); err != nil {
				subEnded <- err
				return
			}
		}
	}()
	select {
	case err := <-subEnded:
		wantCode(t, "removed member's Subscribe stream", err, codes.PermissionDenied, "you were removed from room secret")
		if d := time.Since(start); d > time.Second {
			t.Errorf("removed member's Subscribe stream on the other node ended after %v, want within 1s", d)
		}
	case <-time.After(waitTimeout):
		t.Fatal("removed member's Subscribe stream on the other node did not end")
	}
	if r := bs.post("secret", "still here?", ""); codes.Code(r.GetCode()) != codes.NotFound {
		t.Fatalf("removed member's send on node 1: %v", r)
	}
}

// holdProxy forwards TCP to target until it is told to hold: then it keeps
// the connections open and drops what crosses them, as a blackholed link
// does (no reset, no answer).
type holdProxy struct {
	ln     net.Listener
	target string
	hold   atomic.Bool
}

func newHoldProxy(t *testing.T, target string) *holdProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &holdProxy{ln: ln, target: target}
	var conns sync.WaitGroup
	t.Cleanup(func() { ln.Close(); conns.Wait() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			// Each side's copy ends when its source closes; closing both
			// ends the other copy.
			conns.Add(2)
			go func() { defer conns.Done(); p.pipe(up, c); up.Close(); c.Close() }()
			go func() { defer conns.Done(); p.pipe(c, up); up.Close(); c.Close() }()
			go func() { <-t.Context().Done(); up.Close(); c.Close() }()
		}
	}()
	return p
}

// pipe copies src to dst, dropping what it reads while the proxy holds.
func (p *holdProxy) pipe(dst io.Writer, src io.Reader) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !p.hold.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// A node cut off from the broker, by a closed link or a blackholed one,
// misses the kick, yet takes the removed member out within a few seconds
// from the store, and refuses the member's next join, Subscribe and
// history read of the room.
func TestClusterRemovalWithTheBrokerCut(t *testing.T) {
	url := natsURL(t)
	for _, how := range []string{"closed", "blackholed"} {
		t.Run(how, func(t *testing.T) {
			target := strings.TrimPrefix(url, "nats://")
			cut, hold := newCutProxy(t, target), newHoldProxy(t, target)
			via := map[string]string{"closed": cut.ln.Addr().String(), "blackholed": hold.ln.Addr().String()}[how]
			nodes := startClusterVia(t, url, "nats://"+via)
			bs := privateRoomWithBob(t, nodes[0], nodes[1], "secret")

			cut.setCut(true)
			hold.hold.Store(true)
			start := time.Now()
			removeBob(t, nodes[0], "secret")
			// A blackholed link is found by the health check's ping (every
			// 2 s, answered within 2 s), then the members are checked.
			wantRemoved(t, bs, "secret", start, 8*time.Second)
			refusedAfterRemoval(t, nodes[1], bs)
		})
	}
}

// refusedAfterRemoval checks that bob's join, history read and Subscribe
// of room secret are refused on node ts.
func refusedAfterRemoval(t *testing.T, ts *testServer, bs *joinStream) {
	t.Helper()
	ref := bs.send(&parleyv1.JoinRequest{Frame: &parleyv1.JoinRequest_Join{Join: &parleyv1.JoinRequest_JoinRoom{Room: "secret"}}})
	if r := bs.reply(ref); codes.Code(r.GetCode()) != codes.NotFound {
		t.Fatalf("removed member's join on the cut-off node: %v", r)
	}
	bob, bctx := ts.client(t, "bob")
	_, err := bob.ListMessages(bctx, &parleyv1.ListMessagesRequest{Room: "secret"})
	wantCode(t, "removed member's history on the cut-off node", err, codes.NotFound, "does not exist")
	sub, err := bob.Subscribe(bctx, &parleyv1.SubscribeRequest{Room: "secret"})
	if err == nil {
		_, err = sub.Recv()
	}
	wantCode(t, "removed member's Subscribe on the cut-off node", err, codes.NotFound, "does not exist")
}

// outageFor is how long TestClusterFollowsTheStoreWhileTheBrokerIsDown
// keeps NATS down: PARLEY_TEST_OUTAGE, default 5s.
func outageFor(t *testing.T) time.Duration {
	d, err := time.ParseDuration(cmp.Or(os.Getenv("PARLEY_TEST_OUTAGE"), "5s"))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// arrivals records when a Join stream received each message of a room.
type arrivals struct {
	mu   sync.Mutex
	seqs []uint64
	late []time.Duration // receipt minus the message's sent_at
}

func (a *arrivals) follow(js *joinStream, room string) {
	for ev := range js.events {
		m := ev.GetMessage()
		if m.GetRoom() != room {
			continue
		}
		a.mu.Lock()
		a.seqs = append(a.seqs, m.GetSeq())
		a.late = append(a.late, time.Since(m.GetSentAt().AsTime()))
		a.mu.Unlock()
	}
}

func (a *arrivals) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.seqs)
}

// percentile returns the p-th percentile of ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

// While NATS is down, two nodes send 50 msgs/s each into one room: every
// receiver, on the sending node or the other, gets each message within a
// second at p99 (from the store), and once NATS is back nothing is
// missing or repeated.
func TestClusterFollowsTheStoreWhileTheBrokerIsDown(t *testing.T) {
	nats := startNATSProcess(t)
	nodes := startClusterVia(t, nats.url(), nats.url())
	nodes[0].createRoom(t, "busy")
	recv := make([]*arrivals, len(nodes))
	for i, n := range nodes {
		js := openJoin(t, n.dial(t), n.token(t, fmt.Sprint("r", i)))
		js.join("busy", nil)
		recv[i] = &arrivals{}
		go recv[i].follow(js, "busy")
	}
	nats.stop()
	for _, n := range nodes {
		waitFor(t, "the nodes to see the broker gone", func() bool {
			_, body := healthz(t, n.Addr())
			return strings.Contains(body, "broker unreachable")
		})
	}
	outage := outageFor(t)
	var wg sync.WaitGroup
	sent := make([]int, len(nodes))
	for i, n := range nodes {
		c, ctx := n.client(t, fmt.Sprint("s", i))
		wg.Go(func() {
			tick := time.NewTicker(20 * time.Millisecond) // 50 msgs/s
			defer tick.Stop()
			for end := time.Now().Add(outage); time.Now().Before(end); <-tick.C {
				if _, err := c.SendMessage(ctx, &parleyv1.SendMessageRequest{Room: "busy", Body: "x"}); err != nil {
					t.Errorf("send on node %d: %v", i, err)
					return
				}
				sent[i]++
			}
		})
	}
	wg.Wait()
	total := sent[0] + sent[1]
	for i, a := range recv {
		waitFor(t, fmt.Sprintf("receiver %d to get all %d messages during the outage", i, total), func() bool { return a.count() >= total })
	}
	nats.start()
	for _, n := range nodes {
		waitFor(t, "the nodes to see the broker back", func() bool {
			_, body := healthz(t, n.Addr())
			return strings.TrimSpace(body) == "ok"
		})
	}
	c, ctx := nodes[0].client(t, "s0")
	if _, err := c.SendMessage(ctx, &parleyv1.SendMessageRequest{Room: "busy", Body: "after"}); err != nil {
		t.Fatal(err)
	}
	total++
	for i, a := range recv {
		waitFor(t, fmt.Sprintf("receiver %d to get the message after the outage", i), func() bool { return a.count() >= total })
		a.mu.Lock()
		for j, seq := range a.seqs {
			if seq != uint64(j+1) {
				t.Fatalf("receiver %d: message %d has seq %d, want %d (nothing missing or repeated)", i, j, seq, j+1)
			}
		}
		late := a.late[:total-1]
		a.mu.Unlock()
		p50, p99, worst := percentile(late, 0.5), percentile(late, 0.99), percentile(late, 1)
		t.Logf("receiver on node %d: %d messages during a %v outage, late by p50 %v, p99 %v, max %v", i, len(late), outage, p50, p99, worst)
		if p99 > time.Second {
			t.Errorf("receiver on node %d: p99 %v during the outage, want within 1s", i, p99)
		}
	}
}
