package hub

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/parleychat/parley/server/internal/store"
	"github.com/parleychat/parley/server/internal/store/memory"
)

// testEncode encodes an event as a short readable string.
func testEncode(ev Event) ([]byte, error) {
	switch ev.Kind {
	case EventMessage:
		return fmt.Appendf(nil, "msg %s %d", ev.Room, ev.Message.Seq), nil
	case EventReplayed:
		return fmt.Appendf(nil, "replayed %s %d", ev.Room, ev.ThroughSeq), nil
	case EventReceipts:
		b := fmt.Appendf(nil, "receipts %s", ev.Room)
		for _, r := range ev.Receipts {
			b = fmt.Appendf(b, " %s@%d", r.User, r.Seq)
		}
		return b, nil
	}
	return fmt.Appendf(nil, "event %d %s", ev.Kind, ev.Room), nil
}

func newTestHub(t *testing.T, cfg Config) (*Hub, store.Store) {
	t.Helper()
	st := memory.New()
	if _, err := st.CreateRoom(context.Background(), store.Room{Name: "r", Visibility: store.Public}); err != nil {
		t.Fatal(err)
	}
	return New(cfg, st, testEncode, slog.New(slog.NewTextHandler(io.Discard, nil))), st
}

func drain(t *testing.T, c *Conn) []string {
	t.Helper()
	frames, err := c.Next(nil)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, f := range frames {
		out = append(out, string(f.Data))
	}
	return out
}

// joinReplaying joins c to room after seq after, reading c's frames while
// the replay runs (it waits for room in the queue), and returns them up to
// the replayed marker.
func joinReplaying(t *testing.T, h *Hub, c *Conn, room string, after uint64) []string {
	t.Helper()
	joined := make(chan error, 1)
	go func() { joined <- h.Join(context.Background(), c, room, JoinOptions{After: &after}) }()
	var out []string
	for !slices.ContainsFunc(out, func(s string) bool { return strings.HasPrefix(s, "replayed") }) {
		out = append(out, drain(t, c)...)
	}
	if err := <-joined; err != nil {
		t.Fatal(err)
	}
	return out
}

// Messages that reach the room out of seq order are held until the gap
// fills, and a message delivered twice is dropped.
func TestDeliverHoldsGapsAndDropsDuplicates(t *testing.T) {
	h, _ := newTestHub(t, Config{})
	c := h.Connect("u", "", true)
	if err := h.Join(context.Background(), c, "r", JoinOptions{}); err != nil {
		t.Fatal(err)
	}
	drain(t, c) // joined state
	r, _ := h.room(context.Background(), "r")
	for _, seq := range []uint64{3, 2, 2, 5, 1, 3, 4} {
		r.deliver(store.Message{Room: "r", Seq: seq})
	}
	got := fmt.Sprint(drain(t, c))
	if want := "[msg r 1 msg r 2 msg r 3 msg r 4 msg r 5]"; got != want {
		t.Fatalf("delivered %s, want %s", got, want)
	}
}

// A resume served partly from the store and partly from the ring of recent
// frames gives every message once, then the replayed marker.
func TestReplayFromStoreThenRing(t *testing.T) {
	h, _ := newTestHub(t, Config{RecentMessages: 4, ReplayPage: 3})
	ctx := context.Background()
	for range 10 {
		if _, _, err := h.Send(ctx, store.NewMessage{Room: "r", Sender: "s", Body: "b"}); err != nil {
			t.Fatal(err)
		}
	}
	for _, after := range []uint64{0, 2, 6, 8, 10} {
		c := h.Connect("u", "", false)
		got := joinReplaying(t, h, c, "r", after)[1:] // after the joined state
		var want []string
		for s := after + 1; s <= 10; s++ {
			want = append(want, fmt.Sprint("msg r ", s))
		}
		want = append(want, "replayed r 10")
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("after %d: got %v, want %v", after, got, want)
		}
		c.Close()
	}
}

// A connection whose queue overflows is cut off; the others are not.
func TestOverflowCutsOnlyTheSlowConnection(t *testing.T) {
	h, _ := newTestHub(t, Config{MaxQueueBytes: 100})
	ctx := context.Background()
	slow, fast := h.Connect("slow", "", true), h.Connect("fast", "", true)
	for _, c := range []*Conn{slow, fast} {
		if err := h.Join(ctx, c, "r", JoinOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	drain(t, fast)
	for i := range 20 {
		if _, _, err := h.Send(ctx, store.NewMessage{Room: "r", Sender: "s", Body: "b"}); err != nil {
			t.Fatal(err)
		}
		if got := drain(t, fast); len(got) != 1 || got[0] != fmt.Sprint("msg r ", i+1) {
			t.Fatalf("fast got %v", got)
		}
	}
	if _, err := slow.Next(nil); err != ErrSlowConsumer {
		t.Fatalf("slow connection: %v, want ErrSlowConsumer", err)
	}
	if st := h.Stats(); st.SlowConsumers != 1 || st.Messages != 20 {
		t.Fatalf("stats %+v", st)
	}
}

// Frames that go to every member of a room carry one wire form, made once
// per event however many connections receive it (WireForm).
func TestSharedFramesMadeOncePerEvent(t *testing.T) {
	var forms []*[]byte // under the room's lock
	h, _ := newTestHub(t, Config{WireForm: func(b []byte) any {
		p := &b
		forms = append(forms, p)
		return p
	}})
	ctx := context.Background()
	var conns []*Conn
	for i := range 5 {
		c := h.Connect(fmt.Sprint("u", i), "", true)
		if err := h.Join(ctx, c, "r", JoinOptions{}); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	for _, c := range conns {
		if _, err := c.Next(nil); err != nil { // the joined state and diffs
			t.Fatal(err)
		}
	}
	forms = nil
	if _, _, err := h.Send(ctx, store.NewMessage{Room: "r", Sender: "u0", Body: "b"}); err != nil {
		t.Fatal(err)
	}
	if err := h.Typing(conns[0], "r", true); err != nil {
		t.Fatal(err)
	}
	if len(forms) != 2 {
		t.Fatalf("a message and a typing event to 5 connections: %d wire forms made, want 2", len(forms))
	}
	for i, c := range conns {
		frames, err := c.Next(nil)
		if err != nil {
			t.Fatal(err)
		}
		if frames[0].Wire != any(forms[0]) || string(*forms[0]) != string(frames[0].Data) {
			t.Fatalf("conn %d: message frame carries %v, want the shared wire form of %q", i, frames[0].Wire, frames[0].Data)
		}
		if i > 0 && (len(frames) != 2 || frames[1].Wire != any(forms[1])) {
			t.Fatalf("conn %d: typing frame is not the shared one: %+v", i, frames)
		}
	}
}

// The connection a message was sent on gets it after every other
// connection in the room (and at the front of the writers' line), so that
// one turn likely writes it with the send's reply. The order is observed by
// cutting every connection off in the fan-out: each queue holds a backlog
// the message does not fit beside, and a cut connection's OnEnd runs as it
// is cut. Without the order, the sender would be last in 1 of 30 runs.
func TestSenderGetsItsMessageLast(t *testing.T) {
	ctx := context.Background()
	for run := range 30 {
		h, _ := newTestHub(t, Config{MaxQueueBytes: 20})
		var order []*Conn
		conns := make([]*Conn, 20)
		for i := range conns {
			c := h.Connect(fmt.Sprint("u", i), "", false)
			if err := h.Join(ctx, c, "r", JoinOptions{}); err != nil {
				t.Fatal(err)
			}
			c.OnEnd(func() { order = append(order, c) }) // under the room's lock: the fan-out is one loop
			conns[i] = c
		}
		for _, c := range conns {
			drain(t, c) // joined states
		}
		for range 2 { // each "msg r N" is 9 bytes: 18 of 20 queued
			if _, _, err := h.Send(ctx, store.NewMessage{Room: "r", Sender: "s", Body: "b"}); err != nil {
				t.Fatal(err)
			}
		}
		from := conns[run%len(conns)]
		if _, _, err := h.StartSend(ctx, store.NewMessage{Room: "r", Sender: from.User, Body: "b"}, from)(); err != nil {
			t.Fatal(err)
		}
		if len(order) != len(conns) {
			t.Fatalf("%d of %d connections were cut off by the third message", len(order), len(conns))
		}
		if order[len(order)-1] != from {
			t.Fatalf("run %d: the sender's connection got the message at position %d of %d, want last",
				run, slices.Index(order, from)+1, len(order))
		}
	}
}

// A connection makes its Done channel only when asked (an idle stream's
// handler waits in Recv, not on Done), and Done works whenever it is asked:
// before the end, closed by it; after, closed already.
func TestDoneIsMadeOnDemand(t *testing.T) {
	h, _ := newTestHub(t, Config{})
	early, late := h.Connect("u", "", true), h.Connect("v", "", true)
	for _, c := range []*Conn{early, late} {
		if err := h.Join(context.Background(), c, "r", JoinOptions{}); err != nil {
			t.Fatal(err)
		}
		if c.done != nil {
			t.Fatal("a connection nobody waits on holds a Done channel")
		}
	}
	done := early.Done()
	select {
	case <-done:
		t.Fatal("Done is closed before the connection ended")
	default:
	}
	early.End(ErrConnClosed)
	late.End(ErrConnClosed)
	for _, ch := range []<-chan struct{}{done, late.Done()} {
		select {
		case <-ch:
		default:
			t.Fatal("Done is not closed after the connection ended")
		}
	}
}

// failingReads is a store whose history reads fail, as when the database
// does not answer in time.
type failingReads struct{ store.Store }

func (failingReads) Messages(context.Context, string, store.Query) ([]store.Message, error) {
	return nil, context.DeadlineExceeded
}

// A replay that fails after the join was acknowledged says so with a
// ReplayError, and the connection is out of the room again: it must not
// stay in it with a hole before its live messages.
func TestFailedReplayTakesTheConnectionOut(t *testing.T) {
	ctx := context.Background()
	st := memory.New()
	if _, err := st.CreateRoom(ctx, store.Room{Name: "r", Visibility: store.Public}); err != nil {
		t.Fatal(err)
	}
	h := New(Config{RecentMessages: 2}, failingReads{st}, testEncode, slog.New(slog.NewTextHandler(io.Discard, nil)))
	for range 5 {
		if _, _, err := h.Send(ctx, store.NewMessage{Room: "r", Sender: "s", Body: "b"}); err != nil {
			t.Fatal(err)
		}
	}
	c := h.Connect("u", "", true)
	after := uint64(0) // older than the ring holds: the replay reads the store
	err := h.Join(ctx, c, "r", JoinOptions{After: &after, Ack: []byte("ack")})
	var replay *ReplayError
	if !errors.As(err, &replay) || replay.Room != "r" || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("join: %v, want a ReplayError for room r wrapping the store's error", err)
	}
	if h.Joined(c, "r") {
		t.Fatal("the connection stayed in the room after its replay failed")
	}
	if got := drain(t, c); len(got) < 2 || got[0] != "ack" {
		t.Fatalf("frames %q: the ack and the state were queued before the replay", got)
	}
	// It may join again, from the live head.
	if err := h.Join(ctx, c, "r", JoinOptions{}); err != nil {
		t.Fatalf("join again: %v", err)
	}
}
