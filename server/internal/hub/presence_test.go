package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/parleychat/parley/server/internal/store"
	"github.com/parleychat/parley/server/internal/store/memory"
)

// view is one connection's idea of a room's presence, built only from the
// frames it received: the joined state, then every diff. It fails the test
// on a join of a connection it already knows or a leave of one it does not.
type view struct {
	t      *testing.T
	name   string
	conns  map[string]string // conn ID -> user
	diffs  int
	online int // the online count of the last state or diff
}

func (v *view) apply(data []byte) {
	var ev Event
	if err := json.Unmarshal(data, &ev); err != nil {
		v.t.Fatalf("%s: frame %q: %v", v.name, data, err)
	}
	switch ev.Kind {
	case EventJoined:
		v.online = ev.OnlineCount
		v.conns = map[string]string{}
		for _, p := range ev.Presence {
			for _, m := range p.Metas {
				v.conns[m.ConnID] = p.User
			}
		}
	case EventPresenceDiff:
		v.diffs++
		v.online = ev.OnlineCount
		for _, p := range ev.Joins {
			for _, m := range p.Metas {
				if _, ok := v.conns[m.ConnID]; ok {
					v.t.Errorf("%s: told twice that %s joined", v.name, m.ConnID)
				}
				v.conns[m.ConnID] = p.User
			}
		}
		for _, p := range ev.Leaves {
			for _, m := range p.Metas {
				if _, ok := v.conns[m.ConnID]; !ok {
					v.t.Errorf("%s: told that %s left, never told it joined", v.name, m.ConnID)
				}
				delete(v.conns, m.ConnID)
			}
		}
	}
}

// A crowd joining a large room: presence changes are announced together,
// a few diffs instead of one per join for every member, and every member's
// view — joined state plus diffs — still ends up exactly the room's
// presence: nobody is announced twice, missed, or left behind (a member
// that left before its join was announced is never announced at all).
func TestPresenceBatchedInLargeRooms(t *testing.T) {
	st := memory.New()
	if _, err := st.CreateRoom(context.Background(), store.Room{Name: "r", Visibility: store.Public}); err != nil {
		t.Fatal(err)
	}
	encode := func(ev Event) ([]byte, error) { return json.Marshal(ev) }
	h := New(Config{PresenceBatchMin: 3, PresenceBatchWindow: 200 * time.Millisecond}, st, encode, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx := context.Background()
	const n = 20
	var conns []*Conn
	for i := range n {
		c := h.Connect(fmt.Sprint("user-", i%7), "", true)
		if err := h.Join(ctx, c, "r", JoinOptions{}); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	// Two leave: one long announced, one whose join is probably still waiting.
	for _, i := range []int{1, n - 1} {
		if err := h.Leave(conns[i], "r"); err != nil {
			t.Fatal(err)
		}
	}
	r, _ := h.room(ctx, "r")
	views := map[*Conn]*view{}
	for i, c := range conns {
		if i != 1 && i != n-1 {
			views[c] = &view{t: t, name: fmt.Sprint("conn ", i)}
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		presence, _ := r.snapshot()
		want := map[string]string{}
		for _, p := range presence {
			for _, m := range p.Metas {
				want[m.ConnID] = p.User
			}
		}
		if len(want) != n-2 {
			t.Fatalf("room presence has %d connections, want %d", len(want), n-2)
		}
		done := true
		for c, v := range views {
			for c.QueuedBytes() > 0 {
				frames, err := c.Next(nil)
				if err != nil {
					t.Fatal(err)
				}
				for _, f := range frames {
					v.apply(f.Data)
				}
			}
			if !maps.Equal(v.conns, want) {
				done = false
			}
		}
		if done {
			break
		}
		if time.Now().After(deadline) {
			for _, v := range views {
				if !maps.Equal(v.conns, want) {
					t.Fatalf("%s sees %v, room has %v", v.name, slices.Sorted(maps.Keys(v.conns)), slices.Sorted(maps.Keys(want)))
				}
			}
		}
		time.Sleep(10 * time.Millisecond) // polling the views, not synchronising
	}
	// The first member saw 2 joins at once (the room was small), then the
	// rest batched: with a diff per change it would have seen n+1.
	if d := views[conns[0]].diffs; d > 6 {
		t.Errorf("first member got %d presence diffs for %d changes; want them batched", d, n+1)
	}
	t.Logf("first member: %d presence diffs for %d joins and 2 leaves", views[conns[0]].diffs, n-1)
}

// A joiner cut off while joining (its frames do not fit its queue, which
// holds a backlog from another room) never joined: it must not stay in the
// room's presence, nor be announced — in a small room and in a batching one.
func TestCutJoinerLeavesNoGhost(t *testing.T) {
	for _, batchMin := range []int{100, 1} {
		t.Run(fmt.Sprint("PresenceBatchMin=", batchMin), func(t *testing.T) {
			st := memory.New()
			for _, name := range []string{"r", "busy"} {
				if _, err := st.CreateRoom(context.Background(), store.Room{Name: name, Visibility: store.Public}); err != nil {
					t.Fatal(err)
				}
			}
			encode := func(ev Event) ([]byte, error) { return json.Marshal(ev) }
			h := New(Config{MaxQueueBytes: 1 << 16, PresenceBatchMin: batchMin, PresenceBatchWindow: time.Millisecond},
				st, encode, slog.New(slog.NewTextHandler(io.Discard, nil)))
			ctx := context.Background()
			join := func(user string, opts JoinOptions) (*Conn, error) {
				c := h.Connect(user, "", true)
				return c, h.Join(ctx, c, "r", opts)
			}
			first, err := join("first", JoinOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := join("second", JoinOptions{}); err != nil {
				t.Fatal(err)
			}
			// "cut" is behind in another room: more than half its queue is
			// waiting when it joins r, and its ack (counted as half the
			// queue, like any frame as large) does not fit.
			cut := h.Connect("cut", "", true)
			if err := h.Join(ctx, cut, "busy", JoinOptions{}); err != nil {
				t.Fatal(err)
			}
			for cut.QueuedBytes() <= 1<<15 {
				if _, _, err := h.Send(ctx, store.NewMessage{Room: "busy", Sender: "s", Body: strings.Repeat("x", 4000)}); err != nil {
					t.Fatal(err)
				}
			}
			err = h.Join(ctx, cut, "r", JoinOptions{Ack: make([]byte, 1<<16+1)})
			if !errors.Is(err, ErrSlowConsumer) {
				t.Fatalf("join with a backlog and an ack larger than the queue: %v, want ErrSlowConsumer", err)
			}
			if _, err := join("third", JoinOptions{}); err != nil {
				t.Fatal(err)
			}
			r, _ := h.room(ctx, "r")
			presence, _ := r.snapshot()
			for _, p := range presence {
				if p.User == cut.User {
					t.Fatalf("%s was cut off while joining but stays in the presence", cut.User)
				}
			}
			v := &view{t: t, name: "first"}
			deadline := time.Now().Add(5 * time.Second)
			for len(v.conns) < 3 {
				if time.Now().After(deadline) {
					t.Fatalf("first sees %d connections after 5 s, want 3", len(v.conns))
				}
				if first.QueuedBytes() == 0 {
					time.Sleep(time.Millisecond) // polling for the batched diff, not synchronising
					continue
				}
				frames, err := first.Next(nil)
				if err != nil {
					t.Fatal(err)
				}
				for _, f := range frames {
					v.apply(f.Data)
				}
			}
			if _, seen := v.conns[cut.ID]; seen {
				t.Errorf("%s was cut off while joining but was announced", cut.User)
			}
		})
	}
}

// Joiners of a large room between two diffs get one shared encoding of
// the joined state, not one O(n) encoding each; a message (the head moves)
// or a sent diff makes the next joiner's state anew.
func TestJoinedStateSharedBetweenDiffs(t *testing.T) {
	st := memory.New()
	ctx := context.Background()
	if _, err := st.CreateRoom(ctx, store.Room{Name: "r", Visibility: store.Public}); err != nil {
		t.Fatal(err)
	}
	var states int
	encode := func(ev Event) ([]byte, error) {
		if ev.Kind == EventJoined {
			states++ // under the room's lock
		}
		return json.Marshal(ev)
	}
	h := New(Config{PresenceBatchMin: 3, PresenceBatchWindow: time.Hour}, st, encode, slog.New(slog.NewTextHandler(io.Discard, nil)))
	join := func(name string) *Conn {
		c := h.Connect(name, "", true)
		if err := h.Join(ctx, c, "r", JoinOptions{}); err != nil {
			t.Fatal(err)
		}
		return c
	}
	for i := range 3 { // a small room: each joiner's state is its own
		join(fmt.Sprint("small-", i))
	}
	if states != 3 {
		t.Fatalf("3 joiners of a small room: %d states encoded, want 3", states)
	}
	var crowd []*Conn
	for i := range 40 { // the room now batches, and no diff goes out within the hour
		crowd = append(crowd, join(fmt.Sprint("crowd-", i)))
	}
	if states != 4 {
		t.Fatalf("40 joiners between two diffs: %d states encoded, want 1 more", states-3)
	}
	stateOf := func(c *Conn) []byte {
		frames, err := c.Next(nil)
		if err != nil {
			t.Fatal(err)
		}
		return frames[len(frames)-1].Data
	}
	first := stateOf(crowd[0])
	var ev Event
	if err := json.Unmarshal(first, &ev); err != nil || ev.Kind != EventJoined || len(ev.Presence) != 3 {
		t.Fatalf("crowd's joined state %s (%v): want the 3 announced users", first, err)
	}
	if last := stateOf(crowd[len(crowd)-1]); string(last) != string(first) {
		t.Fatalf("joiners between two diffs got different states:\n%s\n%s", first, last)
	}
	if _, _, err := h.Send(ctx, store.NewMessage{Room: "r", Sender: "s", Body: "b"}); err != nil {
		t.Fatal(err)
	}
	join("after-message")
	if states != 5 {
		t.Fatalf("a joiner after a message: %d states encoded in all, want 5", states)
	}
	r, _ := h.room(ctx, "r")
	r.flushDiffs() // what the window's timer does
	late := join("after-diff")
	if states != 6 {
		t.Fatalf("a joiner after a diff: %d states encoded in all, want 6", states)
	}
	if err := json.Unmarshal(stateOf(late), &ev); err != nil || len(ev.Presence) != 3+40+1 {
		t.Fatalf("state after the diff holds %d users (%v), want the 44 announced", len(ev.Presence), err)
	}
}

// A joined state larger than the joiner's whole queue — a room with tens of
// thousands of connections — does not cut the joiner off: one frame counts
// for at most half the queue, so a joiner without a backlog receives it,
// and the messages right after it, before its writer has taken anything.
// (The members, whose queues nobody drains here, fall behind for real.)
func TestJoinedStateLargerThanQueue(t *testing.T) {
	st := memory.New()
	ctx := context.Background()
	if _, err := st.CreateRoom(ctx, store.Room{Name: "r", Visibility: store.Public}); err != nil {
		t.Fatal(err)
	}
	encode := func(ev Event) ([]byte, error) { return json.Marshal(ev) }
	const queue = 4096
	// 61 users, all in the state: a room under the paging threshold.
	h := New(Config{MaxQueueBytes: queue, PresencePageThreshold: 100}, st, encode, slog.New(slog.NewTextHandler(io.Discard, nil)))
	for i := range 60 {
		c := h.Connect(fmt.Sprint("member-", i), "", true)
		if err := h.Join(ctx, c, "r", JoinOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	joiner := h.Connect("joiner", "", true)
	if err := h.Join(ctx, joiner, "r", JoinOptions{Ack: []byte("ack")}); err != nil {
		t.Fatalf("join of a room whose state exceeds the queue: %v", err)
	}
	for range 3 {
		if _, _, err := h.Send(ctx, store.NewMessage{Room: "r", Sender: "s", Body: "hello"}); err != nil {
			t.Fatal(err)
		}
	}
	frames, err := joiner.Next(nil)
	if err != nil {
		t.Fatalf("joiner: %v", err)
	}
	if len(frames) != 5 {
		t.Fatalf("joiner got %d frames, want the ack, the state and 3 messages", len(frames))
	}
	var ev Event
	if err := json.Unmarshal(frames[1].Data, &ev); err != nil || ev.Kind != EventJoined {
		t.Fatalf("second frame %.60q: %v", frames[1].Data, err)
	}
	if len(frames[1].Data) <= queue || len(ev.Presence) != 61 {
		t.Fatalf("state of %d bytes with %d users: want more than the %d-byte queue, all 61 users", len(frames[1].Data), len(ev.Presence), queue)
	}
	if err := joiner.Err(); err != nil {
		t.Fatalf("joiner ended: %v", err)
	}
}
