// Package sqlstore holds what the SQLite and PostgreSQL stores share
// beyond group commit: the gate that Close shuts, scanning rows, seq
// bounds, and the walk of retention. What their SQL dialects make
// different (the statements, how times are stored, how errors are
// classified) stays in each store.
package sqlstore

import (
	"sync"

	"github.com/parleychat/parley/server/internal/store"
)

// Gate admits a store's calls until Close, which waits for the calls in
// progress. The zero value is open.
type Gate struct {
	mu     sync.RWMutex // held for reading by every call in progress
	closed bool
}

// Enter marks a call in progress, or reports store.ErrClosed after Close.
// After a nil error the caller must call Exit when done.
func (g *Gate) Enter() error {
	g.mu.RLock()
	if g.closed {
		g.mu.RUnlock()
		return store.ErrClosed
	}
	return nil
}

// Exit ends a call that Enter admitted.
func (g *Gate) Exit() { g.mu.RUnlock() }

// Close waits for the calls in progress, shuts the gate and runs release.
// A second Close returns nil and runs nothing.
func (g *Gate) Close(release func() error) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return nil
	}
	g.closed = true
	return release()
}
