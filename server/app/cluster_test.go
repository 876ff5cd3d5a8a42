package app_test

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	parleyv1 "github.com/parleychat/parley/gen/parley/v1"
)

// natsURL returns the test NATS server, skipping when it is not reachable
// (unless PARLEY_REQUIRE_NATS=1).
func natsURL(t testing.TB) string {
	t.Helper()
	url := os.Getenv("PARLEY_TEST_NATS")
	if url == "" {
		url = "nats://127.0.0.1:4222"
	}
	c, err := net.DialTimeout("tcp", url[len("nats://"):], 2*time.Second)
	if err != nil {
		if os.Getenv("PARLEY_REQUIRE_NATS") == "1" {
			t.Fatalf("NATS at %s: %v", url, err)
		}
		t.Skipf("NATS not reachable at %s (set PARLEY_TEST_NATS): %v", url, err)
	}
	c.Close()
	return url
}

// startCluster starts n in-process nodes sharing a fresh PostgreSQL schema
// and NATS subjects of their own.
func startCluster(t testing.TB, n int) []*testServer {
	t.Helper()
	dsn, url := postgresDSN(t), natsURL(t)
	id := rand.Uint32()
	schema := fmt.Sprintf("parley_cluster_%d", id)
	dropSchema(t, dsn, schema)
	nodes := make([]*testServer, n)
	for i := range nodes {
		nodes[i] = startServer(t, func(c *appConfig) {
			c.Store, c.PostgresSchema = dsn, schema
			c.Broker, c.BrokerSubject, c.NodeID = url, fmt.Sprintf("parley-test-%d", id), fmt.Sprintf("node-%d", i)
			c.NodeTimeout = 2 * time.Second
		})
	}
	return nodes
}

func presenceOf(t *testing.T, ts *testServer, room string) string {
	t.Helper()
	c, ctx := ts.client(t, "observer")
	resp, err := c.ListPresence(ctx, &parleyv1.ListPresenceRequest{Room: room})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range resp.GetPresence() {
		var ids []string
		for _, m := range p.GetMetas() {
			ids = append(ids, m.GetConnId())
		}
		sort.Strings(ids)
		out = append(out, fmt.Sprint(p.GetUser(), ids))
	}
	return fmt.Sprint(out)
}

// Three nodes, clients spread across them in one room: every client sees
// every message exactly once in the same seq order, and the presence lists
// agree on all nodes within a second of each change.
func TestClusterOneOrderAndPresence(t *testing.T) {
	nodes := startCluster(t, 3)
	nodes[0].createRoom(t, "shared")
	var clients []*joinStream
	for i := range 6 {
		js := openJoin(t, nodes[i%3].dial(t), nodes[i%3].token(t, fmt.Sprint("user", i)))
		js.join("shared", nil)
		clients = append(clients, js)
	}
	agree := func(what string) {
		t.Helper()
		deadline := time.Now().Add(time.Second)
		for {
			views := []string{presenceOf(t, nodes[0], "shared"), presenceOf(t, nodes[1], "shared"), presenceOf(t, nodes[2], "shared")}
			if views[0] == views[1] && views[1] == views[2] {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: presence differs between nodes after 1s:\n%s", what, views)
			}
			time.Sleep(10 * time.Millisecond) // polling interval
		}
	}
	agree("after six joins")
	if v := presenceOf(t, nodes[1], "shared"); len(v) == 0 {
		t.Fatal("no presence")
	}

	const perClient = 20
	var wg sync.WaitGroup
	for i, js := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range perClient {
				if r := js.post("shared", fmt.Sprint("c", i, "-", n), ""); r.GetCode() != 0 {
					t.Errorf("send: %s", r.GetError())
					return
				}
			}
		}()
	}
	wg.Wait()
	total := uint64(len(clients) * perClient)
	var first []string
	for i, js := range clients {
		var got []string
		for want := uint64(1); want <= total; want++ {
			m := js.next(isMessage("shared"), nil).GetMessage()
			if m.GetSeq() != want {
				t.Fatalf("client %d (node %d): seq %d, want %d", i, i%3, m.GetSeq(), want)
			}
			got = append(got, m.GetBody())
		}
		if first == nil {
			first = got
		} else if !slices.Equal(first, got) {
			t.Fatalf("client %d saw a different order", i)
		}
	}

	for i, n := range nodes {
		st := n.Hub().Stats()
		t.Logf("node %d: %d messages from other nodes, %d read from the store to fill gaps", i, st.RemoteMessages, st.GapFills)
		if st.RemoteMessages < int64(total)*2/3-int64(perClient) || st.GapFills > int64(total)/10 {
			t.Errorf("node %d: the broker did not carry the other nodes' messages", i)
		}
	}

	clients[4].closeAndWait() // on node 1
	agree("after a client on node 1 left")
	if v := presenceOf(t, nodes[2], "shared"); strings.Contains(v, "user4") {
		t.Fatalf("user4 still present on node 2: %s", v)
	}
}

// BenchmarkCrossNodeDelivery measures what a hop between nodes adds: one
// sender on node 0, one receiver on node 0 and one on node 1; each op is
// one message, and the p50/p99 latencies of both receivers are reported.
func BenchmarkCrossNodeDelivery(b *testing.B) {
	nodes := startCluster(b, 2)
	nodes[0].createRoom(b, "hop")
	local := openJoin(b, nodes[0].dial(b), nodes[0].token(b, "local"))
	local.join("hop", nil)
	remote := openJoin(b, nodes[1].dial(b), nodes[1].token(b, "remote"))
	remote.join("hop", nil)
	sender := openJoin(b, nodes[0].dial(b), nodes[0].token(b, "sender"))
	sender.join("hop", nil)
	var localLat, remoteLat []time.Duration
	b.ResetTimer()
	for i := range b.N {
		body := fmt.Sprint("hop ", i)
		start := time.Now()
		ref := sender.send(&parleyv1.JoinRequest{Frame: &parleyv1.JoinRequest_Send{Send: &parleyv1.JoinRequest_Post{Room: "hop", Body: body}}})
		byBody := func(ev *parleyv1.JoinResponse) bool { return ev.GetMessage().GetBody() == body }
		local.next(byBody, nil)
		localLat = append(localLat, time.Since(start))
		remote.next(byBody, nil)
		remoteLat = append(remoteLat, time.Since(start))
		sender.reply(ref)
	}
	b.StopTimer()
	pct := func(l []time.Duration, p int) float64 {
		slices.Sort(l)
		return float64(l[(len(l)-1)*p/100].Microseconds())
	}
	b.ReportMetric(pct(localLat, 50), "local-p50-µs")
	b.ReportMetric(pct(localLat, 99), "local-p99-µs")
	b.ReportMetric(pct(remoteLat, 50), "remote-p50-µs")
	b.ReportMetric(pct(remoteLat, 99), "remote-p99-µs")
}
