package app_test

import (
	"testing"
	"time"

	parleyv1 "github.com/parleychat/parley/gen/parley/v1"
)

// Two nodes: a mark on one reaches the user's stream on the other within
// a second, with the counts, and the other member of a small room on the
// other node gets the receipt.
func TestClusterReadMarkerSync(t *testing.T) {
	nodes := startCluster(t, 2)
	privateRoom(t, nodes[0], "alice", "pair", "bob")
	alice, actx := nodes[0].client(t, "alice")
	sendN(t, alice, actx, "pair", 1)
	bob, bctx := nodes[0].client(t, "bob")
	if _, err := bob.SendMessage(bctx, &parleyv1.SendMessageRequest{Room: "pair", Body: "ping"}); err != nil {
		t.Fatal(err)
	}
	sendN(t, bob, bctx, "pair", 1)

	here := openJoin(t, nodes[0].dial(t), nodes[0].token(t, "alice"))
	there := openJoin(t, nodes[1].dial(t), nodes[1].token(t, "alice"))
	bs := openJoin(t, nodes[1].dial(t), nodes[1].token(t, "bob"))
	bs.join("pair", nil)
	if j := there.join("pair", nil); j.GetHeadSeq() != 3 {
		t.Fatalf("joined on node 1: head %d", j.GetHeadSeq())
	}

	start := time.Now()
	if r := here.markRead("pair", 1); marker(r.GetReadMarker()) != "1/2/0@3" {
		t.Fatalf("mark on node 0: %v", r)
	}
	got := there.next(isReadMarker("pair"), nil).GetReadMarker()
	took := time.Since(start)
	t.Logf("node 1 delivered the marker %v after the mark on node 0", took)
	if marker(got) != "1/2/0@3" {
		t.Fatalf("node 1 got read_marker %s, want 1/2/0@3", marker(got))
	}
	if limit := time.Second; took > limit && !raceEnabled {
		t.Fatalf("the marker took %v to reach the other node, more than %v", took, limit)
	}
	if r := receiptOf(bs.next(isReceipt("pair", "alice"), nil), "pair", "alice"); r.GetSeq() != 1 {
		t.Fatalf("bob's receipt on node 1: %v", r)
	}
	// A later mark on node 1 moves the marker on node 0's stream too.
	if r := there.markRead("pair", 3); marker(r.GetReadMarker()) != "3/0/0@3" {
		t.Fatalf("mark on node 1: %v", r)
	}
	// (its own mark's event came first)
	third := func(ev *parleyv1.JoinResponse) bool {
		return isReadMarker("pair")(ev) && ev.GetReadMarker().GetSeq() != 1
	}
	if got := here.next(third, nil).GetReadMarker(); marker(got) != "3/0/0@3" {
		t.Fatalf("node 0 got read_marker %s", marker(got))
	}
}

// A node where a room is live answers its users' marks from memory,
// counting the entries other nodes sent, and learns of a marker another
// node stored from the user subject: a lower mark on it then answers that
// marker as it is, without reading the store.
func TestClusterMarkCountedInMemory(t *testing.T) {
	nodes := startCluster(t, 2)
	privateRoom(t, nodes[0], "alice", "pair", "bob")
	here := openJoin(t, nodes[0].dial(t), nodes[0].token(t, "alice"))
	here.join("pair", nil)
	there := openJoin(t, nodes[1].dial(t), nodes[1].token(t, "alice"))
	there.join("pair", nil)
	bs := openJoin(t, nodes[1].dial(t), nodes[1].token(t, "bob"))
	bs.join("pair", nil)
	for _, body := range []string{"one", "two @alice", "three"} {
		okSeq(t, bs.post("pair", body, ""))
	}
	here.next(func(ev *parleyv1.JoinResponse) bool { return ev.GetMessage().GetSeq() == 3 }, nil)

	if r := here.markRead("pair", 1); marker(r.GetReadMarker()) != "1/2/1@3" {
		t.Fatalf("first mark on node 0: %v", r)
	}
	waitFor(t, "node 0 to store its marker", func() bool { return nodes[0].Hub().Stats().PendingReadMarks == 0 })
	if r := there.markRead("pair", 2); marker(r.GetReadMarker()) != "2/1/0@3" {
		t.Fatalf("mark on node 1: %v", r)
	}
	if got := here.next(func(ev *parleyv1.JoinResponse) bool {
		return isReadMarker("pair")(ev) && ev.GetReadMarker().GetSeq() == 2
	}, nil).GetReadMarker(); marker(got) != "2/1/0@3" {
		t.Fatalf("node 0 got read_marker %s", marker(got))
	}
	before := nodes[0].Hub().Stats()
	if r := here.markRead("pair", 1); marker(r.GetReadMarker()) != "2/1/0@3" {
		t.Fatalf("a lower mark on node 0 after node 1 stored 2: %v, want the marker as it is", r)
	}
	if after := nodes[0].Hub().Stats(); after.MarksInMemory != before.MarksInMemory+1 || after.MarksFromStore != before.MarksFromStore {
		t.Fatalf("node 0 answered from memory %d times, read the store %d times; want 1 and 0",
			after.MarksInMemory-before.MarksInMemory, after.MarksFromStore-before.MarksFromStore)
	}
}
