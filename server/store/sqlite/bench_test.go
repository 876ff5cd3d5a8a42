package sqlite_test

import (
	"context"
	"fmt"
	"slices"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/parleychat/parley/server/store"
	"github.com/parleychat/parley/server/store/sqlite"
)

// benchRooms is how many rooms the appenders spread over.
const benchRooms = 100

// BenchmarkAppend measures durable appends through the writer with N
// concurrent appenders, with group commit (the default MaxBatch) and without
// it (MaxBatch=1: one transaction and one fsync per message). It reports
// msgs/s and the p50/p99 latency of one Append.
func BenchmarkAppend(b *testing.B) {
	modes := []struct {
		name string
		cfg  sqlite.Config
	}{
		{"group", sqlite.Config{}},
		{"maxbatch=1", sqlite.Config{MaxBatch: 1}},
	}
	for _, mode := range modes {
		for _, n := range []int{1, 10, 100, 1000} {
			b.Run(fmt.Sprintf("%s/appenders=%d", mode.name, n), func(b *testing.B) {
				benchAppend(b, mode.cfg, n)
			})
		}
	}
}

// BenchmarkStoreAlone is the store's throughput on its own at large
// concurrency: many appenders over many rooms, nothing else in the process.
func BenchmarkStoreAlone(b *testing.B) {
	for _, maxBatch := range []int{0, 1024} {
		b.Run(fmt.Sprintf("maxbatch=%d/appenders=4000", maxBatch), func(b *testing.B) {
			benchAppend(b, sqlite.Config{MaxBatch: maxBatch}, 4000)
		})
	}
}

func benchAppend(b *testing.B, cfg sqlite.Config, appenders int) {
	s := openTemp(b, cfg)
	defer s.Close()
	for i := range benchRooms {
		r := store.Room{Name: fmt.Sprint("room-", i), Visibility: store.Public, CreatedBy: "bench"}
		if _, err := s.CreateRoom(context.Background(), r); err != nil {
			b.Fatal(err)
		}
	}
	body := string(make([]byte, 100))
	var next atomic.Int64
	lat := make([][]time.Duration, appenders)
	var wg sync.WaitGroup
	b.ResetTimer()
	cpu0 := cpuTime()
	start := time.Now()
	for g := range appenders {
		wg.Go(func() { lat[g] = appendLoop(b, s, g, body, &next) })
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	reportLatency(b, lat, elapsed)
	// CPU time per message says what the store costs even when other
	// processes share the machine and blur msgs/s.
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/msg")
}

// appendLoop appends until b.N appends have been taken, and returns the
// latency of each.
func appendLoop(b *testing.B, s *sqlite.Store, g int, body string, next *atomic.Int64) []time.Duration {
	var lat []time.Duration
	ctx := context.Background()
	for i := next.Add(1); i <= int64(b.N); i = next.Add(1) {
		m := store.NewMessage{
			Room: fmt.Sprint("room-", int(i)%benchRooms), Sender: fmt.Sprint("user-", g),
			Body: body, ClientMsgID: fmt.Sprint("m-", i),
		}
		if os.Getenv("PARLEY_EXP_NOID") != "" {
			m.ClientMsgID = ""
		}
		t0 := time.Now()
		if _, _, err := s.Append(ctx, m); err != nil {
			b.Error(err)
			return lat
		}
		lat = append(lat, time.Since(t0))
	}
	return lat
}

// cpuTime is the user+system CPU time used by this process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func reportLatency(b *testing.B, perG [][]time.Duration, elapsed time.Duration) {
	all := slices.Concat(perG...)
	slices.Sort(all)
	if len(all) == 0 {
		return
	}
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
}
