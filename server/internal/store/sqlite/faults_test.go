package sqlite_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/parleychat/parley/server/internal/store"
	"github.com/parleychat/parley/server/internal/store/sqlite"
)

// fillRooms creates rooms and appends messages to each, enough that the
// database spans many pages, and returns how many messages it stored.
func fillRooms(t *testing.T, s *sqlite.Store, rooms, perRoom int) {
	t.Helper()
	ctx := context.Background()
	body := strings.Repeat("x", 400)
	for r := range rooms {
		name := fmt.Sprintf("room-%02d", r)
		if _, err := s.CreateRoom(ctx, store.Room{Name: name, Visibility: store.Public, CreatedBy: "alice"}); err != nil {
			t.Fatal(err)
		}
		waits := make([]func() (store.Message, bool, error), perRoom)
		for i := range waits {
			waits[i] = s.StartAppend(ctx, store.NewMessage{Room: name, Sender: "alice", Body: body, ClientMsgID: fmt.Sprint(i)})
		}
		for _, w := range waits {
			if _, _, err := w(); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// damage writes n random bytes over the middle of the file at path, from
// a page boundary, as a failing disk or a stray write would.
func damage(t *testing.T, path string, n int) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() < int64(4*n) {
		t.Fatalf("%s is only %d bytes: too small to damage in the middle", path, fi.Size())
	}
	junk := make([]byte, n)
	rand.Read(junk)
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// Whole pages, so that each damaged page fails to read: junk in part
	// of a page (an interior page's keys) can instead make a scan end
	// early without an error, which SQLite does not promise to notice.
	if _, err := f.WriteAt(junk, fi.Size()/2&^4095); err != nil {
		t.Fatal(err)
	}
}

// TestDamageIsErrCorrupt damages 8 KB in the middle of a database: Check
// finds it, and reads that meet it fail with store.ErrCorrupt.
func TestDamageIsErrCorrupt(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "parley.db")
	s := openTemp(t, sqlite.Config{Path: path})
	fillRooms(t, s, 40, 200)
	if err := s.Check(ctx); err != nil {
		t.Fatalf("Check of a sound database: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	damage(t, path, 8<<10)

	s = openTemp(t, sqlite.Config{Path: path})
	defer s.Close()
	err := s.Check(ctx)
	t.Logf("Check: %v", err)
	if !errors.Is(err, store.ErrCorrupt) {
		t.Fatalf("Check of a damaged database = %v, want store.ErrCorrupt", err)
	}
	var corrupt int
	for r := range 40 {
		_, err := s.Messages(ctx, fmt.Sprintf("room-%02d", r), store.Query{Limit: 200})
		if err != nil && !errors.Is(err, store.ErrCorrupt) {
			t.Errorf("Messages: %v, want nil or store.ErrCorrupt", err)
		}
		if err != nil {
			corrupt++
		}
	}
	if corrupt == 0 {
		t.Errorf("no read of the 40 rooms met the damage")
	}
}

// TestDamagedHeaderIsErrCorrupt: a file whose first page is not SQLite's
// fails to open with store.ErrCorrupt (SQLITE_NOTADB), naming the file.
func TestDamagedHeaderIsErrCorrupt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "parley.db")
	openTemp(t, sqlite.Config{Path: path}).Close()
	junk := make([]byte, 4096)
	rand.Read(junk)
	if err := os.WriteFile(path, junk, 0o600); err != nil {
		t.Fatal(err)
	}
	os.Remove(path + "-wal")
	s, err := sqlite.Open(context.Background(), sqlite.Config{Path: path})
	if err == nil {
		s.Close()
		t.Fatal("Open of a file that is not a database succeeded")
	}
	t.Logf("Open: %v", err)
	if !errors.Is(err, store.ErrCorrupt) || !strings.Contains(err.Error(), path) {
		t.Errorf("Open = %v, want store.ErrCorrupt naming %s", err, path)
	}
}

// TestFullIsErrFull fills a database up to MaxBytes (SQLITE_FULL, as on a
// full disk): appends fail with store.ErrFull, every acknowledged message
// is still there, and appends succeed again once space is freed.
func TestFullIsErrFull(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "parley.db")
	// The filler takes ~116 pages of 4 KiB, the empty schema ~16: room for
	// some appends to "chat" before it is full.
	s := openTemp(t, sqlite.Config{Path: path, MaxBytes: 640 << 10})
	defer s.Close()
	acked := appendUntilFull(t, s)

	// Free space as an operator would: delete old messages (here through a
	// second connection); SQLite reuses the freed pages.
	db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, "DELETE FROM messages WHERE room = 'filler'"); err != nil {
		t.Fatalf("free space: %v", err)
	}
	if _, _, err := s.Append(ctx, store.NewMessage{Room: "chat", Sender: "bob", Body: "after"}); err != nil {
		t.Fatalf("append after space was freed: %v", err)
	}
	checkAcked(t, s, "chat", acked)
}

// appendUntilFull appends to room "chat" (after filling room "filler")
// until the store reports store.ErrFull, and returns how many appends to
// "chat" it acknowledged.
func appendUntilFull(t *testing.T, s *sqlite.Store) int {
	t.Helper()
	ctx := context.Background()
	for _, r := range []string{"filler", "chat"} {
		if _, err := s.CreateRoom(ctx, store.Room{Name: r, Visibility: store.Public, CreatedBy: "alice"}); err != nil {
			t.Fatal(err)
		}
	}
	body := strings.Repeat("y", 2000)
	for range 100 {
		if _, _, err := s.Append(ctx, store.NewMessage{Room: "filler", Sender: "alice", Body: body}); err != nil {
			t.Fatalf("filler: %v", err)
		}
	}
	for i := range 100000 {
		_, _, err := s.Append(ctx, store.NewMessage{Room: "chat", Sender: "alice", Body: body, ClientMsgID: fmt.Sprint(i)})
		if err == nil {
			continue
		}
		t.Logf("append %d: %v", i, err)
		if !errors.Is(err, store.ErrFull) || strings.Contains(err.Error(), "rollback") {
			t.Fatalf("append on full storage = %v, want store.ErrFull (and no failed rollback: SQLite rolled back itself)", err)
		}
		if _, _, err := s.Append(ctx, store.NewMessage{Room: "chat", Sender: "alice", Body: body, ClientMsgID: "again"}); !errors.Is(err, store.ErrFull) {
			t.Fatalf("second append on full storage = %v, want store.ErrFull", err)
		}
		return i
	}
	t.Fatal("storage never filled up")
	return 0
}

// checkAcked checks that room holds its first acked messages, seqs 1 to
// acked, then one more.
func checkAcked(t *testing.T, s *sqlite.Store, room string, acked int) {
	t.Helper()
	msgs, err := s.Messages(context.Background(), room, store.Query{Limit: acked + 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != acked+1 {
		t.Fatalf("room %s holds %d messages, want the %d acknowledged and one more", room, len(msgs), acked)
	}
	for i, m := range msgs {
		if m.Seq != uint64(i+1) {
			t.Fatalf("message %d has seq %d: a gap", i, m.Seq)
		}
		if i < acked && m.ClientMsgID != fmt.Sprint(i) {
			t.Fatalf("message %d has client_msg_id %q, want %d", i, m.ClientMsgID, i)
		}
	}
}
