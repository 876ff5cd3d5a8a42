package postgres

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/parleychat/parley/server/internal/store"
	"github.com/parleychat/parley/server/internal/store/internal/groupcommit"
)

// These tests hand batches straight to the writer's process, so that what
// shares a batch is certain. They call it only while the writer goroutine is
// idle: no other append is in flight, and after its last reply the writer
// touches only its own batch slice.

func openInternal(t *testing.T) *Store {
	t.Helper()
	s := openTest(t, Config{})
	for _, r := range []string{"a", "b"} {
		if _, err := s.CreateRoom(context.Background(), store.Room{Name: r, Visibility: store.Public}); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func appendReq(room, sender, body, id string) *request {
	m := store.NewMessage{Room: room, Sender: sender, Body: body, ClientMsgID: id}
	return groupcommit.NewRequest[store.NewMessage, result](context.Background(), m)
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
		appendReq("b", "u1", "b1", "x"),
		appendReq("a", "u1", "a1", "x"),
		appendReq("a", "u2", "a2", ""),
		appendReq("a", "u1", "a1 again", "x"), // duplicate of the second, same batch
		appendReq("ghost", "u1", "lost", ""),  // unknown room: its own error only
		appendReq("a", "u2", "a3", "y"),
	)
	want := []struct {
		room string
		seq  uint64
		body string
		dup  bool
	}{{"b", 1, "b1", false}, {"a", 1, "a1", false}, {"a", 2, "a2", false}, {"a", 1, "a1", true}, {}, {"a", 3, "a3", false}}
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
	if !reflect.DeepEqual(res[3].msg, res[1].msg) {
		t.Errorf("in-batch duplicate got %+v, want the original %+v", res[3].msg, res[1].msg)
	}
	if !res[1].msg.SentAt.Equal(res[5].msg.SentAt) {
		t.Errorf("one batch stamped room a with %v and %v", res[1].msg.SentAt, res[5].msg.SentAt)
	}
	checkRoom(t, s, "a", 3)
	checkRoom(t, s, "b", 1)
}

// TestBatchWithRetryOfStoredMessage covers the careful second attempt: the
// optimistic insert meets an earlier batch's row in the unique index.
func TestBatchWithRetryOfStoredMessage(t *testing.T) {
	s := openInternal(t)
	first := runBatch(s, appendReq("a", "u1", "hello", "m1"))[0]
	res := runBatch(s,
		appendReq("a", "u2", "new 1", "n1"),
		appendReq("a", "u1", "hello", "m1"),
		appendReq("b", "u1", "hello", "m1"), // same key in another room: new
		appendReq("a", "u2", "new 2", ""),
		appendReq("a", "u1", "hello again", "m1"),
	)
	if res[0].msg.Seq != 2 || res[0].dup || res[3].msg.Seq != 3 || res[3].dup || res[2].msg.Seq != 1 || res[2].dup {
		t.Errorf("new messages got %+v, %+v and %+v, want seqs a/2, b/1 and a/3", res[0], res[2], res[3])
	}
	for _, i := range []int{1, 4} {
		if !res[i].dup || !reflect.DeepEqual(res[i].msg, first.msg) {
			t.Errorf("retry %d got %+v dup %v err %v, want the original %+v", i, res[i].msg, res[i].dup, res[i].err, first.msg)
		}
	}
	checkRoom(t, s, "a", 3)
	checkRoom(t, s, "b", 1)
}

// TestFailedBatchStoresNothing makes one message of a batch fail inside
// PostgreSQL: every request in the batch gets the error, nothing of the
// batch is stored, and no seq is used up.
func TestFailedBatchStoresNothing(t *testing.T) {
	s := openInternal(t)
	runBatch(s, appendReq("a", "u", "before", ""))
	execSQL(t, s.cfg.Schema, `CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN IF NEW.body = 'poison' THEN RAISE EXCEPTION 'poisoned'; END IF; RETURN NEW; END $$;
		CREATE TRIGGER poison BEFORE INSERT ON messages FOR EACH ROW EXECUTE FUNCTION poison();`)
	res := runBatch(s,
		appendReq("a", "u", "fine", "f1"),
		appendReq("b", "u", "poison", ""),
		appendReq("a", "u", "fine too", ""),
	)
	for i, r := range res {
		if r.err == nil || !strings.Contains(r.err.Error(), "poisoned") || !strings.Contains(r.err.Error(), "commit batch of 3") {
			t.Errorf("request %d: got %+v, err %v; want the batch's error", i, r.msg, r.err)
		}
		if errors.Is(r.err, store.ErrUnavailable) {
			t.Errorf("request %d: a rejected row is not an outage: %v", i, r.err)
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
	if len(ms) > 0 && !ms[len(ms)-1].SentAt.Equal(r.LastMessageAt) {
		t.Errorf("room %q: LastMessageAt %v, newest message at %v", room, r.LastMessageAt, ms[len(ms)-1].SentAt)
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
