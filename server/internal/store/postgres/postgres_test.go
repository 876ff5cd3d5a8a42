package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parleychat/parley/server/internal/store"
	"github.com/parleychat/parley/server/internal/store/postgres"
	"github.com/parleychat/parley/server/internal/store/storetest"
)

func TestConformance(t *testing.T) {
	postgres.NeedPostgres(t)
	open := func(t *testing.T) store.Store { return postgres.OpenTest(t, postgres.Config{}) }
	storetest.Run(t, open)
	storetest.RunLog(t, open)
	storetest.RunReadState(t, open)
}

// TestConformanceWriterSettings runs the suite with small batches and a long
// batch window, and with no window at all.
func TestConformanceWriterSettings(t *testing.T) {
	postgres.NeedPostgres(t)
	for _, cfg := range []postgres.Config{{MaxBatch: 7, MaxBatchDelay: 50 * time.Millisecond}, {MaxBatchDelay: -1}} {
		t.Run(fmt.Sprintf("MaxBatch=%d,MaxBatchDelay=%v", cfg.MaxBatch, cfg.MaxBatchDelay), func(t *testing.T) {
			open := func(t *testing.T) store.Store { return postgres.OpenTest(t, cfg) }
			storetest.Run(t, open)
			storetest.RunLog(t, open)
			storetest.RunReadState(t, open)
		})
	}
}

func TestConfigValidate(t *testing.T) {
	const dsn = "postgres://u@h:5432/db"
	tests := []struct {
		name string
		cfg  postgres.Config
		want []string // substrings of the error; none for a valid config
	}{
		{"defaults", postgres.Config{DSN: dsn}, nil},
		{"key=value DSN", postgres.Config{DSN: "host=h user=u dbname=db"}, nil},
		{"everything set", postgres.Config{DSN: dsn, Schema: "chat_2", MaxBatch: 1, MaxBatchDelay: -1, MaxConns: 2,
			ConnectTimeout: time.Second, QueryTimeout: time.Second}, nil},
		{"no DSN", postgres.Config{}, []string{"DSN is required"}},
		{"bad DSN", postgres.Config{DSN: "postgres://u@h:notaport/db"}, []string{"DSN"}},
		{"schema with capitals", postgres.Config{DSN: dsn, Schema: "Parley"}, []string{`Schema "Parley"`}},
		{"schema with quote", postgres.Config{DSN: dsn, Schema: `a"; DROP TABLE x; --`}, []string{"Schema"}},
		{"schema starting with a digit", postgres.Config{DSN: dsn, Schema: "1parley"}, []string{"Schema"}},
		{"schema too long", postgres.Config{DSN: dsn, Schema: strings.Repeat("a", 64)}, []string{"Schema"}},
		{"negative batch", postgres.Config{DSN: dsn, MaxBatch: -1}, []string{"MaxBatch -1"}},
		{"huge batch", postgres.Config{DSN: dsn, MaxBatch: 1 << 20}, []string{"MaxBatch 1048576"}},
		{"negative conns", postgres.Config{DSN: dsn, MaxConns: -2}, []string{"MaxConns -2"}},
		{"negative connect timeout", postgres.Config{DSN: dsn, ConnectTimeout: -time.Second}, []string{"ConnectTimeout -1s"}},
		{"tiny query timeout", postgres.Config{DSN: dsn, QueryTimeout: time.Microsecond}, []string{"QueryTimeout 1µs"}},
		{"every problem at once", postgres.Config{Schema: "X", MaxBatch: -1, MaxConns: -1, ConnectTimeout: -1, QueryTimeout: -1},
			[]string{"DSN is required", "Schema", "MaxBatch -1", "MaxConns -1", "ConnectTimeout -1ns", "QueryTimeout -1ns"}},
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
			if _, openErr := postgres.Open(context.Background(), tc.cfg); openErr == nil {
				t.Errorf("Open accepted a config that Validate rejects")
			}
		})
	}
}

func TestValidateDoesNotLeakPassword(t *testing.T) {
	err := postgres.Config{DSN: "postgres://u:hunter2@h:notaport/db"}.Validate()
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("Validate() = %v, want an error without the password", err)
	}
}

func TestReopenContinuesFromStoredHead(t *testing.T) {
	schema := postgres.NewSchema(t)
	ctx := context.Background()
	s := postgres.OpenTest(t, postgres.Config{Schema: schema})
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

	s = postgres.OpenTest(t, postgres.Config{Schema: schema})
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

func mustAppend(t testing.TB, s store.Store, m store.NewMessage) store.Message {
	t.Helper()
	got, _, err := s.Append(context.Background(), m)
	if err != nil {
		t.Fatalf("Append(%+v): %v", m, err)
	}
	return got
}

func TestRefusesNewerSchema(t *testing.T) {
	schema := postgres.NewSchema(t)
	postgres.OpenTest(t, postgres.Config{Schema: schema}).Close()
	postgres.ExecSQL(t, schema, "INSERT INTO schema_migrations (version) VALUES (99)")
	s, err := postgres.Open(context.Background(), postgres.Config{DSN: postgres.NeedPostgres(t), Schema: schema})
	if err == nil {
		s.Close()
		t.Fatal("Open succeeded on a schema from the future")
	}
	if !strings.Contains(err.Error(), "version 99, newer than this binary knows") {
		t.Errorf("Open error %q does not say the schema is newer", err)
	}
}

// TestConcurrentOpensMigrateOnce starts several stores on one fresh schema
// at once, as nodes starting together do: all open, and every migration is
// applied exactly once.
func TestConcurrentOpensMigrateOnce(t *testing.T) {
	schema := postgres.NewSchema(t)
	var wg sync.WaitGroup
	stores := make([]*postgres.Store, 6)
	for i := range stores {
		wg.Go(func() { stores[i] = postgres.OpenTest(t, postgres.Config{Schema: schema, MaxConns: 2}) })
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	if _, err := stores[0].CreateRoom(context.Background(), store.Room{Name: "a", Visibility: store.Public}); err != nil {
		t.Fatal(err)
	}
	for i, s := range stores {
		if m := mustAppend(t, s, store.NewMessage{Room: "a", Sender: "u", Body: "x"}); m.Seq != uint64(i+1) {
			t.Errorf("store %d appended seq %d, want %d", i, m.Seq, i+1)
		}
	}
	// A duplicate version row would have failed the primary key; count them.
	postgres.ExecSQL(t, schema, `DO $$ BEGIN
		IF (SELECT count(*) FROM schema_migrations) <> (SELECT max(version) FROM schema_migrations) THEN
			RAISE EXCEPTION 'migrations applied more than once or skipped';
		END IF; END $$`)
}

func TestCancelledAppendStoresNothing(t *testing.T) {
	s := postgres.OpenTest(t, postgres.Config{})
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
// either succeeds, and is then stored, or fails with ErrClosed.
func TestCloseDrains(t *testing.T) {
	schema := postgres.NewSchema(t)
	s := postgres.OpenTest(t, postgres.Config{Schema: schema})
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
	s = postgres.OpenTest(t, postgres.Config{Schema: schema})
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

func TestPingAndClose(t *testing.T) {
	s := postgres.OpenTest(t, postgres.Config{})
	if err := s.Ping(context.Background()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	s.Close()
	if err := s.Ping(context.Background()); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Ping after Close = %v, want ErrClosed", err)
	}
}

// TestUnstorableTextIsRejectedAlone: PostgreSQL's text holds neither NUL
// nor invalid UTF-8; such a message is refused on its own and never fails
// the batch of other callers' messages.
func TestUnstorableTextIsRejectedAlone(t *testing.T) {
	s := postgres.OpenTest(t, postgres.Config{})
	ctx := context.Background()
	if _, err := s.CreateRoom(ctx, store.Room{Name: "a", Visibility: store.Public}); err != nil {
		t.Fatal(err)
	}
	bad := []store.NewMessage{
		{Room: "a", Sender: "u", Body: "nul \x00 inside"},
		{Room: "a", Sender: "u", Body: "bad \xff utf-8"},
		{Room: "a", Sender: "u", Body: "ok", ClientMsgID: "id\x00"},
		{Room: "a", Sender: "u\x00", Body: "ok"},
	}
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			m := bad[i%len(bad)]
			if _, _, err := s.Append(ctx, m); !errors.Is(err, postgres.ErrInvalidText) {
				t.Errorf("Append(%+v) = %v, want ErrInvalidText", m, err)
			}
		})
		wg.Go(func() {
			if _, _, err := s.Append(ctx, store.NewMessage{Room: "a", Sender: "u", Body: "fine"}); err != nil {
				t.Errorf("Append beside an unstorable message: %v", err)
			}
		})
	}
	wg.Wait()
	if r, _ := s.Room(ctx, "a"); r.LastSeq != 20 {
		t.Errorf("LastSeq = %d, want 20", r.LastSeq)
	}
}
