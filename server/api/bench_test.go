package api

import (
	"strings"
	"testing"
	"time"

	"github.com/parleychat/parley/server/hub"
	"github.com/parleychat/parley/server/store"
)

// BenchmarkEncodeOnce is the encode-once path: the hub encodes an event
// once and every stream that receives it passes the same bytes to grpc-go
// through Codec, which sends them as they are ("shared"), where a server
// that encoded per stream would marshal the event for every delivery
// ("per-stream"). An op is one delivery's share of the work.
func BenchmarkEncodeOnce(b *testing.B) {
	ev := hub.Event{Kind: hub.EventMessage, Room: "lobby", Message: store.Message{
		Room: "lobby", Seq: 4242, Sender: "alice", Body: strings.Repeat("x", 100),
		SentAt: time.Now(), ClientMsgID: "0188f1c2a3b4c5d6-7-42",
	}}
	codec := NewCodec()
	b.Run("shared", func(b *testing.B) {
		data, err := EncodeEvent(ev)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			out, err := codec.Marshal(rawFrame(data))
			if err != nil || out.Len() != len(data) {
				b.Fatal(err)
			}
			out.Free()
		}
	})
	b.Run("per-stream", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			data, err := EncodeEvent(ev)
			if err != nil {
				b.Fatal(err)
			}
			out, err := codec.Marshal(rawFrame(data))
			if err != nil || out.Len() != len(data) {
				b.Fatal(err)
			}
			out.Free()
		}
	})
}
