package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"sync"
)

// readStmts prepares the read pool's queries once. modernc.org/sqlite
// prepares a query passed as text afresh on every call, and parsing was
// a third of the CPU of a page of history (docs/performance.md, "Reads
// parse once"); a prepared statement is parsed once per pooled connection
// (database/sql prepares it on each connection it runs on) and reset
// after each use. The queries are the package's constants and the few
// strings it builds from them, a small fixed set; maxReadStmts bounds the
// cache anyway, past which a query runs unprepared.
type readStmts struct {
	db *sql.DB
	mu sync.RWMutex
	m  map[string]*sql.Stmt // by query text
}

// maxReadStmts is the most statements readStmts keeps.
const maxReadStmts = 64

// stmt returns the prepared statement of query, preparing it on first
// use; nil if the cache is full.
func (r *readStmts) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	r.mu.RLock()
	st, ok := r.m[query]
	full := len(r.m) >= maxReadStmts
	r.mu.RUnlock()
	if ok || full {
		return st, nil
	}
	st, err := r.db.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if had, ok := r.m[query]; ok { // prepared meanwhile by another call
		st.Close()
		return had, nil
	}
	if r.m == nil {
		r.m = make(map[string]*sql.Stmt)
	}
	r.m[query] = st
	return st, nil
}

// query runs query on the read pool, prepared.
func (r *readStmts) query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	st, err := r.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	if st == nil {
		return r.db.QueryContext(ctx, query, args...)
	}
	return st.QueryContext(ctx, args...)
}

// queryRow runs query on the read pool, prepared, for at most one row.
// A query that cannot be prepared runs unprepared, so that its error
// comes with the row as usual.
func (r *readStmts) queryRow(ctx context.Context, query string, args ...any) *sql.Row {
	if st, err := r.stmt(ctx, query); err == nil && st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return r.db.QueryRowContext(ctx, query, args...)
}

// close closes the prepared statements; the pool is closed after.
func (r *readStmts) close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var errs []error
	for _, st := range r.m {
		errs = append(errs, st.Close())
	}
	r.m = nil
	return errors.Join(errs...)
}
