package app_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	parleyv1 "github.com/parleychat/parley/gen/parley/v1"
)

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
