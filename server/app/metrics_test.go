package app_test

import (
	"io"
	"net/http"
	"regexp"
	"strconv"
	"testing"

	parleyv1 "github.com/parleychat/parley/gen/parley/v1"
)

func scrape(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	out := map[string]float64{}
	for _, m := range regexp.MustCompile(`(?m)^([a-z_]+(?:\{[^}]*\})?) ([0-9.e+-]+)$`).FindAllStringSubmatch(string(body), -1) {
		v, _ := strconv.ParseFloat(m[2], 64)
		out[m[1]] = v
	}
	return out
}

// /metrics counts what happened: messages, deliveries, streams, and the
// process's CPU and memory.
func TestMetrics(t *testing.T) {
	ts := startServer(t)
	ts.createRoom(t, "counted")
	aConn := ts.dial(t)
	a := openJoin(t, aConn, ts.token(t, "a"))
	b := openJoin(t, ts.dial(t), ts.token(t, "b"))
	a.join("counted", nil)
	b.join("counted", nil)
	for range 3 {
		a.post("counted", "m", "")
	}
	b.next(func(ev *parleyv1.JoinResponse) bool { return ev.GetMessage().GetSeq() == 3 }, nil)
	// Counters move just after what they count (a delivery may reach b, and
	// a batch's requests be answered, before the counter or histogram
	// records it), so wait until they have settled.
	var m map[string]float64
	waitFor(t, "the counters to settle", func() bool {
		m = scrape(t, ts.Addr())
		return m["parley_messages_total"] == 3 &&
			m[`parley_store_commit_seconds_count{store="sqlite"}`] == m[`parley_store_batch_size_count{store="sqlite"}`]
	})
	// Three client connections: the room's creator's, a's and b's.
	want := map[string]float64{"parley_messages_total": 3, "parley_deliveries_total": 6, "parley_streams": 2,
		"parley_grpc_connections": 3}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %v, want %v", k, m[k], v)
		}
	}
	// go_sched_latencies_seconds: the runtime's scheduling latencies,
	// which the Go collector leaves out unless asked.
	for _, k := range []string{"process_cpu_seconds_total", "process_resident_memory_bytes", "go_goroutines", "go_sched_latencies_seconds_count"} {
		if m[k] <= 0 {
			t.Errorf("%s = %v, want > 0", k, m[k])
		}
	}
	// The store's writer: the room and the three messages were committed in
	// at least one batch, each batch timed.
	size, n := m[`parley_store_batch_size_sum{store="sqlite"}`], m[`parley_store_batch_size_count{store="sqlite"}`]
	if size < 4 || n < 1 || n > size {
		t.Errorf("parley_store_batch_size sum %v count %v, want at least 4 requests in 1..sum batches", size, n)
	}
	if c := m[`parley_store_commit_seconds_count{store="sqlite"}`]; c != n {
		t.Errorf("parley_store_commit_seconds_count = %v, want one per batch (%v)", c, n)
	}
	if s := m[`parley_store_commit_seconds_sum{store="sqlite"}`]; s <= 0 {
		t.Errorf("parley_store_commit_seconds_sum = %v, want > 0", s)
	}
	// Where the three sends waited: each for the store's answer, and the
	// connections for the writers that wrote them.
	if c := m["parley_send_store_wait_seconds_count"]; c != 3 {
		t.Errorf("parley_send_store_wait_seconds_count = %v, want one per send (3)", c)
	}
	if c := m["parley_write_line_wait_seconds_count"]; c < 2 {
		t.Errorf("parley_write_line_wait_seconds_count = %v, want a turn at least for each of a and b", c)
	}
	// A connection that closes is no longer counted.
	aConn.Close()
	waitFor(t, "two gRPC connections left", func() bool { return scrape(t, ts.Addr())["parley_grpc_connections"] == 2 })
}
