package postgres_test

import (
	"context"
	"fmt"
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
