package sqlstore

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/parleychat/parley/server/internal/store"
)

// Prune pages through every room and deletes each one's excess in steps of
// PruneChunk seqs, from its oldest message up to the newer of the count and
// age limits.
func TestPrunerWalksEveryRoomInSteps(t *testing.T) {
	var rooms []store.Room
	for i := range 1201 { // more than two pages
		rooms = append(rooms, store.Room{Name: fmt.Sprintf("r%04d", i), LastSeq: 2500})
	}
	type step struct {
		room        string
		after, upto uint64
	}
	var steps []step
	pr := Pruner{
		ListRooms: func(_ context.Context, after string, limit int) ([]store.Room, error) {
			i := 0
			for i < len(rooms) && rooms[i].Name <= after {
				i++
			}
			return rooms[i:min(i+limit, len(rooms))], nil
		},
		Bounds: func(_ context.Context, room string) (uint64, uint64, error) {
			if room == "r0001" {
				return 50, 2450, nil // oldest kept is 51; 2450 is too old
			}
			return 0, 0, nil
		},
		NewestMessage: func(_ context.Context, room string, n int) (uint64, error) {
			return 2500 - uint64(n-1), nil // every entry a message
		},
		Delete: func(_ context.Context, room string, after, upto uint64) (int64, error) {
			steps = append(steps, step{room, after, upto})
			return int64(upto - after), nil
		},
	}
	n, err := pr.Prune(context.Background(), store.Retention{MaxMessages: 100})
	if err != nil {
		t.Fatal(err)
	}
	if want := 1200*2400 + 2400; n != want {
		t.Errorf("Prune deleted %d, want %d", n, want)
	}
	if len(steps) != 1201*3 {
		t.Fatalf("%d steps, want 3 for each of 1201 rooms", len(steps))
	}
	want := []step{{"r0000", 0, 1000}, {"r0000", 1000, 2000}, {"r0000", 2000, 2400},
		{"r0001", 50, 1050}, {"r0001", 1050, 2050}, {"r0001", 2050, 2450}}
	if !slices.Equal(steps[:6], want) || steps[len(steps)-1] != (step{"r1200", 2000, 2400}) {
		t.Errorf("steps %v ... %v, want %v ... {r1200 2000 2400}", steps[:6], steps[len(steps)-1], want)
	}
	if n, err := pr.Prune(context.Background(), store.Retention{}); n != 0 || err != nil {
		t.Errorf("Prune without limits = %d, %v; want 0, nil", n, err)
	}
}
