package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"

	"github.com/parleychat/parley/server/internal/store"
)

const roomColumns = "name, visibility, created_by, created_at, last_seq, last_message_at"

// Room implements store.Store.
func (s *Store) Room(ctx context.Context, name string) (_ store.Room, err error) {
	if err := s.gate.Enter(); err != nil {
		return store.Room{}, err
	}
	defer s.exit(&err)
	row := s.read.QueryRowContext(ctx, "SELECT "+roomColumns+" FROM rooms WHERE name = ?", name)
	r, err := scanRoom(row)
	if errors.Is(err, sql.ErrNoRows) {
		return store.Room{}, fmt.Errorf("room %q: %w", name, store.ErrRoomNotFound)
	}
	if err != nil {
		return store.Room{}, fmt.Errorf("sqlite: read room %q: %w", name, err)
	}
	return r, nil
}

// ListRooms implements store.Store.
func (s *Store) ListRooms(ctx context.Context, afterName string, limit int) (_ []store.Room, err error) {
	if err := s.gate.Enter(); err != nil {
		return nil, err
	}
	defer s.exit(&err)
	if limit <= 0 {
		return nil, nil // SQLite would read a negative LIMIT as no limit at all
	}
	rows, err := s.read.QueryContext(ctx,
		"SELECT "+roomColumns+" FROM rooms WHERE name > ? ORDER BY name LIMIT ?", afterName, limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list rooms: %w", err)
	}
	defer rows.Close()
	var out []store.Room
	for rows.Next() {
		r, err := scanRoom(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: list rooms: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list rooms: %w", err)
	}
	return out, nil
}

func scanRoom(row interface{ Scan(...any) error }) (store.Room, error) {
	var r store.Room
	var vis int
	var created, seq, last int64
	if err := row.Scan(&r.Name, &vis, &r.CreatedBy, &created, &seq, &last); err != nil {
		return store.Room{}, err
	}
	r.Visibility, r.CreatedAt = store.Visibility(vis), fromNanos(created)
	r.LastSeq, r.LastMessageAt = uint64(seq), fromNanos(last)
	return r, nil
}

// Messages implements store.Store.
func (s *Store) Messages(ctx context.Context, room string, q store.Query) (_ []store.Message, err error) {
	if err := s.gate.Enter(); err != nil {
		return nil, err
	}
	defer s.exit(&err)
	out, err := s.queryMessages(ctx, room, q)
	if err != nil {
		return nil, fmt.Errorf("sqlite: messages of %q: %w", room, err)
	}
	if len(out) == 0 {
		// Only an empty page needs to tell an empty range from a missing room.
		if err := s.roomExists(ctx, room); err != nil {
			return nil, err
		}
	}
	return out, nil
}

const (
	selectMessagesAsc  = "SELECT seq, sender, body, sent_at, client_msg_id FROM messages WHERE room = ? AND seq > ? AND seq < ? ORDER BY seq LIMIT ?"
	selectMessagesDesc = "SELECT seq, sender, body, sent_at, client_msg_id FROM messages WHERE room = ? AND seq > ? AND seq < ? ORDER BY seq DESC LIMIT ?"
)

func (s *Store) queryMessages(ctx context.Context, room string, q store.Query) ([]store.Message, error) {
	if q.Limit <= 0 {
		return nil, nil // SQLite would read a negative LIMIT as no limit at all
	}
	after, before := clampSeq(q.After), int64(math.MaxInt64)
	if q.Before != 0 {
		before = clampSeq(q.Before)
	}
	query := selectMessagesAsc
	if q.Descending {
		query = selectMessagesDesc
	}
	rows, err := s.read.QueryContext(ctx, query, room, after, before, q.Limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := make([]store.Message, 0, min(q.Limit, 1024))
	for rows.Next() {
		m := store.Message{Room: room}
		var seq, at int64
		if err := rows.Scan(&seq, &m.Sender, &m.Body, &at, &m.ClientMsgID); err != nil {
			return nil, err
		}
		m.Seq, m.SentAt = uint64(seq), fromNanos(at)
		out = append(out, m)
	}
	return out, rows.Err()
}

// clampSeq maps a seq bound onto SQLite's signed integers; no stored seq
// comes near the top of the range.
func clampSeq(seq uint64) int64 {
	return int64(min(seq, math.MaxInt64))
}

func (s *Store) roomExists(ctx context.Context, room string) error {
	var one int
	err := s.read.QueryRowContext(ctx, "SELECT 1 FROM rooms WHERE name = ?", room).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("room %q: %w", room, store.ErrRoomNotFound)
	}
	if err != nil {
		return fmt.Errorf("sqlite: read room %q: %w", room, err)
	}
	return nil
}
