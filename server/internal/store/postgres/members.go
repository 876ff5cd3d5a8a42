package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/parleychat/parley/server/internal/store"
	"github.com/parleychat/parley/server/internal/store/internal/sqlstore"
)

// CreateRoom implements store.Store. It commits on its own, beside the
// writer: a new rooms row locks nothing that appends wait for. A name that
// another node creates at the same moment is taken by exactly one of them.
func (s *Store) CreateRoom(ctx context.Context, r store.Room) (out store.Room, err error) {
	err = s.call(ctx, func(ctx context.Context) error {
		return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			out, err = createRoom(ctx, tx, r)
			return err
		})
	})
	return out, err
}

func createRoom(ctx context.Context, tx pgx.Tx, r store.Room) (store.Room, error) {
	err := tx.QueryRow(ctx, `INSERT INTO rooms (name, visibility, created_by, created_at)
		VALUES ($1, $2, $3, statement_timestamp()) ON CONFLICT (name) DO NOTHING RETURNING created_at`,
		r.Name, int32(r.Visibility), r.CreatedBy).Scan(&r.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Room{}, fmt.Errorf("create room %q: %w", r.Name, store.ErrRoomExists)
	}
	if err != nil {
		return store.Room{}, fmt.Errorf("postgres: create room %q: %w", r.Name, err)
	}
	if r.Visibility != store.Public {
		members := append([]string{r.CreatedBy}, r.Members...)
		if _, err := tx.Exec(ctx, `INSERT INTO members (room, "user") SELECT $1, unnest($2::text[])
			ON CONFLICT DO NOTHING`, r.Name, members); err != nil {
			return store.Room{}, fmt.Errorf("postgres: add members to room %q: %w", r.Name, err)
		}
	}
	r.CreatedAt, r.LastSeq, r.LastMessageAt, r.Members = r.CreatedAt.UTC(), 0, time.Time{}, nil
	return r, nil
}

// AddMember implements store.Store.
func (s *Store) AddMember(ctx context.Context, room, user string) error {
	return s.call(ctx, func(ctx context.Context) error {
		_, err := s.pool.Exec(ctx, `INSERT INTO members (room, "user") VALUES ($1, $2) ON CONFLICT DO NOTHING`, room, user)
		if isForeignKeyViolation(err) {
			return fmt.Errorf("room %q: %w", room, store.ErrRoomNotFound)
		}
		if err != nil {
			return fmt.Errorf("postgres: add member to room %q: %w", room, err)
		}
		return nil
	})
}

// RemoveMember implements store.Store.
func (s *Store) RemoveMember(ctx context.Context, room, user string) error {
	return s.call(ctx, func(ctx context.Context) error {
		var exists bool
		err := s.pool.QueryRow(ctx, `WITH gone AS (DELETE FROM members WHERE room = $1 AND "user" = $2)
			SELECT EXISTS (SELECT 1 FROM rooms WHERE name = $1)`, room, user).Scan(&exists)
		if err != nil {
			return fmt.Errorf("postgres: remove member from room %q: %w", room, err)
		}
		if !exists {
			return fmt.Errorf("room %q: %w", room, store.ErrRoomNotFound)
		}
		return nil
	})
}

// IsMember implements store.Store.
func (s *Store) IsMember(ctx context.Context, room, user string) (is bool, err error) {
	err = s.call(ctx, func(ctx context.Context) error {
		err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM members WHERE room = $1 AND "user" = $2)`, room, user).Scan(&is)
		if err != nil {
			return fmt.Errorf("postgres: read membership of %q: %w", room, err)
		}
		return nil
	})
	return is, err
}

// Members implements store.Store.
func (s *Store) Members(ctx context.Context, room string) (out []string, err error) {
	err = s.call(ctx, func(ctx context.Context) error {
		if err := s.roomExists(ctx, room); err != nil {
			return err
		}
		rows, err := s.pool.Query(ctx, `SELECT "user" FROM members WHERE room = $1 ORDER BY "user"`, room)
		if err != nil {
			return fmt.Errorf("postgres: read members of %q: %w", room, err)
		}
		defer rows.Close()
		if out, err = sqlstore.Collect(rows, []string{}, sqlstore.ScanString); err != nil {
			return fmt.Errorf("postgres: read members of %q: %w", room, err)
		}
		return nil
	})
	return out, err
}
