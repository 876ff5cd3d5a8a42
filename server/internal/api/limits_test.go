package api

import (
	"errors"
	"fmt"
	"testing"
)

// TestOpenStreamSweepsAmortized opens a Join stream for each of many
// distinct users who all keep it open, as a join storm into a big room
// does. Nothing is idle, so a sweep frees nothing; sweeping on every new
// user past sweepAt made each join scan every user (a 100,000-stream
// storm spent a fifth of the server's CPU there).
func TestOpenStreamSweepsAmortized(t *testing.T) {
	l := newUserLimits(10, 10, 1)
	const users = 4 * sweepAt
	closers := make([]func(), 0, users)
	for i := range users {
		done, err := l.openStream(fmt.Sprintf("u%d", i))
		if err != nil {
			t.Fatalf("open stream %d: %v", i, err)
		}
		closers = append(closers, done)
	}
	// Sweeps at 10,000, 20,000 and 40,000 users: log2(users/sweepAt)+1.
	if l.sweeps > 3 {
		t.Fatalf("%d sweeps for %d users who all hold a stream; want at most 3 (amortized)", l.sweeps, users)
	}
	if _, err := l.openStream("u0"); err == nil {
		t.Fatal("a second stream for u0 was allowed past the per-user limit of 1")
	}
	for _, done := range closers {
		done()
	}
	if n := len(l.users); n != 0 {
		t.Fatalf("%d users kept after every receiving-only stream closed; want 0", n)
	}
	// A user who sent keeps their bucket until a sweep finds it full.
	done, err := l.openStream("sender")
	if err != nil {
		t.Fatal(err)
	}
	if err := l.allowSend(t.Context(), "sender", false); err != nil {
		t.Fatal(err)
	}
	done()
	if _, ok := l.users["sender"]; !ok {
		t.Fatal("a user with a send bucket was forgotten when their stream closed; their rate would reset")
	}
}

// Room creations have a bucket of their own, kept while it is not full:
// a flood past the burst is refused with a delay, and a sweep does not
// hand the flooder a fresh bucket.
func TestCreateBucketKeptUntilFull(t *testing.T) {
	l := newUserLimits(-1, 0, 0)
	l.limitCreates(0.001, 2)
	for i := range 2 {
		if err := l.allowCreate("mallory"); err != nil {
			t.Fatalf("room %d of the burst: %v", i, err)
		}
	}
	var re *retryError
	if err := l.allowCreate("mallory"); !errors.As(err, &re) || re.after <= 0 {
		t.Fatalf("past the burst: %v, want a retryError with a delay", err)
	}
	l.sweepLocked()
	if err := l.allowCreate("mallory"); err == nil {
		t.Fatal("a sweep forgot a user whose create bucket is empty: the flood starts again")
	}
	if err := l.allowCreate("alice"); err != nil {
		t.Fatalf("another user: %v", err)
	}
}
