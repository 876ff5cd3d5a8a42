package hub

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// TestPresenceBytesOnTheBroker measures the presence traffic on the
// broker of 3 nodes holding PARLEY_PRESENCE_BYTES tracked connections
// each, spread over 100 rooms, once every node holds the others'
// presence: the bytes per second published on the cluster's subjects
// (each is delivered to 2 other nodes), while they join and over 10 s of
// steady state. It
// skips unless PARLEY_PRESENCE_BYTES is set; see docs/performance.md.
func TestPresenceBytesOnTheBroker(t *testing.T) {
	perNode, _ := strconv.Atoi(os.Getenv("PARLEY_PRESENCE_BYTES"))
	if perNode <= 0 {
		t.Skip("set PARLEY_PRESENCE_BYTES to the connections per node")
	}
	url := testNATS(t)
	const rooms = 100
	ids := []string{"n0", "n1", "n2"}
	tc := startTestCluster(t, url, rooms, 500*time.Millisecond, ids...) // parleyd's default heartbeat
	var bytes, msgs atomic.Int64
	var counting atomic.Bool
	counting.Store(true) // from the joins on
	watch(t, url, tc.subject+".>", func(m *nats.Msg) {
		if counting.Load() {
			bytes.Add(int64(len(m.Subject) + len(m.Data)))
			msgs.Add(1)
		}
	})
	start := time.Now()
	var wg sync.WaitGroup
	for _, id := range ids {
		h := tc.hubs[id]
		wg.Go(func() {
			for i := range perNode {
				c := h.Connect(fmt.Sprint(id, "-u", i), "bench", true)
				if err := h.Join(context.Background(), c, fmt.Sprint("r", i%rooms), JoinOptions{}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	t.Logf("%d connections joined in %v", perNode*len(ids), time.Since(start).Round(time.Millisecond))
	total := func(h *Hub) int {
		n := 0
		for i := range rooms {
			p, _, _ := h.Presence(context.Background(), fmt.Sprint("r", i))
			for _, u := range p {
				n += len(u.Metas)
			}
		}
		return n
	}
	// The steady state is measured even if the nodes do not converge
	// within 30 s (the full heartbeats did not at 20,000 per node).
	deadline := time.Now().Add(30 * time.Second)
	for _, id := range ids {
		for n := total(tc.hubs[id]); n < perNode*len(ids); n = total(tc.hubs[id]) {
			if time.Now().After(deadline) {
				t.Errorf("node %s holds %d of %d connections after 30 s", id, n, perNode*len(ids))
				break
			}
			time.Sleep(100 * time.Millisecond) // polling, with a deadline
		}
	}
	t.Logf("the nodes hold the %d connections after %v; %d bytes in %d msgs published meanwhile",
		perNode*len(ids), time.Since(start).Round(time.Millisecond), bytes.Swap(0), msgs.Swap(0))
	const window = 10 * time.Second
	time.Sleep(window) // the measurement window
	counting.Store(false)
	t.Logf("steady state, 3 nodes x %d connections: %.0f presence bytes/s published on the broker (%.1f msgs/s)",
		perNode, float64(bytes.Load())/window.Seconds(), float64(msgs.Load())/window.Seconds())
}
