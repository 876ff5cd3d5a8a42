package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/parleychat/parley/server/internal/store"
	"github.com/parleychat/parley/server/internal/store/internal/sqlstore"
)

// pruneChunk is how many seqs one prune step deletes. Each step is its own
// short transaction, beside the writer: deleting old rows locks only those
// rows, never the rooms row that appends wait for.
const pruneChunk = 1000

// Prune implements store.Store. It works out, room by room, the last seq
// to delete, then deletes up to it in steps of pruneChunk. Ages are
// measured by the database's clock, the one that stamped the messages.
// Several nodes may prune at once: a step finds nothing left to delete.
func (s *Store) Prune(ctx context.Context, p store.Retention) (int, error) {
	if p.MaxAge <= 0 && p.MaxMessages <= 0 {
		return 0, nil
	}
	total := 0
	for after := ""; ; {
		rooms, err := s.ListRooms(ctx, after, 500)
		if err != nil {
			return total, err
		}
		for _, r := range rooms {
			n, err := s.pruneRoom(ctx, r, p)
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

func (s *Store) pruneRoom(ctx context.Context, r store.Room, p store.Retention) (int, error) {
	var upto uint64
	if p.MaxMessages > 0 && r.LastSeq > uint64(p.MaxMessages) {
		upto = r.LastSeq - uint64(p.MaxMessages)
	}
	first, old, err := s.pruneBounds(ctx, r.Name, p.MaxAge)
	if err != nil {
		return 0, err
	}
	upto = max(upto, old)
	total := 0
	for after := first; after < upto; after += pruneChunk {
		var n int64
		err := s.call(ctx, func(ctx context.Context) error {
			tag, err := s.pool.Exec(ctx, "DELETE FROM messages WHERE room = $1 AND seq > $2 AND seq <= $3",
				r.Name, sqlstore.ClampSeq(after), sqlstore.ClampSeq(min(after+pruneChunk, upto)))
			if err != nil {
				return fmt.Errorf("postgres: prune room %q: %w", r.Name, err)
			}
			n = tag.RowsAffected()
			return nil
		})
		total += int(n)
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// pruneBounds returns the seq before a room's oldest stored message and,
// if maxAge is positive, its newest message older than maxAge (0 if none).
func (s *Store) pruneBounds(ctx context.Context, room string, maxAge time.Duration) (before, old uint64, err error) {
	var first, last *int64
	err = s.call(ctx, func(ctx context.Context) error {
		if err := s.pool.QueryRow(ctx, "SELECT min(seq) FROM messages WHERE room = $1", room).Scan(&first); err != nil {
			return fmt.Errorf("postgres: prune %q: %w", room, err)
		}
		if maxAge <= 0 {
			return nil
		}
		// Times never go backwards within a room, so the old messages are a
		// prefix of its seqs.
		err := s.pool.QueryRow(ctx, `SELECT max(seq) FROM messages
			WHERE room = $1 AND sent_at < clock_timestamp() - $2 * interval '1 microsecond'`,
			room, maxAge.Microseconds()).Scan(&last)
		if err != nil {
			return fmt.Errorf("postgres: prune %q: %w", room, err)
		}
		return nil
	})
	if err != nil || first == nil {
		return 0, 0, err
	}
	if last != nil {
		old = uint64(*last)
	}
	return uint64(*first) - 1, old, nil
}
