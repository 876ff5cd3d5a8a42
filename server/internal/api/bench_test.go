package api

import (
	"strings"
	"testing"
	"time"

	"github.com/parleychat/parley/server/internal/hub"
	"github.com/parleychat/parley/server/internal/store"
)

// BenchmarkEncodeOnce is the encode-once path: the hub encodes an event
// once, WireForm wraps it once, and every stream that receives it passes
// the same frame to grpc-go through Codec, which sends it as it is
// ("shared"), where a server that encoded per stream would marshal the
// event for every delivery ("per-stream"). An op is one delivery's share
// of the work.
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
		frames := []hub.Frame{{Data: data, Wire: WireForm(data)}}
		b.ReportAllocs()
		for b.Loop() {
			out, err := codec.Marshal(&frames[0])
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
			out, err := codec.Marshal(&hub.Frame{Data: data})
			if err != nil || out.Len() != len(data) {
				b.Fatal(err)
			}
			out.Free()
		}
	})
}

// A frame that carries its wire form goes to grpc-go without allocating:
// the cost of a delivery does not include copying or wrapping the bytes.
func TestSharedFrameMarshalsWithoutAllocating(t *testing.T) {
	data := []byte("an encoded frame")
	frames := []hub.Frame{{Data: data, Wire: WireForm(data)}}
	codec := NewCodec()
	allocs := testing.AllocsPerRun(100, func() {
		out, err := codec.Marshal(&frames[0])
		if err != nil || out.Len() != len(data) {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per marshal of a shared frame, want 0", allocs)
	}
	out, err := codec.Marshal(&hub.Frame{Data: data}) // without a wire form
	if err != nil || string(out.Materialize()) != string(data) {
		t.Fatalf("marshal without a wire form: %q, %v", out.Materialize(), err)
	}
}
