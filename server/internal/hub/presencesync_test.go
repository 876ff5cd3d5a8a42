package hub

import (
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// A presence change the broker lost leaves the other node's change number
// behind the heartbeats': the other node asks for the whole state, and
// holds the change.
func TestLostPresenceChangeIsFetched(t *testing.T) {
	url := testNATS(t)
	tc := startTestCluster(t, url, 0, 50*time.Millisecond, "a", "b")
	var requests atomic.Int64
	watch(t, url, tc.subject+".state", func(*nats.Msg) { requests.Add(1) })
	a, b := tc.hubs["a"], tc.hubs["b"]
	joinTracked(t, a, "x", "r")
	waitUntil(t, "b to hear of x", func() bool { return present(b, "r", "x") })
	// Node b has a's changes in order now: a further change reaches it
	// without a request.
	joinTracked(t, a, "w", "r")
	waitUntil(t, "b to hear of w", func() bool { return present(b, "r", "w") })
	before := requests.Load()

	tc.brokers["a"].drop.Store(".presence")
	joinTracked(t, a, "y", "r")
	waitUntil(t, "b to fetch the change it missed", func() bool { return present(b, "r", "y") })
	if got := requests.Load() - before; got < 1 {
		t.Fatalf("b holds y without asking for a's state (%d requests)", got)
	}
	if tc.brokers["a"].drop.Load() != "" {
		t.Fatal("the change was not lost")
	}
}

// A heartbeat is as large with hundreds of connections as with one: it
// carries the number of the node's last presence change, not the
// presence.
func TestHeartbeatSizeDoesNotGrowWithConnections(t *testing.T) {
	url := testNATS(t)
	tc := startTestCluster(t, url, 10, 50*time.Millisecond, "a", "b")
	var mu sync.Mutex
	sizes := map[uint64]int{} // by change number, a's heartbeats
	watch(t, url, tc.subject+".presence", func(m *nats.Msg) {
		var msg nodeMsg
		if json.Unmarshal(m.Data, &msg) == nil && msg.Node == "a" && msg.Kind == "" {
			mu.Lock()
			sizes[msg.Seq] = len(m.Data)
			mu.Unlock()
		}
	})
	heartbeat := func(seq uint64) int {
		var n int
		waitUntil(t, fmt.Sprint("a heartbeat after change ", seq), func() bool {
			mu.Lock()
			defer mu.Unlock()
			n = sizes[seq]
			return n > 0
		})
		return n
	}
	a, b := tc.hubs["a"], tc.hubs["b"]
	joinTracked(t, a, "u0", "r0")
	one := heartbeat(1)
	const conns = 500
	for i := 1; i < conns; i++ {
		joinTracked(t, a, fmt.Sprint("u", i), fmt.Sprint("r", i%10))
	}
	many := heartbeat(conns)
	waitUntil(t, "b to hold a's connections", func() bool { return present(b, "r9", fmt.Sprint("u", conns-1)) })
	t.Logf("heartbeat: %d bytes with 1 connection, %d with %d", one, many, conns)
	if many > one+len(fmt.Sprint(conns)) {
		t.Fatalf("heartbeat grew from %d to %d bytes with %d connections", one, many, conns)
	}
}

// A node whose heartbeats stop while the broker works is dropped within
// the node timeout: only a broker outage freezes remote presence.
func TestSilentNodeIsDroppedWhileTheBrokerWorks(t *testing.T) {
	url := testNATS(t)
	tc := startTestCluster(t, url, 0, 50*time.Millisecond, "a", "b")
	a, b := tc.hubs["a"], tc.hubs["b"]
	joinTracked(t, b, "x", "r")
	waitUntil(t, "a to hear of x", func() bool { return present(a, "r", "x") })
	tc.stop["b"]()
	start := time.Now()
	waitUntil(t, "a to drop b's presence", func() bool { return !present(a, "r", "x") })
	if took := time.Since(start); took > a.cfg.NodeTimeout+time.Second {
		t.Fatalf("b's presence dropped after %v, want within %v", took, a.cfg.NodeTimeout)
	}
}
