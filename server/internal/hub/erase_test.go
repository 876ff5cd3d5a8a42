package hub

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/parleychat/parley/server/internal/store"
	"github.com/parleychat/parley/server/internal/store/memory"
)

// bodyEncode is testEncode with each entry's kind and body, so a test can
// look for a text in what a connection received.
func bodyEncode(ev Event) ([]byte, error) {
	if ev.Kind == EventMessage {
		return fmt.Appendf(nil, "%s %d %q", ev.Message.Kind, ev.Message.Seq, ev.Message.Body), nil
	}
	return testEncode(ev)
}

// After a delete, the deleted text is in no frame of the ring: a resume
// from any position gets every entry once, in order, and the text from
// neither the ring nor the store, while entries after the deleted
// message's last frame are still served from the ring.
func TestDeleteTakesTheTextOutOfTheRing(t *testing.T) {
	st := memory.New()
	ctx := context.Background()
	if _, err := st.CreateRoom(ctx, store.Room{Name: "r", Visibility: store.Public}); err != nil {
		t.Fatal(err)
	}
	h := New(Config{RecentMessages: 100}, st, bodyEncode, slog.New(slog.NewTextHandler(io.Discard, nil)))
	t.Cleanup(h.Close)
	// A member keeps the room, and its ring, loaded.
	member := h.Connect("m", "", true)
	if err := h.Join(ctx, member, "r", JoinOptions{}); err != nil {
		t.Fatal(err)
	}
	ringFrom := func() uint64 {
		r := member.joined("r")
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.recent[0].Seq
	}
	send := func(m store.NewMessage) uint64 {
		t.Helper()
		m.Room = "r"
		if m.Sender == "" {
			m.Sender = "alice"
		}
		got, _, err := h.Send(ctx, m)
		if err != nil {
			t.Fatal(err)
		}
		return got.Seq
	}
	for i := 1; i <= 5; i++ {
		send(store.NewMessage{Body: fmt.Sprint("text", i)})
	}
	send(store.NewMessage{Kind: store.KindEdit, TargetSeq: 3, Body: "secret edit"})      // 6
	send(store.NewMessage{Kind: store.KindReactionAdd, TargetSeq: 4, Emoji: "👍"})        // 7
	send(store.NewMessage{Body: "text8"})                                                // 8
	send(store.NewMessage{Kind: store.KindDelete, TargetSeq: 3})                         // 9
	send(store.NewMessage{Kind: store.KindEdit, TargetSeq: 1, Body: "after the delete"}) // 10
	if from := ringFrom(); from != 7 {
		t.Fatalf("ring starts at seq %d after the delete of 3 (last text frame 6), want 7", from)
	}
	for after := uint64(0); after <= 10; after++ {
		c := h.Connect("u", "", false)
		got := joinReplaying(t, h, c, "r", after)[1:]
		all := strings.Join(got, "\n")
		if strings.Contains(all, "text3") || strings.Contains(all, "secret edit") {
			t.Fatalf("after %d: the deleted text was delivered:\n%s", after, all)
		}
		for i, f := range got[:len(got)-1] {
			var kind string
			var seq uint64
			if _, err := fmt.Sscan(f, &kind, &seq); err != nil || seq != after+uint64(i)+1 {
				t.Fatalf("after %d: frame %d is %q, want seq %d", after, i, f, after+uint64(i)+1)
			}
		}
		if last := got[len(got)-1]; last != "replayed r 10" {
			t.Fatalf("after %d: last frame %q", after, last)
		}
		c.Close()
	}
	// A delete of a message no longer in the ring leaves the ring alone.
	send(store.NewMessage{Kind: store.KindDelete, TargetSeq: 2}) // 11
	if from := ringFrom(); from != 7 {
		t.Fatalf("ring starts at seq %d after a delete of a message outside it, want 7", from)
	}
}

// A no-op (a reaction added twice) is answered with seq 0 and delivers
// nothing; the room's head stays.
func TestNoopDeliversNothing(t *testing.T) {
	h, _ := newTestHub(t, Config{})
	ctx := context.Background()
	c := h.Connect("u", "", true)
	if err := h.Join(ctx, c, "r", JoinOptions{}); err != nil {
		t.Fatal(err)
	}
	drain(t, c)
	if _, _, err := h.Send(ctx, store.NewMessage{Room: "r", Sender: "a", Body: "x"}); err != nil {
		t.Fatal(err)
	}
	react := store.NewMessage{Room: "r", Kind: store.KindReactionAdd, Sender: "a", TargetSeq: 1, Emoji: "👍"}
	for i, want := range []uint64{2, 0} {
		m, dup, err := h.Send(ctx, react)
		if err != nil || m.Seq != want || dup != (want == 0) {
			t.Fatalf("reaction %d: seq %d duplicate %v err %v, want seq %d", i, m.Seq, dup, err, want)
		}
	}
	if got := fmt.Sprint(drain(t, c)); got != "[msg r 1 msg r 2]" {
		t.Fatalf("delivered %s", got)
	}
}
