package sqlite

import (
	"fmt"
	"reflect"
	"testing"
)

// The writer's memory of committed heads stays bounded, and starts again
// with a new map when full rather than clearing the one at its peak size.
func TestKnownHeadsBounded(t *testing.T) {
	b := newBatchState(newLedger(), defaultFlushAge)
	var full uintptr
	for i := range 3 * maxKnownHeads {
		clear(b.heads)
		b.heads[fmt.Sprint("room-", i)] = &head{exists: true, seq: 1}
		if len(b.known) > maxKnownHeads {
			full = reflect.ValueOf(b.known).Pointer()
		}
		b.committed()
		if len(b.known) > maxKnownHeads+1 {
			t.Fatalf("%d heads remembered, want at most %d", len(b.known), maxKnownHeads+1)
		}
		if full != 0 {
			if reflect.ValueOf(b.known).Pointer() == full {
				t.Fatal("the full map was cleared and kept, not replaced")
			}
			return
		}
	}
	t.Fatal("the map never filled")
}
