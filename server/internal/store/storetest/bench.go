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

// BenchHistory is the body of each store's BenchmarkHistory: it fills a
// room of s with 100,000 messages where most carry reactions (80%: 1–4
// users each), some were edited (10%) and some reply to an earlier one
// (5%), then reads pages of 50 messages, newest first from a random seq,
// and reports the p50 and p99 latency of one History call and the CPU
// time of the process per call (cpuTime; the latency exceeds it when the
// machine is busy with other work).
func BenchHistory(b *testing.B, s store.Store, cpuTime func() time.Duration) {
	last := buildHistoryRoom(b, s, "big", 100_000)
	b.Run("page=50", func(b *testing.B) {
		ctx := context.Background()
		rng := rand.New(rand.NewPCG(1, 2))
		lat := make([]time.Duration, 0, b.N)
		cpu := cpuTime()
		for b.Loop() {
			q := store.Query{Before: 50 + rng.Uint64N(last), Limit: 50, Descending: true}
			start := time.Now()
			vs, err := s.History(ctx, "big", "u3", q)
			lat = append(lat, time.Since(start))
			if err != nil || len(vs) == 0 {
				b.Fatalf("History(%+v) = %d views (%v)", q, len(vs), err)
			}
		}
		b.ReportMetric(float64((cpuTime()-cpu).Microseconds())/float64(len(lat)), "cpu-µs/op")
		slices.Sort(lat)
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	})
}

// buildHistoryRoom fills room with n messages and their reactions, edits
// and replies, pipelined through Submit, and returns the last seq.
func buildHistoryRoom(b *testing.B, s store.Store, room string, n int) uint64 {
	b.Helper()
	ctx := context.Background()
	if _, err := s.CreateRoom(ctx, store.Room{Name: room, Visibility: store.Public, CreatedBy: "owner"}); err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	emoji := []string{"👍", "❤️", "😂", "🎉"}
	var seq uint64
	var msgs []uint64
	var waits []func() (store.Message, bool, error)
	submit := func(m store.NewMessage) {
		m.Room = room
		waits = append(waits, s.StartAppend(ctx, m))
		seq++
	}
	flush := func() {
		for _, w := range waits {
			if _, dup, err := w(); err != nil || dup {
				b.Fatalf("building the room: dup %v, %v", dup, err)
			}
		}
		waits = waits[:0]
	}
	for i := range n {
		m := store.NewMessage{Sender: fmt.Sprint("u", rng.IntN(10)), Body: fmt.Sprintf("message %d: some text of a typical length for a chat line", i)}
		if i > 10 && rng.IntN(20) == 0 {
			m.ReplyToSeq = msgs[len(msgs)-1-rng.IntN(10)]
		}
		submit(m)
		target := seq
		msgs = append(msgs, seq)
		if rng.IntN(10) == 0 {
			submit(store.NewMessage{Kind: store.KindEdit, Sender: m.Sender, TargetSeq: target, Body: m.Body + " (fixed)"})
		}
		if rng.IntN(5) != 0 {
			for u := range 1 + rng.IntN(4) {
				submit(store.NewMessage{Kind: store.KindReactionAdd, Sender: fmt.Sprint("u", u), TargetSeq: target, Emoji: emoji[rng.IntN(len(emoji))]})
			}
		}
		if len(waits) >= 4000 {
			flush()
		}
	}
	flush()
	return seq
}
