package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/parleychat/parley/server/internal/store"
	"github.com/parleychat/parley/server/internal/store/internal/sqlstore"
)

// batchState is what the writer knows inside one batch's transaction.
type batchState struct {
	careful bool  // look up every ClientMsgID before inserting
	now     int64 // unix nanoseconds, the time of every message in the batch
	heads   map[string]*head
	known   map[string]head            // committed heads of existing rooms, kept across batches
	dedup   map[dedupKey]store.Message // new entries with a ClientMsgID
	rows    []row                      // new entries to insert
	names   []string                   // the rooms whose heads move
	args    []any
	texts   []int // rows with a text, by index into rows (writeBodies)

	// lastBody is the last committed id in bodies, unknownBody if the
	// next batch must read it; nextBody the last the batch has used.
	lastBody, nextBody int64
	targets            map[seqKey]*target   // messages that the batch's entries name (entries.go)
	reacted            map[reactionKey]bool // whether a user's reaction is there, as the batch sees it
	rc                 readCounters         // the mention rows the batch adds (readstate.go)
	sc                 senderCounts         // what the batch adds to the senders' counts (senders.go)

	counts   map[senderKey]int64 // committed senders' counts, kept across batches (senders.go)
	fresh    map[string]bool     // rooms created since counts was made: it holds all their senders
	ledger   *ledger
	flushAge time.Duration
}

// row is a new entry to insert, with the state of a message that entries
// later in the batch changed.
type row struct {
	store.Message
	ord     int64 // the room's messages up to this entry
	sk      int64 // a message's place among its sender's in the batch (senderCounts.add)
	sord    int64 // a message's place among its sender's in the room: 1, 2, ...
	editSeq uint64
	deleted bool
	bodyID  int64 // its text's row in bodies, 0 for none
}

// head is a room's head as the batch sees it.
type head struct {
	exists  bool
	changed bool
	seq     uint64
	at      int64 // unix nanoseconds of the newest message
	msgs    int64 // entries of kind message ever appended
	vis     store.Visibility
	creator string
}

type dedupKey struct{ room, sender, id string }

func newBatchState(l *ledger, flushAge time.Duration) *batchState {
	return &batchState{heads: make(map[string]*head), known: make(map[string]head), dedup: make(map[dedupKey]store.Message),
		targets: make(map[seqKey]*target), reacted: make(map[reactionKey]bool), rc: newReadCounters(),
		sc: newSenderCounts(), counts: make(map[senderKey]int64), fresh: make(map[string]bool), ledger: l, flushAge: flushAge,
		lastBody: unknownBody}
}

// apply performs the batch's requests in arrival order inside the open
// transaction, leaving each answer in r.Out and r.Err (an error of that
// request alone, such as an unknown room). It returns the batch's error.
func (b *batchState) apply(ctx context.Context, st *statements, live []*request, careful bool) error {
	b.reset(time.Now(), careful)
	if err := b.loadHeads(ctx, st, live); err != nil {
		return err
	}
	var pruned []string
	for _, r := range live {
		if r.In.prune != nil {
			pruned = append(pruned, r.In.prune.room)
		}
	}
	if err := b.flushDue(ctx, st, pruned); err != nil {
		return err
	}
	// Prune steps go first: they delete only entries committed before the
	// batch, and an entry of the batch that names a message they delete
	// must find it gone, not insert itself after the step's cascade.
	for _, r := range live {
		r.Out, r.Err = result{}, nil // a careful attempt redoes the optimistic one
		if r.In.prune != nil {
			if err := b.pruneStep(ctx, st, r); err != nil {
				return err
			}
		}
	}
	for _, r := range live {
		var err error
		switch {
		case r.In.prune != nil:
		case r.In.create != nil:
			err = b.createRoom(ctx, st, r)
		case r.In.member != nil:
			err = b.changeMember(ctx, st, r)
		case r.In.markers != nil:
			err = b.setMarkers(ctx, st, r)
		default:
			err = b.appendOne(ctx, st, r)
		}
		if err != nil {
			return err
		}
	}
	if err := b.writeSenders(ctx, st); err != nil {
		return err
	}
	if err := b.insertRows(ctx, st); err != nil {
		return err
	}
	if err := b.writeReactionCounts(ctx, st); err != nil {
		return err
	}
	if err := b.rc.writeMentions(ctx, st); err != nil {
		return err
	}
	return b.updateHeads(ctx, st)
}

func (b *batchState) reset(now time.Time, careful bool) {
	b.careful, b.now = careful, now.UnixNano()
	b.nextBody = b.lastBody
	clear(b.heads)
	clear(b.dedup)
	clear(b.rows)
	b.rows = b.rows[:0]
	clear(b.targets)
	clear(b.reacted)
	b.rc.reset()
	b.sc.reset()
}

// maxKnownHeads bounds the committed heads the writer remembers: enough
// for the rooms that many batches in a row write to; sends to ever new
// rooms (a direct message to each of a million users) only refill it.
const maxKnownHeads = 1 << 13

// committed remembers the heads of the batch's rooms once its transaction
// has committed: the writer is the database's only writer, so the next
// batch can take them from memory instead of reading them again. Past
// maxKnownHeads it starts again with a new map: a cleared one would keep
// its peak's space.
func (b *batchState) committed() {
	if len(b.known) > maxKnownHeads {
		b.known = make(map[string]head)
	}
	for name, h := range b.heads {
		if h.exists {
			b.known[name] = head{exists: true, seq: h.seq, at: h.at, msgs: h.msgs, vis: h.vis, creator: h.creator}
		}
	}
	b.lastBody = b.nextBody
	b.countsCommitted()
}

// rolledBack forgets what the batch's rooms were thought to hold, so the
// next batch reads their heads from the database.
func (b *batchState) rolledBack() {
	b.lastBody = unknownBody
	for name := range b.heads {
		delete(b.known, name)
	}
}

// loadHeads finds the head of every room the batch touches: those committed
// by earlier batches from memory, the others with one query.
func (b *batchState) loadHeads(ctx context.Context, st *statements, live []*request) error {
	names := make([]string, 0, len(live))
	for _, r := range live {
		if r.In.markers != nil {
			continue // markers of rooms that SetReadMarkers found; they need no head
		}
		name := r.In.room()
		if _, ok := b.heads[name]; !ok {
			if k, ok := b.known[name]; ok {
				b.heads[name] = &k
				continue
			}
			b.heads[name] = &head{}
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return nil
	}
	list, err := json.Marshal(names)
	if err != nil {
		return fmt.Errorf("encode room names: %w", err)
	}
	rows, err := st.selHeads.QueryContext(ctx, string(list))
	if err != nil {
		return fmt.Errorf("read room heads: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var name, creator string
		var seq, at, msgs int64
		var vis int
		if err := rows.Scan(&name, &seq, &at, &vis, &creator, &msgs); err != nil {
			return fmt.Errorf("read room heads: %w", err)
		}
		*b.heads[name] = head{exists: true, seq: uint64(seq), at: at, msgs: msgs, vis: store.Visibility(vis), creator: creator}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read room heads: %w", err)
	}
	return nil
}

// createRoom inserts a room. A taken name is the caller's error, not the
// batch's.
func (b *batchState) createRoom(ctx context.Context, st *statements, req *request) error {
	r := *req.In.create
	h := b.heads[r.Name]
	if h.exists {
		req.Err = fmt.Errorf("create room %q: %w", r.Name, store.ErrRoomExists)
		return nil
	}
	r.CreatedAt, r.LastSeq, r.LastMessageAt = fromNanos(b.now), 0, time.Time{}
	if _, err := st.insRoom.ExecContext(ctx, r.Name, int(r.Visibility), r.CreatedBy, b.now); err != nil {
		return fmt.Errorf("insert room %q: %w", r.Name, err)
	}
	if r.Visibility != store.Public {
		for _, m := range append([]string{r.CreatedBy}, r.Members...) {
			if _, err := st.insMember.ExecContext(ctx, r.Name, m); err != nil {
				return fmt.Errorf("add member to room %q: %w", r.Name, err)
			}
		}
	}
	r.Members = nil
	*h = head{exists: true, vis: r.Visibility, creator: r.CreatedBy}
	b.fresh[r.Name] = true // harmless if the batch rolls back: the room has no senders either way
	req.Out.room = r
	return nil
}

// changeMember adds or removes a member. An unknown room is the caller's
// error, not the batch's.
func (b *batchState) changeMember(ctx context.Context, st *statements, req *request) error {
	op := *req.In.member
	if !b.heads[op.room].exists {
		req.Err = fmt.Errorf("room %q: %w", op.room, store.ErrRoomNotFound)
		return nil
	}
	stmt := st.insMember
	if op.remove {
		stmt = st.delMember
	}
	if _, err := stmt.ExecContext(ctx, op.room, op.user); err != nil {
		return fmt.Errorf("change member of room %q: %w", op.room, err)
	}
	return nil
}

// pruneStep deletes one stretch of a room's oldest messages.
func (b *batchState) pruneStep(ctx context.Context, st *statements, req *request) error {
	op := *req.In.prune
	after, upto := sqlstore.ClampSeq(op.after), sqlstore.ClampSeq(op.upto)
	// The counters first: they read the rows about to go (readstate.go).
	for _, stmt := range []*sql.Stmt{st.updPrunedOrd, st.updPrunedSenders, st.delPrunedMentions, st.delPrunedBodies,
		st.delMsgs, st.delTargeting, st.delReactions, st.delReactionCounts} {
		res, err := stmt.ExecContext(ctx, op.room, after, upto)
		if err != nil {
			return fmt.Errorf("prune room %q: %w", op.room, err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("prune room %q: %w", op.room, err)
		}
		if stmt == st.delMsgs || stmt == st.delTargeting {
			req.Out.deleted += n
		}
	}
	return nil
}

// appendOne gives an entry the next seq of its room, or finds the entry
// it duplicates, after checking it against the rules of the log. An
// unknown room or a broken rule is the caller's error, not the batch's.
func (b *batchState) appendOne(ctx context.Context, st *statements, req *request) error {
	m := req.In.msg
	h := b.heads[m.Room]
	if !h.exists {
		req.Err = fmt.Errorf("append to room %q: %w", m.Room, store.ErrRoomNotFound)
		return nil
	}
	if orig, ok, err := b.findDuplicate(ctx, st, m); err != nil || ok {
		req.Out = result{msg: orig, dup: ok}
		return err
	}
	noop, err := b.decide(ctx, st, m, h)
	if err != nil || noop {
		if noop {
			req.Out = result{msg: m.Noop(), dup: true}
			return nil
		}
		var rule ruleError
		if errors.As(err, &rule) {
			req.Err = rule.err
			return nil
		}
		return err
	}
	if _, ok := b.sc.from[m.Room]; !ok {
		b.sc.from[m.Room] = b.ledger.from(m.Room, h.seq, b.sc.flushing)
	}
	h.seq++
	h.at = max(h.at, b.now) // a room's times never go backwards, even if the clock does
	h.changed = true
	msg := store.Message{
		Room: m.Room, Seq: h.seq, Kind: m.Kind, Sender: m.Sender, Body: m.Body,
		SentAt: fromNanos(h.at), ClientMsgID: m.ClientMsgID,
		TargetSeq: m.TargetSeq, ReplyToSeq: m.ReplyToSeq, Emoji: m.Emoji,
	}
	if m.Kind == store.KindMessage || m.Kind == store.KindEdit {
		if len(m.Mentions) > 0 {
			msg.Mentions = slices.Clone(m.Mentions)
		}
	}
	r := row{Message: msg}
	if m.Kind == store.KindMessage {
		h.msgs++
		r.sk = b.sc.add(msg.Room, msg.Sender, msg.Seq)
		b.rc.message(msg)
	}
	r.ord = h.msgs
	b.rows = append(b.rows, r)
	if m.ClientMsgID != "" {
		b.dedup[dedupKey{m.Room, m.Sender, m.ClientMsgID}] = msg
	}
	req.Out.msg = msg
	return b.applyEntry(ctx, st, msg, len(b.rows)-1)
}

// findDuplicate looks for an earlier entry with m's key: in this batch,
// and, in a careful attempt or for any entry but a plain message, in the
// database. (The others may be refused by a rule or change other rows
// before the batch inserts its own, so the unique index would find their
// duplicates too late or never; they are rare enough to be looked up one
// by one.)
func (b *batchState) findDuplicate(ctx context.Context, st *statements, m store.NewMessage) (store.Message, bool, error) {
	if m.ClientMsgID == "" {
		return store.Message{}, false, nil
	}
	if orig, ok := b.dedup[dedupKey{m.Room, m.Sender, m.ClientMsgID}]; ok {
		return orig, true, nil
	}
	if !b.careful && m.Kind == store.KindMessage && m.ReplyToSeq == 0 {
		return store.Message{}, false, nil
	}
	orig := store.Message{Room: m.Room, Sender: m.Sender, ClientMsgID: m.ClientMsgID}
	var seq, at, target, replyTo int64
	var mentions string
	err := st.selDup.QueryRowContext(ctx, m.Room, m.ClientMsgID, m.Sender).Scan(&seq, &orig.Kind, &orig.Body, &at, &target, &replyTo, &orig.Emoji, &mentions)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return store.Message{}, false, nil
	case err != nil:
		return store.Message{}, false, fmt.Errorf("look up client_msg_id: %w", err)
	}
	orig.Seq, orig.SentAt, orig.TargetSeq, orig.ReplyToSeq = uint64(seq), fromNanos(at), uint64(target), uint64(replyTo)
	if orig.Mentions, err = sqlstore.DecodeMentions(mentions); err != nil {
		return store.Message{}, false, fmt.Errorf("look up client_msg_id: %w", err)
	}
	return orig, true, nil
}

// writeSenders gives each of the batch's messages its sord. The counts
// themselves reach room_senders later (senders.go).
func (b *batchState) writeSenders(ctx context.Context, st *statements) error {
	if err := b.loadBases(ctx, st); err != nil {
		return err
	}
	for i := range b.rows {
		if r := &b.rows[i]; r.Kind == store.KindMessage {
			r.sord = b.sc.sord(r.Room, r.Sender, r.sk)
		}
	}
	return nil
}

// insertRows inserts the batch's new entries: plain messages (the bulk)
// with multi-row INSERTs of the columns they use, as before entry kinds
// existed, the other entries one by one with every column. It returns
// errSkippedRow if the unique index turned a row away.
func (b *batchState) insertRows(ctx context.Context, st *statements) error {
	// In index order, consecutive rows land on the same B-tree pages.
	slices.SortFunc(b.rows, func(x, y row) int {
		return cmp.Or(strings.Compare(x.Room, y.Room), strings.Compare(x.ClientMsgID, y.ClientMsgID),
			strings.Compare(x.Sender, y.Sender), cmp.Compare(x.Seq, y.Seq))
	})
	if err := b.writeBodies(ctx, st); err != nil {
		return err
	}
	plain := b.rows[:0] // compacted in place: b.rows is not read again
	for _, r := range b.rows {
		if r.Kind != store.KindMessage || r.ReplyToSeq != 0 || r.editSeq != 0 || r.deleted {
			if err := insertEntry(ctx, st, r); err != nil {
				return err
			}
			continue
		}
		plain = append(plain, r)
	}
	return execRows(ctx, st.insMsgs, plain, &b.args, "insert messages", errSkippedRow, func(args []any, m row) []any {
		return append(args, m.Room, int64(m.Seq), m.Sender, m.bodyID, m.SentAt.UnixNano(), m.ClientMsgID, m.ord, m.sord, sqlstore.EncodeMentions(m.Mentions))
	})
}

// errHeadMissing means that a room's row was not there to take its new
// head: the batch fails (it is not retried, as a skipped message row is).
var errHeadMissing = errors.New("a room's row was not updated")

func insertEntry(ctx context.Context, st *statements, r row) error {
	res, err := st.insEntry.ExecContext(ctx, r.Room, int64(r.Seq), r.Sender, r.bodyID, r.SentAt.UnixNano(), r.ClientMsgID,
		int(r.Kind), int64(r.TargetSeq), int64(r.ReplyToSeq), r.Emoji, int64(r.editSeq), r.deleted, r.ord, r.sord, sqlstore.EncodeMentions(r.Mentions))
	if err != nil {
		return fmt.Errorf("insert %s entry: %w", r.Kind, err)
	}
	if got, err := res.RowsAffected(); err != nil || got != 1 {
		return fmt.Errorf("insert %s entry: %d inserted (%v): %w", r.Kind, got, err, errSkippedRow)
	}
	return nil
}

// updateHeads writes the new head of every room the batch appended to,
// in as few statements as the prepared sizes allow.
func (b *batchState) updateHeads(ctx context.Context, st *statements) error {
	b.names = b.names[:0]
	for name, h := range b.heads {
		if h.changed {
			b.names = append(b.names, name)
		}
	}
	return execRows(ctx, st.updHeads, b.names, &b.args, "update room heads", errHeadMissing, func(args []any, name string) []any {
		h := b.heads[name]
		return append(args, name, int64(h.seq), h.at, h.msgs, int64(b.sc.from[name]))
	})
}

func fromNanos(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns).UTC()
}
