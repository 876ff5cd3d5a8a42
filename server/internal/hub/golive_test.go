package hub

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/parleychat/parley/server/internal/store"
	"github.com/parleychat/parley/server/internal/store/memory"
)

// lazyBroker subscribes as NATS does: a subscription takes effect only once
// the server has it, which Flush waits for; until then, what is published
// on its subject passes it by. Without a Flush, the test decides when the
// server gets it (settle).
type lazyBroker struct {
	mu      sync.Mutex
	active  map[string][]func([]byte)
	pending map[string][]func([]byte)
}

func (b *lazyBroker) Publish(subject string, data []byte) error {
	b.mu.Lock()
	fns := append([]func([]byte){}, b.active[subject]...)
	b.mu.Unlock()
	for _, fn := range fns {
		fn(data)
	}
	return nil
}

func (b *lazyBroker) Subscribe(subject string, fn func([]byte)) (func(), error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.pending[subject] = append(b.pending[subject], fn)
	return func() {}, nil
}

func (b *lazyBroker) Flush(context.Context) error {
	b.settle()
	return nil
}

// settle puts the subscriptions made so far into effect.
func (b *lazyBroker) settle() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for subject, fns := range b.pending {
		b.active[subject] = append(b.active[subject], fns...)
	}
	clear(b.pending)
}

// headHook is a store that calls after once, when the room's record is read
// for the nth time.
type headHook struct {
	store.Store
	mu    sync.Mutex
	n     int
	after func()
}

func (s *headHook) Room(ctx context.Context, name string) (store.Room, error) {
	r, err := s.Store.Room(ctx, name)
	s.mu.Lock()
	s.n--
	fire := s.n == 0
	s.mu.Unlock()
	if fire {
		s.after()
	}
	return r, err
}

// A room goes live on this node while another node sends to it: the
// message is stored just after this node read the room's head, and
// published before the broker would otherwise have had this node's
// subscription. It must still arrive, with no later message to reveal it.
func TestMessageSentWhileARoomGoesLive(t *testing.T) {
	ctx := context.Background()
	st := memory.New()
	if _, err := st.CreateRoom(ctx, store.Room{Name: "r", Visibility: store.Public}); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	broker := &lazyBroker{active: map[string][]func([]byte){}, pending: map[string][]func([]byte){}}
	there := New(Config{Broker: broker, NodeID: "there", GapWait: time.Hour}, st, testEncode, log)
	// The second read of the room's record is goLive's head read (the
	// first loads the room).
	hook := &headHook{Store: st, n: 2}
	hook.after = func() {
		if _, _, err := there.Send(ctx, store.NewMessage{Room: "r", Sender: "b", Body: "in the window"}); err != nil {
			t.Error(err)
		}
		broker.settle() // the broker gets the subscription now, too late without a flush
	}
	here := New(Config{Broker: broker, NodeID: "here", GapWait: time.Hour}, hook, testEncode, log)
	joinRoom(t, here, "a")
	waitUntil(t, "the message sent in the window to reach this node", func() bool {
		_, head, err := here.Presence(ctx, "r")
		return err == nil && head == 1
	})
}
