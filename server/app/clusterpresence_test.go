package app_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	parleyv1 "github.com/parleychat/parley/gen/parley/v1"
)

// diffUsers lists the users a presence diff joins and leaves.
func diffUsers(d *parleyv1.PresenceDiff) (joins, leaves []string) {
	for _, p := range d.GetJoins() {
		joins = append(joins, p.GetUser())
	}
	for _, p := range d.GetLeaves() {
		leaves = append(leaves, p.GetUser())
	}
	return joins, leaves
}

// awaitJoins reads js's presence diffs until every one of users has joined.
func awaitJoins(t *testing.T, js *joinStream, room string, users ...string) {
	t.Helper()
	for len(users) > 0 {
		joins, _ := diffUsers(js.next(isDiff(room), nil).GetPresenceDiff())
		users = slices.DeleteFunc(users, func(u string) bool { return slices.Contains(joins, u) })
	}
}

// A NATS outage longer than the node timeout: neither node takes the
// other's users for gone (no leave is announced, ListPresence still lists
// them), and once NATS is back the one user who really left meanwhile is
// announced as one leave, and nothing else changes.
func TestClusterPresenceHoldsThroughABrokerOutage(t *testing.T) {
	nats := startNATSProcess(t)
	nodes := startClusterVia(t, nats.url(), nats.url())
	nodes[0].createRoom(t, "hall")
	alice := openJoin(t, nodes[0].dial(t), nodes[0].token(t, "alice"))
	alice.join("hall", nil)
	bob := openJoin(t, nodes[1].dial(t), nodes[1].token(t, "bob"))
	bob.join("hall", nil)
	carol := openJoin(t, nodes[1].dial(t), nodes[1].token(t, "carol"))
	carol.join("hall", nil)
	awaitJoins(t, alice, "hall", "bob", "carol")
	awaitJoins(t, bob, "hall", "carol")
	waitFor(t, "node 1 to list alice", func() bool { return strings.Contains(presenceOf(t, nodes[1], "hall"), "alice") })
	before0, before1 := presenceOf(t, nodes[0], "hall"), presenceOf(t, nodes[1], "hall")

	nats.stop()
	for _, n := range nodes {
		waitFor(t, "the nodes to see the broker gone", func() bool {
			_, body := healthz(t, n.Addr())
			return strings.Contains(body, "broker unreachable")
		})
	}
	for i, n := range nodes {
		if !presenceStale(t, n, "hall") {
			t.Fatalf("node %d's ListPresence is not marked stale while the broker is gone", i)
		}
	}
	carol.closeAndWait() // leaves while nobody can hear it on node 0
	// Her own node drops her once it has seen her stream end, which is a
	// moment after the client's close returns.
	waitFor(t, "node 1 to drop carol", func() bool { return !strings.Contains(presenceOf(t, nodes[1], "hall"), "carol") })
	after1 := presenceOf(t, nodes[1], "hall")
	// The outage lasts three node timeouts; all along, each node keeps
	// listing the other's users.
	for end := time.Now().Add(3 * nodes[0].cfg.NodeTimeout); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if got := presenceOf(t, nodes[0], "hall"); got != before0 {
			t.Fatalf("node 0's presence changed during the outage:\n got %s\nwant %s", got, before0)
		}
		if got := presenceOf(t, nodes[1], "hall"); got != after1 {
			t.Fatalf("node 1's presence changed during the outage:\n got %s\nwant %s", got, after1)
		}
	}
	if before1 == after1 {
		t.Fatal("carol's leave did not show on her own node")
	}
	noDiff := func(js *joinStream, who string) {
		select {
		case ev := <-js.events:
			t.Fatalf("%s got %v during the outage, want nothing", who, ev)
		default:
		}
	}
	noDiff(alice, "alice")

	nats.start()
	// Once the broker is back, alice hears carol's leave, and only that.
	ev := alice.next(isDiff("hall"), nil).GetPresenceDiff()
	if joins, leaves := diffUsers(ev); len(joins) != 0 || !slices.Equal(leaves, []string{"carol"}) {
		t.Fatalf("after the outage alice got joins %v, leaves %v; want carol's leave alone", joins, leaves)
	}
	waitFor(t, "the nodes to agree", func() bool {
		return presenceOf(t, nodes[0], "hall") == presenceOf(t, nodes[1], "hall")
	})
	if got := presenceOf(t, nodes[0], "hall"); got != after1 {
		t.Fatalf("node 0 after the outage: %s, want %s", got, after1)
	}
	for _, n := range nodes {
		waitFor(t, "ListPresence to be no longer stale", func() bool { return !presenceStale(t, n, "hall") })
	}
	// Three heartbeats later, still nothing more.
	bob.post("hall", "hello", "")
	alice.next(isMessage("hall"), func(ev *parleyv1.JoinResponse) { t.Fatalf("alice got %v after the reconciliation", ev) })
}

// A node that starts while others hold connections in a room answers its
// first join and its first ListPresence with them.
func TestClusterNewNodeStartsWithTheRemotePresence(t *testing.T) {
	dsn, url := postgresDSN(t), natsURL(t)
	id := rand.Uint32()
	schema := fmt.Sprintf("parley_newnode_%d", id)
	dropSchema(t, dsn, schema)
	node := func(i int) *testServer {
		return startServer(t, func(c *appConfig) {
			c.Store, c.PostgresSchema = dsn, schema
			c.Broker, c.BrokerSubject, c.NodeID = url, fmt.Sprintf("parley-newnode-%d", id), fmt.Sprintf("node-%d", i)
		})
	}
	first, second := node(0), node(1)
	first.createRoom(t, "hall")
	var want []string
	for i, n := range []*testServer{first, second, first, second} {
		user := fmt.Sprint("u", i)
		js := openJoin(t, n.dial(t), n.token(t, user))
		js.join("hall", nil)
		want = append(want, user)
	}
	waitFor(t, "the two nodes to agree", func() bool {
		p := presenceOf(t, first, "hall")
		return p == presenceOf(t, second, "hall") && !slices.ContainsFunc(want, func(u string) bool { return !strings.Contains(p, u+"[") })
	})

	for _, how := range []string{"join", "ListPresence"} {
		t.Run(how, func(t *testing.T) {
			third := node(2 + len(how)) // a fresh node for each
			var got []string
			if how == "join" {
				js := openJoin(t, third.dial(t), third.token(t, "newcomer"))
				for _, p := range js.join("hall", nil).GetPresence() {
					got = append(got, p.GetUser())
				}
				got = slices.DeleteFunc(got, func(u string) bool { return u == "newcomer" })
			} else {
				c, ctx := third.client(t, "observer")
				resp, err := c.ListPresence(ctx, &parleyv1.ListPresenceRequest{Room: "hall"})
				if err != nil {
					t.Fatal(err)
				}
				for _, p := range resp.GetPresence() {
					got = append(got, p.GetUser())
				}
			}
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Fatalf("a new node's first %s lists %v, want %v", how, got, want)
			}
		})
	}
}

// presenceStale returns ListPresence's stale flag for room on ts.
func presenceStale(t *testing.T, ts *testServer, room string) bool {
	t.Helper()
	c, ctx := ts.client(t, "observer")
	resp, err := c.ListPresence(ctx, &parleyv1.ListPresenceRequest{Room: room})
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetStale()
}
