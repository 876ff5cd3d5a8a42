package sqlite_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parleychat/parley/server/internal/store"
	"github.com/parleychat/parley/server/internal/store/sqlite"
)

// benchRooms is how many rooms the appenders spread over.
const benchRooms = 100

// idKind is the shape of the ClientMsgIDs a benchmark sends.
type idKind string

const (
	idsOrdered idKind = "ordered" // time-ordered, like UUIDv7 or ULID
	idsRandom  idKind = "random"  // random, like UUIDv4
	idsNone    idKind = "none"    // no ClientMsgID: nothing to deduplicate
	// idsOwnRoom is idsOrdered with each appender sending to one room only
	// (its number modulo benchRooms), as people mostly talk in a few rooms:
	// 1,000 appenders are 1,000 (room, sender) pairs, where with the others
	// each appender sends to every room in turn (100,000 pairs).
	idsOwnRoom idKind = "ordered-own-room"
)

// BenchmarkAppend measures durable appends through the writer with N
// concurrent appenders: with group commit (the defaults), with group commit
// but no batch window (MaxBatchDelay=-1), and without group commit
// (MaxBatch=1: one transaction and one fsync per message). It reports
// msgs/s, the p50/p99 latency of one Append, and the CPU time per message.
func BenchmarkAppend(b *testing.B) {
	modes := []struct {
		name string
		cfg  sqlite.Config
	}{
		{"group", sqlite.Config{}},
		{"group-nodelay", sqlite.Config{MaxBatchDelay: -1}},
		{"group-maxbatch=256", sqlite.Config{MaxBatch: 256}},
		{"maxbatch=1", sqlite.Config{MaxBatch: 1}},
	}
	for _, mode := range modes {
		for _, n := range []int{1, 10, 100, 1000} {
			b.Run(fmt.Sprintf("%s/appenders=%d", mode.name, n), func(b *testing.B) {
				benchAppend(b, mode.cfg, n, idsOrdered)
			})
		}
	}
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprintf("group-own-room/appenders=%d", n), func(b *testing.B) {
			benchAppend(b, sqlite.Config{}, n, idsOwnRoom)
		})
	}
}

// BenchmarkStoreAlone is the store's throughput on its own at large
// concurrency: 4,000 appenders over 100 rooms, nothing else in the process,
// for several batch sizes and kinds of ClientMsgID.
func BenchmarkStoreAlone(b *testing.B) {
	for _, maxBatch := range []int{256, 1024, 4096} {
		for _, ids := range []idKind{idsOrdered, idsRandom, idsNone} {
			b.Run(fmt.Sprintf("maxbatch=%d/ids=%s/appenders=4000", maxBatch, ids), func(b *testing.B) {
				benchAppend(b, sqlite.Config{MaxBatch: maxBatch}, 4000, ids)
			})
		}
	}
}

// BenchmarkAppendBesideMarkers is Append/group with 100 appenders, alone
// and while read markers move beside it as the API flushes them: every
// 250 ms a SetReadMarkers call of 2,000 markers, each of one of 5,000
// users in one of the rooms, set at the head. It shows what the markers'
// writes, chunked between the appends, cost the appends' latency.
func BenchmarkAppendBesideMarkers(b *testing.B) {
	for _, markers := range []bool{false, true} {
		b.Run(fmt.Sprintf("markers=%v/appenders=100", markers), func(b *testing.B) {
			var beside func(s *sqlite.Store, stop <-chan struct{}) func()
			if markers {
				beside = floodMarkers(b)
			}
			benchAppendBeside(b, sqlite.Config{}, 100, idsOrdered, beside)
		})
	}
}

// floodMarkers returns a function that starts moving markers on s every
// 250 ms until stop, and returns a function that waits for it and reports
// the latency of a SetReadMarkers call.
func floodMarkers(b *testing.B) func(s *sqlite.Store, stop <-chan struct{}) func() {
	return func(s *sqlite.Store, stop <-chan struct{}) func() {
		var lat []time.Duration
		done := make(chan struct{})
		go func() {
			defer close(done)
			rng := rand.New(rand.NewPCG(9, 10))
			tick := time.NewTicker(250 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				ms := make([]store.ReadMarker, 2000)
				for i := range ms {
					ms[i] = store.ReadMarker{Room: fmt.Sprint("room-", rng.IntN(benchRooms)), User: fmt.Sprint("reader-", rng.IntN(5000)), Seq: 1 << 40}
				}
				t0 := time.Now()
				if _, err := s.SetReadMarkers(context.Background(), ms); err != nil {
					b.Error(err)
					return
				}
				lat = append(lat, time.Since(t0))
			}
		}()
		return func() {
			<-done
			if len(lat) > 0 {
				slices.Sort(lat)
				b.ReportMetric(float64(len(lat)), "marker-batches")
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "marker-batch-p50-ms")
			}
		}
	}
}

func benchAppend(b *testing.B, cfg sqlite.Config, appenders int, ids idKind) {
	benchAppendBeside(b, cfg, appenders, ids, nil)
}

// benchAppendBeside is benchAppend with beside, if not nil, started once
// the rooms exist and stopped when the appenders are done.
func benchAppendBeside(b *testing.B, cfg sqlite.Config, appenders int, ids idKind, beside func(s *sqlite.Store, stop <-chan struct{}) func()) {
	s := openTemp(b, cfg)
	defer s.Close()
	for i := range benchRooms {
		r := store.Room{Name: fmt.Sprint("room-", i), Visibility: store.Public, CreatedBy: "bench"}
		if _, err := s.CreateRoom(context.Background(), r); err != nil {
			b.Fatal(err)
		}
	}
	var next atomic.Int64
	lat := make([][]time.Duration, appenders)
	var wg sync.WaitGroup
	stop, finish := make(chan struct{}), func() {}
	if beside != nil {
		finish = beside(s, stop)
	}
	b.ResetTimer()
	cpu0 := cpuTime()
	start := time.Now()
	for g := range appenders {
		wg.Go(func() { lat[g] = appendLoop(b, s, g, ids, &next) })
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	close(stop)
	finish()
	reportLatency(b, lat, elapsed)
	// CPU time per message says what the store costs even when other
	// processes share the machine and blur msgs/s.
	if cpu := cpuTime() - cpu0; cpu > 0 {
		b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/msg")
	}
}

// appendLoop appends 100-byte messages until b.N appends have been taken,
// and returns the latency of each.
func appendLoop(b *testing.B, s *sqlite.Store, g int, ids idKind, next *atomic.Int64) []time.Duration {
	var lat []time.Duration
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(uint64(g), 1))
	body := string(make([]byte, 100))
	for i := next.Add(1); i <= int64(b.N); i = next.Add(1) {
		m := store.NewMessage{Room: fmt.Sprint("room-", int(i)%benchRooms), Sender: fmt.Sprint("user-", g), Body: body}
		switch ids {
		case idsOwnRoom:
			m.Room = fmt.Sprint("room-", g%benchRooms)
			m.ClientMsgID = fmt.Sprintf("%016x", i)
		case idsOrdered:
			m.ClientMsgID = fmt.Sprintf("%016x", i)
		case idsRandom:
			m.ClientMsgID = fmt.Sprintf("%016x%016x", rng.Uint64(), rng.Uint64())
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
