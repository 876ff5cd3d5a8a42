package app_test

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"

	_ "modernc.org/sqlite"

	parleyv1 "github.com/parleychat/parley/gen/parley/v1"
)

// A Join stream's sends are pipelined: while the store is busy with one,
// the stream's next send frames are read and queued behind it (so they can
// share the next commit) instead of waiting their turn to be read. Replies
// still come in the order of the frames, each after its message, and a
// frame that is not a send is answered after the sends before it.
func TestJoinSendsArePipelined(t *testing.T) {
	if testStore() != "sqlite" {
		t.Skip("holds SQLite's write lock")
	}
	// One request per batch, so that exactly the first send waits in the
	// blocked batch and the others, once read, wait in the queue.
	ts := startServer(t, func(c *appConfig) { c.SQLite.MaxBatch = 1 })
	ts.createRoom(t, "pipe")
	js := startJoin(t, ts.dial(t), ts.token(t, "piper"))
	js.send(&parleyv1.JoinRequest{Frame: &parleyv1.JoinRequest_Join{Join: &parleyv1.JoinRequest_JoinRoom{Room: "pipe"}}})
	for {
		ev, err := js.stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if ev.GetJoined() != nil {
			break
		}
	}

	// Another connection takes the database's write lock: the writer's next
	// batch waits for it (the busy timeout is 5 s).
	ctx := context.Background()
	db, err := sql.Open("sqlite", filepath.Join(ts.cfg.DataDir, "parley.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	lock, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if _, err := lock.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	const n = 10
	var refs []string
	for i := range n {
		refs = append(refs, js.send(&parleyv1.JoinRequest{Frame: &parleyv1.JoinRequest_Send{Send: &parleyv1.JoinRequest_Post{Room: "pipe", Body: fmt.Sprint(i)}}}))
	}
	refs = append(refs, js.send(&parleyv1.JoinRequest{Frame: &parleyv1.JoinRequest_Typing{Typing: &parleyv1.JoinRequest_SetTyping{Room: "pipe", Active: true}}}))
	waitFor(t, "the sends behind the first to be queued for the store", func() bool {
		return scrape(t, ts.Addr())[`parley_store_queued_requests{store="sqlite"}`] == n-1
	})
	if _, err := lock.ExecContext(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}

	seen := map[uint64]bool{} // message events, by seq
	for i := 0; i < len(refs); {
		ev, err := js.stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if m := ev.GetMessage(); m != nil {
			seen[m.GetSeq()] = true
			continue
		}
		r := ev.GetReply()
		if r == nil {
			continue
		}
		if r.GetRef() != refs[i] || r.GetCode() != 0 {
			t.Fatalf("reply %d: ref %q code %d (%s), want ref %q with code 0", i, r.GetRef(), r.GetCode(), r.GetError(), refs[i])
		}
		if i < n {
			if m := r.GetMessage(); m.GetSeq() != uint64(i+1) || m.GetBody() != fmt.Sprint(i) || !seen[m.GetSeq()] {
				t.Fatalf("reply to send %d carries seq %d body %q (its message event seen before: %v), want seq %d body %q after its event",
					i, m.GetSeq(), m.GetBody(), seen[m.GetSeq()], i+1, fmt.Sprint(i))
			}
		}
		i++
	}
}
