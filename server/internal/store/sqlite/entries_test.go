package sqlite_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/parleychat/parley/server/internal/store"
	"github.com/parleychat/parley/server/internal/store/sqlite"
)

// A delete erases the text from the files: after a checkpoint, neither
// the message's body nor its edits' (short ones inside a page, a long one
// on overflow pages) can be found in any file of the data directory.
func TestDeleteErasesFromFiles(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "parley.db")
	s := openTemp(t, sqlite.Config{Path: path})
	defer s.Close()
	mustCreateRoom(t, s, "r")
	secret := func() string {
		b := make([]byte, 12)
		rand.Read(b)
		return "secret-" + hex.EncodeToString(b)
	}
	original, edited, long := secret(), secret(), secret()
	longBody := strings.Repeat(long, 2000) // ~62 KB: overflow pages
	var seqs []uint64
	for _, m := range []store.NewMessage{
		{Room: "r", Sender: "alice", Body: "before"},
		{Room: "r", Sender: "alice", Body: original},
		{Room: "r", Sender: "bob", Body: longBody},
		{Room: "r", Sender: "alice", Body: "after"},
	} {
		seqs = append(seqs, mustAppend(t, s, m).Seq)
	}
	mustAppend(t, s, store.NewMessage{Room: "r", Kind: store.KindEdit, Sender: "alice", TargetSeq: seqs[1], Body: edited})
	secrets := []string{original, edited, long}
	checkpoint(t, path)
	for _, sec := range secrets {
		if files := filesHolding(t, dir, sec); len(files) == 0 {
			t.Fatalf("%s is in no file before the delete: the test cannot see it", sec)
		}
	}
	mustAppend(t, s, store.NewMessage{Room: "r", Kind: store.KindDelete, Sender: "alice", TargetSeq: seqs[1]})
	mustAppend(t, s, store.NewMessage{Room: "r", Kind: store.KindDelete, Sender: "bob", TargetSeq: seqs[2]})
	checkpoint(t, path)
	for _, sec := range secrets {
		if files := filesHolding(t, dir, sec); len(files) > 0 {
			t.Errorf("%s is still in %v after the delete and a checkpoint", sec, files)
		}
	}
	ms, err := s.Messages(ctx, "r", store.Query{Limit: 10})
	if err != nil || len(ms) != 7 || ms[0].Body != "before" || ms[3].Body != "after" {
		t.Errorf("the other messages: %+v (%v)", ms, err)
	}
}

func checkpoint(t *testing.T, path string) {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var busy, logged, done int
	if err := db.QueryRow("PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &logged, &done); err != nil || busy != 0 {
		t.Fatalf("checkpoint: busy=%d (%v)", busy, err)
	}
}

// filesHolding returns the files under dir whose bytes contain s.
func filesHolding(t *testing.T, dir, s string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte(s)) {
			out = append(out, e.Name())
		}
	}
	return out
}

func mustCreateRoom(t testing.TB, s store.Store, name string) {
	t.Helper()
	if _, err := s.CreateRoom(context.Background(), store.Room{Name: name, Visibility: store.Public, CreatedBy: "owner"}); err != nil {
		t.Fatal(err)
	}
}

// TestUpgradeToEntryKinds opens a database that today's released schema
// (version 3) holds messages in: they read back as messages, in the log
// and in the history, and can be edited, reacted to, replied to and
// deleted.
func TestUpgradeToEntryKinds(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "parley.db")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if err := sqlite.MigrateTo(ctx, db, 3); err != nil {
		t.Fatalf("schema 3: %v", err)
	}
	stmts := []string{`INSERT INTO rooms (name, visibility, created_by, created_at, last_seq, last_message_at) VALUES ('r', 1, 'alice', 1, 3, 7)`}
	for i := 1; i <= 3; i++ {
		stmts = append(stmts, fmt.Sprintf(`INSERT INTO messages (room, seq, sender, body, sent_at, client_msg_id) VALUES ('r', %d, 'alice', 'old %d', %d, 'id-%d')`, i, i, 4+i, i))
	}
	for _, q := range stmts {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	db.Close()

	s := openTemp(t, sqlite.Config{Path: path})
	defer s.Close()
	ms, err := s.Messages(ctx, "r", store.Query{Limit: 10})
	if err != nil || len(ms) != 3 {
		t.Fatalf("Messages = %d (%v)", len(ms), err)
	}
	for i, m := range ms {
		if m.Kind != store.KindMessage || m.Body != fmt.Sprint("old ", i+1) || m.TargetSeq != 0 || m.ReplyToSeq != 0 || m.Emoji != "" {
			t.Errorf("old message %d reads as %+v", i+1, m)
		}
	}
	vs, err := s.History(ctx, "r", "bob", store.Query{Limit: 10})
	if err != nil || len(vs) != 3 || vs[1].Body != "old 2" || vs[1].Deleted || !vs[1].EditedAt.IsZero() || vs[1].Reactions != nil || vs[1].ReplyTo != nil {
		t.Fatalf("History = %+v (%v)", vs, err)
	}
	for _, m := range []store.NewMessage{
		{Room: "r", Kind: store.KindEdit, Sender: "alice", TargetSeq: 1, Body: "old 1, edited"},
		{Room: "r", Kind: store.KindReactionAdd, Sender: "bob", TargetSeq: 1, Emoji: "👍"},
		{Room: "r", Sender: "bob", Body: "re", ReplyToSeq: 1},
		{Room: "r", Kind: store.KindDelete, Sender: "alice", TargetSeq: 2},
	} {
		if _, dup, err := s.Append(ctx, m); err != nil || dup {
			t.Fatalf("%s after the upgrade: dup %v, %v", m.Kind, dup, err)
		}
	}
	vs, err = s.History(ctx, "r", "bob", store.Query{Limit: 10})
	if err != nil || len(vs) != 4 || vs[0].Body != "old 1, edited" || len(vs[0].Reactions) != 1 || !vs[0].Reactions[0].Mine ||
		!vs[1].Deleted || vs[3].ReplyTo == nil || vs[3].ReplyTo.Snippet != "old 1, edited" {
		t.Errorf("History after changes = %+v (%v)", vs, err)
	}
	if m, dup, err := s.Append(ctx, store.NewMessage{Room: "r", Sender: "alice", Body: "old 3", ClientMsgID: "id-3"}); err != nil || !dup || m.Seq != 3 {
		t.Errorf("retry of an old message: seq %d dup %v (%v)", m.Seq, dup, err)
	}
}

// A delete erases the text from the files however the log's pages were
// split and merged before it: many rooms written interleaved, in batches,
// so that rows move between pages, then some messages and edits deleted.
// Before bodies had a table of their own, appended to and overwritten in
// place, a page split left old copies of moved rows in a page's unused
// space, where secure_delete does not reach.
func TestDeleteErasesAfterPageSplits(t *testing.T) {
	if testing.Short() {
		t.Skip("writes ~6,000 entries")
	}
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "parley.db")
	s := openTemp(t, sqlite.Config{Path: path})
	defer s.Close()
	const rooms, perRoom = 40, 120
	for r := range rooms {
		mustCreateRoom(t, s, fmt.Sprint("r", r))
	}
	type sent struct {
		room string
		seq  uint64
		body string
	}
	var msgs []sent
	for i := range perRoom {
		var waits []func() (store.Message, bool, error)
		for r := range rooms {
			b := make([]byte, 8+(i*7+r*13)%40)
			rand.Read(b)
			body := "secret-" + hex.EncodeToString(b)
			waits = append(waits, s.StartAppend(ctx, store.NewMessage{Room: fmt.Sprint("r", r), Sender: "alice", Body: body}))
		}
		for _, w := range waits {
			m, _, err := w()
			if err != nil {
				t.Fatal(err)
			}
			msgs = append(msgs, sent{m.Room, m.Seq, m.Body})
		}
	}
	var gone, kept []string
	for i, m := range msgs {
		switch i % 5 {
		case 0:
			gone = append(gone, m.body)
			mustAppend(t, s, store.NewMessage{Room: m.room, Kind: store.KindDelete, Sender: "alice", TargetSeq: m.seq})
		case 1:
			e := mustAppend(t, s, store.NewMessage{Room: m.room, Kind: store.KindEdit, Sender: "alice", TargetSeq: m.seq, Body: m.body + "-edited"})
			gone = append(gone, m.body+"-edited")
			if i%10 == 1 {
				mustAppend(t, s, store.NewMessage{Room: m.room, Kind: store.KindDelete, Sender: "alice", TargetSeq: m.seq})
			} else {
				kept = append(kept, e.Body)
				gone = gone[:len(gone)-1]
			}
		default:
			kept = append(kept, m.body)
		}
	}
	checkpoint(t, path)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, text := range gone {
		if bytes.Contains(b, []byte(text)) {
			left = append(left, text)
		}
	}
	if len(left) > 0 {
		t.Errorf("%d of %d deleted texts are still in the database file after a checkpoint, such as %q", len(left), len(gone), left[0])
	}
	for _, text := range kept {
		if !bytes.Contains(b, []byte(text)) {
			t.Fatalf("text %q, still shown, is not in the database file: the search cannot see", text)
		}
	}
}

// Retention takes the texts of the entries it prunes with them, erased
// ones too: no row of bodies is left that no entry names.
func TestPruneDeletesTexts(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "parley.db")
	s := openTemp(t, sqlite.Config{Path: path})
	defer s.Close()
	mustCreateRoom(t, s, "r")
	var seqs []uint64
	for i := range 10 {
		seqs = append(seqs, mustAppend(t, s, store.NewMessage{Room: "r", Sender: "alice", Body: fmt.Sprint("text ", i)}).Seq)
	}
	mustAppend(t, s, store.NewMessage{Room: "r", Kind: store.KindEdit, Sender: "alice", TargetSeq: seqs[1], Body: "text 1, edited"})
	mustAppend(t, s, store.NewMessage{Room: "r", Kind: store.KindEdit, Sender: "alice", TargetSeq: seqs[2], Body: "text 2, edited"})
	mustAppend(t, s, store.NewMessage{Room: "r", Kind: store.KindDelete, Sender: "alice", TargetSeq: seqs[2]})
	mustAppend(t, s, store.NewMessage{Room: "r", Kind: store.KindDelete, Sender: "alice", TargetSeq: seqs[7]})
	db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(5000)&_pragma=query_only(1)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	count := func(q string) int {
		t.Helper()
		var n int
		if err := db.QueryRow(q).Scan(&n); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		return n
	}
	const texts, orphans = "SELECT count(*) FROM bodies", "SELECT count(*) FROM bodies WHERE id NOT IN (SELECT body_id FROM messages)"
	if n, o := count(texts), count(orphans); n != 12 || o != 0 {
		t.Fatalf("before the prune: %d texts, %d named by no entry; want 12 and 0", n, o)
	}
	if _, err := s.Prune(ctx, store.Retention{MaxMessages: 5}); err != nil {
		t.Fatal(err)
	}
	// Left: messages 5 to 9 (7 erased) and no edit.
	if n, o := count(texts), count(orphans); n != 5 || o != 0 {
		t.Errorf("after the prune: %d texts, %d named by no entry; want 5 and 0", n, o)
	}
	ms, err := s.Messages(ctx, "r", store.Query{Limit: 20})
	if err != nil || len(ms) != 6 || ms[0].Body != "text 5" || ms[2].Body != "" || ms[2].Seq != seqs[7] {
		t.Errorf("after the prune: %+v (%v)", ms, err)
	}
}
