package hub

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/parleychat/parley/server/internal/store"
	"github.com/parleychat/parley/server/internal/store/memory"
)

// isPending reports whether the room holds seq ahead of a gap.
func isPending(r *room, seq uint64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.pending[seq]
	return ok
}

// afterPending runs deliver once the room holds seq ahead of a gap, on a
// goroutine of its own, and returns a channel that says how it went: the
// test's goroutine may be waiting for what deliver does.
func afterPending(r *room, seq uint64, deliver func()) <-chan error {
	done := make(chan error, 1)
	go func() {
		var err error
		deadline := time.Now().Add(10 * time.Second)
		for !isPending(r, seq) {
			if time.Now().After(deadline) {
				err = fmt.Errorf("seq %d never waited for a gap", seq)
				break
			}
			time.Sleep(time.Millisecond) // polling a condition, with a deadline
		}
		deliver() // even after a timeout: whoever waits for it must not hang
		done <- err
	}()
	return done
}

// joinRoom joins a connection that is not in presence to room "r", so
// that only messages reach it.
func joinRoom(t *testing.T, h *Hub, user string) *Conn {
	t.Helper()
	c := h.Connect(user, "", false)
	if err := h.Join(context.Background(), c, "r", JoinOptions{}); err != nil {
		t.Fatal(err)
	}
	return c
}

// Two sends to a room are stored together (seqs 1 and 2), and the second's
// delivery runs first: its message waits in the room until seq 1 is
// delivered, and so must its sender's reply. The reply is queued when the
// send's wait returns, as the Join stream does; a client takes the reply's
// seq as its position in the room, so a reply before seq 1 would make it
// skip seq 1. This holds whether the two sends came from two connections
// or were pipelined on one.
func TestReplyWaitsForTheGapBeforeItsMessage(t *testing.T) {
	for _, pipelined := range []bool{false, true} {
		t.Run(fmt.Sprint("pipelined=", pipelined), func(t *testing.T) {
			ctx := context.Background()
			h, _ := newTestHub(t, Config{GapWait: time.Hour}) // only the first send fills the gap
			sender := joinRoom(t, h, "b")
			other := joinRoom(t, h, "a")
			if pipelined {
				other = sender
			}
			drain(t, sender)
			first := h.StartSend(ctx, store.NewMessage{Room: "r", Sender: other.User, Body: "1"}, other)
			second := h.StartSend(ctx, store.NewMessage{Room: "r", Sender: sender.User, Body: "2"}, sender)
			r, _ := h.room(ctx, "r")
			delivered := afterPending(r, 2, func() {
				if _, _, err := first(); err != nil {
					t.Error(err)
				}
			})
			msg, _, err := second()
			if err != nil {
				t.Fatal(err)
			}
			sender.EnqueueUrgent(Frame{Data: fmt.Appendf(nil, "reply %d", msg.Seq)})
			if err := <-delivered; err != nil {
				t.Fatal(err)
			}
			got := drain(t, sender)
			if want := []string{"msg r 1", "msg r 2", "reply 2"}; !slices.Equal(got, want) {
				t.Fatalf("the sender of seq 2 received %q, want %q", got, want)
			}
		})
	}
}

// A message held for a gap still goes to its sender after the room's other
// connections, as an urgent frame (see TestSenderGetsItsMessageLast): the
// order is observed by cutting every connection off in the fan-out of the
// held message.
func TestHeldMessageGoesToItsSenderLast(t *testing.T) {
	ctx := context.Background()
	h, _ := newTestHub(t, Config{MaxQueueBytes: 20, GapWait: time.Hour})
	var order []*Conn
	conns := make([]*Conn, 20)
	for i := range conns {
		c := joinRoom(t, h, fmt.Sprint("u", i))
		c.OnEnd(func() { order = append(order, c) }) // under the room's lock: the fan-out is one loop
		conns[i] = c
	}
	for _, c := range conns {
		drain(t, c)
	}
	// Each "msg r N" is 9 bytes: seq 1 and 2 fit in 20, seq 3 cuts everyone off.
	if _, _, err := h.Send(ctx, store.NewMessage{Room: "r", Sender: "s", Body: "b"}); err != nil {
		t.Fatal(err)
	}
	from := conns[3]
	second := h.StartSend(ctx, store.NewMessage{Room: "r", Sender: "s", Body: "b"}, nil)
	third := h.StartSend(ctx, store.NewMessage{Room: "r", Sender: from.User, Body: "b"}, from)
	r, _ := h.room(ctx, "r")
	delivered := afterPending(r, 3, func() {
		if _, _, err := second(); err != nil {
			t.Error(err)
		}
	})
	if _, _, err := third(); err != nil {
		t.Fatal(err)
	}
	if err := <-delivered; err != nil {
		t.Fatal(err)
	}
	if len(order) != len(conns) {
		t.Fatalf("%d of %d connections were cut off by the third message", len(order), len(conns))
	}
	if order[len(order)-1] != from {
		t.Fatalf("the sender's connection got its held message at position %d of %d, want last",
			slices.Index(order, from)+1, len(order))
	}
}

// A send waiting for a gap that does not fill returns when its connection
// ends, or when its context does: a stream that ends leaves no send behind.
func TestHeldSendEndsWithItsConnection(t *testing.T) {
	for _, end := range []string{"connection", "context"} {
		t.Run(end, func(t *testing.T) {
			h, _ := newTestHub(t, Config{GapWait: time.Hour})
			sender := joinRoom(t, h, "b")
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			h.StartSend(ctx, store.NewMessage{Room: "r", Sender: "a", Body: "1"}, nil) // stored, never delivered
			wait := h.StartSend(ctx, store.NewMessage{Room: "r", Sender: "b", Body: "2"}, sender)
			r, _ := h.room(ctx, "r")
			ended := afterPending(r, 2, func() {
				if end == "connection" {
					sender.End(ErrConnClosed)
				} else {
					cancel()
				}
			})
			if msg, _, err := wait(); err != nil || msg.Seq != 2 {
				t.Fatalf("wait returned seq %d, %v; want seq 2 (it is stored)", msg.Seq, err)
			}
			if err := <-ended; err != nil {
				t.Fatal(err)
			}
		})
	}
}

// heldBroker is an in-process Broker whose messages wait until the test
// releases them, so that a test decides when a remote message arrives, or
// that it never does. Every subscriber hears every message: a hub ignores
// its own.
type heldBroker struct {
	mu   sync.Mutex
	subs map[string]map[int]func([]byte)
	next int
	held []brokerMessage
}

type brokerMessage struct {
	subject string
	data    []byte
}

func (b *heldBroker) Publish(subject string, data []byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.held = append(b.held, brokerMessage{subject, data})
	return nil
}

func (b *heldBroker) Subscribe(subject string, fn func([]byte)) (func(), error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.subs == nil {
		b.subs = make(map[string]map[int]func([]byte))
	}
	if b.subs[subject] == nil {
		b.subs[subject] = make(map[int]func([]byte))
	}
	id := b.next
	b.next++
	b.subs[subject][id] = fn
	return func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		delete(b.subs[subject], id)
	}, nil
}

// release delivers the messages held so far, in the order published.
func (b *heldBroker) release() {
	b.mu.Lock()
	held := b.held
	b.held = nil
	var calls []func()
	for _, m := range held {
		for _, fn := range b.subs[m.subject] {
			calls = append(calls, func() { fn(m.data) })
		}
	}
	b.mu.Unlock()
	for _, call := range calls {
		call()
	}
}

// In a cluster, seq 1 is stored by another node and reaches this one over
// the broker only after this node stored seq 2: seq 2 waits for the gap to
// fill, and so does the reply to its sender, whether the gap is filled by
// the broker or, when the broker lost seq 1, from the store.
func TestReplyWaitsForARemoteGap(t *testing.T) {
	for _, lost := range []bool{false, true} {
		t.Run(fmt.Sprint("lost=", lost), func(t *testing.T) {
			ctx := context.Background()
			st := memory.New()
			if _, err := st.CreateRoom(ctx, store.Room{Name: "r", Visibility: store.Public}); err != nil {
				t.Fatal(err)
			}
			broker := &heldBroker{}
			gapWait := time.Hour // only the broker fills the gap
			if lost {
				gapWait = 20 * time.Millisecond
			}
			node := func(id string) *Hub {
				return New(Config{Broker: broker, NodeID: id, GapWait: gapWait}, st, testEncode, slog.New(slog.NewTextHandler(io.Discard, nil)))
			}
			here, there := node("here"), node("there")
			sender, remote := joinRoom(t, here, "a"), joinRoom(t, there, "b")
			drain(t, sender)
			drain(t, remote)

			if _, _, err := there.Send(ctx, store.NewMessage{Room: "r", Sender: "b", Body: "1"}); err != nil {
				t.Fatal(err)
			}
			wait := here.StartSend(ctx, store.NewMessage{Room: "r", Sender: "a", Body: "2"}, sender)
			r, _ := here.room(ctx, "r")
			arrived := afterPending(r, 2, func() {
				if !lost {
					broker.release()
				}
			})
			msg, _, err := wait()
			if err != nil {
				t.Fatal(err)
			}
			sender.EnqueueUrgent(Frame{Data: fmt.Appendf(nil, "reply %d", msg.Seq)})
			if err := <-arrived; err != nil {
				t.Fatal(err)
			}
			waitUntil(t, "the room to deliver seq 2", func() bool {
				r.mu.Lock()
				defer r.mu.Unlock()
				return r.head == 2
			})
			got := drain(t, sender)
			if want := []string{"msg r 1", "msg r 2", "reply 2"}; !slices.Equal(got, want) {
				t.Fatalf("the sender of seq 2 received %q, want %q", got, want)
			}
		})
	}
}

// prunedStore is a store from which retention pruned one seq.
type prunedStore struct {
	store.Store
	pruned uint64
}

func (s prunedStore) Messages(ctx context.Context, room string, q store.Query) ([]store.Message, error) {
	msgs, err := s.Store.Messages(ctx, room, q)
	return slices.DeleteFunc(msgs, func(m store.Message) bool { return m.Seq == s.pruned }), err
}

// A gap that the store cannot fill, because retention pruned its seqs
// (pruning a message prunes its later edits and reactions), must not hold
// the room's later entries back forever: once the store has answered for
// every seq below the held one, the head moves past the hole.
func TestGapOfPrunedSeqsIsSkipped(t *testing.T) {
	ctx := context.Background()
	st := memory.New()
	if _, err := st.CreateRoom(ctx, store.Room{Name: "r", Visibility: store.Public}); err != nil {
		t.Fatal(err)
	}
	h := New(Config{GapWait: 10 * time.Millisecond}, prunedStore{Store: st, pruned: 2}, testEncode, slog.New(slog.NewTextHandler(io.Discard, nil)))
	c := joinRoom(t, h, "u")
	drain(t, c)
	// Three entries stored by another node; only the third reaches this
	// one live, and the second is gone from the store by the time the gap
	// is filled.
	var third store.Message
	for i := range 3 {
		m, _, err := st.Append(ctx, store.NewMessage{Room: "r", Sender: "b", Body: fmt.Sprint(i + 1)})
		if err != nil {
			t.Fatal(err)
		}
		third = m
	}
	r, err := h.room(ctx, "r")
	if err != nil {
		t.Fatal(err)
	}
	defer r.release()
	r.deliver(third)
	waitUntil(t, "the head to move past the pruned seq", func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.head == 3
	})
	if got, want := drain(t, c), []string{"msg r 1", "msg r 3"}; !slices.Equal(got, want) {
		t.Fatalf("received %q, want %q", got, want)
	}
}
