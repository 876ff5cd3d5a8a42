// Package storetest is the conformance suite that every store.Store
// implementation runs, so that the embedded and the cluster stores keep the
// same contract (the shape of dendrite's test.WithAllDatabases).
//
// An implementation's test calls Run once:
//
//	func TestStore(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Store { return memory.New() })
//	}
package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/parleychat/parley/server/internal/store"
)

// Run runs every conformance test against stores made by open. open must
// return a new, empty store each time it is called; Run closes it when the
// subtest ends, so Close may be called twice on the same store.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"CreateRoom", testCreateRoom},
		{"ListRooms", testListRooms},
		{"AppendSeqs", testAppendSeqs},
		{"StartAppendKeepsOrder", testStartAppendKeepsOrder},
		{"AppendUnknownRoom", testAppendUnknownRoom},
		{"IdempotentAppend", testIdempotentAppend},
		{"ConcurrentDuplicates", testConcurrentDuplicates},
		{"Messages", testMessages},
		{"WalkLargeRoom", testWalkLargeRoom},
		{"ConcurrentAppends", testConcurrentAppends},
		{"Members", testMembers},
		{"Prune", testPrune},
		{"Close", testClose},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() { closeStore(t, s) })
			tc.fn(t, s)
		})
	}
}

func closeStore(t *testing.T, s store.Store) {
	if err := s.Close(); err != nil && !errors.Is(err, store.ErrClosed) {
		t.Errorf("Close: %v", err)
	}
}

// timeSlack allows for stores that keep times at a coarser precision than
// time.Now (PostgreSQL keeps microseconds).
const timeSlack = time.Millisecond

func checkTimeBetween(t *testing.T, what string, got, lo, hi time.Time) {
	t.Helper()
	if got.Before(lo.Add(-timeSlack)) || got.After(hi.Add(timeSlack)) {
		t.Errorf("%s = %v, want between %v and %v", what, got, lo, hi)
	}
}

func mustCreate(t *testing.T, s store.Store, names ...string) {
	t.Helper()
	for _, n := range names {
		r := store.Room{Name: n, Visibility: store.Public, CreatedBy: "owner"}
		if _, err := s.CreateRoom(context.Background(), r); err != nil {
			t.Fatalf("CreateRoom(%q): %v", n, err)
		}
	}
}

func mustAppend(t *testing.T, s store.Store, m store.NewMessage) (store.Message, bool) {
	t.Helper()
	got, dup, err := s.Append(context.Background(), m)
	if err != nil {
		t.Fatalf("Append(%+v): %v", m, err)
	}
	return got, dup
}

func mustRoom(t *testing.T, s store.Store, name string) store.Room {
	t.Helper()
	r, err := s.Room(context.Background(), name)
	if err != nil {
		t.Fatalf("Room(%q): %v", name, err)
	}
	return r
}

func mustMessages(t *testing.T, s store.Store, room string, q store.Query) []store.Message {
	t.Helper()
	ms, err := s.Messages(context.Background(), room, q)
	if err != nil {
		t.Fatalf("Messages(%q, %+v): %v", room, q, err)
	}
	return ms
}

func sameMessage(a, b store.Message) bool {
	return a.Room == b.Room && a.Seq == b.Seq && a.Sender == b.Sender &&
		a.Body == b.Body && a.ClientMsgID == b.ClientMsgID && a.SentAt.Equal(b.SentAt)
}

func sameRoom(a, b store.Room) bool {
	return a.Name == b.Name && a.Visibility == b.Visibility && a.CreatedBy == b.CreatedBy &&
		a.CreatedAt.Equal(b.CreatedAt) && a.LastSeq == b.LastSeq &&
		a.LastMessageAt.Equal(b.LastMessageAt)
}

func seqsOf(ms []store.Message) []uint64 {
	out := make([]uint64, len(ms))
	for i, m := range ms {
		out[i] = m.Seq
	}
	return out
}

func testCreateRoom(t *testing.T, s store.Store) {
	ctx := context.Background()
	rooms := []store.Room{
		{Name: "general", Visibility: store.Public, CreatedBy: "alice"},
		{Name: "secret", Visibility: store.Private, CreatedBy: "bob"},
		{Name: "dm:alice:bob", Visibility: store.Direct, CreatedBy: "alice"},
		// A new room is empty whatever head the caller passes in.
		{Name: "stale-head", Visibility: store.Public, CreatedBy: "carol", LastSeq: 7, LastMessageAt: time.Unix(5, 0)},
	}
	for _, in := range rooms {
		t.Run(in.Name, func(t *testing.T) {
			before := time.Now()
			got, err := s.CreateRoom(ctx, in)
			if err != nil {
				t.Fatalf("CreateRoom: %v", err)
			}
			checkTimeBetween(t, "CreatedAt", got.CreatedAt, before, time.Now())
			want := store.Room{Name: in.Name, Visibility: in.Visibility, CreatedBy: in.CreatedBy, CreatedAt: got.CreatedAt}
			if !sameRoom(got, want) {
				t.Errorf("CreateRoom returned %+v, want %+v", got, want)
			}
			if stored := mustRoom(t, s, in.Name); !sameRoom(stored, want) {
				t.Errorf("Room returned %+v, want %+v", stored, want)
			}
		})
	}
	errCases := []struct {
		name string
		call func() error
		want error
	}{
		{"create existing", func() error {
			_, err := s.CreateRoom(ctx, store.Room{Name: "general", Visibility: store.Private, CreatedBy: "eve"})
			return err
		}, store.ErrRoomExists},
		{"room missing", func() error { _, err := s.Room(ctx, "nope"); return err }, store.ErrRoomNotFound},
		{"messages of missing room", func() error {
			_, err := s.Messages(ctx, "nope", store.Query{Limit: 10})
			return err
		}, store.ErrRoomNotFound},
	}
	for _, tc := range errCases {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.call(); !errors.Is(err, tc.want) {
				t.Errorf("got error %v, want %v", err, tc.want)
			}
		})
	}
	if r := mustRoom(t, s, "general"); r.CreatedBy != "alice" || r.Visibility != store.Public {
		t.Errorf("failed CreateRoom changed the room: %+v", r)
	}
}

func testListRooms(t *testing.T, s store.Store) {
	mustCreate(t, s, "delta", "alpha", "echo", "charlie", "bravo")
	mustAppend(t, s, store.NewMessage{Room: "charlie", Sender: "u", Body: "1"})
	last, _ := mustAppend(t, s, store.NewMessage{Room: "charlie", Sender: "u", Body: "2"})
	tests := []struct {
		after string
		limit int
		want  []string
	}{
		{"", 100, []string{"alpha", "bravo", "charlie", "delta", "echo"}},
		{"", 2, []string{"alpha", "bravo"}},
		{"bravo", 2, []string{"charlie", "delta"}},
		{"bz", 10, []string{"charlie", "delta", "echo"}},
		{"delta", 2, []string{"echo"}},
		{"echo", 2, nil},
		{"zulu", 2, nil},
		{"", 1, []string{"alpha"}},
		{"", 0, nil},
		{"", -1, nil},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("after=%q,limit=%d", tc.after, tc.limit), func(t *testing.T) {
			got, err := s.ListRooms(context.Background(), tc.after, tc.limit)
			if err != nil {
				t.Fatalf("ListRooms: %v", err)
			}
			if names := roomNames(got); fmt.Sprint(names) != fmt.Sprint(tc.want) {
				t.Errorf("got %v, want %v", names, tc.want)
			}
			for _, r := range got {
				if r.Name == "charlie" && (r.LastSeq != 2 || !r.LastMessageAt.Equal(last.SentAt)) {
					t.Errorf("charlie head = %d at %v, want 2 at %v", r.LastSeq, r.LastMessageAt, last.SentAt)
				}
			}
		})
	}
	t.Run("paging", func(t *testing.T) { checkRoomPaging(t, s, 5) })
}

func roomNames(rs []store.Room) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Name)
	}
	return out
}

// checkRoomPaging walks every room two at a time and expects each once, in order.
func checkRoomPaging(t *testing.T, s store.Store, total int) {
	var seen []string
	after := ""
	for i := 0; i <= total; i++ {
		page, err := s.ListRooms(context.Background(), after, 2)
		if err != nil {
			t.Fatalf("ListRooms(%q, 2): %v", after, err)
		}
		if len(page) == 0 {
			break
		}
		seen = append(seen, roomNames(page)...)
		after = page[len(page)-1].Name
	}
	want := []string{"alpha", "bravo", "charlie", "delta", "echo"}
	if fmt.Sprint(seen) != fmt.Sprint(want) {
		t.Errorf("paged through %v, want %v", seen, want)
	}
}

func testAppendSeqs(t *testing.T, s store.Store) {
	mustCreate(t, s, "a", "b")
	bodies := []struct{ room, body string }{
		{"a", "hello"}, {"b", "first in b"}, {"a", "wörld ✓"}, {"a", "multi\nline"},
		{"b", ""}, {"a", "four"}, {"b", "three"}, {"a", "five"},
	}
	next := map[string]uint64{}
	last := map[string]store.Message{}
	for _, tc := range bodies {
		before := time.Now()
		m := store.NewMessage{Room: tc.room, Sender: "alice", Body: tc.body}
		got, dup := mustAppend(t, s, m)
		next[tc.room]++
		want := store.Message{Room: tc.room, Seq: next[tc.room], Sender: "alice", Body: tc.body, SentAt: got.SentAt}
		if dup || !sameMessage(got, want) {
			t.Errorf("Append(%+v) = %+v, dup=%v; want %+v", m, got, dup, want)
		}
		checkTimeBetween(t, "SentAt", got.SentAt, before, time.Now())
		last[tc.room] = got
	}
	for room, n := range next {
		r := mustRoom(t, s, room)
		if r.LastSeq != n || !r.LastMessageAt.Equal(last[room].SentAt) {
			t.Errorf("room %q head = %d at %v, want %d at %v", room, r.LastSeq, r.LastMessageAt, n, last[room].SentAt)
		}
		ms := mustMessages(t, s, room, store.Query{Limit: 100})
		if len(ms) != int(n) || !sameMessage(ms[n-1], last[room]) {
			t.Errorf("room %q messages %v, want 1..%d ending with %+v", room, seqsOf(ms), n, last[room])
		}
	}
}

// Appends started one after another without waiting for the first are
// stored in submission order, each room's seqs following it; a failing one
// (unknown room) fails alone.
func testStartAppendKeepsOrder(t *testing.T, s store.Store) {
	mustCreate(t, s, "a", "b")
	ctx := context.Background()
	const n = 300
	waits := make([]func() (store.Message, bool, error), n)
	rooms := make([]string, n)
	for i := range waits {
		rooms[i] = []string{"a", "b", "a", "ghost"}[i%4]
		waits[i] = s.StartAppend(ctx, store.NewMessage{Room: rooms[i], Sender: "alice", Body: fmt.Sprint(i), ClientMsgID: idFor(i)})
	}
	next := map[string]uint64{}
	for i, wait := range waits {
		got, dup, err := wait()
		if rooms[i] == "ghost" {
			if !errors.Is(err, store.ErrRoomNotFound) {
				t.Fatalf("append %d to an unknown room: %v, want ErrRoomNotFound", i, err)
			}
			continue
		}
		next[rooms[i]]++
		if err != nil || dup || got.Seq != next[rooms[i]] || got.Body != fmt.Sprint(i) {
			t.Fatalf("append %d to %s: seq %d body %q dup %v err %v, want seq %d", i, rooms[i], got.Seq, got.Body, dup, err, next[rooms[i]])
		}
	}
	for room, n := range next {
		if r := mustRoom(t, s, room); r.LastSeq != n {
			t.Errorf("room %q head = %d, want %d", room, r.LastSeq, n)
		}
	}
}

func testAppendUnknownRoom(t *testing.T, s store.Store) {
	_, _, err := s.Append(context.Background(), store.NewMessage{Room: "ghost", Sender: "a", Body: "boo"})
	if !errors.Is(err, store.ErrRoomNotFound) {
		t.Fatalf("Append to unknown room: got %v, want ErrRoomNotFound", err)
	}
	if _, err := s.Room(context.Background(), "ghost"); !errors.Is(err, store.ErrRoomNotFound) {
		t.Errorf("Append to unknown room created it: Room returned %v", err)
	}
}

func testIdempotentAppend(t *testing.T, s store.Store) {
	mustCreate(t, s, "a", "b")
	steps := []struct {
		name    string
		m       store.NewMessage
		wantSeq uint64
		wantDup bool
	}{
		{"first send", store.NewMessage{Room: "a", Sender: "alice", Body: "hi", ClientMsgID: "c1"}, 1, false},
		{"retry", store.NewMessage{Room: "a", Sender: "alice", Body: "hi", ClientMsgID: "c1"}, 1, true},
		{"retry with other body", store.NewMessage{Room: "a", Sender: "alice", Body: "changed", ClientMsgID: "c1"}, 1, true},
		{"same id other sender", store.NewMessage{Room: "a", Sender: "bob", Body: "yo", ClientMsgID: "c1"}, 2, false},
		{"same id other room", store.NewMessage{Room: "b", Sender: "alice", Body: "hi b", ClientMsgID: "c1"}, 1, false},
		{"empty id", store.NewMessage{Room: "a", Sender: "alice", Body: "hi"}, 3, false},
		{"empty id again", store.NewMessage{Room: "a", Sender: "alice", Body: "hi"}, 4, false},
		{"new id", store.NewMessage{Room: "a", Sender: "alice", Body: "next", ClientMsgID: "c2"}, 5, false},
		{"retry after later sends", store.NewMessage{Room: "a", Sender: "alice", Body: "hi", ClientMsgID: "c1"}, 1, true},
		{"retry other sender", store.NewMessage{Room: "a", Sender: "bob", Body: "yo", ClientMsgID: "c1"}, 2, true},
	}
	first := map[uint64]store.Message{}
	for _, st := range steps {
		got, dup := mustAppend(t, s, st.m)
		if got.Seq != st.wantSeq || dup != st.wantDup {
			t.Errorf("%s: got seq %d dup %v, want seq %d dup %v", st.name, got.Seq, dup, st.wantSeq, st.wantDup)
			continue
		}
		key := got.Seq
		if got.Room == "b" {
			key += 1000
		}
		if !dup {
			first[key] = got
		} else if !sameMessage(got, first[key]) {
			t.Errorf("%s: duplicate returned %+v, want the original %+v", st.name, got, first[key])
		}
	}
	for room, want := range map[string]uint64{"a": 5, "b": 1} {
		if r := mustRoom(t, s, room); r.LastSeq != want {
			t.Errorf("room %q LastSeq = %d, want %d", room, r.LastSeq, want)
		}
		if ms := mustMessages(t, s, room, store.Query{Limit: 100}); len(ms) != int(want) {
			t.Errorf("room %q holds seqs %v, want 1..%d", room, seqsOf(ms), want)
		}
	}
}

// testConcurrentDuplicates sends the same message from many goroutines at
// once: exactly one is stored, and everyone gets its seq.
func testConcurrentDuplicates(t *testing.T, s store.Store) {
	mustCreate(t, s, "a")
	const n = 50
	results := make([]store.Message, n)
	dups := make([]bool, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			m := store.NewMessage{Room: "a", Sender: "alice", Body: "once", ClientMsgID: "same"}
			var err error
			if results[i], dups[i], err = s.Append(context.Background(), m); err != nil {
				t.Errorf("Append: %v", err)
			}
		})
	}
	wg.Wait()
	originals := 0
	for i := range n {
		if !dups[i] {
			originals++
		}
		if !sameMessage(results[i], results[0]) || results[i].Seq != 1 {
			t.Errorf("caller %d got %+v, caller 0 got %+v", i, results[i], results[0])
		}
	}
	if originals != 1 {
		t.Errorf("%d callers were told they stored the message, want 1", originals)
	}
	if r := mustRoom(t, s, "a"); r.LastSeq != 1 {
		t.Errorf("LastSeq = %d, want 1", r.LastSeq)
	}
}

func testMessages(t *testing.T, s store.Store) {
	mustCreate(t, s, "a", "empty")
	var all []store.Message
	for i := range 20 {
		m, _ := mustAppend(t, s, store.NewMessage{Room: "a", Sender: "alice", Body: fmt.Sprint("m", i+1)})
		all = append(all, m)
	}
	tests := []struct {
		name string
		q    store.Query
		want []uint64 // nil: seqs lo..hi below
		lo   uint64
		hi   uint64
	}{
		{name: "first page", q: store.Query{Limit: 5}, lo: 1, hi: 5},
		{name: "all", q: store.Query{Limit: 100}, lo: 1, hi: 20},
		{name: "newest first", q: store.Query{Limit: 5, Descending: true}, lo: 20, hi: 16},
		{name: "after", q: store.Query{After: 5, Limit: 3}, lo: 6, hi: 8},
		{name: "after descending", q: store.Query{After: 15, Limit: 3, Descending: true}, lo: 20, hi: 18},
		{name: "before", q: store.Query{Before: 5, Limit: 10}, lo: 1, hi: 4},
		{name: "before descending", q: store.Query{Before: 5, Limit: 2, Descending: true}, lo: 4, hi: 3},
		{name: "between", q: store.Query{After: 5, Before: 9, Limit: 100}, lo: 6, hi: 8},
		{name: "between descending", q: store.Query{After: 5, Before: 9, Limit: 100, Descending: true}, lo: 8, hi: 6},
		{name: "between limited", q: store.Query{After: 5, Before: 15, Limit: 2}, lo: 6, hi: 7},
		{name: "between limited descending", q: store.Query{After: 5, Before: 15, Limit: 2, Descending: true}, lo: 14, hi: 13},
		{name: "before past head", q: store.Query{Before: 100, Limit: 3, Descending: true}, lo: 20, hi: 18},
		{name: "limit one", q: store.Query{Limit: 1, Descending: true}, lo: 20, hi: 20},
		{name: "after head", q: store.Query{After: 20, Limit: 5}, want: []uint64{}},
		{name: "far after head", q: store.Query{After: 1 << 40, Limit: 5}, want: []uint64{}},
		{name: "before first", q: store.Query{Before: 1, Limit: 5, Descending: true}, want: []uint64{}},
		{name: "empty range", q: store.Query{After: 3, Before: 4, Limit: 5}, want: []uint64{}},
		{name: "inverted range", q: store.Query{After: 9, Before: 4, Limit: 5}, want: []uint64{}},
		{name: "zero limit", q: store.Query{Limit: 0}, want: []uint64{}},
		{name: "negative limit", q: store.Query{Limit: -1, Descending: true}, want: []uint64{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want := tc.want
			if want == nil {
				want = seqRange(tc.lo, tc.hi)
			}
			got := mustMessages(t, s, "a", tc.q)
			if fmt.Sprint(seqsOf(got)) != fmt.Sprint(want) {
				t.Fatalf("Messages(%+v) seqs = %v, want %v", tc.q, seqsOf(got), want)
			}
			for _, m := range got {
				if !sameMessage(m, all[m.Seq-1]) {
					t.Errorf("Messages returned %+v, Append returned %+v", m, all[m.Seq-1])
				}
			}
		})
	}
	if got := mustMessages(t, s, "empty", store.Query{Limit: 10}); len(got) != 0 {
		t.Errorf("empty room returned %v", seqsOf(got))
	}
}

// seqRange returns lo..hi inclusive, counting down if hi < lo.
func seqRange(lo, hi uint64) []uint64 {
	var out []uint64
	for i := lo; ; {
		out = append(out, i)
		switch {
		case i == hi:
			return out
		case i < hi:
			i++
		default:
			i--
		}
	}
}

type appendJob struct {
	room string
	i    int
}

// appendConcurrently appends perRoom messages to each room from workers
// goroutines and returns what Append returned, by room.
func appendConcurrently(t *testing.T, s store.Store, rooms []string, perRoom, workers int) map[string][]store.Message {
	t.Helper()
	jobs := make(chan appendJob)
	var mu sync.Mutex
	got := make(map[string][]store.Message)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for msg := range appendWorker(t, s, w, jobs) {
				mu.Lock()
				got[msg.Room] = append(got[msg.Room], msg)
				mu.Unlock()
			}
		})
	}
	for i := range perRoom {
		for _, r := range rooms {
			jobs <- appendJob{r, i}
		}
	}
	close(jobs)
	wg.Wait()
	return got
}

// appendWorker appends a message for each job and yields what was stored.
func appendWorker(t *testing.T, s store.Store, w int, jobs <-chan appendJob) func(yield func(store.Message) bool) {
	return func(yield func(store.Message) bool) {
		lastSeq := map[string]uint64{}
		for j := range jobs {
			m := store.NewMessage{Room: j.room, Sender: fmt.Sprint("w", w), Body: fmt.Sprint(j.room, "/", j.i)}
			msg, dup, err := s.Append(context.Background(), m)
			if err != nil || dup {
				t.Errorf("Append(%+v) = dup %v, err %v", m, dup, err)
				continue
			}
			// One sender's sequential appends to a room get increasing seqs.
			if msg.Seq <= lastSeq[j.room] {
				t.Errorf("worker %d: seq %d in %q after seq %d", w, msg.Seq, j.room, lastSeq[j.room])
			}
			lastSeq[j.room] = msg.Seq
			if !yield(msg) {
				return
			}
		}
	}
}

// checkExactSeqs checks that the appends to a room got exactly the seqs 1..n
// and that the store holds what Append returned.
func checkExactSeqs(t *testing.T, s store.Store, room string, got []store.Message, n int) {
	t.Helper()
	bySeq := make([]store.Message, n+1)
	for _, m := range got {
		if m.Seq < 1 || m.Seq > uint64(n) || bySeq[m.Seq].Seq != 0 {
			t.Fatalf("room %q: seq %d out of range or given twice", room, m.Seq)
		}
		bySeq[m.Seq] = m
	}
	if len(got) != n {
		t.Fatalf("room %q: %d appends succeeded, want %d", room, len(got), n)
	}
	if r := mustRoom(t, s, room); r.LastSeq != uint64(n) {
		t.Errorf("room %q LastSeq = %d, want %d", room, r.LastSeq, n)
	}
	stored := mustMessages(t, s, room, store.Query{Limit: n + 10})
	if len(stored) != n {
		t.Fatalf("room %q holds %d messages, want %d", room, len(stored), n)
	}
	for i, m := range stored {
		if m.Seq != uint64(i+1) || !sameMessage(m, bySeq[m.Seq]) {
			t.Fatalf("room %q stored[%d] = %+v, Append returned %+v", room, i, m, bySeq[i+1])
		}
	}
}

func testConcurrentAppends(t *testing.T, s store.Store) {
	rooms := []string{"r0", "r1", "r2", "r3", "r4", "r5", "r6", "r7"}
	mustCreate(t, s, rooms...)
	const perRoom = 250
	got := appendConcurrently(t, s, rooms, perRoom, 64)
	for _, r := range rooms {
		checkExactSeqs(t, s, r, got[r], perRoom)
	}
}

// walkSize is how many messages testWalkLargeRoom pages through.
const walkSize = 10_000

func testWalkLargeRoom(t *testing.T, s store.Store) {
	mustCreate(t, s, "big")
	got := appendConcurrently(t, s, []string{"big"}, walkSize, 32)
	byseq := make([]store.Message, walkSize+1)
	for _, m := range got["big"] {
		byseq[m.Seq] = m
	}
	for _, limit := range []int{1000, 97} {
		for _, desc := range []bool{true, false} {
			t.Run(fmt.Sprintf("limit=%d,descending=%v", limit, desc), func(t *testing.T) {
				walk(t, s, byseq, limit, desc)
			})
		}
	}
}

// walk pages through the room "big" and expects to visit every message once,
// in order.
func walk(t *testing.T, s store.Store, byseq []store.Message, limit int, desc bool) {
	visits := 0
	q := store.Query{Limit: limit, Descending: desc}
	for pages := 0; ; pages++ {
		if pages > walkSize/limit+1 {
			t.Fatalf("walk did not end after %d pages", pages)
		}
		page := mustMessages(t, s, "big", q)
		if len(page) == 0 {
			break
		}
		for _, m := range page {
			want := uint64(visits + 1)
			if desc {
				want = uint64(walkSize - visits)
			}
			if m.Seq != want || !sameMessage(m, byseq[m.Seq]) {
				t.Fatalf("visit %d: got %+v, want seq %d = %+v", visits, m, want, byseq[want])
			}
			visits++
		}
		if desc {
			q.Before = page[len(page)-1].Seq
		} else {
			q.After = page[len(page)-1].Seq
		}
	}
	if visits != walkSize {
		t.Errorf("visited %d messages, want %d", visits, walkSize)
	}
}

func testClose(t *testing.T, s store.Store) {
	mustCreate(t, s, "a")
	mustAppend(t, s, store.NewMessage{Room: "a", Sender: "alice", Body: "before close"})
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	ctx := context.Background()
	calls := []struct {
		name string
		call func() error
	}{
		{"CreateRoom", func() error { _, err := s.CreateRoom(ctx, store.Room{Name: "b", Visibility: store.Public}); return err }},
		{"Room", func() error { _, err := s.Room(ctx, "a"); return err }},
		{"ListRooms", func() error { _, err := s.ListRooms(ctx, "", 10); return err }},
		{"Append", func() error { _, _, err := s.Append(ctx, store.NewMessage{Room: "a", Sender: "alice"}); return err }},
		{"Messages", func() error { _, err := s.Messages(ctx, "a", store.Query{Limit: 10}); return err }},
	}
	for _, c := range calls {
		if err := c.call(); !errors.Is(err, store.ErrClosed) {
			t.Errorf("%s after Close: got %v, want ErrClosed", c.name, err)
		}
	}
}
