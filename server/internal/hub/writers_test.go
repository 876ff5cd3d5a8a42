package hub

import (
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A fan-out to many connections is written by at most GOMAXPROCS writers
// at a time, every frame once and in order per connection, and no writer
// is left once the line is empty.
func TestWritersAreBounded(t *testing.T) {
	h, _ := newTestHub(t, Config{})
	h.writers.mu.Lock()
	h.writers.period = time.Hour // no writer is replaced as stuck, however slow the machine
	h.writers.mu.Unlock()
	var inWrite, most atomic.Int32
	var mu sync.Mutex
	got := make(map[*Conn][]string)
	conns := make([]*Conn, 500)
	for i := range conns {
		c := h.Connect(fmt.Sprint("u", i), "", false)
		c.ServeWrites(func(frames []Frame) error {
			n := inWrite.Add(1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			mu.Lock()
			for _, f := range frames {
				got[c] = append(got[c], string(f.Data))
			}
			mu.Unlock()
			runtime.Gosched() // let other writers overlap, if there were more
			inWrite.Add(-1)
			return nil
		})
		conns[i] = c
	}
	for k := range 20 {
		for _, c := range conns {
			c.Enqueue(Frame{Data: fmt.Append(nil, k)})
		}
	}
	want := make([]string, 20)
	for k := range want {
		want[k] = fmt.Sprint(k)
	}
	waitUntil(t, "every frame written", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			if len(got[c]) < len(want) {
				return false
			}
		}
		return true
	})
	for _, c := range conns {
		if !slices.Equal(got[c], want) {
			t.Fatalf("a connection was written %v, want %v", got[c], want)
		}
	}
	if n, limit := most.Load(), int32(runtime.GOMAXPROCS(0)); n > limit {
		t.Errorf("%d writes ran at once, want at most GOMAXPROCS = %d", n, limit)
	}
	waitUntil(t, "the writers to end", func() bool {
		h.writers.mu.Lock()
		defer h.writers.mu.Unlock()
		return len(h.writers.running) == 0
	})
}

// Writes that block (a client that does not read) do not hold up the
// other connections: once a check period passes without progress, another
// writer starts beside each blocked one.
func TestBlockedWritesDoNotHoldUpOthers(t *testing.T) {
	h, _ := newTestHub(t, Config{})
	release := make(chan struct{})
	blocked := make([]*Conn, runtime.GOMAXPROCS(0))
	var stuck sync.WaitGroup
	for i := range blocked {
		c := h.Connect(fmt.Sprint("slow", i), "", false)
		c.ServeWrites(func([]Frame) error {
			stuck.Done()
			<-release
			return nil
		})
		blocked[i] = c
	}
	stuck.Add(len(blocked))
	for _, c := range blocked {
		c.Enqueue(Frame{Data: []byte("x")})
	}
	stuck.Wait() // every writer that may run is blocked

	written := make(chan string, 1)
	c := h.Connect("fast", "", false)
	c.ServeWrites(func(frames []Frame) error {
		written <- string(frames[0].Data)
		return nil
	})
	c.Enqueue(Frame{Data: []byte("hello")})
	select {
	case got := <-written:
		if got != "hello" {
			t.Fatalf("wrote %q", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a connection waited behind writes blocked by other clients")
	}
	close(release)
	waitUntil(t, "the writers to end", func() bool {
		h.writers.mu.Lock()
		defer h.writers.mu.Unlock()
		return len(h.writers.running) == 0 && h.writers.stuck == 0
	})
}

// A connection with an urgent frame goes to the front of the line; one
// with only broadcasts to the back.
func TestUrgentFramesGoFirst(t *testing.T) {
	h, _ := newTestHub(t, Config{})
	h.writers.mu.Lock()
	h.writers.max, h.writers.period = 1, time.Hour // one writer, never replaced
	h.writers.mu.Unlock()
	var mu sync.Mutex
	var order []string
	started, release := make(chan struct{}), make(chan struct{})
	first := h.Connect("first", "", false)
	first.ServeWrites(func([]Frame) error {
		close(started)
		<-release
		return nil
	})
	first.Enqueue(Frame{Data: []byte("x")})
	<-started // the one writer is busy: the rest wait in line

	recorded := func(name string) *Conn { // a connection whose writes note its name
		c := h.Connect(name, "", false)
		c.ServeWrites(func([]Frame) error {
			mu.Lock()
			order = append(order, name)
			mu.Unlock()
			return nil
		})
		return c
	}
	recorded("a").Enqueue(Frame{Data: []byte("broadcast")})
	recorded("b").Enqueue(Frame{Data: []byte("broadcast")})
	u := recorded("urgent")
	u.Enqueue(Frame{Data: []byte("broadcast")})
	u.EnqueueUrgent(Frame{Data: []byte("reply")}) // already in line: moves up at its next turn only
	recorded("urgent2").EnqueueUrgent(Frame{Data: []byte("reply")})
	recorded("c").Enqueue(Frame{Data: []byte("broadcast")})
	close(release)
	waitUntil(t, "every connection written", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(order) == 5
	})
	if want := []string{"urgent2", "a", "b", "urgent", "c"}; !slices.Equal(order, want) {
		t.Fatalf("written in the order %v, want %v", order, want)
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond) // polling a condition, with a deadline
	}
}
