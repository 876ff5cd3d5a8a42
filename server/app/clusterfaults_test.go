package app_test

import (
	"fmt"
	"math/rand/v2"
	"strings"
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

	start := time.Now()
	removeBob(t, nodes[0], "secret")
	wantRemoved(t, bs, "secret", start, time.Second)
	if r := bs.post("secret", "still here?", ""); codes.Code(r.GetCode()) != codes.NotFound {
		t.Fatalf("removed member's send on node 1: %v", r)
	}
}

// A node cut off from the broker misses the kick, yet takes the removed
// member out within about a second from the store, and refuses the
// member's next join, Subscribe and history read of the room.
func TestClusterRemovalWithTheBrokerCut(t *testing.T) {
	url := natsURL(t)
	proxy := newCutProxy(t, strings.TrimPrefix(url, "nats://"))
	nodes := startClusterVia(t, url, "nats://"+proxy.ln.Addr().String())
	bs := privateRoomWithBob(t, nodes[0], nodes[1], "secret")

	proxy.setCut(true)
	start := time.Now()
	removeBob(t, nodes[0], "secret")
	wantRemoved(t, bs, "secret", start, 3*time.Second)

	ref := bs.send(&parleyv1.JoinRequest{Frame: &parleyv1.JoinRequest_Join{Join: &parleyv1.JoinRequest_JoinRoom{Room: "secret"}}})
	if r := bs.reply(ref); codes.Code(r.GetCode()) != codes.NotFound {
		t.Fatalf("removed member's join on the cut-off node: %v", r)
	}
	bob, bctx := nodes[1].client(t, "bob")
	_, err := bob.ListMessages(bctx, &parleyv1.ListMessagesRequest{Room: "secret"})
	wantCode(t, "removed member's history on the cut-off node", err, codes.NotFound, "does not exist")
	sub, err := bob.Subscribe(bctx, &parleyv1.SubscribeRequest{Room: "secret"})
	if err == nil {
		_, err = sub.Recv()
	}
	wantCode(t, "removed member's Subscribe on the cut-off node", err, codes.NotFound, "does not exist")
}
