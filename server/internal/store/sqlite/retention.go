package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/parleychat/parley/server/internal/store"
	"github.com/parleychat/parley/server/internal/store/internal/sqlstore"
)

// pruneOp deletes the entries of room with after < seq <= upto and those
// that target them.
type pruneOp struct {
	room        string
	after, upto uint64
}

// Prune implements store.Store. It finds each room's bounds through the
// read pool, and the writer commits the deleting steps among the appends.
func (s *Store) Prune(ctx context.Context, p store.Retention) (int, error) {
	cutoff := time.Now().Add(-p.MaxAge).UnixNano()
	return sqlstore.Pruner{
		ListRooms: s.ListRooms,
		Bounds: func(ctx context.Context, room string) (uint64, uint64, error) {
			return s.pruneBounds(ctx, room, p.MaxAge > 0, cutoff)
		},
		NewestMessage: s.newestMessage,
		Delete: func(ctx context.Context, room string, after, upto uint64) (int64, error) {
			res, err := s.do(ctx, op{prune: &pruneOp{room: room, after: after, upto: upto}})
			return res.deleted, err
		},
	}.Prune(ctx, p)
}

// pruneBounds returns the seq before a room's oldest stored message and,
// if byAge, its newest message older than cutoff (0 if none).
func (s *Store) pruneBounds(ctx context.Context, room string, byAge bool, cutoff int64) (before, old uint64, err error) {
	if err := s.gate.Enter(); err != nil {
		return 0, 0, err
	}
	defer s.exit(&err)
	var first, last sql.NullInt64
	if err := s.reads.queryRow(ctx, "SELECT min(seq) FROM messages WHERE room = ?", room).Scan(&first); err != nil {
		return 0, 0, fmt.Errorf("sqlite: prune %q: %w", room, err)
	}
	if byAge {
		// Times never go backwards within a room, so the old messages are a
		// prefix of its seqs.
		err := s.reads.queryRow(ctx, "SELECT max(seq) FROM messages WHERE room = ? AND sent_at < ?", room, cutoff).Scan(&last)
		if err != nil {
			return 0, 0, fmt.Errorf("sqlite: prune %q: %w", room, err)
		}
	}
	if !first.Valid {
		return 0, 0, nil
	}
	return uint64(first.Int64) - 1, uint64(max(last.Int64, 0)), nil
}

// newestMessage returns the seq of room's nth newest message, 0 if it
// holds fewer. It walks the room's entries from the newest, skipping
// those of other kinds: its cost grows with n.
func (s *Store) newestMessage(ctx context.Context, room string, n int) (seq uint64, err error) {
	if err := s.gate.Enter(); err != nil {
		return 0, err
	}
	defer s.exit(&err)
	var got int64
	err = s.reads.queryRow(ctx, "SELECT seq FROM messages WHERE room = ? AND kind = 0 ORDER BY seq DESC LIMIT 1 OFFSET ?", room, n-1).Scan(&got)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return 0, nil
	case err != nil:
		return 0, fmt.Errorf("sqlite: prune %q: %w", room, err)
	}
	return uint64(got), nil
}
