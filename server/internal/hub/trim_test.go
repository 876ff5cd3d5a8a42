package hub

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parleychat/parley/server/internal/store"
	"github.com/parleychat/parley/server/internal/store/memory"
	"io"
	"log/slog"
)

// After a burst is written, a connection's queue gives its memory back
// once the trimmer has looked twice (it keeps it while the connection is
// busy), in pull and in push mode.
func TestQueueGivesMemoryBackAfterABurst(t *testing.T) {
	h, _ := newTestHub(t, Config{QueueTrimDelay: time.Hour}) // the test runs the trimmer
	pull := h.Connect("pull", "", false)
	push := h.Connect("push", "", false)
	release := make(chan struct{})
	var mu sync.Mutex
	written := 0
	push.ServeWrites(func(frames []Frame) error {
		<-release // the burst piles up behind the first write
		mu.Lock()
		written += len(frames)
		mu.Unlock()
		return nil
	})
	const burst = 2000
	for i := range burst {
		for _, c := range []*Conn{pull, push} {
			if !c.Enqueue(Frame{Data: fmt.Append(nil, i)}) {
				t.Fatal(c.Err())
			}
		}
	}
	if _, err := pull.Next(nil); err != nil {
		t.Fatal(err)
	}
	close(release)
	waitUntil(t, "the burst written", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return written == burst
	})
	waitUntil(t, "the writer's turn to end", func() bool {
		push.mu.Lock()
		defer push.mu.Unlock()
		return !push.writing
	})
	for _, c := range []*Conn{pull, push} {
		if got := c.QueueCap(); got < burst/2 {
			t.Fatalf("%s: queue capacity %d after a burst of %d: the test no longer makes a burst", c.User, got, burst)
		}
	}
	h.trim.run() // the burst came since the last look: kept
	if got := pull.QueueCap(); got < burst {
		t.Fatalf("pull: queue capacity %d right after a burst, want it kept", got)
	}
	h.trim.run() // nothing since: given back
	for _, c := range []*Conn{pull, push} {
		if got := c.QueueCap(); got > queueTrimMin {
			t.Errorf("%s: queue capacity %d frames after the burst was written and the trimmer looked twice, want at most %d", c.User, got, queueTrimMin)
		}
	}
	h.trim.mu.Lock()
	listed := len(h.trim.conns)
	h.trim.mu.Unlock()
	if listed != 0 {
		t.Errorf("%d connections still listed after their queues were trimmed", listed)
	}
}

// A connection that stays busy keeps its queue between looks: it is not
// made to grow it again at every turn.
func TestBusyQueueIsKept(t *testing.T) {
	h, _ := newTestHub(t, Config{QueueTrimDelay: time.Hour})
	c := h.Connect("u", "", false)
	for range 3 {
		for i := range 100 {
			c.Enqueue(Frame{Data: fmt.Append(nil, i)})
		}
		if _, err := c.Next(nil); err != nil {
			t.Fatal(err)
		}
		h.trim.run()
		if got := c.QueueCap(); got < 100 {
			t.Fatalf("queue capacity %d of a connection busy with 100 frames between looks", got)
		}
	}
}

// A resume over a long history holds at most a page of it in the
// connection's queue at a time, however much the queue's byte limit allows.
func TestReplayQueuesAPageAtATime(t *testing.T) {
	const page, history = 50, 3000
	h, _ := newTestHub(t, Config{ReplayPage: page, RecentMessages: 10})
	ctx := context.Background()
	for range history {
		if _, _, err := h.Send(ctx, store.NewMessage{Room: "r", Sender: "s", Body: "b"}); err != nil {
			t.Fatal(err)
		}
	}
	c := h.Connect("u", "", false)
	joined := make(chan error, 1)
	go func() {
		after := uint64(0)
		joined <- h.Join(ctx, c, "r", JoinOptions{After: &after})
	}()
	got, most := 0, 0
	for done := false; !done; {
		// Wait until the replay waits for room in the queue, or is over.
		waitUntil(t, "the replay to wait or end", func() bool {
			c.mu.Lock()
			defer c.mu.Unlock()
			return len(c.queue) >= page || strings.HasPrefix(lastFrame(c), "replayed")
		})
		frames, err := c.Next(nil)
		if err != nil {
			t.Fatal(err)
		}
		most = max(most, len(frames))
		for _, f := range frames {
			if f.Seq > 0 {
				got++
			}
			done = done || strings.HasPrefix(string(f.Data), "replayed")
		}
	}
	if err := <-joined; err != nil {
		t.Fatal(err)
	}
	if got != history {
		t.Fatalf("replayed %d messages, want %d", got, history)
	}
	if most > page+1 { // a page, and the joined state before it
		t.Fatalf("the queue held %d frames of the replay at once, want at most %d", most, page+1)
	}
}

func lastFrame(c *Conn) string {
	if len(c.queue) == 0 {
		return ""
	}
	return string(c.queue[len(c.queue)-1].Data)
}

// A replay to a client that reads nothing waits ReplayStall, then cuts
// the client off as a slow consumer: it would otherwise hold a page of
// history for as long as its connection lasts.
func TestReplayCutsOffAClientThatStopsReading(t *testing.T) {
	const page, history = 50, 500
	h, _ := newTestHub(t, Config{ReplayPage: page, RecentMessages: 10, ReplayStall: 100 * time.Millisecond})
	ctx := context.Background()
	for range history {
		if _, _, err := h.Send(ctx, store.NewMessage{Room: "r", Sender: "s", Body: "b"}); err != nil {
			t.Fatal(err)
		}
	}
	c := h.Connect("u", "", false)
	joined := make(chan error, 1)
	go func() {
		after := uint64(0)
		joined <- h.Join(ctx, c, "r", JoinOptions{After: &after})
	}()
	select {
	case err := <-joined:
		if !errors.Is(err, ErrSlowConsumer) {
			t.Fatalf("a replay to a client that reads nothing ended with %v, want ErrSlowConsumer", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a replay to a client that reads nothing still waits after 10s")
	}
	if !errors.Is(c.Err(), ErrSlowConsumer) {
		t.Fatalf("the connection ended with %v, want ErrSlowConsumer", c.Err())
	}
}

// dbStore is a store whose reads return fresh copies of the bodies, as a
// database's reads do (the memory store's share the stored strings).
type dbStore struct{ store.Store }

func (s dbStore) Messages(ctx context.Context, room string, q store.Query) ([]store.Message, error) {
	msgs, err := s.Store.Messages(ctx, room, q)
	for i := range msgs {
		msgs[i].Body = strings.Clone(msgs[i].Body)
	}
	return msgs, err
}

// Replays waiting for clients that do not read hold none of the history
// they read: a page of 500 messages of 4 KiB each would be 2 MiB a client.
func TestWaitingReplaysHoldNoHistory(t *testing.T) {
	const clients, history, page = 40, 1000, 500
	st := memory.New()
	ctx := context.Background()
	if _, err := st.CreateRoom(ctx, store.Room{Name: "r", Visibility: store.Public}); err != nil {
		t.Fatal(err)
	}
	h := New(Config{ReplayPage: page, RecentMessages: 10, ReplayStall: time.Hour}, dbStore{st}, testEncode,
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	body := strings.Repeat("x", 4<<10)
	for range history {
		if _, _, err := h.Send(ctx, store.NewMessage{Room: "r", Sender: "s", Body: body}); err != nil {
			t.Fatal(err)
		}
	}
	before := heapInUse()
	conns := make([]*Conn, clients)
	var replays sync.WaitGroup
	for i := range conns {
		c := h.Connect(fmt.Sprint("u", i), "", false)
		conns[i] = c
		replays.Add(1)
		go func() {
			defer replays.Done()
			after := uint64(0)
			h.Join(ctx, c, "r", JoinOptions{After: &after}) // ends with the connection
		}()
	}
	// Each replay queues its first page (testEncode's frames are small, so
	// the page's count is the bound), then waits for a client that never reads.
	waitUntil(t, "every replay to wait", func() bool {
		for _, c := range conns {
			c.mu.Lock()
			n := len(c.queue)
			c.mu.Unlock()
			if n < page {
				return false
			}
		}
		return true
	})
	held := int64(heapInUse()) - int64(before)
	for _, c := range conns {
		c.Close()
	}
	replays.Wait()
	t.Logf("%d waiting replays hold %.1f MiB", clients, float64(held)/(1<<20))
	if held > 16<<20 {
		t.Fatalf("%d replays waiting for their clients hold %.1f MiB; a page of history each would be %d MiB",
			clients, float64(held)/(1<<20), clients*page*len(body)>>20)
	}
}
