package app_test

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	parleyv1 "github.com/parleychat/parley/gen/parley/v1"
)

// BenchmarkMarkReadAtHead: a room with 20 readers on Join streams; each
// op sends a message and, with marks, has every reader mark it read, as
// a client marks messages as they scroll into view: 20 marks that each
// move a marker to the head. The server runs in the process (real gRPC,
// SQLite), so cpu-µs/op is the client's and the server's CPU together;
// the difference between marks=20 and marks=0, over 20, is what a mark
// costs (docs/performance.md, "Read markers under load").
func BenchmarkMarkReadAtHead(b *testing.B) {
	for _, marks := range []bool{false, true} {
		b.Run(fmt.Sprint("marks=", map[bool]int{false: 0, true: 20}[marks]), func(b *testing.B) {
			ts := startServer(b)
			ts.createRoom(b, "bench")
			sender, sctx := ts.client(b, "writer")
			readers := make([]*joinStream, 20)
			for i := range readers {
				readers[i] = openJoin(b, ts.dial(b), ts.token(b, fmt.Sprint("reader", i)))
				readers[i].join("bench", nil)
			}
			var before, after syscall.Rusage
			b.ResetTimer()
			_ = syscall.Getrusage(syscall.RUSAGE_SELF, &before)
			for i := range b.N {
				resp, err := sender.SendMessage(sctx, &parleyv1.SendMessageRequest{Room: "bench", Body: fmt.Sprint("m", i)})
				if err != nil {
					b.Fatal(err)
				}
				if !marks {
					continue
				}
				for _, js := range readers {
					if r := js.markRead("bench", resp.GetMessage().GetSeq()); r.GetCode() != 0 {
						b.Fatalf("mark: %v", r)
					}
				}
			}
			_ = syscall.Getrusage(syscall.RUSAGE_SELF, &after)
			b.StopTimer()
			cpu := time.Duration(after.Utime.Nano()+after.Stime.Nano()-before.Utime.Nano()-before.Stime.Nano()) * time.Nanosecond
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/op")
		})
	}
}
