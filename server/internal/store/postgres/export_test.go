package postgres

import "time"

// Test helpers for the external tests (package postgres_test).
var (
	OpenTest     = openTest
	NewSchema    = newSchema
	NeedPostgres = needPostgres
	ExecSQL      = execSQL
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
