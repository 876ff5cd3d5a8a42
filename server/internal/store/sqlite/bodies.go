package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/parleychat/parley/server/internal/store"
)

// The texts of messages and edits live in the bodies table (migration 8),
// where nothing moves once written: ids come from the writer in order, so
// every insert lands at the table's end, and a delete overwrites a text
// with as many zero bytes, in place. A deleted text then leaves no copy in
// the file once the WAL is checkpointed, which a text kept in the log's
// own rows could not promise (see the migration).

// unknownBody is batchState.lastBody when the writer must read the last
// id from the table (at first, and after a rollback).
const unknownBody = -1

func prepareBodies(p func(string) *sql.Stmt, st *statements) {
	st.selLastBody = p("SELECT coalesce(max(id), 0) FROM bodies")
	// zeroblob of the text's length in bytes: the same record size, so
	// SQLite overwrites the cell where it is.
	const zeroed = "body = zeroblob(length(CAST(body AS BLOB)))"
	st.eraseBody = p("UPDATE bodies SET " + zeroed + " WHERE id = (SELECT body_id FROM messages WHERE room = ? AND seq = ? AND body_id <> 0)")
	st.eraseEditBodies = p(fmt.Sprintf(`UPDATE bodies SET %s WHERE id IN (SELECT body_id FROM messages
		WHERE room = ? AND target_seq = ? AND target_seq <> 0 AND kind = %d AND body_id <> 0)`, zeroed, store.KindEdit))
	// The texts of the entries a prune step deletes: the stretch's own and
	// those of the entries that target it (edits), found as delMsgs and
	// delTargeting find them.
	st.delPrunedBodies = p(`DELETE FROM bodies WHERE id IN (
		SELECT body_id FROM messages WHERE room = ?1 AND seq > ?2 AND seq <= ?3 AND body_id <> 0
		UNION ALL
		SELECT body_id FROM messages WHERE room = ?1 AND target_seq > ?2 AND target_seq <= ?3 AND target_seq <> 0 AND body_id <> 0)`)
}

// bodyOf is the SQL expression for the text of the messages row aliased
// t: from bodies if it names a row there, else its own column. An erased
// text is a blob of zeros, read as empty; its row stays named, so that
// retention deletes it with its entry.
func bodyOf(t string) string {
	return fmt.Sprintf(`CASE WHEN %[1]s.body_id = 0 THEN %[1]s.body
		ELSE coalesce((SELECT %[2]s FROM bodies WHERE id = %[1]s.body_id), '') END`, t, liveText("bodies"))
}

// liveText is the SQL for the text of the bodies row aliased b: empty once
// a delete erased it (a blob of zeros).
func liveText(b string) string {
	return fmt.Sprintf("CASE WHEN typeof(%[1]s.body) = 'text' THEN %[1]s.body ELSE '' END", b)
}

// writeBodies gives each of the batch's rows with a text the next id and
// inserts the texts, in as few statements as the prepared sizes allow.
// Call it after the rows are sorted, before they are inserted.
func (b *batchState) writeBodies(ctx context.Context, st *statements) error {
	if b.nextBody == unknownBody {
		if err := st.selLastBody.QueryRowContext(ctx).Scan(&b.nextBody); err != nil {
			return fmt.Errorf("read the last text's id: %w", err)
		}
	}
	texts := b.texts[:0]
	for i := range b.rows {
		if r := &b.rows[i]; r.Body != "" {
			b.nextBody++
			r.bodyID = b.nextBody
			texts = append(texts, i)
		}
	}
	b.texts = texts
	return execRows(ctx, st.insBodies, texts, &b.args, "insert texts", nil, func(args []any, i int) []any {
		return append(args, b.rows[i].bodyID, b.rows[i].Body)
	})
}
