package postgres

import (
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/parleychat/parley/server/internal/store"
)

// Entries other than plain messages go the careful way (carefulbatch.go):
// its first round trip, once the rooms are locked, also reads the
// messages they name, those messages' reaction counts and whether each
// reacting user has reacted already; the writer then applies the rules
// (store.Decide) in arrival order with what the batch itself changed, and
// the second round trip writes the changes with the new entries. Locked
// rooms keep other nodes' writers, and retention, off those messages
// until COMMIT.
//
// What History reads is kept up to date here rather than worked out from
// the log when read, as in the SQLite store: a message's row holds the
// seq of its latest edit and whether it was deleted; reactions holds who
// reacted with what, and reaction_counts each emoji's count, first seq
// and first users.
const (
	targetsSQL = `SELECT m.room, m.seq, m.kind, m.sender, m.deleted
		FROM unnest($1::text[], $2::bigint[]) AS k(room, seq)
		JOIN messages m ON m.room = k.room AND m.seq = k.seq`
	countsSQL = `SELECT c.room, c.target_seq, c.emoji, c.count, c.first_seq
		FROM unnest($1::text[], $2::bigint[]) AS k(room, seq)
		JOIN reaction_counts c ON c.room = k.room AND c.target_seq = k.seq`
	reactedSQL = `SELECT r.room, r.target_seq, r.emoji, r."user"
		FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[]) AS k(room, seq, emoji, usr)
		JOIN reactions r ON r.room = k.room AND r.target_seq = k.seq AND r.emoji = k.emoji AND r."user" = k.usr`

	updEditsSQL = `UPDATE messages m SET edit_seq = u.e
		FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS u(room, seq, e)
		WHERE m.room = u.room AND m.seq = u.seq`
	updDeletesSQL = `UPDATE messages m SET deleted = true, body = '', mentions = ''
		FROM unnest($1::text[], $2::bigint[]) AS u(room, seq)
		WHERE m.room = u.room AND m.seq = u.seq`
	eraseEditsSQL = `UPDATE messages m SET body = '', mentions = ''
		FROM unnest($1::text[], $2::bigint[]) AS u(room, seq)
		WHERE m.room = u.room AND m.target_seq = u.seq AND m.target_seq <> 0 AND m.kind = 1 AND (m.body <> '' OR m.mentions <> '')`
	delReactionsSQL = `DELETE FROM reactions r
		USING unnest($1::text[], $2::bigint[], $3::text[], $4::text[]) AS u(room, seq, emoji, usr)
		WHERE r.room = u.room AND r.target_seq = u.seq AND r.emoji = u.emoji AND r."user" = u.usr`
	insReactionsSQL = `INSERT INTO reactions (room, target_seq, emoji, "user", seq)
		SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::bigint[])
		ON CONFLICT (room, target_seq, emoji, "user") DO UPDATE SET seq = excluded.seq`
	delCountsSQL = `DELETE FROM reaction_counts c
		USING unnest($1::text[], $2::bigint[], $3::text[]) AS u(room, seq, emoji)
		WHERE c.room = u.room AND c.target_seq = u.seq AND c.emoji = u.emoji`
	// Runs after the reactions are written, so it sees them.
	upsCountsSQL = `INSERT INTO reaction_counts (room, target_seq, emoji, count, first_seq, users)
		SELECT u.room, u.seq, u.emoji, u.n, u.first, ARRAY(SELECT r."user" FROM reactions r
			WHERE r.room = u.room AND r.target_seq = u.seq AND r.emoji = u.emoji ORDER BY r.seq LIMIT 3)
		FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[], $5::bigint[]) AS u(room, seq, emoji, n, first)
		ON CONFLICT (room, target_seq, emoji) DO UPDATE
		SET count = excluded.count, first_seq = excluded.first_seq, users = excluded.users`
)

type seqKey struct {
	room string
	seq  uint64
}

type reactionKey struct {
	room        string
	seq         uint64
	emoji, user string
}

// target is a message that entries of the batch name, as the batch sees it.
type target struct {
	found   bool // a message (not another kind, not pruned)
	sender  string
	deleted bool
	row     int   // its row in the batch's rows if the batch stored it, else -1
	edits   []int // rows of the batch's edits of it
	counts  map[string]*reactionCount
}

// reactionCount is an emoji on a target.
type reactionCount struct {
	count, first int64
	changed      bool
}

// reaction is a user's reaction with an emoji, as the batch sees it.
type reaction struct {
	present, stored bool  // there now; there before the batch
	seq             int64 // of the entry that added it, if the batch did
}

// entryState is what a careful batch knows of the messages its entries
// name. Its maps and slices are reused from batch to batch.
type entryState struct {
	targets  map[seqKey]*target
	reacted  map[reactionKey]*reaction
	tkeys    columns // room, seq: the messages to read
	rkeys    columns // room, target, emoji, id (the user): the reactions to read
	editSeqs map[seqKey]int64
	deletes  []seqKey
}

func newEntryState() entryState {
	return entryState{targets: make(map[seqKey]*target), reacted: make(map[reactionKey]*reaction), editSeqs: make(map[seqKey]int64)}
}

// reset lists what live's entries name, for readEntries.
func (es *entryState) reset(live []*request) {
	clear(es.targets)
	clear(es.reacted)
	clear(es.editSeqs)
	es.deletes = es.deletes[:0]
	es.tkeys.reset()
	es.rkeys.reset()
	for _, r := range live {
		m := r.In
		seq := m.TargetSeq
		if m.Kind == store.KindMessage {
			seq = m.ReplyToSeq
		}
		if seq == 0 {
			continue
		}
		es.tkeys.room, es.tkeys.seq = append(es.tkeys.room, m.Room), append(es.tkeys.seq, clampSeq(seq))
		if m.Emoji != "" {
			k := &es.rkeys
			k.room, k.seq, k.emoji, k.id = append(k.room, m.Room), append(k.seq, clampSeq(seq)), append(k.emoji, m.Emoji), append(k.id, m.Sender)
		}
	}
}

// queueReads queues the reads of the named messages, their reaction
// counts and the reactions.
func (es *entryState) queueReads(q *pgx.Batch) {
	q.Queue(targetsSQL, es.tkeys.room, es.tkeys.seq)
	q.Queue(countsSQL, es.rkeys.room, es.rkeys.seq)
	q.Queue(reactedSQL, es.rkeys.room, es.rkeys.seq, es.rkeys.emoji, es.rkeys.id)
}

func (es *entryState) readReads(br pgx.BatchResults) error {
	rows, err := br.Query()
	if err != nil {
		return fmt.Errorf("read targets: %w", err)
	}
	for rows.Next() {
		var k seqKey
		var seq int64
		var kind int16
		t := &target{row: -1, counts: make(map[string]*reactionCount)}
		if err := rows.Scan(&k.room, &seq, &kind, &t.sender, &t.deleted); err != nil {
			rows.Close()
			return fmt.Errorf("read targets: %w", err)
		}
		k.seq, t.found = uint64(seq), store.Kind(kind) == store.KindMessage
		es.targets[k] = t
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read targets: %w", err)
	}
	if err := es.readCounts(br); err != nil {
		return fmt.Errorf("read reaction counts: %w", err)
	}
	if err := es.readReacted(br); err != nil {
		return fmt.Errorf("read reactions: %w", err)
	}
	return nil
}

func (es *entryState) readCounts(br pgx.BatchResults) error {
	rows, err := br.Query()
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var room, emoji string
		var seq int64
		var c reactionCount
		if err := rows.Scan(&room, &seq, &emoji, &c.count, &c.first); err != nil {
			return err
		}
		// The keys may name a message twice: the first row is as good as any.
		if t := es.targets[seqKey{room, uint64(seq)}]; t != nil && t.counts[emoji] == nil {
			t.counts[emoji] = &c
		}
	}
	return rows.Err()
}

func (es *entryState) readReacted(br pgx.BatchResults) error {
	rows, err := br.Query()
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var k reactionKey
		var seq int64
		if err := rows.Scan(&k.room, &seq, &k.emoji, &k.user); err != nil {
			return err
		}
		k.seq = uint64(seq)
		es.reacted[k] = &reaction{present: true, stored: true}
	}
	return rows.Err()
}

// decide applies the rules to m (store.Decide) with what the database
// and the batch know of the message it names.
func (es *entryState) decide(m store.NewMessage, h *head) (noop bool, err error) {
	seq := m.TargetSeq
	if m.Kind == store.KindMessage {
		if m.ReplyToSeq == 0 {
			return false, nil
		}
		seq = m.ReplyToSeq
	}
	t := es.targets[seqKey{m.Room, seq}]
	if t == nil {
		t = &target{}
	}
	var rs store.ReactionState
	if m.Emoji != "" {
		if r := es.reacted[reactionKey{m.Room, seq, m.Emoji, m.Sender}]; r != nil {
			rs.Mine = r.present
		}
		for emoji, c := range t.counts {
			if c.count > 0 {
				rs.Distinct++
				rs.Present = rs.Present || emoji == m.Emoji
			}
		}
	}
	room := store.Room{Name: m.Room, Visibility: h.vis, CreatedBy: h.creator}
	return store.Decide(m, room, store.Target{Found: t.found, Sender: t.sender, Deleted: t.deleted}, rs)
}

// apply makes msg, the batch's row i, change what it names.
func (es *entryState) apply(msg store.Message, i int, rows *columns) {
	if msg.Kind == store.KindMessage {
		es.targets[seqKey{msg.Room, msg.Seq}] = &target{found: true, sender: msg.Sender, row: i, counts: make(map[string]*reactionCount)}
		return
	}
	key := seqKey{msg.Room, msg.TargetSeq}
	t := es.targets[key]
	switch msg.Kind {
	case store.KindEdit:
		t.edits = append(t.edits, i)
		if t.row >= 0 {
			rows.editSeq[t.row] = int64(msg.Seq)
		} else {
			es.editSeqs[key] = int64(msg.Seq)
		}
	case store.KindDelete:
		t.deleted = true
		for _, e := range t.edits {
			rows.body[e], rows.mentions[e] = "", ""
		}
		if t.row >= 0 {
			rows.deleted[t.row], rows.body[t.row], rows.mentions[t.row] = true, "", ""
		} else {
			es.deletes = append(es.deletes, key)
		}
	default:
		es.applyReaction(t, msg)
	}
}

func (es *entryState) applyReaction(t *target, msg store.Message) {
	key := reactionKey{msg.Room, msg.TargetSeq, msg.Emoji, msg.Sender}
	r := es.reacted[key]
	if r == nil {
		r = &reaction{}
		es.reacted[key] = r
	}
	c := t.counts[msg.Emoji]
	if c == nil {
		c = &reactionCount{}
		t.counts[msg.Emoji] = c
	}
	if msg.Kind == store.KindReactionAdd {
		r.present, r.seq = true, int64(msg.Seq)
		if c.count == 0 {
			c.first = int64(msg.Seq)
		}
		c.count++
	} else {
		r.present, r.seq = false, 0
		c.count--
	}
	c.changed = true
}

// queueWrites queues the changes the batch made to the messages it named.
func (es *entryState) queueWrites(q *pgx.Batch) {
	var edits, dels columns
	for k, e := range es.editSeqs {
		edits.room, edits.seq, edits.editSeq = append(edits.room, k.room), append(edits.seq, int64(k.seq)), append(edits.editSeq, e)
	}
	for _, k := range es.deletes {
		dels.room, dels.seq = append(dels.room, k.room), append(dels.seq, int64(k.seq))
	}
	var drop, add columns // reactions: room, seq, emoji, id (user), editSeq (entry seq)
	for k, r := range es.reacted {
		switch {
		case r.present && r.seq != 0:
			add.room, add.seq, add.emoji, add.id, add.editSeq = append(add.room, k.room), append(add.seq, int64(k.seq)), append(add.emoji, k.emoji), append(add.id, k.user), append(add.editSeq, r.seq)
		case !r.present && r.stored:
			drop.room, drop.seq, drop.emoji, drop.id = append(drop.room, k.room), append(drop.seq, int64(k.seq)), append(drop.emoji, k.emoji), append(drop.id, k.user)
		}
	}
	var gone, counts columns // room, seq, emoji; counts: target (count), replyTo (first)
	for k, t := range es.targets {
		for emoji, c := range t.counts {
			switch {
			case !c.changed:
			case c.count > 0:
				counts.room, counts.seq, counts.emoji = append(counts.room, k.room), append(counts.seq, int64(k.seq)), append(counts.emoji, emoji)
				counts.target, counts.replyTo = append(counts.target, c.count), append(counts.replyTo, c.first)
			default:
				gone.room, gone.seq, gone.emoji = append(gone.room, k.room), append(gone.seq, int64(k.seq)), append(gone.emoji, emoji)
			}
		}
	}
	q.Queue(updEditsSQL, edits.room, edits.seq, edits.editSeq)
	q.Queue(updDeletesSQL, dels.room, dels.seq)
	q.Queue(eraseEditsSQL, dels.room, dels.seq)
	q.Queue(delReactionsSQL, drop.room, drop.seq, drop.emoji, drop.id)
	q.Queue(insReactionsSQL, add.room, add.seq, add.emoji, add.id, add.editSeq)
	q.Queue(delCountsSQL, gone.room, gone.seq, gone.emoji)
	q.Queue(upsCountsSQL, counts.room, counts.seq, counts.emoji, counts.target, counts.replyTo)
}

// entryWrites is how many statements queueWrites queues.
const entryWrites = 7

// clampSeq maps a seq that a client named onto PostgreSQL's bigint.
func clampSeq(seq uint64) int64 { return int64(min(seq, 1<<63-1)) }
