package sqlite_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parleychat/parley/server/internal/store"
	"github.com/parleychat/parley/server/internal/store/sqlite"
	"github.com/parleychat/parley/server/internal/store/storetest"
)

// TestMain fails the run if a writer goroutine outlives the tests: Close
// waits for it, so one left means a store that was never closed.
func TestMain(m *testing.M) {
	code := m.Run()
	buf := make([]byte, 1<<20)
	stacks := string(buf[:runtime.Stack(buf, true)])
	if code == 0 && strings.Contains(stacks, "sqlite.(*writer).run") {
		fmt.Fprintf(os.Stderr, "writer goroutines still running after the tests:\n%s", stacks)
		code = 1
	}
	os.Exit(code)
}

func openTemp(t testing.TB, cfg sqlite.Config) *sqlite.Store {
	t.Helper()
	if cfg.Path == "" {
		cfg.Path = filepath.Join(t.TempDir(), "parley.db")
	}
	s, err := sqlite.Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func TestConformance(t *testing.T) {
	open := func(t *testing.T) store.Store { return openTemp(t, sqlite.Config{}) }
	storetest.Run(t, open)
	storetest.RunLog(t, open)
	storetest.RunReadState(t, open)
}

// TestConformanceWriterSettings runs the suite with small batches and a long
// batch window, and with no window at all. (MaxBatch=1 is left to the
// benchmarks: a fsync per message makes the 10,000-message walk slow.)
func TestConformanceWriterSettings(t *testing.T) {
	for _, cfg := range []sqlite.Config{{MaxBatch: 7, MaxBatchDelay: 50 * time.Millisecond}, {MaxBatchDelay: -1}} {
		t.Run(fmt.Sprintf("MaxBatch=%d,MaxBatchDelay=%v", cfg.MaxBatch, cfg.MaxBatchDelay), func(t *testing.T) {
			open := func(t *testing.T) store.Store { return openTemp(t, cfg) }
			storetest.Run(t, open)
			storetest.RunLog(t, open)
			storetest.RunReadState(t, open)
		})
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  sqlite.Config
		want []string // substrings of the error; none for a valid config
	}{
		{"defaults", sqlite.Config{Path: "/data/parley.db"}, nil},
		{"everything set", sqlite.Config{Path: "p.db", MaxBatch: 1, MaxBatchDelay: -1, ReadConns: 1, BusyTimeout: time.Second}, nil},
		{"no path", sqlite.Config{}, []string{"Path is required"}},
		{"question mark", sqlite.Config{Path: "a?b.db"}, []string{"must not contain '?'"}},
		{"negative batch", sqlite.Config{Path: "p.db", MaxBatch: -1}, []string{"MaxBatch -1"}},
		{"huge batch", sqlite.Config{Path: "p.db", MaxBatch: 1 << 20}, []string{"MaxBatch 1048576"}},
		{"negative readers", sqlite.Config{Path: "p.db", ReadConns: -2}, []string{"ReadConns -2"}},
		{"negative busy timeout", sqlite.Config{Path: "p.db", BusyTimeout: -time.Second}, []string{"BusyTimeout -1s"}},
		{"every problem at once", sqlite.Config{MaxBatch: -1, ReadConns: -1, BusyTimeout: -1},
			[]string{"Path is required", "MaxBatch -1", "ReadConns -1", "BusyTimeout -1ns"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want an error mentioning %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %q, want it to mention %q", err, w)
				}
			}
			if _, openErr := sqlite.Open(context.Background(), tc.cfg); openErr == nil {
				t.Errorf("Open accepted a config that Validate rejects")
			}
		})
	}
}

func TestOpenFailsClearly(t *testing.T) {
	base := t.TempDir()
	file := filepath.Join(base, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		path   string
		is     error  // if set, errors.Is(err, is) must hold
		phrase string // the error must contain it
	}{
		{"missing directory", filepath.Join(base, "missing", "parley.db"), fs.ErrNotExist, filepath.Join(base, "missing")},
		{"directory is a file", filepath.Join(file, "parley.db"), nil, "is not a directory"},
		{"path is a directory", base, nil, base},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkOpenError(t, tc.path, tc.is, tc.phrase)
		})
	}
	t.Run("read-only directory", func(t *testing.T) {
		dir := t.TempDir()
		if !makeReadOnly(t, dir) {
			t.Skip("cannot make a read-only directory here")
		}
		checkOpenError(t, filepath.Join(dir, "parley.db"), fs.ErrPermission, "must be writable")
	})
	t.Run("existing database in read-only directory", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "parley.db")
		openTemp(t, sqlite.Config{Path: path}).Close()
		if !makeReadOnly(t, dir) {
			t.Skip("cannot make a read-only directory here")
		}
		checkOpenError(t, path, nil, path)
	})
}

func checkOpenError(t *testing.T, path string, is error, phrase string) {
	t.Helper()
	s, err := sqlite.Open(context.Background(), sqlite.Config{Path: path})
	if err == nil {
		s.Close()
		t.Fatalf("Open(%q) succeeded, want an error", path)
	}
	t.Logf("Open(%q): %v", path, err)
	if is != nil && !errors.Is(err, is) {
		t.Errorf("Open error %q does not wrap %v", err, is)
	}
	if !strings.Contains(err.Error(), phrase) {
		t.Errorf("Open error %q does not mention %q", err, phrase)
	}
}

func TestReopenContinuesFromStoredHead(t *testing.T) {
	path := filepath.Join(t.TempDir(), "parley.db")
	ctx := context.Background()
	s := openTemp(t, sqlite.Config{Path: path})
	for _, r := range []string{"a", "b"} {
		if _, err := s.CreateRoom(ctx, store.Room{Name: r, Visibility: store.Private, CreatedBy: "alice"}); err != nil {
			t.Fatal(err)
		}
	}
	var firstA store.Message
	for i := range 8 {
		room := []string{"a", "b"}[i%2]
		m := mustAppend(t, s, store.NewMessage{Room: room, Sender: "alice", Body: fmt.Sprint(i), ClientMsgID: fmt.Sprint("id-", i)})
		if i == 0 {
			firstA = m
		}
	}
	headA, _ := s.Room(ctx, "a")
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s = openTemp(t, sqlite.Config{Path: path})
	defer s.Close()
	if got, _ := s.Room(ctx, "a"); !reflect.DeepEqual(got, headA) {
		t.Errorf("after reopen room a = %+v, want %+v", got, headA)
	}
	if m := mustAppend(t, s, store.NewMessage{Room: "a", Sender: "bob", Body: "next"}); m.Seq != 5 {
		t.Errorf("first append to a after reopen got seq %d, want 5", m.Seq)
	}
	if m := mustAppend(t, s, store.NewMessage{Room: "b", Sender: "bob", Body: "next"}); m.Seq != 5 {
		t.Errorf("first append to b after reopen got seq %d, want 5", m.Seq)
	}
	retry, dup, err := s.Append(ctx, store.NewMessage{Room: "a", Sender: "alice", Body: "0", ClientMsgID: "id-0"})
	if err != nil || !dup || !reflect.DeepEqual(retry, firstA) {
		t.Errorf("retry after reopen = %+v, dup %v, err %v; want the original %+v", retry, dup, err, firstA)
	}
}

func mustAppend(t *testing.T, s *sqlite.Store, m store.NewMessage) store.Message {
	t.Helper()
	got, _, err := s.Append(context.Background(), m)
	if err != nil {
		t.Fatalf("Append(%+v): %v", m, err)
	}
	return got
}

func TestRefusesNewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "parley.db")
	openTemp(t, sqlite.Config{Path: path}).Close()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("PRAGMA user_version = 99"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	checkOpenError(t, path, nil, "schema version 99 is newer")
}

func TestCancelledAppendStoresNothing(t *testing.T) {
	s := openTemp(t, sqlite.Config{})
	defer s.Close()
	ctx := context.Background()
	if _, err := s.CreateRoom(ctx, store.Room{Name: "a", Visibility: store.Public}); err != nil {
		t.Fatal(err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	for range 20 {
		if _, _, err := s.Append(cancelled, store.NewMessage{Room: "a", Sender: "u", Body: "x"}); !errors.Is(err, context.Canceled) {
			t.Fatalf("Append with a cancelled context: got %v, want context.Canceled", err)
		}
	}
	if m := mustAppend(t, s, store.NewMessage{Room: "a", Sender: "u", Body: "y"}); m.Seq != 1 {
		t.Errorf("next append got seq %d, want 1", m.Seq)
	}
}

// TestCloseDrains closes the store while appends are in flight: each one
// either succeeds, and is then on disk, or fails with ErrClosed.
func TestCloseDrains(t *testing.T) {
	path := filepath.Join(t.TempDir(), "parley.db")
	s := openTemp(t, sqlite.Config{Path: path})
	ctx := context.Background()
	if _, err := s.CreateRoom(ctx, store.Room{Name: "a", Visibility: store.Public}); err != nil {
		t.Fatal(err)
	}
	var ok sync.Map // seq -> body
	var wg sync.WaitGroup
	started := make(chan struct{})
	var once sync.Once
	for g := range 50 {
		wg.Go(func() {
			for i := 0; ; i++ {
				body := fmt.Sprint(g, "/", i)
				m, _, err := s.Append(ctx, store.NewMessage{Room: "a", Sender: "u", Body: body})
				if errors.Is(err, store.ErrClosed) {
					return
				}
				if err != nil {
					t.Errorf("Append: %v", err)
					return
				}
				ok.Store(m.Seq, body)
				once.Do(func() { close(started) })
			}
		})
	}
	<-started
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	wg.Wait()
	s = openTemp(t, sqlite.Config{Path: path})
	defer s.Close()
	stored, err := s.Messages(ctx, "a", store.Query{Limit: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	acked := 0
	ok.Range(func(any, any) bool { acked++; return true })
	if len(stored) != acked {
		t.Errorf("%d messages acknowledged, %d stored", acked, len(stored))
	}
	for i, m := range stored {
		if body, _ := ok.Load(m.Seq); m.Seq != uint64(i+1) || body != m.Body {
			t.Fatalf("stored[%d] = seq %d %q, acknowledged %q", i, m.Seq, m.Body, body)
		}
	}
}

// TestUpgradeFromSchema2 opens a database an older binary left at schema
// version 2 (idempotency index led by room): the upgrade rebuilds the index
// led by client_msg_id, and what was stored before still deduplicates.
func TestUpgradeFromSchema2(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "parley.db")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if err := sqlite.MigrateTo(ctx, db, 2); err != nil {
		t.Fatalf("schema 2: %v", err)
	}
	for _, q := range []string{
		`INSERT INTO rooms (name, visibility, created_by, created_at, last_seq, last_message_at) VALUES ('r', 1, 'alice', 1, 1, 5)`,
		`INSERT INTO messages (room, seq, sender, body, sent_at, client_msg_id) VALUES ('r', 1, 'alice', 'hello', 5, 'id-1')`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	db.Close()

	s := openTemp(t, sqlite.Config{Path: path})
	defer s.Close()
	retry, dup, err := s.Append(ctx, store.NewMessage{Room: "r", Sender: "alice", Body: "hello", ClientMsgID: "id-1"})
	if err != nil || !dup || retry.Seq != 1 || retry.SentAt.UnixNano() != 5 {
		t.Errorf("retry of a message stored before the upgrade = %+v, dup %v, err %v; want seq 1 sent at 5ns, dup", retry, dup, err)
	}
	if m := mustAppend(t, s, store.NewMessage{Room: "r", Sender: "alice", Body: "next", ClientMsgID: "id-2"}); m.Seq != 2 {
		t.Errorf("next append got seq %d, want 2", m.Seq)
	}

	db, err = sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, `SELECT name FROM pragma_index_info('messages_client_msg_id') ORDER BY seqno`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var cols []string
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			t.Fatal(err)
		}
		cols = append(cols, c)
	}
	if want := []string{"client_msg_id", "room", "sender"}; !reflect.DeepEqual(cols, want) {
		t.Errorf("index columns after the upgrade = %v, want %v", cols, want)
	}
}
