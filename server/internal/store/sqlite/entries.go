package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/parleychat/parley/server/internal/store"
)

// Entries other than plain messages read and change the message they
// name inside the writer's transaction, so the rules and the write are
// one: the batch loads each named message once (target), keeps what its
// own entries do to it in memory, and writes the changes as it goes. A
// message stored earlier in the same batch is not in the table yet
// (insertRows runs last); its changes go into its row instead.
//
// What History reads is kept up to date here rather than worked out from
// the log when read: a message's row holds the seq of its latest edit and
// whether it was deleted; reactions holds who reacted with what, and
// reaction_counts each emoji's count, first seq and first users.

type seqKey struct {
	room string
	seq  uint64
}

type reactionKey struct {
	room        string
	target      uint64
	emoji, user string
}

// target is a message that entries of the batch name, as the batch sees it.
type target struct {
	found   bool // a message (not another kind, not pruned)
	sender  string
	deleted bool
	row     int   // its row in b.rows if the batch stored it, else -1
	edits   []int // rows in b.rows of the batch's edits of it
	counts  map[string]*reactionCount
	loaded  bool // counts are loaded
	changed []string
}

// reactionCount is an emoji on a target.
type reactionCount struct {
	count    int64
	firstSeq uint64
	changed  bool
}

// ruleError is an entry's broken rule: the caller's error, not the batch's.
type ruleError struct{ err error }

func (r ruleError) Error() string { return r.err.Error() }

func prepareEntries(p func(string) *sql.Stmt, st *statements) {
	st.selTarget = p("SELECT kind, sender, deleted FROM messages WHERE room = ? AND seq = ?")
	st.selReactionCounts = p("SELECT emoji, count, first_seq FROM reaction_counts WHERE room = ? AND target_seq = ?")
	st.selReacted = p("SELECT count(*) FROM reactions WHERE room = ? AND target_seq = ? AND emoji = ? AND user = ?")
	st.insReaction = p("INSERT INTO reactions (room, target_seq, emoji, user, seq) VALUES (?, ?, ?, ?, ?)")
	st.delReaction = p("DELETE FROM reactions WHERE room = ? AND target_seq = ? AND emoji = ? AND user = ?")
	st.updEdit = p("UPDATE messages SET edit_seq = ? WHERE room = ? AND seq = ?")
	st.updDelete = p("UPDATE messages SET deleted = 1, body = '', mentions = '' WHERE room = ? AND seq = ?")
	// "target_seq <> 0" lets SQLite use the partial index messages_by_target.
	st.eraseEdits = p(fmt.Sprintf("UPDATE messages SET body = '', mentions = '' WHERE room = ? AND target_seq = ? AND target_seq <> 0 AND kind = %d", store.KindEdit))
	st.upsReactionCount = p(fmt.Sprintf(`INSERT INTO reaction_counts (room, target_seq, emoji, count, first_seq, users)
		VALUES (?1, ?2, ?3, ?4, ?5, (SELECT json_group_array(user) FROM
			(SELECT user FROM reactions WHERE room = ?1 AND target_seq = ?2 AND emoji = ?3 ORDER BY seq LIMIT %d)))
		ON CONFLICT (room, target_seq, emoji) DO UPDATE SET count = excluded.count, first_seq = excluded.first_seq, users = excluded.users`, store.ReactionUsers))
	st.insEntry = p(`INSERT OR IGNORE INTO messages (room, seq, sender, body, body_id, sent_at, client_msg_id,
		kind, target_seq, reply_to_seq, emoji, edit_seq, deleted, ord, sord, mentions) VALUES (?,?,?,'',?,?,?,?,?,?,?,?,?,?,?,?)`)
	st.delReactionCount = p("DELETE FROM reaction_counts WHERE room = ? AND target_seq = ? AND emoji = ?")
	st.delTargeting = p("DELETE FROM messages WHERE room = ?1 AND target_seq > ?2 AND target_seq <= ?3 AND target_seq <> 0")
	st.delReactions = p("DELETE FROM reactions WHERE room = ? AND target_seq > ? AND target_seq <= ?")
	st.delReactionCounts = p("DELETE FROM reaction_counts WHERE room = ? AND target_seq > ? AND target_seq <= ?")
}

// decide applies the rules to m (store.Decide) with what the database
// and the batch know of its target. A broken rule comes back as a
// ruleError. (Append checked m's shape before queueing it.)
func (b *batchState) decide(ctx context.Context, st *statements, m store.NewMessage, h *head) (noop bool, err error) {
	seq := m.TargetSeq
	if m.Kind == store.KindMessage {
		if m.ReplyToSeq == 0 {
			return false, nil
		}
		seq = m.ReplyToSeq
	}
	t, err := b.target(ctx, st, m.Room, seq)
	if err != nil {
		return false, err
	}
	var rs store.ReactionState
	if t.found && (m.Kind == store.KindReactionAdd || m.Kind == store.KindReactionRemove) {
		if rs, err = b.reactionState(ctx, st, t, m); err != nil {
			return false, err
		}
	}
	room := store.Room{Name: m.Room, Visibility: h.vis, CreatedBy: h.creator}
	noop, err = store.Decide(m, room, store.Target{Found: t.found, Sender: t.sender, Deleted: t.deleted}, rs)
	if err != nil {
		return false, ruleError{err}
	}
	return noop, nil
}

// target returns the batch's view of the message room/seq, reading it
// from the database the first time.
func (b *batchState) target(ctx context.Context, st *statements, room string, seq uint64) (*target, error) {
	key := seqKey{room, seq}
	if t, ok := b.targets[key]; ok {
		return t, nil
	}
	t := &target{row: -1}
	var kind store.Kind
	err := st.selTarget.QueryRowContext(ctx, room, sqlClamp(seq)).Scan(&kind, &t.sender, &t.deleted)
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return nil, fmt.Errorf("read seq %d of room %q: %w", seq, room, err)
	default:
		t.found = kind == store.KindMessage
	}
	b.targets[key] = t
	return t, nil
}

// reactionState loads t's reaction counts (once) and whether m's sender
// has reacted with m's emoji.
func (b *batchState) reactionState(ctx context.Context, st *statements, t *target, m store.NewMessage) (store.ReactionState, error) {
	if !t.loaded {
		if err := b.loadCounts(ctx, st, t, m.Room, m.TargetSeq); err != nil {
			return store.ReactionState{}, err
		}
	}
	key := reactionKey{m.Room, m.TargetSeq, m.Emoji, m.Sender}
	mine, ok := b.reacted[key]
	if !ok && t.row < 0 {
		var n int
		if err := st.selReacted.QueryRowContext(ctx, m.Room, sqlClamp(m.TargetSeq), m.Emoji, m.Sender).Scan(&n); err != nil {
			return store.ReactionState{}, fmt.Errorf("read reaction: %w", err)
		}
		mine = n > 0
		b.reacted[key] = mine
	}
	rs := store.ReactionState{Mine: mine}
	for emoji, c := range t.counts {
		if c.count > 0 {
			rs.Distinct++
			rs.Present = rs.Present || emoji == m.Emoji
		}
	}
	return rs, nil
}

func (b *batchState) loadCounts(ctx context.Context, st *statements, t *target, room string, seq uint64) error {
	t.loaded, t.counts = true, make(map[string]*reactionCount)
	if t.row >= 0 {
		return nil // stored by this batch: no reactions yet
	}
	rows, err := st.selReactionCounts.QueryContext(ctx, room, sqlClamp(seq))
	if err != nil {
		return fmt.Errorf("read reaction counts: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var emoji string
		var c reactionCount
		var first int64
		if err := rows.Scan(&emoji, &c.count, &first); err != nil {
			return fmt.Errorf("read reaction counts: %w", err)
		}
		c.firstSeq = uint64(first)
		t.counts[emoji] = &c
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read reaction counts: %w", err)
	}
	return nil
}

// applyEntry makes msg, stored at b.rows[i], change what it names.
func (b *batchState) applyEntry(ctx context.Context, st *statements, msg store.Message, i int) error {
	key := seqKey{msg.Room, msg.TargetSeq}
	switch msg.Kind {
	case store.KindMessage:
		b.targets[seqKey{msg.Room, msg.Seq}] = &target{found: true, sender: msg.Sender, row: i}
		return nil
	case store.KindEdit:
		return b.applyEdit(ctx, st, b.targets[key], msg, i)
	case store.KindDelete:
		return b.applyDelete(ctx, st, b.targets[key], msg)
	}
	return b.applyReaction(ctx, st, b.targets[key], msg)
}

func (b *batchState) applyEdit(ctx context.Context, st *statements, t *target, msg store.Message, i int) error {
	t.edits = append(t.edits, i)
	if err := b.rc.replaceMentions(ctx, st, msg.Room, msg.TargetSeq, msg.Sender, msg.Mentions, t.row < 0); err != nil {
		return err
	}
	if t.row >= 0 {
		b.rows[t.row].editSeq = msg.Seq
		return nil
	}
	if _, err := st.updEdit.ExecContext(ctx, int64(msg.Seq), msg.Room, int64(msg.TargetSeq)); err != nil {
		return fmt.Errorf("edit seq %d of room %q: %w", msg.TargetSeq, msg.Room, err)
	}
	return nil
}

// applyDelete marks the target deleted and erases its body and those of
// its edits: in the batch's rows, and in the tables (the texts overwritten
// in place in bodies, see bodies.go; older ones in messages, where
// secure_delete zeroes the freed bytes).
func (b *batchState) applyDelete(ctx context.Context, st *statements, t *target, msg store.Message) error {
	t.deleted = true
	for _, i := range t.edits {
		b.rows[i].Body, b.rows[i].Mentions = "", nil
	}
	if err := b.rc.replaceMentions(ctx, st, msg.Room, msg.TargetSeq, "", nil, t.row < 0); err != nil {
		return err
	}
	if t.row >= 0 {
		r := &b.rows[t.row]
		r.deleted, r.Body, r.Mentions = true, "", nil
		return nil
	}
	target := int64(msg.TargetSeq)
	if _, err := st.eraseBody.ExecContext(ctx, msg.Room, target); err != nil {
		return fmt.Errorf("erase seq %d of room %q: %w", target, msg.Room, err)
	}
	if _, err := st.eraseEditBodies.ExecContext(ctx, msg.Room, target); err != nil {
		return fmt.Errorf("erase the edits of seq %d of room %q: %w", target, msg.Room, err)
	}
	if _, err := st.updDelete.ExecContext(ctx, msg.Room, target); err != nil {
		return fmt.Errorf("delete seq %d of room %q: %w", target, msg.Room, err)
	}
	if _, err := st.eraseEdits.ExecContext(ctx, msg.Room, target); err != nil {
		return fmt.Errorf("erase the edits of seq %d of room %q: %w", target, msg.Room, err)
	}
	return nil
}

// applyReaction adds or removes the sender's reaction and counts it; the
// counts are written once per batch (writeReactionCounts).
func (b *batchState) applyReaction(ctx context.Context, st *statements, t *target, msg store.Message) error {
	key := reactionKey{msg.Room, msg.TargetSeq, msg.Emoji, msg.Sender}
	target := int64(msg.TargetSeq)
	c := t.counts[msg.Emoji]
	if c == nil { // a new emoji (or, on removal, a count row gone missing: it ends deleted)
		c = &reactionCount{}
		t.counts[msg.Emoji] = c
	}
	if msg.Kind == store.KindReactionAdd {
		if _, err := st.insReaction.ExecContext(ctx, msg.Room, target, msg.Emoji, msg.Sender, int64(msg.Seq)); err != nil {
			return fmt.Errorf("add reaction: %w", err)
		}
		b.reacted[key] = true
		if c.count == 0 {
			c.firstSeq = msg.Seq
		}
		c.count++
	} else {
		if _, err := st.delReaction.ExecContext(ctx, msg.Room, target, msg.Emoji, msg.Sender); err != nil {
			return fmt.Errorf("remove reaction: %w", err)
		}
		b.reacted[key] = false
		c.count--
	}
	if !c.changed {
		c.changed = true
		t.changed = append(t.changed, msg.Emoji)
	}
	return nil
}

// writeReactionCounts writes the count, first seq and first users of
// every emoji the batch changed.
func (b *batchState) writeReactionCounts(ctx context.Context, st *statements) error {
	for key, t := range b.targets {
		for _, emoji := range t.changed {
			c := t.counts[emoji]
			var err error
			if c.count > 0 {
				_, err = st.upsReactionCount.ExecContext(ctx, key.room, int64(key.seq), emoji, c.count, int64(c.firstSeq))
			} else {
				_, err = st.delReactionCount.ExecContext(ctx, key.room, int64(key.seq), emoji)
			}
			if err != nil {
				return fmt.Errorf("write reaction count: %w", err)
			}
		}
	}
	return nil
}

// sqlClamp maps a seq that a client named onto SQLite's integers.
func sqlClamp(seq uint64) int64 { return int64(min(seq, 1<<63-1)) }
