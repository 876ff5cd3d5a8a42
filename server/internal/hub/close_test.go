package hub

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/parleychat/parley/server/internal/store"
	"github.com/parleychat/parley/server/internal/store/memory"
)

// stallStore is a store whose message reads, once stalled, block until
// their context ends, as a database that stopped answering does.
type stallStore struct {
	store.Store
	mu      sync.Mutex
	stalled bool
	waiting int // reads blocked now
	reads   int // reads blocked so far
}

func (s *stallStore) Messages(ctx context.Context, room string, q store.Query) ([]store.Message, error) {
	s.mu.Lock()
	if !s.stalled {
		s.mu.Unlock()
		return s.Store.Messages(ctx, room, q)
	}
	s.waiting++
	s.reads++
	s.mu.Unlock()
	<-ctx.Done()
	s.mu.Lock()
	s.waiting--
	s.mu.Unlock()
	return nil, ctx.Err()
}

func (s *stallStore) counts() (waiting, reads int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.waiting, s.reads
}

// Close ends the work the hub started of its own accord, even blocked in
// the store: a catch-up and a gap fill reading a store that does not
// answer, and Run. Before, they read with context.Background and a
// timeout, so they outlived the server by up to 30s, and nothing waited
// for them before the store was closed.
func TestCloseEndsTheHubsOwnWork(t *testing.T) {
	ctx := context.Background()
	mem := memory.New()
	if _, err := mem.CreateRoom(ctx, store.Room{Name: "r", Visibility: store.Public}); err != nil {
		t.Fatal(err)
	}
	st := &stallStore{Store: mem}
	broker := &lazyBroker{active: map[string][]func([]byte){}, pending: map[string][]func([]byte){}}
	h := New(Config{Broker: broker, NodeID: "here", GapWait: time.Millisecond, HeartbeatInterval: time.Hour},
		st, testEncode, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ran := make(chan error, 1)
	go func() { ran <- h.Run(ctx) }()
	c := joinRoom(t, h, "a")

	st.mu.Lock()
	st.stalled = true
	st.mu.Unlock()
	h.CatchUp()
	r, _ := h.rooms.Load("r")
	r.(*room).deliver(store.Message{Room: "r", Seq: 5}) // seqs 1-4 missing: a gap fill
	waitUntil(t, "the catch-up and the gap fill to block in the store", func() bool {
		waiting, _ := st.counts()
		return waiting == 2
	})

	closed := make(chan struct{})
	go func() {
		h.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return while the hub's reads were blocked in the store")
	}
	if waiting, _ := st.counts(); waiting != 0 {
		t.Errorf("%d reads still blocked in the store after Close", waiting)
	}
	select {
	case err := <-ran:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	default:
		t.Error("Run still running after Close")
	}

	// Nothing starts after Close.
	_, before := st.counts()
	h.CatchUp()
	if _, after := st.counts(); after != before {
		t.Errorf("CatchUp after Close read the store %d times", after-before)
	}
	if err := h.Run(ctx); !errors.Is(err, ErrHubClosed) {
		t.Errorf("Run after Close: %v, want ErrHubClosed", err)
	}
	if err := c.Err(); !errors.Is(err, ErrHubClosed) {
		t.Errorf("a connection open at Close: %v, want ErrHubClosed", err)
	}
	if err := h.Connect("b", "", false).Err(); !errors.Is(err, ErrHubClosed) {
		t.Errorf("a connection opened after Close: %v, want ErrHubClosed", err)
	}
	h.Close() // again: returns at once
}

// A connection in push mode that gets a frame after Close ends with
// ErrHubClosed rather than wait in the writers' line for a writer that
// will never start.
func TestNoWriterStartsAfterClose(t *testing.T) {
	h, _ := newTestHub(t, Config{})
	h.Close()
	c := &Conn{ID: "late", hub: h, maxBytes: h.cfg.MaxQueueBytes}
	c.ServeWrites(func([]Frame) error { return nil })
	c.Enqueue(Frame{Data: []byte("x")})
	if err := c.Err(); !errors.Is(err, ErrHubClosed) {
		t.Fatalf("Err = %v, want ErrHubClosed", err)
	}
	c.WaitWriter() // returns: the connection is not in line
}
