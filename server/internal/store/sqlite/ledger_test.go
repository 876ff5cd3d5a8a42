package sqlite

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/parleychat/parley/server/internal/store"
)

// The ledger answers only for the snapshots it holds the uncounted
// messages of: the same uncounted_from, and a head it has taken in.
func TestLedgerCount(t *testing.T) {
	l := newLedger()
	l.rooms["r"] = &roomLedger{name: "r", from: 5, through: 9, seqs: map[string][]uint64{"alice": {5, 7, 9}}}
	for _, c := range []struct {
		from, head, upto uint64
		n                int64
		ok               bool
	}{
		{0, 4, 4, 0, true},    // everything counted in the snapshot
		{5, 9, 9, 3, true},    // all of them
		{5, 8, 9, 2, true},    // the snapshot holds up to 8
		{5, 9, 6, 1, true},    // up to a marker at 6
		{5, 10, 10, 0, false}, // a commit the ledger has not taken in
		{3, 9, 9, 0, false},   // a flush since the snapshot
	} {
		n, ok := l.count("r", "alice", c.from, c.head, c.upto)
		if n != c.n || ok != c.ok {
			t.Errorf("count(from %d, head %d, upto %d) = %d, %v; want %d, %v", c.from, c.head, c.upto, n, ok, c.n, c.ok)
		}
	}
	if _, ok := l.count("q", "alice", 2, 3, 3); ok {
		t.Error("count in a room the ledger has flushed answered")
	}
}

// A read whose snapshot was taken before a flush of the room is read
// again, not answered from room_senders without the uncounted messages
// it needs.
func TestReadBeforeFlushReadsAgain(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, Config{Path: filepath.Join(t.TempDir(), "parley.db"), senderFlushAge: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.CreateRoom(ctx, store.Room{Name: "r", Visibility: store.Public, CreatedBy: "owner"}); err != nil {
		t.Fatal(err)
	}
	for _, sender := range []string{"alice", "bob", "alice"} {
		if _, _, err := s.Append(ctx, store.NewMessage{Room: "r", Sender: sender, Body: "hi"}); err != nil {
			t.Fatal(err)
		}
	}
	tx, err := s.read.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback() //nolint:errcheck
	var n int
	if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM rooms").Scan(&n); err != nil { // the snapshot starts here
		t.Fatal(err)
	}
	// A prune step that deletes nothing still flushes its room.
	if _, err := s.do(ctx, op{prune: &pruneOp{room: "r"}}); err != nil {
		t.Fatal(err)
	}
	_, err = s.roomStateScanner("alice")(tx.QueryRowContext(ctx, "SELECT "+roomStateColumns+readStateJoins+" WHERE r.name = ?2", "alice", "r"))
	if !errors.Is(err, errLedgerAhead) {
		t.Errorf("reading the snapshot before the flush: %v, want errLedgerAhead", err)
	}
	if got, err := s.ReadState(ctx, "alice", "r"); err != nil || got != (store.ReadState{Unread: 1, HeadSeq: 3}) {
		t.Errorf("ReadState after the flush = %+v (%v), want 1 unread", got, err)
	}
}

// A read that missed the ledger is read again however long it took:
// under load a read may wait more than a second for the read pool, and
// one miss after such a wait must not fail the call. Only reads that
// keep missing do, after ledgerReads of them.
func TestReadAgainAfterASlowRead(t *testing.T) {
	ctx := context.Background()
	reads := 0
	got, err := readAgain(ctx, func() (int, error) {
		reads++
		if reads == 1 {
			time.Sleep(1100 * time.Millisecond) // a read that waited for the pool, not a synchronisation
			return 0, errLedgerAhead
		}
		return 7, nil
	})
	if got != 7 || err != nil || reads != 2 {
		t.Errorf("readAgain after a slow read that missed = %d, %v after %d reads; want 7, nil after 2", got, err, reads)
	}

	reads = 0
	_, err = readAgain(ctx, func() (int, error) { reads++; return 0, errLedgerAhead })
	if !errors.Is(err, errLedgerAhead) || reads != ledgerReads {
		t.Errorf("readAgain of reads that always miss = %v after %d reads; want errLedgerAhead after %d", err, reads, ledgerReads)
	}

	cctx, cancel := context.WithCancel(ctx)
	reads = 0
	_, err = readAgain(cctx, func() (int, error) {
		if reads++; reads == 3 {
			cancel()
		}
		return 0, errLedgerAhead
	})
	if !errors.Is(err, context.Canceled) || reads != 3 {
		t.Errorf("readAgain with its context ended after 3 reads = %v after %d reads; want context.Canceled after 3", err, reads)
	}
}
