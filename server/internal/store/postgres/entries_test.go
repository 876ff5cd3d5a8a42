package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/parleychat/parley/server/internal/store"
	"github.com/parleychat/parley/server/internal/store/postgres"
)

// TestUpgradeToEntryKinds opens a schema that today's released version
// (2) holds messages in: they read back as messages, in the log and in
// the history, and can be edited, reacted to, replied to and deleted.
func TestUpgradeToEntryKinds(t *testing.T) {
	ctx := context.Background()
	schema := postgres.NewSchema(t)
	postgres.MigrateTo(t, schema, 2)
	postgres.ExecSQL(t, schema, `INSERT INTO rooms (name, visibility, created_by, created_at, last_seq, last_message_at)
		VALUES ('r', 1, 'alice', now(), 3, now())`)
	for i := 1; i <= 3; i++ {
		postgres.ExecSQL(t, schema, fmt.Sprintf(`INSERT INTO messages (room, seq, sender, body, sent_at, client_msg_id)
			VALUES ('r', %d, 'alice', 'old %d', now(), 'id-%d')`, i, i, i))
	}
	s := postgres.OpenTest(t, postgres.Config{Schema: schema})
	ms, err := s.Messages(ctx, "r", store.Query{Limit: 10})
	if err != nil || len(ms) != 3 {
		t.Fatalf("Messages = %d (%v)", len(ms), err)
	}
	for i, m := range ms {
		if m.Kind != store.KindMessage || m.Body != fmt.Sprint("old ", i+1) || m.TargetSeq != 0 || m.ReplyToSeq != 0 || m.Emoji != "" {
			t.Errorf("old message %d reads as %+v", i+1, m)
		}
	}
	vs, err := s.History(ctx, "r", "bob", store.Query{Limit: 10})
	if err != nil || len(vs) != 3 || vs[1].Body != "old 2" || vs[1].Deleted || !vs[1].EditedAt.IsZero() || vs[1].Reactions != nil || vs[1].ReplyTo != nil {
		t.Fatalf("History = %+v (%v)", vs, err)
	}
	for _, m := range []store.NewMessage{
		{Room: "r", Kind: store.KindEdit, Sender: "alice", TargetSeq: 1, Body: "old 1, edited"},
		{Room: "r", Kind: store.KindReactionAdd, Sender: "bob", TargetSeq: 1, Emoji: "👍"},
		{Room: "r", Sender: "bob", Body: "re", ReplyToSeq: 1},
		{Room: "r", Kind: store.KindDelete, Sender: "alice", TargetSeq: 2},
	} {
		if _, dup, err := s.Append(ctx, m); err != nil || dup {
			t.Fatalf("%s after the upgrade: dup %v, %v", m.Kind, dup, err)
		}
	}
	vs, err = s.History(ctx, "r", "bob", store.Query{Limit: 10})
	if err != nil || len(vs) != 4 || vs[0].Body != "old 1, edited" || len(vs[0].Reactions) != 1 || !vs[0].Reactions[0].Mine ||
		!vs[1].Deleted || vs[3].ReplyTo == nil || vs[3].ReplyTo.Snippet != "old 1, edited" {
		t.Errorf("History after changes = %+v (%v)", vs, err)
	}
	if m, dup, err := s.Append(ctx, store.NewMessage{Room: "r", Sender: "alice", Body: "old 3", ClientMsgID: "id-3"}); err != nil || !dup || m.Seq != 3 {
		t.Errorf("retry of an old message: seq %d dup %v (%v)", m.Seq, dup, err)
	}
}

// A delete leaves no row holding the text: not the message's, not its
// edits'. (Dead row versions stay in PostgreSQL's pages and WAL until
// VACUUM reclaims them and the WAL is recycled; that is PostgreSQL's to
// manage, see docs.)
func TestDeleteErasesRows(t *testing.T) {
	ctx := context.Background()
	schema := postgres.NewSchema(t)
	s := postgres.OpenTest(t, postgres.Config{Schema: schema})
	if _, err := s.CreateRoom(ctx, store.Room{Name: "r", Visibility: store.Public, CreatedBy: "o"}); err != nil {
		t.Fatal(err)
	}
	for _, m := range []store.NewMessage{
		{Room: "r", Sender: "alice", Body: "the secret"},
		{Room: "r", Kind: store.KindEdit, Sender: "alice", TargetSeq: 1, Body: "the secret, edited"},
		{Room: "r", Kind: store.KindDelete, Sender: "alice", TargetSeq: 1},
	} {
		if _, _, err := s.Append(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	postgres.ExecSQL(t, schema, `DO $$ BEGIN
		IF EXISTS (SELECT 1 FROM messages WHERE body LIKE '%secret%') THEN RAISE EXCEPTION 'text still stored'; END IF;
	END $$`)
}

// TestTwoStoresReactions is two nodes on one schema taking reactions to
// the same messages at once, each user's sent through both nodes, while
// one node also edits: every user counts once and the log has no gaps.
func TestTwoStoresReactions(t *testing.T) {
	ctx := context.Background()
	schema := postgres.NewSchema(t)
	nodes := []*postgres.Store{
		postgres.OpenTest(t, postgres.Config{Schema: schema}),
		postgres.OpenTest(t, postgres.Config{Schema: schema, MaxBatch: 8}),
	}
	if _, err := nodes[0].CreateRoom(ctx, store.Room{Name: "r", Visibility: store.Public, CreatedBy: "o"}); err != nil {
		t.Fatal(err)
	}
	const msgs, users = 4, 30
	for i := range msgs {
		if _, _, err := nodes[0].Append(ctx, store.NewMessage{Room: "r", Sender: "alice", Body: fmt.Sprint("m", i)}); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	stored := map[uint64]int{}
	for n, s := range nodes {
		for u := range users {
			wg.Go(func() {
				for target := uint64(1); target <= msgs; target++ {
					m := store.NewMessage{Room: "r", Kind: store.KindReactionAdd, Sender: fmt.Sprint("u", u), TargetSeq: target, Emoji: "👍"}
					_, dup, err := s.Append(ctx, m)
					if err != nil {
						t.Errorf("node %d: %v", n, err)
					}
					if !dup {
						mu.Lock()
						stored[target]++
						mu.Unlock()
					}
				}
			})
		}
	}
	wg.Go(func() {
		for i := range 20 {
			if _, _, err := nodes[1].Append(ctx, store.NewMessage{Room: "r", Kind: store.KindEdit, Sender: "alice", TargetSeq: 4, Body: fmt.Sprint("edit ", i)}); err != nil {
				t.Errorf("edit: %v", err)
			}
		}
	})
	wg.Wait()
	for target := uint64(1); target <= msgs; target++ {
		if stored[target] != users {
			t.Errorf("seq %d: %d reactions stored, want %d", target, stored[target], users)
		}
	}
	vs, err := nodes[1].History(ctx, "r", "u1", store.Query{Limit: 10})
	if err != nil || len(vs) != msgs {
		t.Fatalf("History: %d (%v)", len(vs), err)
	}
	for _, v := range vs {
		if len(v.Reactions) != 1 || v.Reactions[0].Count != users || !v.Reactions[0].Mine {
			t.Errorf("seq %d reactions %+v", v.Seq, v.Reactions)
		}
	}
	if vs[3].Body != "edit 19" {
		t.Errorf("seq 4 body %q, want the last edit", vs[3].Body)
	}
	want := uint64(msgs + msgs*users + 20)
	log, err := nodes[0].Messages(ctx, "r", store.Query{Limit: 1000})
	if err != nil || uint64(len(log)) != want || log[len(log)-1].Seq != want {
		t.Errorf("log holds %d entries (%v), want 1..%d", len(log), err, want)
	}
}

// TestPruneBesideReactions prunes a message on one node while another
// takes reactions to it: once both are done, nothing in the log or the
// reaction tables refers to the pruned message.
func TestPruneBesideReactions(t *testing.T) {
	ctx := context.Background()
	schema := postgres.NewSchema(t)
	a := postgres.OpenTest(t, postgres.Config{Schema: schema})
	b := postgres.OpenTest(t, postgres.Config{Schema: schema})
	if _, err := a.CreateRoom(ctx, store.Room{Name: "r", Visibility: store.Public, CreatedBy: "o"}); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, _, err := a.Append(ctx, store.NewMessage{Room: "r", Sender: "alice", Body: fmt.Sprint("m", i)}); err != nil {
			t.Fatal(err)
		}
	}
	started := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for u := range 300 {
			if u == 20 {
				close(started)
			}
			m := store.NewMessage{Room: "r", Kind: store.KindReactionAdd, Sender: fmt.Sprint("u", u), TargetSeq: 1, Emoji: "👍"}
			if _, _, err := a.Append(ctx, m); err != nil && !errors.Is(err, store.ErrTargetNotFound) {
				t.Errorf("react: %v", err)
			}
		}
	})
	<-started
	if _, err := b.Prune(ctx, store.Retention{MaxMessages: 2}); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	log, err := b.Messages(ctx, "r", store.Query{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range log {
		if m.Seq == 1 || m.TargetSeq == 1 {
			t.Fatalf("seq %d (%s of %d) outlived the prune of seq 1", m.Seq, m.Kind, m.TargetSeq)
		}
	}
	postgres.ExecSQL(t, schema, `DO $$ BEGIN
		IF EXISTS (SELECT 1 FROM reactions WHERE target_seq = 1) OR EXISTS (SELECT 1 FROM reaction_counts WHERE target_seq = 1) THEN
			RAISE EXCEPTION 'reactions to a pruned message remain';
		END IF;
	END $$`)
}
