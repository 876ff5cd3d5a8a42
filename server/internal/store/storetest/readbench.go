package storetest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/parleychat/parley/server/internal/store"
)

// ReadBench is the shape of the rooms BenchReadState reads: Rooms rooms
// of PerRoom messages each (seqs 1..PerRoom, messages only), all of them
// with Reader as a member. The contents follow from the seq alone, so a
// store may fill them straight into its tables (fast, for millions of
// rows) and the bench can still check the counts it reads: see Sender,
// Deleted and Mentions. Every tenth room is a direct one.
type ReadBench struct {
	Rooms, PerRoom int
	Reader         string
	// DeleteEvery and MentionEvery say how many messages were deleted and
	// how many of the others' mention the reader: those whose seq they
	// divide (see Deleted and Mentions).
	DeleteEvery, MentionEvery int
}

// ReadBenchShapes are the contents BenchReadState is run on, by name:
// "typical", about one message in 500 deleted and one of the others' in
// 200 mentioning the reader; and "heavy", one in 97 deleted and one in 41
// mentioning the reader. In both the reader wrote one message in ten and
// their marker stands anywhere in each room (half the room unread, on
// average): the two counted ranges after it are long.
var ReadBenchShapes = []struct {
	Name                      string
	DeleteEvery, MentionEvery int
}{{"typical", 499, 199}, {"heavy", 97, 41}}

// RunReadBenchShapes runs bench once per shape of ReadBenchShapes, each
// as a sub-benchmark with its ReadBench: 1,000 rooms of 10,000 messages
// read by "me" (-short: 200 rooms of 1,000).
func RunReadBenchShapes(b *testing.B, bench func(b *testing.B, rb ReadBench)) {
	for _, shape := range ReadBenchShapes {
		b.Run("shape="+shape.Name, func(b *testing.B) {
			rb := ReadBench{Rooms: 1000, PerRoom: 10_000, Reader: "me", DeleteEvery: shape.DeleteEvery, MentionEvery: shape.MentionEvery}
			if testing.Short() {
				rb.Rooms, rb.PerRoom = 200, 1000
			}
			bench(b, rb)
		})
	}
}

// RoomName is the name of room i (0-based); names sort as i does.
func (rb ReadBench) RoomName(i int) string { return fmt.Sprintf("room-%05d", i) }

// Visibility is room i's visibility: every tenth room is direct, the
// others private.
func (rb ReadBench) Visibility(i int) store.Visibility {
	if i%10 == 0 {
		return store.Direct
	}
	return store.Private
}

// Sender of seq: the reader for one message in ten, else one of seven
// others ("u0".."u6").
func (rb ReadBench) Sender(seq int) string {
	if seq%10 == 3 {
		return rb.Reader
	}
	return fmt.Sprint("u", seq%7)
}

// Deleted reports whether seq was deleted.
func (rb ReadBench) Deleted(seq int) bool { return seq%rb.DeleteEvery == 0 }

// Mentions reports whether seq's current text mentions the reader: not
// the reader's own messages, nor deleted ones.
func (rb ReadBench) Mentions(seq int) bool {
	return seq%rb.MentionEvery == 0 && !rb.Deleted(seq) && rb.Sender(seq) != rb.Reader
}

// marker is where the reader's marker stands in room i: spread evenly
// over the room, so half the messages of an average room are unread.
func (rb ReadBench) marker(i int) uint64 { return uint64(rb.PerRoom - i*7919%rb.PerRoom) }

// want is the reader's read state in room i with the marker at m, counted
// message by message.
func (rb ReadBench) want(i int, m uint64) store.ReadState {
	rs := store.ReadState{LastReadSeq: m, HeadSeq: uint64(rb.PerRoom)}
	for seq := int(m) + 1; seq <= rb.PerRoom; seq++ {
		if rb.Sender(seq) != rb.Reader && !rb.Deleted(seq) {
			rs.Unread++
			if rb.Mentions(seq) || rb.Visibility(i) == store.Direct {
				rs.Mentions++
			}
		}
	}
	return rs
}

// BenchReadState is the body of each store's BenchmarkReadState: s must
// hold rb's rooms (filled by the caller). It sets the reader's marker in
// every room (one SetReadMarkers call), checks the read state of a few
// rooms against a count message by message, then measures VisibleRooms
// pages of 200 rooms, walking every room in pages of 200, ReadState of one
// room, and SetReadMarkers batches of 1,000 markers that all move (a new
// reader each time) or that none does (the same batch again). It reports
// the p50 and p99 latency of one call and the CPU time per call of the
// process (cpu.Process) and of the database server's processes that
// serve it (cpu.Server, if set).
func BenchReadState(b *testing.B, s store.Store, rb ReadBench, cpu BenchCPU) {
	ctx := context.Background()
	ms := make([]store.ReadMarker, rb.Rooms)
	for i := range ms {
		ms[i] = store.ReadMarker{Room: rb.RoomName(i), User: rb.Reader, Seq: rb.marker(i)}
	}
	if got, err := s.SetReadMarkers(ctx, ms); err != nil || len(got) != len(ms) {
		b.Fatalf("SetReadMarkers of the reader: %d markers (%v)", len(got), err)
	}
	for _, i := range []int{0, 1, rb.Rooms / 2, rb.Rooms - 1} {
		got, err := s.ReadState(ctx, rb.Reader, rb.RoomName(i))
		if want := rb.want(i, rb.marker(i)); err != nil || got != want {
			b.Fatalf("ReadState of %s = %+v (%v), counted %+v", rb.RoomName(i), got, err, want)
		}
	}
	rng := rand.New(rand.NewPCG(5, 6))
	pages := pageStarts(rb)
	measure(b, "VisibleRooms/page=200", cpu, func() error {
		rooms, err := s.VisibleRooms(ctx, rb.Reader, pages[rng.IntN(len(pages))], 200)
		if err == nil && len(rooms) != 200 {
			err = fmt.Errorf("a page of %d rooms", len(rooms))
		}
		return err
	})
	measure(b, fmt.Sprintf("VisibleRooms/walk=%d", rb.Rooms), cpu, func() error {
		n, err := walkRooms(ctx, s, rb.Reader)
		if err == nil && n != rb.Rooms {
			err = fmt.Errorf("walked %d rooms, want %d", n, rb.Rooms)
		}
		return err
	})
	measure(b, "ReadState", cpu, func() error {
		_, err := s.ReadState(ctx, rb.Reader, rb.RoomName(rng.IntN(rb.Rooms)))
		return err
	})
	benchMarkers(b, s, rb, cpu)
}

// BenchCPU says how to read the CPU time used so far by the benchmark's
// process and by the database server for it (nil for an embedded store).
type BenchCPU struct {
	Process, Server func() time.Duration
}

// pageStarts returns the afterName of each full page of 200 of the
// reader's rooms.
func pageStarts(rb ReadBench) []string {
	starts := []string{""}
	for i := 200; i+200 <= rb.Rooms; i += 200 {
		starts = append(starts, rb.RoomName(i-1))
	}
	return starts
}

func walkRooms(ctx context.Context, s store.Store, user string) (int, error) {
	n := 0
	for after := ""; ; {
		rooms, err := s.VisibleRooms(ctx, user, after, 200)
		if err != nil {
			return n, err
		}
		n += len(rooms)
		if len(rooms) < 200 {
			return n, nil
		}
		after = rooms[len(rooms)-1].Name
	}
}

// benchMarkers measures SetReadMarkers batches of 1,000 markers over the
// rooms: of a new reader each time (every marker moves: a new row), and
// the previous batch again (none moves).
func benchMarkers(b *testing.B, s store.Store, rb ReadBench, cpu BenchCPU) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(7, 8))
	batch := func(reader string) []store.ReadMarker {
		ms := make([]store.ReadMarker, 1000)
		for i := range ms {
			ms[i] = store.ReadMarker{Room: rb.RoomName(i % rb.Rooms), User: fmt.Sprint(reader, "-", i/rb.Rooms), Seq: 1 + rng.Uint64N(uint64(rb.PerRoom))}
		}
		return ms
	}
	var last []store.ReadMarker
	readers := 0
	measure(b, "SetReadMarkers/batch=1000/moving", cpu, func() error {
		readers++
		last = batch(fmt.Sprint("reader", readers))
		_, err := s.SetReadMarkers(ctx, last)
		return err
	})
	measure(b, "SetReadMarkers/batch=1000/unchanged", cpu, func() error {
		got, err := s.SetReadMarkers(ctx, last)
		if err == nil && (len(got) != len(last) || got[0].Seq != last[0].Seq) {
			err = fmt.Errorf("answer %+v, want the markers as set before", got[0])
		}
		return err
	})
}

// measure runs op as a sub-benchmark and reports the p50 and p99 latency
// of one call and the CPU time per call.
func measure(b *testing.B, name string, cpu BenchCPU, op func() error) {
	b.Run(name, func(b *testing.B) {
		var lat []time.Duration
		var server time.Duration
		if cpu.Server != nil {
			server = cpu.Server()
		}
		process := cpu.Process()
		for b.Loop() {
			start := time.Now()
			err := op()
			lat = append(lat, time.Since(start))
			if err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64((cpu.Process()-process).Microseconds())/float64(len(lat)), "cpu-µs/op")
		if cpu.Server != nil {
			b.ReportMetric(float64((cpu.Server()-server).Microseconds())/float64(len(lat)), "server-cpu-µs/op")
		}
		slices.Sort(lat)
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	})
}
