package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// The tests run against the PostgreSQL at $PARLEY_TEST_POSTGRES (default
// defaultTestDSN), each store in a fresh schema that is dropped afterwards.
// Without a reachable server they skip, unless PARLEY_REQUIRE_POSTGRES=1
// (as in .ci/run), when they fail.
const defaultTestDSN = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// TestMain fails the run if a writer goroutine outlives the tests: Close
// waits for it, so one left means a store that was never closed.
func TestMain(m *testing.M) {
	code := m.Run()
	buf := make([]byte, 1<<20)
	stacks := string(buf[:runtime.Stack(buf, true)])
	if code == 0 && strings.Contains(stacks, "postgres.(*writer).run") {
		fmt.Fprintf(os.Stderr, "writer goroutines still running after the tests:\n%s", stacks)
		code = 1
	}
	os.Exit(code)
}

func testDSN() string {
	if dsn := os.Getenv("PARLEY_TEST_POSTGRES"); dsn != "" {
		return dsn
	}
	return defaultTestDSN
}

var reachable struct {
	once sync.Once
	err  error
}

// needPostgres skips t (or fails it, if PARLEY_REQUIRE_POSTGRES=1) when
// the test server cannot be reached, and returns its DSN.
func needPostgres(t testing.TB) string {
	t.Helper()
	dsn := testDSN()
	reachable.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, dsn)
		if err == nil {
			err = conn.Ping(ctx)
			conn.Close(ctx)
		}
		reachable.err = err
	})
	if err := reachable.err; err != nil {
		shown := dsn
		if u, perr := url.Parse(dsn); perr == nil {
			shown = u.Redacted()
		}
		msg := fmt.Sprintf("PostgreSQL at PARLEY_TEST_POSTGRES=%q is not reachable (%v); "+
			"start it or point PARLEY_TEST_POSTGRES at one", shown, err)
		if os.Getenv("PARLEY_REQUIRE_POSTGRES") == "1" {
			t.Fatal(msg + " (PARLEY_REQUIRE_POSTGRES=1)")
		}
		t.Skip(msg)
	}
	return dsn
}

// newSchema returns the name of a fresh schema that is dropped when t ends.
func newSchema(t testing.TB) string {
	t.Helper()
	dsn := needPostgres(t)
	b := make([]byte, 6)
	rand.Read(b)
	name := "parley_test_" + hex.EncodeToString(b)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Errorf("drop schema %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+name+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", name, err)
		}
	})
	return name
}

// openTest opens a store, in a fresh schema unless cfg names one, that is
// closed when t ends.
func openTest(t testing.TB, cfg Config) *Store {
	t.Helper()
	if cfg.DSN == "" {
		cfg.DSN = needPostgres(t)
	}
	if cfg.Schema == "" {
		cfg.Schema = newSchema(t)
	}
	if cfg.MaxConns == 0 {
		cfg.MaxConns = 4
	}
	s, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// execSQL runs statements in schema, outside any store.
func execSQL(t testing.TB, schema string, sql string) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, testDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "SET search_path TO "+schema+"; "+sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// vacuumSchema runs VACUUM (ANALYZE) on schema's tables, outside any
// transaction, as autovacuum would in time: it sets the visibility map
// that index-only scans need.
func vacuumSchema(t testing.TB, schema string) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, testDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "SET search_path TO "+schema); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "VACUUM (ANALYZE)"); err != nil {
		t.Fatalf("vacuum %s: %v", schema, err)
	}
}

// backends returns the process ids of the server's backends serving
// connections whose application_name is app.
func backends(t testing.TB, app string) []int {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, testDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, "SELECT pid FROM pg_stat_activity WHERE application_name = $1", app)
	if err != nil {
		t.Fatal(err)
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		t.Fatal(err)
	}
	return pids
}
