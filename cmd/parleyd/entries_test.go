package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	parleyv1 "github.com/parleychat/parley/gen/parley/v1"
)

// entryKind is the kind of a room log entry, as the tests see it.
type entryKind int

const (
	kindMessage entryKind = iota
	kindEdit
	kindDelete
	kindReact
	kindUnreact
)

func (k entryKind) String() string {
	return [...]string{"message", "edit", "delete", "react", "unreact"}[k]
}

// logEntry is one entry of a room's log, of any kind, as a stream
// delivered it or as a client asked for it and had it acked.
type logEntry struct {
	kind    entryKind
	room    string
	seq     uint64
	sender  string
	id      string // client_msg_id
	body    string // message and edit
	target  uint64 // edit, delete, react, unreact
	replyTo uint64 // message
	emoji   string // react, unreact
}

// entryOf returns the log entry a Join event carries, if it carries one.
func entryOf(ev *parleyv1.JoinResponse) (logEntry, bool) {
	switch {
	case ev.GetMessage() != nil:
		m := ev.GetMessage()
		return logEntry{kind: kindMessage, room: m.GetRoom(), seq: m.GetSeq(), sender: m.GetSender(), id: m.GetClientMsgId(), body: m.GetBody(), replyTo: m.GetReplyToSeq()}, true
	case ev.GetEdit() != nil:
		e := ev.GetEdit()
		return logEntry{kind: kindEdit, room: e.GetRoom(), seq: e.GetSeq(), sender: e.GetSender(), id: e.GetClientMsgId(), body: e.GetBody(), target: e.GetTargetSeq()}, true
	case ev.GetDelete() != nil:
		d := ev.GetDelete()
		return logEntry{kind: kindDelete, room: d.GetRoom(), seq: d.GetSeq(), sender: d.GetSender(), id: d.GetClientMsgId(), target: d.GetTargetSeq()}, true
	case ev.GetReactionAdded() != nil, ev.GetReactionRemoved() != nil:
		r, k := ev.GetReactionAdded(), kindReact
		if r == nil {
			r, k = ev.GetReactionRemoved(), kindUnreact
		}
		return logEntry{kind: k, room: r.GetRoom(), seq: r.GetSeq(), sender: r.GetSender(), id: r.GetClientMsgId(), target: r.GetTargetSeq(), emoji: r.GetEmoji()}, true
	}
	return logEntry{}, false
}

// sameEntry reports how got differs from want, ignoring the body (which a
// delete erases, in the message and its edits).
func sameEntry(want, got logEntry) error {
	w, g := want, got
	w.body, g.body = "", ""
	if w != g {
		return fmt.Errorf("entry %+v, want %+v", got, want)
	}
	return nil
}

// msgView is a message as it is now: what applying its room's entries in
// seq order gives, and what ListMessages must show.
type msgView struct {
	seq       uint64
	sender    string
	id        string
	body      string
	replyTo   uint64
	edited    bool
	deleted   bool
	reactions []reactionView // in the order each emoji appeared
}

type reactionView struct {
	emoji string
	users []string // oldest first
}

// roomView is a room's messages as they are now, oldest first.
type roomView struct {
	msgs  []*msgView
	bySeq map[uint64]*msgView
}

// applyEntries applies entries (of one room or several) in seq order per
// room, as docs/clients.md ("Building the view") tells a client to. An
// entry whose target is not held changes nothing.
func applyEntries(entries []logEntry) map[string]*roomView {
	sorted := slices.Clone(entries)
	slices.SortStableFunc(sorted, func(a, b logEntry) int {
		return cmpOr(strings.Compare(a.room, b.room), int(a.seq)-int(b.seq))
	})
	views := map[string]*roomView{}
	for _, e := range sorted {
		v := views[e.room]
		if v == nil {
			v = &roomView{bySeq: map[uint64]*msgView{}}
			views[e.room] = v
		}
		if e.kind == kindMessage {
			m := &msgView{seq: e.seq, sender: e.sender, id: e.id, body: e.body, replyTo: e.replyTo}
			v.msgs = append(v.msgs, m)
			v.bySeq[e.seq] = m
			continue
		}
		t := v.bySeq[e.target]
		if t == nil {
			continue
		}
		switch e.kind {
		case kindEdit:
			t.body, t.edited = e.body, true
		case kindDelete:
			t.body, t.deleted, t.reactions = "", true, nil
		case kindReact:
			i := slices.IndexFunc(t.reactions, func(r reactionView) bool { return r.emoji == e.emoji })
			if i < 0 {
				t.reactions = append(t.reactions, reactionView{emoji: e.emoji})
				i = len(t.reactions) - 1
			}
			if !slices.Contains(t.reactions[i].users, e.sender) {
				t.reactions[i].users = append(t.reactions[i].users, e.sender)
			}
		case kindUnreact:
			i := slices.IndexFunc(t.reactions, func(r reactionView) bool { return r.emoji == e.emoji })
			if i < 0 {
				continue
			}
			t.reactions[i].users = slices.DeleteFunc(t.reactions[i].users, func(u string) bool { return u == e.sender })
			if len(t.reactions[i].users) == 0 {
				t.reactions = slices.Delete(t.reactions, i, i+1)
			}
		}
	}
	return views
}

func cmpOr(a, b int) int {
	if a != 0 {
		return a
	}
	return b
}

// compareView reports the first difference between want and the messages
// ListMessages returned to caller: body, edited, deleted, reply and its
// parent (its snippet is the parent's first 100 runes), and each reaction's emoji, count, first users and mine.
func compareView(want *roomView, got []*parleyv1.Message, caller string) error {
	var msgs []*msgView
	if want != nil {
		msgs = want.msgs
	}
	if len(got) != len(msgs) {
		return fmt.Errorf("%d messages, want %d", len(got), len(msgs))
	}
	for i, w := range msgs {
		g := got[i]
		if g.GetSeq() != w.seq || g.GetSender() != w.sender || g.GetClientMsgId() != w.id {
			return fmt.Errorf("message %d is seq %d by %s (%s), want seq %d by %s (%s)", i, g.GetSeq(), g.GetSender(), g.GetClientMsgId(), w.seq, w.sender, w.id)
		}
		if g.GetBody() != w.body || g.GetDeleted() != w.deleted {
			return fmt.Errorf("seq %d: body %q deleted %v, want %q deleted %v", w.seq, g.GetBody(), g.GetDeleted(), w.body, w.deleted)
		}
		if !w.deleted && (g.GetEditedAt() != nil) != w.edited {
			return fmt.Errorf("seq %d: edited_at %v, want edited %v", w.seq, g.GetEditedAt(), w.edited)
		}
		if g.GetReplyToSeq() != w.replyTo {
			return fmt.Errorf("seq %d: reply_to_seq %d, want %d", w.seq, g.GetReplyToSeq(), w.replyTo)
		}
		if w.replyTo != 0 {
			p, ref := want.bySeq[w.replyTo], g.GetReplyTo()
			if p == nil || ref.GetSeq() != p.seq || ref.GetSender() != p.sender || ref.GetDeleted() != p.deleted ||
				ref.GetSnippet() != string([]rune(p.body)[:min(100, len([]rune(p.body)))]) {
				return fmt.Errorf("seq %d: reply_to %v, want parent %+v", w.seq, ref, p)
			}
		}
		if len(g.GetReactions()) != len(w.reactions) {
			return fmt.Errorf("seq %d: reactions %v, want %+v", w.seq, g.GetReactions(), w.reactions)
		}
		for j, wr := range w.reactions {
			gr := g.GetReactions()[j]
			first := wr.users[:min(3, len(wr.users))]
			if gr.GetEmoji() != wr.emoji || int(gr.GetCount()) != len(wr.users) || !slices.Equal(gr.GetUsers(), first) ||
				gr.GetMine() != slices.Contains(wr.users, caller) {
				return fmt.Errorf("seq %d: reaction %d is %v, want %q by %v (caller %s)", w.seq, j, gr, wr.emoji, wr.users, caller)
			}
		}
	}
	return nil
}

// replayAll joins rooms with after_seq 0 on a new stream and returns each
// room's entries up to its head, failing unless their seqs are exactly
// 1..head, in order.
func replayAll(t *testing.T, ctx context.Context, c parleyv1.ChatServiceClient, rooms ...string) ([]logEntry, map[string]uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	s, err := c.Join(ctx)
	if err != nil {
		t.Fatal(err)
	}
	zero := uint64(0)
	for i, room := range rooms {
		if err := s.Send(&parleyv1.JoinRequest{Ref: fmt.Sprint(i), Frame: &parleyv1.JoinRequest_Join{Join: &parleyv1.JoinRequest_JoinRoom{Room: room, AfterSeq: &zero}}}); err != nil {
			t.Fatal(err)
		}
	}
	var out []logEntry
	heads, last := map[string]uint64{}, map[string]uint64{}
	for replayed := 0; replayed < len(rooms); {
		ev, err := s.Recv()
		if err != nil {
			t.Fatalf("replay: %v", err)
		}
		if r := ev.GetReply(); r != nil && r.GetCode() != 0 {
			t.Fatalf("replay: join %s: %s", r.GetRoom(), r.GetError())
		}
		if j := ev.GetJoined(); j != nil {
			heads[j.GetRoom()] = j.GetHeadSeq()
		}
		if r := ev.GetReplayed(); r != nil {
			if r.GetThroughSeq() != last[r.GetRoom()] {
				t.Fatalf("replay of %s: through seq %d, last entry %d", r.GetRoom(), r.GetThroughSeq(), last[r.GetRoom()])
			}
			replayed++
		}
		if e, ok := entryOf(ev); ok {
			if want := last[e.room] + 1; e.seq != want {
				t.Fatalf("replay of %s: seq %d, want %d", e.room, e.seq, want)
			}
			last[e.room] = e.seq
			out = append(out, e)
		}
	}
	for _, room := range rooms {
		if last[room] != heads[room] {
			t.Fatalf("replay of %s ended at seq %d, head %d", room, last[room], heads[room])
		}
	}
	return out, heads
}

// ackedEntries returns the entries that ops stored, by their answers,
// counted by kind, and how many were no-ops and refusals. It fails if an
// op asked for what was so already was stored, or another was not.
func ackedEntries(t *testing.T, ops []*crashOp) (acked []logEntry, kinds map[entryKind]int, noops, refused int) {
	t.Helper()
	kinds = map[entryKind]int{}
	for _, op := range ops {
		switch {
		case op.rejected:
			refused++
		case op.entry.seq == 0:
			if !op.noop {
				t.Fatalf("%+v was answered OK with no seq", op.entry)
			}
			noops++
		case op.noop:
			t.Fatalf("%+v, asked for what was so already, was stored", op.entry)
		default:
			acked = append(acked, op.entry)
			kinds[op.entry.kind]++
		}
	}
	return acked, kinds, noops, refused
}

// erased reports whether a delete erased e's body: e is a message, or an
// edit of a message, that want shows deleted.
func erased(want map[string]*roomView, e logEntry) bool {
	target := e.seq
	if e.kind == kindEdit {
		target = e.target
	}
	v := want[e.room]
	return v != nil && v.bySeq[target] != nil && v.bySeq[target].deleted
}

// checkStored fails unless stored (a replay of the rooms' logs) holds
// exactly the acked entries, each at its acked seq, once per
// (sender, client_msg_id), the erased ones with empty bodies.
func checkStored(t *testing.T, want map[string]*roomView, acked, stored []logEntry) {
	t.Helper()
	type slot struct {
		room string
		seq  uint64
	}
	bySlot := map[slot]logEntry{}
	type ackKey struct{ room, sender, id string }
	byKey := map[ackKey]bool{}
	for _, e := range stored {
		bySlot[slot{e.room, e.seq}] = e
		if e.id == "" {
			continue
		}
		k := ackKey{e.room, e.sender, e.id}
		if byKey[k] {
			t.Fatalf("%v stored twice", k)
		}
		byKey[k] = true
	}
	for _, a := range acked {
		g, ok := bySlot[slot{a.room, a.seq}]
		if !ok {
			t.Fatalf("acked %+v is not stored", a)
		}
		if err := sameEntry(a, g); err != nil {
			t.Fatalf("seq %d of %s: %v", a.seq, a.room, err)
		}
		if wantBody := a.body; erased(want, a) && g.body != "" || !erased(want, a) && g.body != wantBody {
			t.Fatalf("seq %d of %s replayed with body %q, want %q (erased %v)", a.seq, a.room, g.body, wantBody, erased(want, a))
		}
	}
	if len(stored) != len(acked) {
		// Frames whose ack was lost are stored once and acked on retry, so
		// stored and acked must match exactly.
		t.Fatalf("stored %d entries, acked %d", len(stored), len(acked))
	}
}

// checkRefusals fails unless every refused op named a deleted message.
func checkRefusals(t *testing.T, want map[string]*roomView, ops []*crashOp) {
	t.Helper()
	for _, op := range ops {
		if op.rejected {
			if v := want[op.entry.room]; v == nil || v.bySeq[op.entry.target] == nil || !v.bySeq[op.entry.target].deleted {
				t.Fatalf("%+v was refused, but its target is not deleted", op.entry)
			}
		}
	}
}
