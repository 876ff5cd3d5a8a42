package groupcommit

import (
	"testing"
	"time"
)

// Requests queued before the writer looks are taken together, never more
// than maxBatch at a time, in order, and Close processes what is queued.
func TestBatchesInOrderUpToMax(t *testing.T) {
	q := New[int]("test", 4, time.Millisecond)
	for i := range 10 {
		q.Requests() <- i
	}
	var sizes, got []int
	done := make(chan struct{})
	go func() {
		defer close(done)
		q.Run(func(batch []int) {
			sizes = append(sizes, len(batch))
			got = append(got, batch...)
		})
	}()
	q.Close()
	<-done
	for i, v := range got {
		if v != i {
			t.Fatalf("request %d processed as %d: %v", i, v, got)
		}
	}
	if len(got) != 10 || sizes[0] != 4 || sizes[1] != 4 || sizes[2] != 2 {
		t.Fatalf("batch sizes %v for 10 queued requests with maxBatch 4", sizes)
	}
}
