package postgres

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Test helpers for the external tests (package postgres_test).
var (
	OpenTest     = openTest
	NewSchema    = newSchema
	NeedPostgres = needPostgres
	ExecSQL      = execSQL
	VacuumSchema = vacuumSchema
	Backends     = backends
)

// CarefulBatches is how many batches s redid carefully because the unique
// index found a duplicate of a stored message.
func CarefulBatches(s *Store) int64 { return s.w.careful.Load() }

// Batches is how many batches s's writer has run.
func Batches(s *Store) int64 { return s.w.batches.Load() }

// SetPingIdle sets pingIdle for the stores opened from now on and returns
// a function that restores it.
func SetPingIdle(d time.Duration) func() {
	old := pingIdle
	pingIdle = d
	return func() { pingIdle = old }
}

// MigrateTo brings schema to its first n migrations, as an older binary
// would have left it.
func MigrateTo(t testing.TB, schema string, n int) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, testDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := schemaVersion(ctx, conn, schema); err != nil {
		t.Fatal(err)
	}
	for v := range n {
		if err := applyMigration(ctx, conn, v); err != nil {
			t.Fatalf("migration %d: %v", v+1, err)
		}
	}
}
