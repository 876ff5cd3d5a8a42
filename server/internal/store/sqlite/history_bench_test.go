package sqlite_test

import (
	"testing"

	"github.com/parleychat/parley/server/internal/store/sqlite"
	"github.com/parleychat/parley/server/internal/store/storetest"
)

// BenchmarkHistory reads pages of 50 from a room of 100,000 messages with
// reactions, edits and replies (storetest.BenchHistory).
func BenchmarkHistory(b *testing.B) {
	s := openTemp(b, sqlite.Config{})
	defer s.Close()
	storetest.BenchHistory(b, s, cpuTime)
}
