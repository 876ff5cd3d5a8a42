package hub

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/parleychat/parley/server/internal/broker"
	"github.com/parleychat/parley/server/internal/store"
	"github.com/parleychat/parley/server/internal/store/memory"
)

// testNATS returns the NATS server of the cluster tests (PARLEY_TEST_NATS,
// default the machine's), skipping when it is not reachable.
func testNATS(t testing.TB) string {
	t.Helper()
	url := os.Getenv("PARLEY_TEST_NATS")
	if url == "" {
		url = "nats://127.0.0.1:4222"
	}
	c, err := net.DialTimeout("tcp", strings.TrimPrefix(url, "nats://"), 2*time.Second)
	if err != nil {
		if os.Getenv("PARLEY_REQUIRE_NATS") == "1" {
			t.Fatalf("NATS at %s: %v", url, err)
		}
		t.Skipf("NATS not reachable at %s: %v", url, err)
	}
	c.Close()
	return url
}

// lossyBroker is a NATS broker that loses the next message published on
// a subject ending in drop, as a broker may when a link flaps.
type lossyBroker struct {
	*broker.NATS
	drop atomic.Value // string: the subject suffix whose next message is lost
}

func (b *lossyBroker) Publish(subject string, data []byte) error {
	if d, _ := b.drop.Load().(string); d != "" && strings.HasSuffix(subject, d) && b.drop.CompareAndSwap(d, "") {
		return nil
	}
	return b.NATS.Publish(subject, data)
}

// testCluster runs hubs named by ids on one NATS subject of their own and
// one store with rooms r0..r(rooms-1) and r, heartbeating every
// heartbeat (node timeout 10 heartbeats), until the test ends.
type testCluster struct {
	subject string
	hubs    map[string]*Hub
	brokers map[string]*lossyBroker
	stop    map[string]context.CancelFunc // ends a hub's Run: its heartbeats stop
}

func startTestCluster(t testing.TB, url string, rooms int, heartbeat time.Duration, ids ...string) *testCluster {
	t.Helper()
	return startTestClusterWith(t, url, rooms, Config{HeartbeatInterval: heartbeat}, testEncode, ids...)
}

// startTestClusterWith is startTestCluster with each hub's Config based on
// cfg (the cluster's fields are set; a zero NodeTimeout is 10 heartbeats)
// and events encoded by enc.
func startTestClusterWith(t testing.TB, url string, rooms int, cfg Config, enc Encoder, ids ...string) *testCluster {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	st := memory.New()
	for i := range rooms + 1 {
		name := fmt.Sprint("r", i)
		if i == rooms {
			name = "r"
		}
		if _, err := st.CreateRoom(context.Background(), store.Room{Name: name, Visibility: store.Public}); err != nil {
			t.Fatal(err)
		}
	}
	tc := &testCluster{subject: fmt.Sprintf("hubtest-%d", rand.Uint32()), hubs: map[string]*Hub{}, brokers: map[string]*lossyBroker{},
		stop: map[string]context.CancelFunc{}}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		for _, stop := range tc.stop {
			stop()
		}
		wg.Wait()
	})
	for _, id := range ids {
		nb, err := broker.Connect(url, id, log)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nb.Close)
		b := &lossyBroker{NATS: nb}
		hc := cfg
		hc.Broker, hc.Subject, hc.NodeID = b, tc.subject, id
		if hc.NodeTimeout == 0 {
			hc.NodeTimeout = 10 * hc.HeartbeatInterval
		}
		h := New(hc, st, enc, log)
		ctx, cancel := context.WithCancel(context.Background())
		tc.hubs[id], tc.brokers[id], tc.stop[id] = h, b, cancel
		wg.Go(func() {
			if err := h.Run(ctx); err != nil {
				t.Error(err)
			}
		})
	}
	return tc
}

// joinTracked joins a tracked connection of user to room on h.
func joinTracked(t testing.TB, h *Hub, user, room string) *Conn {
	t.Helper()
	c := h.Connect(user, "", true)
	if err := h.Join(context.Background(), c, room, JoinOptions{}); err != nil {
		t.Fatal(err)
	}
	return c
}

// present reports whether h lists user in room.
func present(h *Hub, room, user string) bool {
	p, _, err := h.Presence(context.Background(), room)
	if err != nil {
		return false
	}
	for _, u := range p {
		if u.User == user {
			return true
		}
	}
	return false
}

// watch counts what is published on subject.
func watch(t testing.TB, url, subject string, fn func(*nats.Msg)) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	if _, err := nc.Subscribe(subject, fn); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
}
