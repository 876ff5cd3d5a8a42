package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"

	"github.com/parleychat/parley/server/internal/store"
	"github.com/parleychat/parley/server/internal/store/internal/sqlstore"
)

// historySQL reads a page of messages as they are now: the current body
// from the latest edit's row, and the reply's parent with its current
// body, each a primary-key lookup; entries of other kinds are skipped
// while walking the room's seqs.
var historySQL = `SELECT m.seq, m.sender, ` + currentText("m", "e", "mb") + `,
		CASE WHEN m.edit_seq <> 0 THEN coalesce(e.mentions, '') ELSE m.mentions END,
		m.sent_at, m.client_msg_id, m.deleted, coalesce(e.sent_at, 0), m.reply_to_seq,
		p.sender, p.deleted, substr(` + currentText("p", "pe", "pb") + `, 1, %[1]d)
	FROM messages m
	LEFT JOIN messages e ON m.edit_seq <> 0 AND e.room = m.room AND e.seq = m.edit_seq
	LEFT JOIN bodies mb ON mb.id = ` + currentTextID("m", "e") + `
	LEFT JOIN messages p ON m.reply_to_seq <> 0 AND p.room = m.room AND p.seq = m.reply_to_seq AND p.kind = 0
	LEFT JOIN messages pe ON p.edit_seq <> 0 AND pe.room = p.room AND pe.seq = p.edit_seq
	LEFT JOIN bodies pb ON pb.id = ` + currentTextID("p", "pe") + `
	WHERE m.room = ? AND m.seq > ? AND m.seq < ? AND m.kind = 0
	ORDER BY m.seq %[2]s LIMIT ?`

// currentTextID is the SQL for the id in bodies of the current text of
// message m whose latest edit, if any, is joined as e: 0 if that text is
// in its row's own column (or there is none).
func currentTextID(m, e string) string {
	return fmt.Sprintf("CASE WHEN %[1]s.edit_seq <> 0 THEN coalesce(%[2]s.body_id, 0) ELSE %[1]s.body_id END", m, e)
}

// currentText is the SQL for the current text of message m whose latest
// edit, if any, is joined as e, and the text's row in bodies as b (see
// bodyOf).
func currentText(m, e, b string) string {
	return fmt.Sprintf(`CASE WHEN %[3]s.id IS NOT NULL THEN %[4]s
		WHEN %[1]s.edit_seq <> 0 THEN coalesce(%[2]s.body, '') ELSE %[1]s.body END`, m, e, b, liveText(b))
}

var (
	historyAsc  = fmt.Sprintf(historySQL, store.SnippetRunes, "")
	historyDesc = fmt.Sprintf(historySQL, store.SnippetRunes, "DESC")
)

// History implements store.Store: one query for the page, one for the
// reaction counts of its seq range and one for the viewer's reactions
// there, all from what the writer keeps up to date (entries.go).
func (s *Store) History(ctx context.Context, room, viewer string, q store.Query) (_ []store.MessageView, err error) {
	if err := s.gate.Enter(); err != nil {
		return nil, err
	}
	defer s.exit(&err)
	out, err := s.historyPage(ctx, room, q)
	if err != nil {
		return nil, fmt.Errorf("sqlite: history of %q: %w", room, err)
	}
	if len(out) == 0 {
		return out, s.roomExists(ctx, room)
	}
	if err := s.addReactions(ctx, room, viewer, out); err != nil {
		return nil, fmt.Errorf("sqlite: reactions in %q: %w", room, err)
	}
	return out, nil
}

func (s *Store) historyPage(ctx context.Context, room string, q store.Query) ([]store.MessageView, error) {
	if q.Limit <= 0 {
		return nil, nil
	}
	after, before := sqlstore.SeqBounds(q)
	query := historyAsc
	if q.Descending {
		query = historyDesc
	}
	rows, err := s.reads.query(ctx, query, room, after, before, q.Limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return sqlstore.Collect(rows, make([]store.MessageView, 0, min(q.Limit, 1024)), func(row sqlstore.Row) (store.MessageView, error) {
		v := store.MessageView{Message: store.Message{Room: room}}
		var seq, at, editedAt, replyTo int64
		var pSender, pSnippet sql.NullString
		var pDeleted sql.NullBool
		var mentions string
		if err := row.Scan(&seq, &v.Sender, &v.Body, &mentions, &at, &v.ClientMsgID, &v.Deleted, &editedAt, &replyTo, &pSender, &pDeleted, &pSnippet); err != nil {
			return v, err
		}
		v.Seq, v.SentAt, v.EditedAt, v.ReplyToSeq = uint64(seq), fromNanos(at), fromNanos(editedAt), uint64(replyTo)
		if replyTo != 0 {
			v.ReplyTo = &store.ReplyRef{Seq: uint64(replyTo), Sender: pSender.String, Snippet: pSnippet.String, Deleted: pDeleted.Bool}
		}
		var err error
		v.Mentions, err = sqlstore.DecodeMentions(mentions)
		return v, err
	})
}

// addReactions fills in the reactions of the page's messages.
func (s *Store) addReactions(ctx context.Context, room, viewer string, page []store.MessageView) error {
	bySeq, lo, hi := sqlstore.NewReactionPage(page)
	rows, err := s.reads.query(ctx, `SELECT target_seq, emoji, count, users FROM reaction_counts
		WHERE room = ? AND target_seq >= ? AND target_seq <= ? ORDER BY target_seq, first_seq`, room, int64(lo), int64(hi))
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var target int64
		var users string
		var c store.ReactionCount
		if err := rows.Scan(&target, &c.Emoji, &c.Count, &users); err != nil {
			return err
		}
		if err := json.Unmarshal([]byte(users), &c.Users); err != nil {
			return fmt.Errorf("reaction users of seq %d: %w", target, err)
		}
		bySeq.Add(uint64(target), c)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	return s.markMine(ctx, room, viewer, lo, hi, bySeq)
}

// markMine sets Mine on the viewer's own reactions.
func (s *Store) markMine(ctx context.Context, room, viewer string, lo, hi uint64, bySeq sqlstore.ReactionPage) error {
	rows, err := s.reads.query(ctx, `SELECT target_seq, emoji FROM reactions
		WHERE room = ? AND user = ? AND target_seq >= ? AND target_seq <= ?`, room, viewer, int64(lo), int64(hi))
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var target int64
		var emoji string
		if err := rows.Scan(&target, &emoji); err != nil {
			return err
		}
		bySeq.MarkMine(uint64(target), emoji)
	}
	return rows.Err()
}
