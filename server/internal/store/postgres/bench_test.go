package postgres_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parleychat/parley/server/internal/store"
	"github.com/parleychat/parley/server/internal/store/postgres"
)

// benchRooms is how many rooms the appenders spread over.
const benchRooms = 100

// BenchmarkAppend measures durable appends through the writer with N
// concurrent appenders: with group commit (the defaults), with group commit
// but no batch window (MaxBatchDelay=-1), without group commit (MaxBatch=1:
// one transaction and one WAL flush per message), and split over two
// stores on one schema (two nodes, each with its own writer, in one
// process) appending to the same rooms or each to its own half of them. It reports msgs/s, the p50/p99 latency of one
// Append, the CPU time per message of this process and of the machine's
// postgres processes, and the average batch.
func BenchmarkAppend(b *testing.B) {
	modes := []struct {
		name     string
		cfg      postgres.Config
		nodes    int
		disjoint bool
	}{
		{"group", postgres.Config{}, 1, false},
		{"group-nodelay", postgres.Config{MaxBatchDelay: -1}, 1, false},
		{"maxbatch=1", postgres.Config{MaxBatch: 1}, 1, false},
		{"group-2stores", postgres.Config{}, 2, false},
		{"group-2stores-disjoint", postgres.Config{}, 2, true},
	}
	for _, mode := range modes {
		for _, n := range []int{1, 10, 100, 1000} {
			b.Run(fmt.Sprintf("%s/appenders=%d", mode.name, n), func(b *testing.B) {
				benchAppend(b, mode.cfg, mode.nodes, n, mode.disjoint)
			})
		}
	}
}

// BenchmarkStoreAlone is the store's throughput on its own at large
// concurrency (4,000 appenders over 100 rooms) for several batch sizes.
func BenchmarkStoreAlone(b *testing.B) {
	for _, maxBatch := range []int{256, 1024, 4096} {
		b.Run(fmt.Sprintf("maxbatch=%d/appenders=4000", maxBatch), func(b *testing.B) {
			benchAppend(b, postgres.Config{MaxBatch: maxBatch}, 1, 4000, false)
		})
	}
}

// benchAppend runs appenders over nodes stores, appender g on store
// g%nodes; if disjoint, each store appends only to its own rooms.
func benchAppend(b *testing.B, cfg postgres.Config, nodes, appenders int, disjoint bool) {
	cfg.Schema = postgres.NewSchema(b)
	stores := make([]*postgres.Store, nodes)
	for i := range stores {
		stores[i] = postgres.OpenTest(b, cfg)
	}
	for i := range benchRooms {
		r := store.Room{Name: fmt.Sprint("room-", i), Visibility: store.Public, CreatedBy: "bench"}
		if _, err := stores[0].CreateRoom(context.Background(), r); err != nil {
			b.Fatal(err)
		}
	}
	var next atomic.Int64
	lat := make([][]time.Duration, appenders)
	var wg sync.WaitGroup
	b.ResetTimer()
	pg0 := postgresCPU() // read first and last: reading /proc costs this process CPU
	cpu0 := cpuTime()
	start := time.Now()
	for g := range appenders {
		room := func(i int64) string { return fmt.Sprint("room-", i%benchRooms) }
		if disjoint {
			room = func(i int64) string {
				return fmt.Sprint("room-", i%(benchRooms/int64(nodes))*int64(nodes)+int64(g%nodes))
			}
		}
		wg.Go(func() { lat[g] = appendLoop(b, stores[g%nodes], g, room, &next) })
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu := cpuTime() - cpu0
	pg := postgresCPU() - pg0
	b.StopTimer()
	reportLatency(b, lat, elapsed)
	if cpu > 0 {
		b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/msg")
	}
	if pg > 0 {
		b.ReportMetric(float64(pg.Microseconds())/float64(b.N), "pg-cpu-µs/msg")
	}
	var batches int64
	for _, s := range stores {
		batches += postgres.Batches(s)
	}
	if batches > 0 {
		b.ReportMetric(float64(b.N)/float64(batches), "msgs/batch")
	}
}

// appendLoop appends 100-byte messages with time-ordered ClientMsgIDs
// until b.N appends have been taken, and returns the latency of each.
func appendLoop(b *testing.B, s *postgres.Store, g int, room func(int64) string, next *atomic.Int64) []time.Duration {
	var lat []time.Duration
	ctx := context.Background()
	body := strings.Repeat("x", 100) // PostgreSQL text cannot hold NUL bytes
	for i := next.Add(1); i <= int64(b.N); i = next.Add(1) {
		m := store.NewMessage{Room: room(i), Sender: fmt.Sprint("user-", g), Body: body,
			ClientMsgID: fmt.Sprintf("%016x", i)}
		t0 := time.Now()
		if _, _, err := s.Append(ctx, m); err != nil {
			b.Error(err)
			return lat
		}
		lat = append(lat, time.Since(t0))
	}
	return lat
}

func reportLatency(b *testing.B, perG [][]time.Duration, elapsed time.Duration) {
	all := slices.Concat(perG...)
	if len(all) == 0 {
		return
	}
	slices.Sort(all)
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
}
