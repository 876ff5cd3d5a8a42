package sqlite

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"testing"

	"github.com/parleychat/parley/server/internal/store"
)

// The read pool's queries are prepared on first use and reused after:
// reading the same things again prepares nothing.
func TestReadsArePreparedOnce(t *testing.T) {
	s := openInternal(t)
	ctx := context.Background()
	if _, _, err := s.Append(ctx, store.NewMessage{Room: "a", Sender: "ann", Body: "hi @bob"}); err != nil {
		t.Fatal(err)
	}
	read := func() {
		t.Helper()
		if page, err := s.History(ctx, "a", "bob", store.Query{Limit: 10}); err != nil || len(page) != 1 {
			t.Fatalf("History: %v, %v", page, err)
		}
		if _, err := s.Room(ctx, "a"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.ReadState(ctx, "bob", "a"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Messages(ctx, "b", store.Query{Limit: 10}); err != nil {
			t.Fatal(err)
		}
	}
	read()
	s.reads.mu.RLock()
	first := maps.Clone(s.reads.m)
	s.reads.mu.RUnlock()
	if len(first) < 5 {
		t.Fatalf("%d statements prepared by a round of reads, want one a query (at least 5)", len(first))
	}
	read()
	s.reads.mu.RLock()
	defer s.reads.mu.RUnlock()
	if !maps.Equal(first, s.reads.m) {
		t.Errorf("a second round of the same reads prepared again: %d statements, then %d", len(first), len(s.reads.m))
	}
}

// Past maxReadStmts a query runs unprepared, with the same answer; a
// query that does not prepare fails and is not kept.
func TestReadStmtsBoundAndErrors(t *testing.T) {
	s := openInternal(t)
	ctx := context.Background()
	r := &readStmts{db: s.read}
	for i := range maxReadStmts + 3 {
		var got int
		if err := r.queryRow(ctx, fmt.Sprintf("SELECT %d + ?", i), 1).Scan(&got); err != nil || got != i+1 {
			t.Fatalf("query %d: %d, %v; want %d", i, got, err, i+1)
		}
		rows, err := r.query(ctx, fmt.Sprintf("SELECT %d + ?", i), 2)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			if err := rows.Scan(&got); err != nil || got != i+2 {
				t.Fatalf("query %d: %d, %v; want %d", i, got, err, i+2)
			}
		}
		if err := rows.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if len(r.m) != maxReadStmts {
		t.Errorf("%d statements kept, want the bound, %d", len(r.m), maxReadStmts)
	}

	r = &readStmts{db: s.read}
	if _, err := r.query(ctx, "SELECT FROM nowhere"); err == nil {
		t.Error("a query that does not parse ran")
	}
	if err := r.queryRow(ctx, "SELECT x FROM nowhere").Scan(new(int)); err == nil {
		t.Error("a one-row query that does not parse ran")
	}
	if len(r.m) != 0 {
		t.Errorf("%d statements kept from failed prepares", len(r.m))
	}
	if err := r.close(); err != nil {
		t.Error(err)
	}
}

// Calls that first use a query at the same time keep one statement.
func TestReadStmtsFirstUseTogether(t *testing.T) {
	s := openInternal(t)
	ctx := context.Background()
	r := &readStmts{db: s.read}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		wg.Go(func() {
			var got int
			if err := r.queryRow(ctx, "SELECT ? * 2", i).Scan(&got); err != nil || got != 2*i {
				errs <- fmt.Errorf("caller %d: %d, %v", i, got, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if len(r.m) != 1 {
		t.Errorf("%d statements kept for one query", len(r.m))
	}
	if err := r.close(); err != nil {
		t.Error(err)
	}
}
