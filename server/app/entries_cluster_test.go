package app_test

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	parleyv1 "github.com/parleychat/parley/gen/parley/v1"
)

// Edits, deletes and reactions made on one node reach the other node's
// members in seq order among the messages, while both nodes send: each
// member receives every entry once, in one order, and applying them gives
// the history either node shows.
func TestClusterEntriesInOrder(t *testing.T) {
	nodes := startCluster(t, 2)
	nodes[0].createRoom(t, "both")
	var members []*joinStream
	for i, n := range nodes {
		js := openJoin(t, n.dial(t), n.token(t, fmt.Sprint("user", i)))
		js.join("both", nil)
		members = append(members, js)
	}
	watchers := []*joinStream{openJoin(t, nodes[0].dial(t), nodes[0].token(t, "w0")), openJoin(t, nodes[1].dial(t), nodes[1].token(t, "w1"))}
	for _, w := range watchers {
		w.join("both", nil)
	}
	// Each member posts, edits, reacts to the other's messages, takes
	// some reactions back and deletes some of its own, all at once.
	const rounds = 15
	var wg sync.WaitGroup
	var last [2]atomic.Uint64 // each member's newest message
	for i, js := range members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stored := func(r *parleyv1.Reply) uint64 {
				if r.GetCode() != 0 {
					t.Errorf("member %d: %s", i, r.GetError())
				}
				if r.GetMessage() != nil {
					return r.GetMessage().GetSeq()
				}
				return r.GetSeq()
			}
			for n := range rounds {
				seq := stored(js.post("both", fmt.Sprint("m", i, "-", n), ""))
				last[i].Store(seq)
				stored(js.edit("both", seq, fmt.Sprint("m", i, "-", n, " edited"), ""))
				if theirs := last[1-i].Load(); theirs > 0 {
					// The other member's newest message, stored through
					// the other node; one it deleted is FAILED_PRECONDITION.
					if r := js.react("both", theirs, "👍", ""); r.GetCode() != 0 && r.GetCode() != 9 {
						t.Errorf("member %d: react: %s", i, r.GetError())
					}
					if n%3 == 0 {
						if r := js.unreact("both", theirs, "👍", ""); r.GetCode() != 0 && r.GetCode() != 9 {
							t.Errorf("member %d: unreact: %s", i, r.GetError())
						}
					}
				}
				if n%4 == 1 {
					stored(js.del("both", seq, ""))
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	hist, head := nodes[0].history(t, "w0", "both")
	other, head1 := nodes[1].history(t, "w0", "both")
	if head != head1 || !slices.Equal(hist, other) {
		t.Fatalf("the nodes disagree: head %d vs %d", head, head1)
	}
	var first []string
	for i, w := range watchers {
		evs := w.entries(1, int(head))
		kinds := map[string]int{}
		var order []string
		for _, ev := range evs {
			kinds[entryKind(ev)]++
			order = append(order, fmt.Sprint(entrySeq(ev), entryKind(ev)))
		}
		t.Logf("watcher on node %d: %v", i, kinds)
		if kinds["edit"] == 0 || kinds["delete"] == 0 || kinds["reaction_added"] == 0 || kinds["reaction_removed"] == 0 {
			t.Fatalf("watcher %d did not receive every kind: %v", i, kinds)
		}
		if first == nil {
			first = order
		} else if !slices.Equal(first, order) {
			t.Fatalf("the watchers received different orders")
		}
		sameView(t, fmt.Sprint("entries received on node ", i), evs, hist, "w0")
	}
	for i, n := range nodes {
		st := n.Hub().Stats()
		t.Logf("node %d: %d entries from the other node, %d read from the store to fill gaps", i, st.RemoteMessages, st.GapFills)
		if st.RemoteMessages == 0 {
			t.Errorf("node %d received nothing over the broker", i)
		}
	}
}
