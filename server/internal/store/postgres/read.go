package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/parleychat/parley/server/internal/store"
	"github.com/parleychat/parley/server/internal/store/internal/sqlstore"
)

const roomColumns = "name, visibility, created_by, created_at, last_seq, last_message_at"

// call runs fn for a Store method: it reports store.ErrClosed after Close,
// bounds fn by QueryTimeout and marks the errors that say the server is out
// of reach with store.ErrUnavailable.
func (s *Store) call(ctx context.Context, fn func(ctx context.Context) error) error {
	if err := s.gate.Enter(); err != nil {
		return err
	}
	defer s.gate.Exit()
	ctx, cancel := s.queryCtx(ctx)
	defer cancel()
	return classify(fn(ctx))
}

// Room implements store.Store.
func (s *Store) Room(ctx context.Context, name string) (r store.Room, err error) {
	err = s.call(ctx, func(ctx context.Context) error {
		row := s.pool.QueryRow(ctx, "SELECT "+roomColumns+" FROM rooms WHERE name = $1", name)
		r, err = scanRoom(row)
		return sqlstore.RoomErr("postgres", name, err)
	})
	return r, err
}

// ListRooms implements store.Store.
func (s *Store) ListRooms(ctx context.Context, afterName string, limit int) (out []store.Room, err error) {
	err = s.call(ctx, func(ctx context.Context) error {
		if limit <= 0 {
			return nil // PostgreSQL rejects a negative LIMIT
		}
		out, err = queryRooms(ctx, s, "SELECT "+roomColumns+" FROM rooms WHERE name > $1 ORDER BY name LIMIT $2", afterName, limit)
		if err != nil {
			return fmt.Errorf("postgres: list rooms: %w", err)
		}
		return nil
	})
	return out, err
}

func queryRooms(ctx context.Context, s *Store, sql string, args ...any) ([]store.Room, error) {
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return sqlstore.Collect(rows, nil, scanRoom)
}

func scanRoom(row sqlstore.Row) (store.Room, error) {
	var r store.Room
	var vis int32
	var seq int64
	var last *time.Time
	if err := row.Scan(&r.Name, &vis, &r.CreatedBy, &r.CreatedAt, &seq, &last); err != nil {
		return store.Room{}, err
	}
	r.Visibility, r.CreatedAt, r.LastSeq = store.Visibility(vis), r.CreatedAt.UTC(), uint64(seq)
	if last != nil {
		r.LastMessageAt = last.UTC()
	}
	return r, nil
}

// Messages implements store.Store.
func (s *Store) Messages(ctx context.Context, room string, q store.Query) (out []store.Message, err error) {
	err = s.call(ctx, func(ctx context.Context) error {
		if out, err = s.queryMessages(ctx, room, q); err != nil {
			return fmt.Errorf("postgres: messages of %q: %w", room, err)
		}
		if len(out) == 0 {
			// Only an empty page needs to tell an empty range from a missing room.
			return s.roomExists(ctx, room)
		}
		return nil
	})
	return out, err
}

const (
	entryColumns       = "seq, sender, body, sent_at, client_msg_id, kind, target_seq, reply_to_seq, emoji, mentions"
	selectMessagesAsc  = "SELECT " + entryColumns + " FROM messages WHERE room = $1 AND seq > $2 AND seq < $3 ORDER BY seq LIMIT $4"
	selectMessagesDesc = "SELECT " + entryColumns + " FROM messages WHERE room = $1 AND seq > $2 AND seq < $3 ORDER BY seq DESC LIMIT $4"
)

func (s *Store) queryMessages(ctx context.Context, room string, q store.Query) ([]store.Message, error) {
	if q.Limit <= 0 {
		return nil, nil
	}
	after, before := sqlstore.SeqBounds(q)
	query := selectMessagesAsc
	if q.Descending {
		query = selectMessagesDesc
	}
	rows, err := s.pool.Query(ctx, query, room, after, before, q.Limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return sqlstore.Collect(rows, make([]store.Message, 0, min(q.Limit, 1024)), func(row sqlstore.Row) (store.Message, error) {
		m := store.Message{Room: room}
		var seq, target, replyTo int64
		var kind int16
		var mentions string
		if err := row.Scan(&seq, &m.Sender, &m.Body, &m.SentAt, &m.ClientMsgID, &kind, &target, &replyTo, &m.Emoji, &mentions); err != nil {
			return m, err
		}
		m.Seq, m.SentAt, m.Kind, m.TargetSeq, m.ReplyToSeq = uint64(seq), m.SentAt.UTC(), store.Kind(kind), uint64(target), uint64(replyTo)
		var err error
		m.Mentions, err = sqlstore.DecodeMentions(mentions)
		return m, err
	})
}

func (s *Store) roomExists(ctx context.Context, room string) error {
	var one int
	return sqlstore.RoomErr("postgres", room, s.pool.QueryRow(ctx, "SELECT 1 FROM rooms WHERE name = $1", room).Scan(&one))
}
