package sqlite

import (
	"context"
	"fmt"

	"github.com/parleychat/parley/server/internal/store/internal/sqlstore"
)

// IsMember implements store.Store.
func (s *Store) IsMember(ctx context.Context, room, user string) (_ bool, err error) {
	if err := s.gate.Enter(); err != nil {
		return false, err
	}
	defer s.exit(&err)
	var n int
	err = s.reads.queryRow(ctx, "SELECT count(*) FROM members WHERE room = ? AND user = ?", room, user).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("sqlite: read membership of %q: %w", room, err)
	}
	return n > 0, nil
}

// Members implements store.Store.
func (s *Store) Members(ctx context.Context, room string) (_ []string, err error) {
	if err := s.gate.Enter(); err != nil {
		return nil, err
	}
	defer s.exit(&err)
	if err := s.roomExists(ctx, room); err != nil {
		return nil, err
	}
	rows, err := s.reads.query(ctx, "SELECT user FROM members WHERE room = ? ORDER BY user", room)
	if err != nil {
		return nil, fmt.Errorf("sqlite: read members of %q: %w", room, err)
	}
	defer rows.Close()
	out, err := sqlstore.Collect(rows, []string{}, sqlstore.ScanString)
	if err != nil {
		return nil, fmt.Errorf("sqlite: read members of %q: %w", room, err)
	}
	return out, nil
}
