package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/parleychat/parley/server/internal/store"
)

// RunLog runs the conformance tests of the log's entry kinds (edits,
// deletes, reactions, replies) and of the history view against stores
// made by open, as Run does.
func RunLog(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"EveryKind", testEveryKind},
		{"Rules", testRules},
		{"Noops", testNoops},
		{"IdempotentKinds", testIdempotentKinds},
		{"DeleteErases", testDeleteErases},
		{"Pipelined", testPipelined},
		{"HistoryPaging", testHistoryPaging},
		{"Replies", testReplies},
		{"Reactions", testReactions},
		{"ConcurrentReactions", testConcurrentReactions},
		{"RetentionCascade", testRetentionCascade},
		{"AgainstModel", testAgainstModel},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() { closeStore(t, s) })
			tc.fn(t, s)
		})
	}
}

// Shorthands for entries of each kind.
func msg(room, sender, body string) store.NewMessage {
	return store.NewMessage{Room: room, Sender: sender, Body: body}
}

func reply(room, sender, body string, to uint64) store.NewMessage {
	return store.NewMessage{Room: room, Sender: sender, Body: body, ReplyToSeq: to}
}

func edit(room, sender string, target uint64, body string) store.NewMessage {
	return store.NewMessage{Room: room, Kind: store.KindEdit, Sender: sender, TargetSeq: target, Body: body}
}

func del(room, sender string, target uint64) store.NewMessage {
	return store.NewMessage{Room: room, Kind: store.KindDelete, Sender: sender, TargetSeq: target}
}

func react(room, sender string, target uint64, emoji string) store.NewMessage {
	return store.NewMessage{Room: room, Kind: store.KindReactionAdd, Sender: sender, TargetSeq: target, Emoji: emoji}
}

func unreact(room, sender string, target uint64, emoji string) store.NewMessage {
	return store.NewMessage{Room: room, Kind: store.KindReactionRemove, Sender: sender, TargetSeq: target, Emoji: emoji}
}

func withID(m store.NewMessage, id string) store.NewMessage {
	m.ClientMsgID = id
	return m
}

func mustStore(t *testing.T, s store.Store, m store.NewMessage) store.Message {
	t.Helper()
	got, dup := mustAppend(t, s, m)
	if dup || got.Seq == 0 {
		t.Fatalf("Append(%+v) = seq %d dup %v, want a new entry", m, got.Seq, dup)
	}
	return got
}

func mustHistory(t *testing.T, s store.Store, room, viewer string, q store.Query) []store.MessageView {
	t.Helper()
	vs, err := s.History(context.Background(), room, viewer, q)
	if err != nil {
		t.Fatalf("History(%q, %q, %+v): %v", room, viewer, q, err)
	}
	return vs
}

func mustView(t *testing.T, s store.Store, room, viewer string, seq uint64) store.MessageView {
	t.Helper()
	vs := mustHistory(t, s, room, viewer, store.Query{After: seq - 1, Before: seq + 1, Limit: 1})
	if len(vs) != 1 {
		t.Fatalf("History of seq %d: %d views", seq, len(vs))
	}
	return vs[0]
}

func createRoom(t *testing.T, s store.Store, name string, vis store.Visibility, creator string) {
	t.Helper()
	if _, err := s.CreateRoom(context.Background(), store.Room{Name: name, Visibility: vis, CreatedBy: creator, Members: []string{"alice", "bob"}}); err != nil {
		t.Fatalf("CreateRoom(%q): %v", name, err)
	}
}

func sameEntry(a, b store.Message) bool {
	return sameMessage(a, b) && a.Kind == b.Kind && a.TargetSeq == b.TargetSeq &&
		a.ReplyToSeq == b.ReplyToSeq && a.Emoji == b.Emoji
}

// testEveryKind stores one entry of each kind: each takes the next seq,
// Messages returns them all as stored, and the head follows the log.
func testEveryKind(t *testing.T, s store.Store) {
	mustCreate(t, s, "r")
	var want []store.Message
	for _, m := range []store.NewMessage{
		msg("r", "alice", "hello"),
		reply("r", "bob", "hi alice", 1),
		edit("r", "alice", 1, "hello!"),
		react("r", "bob", 1, "👍"),
		unreact("r", "bob", 1, "👍"),
		withID(del("r", "bob", 2), "d1"),
	} {
		got := mustStore(t, s, m)
		if got.Kind != m.Kind || got.TargetSeq != m.TargetSeq || got.ReplyToSeq != m.ReplyToSeq ||
			got.Emoji != m.Emoji || got.Body != m.Body || got.Sender != m.Sender || got.ClientMsgID != m.ClientMsgID {
			t.Errorf("Append(%+v) returned %+v", m, got)
		}
		want = append(want, got)
	}
	if got := seqsOf(want); !slices.Equal(got, seqRange(1, 6)) {
		t.Fatalf("seqs %v, want 1..6", got)
	}
	want[1].Body = "" // seq 2 was deleted
	got := mustMessages(t, s, "r", store.Query{Limit: 100})
	if len(got) != len(want) {
		t.Fatalf("Messages returned %d entries, want %d", len(got), len(want))
	}
	for i := range got {
		if !sameEntry(got[i], want[i]) {
			t.Errorf("entry %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	if r := mustRoom(t, s, "r"); r.LastSeq != 6 || !r.LastMessageAt.Equal(want[5].SentAt) {
		t.Errorf("head %d at %v, want 6 at %v", r.LastSeq, r.LastMessageAt, want[5].SentAt)
	}
	if d := mustMessages(t, s, "r", store.Query{After: 2, Limit: 2, Descending: true}); len(d) != 2 || d[0].Seq != 6 || d[1].Seq != 5 {
		t.Errorf("descending page: %v", seqsOf(d))
	}
}

// testRules: every broken rule is its own error, stores nothing and
// leaves the head where it was.
func testRules(t *testing.T, s store.Store) {
	createRoom(t, s, "pub", store.Public, "owner")
	createRoom(t, s, "priv", store.Private, "owner")
	createRoom(t, s, "other", store.Public, "owner")
	mustStore(t, s, msg("pub", "alice", "a1"))              // 1
	mustStore(t, s, react("pub", "bob", 1, "👍"))            // 2
	mustStore(t, s, msg("pub", "bob", "b3"))                // 3
	mustStore(t, s, del("pub", "bob", 3))                   // 4
	mustStore(t, s, msg("priv", "alice", "secret"))         // priv 1
	mustStore(t, s, msg("other", "alice", "elsewhere"))     // other 1
	mustStore(t, s, msg("other", "alice", "elsewhere too")) // other 2
	for i := range store.MaxReactionsPerMessage {
		mustStore(t, s, react("other", "bob", 1, fmt.Sprint("e", i)))
	}
	cases := []struct {
		name string
		m    store.NewMessage
		want error
	}{
		{"edit of a missing seq", edit("pub", "alice", 99, "x"), store.ErrTargetNotFound},
		{"edit of a reaction entry", edit("pub", "bob", 2, "x"), store.ErrTargetNotFound},
		{"edit of another room's seq", edit("pub", "alice", 5, "x"), store.ErrTargetNotFound},
		{"delete of a delete entry", del("pub", "bob", 4), store.ErrTargetNotFound},
		{"reaction on a missing seq", react("pub", "bob", 42, "👍"), store.ErrTargetNotFound},
		{"unreact on a missing seq", unreact("pub", "bob", 42, "👍"), store.ErrTargetNotFound},
		{"edit by someone else", edit("pub", "bob", 1, "x"), store.ErrNotAllowed},
		{"delete by someone else", del("pub", "bob", 1), store.ErrNotAllowed},
		{"delete by the creator of a public room", del("pub", "owner", 1), store.ErrNotAllowed},
		{"edit of a deleted message", edit("pub", "bob", 3, "x"), store.ErrTargetDeleted},
		{"reaction on a deleted message", react("pub", "alice", 3, "👍"), store.ErrTargetDeleted},
		{"unreact on a deleted message", unreact("pub", "alice", 3, "👍"), store.ErrTargetDeleted},
		{"reply to a missing seq", reply("pub", "bob", "re", 99), store.ErrBadReply},
		{"reply to a reaction entry", reply("pub", "bob", "re", 2), store.ErrBadReply},
		{"too many reactions", react("other", "alice", 1, "one more"), store.ErrTooManyReactions},
		{"unknown kind", store.NewMessage{Room: "pub", Kind: 9, Sender: "alice", TargetSeq: 1}, store.ErrInvalidEntry},
		{"edit without target", edit("pub", "alice", 0, "x"), store.ErrInvalidEntry},
		{"message with a target", store.NewMessage{Room: "pub", Sender: "alice", Body: "x", TargetSeq: 1}, store.ErrInvalidEntry},
		{"reaction without emoji", react("pub", "alice", 1, ""), store.ErrInvalidEntry},
		{"edit with emoji", store.NewMessage{Room: "pub", Kind: store.KindEdit, Sender: "alice", TargetSeq: 1, Body: "x", Emoji: "👍"}, store.ErrInvalidEntry},
		{"delete with reply_to", store.NewMessage{Room: "pub", Kind: store.KindDelete, Sender: "alice", TargetSeq: 1, ReplyToSeq: 1}, store.ErrInvalidEntry},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := mustRoom(t, s, tc.m.Room)
			got, dup, err := s.Append(context.Background(), withID(tc.m, "id-"+tc.name))
			if !errors.Is(err, tc.want) || got.Seq != 0 || dup {
				t.Errorf("Append = seq %d dup %v err %v, want error %v", got.Seq, dup, err, tc.want)
			}
			if after := mustRoom(t, s, tc.m.Room); !sameRoom(before, after) {
				t.Errorf("head moved from %d to %d", before.LastSeq, after.LastSeq)
			}
		})
	}
	if _, _, err := s.Append(context.Background(), edit("nope", "alice", 1, "x")); !errors.Is(err, store.ErrRoomNotFound) {
		t.Errorf("edit in a missing room: %v", err)
	}
	// What a rejected entry's ClientMsgID did not take: the same id may be
	// used for an entry that is allowed.
	if m := mustStore(t, s, withID(edit("pub", "alice", 1, "fixed"), "id-edit by someone else")); m.Seq != 5 {
		t.Errorf("allowed edit got seq %d, want 5", m.Seq)
	}
	// The creator of a private room deletes anyone's message there.
	if m := mustStore(t, s, del("priv", "owner", 1)); m.Seq != 2 {
		t.Errorf("creator's delete in a private room got seq %d, want 2", m.Seq)
	}
	// An emoji already on the message does not count against the cap.
	mustStore(t, s, react("other", "alice", 1, "e0"))
	// The cap is per message.
	mustStore(t, s, react("other", "alice", 2, "one more"))
}

// testNoops: adding a reaction twice, removing one that is not there and
// deleting a deleted message store nothing and answer Seq 0, duplicate.
func testNoops(t *testing.T, s store.Store) {
	mustCreate(t, s, "r")
	mustStore(t, s, msg("r", "alice", "a"))      // 1
	mustStore(t, s, react("r", "bob", 1, "👍"))   // 2
	mustStore(t, s, msg("r", "alice", "gone"))   // 3
	mustStore(t, s, del("r", "alice", 3))        // 4
	mustStore(t, s, react("r", "alice", 1, "👍")) // 5: another user, same emoji
	for _, m := range []store.NewMessage{
		react("r", "bob", 1, "👍"),
		unreact("r", "bob", 1, "🎉"),
		unreact("r", "carol", 1, "👍"),
		del("r", "alice", 3),
		withID(react("r", "bob", 1, "👍"), "noop-id"),
	} {
		got, dup, err := s.Append(context.Background(), m)
		if err != nil || !dup || got.Seq != 0 || got.Kind != m.Kind || got.TargetSeq != m.TargetSeq || got.Emoji != m.Emoji {
			t.Errorf("Append(%+v) = %+v dup %v err %v, want the entry with seq 0, duplicate", m, got, dup, err)
		}
	}
	if r := mustRoom(t, s, "r"); r.LastSeq != 5 {
		t.Errorf("head %d, want 5", r.LastSeq)
	}
	// A no-op's ClientMsgID is not taken either.
	if m := mustStore(t, s, withID(unreact("r", "bob", 1, "👍"), "noop-id")); m.Seq != 6 {
		t.Errorf("unreact got seq %d, want 6", m.Seq)
	}
	// Removed, the reaction may be added again.
	mustStore(t, s, react("r", "bob", 1, "👍"))
	if v := mustView(t, s, "r", "bob", 1); len(v.Reactions) != 1 || v.Reactions[0].Count != 2 || !slices.Equal(v.Reactions[0].Users, []string{"alice", "bob"}) {
		t.Errorf("reactions %+v, want 👍 by alice and bob", v.Reactions)
	}
}

// testIdempotentKinds: a retried entry of any kind returns the original,
// even when the entry would now be refused or change nothing.
func testIdempotentKinds(t *testing.T, s store.Store) {
	mustCreate(t, s, "r")
	entries := []store.NewMessage{
		withID(msg("r", "alice", "hello"), "m"),
		withID(reply("r", "bob", "re", 1), "re"),
		withID(edit("r", "alice", 1, "hello!"), "e"),
		withID(react("r", "bob", 1, "👍"), "ra"),
		withID(unreact("r", "bob", 1, "👍"), "rr"),
		withID(del("r", "alice", 1), "d"),
	}
	var first []store.Message
	for _, m := range entries {
		first = append(first, mustStore(t, s, m))
	}
	// Since the delete, the edit and reactions would be refused and the
	// delete would be a no-op; their retries still find the originals.
	for i, m := range entries {
		got, dup := mustAppend(t, s, m)
		want := first[i]
		if m.Kind == store.KindEdit || i == 0 {
			want.Body = "" // erased by the delete
		}
		if !dup || !sameEntry(got, want) {
			t.Errorf("retry of %s: %+v dup %v, want the original %+v", m.Kind, got, dup, want)
		}
	}
	// The key is sender, room and id, whatever the entry: a reply that
	// would be refused (its parent does not exist) but reuses the id of a
	// stored reaction gets that reaction back.
	got, dup, err := s.Append(context.Background(), withID(reply("r", "bob", "re", 999), "ra"))
	if err != nil || !dup || !sameEntry(got, first[3]) {
		t.Errorf("reply reusing a reaction's id: %+v dup %v err %v, want the reaction %+v", got, dup, err, first[3])
	}
	if r := mustRoom(t, s, "r"); r.LastSeq != uint64(len(entries)) {
		t.Errorf("head %d, want %d", r.LastSeq, len(entries))
	}
}

// testDeleteErases: a delete empties the message and every edit of it in
// the log; the history shows a tombstone, and replies quote nothing.
func testDeleteErases(t *testing.T, s store.Store) {
	mustCreate(t, s, "r")
	mustStore(t, s, msg("r", "alice", "first draft"))      // 1
	mustStore(t, s, edit("r", "alice", 1, "second draft")) // 2
	mustStore(t, s, reply("r", "bob", "what?", 1))         // 3
	mustStore(t, s, edit("r", "alice", 1, "third draft"))  // 4
	mustStore(t, s, react("r", "bob", 1, "👍"))             // 5
	mustStore(t, s, msg("r", "carol", "unrelated"))        // 6
	mustStore(t, s, edit("r", "carol", 6, "unrelated!"))   // 7
	if v := mustView(t, s, "r", "bob", 1); v.Body != "third draft" || v.EditedAt.IsZero() || v.Deleted {
		t.Errorf("before the delete: %+v", v)
	}
	d := mustStore(t, s, del("r", "alice", 1)) // 8
	for _, m := range mustMessages(t, s, "r", store.Query{Limit: 100}) {
		erased := m.Seq == 1 || m.Seq == 2 || m.Seq == 4
		if erased && m.Body != "" {
			t.Errorf("seq %d kept its body %q after the delete", m.Seq, m.Body)
		}
		if !erased && m.Seq != 5 && m.Seq != 8 && m.Body == "" {
			t.Errorf("seq %d lost its body", m.Seq)
		}
	}
	v := mustView(t, s, "r", "bob", 1)
	if !v.Deleted || v.Body != "" || v.Reactions != nil || v.Sender != "alice" {
		t.Errorf("tombstone %+v", v)
	}
	if r := mustView(t, s, "r", "bob", 3).ReplyTo; r == nil || *r != (store.ReplyRef{Seq: 1, Sender: "alice", Deleted: true}) {
		t.Errorf("reply to the deleted message refers to %+v", r)
	}
	if v := mustView(t, s, "r", "bob", 6); v.Body != "unrelated!" {
		t.Errorf("another message's edit was touched: %+v", v)
	}
	if r := mustRoom(t, s, "r"); r.LastSeq != d.Seq {
		t.Errorf("head %d, want %d", r.LastSeq, d.Seq)
	}
}

// testPipelined submits entries that target entries submitted just before
// them, without waiting: a store that commits them together must apply
// the rules in submission order within the batch.
func testPipelined(t *testing.T, s store.Store) {
	createRoom(t, s, "r", store.Private, "owner")
	ctx := context.Background()
	type want struct {
		seq uint64
		dup bool
		err error
	}
	steps := []struct {
		m    store.NewMessage
		want want
	}{
		{msg("r", "alice", "one"), want{seq: 1}},
		{edit("r", "alice", 1, "one!"), want{seq: 2}},
		{edit("r", "bob", 1, "mine now"), want{err: store.ErrNotAllowed}},
		{react("r", "bob", 1, "👍"), want{seq: 3}},
		{react("r", "bob", 1, "👍"), want{dup: true}},
		{reply("r", "bob", "re", 1), want{seq: 4}},
		{react("r", "bob", 2, "👍"), want{err: store.ErrTargetNotFound}},
		{withID(msg("r", "carol", "two"), "c2"), want{seq: 5}},
		{withID(msg("r", "carol", "two again"), "c2"), want{seq: 5, dup: true}},
		{del("r", "owner", 5), want{seq: 6}},
		{edit("r", "carol", 5, "too late"), want{err: store.ErrTargetDeleted}},
		{del("r", "carol", 5), want{dup: true}},
		{del("r", "alice", 1), want{seq: 7}},
		{reply("r", "bob", "re deleted", 1), want{seq: 8}},
		{unreact("r", "bob", 1, "👍"), want{err: store.ErrTargetDeleted}},
		{reply("r", "bob", "re reaction", 3), want{err: store.ErrBadReply}},
	}
	var waits []func() (store.Message, bool, error)
	for _, st := range steps {
		waits = append(waits, s.StartAppend(ctx, st.m))
	}
	for i, wait := range waits {
		got, dup, err := wait()
		w := steps[i].want
		if got.Seq != w.seq || dup != w.dup || !errors.Is(err, w.err) || (w.err != nil) != (err != nil) {
			t.Errorf("step %d (%s): seq %d dup %v err %v, want seq %d dup %v err %v", i, steps[i].m.Kind, got.Seq, dup, err, w.seq, w.dup, w.err)
		}
	}
	log := mustMessages(t, s, "r", store.Query{Limit: 100})
	if got := seqsOf(log); !slices.Equal(got, seqRange(1, 8)) {
		t.Fatalf("log seqs %v, want 1..8", got)
	}
	for _, seq := range []uint64{1, 2, 5} {
		if log[seq-1].Body != "" {
			t.Errorf("seq %d kept %q after its delete in the same batch", seq, log[seq-1].Body)
		}
	}
	if v := mustView(t, s, "r", "bob", 4); v.ReplyTo == nil || !v.ReplyTo.Deleted {
		t.Errorf("reply view %+v", v)
	}
}

// testHistoryPaging: a page holds up to Limit messages whatever other
// entries lie between them, and walks both ways with seq bounds.
func testHistoryPaging(t *testing.T, s store.Store) {
	mustCreate(t, s, "r", "empty")
	var msgSeqs []uint64
	for i := range 12 {
		m := mustStore(t, s, msg("r", "alice", fmt.Sprint("m", i)))
		msgSeqs = append(msgSeqs, m.Seq)
		for j := range i % 3 {
			mustStore(t, s, react("r", fmt.Sprint("u", j), m.Seq, "👍"))
		}
		if i%4 == 1 {
			mustStore(t, s, edit("r", "alice", m.Seq, fmt.Sprint("m", i, " edited")))
		}
	}
	mustStore(t, s, react("r", "u9", msgSeqs[11], "🎉")) // the log ends with a reaction
	for _, desc := range []bool{false, true} {
		var got []uint64
		q := store.Query{Limit: 5, Descending: desc}
		for range 10 {
			page := mustHistory(t, s, "r", "alice", q)
			for _, v := range page {
				if v.Kind != store.KindMessage {
					t.Fatalf("History returned a %s entry", v.Kind)
				}
				got = append(got, v.Seq)
			}
			if len(page) < q.Limit {
				break
			}
			if desc {
				q.Before = page[len(page)-1].Seq
			} else {
				q.After = page[len(page)-1].Seq
			}
		}
		want := slices.Clone(msgSeqs)
		if desc {
			slices.Reverse(want)
		}
		if !slices.Equal(got, want) {
			t.Errorf("desc=%v: walked %v, want %v", desc, got, want)
		}
	}
	page := mustHistory(t, s, "r", "alice", store.Query{After: msgSeqs[1], Before: msgSeqs[5], Limit: 100})
	if got := seqsOfViews(page); !slices.Equal(got, msgSeqs[2:5]) {
		t.Errorf("bounded page %v, want %v", got, msgSeqs[2:5])
	}
	if page[3-2].Body != "m3" || mustView(t, s, "r", "alice", msgSeqs[5]).Body != "m5 edited" {
		t.Errorf("bodies %q / %q", page[1].Body, mustView(t, s, "r", "alice", msgSeqs[5]).Body)
	}
	if vs := mustHistory(t, s, "empty", "alice", store.Query{Limit: 10}); len(vs) != 0 {
		t.Errorf("empty room: %d views", len(vs))
	}
	if vs := mustHistory(t, s, "r", "alice", store.Query{Limit: 0}); len(vs) != 0 {
		t.Errorf("Limit 0: %d views", len(vs))
	}
	if _, err := s.History(context.Background(), "nope", "alice", store.Query{Limit: 10}); !errors.Is(err, store.ErrRoomNotFound) {
		t.Errorf("History of a missing room: %v", err)
	}
}

func seqsOfViews(vs []store.MessageView) []uint64 {
	out := make([]uint64, len(vs))
	for i, v := range vs {
		out[i] = v.Seq
	}
	return out
}

// testReplies: a reply carries its parent's seq, sender and the start of
// its current body.
func testReplies(t *testing.T, s store.Store) {
	mustCreate(t, s, "r")
	long := strings.Repeat("ä", store.SnippetRunes+20)
	mustStore(t, s, msg("r", "alice", long))                // 1
	mustStore(t, s, reply("r", "bob", "long, isn't it", 1)) // 2
	mustStore(t, s, msg("r", "carol", "short"))             // 3
	mustStore(t, s, reply("r", "bob", "re short", 3))       // 4
	mustStore(t, s, edit("r", "carol", 3, "shorter"))       // 5
	v := mustView(t, s, "r", "x", 2)
	if v.ReplyToSeq != 1 || v.ReplyTo == nil || *v.ReplyTo != (store.ReplyRef{Seq: 1, Sender: "alice", Snippet: strings.Repeat("ä", store.SnippetRunes)}) {
		t.Errorf("reply to the long message: %+v", v.ReplyTo)
	}
	if r := mustView(t, s, "r", "x", 4).ReplyTo; r == nil || *r != (store.ReplyRef{Seq: 3, Sender: "carol", Snippet: "shorter"}) {
		t.Errorf("reply to the edited message: %+v", r)
	}
	if v := mustView(t, s, "r", "x", 1); v.ReplyTo != nil || v.ReplyToSeq != 0 {
		t.Errorf("a message that replies to nothing: %+v", v.ReplyTo)
	}
}

// testReactions: counts, the viewer's own, the first users by time and
// the order of first appearance.
func testReactions(t *testing.T, s store.Store) {
	mustCreate(t, s, "r")
	mustStore(t, s, msg("r", "alice", "react to me")) // 1
	mustStore(t, s, msg("r", "alice", "and me"))      // 2
	for _, m := range []store.NewMessage{
		react("r", "u1", 1, "🎉"), react("r", "u2", 1, "👍"), react("r", "u3", 1, "👍"),
		react("r", "u4", 1, "👍"), react("r", "u5", 1, "👍"), react("r", "u2", 1, "🎉"),
		react("r", "u1", 2, "❤️"), unreact("r", "u2", 1, "👍"),
	} {
		mustStore(t, s, m)
	}
	want := []store.ReactionCount{
		{Emoji: "🎉", Count: 2, Users: []string{"u1", "u2"}},
		{Emoji: "👍", Count: 3, Mine: true, Users: []string{"u3", "u4", "u5"}},
	}
	checkReactions(t, mustView(t, s, "r", "u4", 1).Reactions, want)
	want[1].Mine = false
	want[0].Mine = true
	checkReactions(t, mustView(t, s, "r", "u1", 1).Reactions, want)
	// The emoji's last reactor leaves: it is gone, and comes back last.
	mustStore(t, s, unreact("r", "u1", 1, "🎉"))
	mustStore(t, s, unreact("r", "u2", 1, "🎉"))
	mustStore(t, s, react("r", "u2", 1, "🎉"))
	checkReactions(t, mustView(t, s, "r", "u2", 1).Reactions, []store.ReactionCount{
		{Emoji: "👍", Count: 3, Users: []string{"u3", "u4", "u5"}},
		{Emoji: "🎉", Count: 1, Mine: true, Users: []string{"u2"}},
	})
	checkReactions(t, mustView(t, s, "r", "u2", 2).Reactions, []store.ReactionCount{{Emoji: "❤️", Count: 1, Users: []string{"u1"}}})
}

func checkReactions(t *testing.T, got, want []store.ReactionCount) {
	t.Helper()
	if !slices.EqualFunc(got, want, func(a, b store.ReactionCount) bool {
		return a.Emoji == b.Emoji && a.Count == b.Count && a.Mine == b.Mine && slices.Equal(a.Users, b.Users)
	}) {
		t.Errorf("reactions %+v, want %+v", got, want)
	}
}

// testConcurrentReactions: many users react at once, each twice; every
// user counts once and the log holds one entry per user, without gaps.
func testConcurrentReactions(t *testing.T, s store.Store) {
	mustCreate(t, s, "r")
	mustStore(t, s, msg("r", "alice", "popular"))
	const users = 40
	var wg sync.WaitGroup
	var mu sync.Mutex
	stored := 0
	for i := range 2 * users {
		wg.Go(func() {
			_, dup, err := s.Append(context.Background(), react("r", fmt.Sprint("u", i%users), 1, "🔥"))
			if err != nil {
				t.Errorf("react: %v", err)
			}
			if !dup {
				mu.Lock()
				stored++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if stored != users {
		t.Errorf("%d reactions stored, want %d", stored, users)
	}
	if v := mustView(t, s, "r", "u7", 1); len(v.Reactions) != 1 || v.Reactions[0].Count != users || !v.Reactions[0].Mine {
		t.Errorf("reactions %+v, want %d 🔥 including mine", v.Reactions, users)
	}
	if got := seqsOf(mustMessages(t, s, "r", store.Query{Limit: 1000})); !slices.Equal(got, seqRange(1, users+1)) {
		t.Errorf("log seqs %v, want 1..%d", got, users+1)
	}
}

// testRetentionCascade: MaxMessages counts messages only; a pruned message
// takes its edits, deletes and reactions with it, even newer ones, and
// can no longer be targeted or replied to.
func testRetentionCascade(t *testing.T, s store.Store) {
	ctx := context.Background()
	mustCreate(t, s, "r")
	mustStore(t, s, msg("r", "alice", "old"))                 // 1
	mustStore(t, s, react("r", "bob", 1, "👍"))                // 2
	mustStore(t, s, msg("r", "alice", "older"))               // 3
	mustStore(t, s, msg("r", "alice", "kept"))                // 4
	mustStore(t, s, react("r", "bob", 4, "👍"))                // 5
	mustStore(t, s, withID(edit("r", "alice", 3, "x"), "e3")) // 6: targets a message to be pruned
	mustStore(t, s, reply("r", "bob", "re old", 1))           // 7
	mustStore(t, s, react("r", "carol", 1, "🎉"))              // 8
	mustStore(t, s, msg("r", "alice", "newest"))              // 9
	// Three messages are kept (4, 7, 9); 1 and 3 go with 2, 6 and 8.
	n, err := s.Prune(ctx, store.Retention{MaxMessages: 3})
	if err != nil || n != 5 {
		t.Fatalf("Prune deleted %d (%v), want 5 entries", n, err)
	}
	if got := seqsOf(mustMessages(t, s, "r", store.Query{Limit: 100})); !slices.Equal(got, []uint64{4, 5, 7, 9}) {
		t.Errorf("log after pruning: %v, want [4 5 7 9]", got)
	}
	if got := seqsOfViews(mustHistory(t, s, "r", "bob", store.Query{Limit: 100})); !slices.Equal(got, []uint64{4, 7, 9}) {
		t.Errorf("history after pruning: %v, want [4 7 9]", got)
	}
	if r := mustView(t, s, "r", "bob", 7).ReplyTo; r == nil || *r != (store.ReplyRef{Seq: 1}) {
		t.Errorf("reply to a pruned message refers to %+v, want only its seq", r)
	}
	if v := mustView(t, s, "r", "bob", 4); len(v.Reactions) != 1 || !v.Reactions[0].Mine {
		t.Errorf("kept message's reactions: %+v", v.Reactions)
	}
	for _, m := range []store.NewMessage{edit("r", "alice", 1, "x"), del("r", "alice", 3), react("r", "bob", 1, "👍")} {
		if _, _, err := s.Append(ctx, m); !errors.Is(err, store.ErrTargetNotFound) {
			t.Errorf("%s of a pruned message: %v, want ErrTargetNotFound", m.Kind, err)
		}
	}
	if _, _, err := s.Append(ctx, reply("r", "bob", "re", 3)); !errors.Is(err, store.ErrBadReply) {
		t.Errorf("reply to a pruned message: %v, want ErrBadReply", err)
	}
	// The pruned edit's ClientMsgID is free again.
	if m := mustStore(t, s, withID(edit("r", "alice", 4, "kept!"), "e3")); m.Seq != 10 {
		t.Errorf("new entry got seq %d, want 10", m.Seq)
	}
	if n, err := s.Prune(ctx, store.Retention{MaxMessages: 3}); err != nil || n != 0 {
		t.Errorf("second Prune deleted %d (%v), want 0", n, err)
	}
}
