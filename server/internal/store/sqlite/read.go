package sqlite

import (
	"context"
	"fmt"

	"github.com/parleychat/parley/server/internal/store"
	"github.com/parleychat/parley/server/internal/store/internal/sqlstore"
)

const roomColumns = "name, visibility, created_by, created_at, last_seq, last_message_at"

// Room implements store.Store.
func (s *Store) Room(ctx context.Context, name string) (_ store.Room, err error) {
	if err := s.gate.Enter(); err != nil {
		return store.Room{}, err
	}
	defer s.exit(&err)
	row := s.reads.queryRow(ctx, "SELECT "+roomColumns+" FROM rooms WHERE name = ?", name)
	r, err := scanRoom(row)
	if err != nil {
		return store.Room{}, sqlstore.RoomErr("sqlite", name, err)
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
	out, err := s.queryRooms(ctx, "SELECT "+roomColumns+" FROM rooms WHERE name > ? ORDER BY name LIMIT ?", afterName, limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list rooms: %w", err)
	}
	return out, nil
}

func (s *Store) queryRooms(ctx context.Context, query string, args ...any) ([]store.Room, error) {
	rows, err := s.reads.query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return sqlstore.Collect(rows, nil, scanRoom)
}

func scanRoom(row sqlstore.Row) (store.Room, error) {
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

var (
	entryColumns       = "seq, sender, " + bodyOf("messages") + ", sent_at, client_msg_id, kind, target_seq, reply_to_seq, emoji, mentions"
	selectMessagesAsc  = "SELECT " + entryColumns + " FROM messages WHERE room = ? AND seq > ? AND seq < ? ORDER BY seq LIMIT ?"
	selectMessagesDesc = "SELECT " + entryColumns + " FROM messages WHERE room = ? AND seq > ? AND seq < ? ORDER BY seq DESC LIMIT ?"
)

func (s *Store) queryMessages(ctx context.Context, room string, q store.Query) ([]store.Message, error) {
	if q.Limit <= 0 {
		return nil, nil // SQLite would read a negative LIMIT as no limit at all
	}
	after, before := sqlstore.SeqBounds(q)
	query := selectMessagesAsc
	if q.Descending {
		query = selectMessagesDesc
	}
	rows, err := s.reads.query(ctx, query, room, after, before, q.Limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return sqlstore.Collect(rows, make([]store.Message, 0, min(q.Limit, 1024)), func(row sqlstore.Row) (store.Message, error) {
		m := store.Message{Room: room}
		var seq, at, target, replyTo int64
		var mentions string
		if err := row.Scan(&seq, &m.Sender, &m.Body, &at, &m.ClientMsgID, &m.Kind, &target, &replyTo, &m.Emoji, &mentions); err != nil {
			return m, err
		}
		m.Seq, m.SentAt, m.TargetSeq, m.ReplyToSeq = uint64(seq), fromNanos(at), uint64(target), uint64(replyTo)
		var err error
		m.Mentions, err = sqlstore.DecodeMentions(mentions)
		return m, err
	})
}

func (s *Store) roomExists(ctx context.Context, room string) error {
	var one int
	return sqlstore.RoomErr("sqlite", room, s.reads.queryRow(ctx, "SELECT 1 FROM rooms WHERE name = ?", room).Scan(&one))
}
