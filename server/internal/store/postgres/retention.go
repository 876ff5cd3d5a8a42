package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/parleychat/parley/server/internal/store"
	"github.com/parleychat/parley/server/internal/store/internal/sqlstore"
)

// Prune implements store.Store. Each deleting step is its own short
// transaction beside the writer: deleting old rows locks only those rows,
// never the rooms row that appends wait for. Ages are measured by the
// database's clock, the one that stamped the messages. Several nodes may
// prune at once: a step finds nothing left to delete.
func (s *Store) Prune(ctx context.Context, p store.Retention) (int, error) {
	return sqlstore.Pruner{
		ListRooms: s.ListRooms,
		Bounds: func(ctx context.Context, room string) (uint64, uint64, error) {
			return s.pruneBounds(ctx, room, p.MaxAge)
		},
		NewestMessage: s.newestMessage,
		Delete:        s.pruneStep,
	}.Prune(ctx, p)
}

// newestMessage returns the seq of room's nth newest message, 0 if it
// holds fewer. It walks the room's entries from the newest, skipping
// those of other kinds: its cost grows with n.
func (s *Store) newestMessage(ctx context.Context, room string, n int) (seq uint64, err error) {
	err = s.call(ctx, func(ctx context.Context) error {
		var got int64
		err := s.pool.QueryRow(ctx, "SELECT seq FROM messages WHERE room = $1 AND kind = 0 ORDER BY seq DESC OFFSET $2 LIMIT 1", room, n-1).Scan(&got)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return nil
		case err != nil:
			return fmt.Errorf("postgres: prune %q: %w", room, err)
		}
		seq = uint64(got)
		return nil
	})
	return seq, err
}

// pruneStep deletes the entries of room with after < seq <= upto, those
// that target them and their reactions, in one transaction that holds the
// room's row: a writer's batch that checks an entry against a message
// (entries.go) holds it too, so no edit or reaction is stored for a
// message while it is being pruned. It returns how many entries it
// deleted.
func (s *Store) pruneStep(ctx context.Context, room string, after, upto uint64) (n int64, err error) {
	err = s.call(ctx, func(ctx context.Context) error {
		err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			n = 0
			if _, err := tx.Exec(ctx, "SELECT 1 FROM rooms WHERE name = $1 FOR NO KEY UPDATE", room); err != nil {
				return err
			}
			for _, q := range []string{
				// The read-state counters first: they read the rows about to
				// go. Retention removes a prefix of the room's seqs, so the
				// newest ord it removes is that of the newest row in range.
				`UPDATE rooms SET pruned_ord = greatest(pruned_ord, coalesce(
					(SELECT ord FROM messages WHERE room = $1 AND seq > $2 AND seq <= $3 ORDER BY seq DESC LIMIT 1), 0))
					WHERE name = $1`,
				`UPDATE room_senders rs SET pruned = rs.pruned + p.n
					FROM (SELECT sender, count(*) AS n FROM messages WHERE room = $1 AND seq > $2 AND seq <= $3 AND kind = 0 GROUP BY sender) AS p
					WHERE rs.room = $1 AND rs.sender = p.sender`,
				"DELETE FROM mentions WHERE room = $1 AND seq > $2 AND seq <= $3",
				"DELETE FROM messages WHERE room = $1 AND seq > $2 AND seq <= $3",
				"DELETE FROM messages WHERE room = $1 AND target_seq > $2 AND target_seq <= $3 AND target_seq <> 0",
				"DELETE FROM reactions WHERE room = $1 AND target_seq > $2 AND target_seq <= $3",
				"DELETE FROM reaction_counts WHERE room = $1 AND target_seq > $2 AND target_seq <= $3",
			} {
				tag, err := tx.Exec(ctx, q, room, sqlstore.ClampSeq(after), sqlstore.ClampSeq(upto))
				if err != nil {
					return err
				}
				if strings.HasPrefix(q, "DELETE FROM messages") {
					n += tag.RowsAffected()
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("postgres: prune room %q: %w", room, err)
		}
		return nil
	})
	return n, err
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
