package app_test

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	parleyv1 "github.com/parleychat/parley/gen/parley/v1"
)

// slowReader reads a Join stream at about 1,000 events a second, like a
// phone, and counts the typing events it sees.
type slowReader struct {
	js      *joinStream
	typings atomic.Int64
	mu      sync.Mutex
	last    *parleyv1.Typing // the latest typing event
	message chan *parleyv1.Message
}

func (r *slowReader) run() {
	defer close(r.js.done)
	for {
		ev, err := r.js.stream.Recv()
		if err != nil {
			r.js.err = err
			return
		}
		switch {
		case ev.GetTyping() != nil:
			r.mu.Lock()
			r.last = ev.GetTyping()
			r.mu.Unlock()
			r.typings.Add(1)
		case ev.GetMessage() != nil:
			r.message <- ev.GetMessage()
		}
		time.Sleep(time.Millisecond) // the pace of a slow client, not synchronisation
	}
}

func (r *slowReader) lastTyping() *parleyv1.Typing {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last
}

// A user flooding a room with typing frames cannot disconnect the room's
// other members: the server forwards a few typing changes per user per
// room per second, and the last state is the one the members end with.
func TestTypingFloodLeavesSlowReaderConnected(t *testing.T) {
	frames := 100_000
	if raceEnabled {
		frames = 20_000 // the race detector makes each frame ~10x dearer
	}
	// A small queue makes the flood's effect show within the frames sent:
	// without the limit, a few thousand typing events overflow it.
	ts := startServer(t, func(c *appConfig) { c.MaxQueueBytes = 64 << 10 })
	ts.createRoom(t, "flood")

	reader := &slowReader{js: startJoin(t, ts.dial(t), ts.token(t, "reader")), message: make(chan *parleyv1.Message, 1)}
	ref := reader.js.send(&parleyv1.JoinRequest{Frame: &parleyv1.JoinRequest_Join{Join: &parleyv1.JoinRequest_JoinRoom{Room: "flood"}}})
	if ev, err := reader.js.stream.Recv(); err != nil || ev.GetReply().GetRef() != ref || ev.GetReply().GetCode() != 0 {
		t.Fatalf("reader's join: %v %v", ev, err)
	}
	go reader.run()

	flooder := startJoin(t, ts.dial(t), ts.token(t, "flooder"))
	flooder.send(&parleyv1.JoinRequest{Frame: &parleyv1.JoinRequest_Join{Join: &parleyv1.JoinRequest_JoinRoom{Room: "flood"}}})
	for {
		ev, err := flooder.stream.Recv()
		if err != nil || ev.GetReply().GetCode() != 0 {
			t.Fatalf("flooder's join: %v %v", ev, err)
		}
		if ev.GetJoined() != nil {
			break
		}
	}
	replies := make(chan error, 1)
	go func() { // the flooder reads its replies, so only the reader can fall behind
		n := 0
		for n < frames {
			ev, err := flooder.stream.Recv()
			if err != nil {
				replies <- err
				return
			}
			if r := ev.GetReply(); r != nil && r.GetRef() == "t" {
				if r.GetCode() != 0 {
					t.Errorf("typing frame refused: %s %s", codes.Code(r.GetCode()), r.GetError())
				}
				n++
			}
		}
		replies <- nil
	}()
	start := time.Now()
	for i := range frames {
		// active, inactive, ..., ending inactive.
		req := &parleyv1.JoinRequest{Ref: "t", Frame: &parleyv1.JoinRequest_Typing{Typing: &parleyv1.JoinRequest_SetTyping{Room: "flood", Active: i%2 == 0}}}
		if err := flooder.stream.Send(req); err != nil {
			t.Fatalf("typing frame %d: %v", i, err)
		}
	}
	select {
	case err := <-replies:
		if err != nil {
			t.Fatalf("flooder's stream: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the typing frames were not all answered within a minute")
	}
	flood := time.Since(start)

	waitFor(t, "the reader to see the flooder stop typing", func() bool {
		last := reader.lastTyping()
		return last != nil && !last.GetActive() || isDone(reader.js.done)
	})
	select {
	case <-reader.js.done:
		t.Fatalf("the reader was cut off after %d typing events: %v", reader.typings.Load(), reader.js.err)
	default:
	}
	// Still connected, and caught up: a message sent now arrives.
	if _, err := parleyv1.NewChatServiceClient(ts.dial(t)).SendMessage(authCtx(t, ts.token(t, "flooder")), &parleyv1.SendMessageRequest{Room: "flood", Body: "done"}); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-reader.message:
		if m.GetBody() != "done" {
			t.Fatalf("reader got %v", m)
		}
	case <-reader.js.done:
		t.Fatalf("the reader was cut off: %v", reader.js.err)
	case <-time.After(waitTimeout):
		t.Fatal("the reader did not get the message sent after the flood")
	}
	// At most one change per 250 ms window, one more at the end, and a
	// margin for windows that straddle the flood's start and end.
	got := reader.typings.Load()
	limit := int64(flood/(250*time.Millisecond)) + 3
	t.Logf("%d typing frames in %v; the reader got %d typing events (at most %d allowed)", frames, flood.Round(time.Millisecond), got, limit)
	if got > limit {
		t.Fatalf("the reader got %d typing events from a %v flood, want at most %d", got, flood, limit)
	}
	// Whatever came last in the flood, the reader ends with its last state;
	// it may come after the message, at the end of the flooder's window.
	waitFor(t, "the reader's last typing event to be the flooder's inactive", func() bool {
		last := reader.lastTyping()
		return last.GetUser() == "flooder" && !last.GetActive()
	})
}

func isDone(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
