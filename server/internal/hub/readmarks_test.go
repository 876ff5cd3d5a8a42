package hub

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parleychat/parley/server/internal/store"
	"github.com/parleychat/parley/server/internal/store/memory"
)

// markStore is a memory store that records each SetReadMarkers batch, and
// can hold batches (gate) or refuse them (fail).
type markStore struct {
	*memory.Store
	mu      sync.Mutex
	batches []int
	fail    int           // batches still to refuse
	gate    chan struct{} // when set, a batch waits for it to close
}

var errRefused = errors.New("store refused the batch")

func (s *markStore) SetReadMarkers(ctx context.Context, ms []store.ReadMarker) ([]store.ReadMarker, error) {
	s.mu.Lock()
	gate := s.gate
	if s.fail > 0 {
		s.fail--
		s.mu.Unlock()
		return nil, errRefused
	}
	s.batches = append(s.batches, len(ms))
	s.mu.Unlock()
	if gate != nil {
		<-gate
	}
	return s.Store.SetReadMarkers(ctx, ms)
}

func (s *markStore) batchSizes() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int(nil), s.batches...)
}

// newMarkHub is a hub over a markStore holding public rooms r0..r(n-1),
// each with head 10.
func newMarkHub(t *testing.T, cfg Config, rooms int) (*Hub, *markStore) {
	t.Helper()
	st := &markStore{Store: memory.New()}
	ctx := context.Background()
	for i := range rooms {
		name := fmt.Sprint("r", i)
		if _, err := st.CreateRoom(ctx, store.Room{Name: name, Visibility: store.Public}); err != nil {
			t.Fatal(err)
		}
		for range 10 {
			if _, _, err := st.Append(ctx, store.NewMessage{Room: name, Sender: "w", Body: "x"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	h := New(cfg, st, testEncode, slog.New(slog.NewTextHandler(io.Discard, nil)))
	t.Cleanup(h.Close)
	return h, st
}

func storedSeq(t *testing.T, st store.Store, user, room string) uint64 {
	t.Helper()
	rs, err := st.ReadState(context.Background(), user, room)
	if err != nil {
		t.Fatal(err)
	}
	return rs.LastReadSeq
}

// waitHub polls cond until it holds, failing after a few seconds.
func waitHub(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond) // polling interval
	}
}

// A flood of marks on one (user, room) is one pending marker, the newest,
// and one marker in one batch: nothing reaches the store per mark.
func TestMarkReadCoalesces(t *testing.T) {
	h, st := newMarkHub(t, Config{ReadMarkFlush: time.Hour}, 1)
	ctx := context.Background()
	for seq := range uint64(10) {
		for range 1000 {
			if err := h.MarkRead(ctx, "ann", "r0", ReadMark{Seq: seq + 1}, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := h.MarkRead(ctx, "ann", "r0", ReadMark{Seq: 3}, nil); err != nil { // lower: ignored
		t.Fatal(err)
	}
	if p, ok := h.PendingRead("ann", "r0"); !ok || p.Seq != 10 {
		t.Fatalf("pending %+v %v, want seq 10", p, ok)
	}
	if n := h.Stats().PendingReadMarks; n != 1 {
		t.Fatalf("%d pending markers, want 1", n)
	}
	if got := storedSeq(t, st, "ann", "r0"); got != 0 {
		t.Fatalf("stored before the flush: %d", got)
	}
	if err := h.FlushReadMarks(ctx); err != nil {
		t.Fatal(err)
	}
	if got := storedSeq(t, st, "ann", "r0"); got != 10 {
		t.Fatalf("stored %d, want 10", got)
	}
	if b := st.batchSizes(); len(b) != 1 || b[0] != 1 {
		t.Fatalf("batches %v, want one of one marker", b)
	}
	if _, ok := h.PendingRead("ann", "r0"); ok {
		t.Fatal("still pending after the flush")
	}
}

// The flush timer stores what is pending within ReadMarkFlush, all in one
// batch, without anyone asking.
func TestMarkReadFlushesOnItsOwn(t *testing.T) {
	h, st := newMarkHub(t, Config{ReadMarkFlush: 20 * time.Millisecond}, 3)
	ctx := context.Background()
	for i := range 3 {
		if err := h.MarkRead(ctx, "ann", fmt.Sprint("r", i), ReadMark{Seq: uint64(i + 1)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	waitHub(t, "the flush", func() bool { return storedSeq(t, st, "ann", "r2") == 3 })
	if b := st.batchSizes(); len(b) != 1 || b[0] != 3 {
		t.Fatalf("batches %v, want one of 3", b)
	}
}

// Pending markers are bounded: past a quarter of the cap a flush comes at
// once; at the cap a mark waits for a flush, and gives up when its
// context ends rather than growing the map.
func TestMarkReadIsBounded(t *testing.T) {
	h, st := newMarkHub(t, Config{ReadMarkFlush: time.Hour, MaxPendingReadMarks: 8}, 1)
	ctx := context.Background()
	for i := range 100 {
		if err := h.MarkRead(ctx, fmt.Sprint("u", i), "r0", ReadMark{Seq: 5}, nil); err != nil {
			t.Fatal(err)
		}
		if n := h.Stats().PendingReadMarks; n > 16 {
			t.Fatalf("%d markers pending or being stored, want at most the cap (8) and a batch", n)
		}
	}
	waitHub(t, "every marker stored", func() bool { return storedSeq(t, st, "u99", "r0") == 5 && h.Stats().PendingReadMarks == 0 })
	for _, b := range st.batchSizes() {
		if b > 8 {
			t.Fatalf("a batch of %d markers, cap 8", b)
		}
	}
	for i := range 100 {
		if got := storedSeq(t, st, fmt.Sprint("u", i), "r0"); got != 5 {
			t.Fatalf("u%d: stored %d", i, got)
		}
	}

	// A store that holds every batch: the map fills and a mark waits.
	st.mu.Lock()
	st.gate = make(chan struct{})
	st.mu.Unlock()
	for i := range 8 {
		if err := h.MarkRead(ctx, fmt.Sprint("v", i), "r0", ReadMark{Seq: 1}, nil); err != nil {
			t.Fatal(err)
		}
	}
	waitHub(t, "a held batch", func() bool { return len(st.batchSizes()) > 0 && h.Stats().PendingReadMarks <= 8 })
	for i := 8; i < 16; i++ {
		short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		err := h.MarkRead(short, fmt.Sprint("v", i), "r0", ReadMark{Seq: 1}, nil)
		cancel()
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			t.Fatal(err)
		}
		if n := h.Stats().PendingReadMarks; n > 16 {
			t.Fatalf("%d markers held, want at most the cap plus a batch being stored", n)
		}
	}
	close(st.gate)
}

// A batch the store refuses is kept and stored by a later flush, under
// the newer markers marked meanwhile.
func TestMarkReadRetriesARefusedBatch(t *testing.T) {
	h, st := newMarkHub(t, Config{ReadMarkFlush: time.Hour}, 1)
	ctx := context.Background()
	st.fail = 1
	if err := h.MarkRead(ctx, "ann", "r0", ReadMark{Seq: 4}, nil); err != nil {
		t.Fatal(err)
	}
	if err := h.FlushReadMarks(ctx); !errors.Is(err, errRefused) {
		t.Fatalf("flush: %v, want the store's refusal", err)
	}
	if p, ok := h.PendingRead("ann", "r0"); !ok || p.Seq != 4 {
		t.Fatalf("after a refused flush: pending %+v %v", p, ok)
	}
	if err := h.MarkRead(ctx, "ann", "r0", ReadMark{Seq: 6}, nil); err != nil {
		t.Fatal(err)
	}
	if err := h.FlushReadMarks(ctx); err != nil {
		t.Fatal(err)
	}
	if got := storedSeq(t, st, "ann", "r0"); got != 6 {
		t.Fatalf("stored %d, want 6", got)
	}
}

// Close stores what is pending: a graceful shutdown loses no marker.
func TestCloseFlushesReadMarks(t *testing.T) {
	h, st := newMarkHub(t, Config{ReadMarkFlush: time.Hour}, 1)
	if err := h.MarkRead(context.Background(), "ann", "r0", ReadMark{Seq: 7}, nil); err != nil {
		t.Fatal(err)
	}
	h.Close()
	if got := storedSeq(t, st, "ann", "r0"); got != 7 {
		t.Fatalf("stored %d after Close, want 7", got)
	}
}

// A stored marker goes to every Join connection of its user, once per
// flush, with the counts it was marked with, but the one it was marked on
// (its answer told it); not to Subscribe connections nor to other users.
func TestReadMarkerEventGoesToTheUsersJoinConnections(t *testing.T) {
	h, _ := newMarkHub(t, Config{ReadMarkFlush: time.Hour, ReceiptsMaxMembers: -1}, 1)
	ctx := context.Background()
	a1, a2, a3 := h.Connect("ann", "", true), h.Connect("ann", "", true), h.Connect("ann", "", true)
	sub, bob := h.Connect("ann", "", false), h.Connect("bob", "", true)
	for range 50 {
		if err := h.MarkRead(ctx, "ann", "r0", ReadMark{Seq: 9, Unread: 1, HeadSeq: 10}, a3); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.FlushReadMarks(ctx); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("event %d r0", EventReadMarker)
	for _, c := range []*Conn{a1, a2} {
		if got := strings.Join(drain(t, c), ","); got != want {
			t.Fatalf("ann's Join connection got %q, want %q", got, want)
		}
	}
	for _, c := range []*Conn{a3, sub, bob} {
		if n := c.QueuedBytes(); n != 0 {
			t.Fatalf("connection %s of %s (tracked %v) got %d bytes", c.ID, c.User, c.tracked, n)
		}
	}
	a2.Close()
	a3.Close()
	h.connsMu.Lock()
	n := len(h.userConns["ann"])
	h.connsMu.Unlock()
	if n != 1 {
		t.Fatalf("%d connections of ann indexed after two of three closed, want 1", n)
	}
	a1.Close()
	h.connsMu.Lock()
	_, left := h.userConns["ann"]
	h.connsMu.Unlock()
	if left {
		t.Fatal("a user without connections stays in the index")
	}
}

// Receipts are coalesced per room: the first move goes at once; moves
// during the window wait, the newest of each reader only, and go
// together, in one event, at its end; the reader's own connection gets
// none that holds only its own.
func TestReceiptsAreCoalescedPerRoom(t *testing.T) {
	h, _ := newMarkHub(t, Config{ReadMarkFlush: time.Hour, ReceiptInterval: 50 * time.Millisecond}, 1)
	ctx := context.Background()
	watcher, ann := h.Connect("watch", "", true), h.Connect("ann", "", true)
	for _, c := range []*Conn{watcher, ann} {
		if err := h.Join(ctx, c, "r0", JoinOptions{}); err != nil {
			t.Fatal(err)
		}
		drain(t, c) // joined
	}
	drain(t, watcher) // ann's arrival
	mark := func(user string, seq uint64) {
		t.Helper()
		if err := h.MarkRead(ctx, user, "r0", ReadMark{Seq: seq, HeadSeq: 10}, nil); err != nil {
			t.Fatal(err)
		}
		if err := h.FlushReadMarks(ctx); err != nil {
			t.Fatal(err)
		}
	}
	mark("ann", 1)
	if got := drain(t, watcher); !slices.Equal(got, []string{"receipts r0 ann@1"}) {
		t.Fatalf("the first move: %q, want ann's receipt at once", got)
	}
	start := time.Now()
	mark("ann", 2)
	mark("bob", 3)
	mark("ann", 4)
	got := drain(t, watcher)
	if waited := time.Since(start); !slices.Equal(got, []string{"receipts r0 ann@4 bob@3"}) || waited < 40*time.Millisecond {
		t.Fatalf("moves in the window: %q after %v, want one event with ann's newest and bob's at its end", got, waited)
	}
	// ann's connection: her three markers and the window's receipts; not
	// the first, which held only hers. The window's may reach her after
	// the watcher has his: read until it comes (closing the connection
	// ends the wait if it never does).
	stop := time.AfterFunc(10*time.Second, ann.Close)
	defer stop.Stop()
	var own []string
	for len(own) == 0 {
		own = slices.DeleteFunc(drain(t, ann), func(f string) bool { return !strings.HasPrefix(f, "receipts ") })
	}
	if !slices.Equal(own, []string{"receipts r0 ann@4 bob@3"}) {
		t.Fatalf("the reader's own connection got receipts %q, want only the window's", own)
	}
}

// Receipt windows that open together, at one flush, end apart: each
// lasts the interval and a random part of up to a quarter of it. With
// windows of one length, rooms whose readers mark at the same rate send
// their receipts at the same instant window after window, a burst that
// held up the messages delivered beside it.
func TestReceiptWindowsOpenedTogetherEndApart(t *testing.T) {
	const rooms, interval = 40, 800 * time.Millisecond
	h, _ := newMarkHub(t, Config{ReadMarkFlush: time.Hour, ReceiptInterval: interval}, rooms)
	ctx := context.Background()
	watcher := h.Connect("watch", "", true)
	for i := range rooms {
		if err := h.Join(ctx, watcher, fmt.Sprint("r", i), JoinOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	markAll := func(seq uint64) {
		t.Helper()
		for i := range rooms {
			if err := h.MarkRead(ctx, "ann", fmt.Sprint("r", i), ReadMark{Seq: seq, HeadSeq: 10}, nil); err != nil {
				t.Fatal(err)
			}
		}
		if err := h.FlushReadMarks(ctx); err != nil {
			t.Fatal(err)
		}
	}
	stop := time.AfterFunc(10*time.Second, watcher.Close) // ends a wait for receipts that never come
	defer stop.Stop()
	receipts := func(want string) []time.Time {
		t.Helper()
		var at []time.Time
		for len(at) < rooms {
			for _, f := range drain(t, watcher) {
				if strings.HasPrefix(f, "receipts ") {
					if !strings.HasSuffix(f, want) {
						t.Fatalf("got %q, want receipts of %s", f, want)
					}
					at = append(at, time.Now())
				}
			}
		}
		return at
	}
	opened := time.Now() // no window opens before
	markAll(1)
	receipts("ann@1") // the first move of each room goes at once and opens its window
	markAll(2)
	ends := receipts("ann@2")
	first, last := slices.MinFunc(ends, time.Time.Compare), slices.MaxFunc(ends, time.Time.Compare)
	if early := first.Sub(opened); early < interval {
		t.Errorf("a window ended %v after the flush that opened it; want at least the interval, %v", early, interval)
	}
	// 40 draws from [0, 200 ms] lie within 100 ms of each other with a
	// chance of about 40/2^39.
	if spread := last.Sub(first); spread < interval/8 {
		t.Errorf("the %d windows ended within %v of each other; want them spread over up to %v", rooms, spread, interval/4)
	}
}
