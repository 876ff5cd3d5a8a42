package api

import (
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/parleychat/parley/server/internal/hub"
	"github.com/parleychat/parley/server/internal/store/memory"
)

// forwarded records what a typingLimiter forwards.
type forwarded struct {
	mu     sync.Mutex
	states []bool
	conns  []*hub.Conn
}

func (f *forwarded) forward(c *hub.Conn, _ string, active bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.states = append(f.states, active)
	f.conns = append(f.conns, c)
	return nil
}

func (f *forwarded) get() []bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.states)
}

func (f *forwarded) waitFor(t *testing.T, want []bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !slices.Equal(f.get(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("forwarded %v, want %v", f.get(), want)
		}
		time.Sleep(time.Millisecond) // polling interval
	}
}

// The typing limiter forwards a change at once when the user's window in
// the room is closed, holds the latest change while it is open, and ends
// with the user's last state: never a held change that repeats the state
// last forwarded.
func TestTypingLimiterCoalesces(t *testing.T) {
	h := hub.New(hub.Config{}, memory.New(), nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	phone, laptop := h.Connect("ann", "phone", false), h.Connect("ann", "laptop", false)
	other := h.Connect("ben", "", false)
	const interval = 100 * time.Millisecond
	var f forwarded
	l := newTypingLimiter(interval, f.forward)
	defer l.stop()

	// A flood: the first change goes at once, the last at the window's end.
	for i := range 1000 {
		_ = l.typing(phone, "r", i%2 == 0)
	}
	_ = l.typing(laptop, "r", true) // the user's latest, from another device
	f.waitFor(t, []bool{true})
	if got := f.get(); len(got) != 1 {
		t.Fatalf("forwarded %v during the window", got)
	}
	// The held change repeats the state forwarded: nothing more is sent,
	// and the window closes.
	waitWindowClosed(t, l)
	if got := f.get(); len(got) != 1 {
		t.Fatalf("a repeat of the forwarded state was forwarded: %v", got)
	}

	// active, then inactive inside the window: inactive follows.
	_ = l.typing(phone, "r", true)
	_ = l.typing(phone, "r", false)
	f.waitFor(t, []bool{true, true, false})
	if f.conns[2] != phone {
		t.Fatal("the held change was forwarded from another connection")
	}
	// Other users and other rooms have windows of their own.
	_ = l.typing(other, "r", true)
	_ = l.typing(phone, "s", true)
	f.waitFor(t, []bool{true, true, false, true, true})
	waitWindowClosed(t, l)
}

func waitWindowClosed(t *testing.T, l *typingLimiter) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		l.mu.Lock()
		n := len(l.keys)
		l.mu.Unlock()
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d typing windows still open", n)
		}
		time.Sleep(time.Millisecond) // polling interval
	}
}
