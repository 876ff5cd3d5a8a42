package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/parleychat/parley/server/internal/store"
	"github.com/parleychat/parley/server/internal/store/internal/groupcommit"
)

// These tests hand batches straight to the writer's process, so that what
// shares a batch is certain. They call it only while the writer goroutine is
// idle: no other request is in flight, and after its last reply the writer
// touches only its own batch slice.

func openInternal(t *testing.T) *Store {
	t.Helper()
	s, err := Open(context.Background(), Config{Path: filepath.Join(t.TempDir(), "parley.db")})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	for _, r := range []string{"a", "b"} {
		if _, err := s.CreateRoom(context.Background(), store.Room{Name: r, Visibility: store.Public}); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func appendReq(room, sender, body, id string) *request {
	m := store.NewMessage{Room: room, Sender: sender, Body: body, ClientMsgID: id}
	return groupcommit.NewRequest[op, result](context.Background(), op{msg: m})
}

// outcome is a request's answer.
type outcome struct {
	msg store.Message
	dup bool
	err error
}

func runBatch(s *Store, reqs ...*request) []outcome {
	s.w.process(slices.Clone(reqs)) // process clears its slice
	out := make([]outcome, len(reqs))
	for i, r := range reqs {
		<-r.Done()
		out[i] = outcome{r.Out.msg, r.Out.dup, r.Err}
	}
	return out
}

func TestBatchAssignsSeqsInArrivalOrder(t *testing.T) {
	s := openInternal(t)
	res := runBatch(s,
		appendReq("a", "u1", "a1", "x"),
		appendReq("b", "u1", "b1", "x"),
		appendReq("a", "u2", "a2", ""),
		appendReq("a", "u1", "a1 again", "x"), // duplicate of the first, same batch
		appendReq("ghost", "u1", "lost", ""),  // unknown room: its own error only
		appendReq("a", "u2", "a3", "y"),
	)
	want := []struct {
		room string
		seq  uint64
		body string
		dup  bool
	}{{"a", 1, "a1", false}, {"b", 1, "b1", false}, {"a", 2, "a2", false}, {"a", 1, "a1", true}, {}, {"a", 3, "a3", false}}
	for i, w := range want {
		r := res[i]
		if i == 4 {
			if !errors.Is(r.err, store.ErrRoomNotFound) {
				t.Errorf("request %d: got %v, want ErrRoomNotFound", i, r.err)
			}
			continue
		}
		if r.err != nil || r.msg.Room != w.room || r.msg.Seq != w.seq || r.msg.Body != w.body || r.dup != w.dup {
			t.Errorf("request %d: got %+v dup %v err %v, want %s/%d %q dup %v", i, r.msg, r.dup, r.err, w.room, w.seq, w.body, w.dup)
		}
	}
	if !reflect.DeepEqual(res[3].msg, res[0].msg) {
		t.Errorf("in-batch duplicate got %+v, want the original %+v", res[3].msg, res[0].msg)
	}
}

// TestBatchWithRetryOfStoredMessage covers the careful second attempt: the
// optimistic insert meets an earlier batch's row in the unique index.
func TestBatchWithRetryOfStoredMessage(t *testing.T) {
	s := openInternal(t)
	first := runBatch(s, appendReq("a", "u1", "hello", "m1"))[0]
	res := runBatch(s,
		appendReq("a", "u2", "new 1", "n1"),
		appendReq("a", "u1", "hello", "m1"),
		appendReq("a", "u2", "new 2", ""),
	)
	if res[0].msg.Seq != 2 || res[0].dup || res[2].msg.Seq != 3 || res[2].dup {
		t.Errorf("new messages got %+v and %+v, want seqs 2 and 3", res[0], res[2])
	}
	if !res[1].dup || !reflect.DeepEqual(res[1].msg, first.msg) {
		t.Errorf("retry got %+v dup %v, want the original %+v", res[1].msg, res[1].dup, first.msg)
	}
	checkRoom(t, s, "a", 3)
}

// TestFailedBatchStoresNothing makes one message of a batch fail inside
// SQLite: every request in the batch gets the error, nothing of the batch is
// stored, and no seq is used up.
func TestFailedBatchStoresNothing(t *testing.T) {
	s := openInternal(t)
	runBatch(s, appendReq("a", "u", "before", ""))
	addPoisonTrigger(t, s.cfg.Path)
	res := runBatch(s,
		appendReq("a", "u", "fine", "f1"),
		appendReq("b", "u", "poison", ""),
		appendReq("a", "u", "fine too", ""),
	)
	for i, r := range res {
		if r.err == nil || !strings.Contains(r.err.Error(), "poisoned") || !strings.Contains(r.err.Error(), "commit batch of 3") {
			t.Errorf("request %d: got %+v, err %v; want the batch's error", i, r.msg, r.err)
		}
	}
	checkRoom(t, s, "a", 1)
	checkRoom(t, s, "b", 0)
	// The same keys succeed afterwards, with the seqs the failed batch did not use.
	res = runBatch(s, appendReq("a", "u", "fine", "f1"), appendReq("b", "u", "ok", ""))
	if res[0].err != nil || res[0].dup || res[0].msg.Seq != 2 || res[1].err != nil || res[1].msg.Seq != 1 {
		t.Errorf("after the failed batch got %+v and %+v, want a/2 and b/1", res[0], res[1])
	}
}

func addPoisonTrigger(t *testing.T, path string) {
	t.Helper()
	db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	_, err = db.Exec(`CREATE TRIGGER poison BEFORE INSERT ON bodies WHEN NEW.body = 'poison'
		BEGIN SELECT RAISE(ABORT, 'poisoned'); END`)
	if err != nil {
		t.Fatal(err)
	}
}

func checkRoom(t *testing.T, s *Store, room string, lastSeq uint64) {
	t.Helper()
	r, err := s.Room(context.Background(), room)
	if err != nil {
		t.Fatal(err)
	}
	ms, err := s.Messages(context.Background(), room, store.Query{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if r.LastSeq != lastSeq || len(ms) != int(lastSeq) {
		t.Errorf("room %q: LastSeq %d with %d messages, want %d", room, r.LastSeq, len(ms), lastSeq)
	}
}

func TestCancelledRequestIsSkipped(t *testing.T) {
	s := openInternal(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	skipped := appendReq("a", "u", "never", "")
	skipped.Ctx = ctx
	res := runBatch(s, appendReq("a", "u", "one", ""), skipped, appendReq("a", "u", "two", ""))
	if !errors.Is(res[1].err, context.Canceled) {
		t.Errorf("cancelled request got %v, want context.Canceled", res[1].err)
	}
	if res[0].msg.Seq != 1 || res[2].msg.Seq != 2 {
		t.Errorf("live requests got seqs %d and %d, want 1 and 2", res[0].msg.Seq, res[2].msg.Seq)
	}
	checkRoom(t, s, "a", 2)
}

func TestInsertSizes(t *testing.T) {
	st := &statements{insMsgs: map[int]*sql.Stmt{}}
	for n := 1; n <= 8; n *= 2 {
		st.insMsgs[n] = &sql.Stmt{}
	}
	for _, tc := range []struct{ n, want int }{{1, 1}, {2, 2}, {3, 2}, {7, 4}, {8, 8}, {100, 8}} {
		if got := largest(st.insMsgs, tc.n); got != tc.want {
			t.Errorf("largest(insMsgs, %d) = %d, want %d", tc.n, got, tc.want)
		}
	}
	if got := insertSQL(2); !strings.HasSuffix(got, fmt.Sprint("VALUES (?,?,?,'',?,?,?,?,?,?),(?,?,?,'',?,?,?,?,?,?)")) {
		t.Errorf("insertSQL(2) = %q", got)
	}
}

// A prune step in the same batch as entries that name the messages it
// deletes runs first: those entries find their targets gone, and nothing
// that names a pruned message is left behind.
func TestPruneStepBeforeEntriesOfItsBatch(t *testing.T) {
	s := openInternal(t)
	for i := range 3 {
		if _, _, err := s.Append(context.Background(), store.NewMessage{Room: "a", Sender: "u", Body: fmt.Sprint("m", i)}); err != nil {
			t.Fatal(err)
		}
	}
	entry := func(m store.NewMessage) *request {
		m.Room, m.Sender = "a", "u"
		return groupcommit.NewRequest[op, result](context.Background(), op{msg: m})
	}
	res := runBatch(s,
		entry(store.NewMessage{Kind: store.KindEdit, TargetSeq: 1, Body: "edited"}),
		entry(store.NewMessage{Kind: store.KindReactionAdd, TargetSeq: 1, Emoji: "👍"}),
		groupcommit.NewRequest[op, result](context.Background(), op{prune: &pruneOp{room: "a", after: 0, upto: 1}}),
		entry(store.NewMessage{Kind: store.KindReactionAdd, TargetSeq: 2, Emoji: "👍"}),
	)
	for i := range 2 {
		if !errors.Is(res[i].err, store.ErrTargetNotFound) {
			t.Errorf("entry %d naming the pruned seq 1: %+v, want ErrTargetNotFound", i, res[i])
		}
	}
	if res[3].err != nil || res[3].msg.Seq != 4 {
		t.Errorf("reaction on seq 2: %+v, want seq 4", res[3])
	}
	ms, err := s.Messages(context.Background(), "a", store.Query{Limit: 10})
	if err != nil || len(ms) != 3 || ms[0].Seq != 2 || ms[2].TargetSeq != 2 {
		t.Errorf("log after the batch: %+v (%v), want seqs 2, 3 and the reaction 4", ms, err)
	}
}
