package groupcommit

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"
)

// Requests queued before the writer looks are taken together, never more
// than maxBatch at a time, in order, and Close processes what is queued.
func TestBatchesInOrderUpToMax(t *testing.T) {
	q := New[int]("test", 4, time.Millisecond)
	for i := range 10 {
		if err := q.Put(context.Background(), i); err != nil {
			t.Fatal(err)
		}
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

// Answer leaves out and answers a request whose context has ended, and
// answers every live request with commit's error when commit fails.
func TestAnswer(t *testing.T) {
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	fail := errors.New("batch failed")
	var committed []int
	process := Answer(func(live []*Request[int, string]) error {
		committed = committed[:0]
		for _, r := range live {
			committed = append(committed, r.In)
			r.Out = "stored"
		}
		if live[0].In == 0 {
			return fail
		}
		return nil
	})
	for _, want := range []struct {
		err error
		out string
	}{{fail, ""}, {nil, "stored"}} {
		first := 0
		if want.err == nil {
			first = 1
		}
		reqs := []*Request[int, string]{
			NewRequest[int, string](context.Background(), first),
			NewRequest[int, string](ended, 7),
			NewRequest[int, string](context.Background(), 2),
		}
		process(slices.Clone(reqs))
		for _, r := range reqs {
			<-r.Done()
		}
		if len(committed) != 2 || committed[0] != first || committed[1] != 2 {
			t.Errorf("commit got %v, want [%d 2]", committed, first)
		}
		if !errors.Is(reqs[1].Err, context.Canceled) {
			t.Errorf("ended request got %v, want context.Canceled", reqs[1].Err)
		}
		for _, i := range []int{0, 2} {
			if r := reqs[i]; r.Err != want.err || r.Out != want.out {
				t.Errorf("request %d got %q, %v; want %q, %v", i, r.Out, r.Err, want.out, want.err)
			}
		}
	}
}
