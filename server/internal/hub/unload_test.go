package hub

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/parleychat/parley/server/internal/store"
	"github.com/parleychat/parley/server/internal/store/memory"
)

// manyRooms is the memory store in which every room named "many-…" exists
// too, public and empty, without costing the store anything: the hub's
// memory can then be measured over a million rooms.
type manyRooms struct{ *memory.Store }

func (s manyRooms) Room(ctx context.Context, name string) (store.Room, error) {
	if strings.HasPrefix(name, "many-") {
		return store.Room{Name: name, Visibility: store.Public}, nil
	}
	return s.Store.Room(ctx, name)
}

func loadedRooms(h *Hub) int { return h.Stats().Rooms }

func heapInUse() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// Touching a million rooms — an access check, a presence read, a join and
// a leave each — leaves none loaded and the heap where it was: memory
// follows live rooms, not rooms ever touched.
func TestTouchedRoomsAreUnloaded(t *testing.T) {
	n := 1_000_000
	if raceEnabled || testing.Short() {
		n = 100_000 // the race detector makes each touch ~10x dearer
	}
	h := New(Config{}, manyRooms{memory.New()}, testEncode, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx := context.Background()
	before := heapInUse()
	for i := range n {
		name := fmt.Sprint("many-", i)
		if _, err := h.Room(ctx, name); err != nil {
			t.Fatal(err)
		}
		if _, _, err := h.Presence(ctx, name); err != nil {
			t.Fatal(err)
		}
		c := h.Connect("u", "", true)
		if err := h.Join(ctx, c, name, JoinOptions{}); err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	if got := loadedRooms(h); got != 0 {
		t.Fatalf("%d rooms still loaded after %d were touched", got, n)
	}
	after := heapInUse()
	if grew := int64(after) - int64(before); grew > 4<<20 {
		t.Fatalf("heap grew by %d KiB over %d touched rooms (before %d KiB, after %d KiB)", grew>>10, n, before>>10, after>>10)
	}
	t.Logf("%d rooms touched: heap in use %d -> %d KiB", n, before>>10, after>>10)
}

// A room stays loaded while a connection is in it, or a message sent to it
// is on its way to the store, and is unloaded when the last of them goes.
func TestRoomUnloadsWhenTheLastUserGoes(t *testing.T) {
	h, _ := newTestHub(t, Config{})
	ctx := context.Background()
	a, b := h.Connect("a", "", true), h.Connect("b", "", false)
	for _, c := range []*Conn{a, b} {
		if err := h.Join(ctx, c, "r", JoinOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.Leave(a, "r"); err != nil {
		t.Fatal(err)
	}
	if got := loadedRooms(h); got != 1 {
		t.Fatalf("%d rooms loaded with a subscriber in one, want 1", got)
	}
	wait := h.StartSend(ctx, store.NewMessage{Room: "r", Sender: "a", Body: "x"}, nil)
	b.Close()
	if got := loadedRooms(h); got != 1 {
		t.Fatalf("%d rooms loaded with a send in flight, want 1", got)
	}
	msg, _, err := wait()
	if err != nil {
		t.Fatal(err)
	}
	if got := loadedRooms(h); got != 0 {
		t.Fatalf("%d rooms loaded once everyone left and the send was delivered, want 0", got)
	}
	// Loaded again, the room starts from the store's head.
	c := h.Connect("c", "", false)
	if err := h.Join(ctx, c, "r", JoinOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, head, _ := h.Presence(ctx, "r"); head != msg.Seq {
		t.Fatalf("reloaded room's head %d, want %d", head, msg.Seq)
	}
}

// Joins and sends racing with the unloading of their room lose nothing:
// while one round's connections leave (emptying the room), the next
// round's join, and requests touch the room; every connection that joined
// receives the message sent after its join, and no room is left loaded.
func TestJoinAndSendRaceWithUnload(t *testing.T) {
	h, _ := newTestHub(t, Config{})
	ctx := context.Background()
	const rounds, joiners = 300, 3
	var prev []*Conn
	for round := range rounds {
		var wg sync.WaitGroup
		conns := make([]*Conn, joiners)
		for i := range conns {
			conns[i] = h.Connect(fmt.Sprint("u", i), "", true)
			wg.Add(2)
			go func() {
				defer wg.Done()
				if err := h.Join(ctx, conns[i], "r", JoinOptions{}); err != nil {
					t.Error(err)
				}
			}()
			go func() {
				defer wg.Done()
				if _, err := h.Room(ctx, "r"); err != nil {
					t.Error(err)
				}
			}()
		}
		for _, c := range prev {
			wg.Add(1)
			go func() { defer wg.Done(); c.Close() }()
		}
		wg.Wait()
		msg, _, err := h.Send(ctx, store.NewMessage{Room: "r", Sender: "s", Body: "b"})
		if err != nil {
			t.Fatal(err)
		}
		for i, c := range conns {
			frames, err := c.Next(nil)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.ContainsFunc(frames, func(f Frame) bool { return f.Seq == msg.Seq }) {
				t.Fatalf("round %d: connection %d did not get message %d", round, i, msg.Seq)
			}
		}
		prev = conns
	}
	for _, c := range prev {
		c.Close()
	}
	if got := loadedRooms(h); got != 0 {
		t.Fatalf("%d rooms loaded after everyone left", got)
	}
}

// A room's maps are made afresh once they fall far below their peak: after
// a crowd left, a room still in use does not keep the crowd's buckets.
func TestRoomMapsShrinkAfterACrowdLeaves(t *testing.T) {
	h, _ := newTestHub(t, Config{PresenceBatchMin: 1 << 20})
	ctx := context.Background()
	r, err := h.room(ctx, "r") // held: the room stays loaded however many leave
	if err != nil {
		t.Fatal(err)
	}
	defer r.release()
	var conns []*Conn
	for i := range 1000 {
		c := h.Connect(fmt.Sprint("u", i), "", true)
		if err := h.Join(ctx, c, "r", JoinOptions{}); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	mapOf := func() (subs, presence uintptr) {
		r.mu.Lock()
		defer r.mu.Unlock()
		return reflect.ValueOf(r.subs).Pointer(), reflect.ValueOf(r.presence).Pointer()
	}
	subs, presence := mapOf()
	for _, c := range conns {
		c.Close()
	}
	newSubs, newPresence := mapOf()
	if newSubs == subs || newPresence == presence {
		t.Fatalf("the emptied room kept its maps (subs kept %v, presence kept %v)", newSubs == subs, newPresence == presence)
	}
}

// A look-up that found a room just before it was unloaded does not use it:
// holding it fails, and the join goes to the room loaded afresh, which is
// the one later sends deliver to.
func TestStaleRoomCannotBeHeld(t *testing.T) {
	h, _ := newTestHub(t, Config{})
	ctx := context.Background()
	stale, err := h.room(ctx, "r")
	if err != nil {
		t.Fatal(err)
	}
	stale.release() // the last hold of an idle room: unloaded
	if stale.hold() {
		t.Fatal("an unloaded room could be held")
	}
	c := h.Connect("u", "", false)
	if err := h.Join(ctx, c, "r", JoinOptions{}); err != nil {
		t.Fatal(err)
	}
	if c.joined("r") == stale {
		t.Fatal("joined the unloaded room")
	}
	msg, _, err := h.Send(ctx, store.NewMessage{Room: "r", Sender: "s", Body: "b"})
	if err != nil {
		t.Fatal(err)
	}
	frames, err := c.Next(nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(frames, func(f Frame) bool { return f.Seq == msg.Seq }) {
		t.Fatalf("the joiner did not get message %d", msg.Seq)
	}
}
