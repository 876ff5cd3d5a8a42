package app_test

import (
	"bytes"
	"fmt"
	"runtime"
	"testing"
)

// parleyGoroutines counts the goroutines running Parley's own server code
// (package app and the internal packages: api, hub, store...) whose stack
// contains mark ("" for any).
func parleyGoroutines(mark string) int { return len(parleyStacks(mark)) }

// parleyStacks returns the stacks parleyGoroutines counts.
func parleyStacks(mark string) []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var stacks []string
	for g := range bytes.SplitSeq(buf, []byte("\n\n")) {
		if (bytes.Contains(g, []byte("parley/server/internal/")) || bytes.Contains(g, []byte("parley/server/app.("))) &&
			bytes.Contains(g, []byte(mark)) {
			stacks = append(stacks, string(g))
		}
	}
	return stacks
}

// An idle Join stream holds one goroutine of the server's own: its
// handler, waiting in Recv for the client's next frame. Frames to the
// client are written by the hub's writers, which run only while there is
// something to send, and a frame is handled on a goroutine that ends with
// it. Before, each stream held a writer and a reader.
func TestIdleJoinStreamHoldsOneGoroutine(t *testing.T) {
	ts := startServer(t)
	ts.createRoom(t, "idle")
	conn := ts.dial(t)
	tok := ts.token(t, "idler")
	before := parleyGoroutines("")

	const n = 30 // under the per-user limit of Join streams
	streams := make([]*joinStream, n)
	for i := range streams {
		streams[i] = openJoin(t, conn, tok)
		streams[i].join("idle", nil)
	}
	// The last joins' presence diffs may still be on their way out, and
	// so may the goroutines of the frames just answered (a join's ends
	// after its reply is queued, and the client may read the reply first).
	waitFor(t, "the writers to finish", func() bool { return parleyGoroutines("hub.(*writers).run") == 0 })
	waitFor(t, fmt.Sprintf("%d idle Join streams to hold at most %d goroutines of the server's own (one each)", n, n),
		func() bool { return parleyGoroutines("")-before <= n })

	// They still work: a message reaches all of them, through writers
	// started for it.
	reply := streams[0].post("idle", "wake up", "")
	if reply.GetCode() != 0 {
		t.Fatalf("send: %v", reply)
	}
	for i, js := range streams {
		ev := js.next(isMessage("idle"), nil)
		if got := ev.GetMessage().GetBody(); got != "wake up" {
			t.Fatalf("stream %d got %q", i, got)
		}
	}
	waitFor(t, "the writers to finish again", func() bool { return parleyGoroutines("hub.(*writers).run") == 0 })
}
