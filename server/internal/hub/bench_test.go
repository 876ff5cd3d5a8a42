package hub_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parleychat/parley/server/internal/api"
	"github.com/parleychat/parley/server/internal/hub"
	"github.com/parleychat/parley/server/internal/store"
	"github.com/parleychat/parley/server/internal/store/memory"
)

// BenchmarkFanOut sends messages to a room of n subscribers through the
// hub: the store's append (the in-memory store, so the hub's own work
// shows), one encoding per message with the server's encoder, a frame
// queued for every subscriber, and the hub's writers taking each
// connection's frames (and dropping them, as a client that reads at once).
// An op is one message; ns/delivery and allocs/delivery divide by the
// deliveries, which must all have been written before the clock stops.
// Allocations per delivery must not grow with the number of subscribers.
// kind=edit and kind=reaction send edits of one message, and reactions
// added and taken back, instead: entries of the room's log that must fan
// out at the same cost per delivery as a message (encoded once too).
func BenchmarkFanOut(b *testing.B) {
	for _, kind := range []string{"message", "edit", "reaction"} {
		for _, n := range []int{1, 100, 10_000} {
			b.Run(fmt.Sprintf("kind=%s/subscribers=%d", kind, n), func(b *testing.B) { benchmarkFanOut(b, kind, n) })
		}
	}
}

func benchmarkFanOut(b *testing.B, kind string, n int) {
	ctx := context.Background()
	st := memory.New()
	if _, err := st.CreateRoom(ctx, store.Room{Name: "r", Visibility: store.Public}); err != nil {
		b.Fatal(err)
	}
	h := hub.New(hub.Config{MaxQueueBytes: 64 << 20}, st, api.EncodeEvent, slog.New(slog.NewTextHandler(io.Discard, nil)))
	var delivered atomic.Int64
	for i := range n {
		c := h.Connect(fmt.Sprint("u", i), "", false)
		c.ServeWrites(func(frames []hub.Frame) error {
			delivered.Add(int64(len(frames)))
			return nil
		})
		if err := h.Join(ctx, c, "r", hub.JoinOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	waitDelivered(b, &delivered, int64(n)) // the joined states
	delivered.Store(0)
	body := strings.Repeat("x", 100)
	entry := func(i int) store.NewMessage {
		switch kind {
		case "edit":
			return store.NewMessage{Room: "r", Sender: "s", Kind: store.KindEdit, TargetSeq: 1, Body: body}
		case "reaction":
			if i%2 == 1 {
				return store.NewMessage{Room: "r", Sender: "s", Kind: store.KindReactionRemove, TargetSeq: 1, Emoji: "👍"}
			}
			return store.NewMessage{Room: "r", Sender: "s", Kind: store.KindReactionAdd, TargetSeq: 1, Emoji: "👍"}
		}
		return store.NewMessage{Room: "r", Sender: "s", Body: body}
	}
	if kind != "message" { // the message the entries change
		if _, _, err := h.Send(ctx, store.NewMessage{Room: "r", Sender: "s", Body: body}); err != nil {
			b.Fatal(err)
		}
		waitDelivered(b, &delivered, int64(n))
		delivered.Store(0)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	for i := range b.N {
		if _, dup, err := h.Send(ctx, entry(i)); err != nil || dup {
			b.Fatalf("entry %d: duplicate %v, err %v", i, dup, err)
		}
	}
	waitDelivered(b, &delivered, int64(b.N)*int64(n))
	b.StopTimer()
	runtime.ReadMemStats(&after)
	deliveries := float64(b.N) * float64(n)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/deliveries, "ns/delivery")
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/deliveries, "allocs/delivery")
}

// waitDelivered waits until the writers have taken want frames.
func waitDelivered(b *testing.B, delivered *atomic.Int64, want int64) {
	deadline := time.Now().Add(time.Minute)
	for delivered.Load() < want {
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d frames written after a minute", delivered.Load(), want)
		}
		runtime.Gosched()
	}
}

// BenchmarkJoinSend is BenchmarkFanOut for a message sent on a Join
// stream: the sender is one of the room's n connections, the message is
// sent from it, and when its wait returns the send's reply is queued
// for the sender, as the Join stream does. An op is one send.
func BenchmarkJoinSend(b *testing.B) {
	for _, n := range []int{1, 100} {
		b.Run(fmt.Sprint("subscribers=", n), func(b *testing.B) {
			ctx := context.Background()
			st := memory.New()
			if _, err := st.CreateRoom(ctx, store.Room{Name: "r", Visibility: store.Public}); err != nil {
				b.Fatal(err)
			}
			h := hub.New(hub.Config{MaxQueueBytes: 64 << 20}, st, api.EncodeEvent, slog.New(slog.NewTextHandler(io.Discard, nil)))
			var delivered atomic.Int64
			var sender *hub.Conn
			for i := range n {
				c := h.Connect(fmt.Sprint("u", i), "", false)
				c.ServeWrites(func(frames []hub.Frame) error {
					delivered.Add(int64(len(frames)))
					return nil
				})
				if err := h.Join(ctx, c, "r", hub.JoinOptions{}); err != nil {
					b.Fatal(err)
				}
				sender = c
			}
			waitDelivered(b, &delivered, int64(n)) // the joined states
			delivered.Store(0)
			body, reply := strings.Repeat("x", 100), hub.Frame{Data: make([]byte, 150)}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				wait := h.StartSend(ctx, store.NewMessage{Room: "r", Sender: sender.User, Body: body}, sender)
				if _, _, err := wait(); err != nil {
					b.Fatal(err)
				}
				sender.EnqueueUrgent(reply)
			}
			waitDelivered(b, &delivered, int64(b.N)*int64(n+1))
		})
	}
}
