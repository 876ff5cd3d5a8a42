package storetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/parleychat/parley/server/internal/store"
)

// testPrune: retention by count keeps each room's newest messages, by age
// removes the old ones; heads stay and new seqs continue from them.
func testPrune(t *testing.T, s store.Store) {
	ctx := context.Background()
	for _, name := range []string{"keep-few", "short"} {
		if _, err := s.CreateRoom(ctx, store.Room{Name: name, Visibility: store.Public, CreatedBy: "t"}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 2500 {
		if _, _, err := s.Append(ctx, store.NewMessage{Room: "keep-few", Sender: "s", Body: "m", ClientMsgID: idFor(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := s.Append(ctx, store.NewMessage{Room: "short", Sender: "s", Body: "m"}); err != nil {
		t.Fatal(err)
	}
	n, err := s.Prune(ctx, store.Retention{MaxMessages: 10})
	if err != nil || n != 2490 {
		t.Fatalf("Prune by count deleted %d (%v), want 2490", n, err)
	}
	msgs, err := s.Messages(ctx, "keep-few", store.Query{Limit: 100})
	if err != nil || len(msgs) != 10 || msgs[0].Seq != 2491 || msgs[9].Seq != 2500 {
		t.Fatalf("after pruning to 10: %d messages from seq %v (%v)", len(msgs), msgs, err)
	}
	if r, _ := s.Room(ctx, "keep-few"); r.LastSeq != 2500 {
		t.Fatalf("head moved to %d", r.LastSeq)
	}
	// A retry of a kept message (seq 2500) still finds it.
	if m, dup, err := s.Append(ctx, store.NewMessage{Room: "keep-few", Sender: "s", Body: "m", ClientMsgID: idFor(2499)}); err != nil || !dup || m.Seq != 2500 {
		t.Fatalf("retry of a kept message: seq %d dup %v (%v)", m.Seq, dup, err)
	}
	if n, err := s.Prune(ctx, store.Retention{MaxMessages: 10}); err != nil || n != 0 {
		t.Fatalf("second Prune deleted %d (%v), want 0", n, err)
	}
	if n, err := s.Prune(ctx, store.Retention{MaxAge: time.Hour}); err != nil || n != 0 {
		t.Fatalf("Prune of messages older than an hour deleted %d (%v), want 0", n, err)
	}
	if n, err := s.Prune(ctx, store.Retention{MaxAge: time.Nanosecond}); err != nil || n != 11 {
		t.Fatalf("Prune by age deleted %d (%v), want all 11 left", n, err)
	}
	next, _, err := s.Append(ctx, store.NewMessage{Room: "short", Sender: "s", Body: "after"})
	if err != nil || next.Seq != 2 {
		t.Fatalf("append after pruning everything got seq %d (%v), want 2", next.Seq, err)
	}
}

func idFor(i int) string { return fmt.Sprint("id-", i) }
