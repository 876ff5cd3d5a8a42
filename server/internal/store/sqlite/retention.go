package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/parleychat/parley/server/internal/store"
)

// pruneOp deletes the messages of room with after < seq <= upto.
type pruneOp struct {
	room        string
	after, upto uint64
}

// pruneChunk is how many seqs one prune step deletes: the step shares a
// batch with appends, so it must stay short.
const pruneChunk = 1000

// Prune implements store.Store. It works out, room by room, the last seq
// to delete (reading through the read pool), then deletes up to it in
// steps of pruneChunk that the writer commits among the appends.
func (s *Store) Prune(ctx context.Context, p store.Retention) (int, error) {
	if p.MaxAge <= 0 && p.MaxMessages <= 0 {
		return 0, nil
	}
	cutoff := time.Now().Add(-p.MaxAge).UnixNano()
	total := 0
	for after := ""; ; {
		rooms, err := s.ListRooms(ctx, after, 500)
		if err != nil {
			return total, err
		}
		for _, r := range rooms {
			n, err := s.pruneRoom(ctx, r, p, cutoff)
			total += n
			if err != nil {
				return total, err
			}
		}
		if len(rooms) < 500 {
			return total, nil
		}
		after = rooms[len(rooms)-1].Name
	}
}

func (s *Store) pruneRoom(ctx context.Context, r store.Room, p store.Retention, cutoff int64) (int, error) {
	var upto uint64
	if p.MaxMessages > 0 && r.LastSeq > uint64(p.MaxMessages) {
		upto = r.LastSeq - uint64(p.MaxMessages)
	}
	first, old, err := s.pruneBounds(ctx, r.Name, p.MaxAge > 0, cutoff)
	if err != nil {
		return 0, err
	}
	upto = max(upto, old)
	total := 0
	for after := first; after < upto; after += pruneChunk {
		res, err := s.submit(ctx, op{prune: &pruneOp{room: r.Name, after: after, upto: min(after+pruneChunk, upto)}})
		if err != nil {
			return total, err
		}
		total += int(res.deleted)
	}
	return total, nil
}

// pruneBounds returns the seq before a room's oldest stored message and,
// if byAge, its newest message older than cutoff (0 if none).
func (s *Store) pruneBounds(ctx context.Context, room string, byAge bool, cutoff int64) (before, old uint64, err error) {
	if err := s.gate.Enter(); err != nil {
		return 0, 0, err
	}
	defer s.exit(&err)
	var first, last sql.NullInt64
	if err := s.read.QueryRowContext(ctx, "SELECT min(seq) FROM messages WHERE room = ?", room).Scan(&first); err != nil {
		return 0, 0, fmt.Errorf("sqlite: prune %q: %w", room, err)
	}
	if byAge {
		// Times never go backwards within a room, so the old messages are a
		// prefix of its seqs.
		err := s.read.QueryRowContext(ctx, "SELECT max(seq) FROM messages WHERE room = ? AND sent_at < ?", room, cutoff).Scan(&last)
		if err != nil {
			return 0, 0, fmt.Errorf("sqlite: prune %q: %w", room, err)
		}
	}
	if !first.Valid {
		return 0, 0, nil
	}
	return uint64(first.Int64) - 1, uint64(max(last.Int64, 0)), nil
}
