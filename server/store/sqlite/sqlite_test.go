package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/parleychat/parley/server/store"
	"github.com/parleychat/parley/server/store/sqlite"
	"github.com/parleychat/parley/server/store/storetest"
)

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
	storetest.Run(t, func(t *testing.T) store.Store { return openTemp(t, sqlite.Config{}) })
}
