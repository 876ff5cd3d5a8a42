package sqlite

import (
	"context"
	"fmt"
	"strings"

	"github.com/parleychat/parley/server/internal/store"
	"github.com/parleychat/parley/server/internal/store/internal/sqlstore"
)

// maxCheckProblems bounds the problems Check reports.
const maxCheckProblems = 10

// Check runs SQLite's quick_check over the whole database. It returns nil
// if the database is sound; an error marked store.ErrCorrupt naming the
// first problems if it is not; ctx's error (wrapped) if ctx ended first,
// which interrupts the check. quick_check reads every page once, so it
// takes time in proportion to the database's size (docs/performance.md
// has a figure); it skips the slower cross-check of indexes against their
// tables that integrity_check adds.
func (s *Store) Check(ctx context.Context) (err error) {
	if err := s.gate.Enter(); err != nil {
		return err
	}
	defer s.exit(&err)
	problems, err := s.quickCheck(ctx)
	if ctx.Err() != nil {
		return fmt.Errorf("sqlite: quick_check of %s did not finish: %w", s.cfg.Path, ctx.Err())
	}
	if err != nil {
		return fmt.Errorf("sqlite: quick_check of %s: %w", s.cfg.Path, err)
	}
	if len(problems) == 1 && problems[0] == "ok" {
		return nil
	}
	return fmt.Errorf("%w: sqlite: quick_check of %s: %s", store.ErrCorrupt, s.cfg.Path, strings.Join(problems, "; "))
}

func (s *Store) quickCheck(ctx context.Context) ([]string, error) {
	rows, err := s.read.QueryContext(ctx, fmt.Sprintf("PRAGMA quick_check(%d)", maxCheckProblems))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return sqlstore.Collect(rows, nil, sqlstore.ScanString)
}
