package app_test

import (
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"

	parleyv1 "github.com/parleychat/parley/gen/parley/v1"
)

// Two clients send concurrently; both receive every message exactly once,
// with seqs 1..N in order, and each send's reply carries its seq and time.
func TestTwoClientsReceiveEveryMessageOnceInOrder(t *testing.T) {
	ts := startServer(t)
	ts.createRoom(t, "pair")
	const perSender = 60
	users := []string{"alice", "bob"}
	streams := make([]*joinStream, len(users))
	for i, u := range users {
		streams[i] = openJoin(t, ts.dial(t), ts.token(t, u))
		streams[i].join("pair", nil)
	}
	type sent struct{ sender, body string }
	acked := make(map[uint64]sent)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i, u := range users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range perSender {
				body := fmt.Sprintf("%s-%d", u, n)
				r := streams[i].post("pair", body, "")
				if r.GetCode() != 0 {
					t.Errorf("send %s: %s", body, r.GetError())
					return
				}
				m := r.GetMessage()
				if m.GetSeq() == 0 || m.GetSentAt().AsTime().IsZero() || m.GetSender() != u || m.GetBody() != body {
					t.Errorf("reply to %s carries %v", body, m)
				}
				mu.Lock()
				acked[m.GetSeq()] = sent{u, body}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	const total = 2 * perSender
	if len(acked) != total {
		t.Fatalf("%d distinct seqs acked, want %d", len(acked), total)
	}
	for _, s := range streams {
		for want := uint64(1); want <= total; want++ {
			m := s.next(isMessage("pair"), nil).GetMessage()
			if m.GetSeq() != want {
				t.Fatalf("received seq %d, want %d", m.GetSeq(), want)
			}
			if a := acked[want]; a.sender != m.GetSender() || a.body != m.GetBody() {
				t.Fatalf("seq %d is %s/%q, acked as %s/%q", want, m.GetSender(), m.GetBody(), a.sender, a.body)
			}
		}
	}
	// Nothing more: a final message is the very next one each stream sees.
	last := streams[0].post("pair", "end", "")
	for _, s := range streams {
		if m := s.next(isMessage("pair"), nil).GetMessage(); m.GetSeq() != last.GetMessage().GetSeq() {
			t.Fatalf("after %d messages got seq %d, want %d", total, m.GetSeq(), last.GetMessage().GetSeq())
		}
	}
}

func metaIDs(p []*parleyv1.Presence, user string) []string {
	for _, e := range p {
		if e.GetUser() == user {
			var ids []string
			for _, m := range e.GetMetas() {
				ids = append(ids, m.GetConnId())
			}
			return ids
		}
	}
	return nil
}

// Presence: state on join, diffs after; one user on two connections shows
// once with two metas; closing one connection removes only its meta.
func TestPresenceStateDiffsAndMetas(t *testing.T) {
	ts := startServer(t)
	ts.createRoom(t, "hall")
	alice := openJoin(t, ts.dial(t), ts.token(t, "alice"), "parley-client", "test-a")
	st := alice.join("hall", nil)
	if len(st.GetPresence()) != 1 || len(metaIDs(st.GetPresence(), "alice")) != 1 {
		t.Fatalf("alice's state = %v, want only alice with one meta", st.GetPresence())
	}
	if c := st.GetPresence()[0].GetMetas()[0].GetClient(); c != "test-a" {
		t.Errorf("meta client = %q, want test-a", c)
	}

	bob1 := openJoin(t, ts.dial(t), ts.token(t, "bob"))
	st = bob1.join("hall", nil)
	if len(st.GetPresence()) != 2 || len(metaIDs(st.GetPresence(), "bob")) != 1 {
		t.Fatalf("bob's state = %v, want alice and bob", st.GetPresence())
	}
	bob1ID := metaIDs(st.GetPresence(), "bob")[0]
	d := alice.next(isDiff("hall"), nil).GetPresenceDiff()
	if got := metaIDs(d.GetJoins(), "bob"); len(got) != 1 || got[0] != bob1ID || len(d.GetLeaves()) != 0 {
		t.Fatalf("diff for bob's join = %v", d)
	}

	bob2 := openJoin(t, ts.dial(t), ts.token(t, "bob"))
	st = bob2.join("hall", nil)
	if ids := metaIDs(st.GetPresence(), "bob"); len(ids) != 2 || len(st.GetPresence()) != 2 {
		t.Fatalf("state with bob on two devices = %v, want bob once with two metas", st.GetPresence())
	}
	d = alice.next(isDiff("hall"), nil).GetPresenceDiff()
	bob2ID := metaIDs(d.GetJoins(), "bob")
	if len(bob2ID) != 1 || bob2ID[0] == bob1ID {
		t.Fatalf("diff for bob's second device = %v", d)
	}
	c, ctx := ts.client(t, "carol")
	lp, err := c.ListPresence(ctx, &parleyv1.ListPresenceRequest{Room: "hall"})
	if err != nil {
		t.Fatal(err)
	}
	if len(lp.GetPresence()) != 2 || len(metaIDs(lp.GetPresence(), "bob")) != 2 {
		t.Fatalf("ListPresence = %v, want alice and bob with two metas", lp.GetPresence())
	}

	bob2.closeAndWait()
	d = alice.next(isDiff("hall"), nil).GetPresenceDiff()
	if got := metaIDs(d.GetLeaves(), "bob"); len(got) != 1 || got[0] != bob2ID[0] || len(d.GetJoins()) != 0 {
		t.Fatalf("diff for bob's second device leaving = %v, want only its meta", d)
	}
	lp, err = c.ListPresence(ctx, &parleyv1.ListPresenceRequest{Room: "hall"})
	if err != nil {
		t.Fatal(err)
	}
	if ids := metaIDs(lp.GetPresence(), "bob"); len(ids) != 1 || ids[0] != bob1ID {
		t.Fatalf("after one device left, bob's metas = %v, want [%s]", ids, bob1ID)
	}

	bob1.closeAndWait()
	// next() waits at most waitTimeout; the leave must come within 1s.
	left := make(chan *parleyv1.PresenceDiff, 1)
	go func() { left <- alice.next(isDiff("hall"), nil).GetPresenceDiff() }()
	select {
	case d = <-left:
	case <-timeAfter(t, "1s"):
		t.Fatal("no leave diff within 1s of bob's last connection closing")
	}
	if got := metaIDs(d.GetLeaves(), "bob"); len(got) != 1 || got[0] != bob1ID {
		t.Fatalf("last leave diff = %v", d)
	}
	lp, err = c.ListPresence(ctx, &parleyv1.ListPresenceRequest{Room: "hall"})
	if err != nil {
		t.Fatal(err)
	}
	if len(lp.GetPresence()) != 1 || lp.GetPresence()[0].GetUser() != "alice" {
		t.Fatalf("after bob left, presence = %v, want only alice", lp.GetPresence())
	}
}

// One Join stream in three rooms gets each room's events tagged with that
// room, and nothing from a room it left or never joined.
func TestOneStreamManyRooms(t *testing.T) {
	ts := startServer(t)
	rooms := []string{"r-a", "r-b", "r-c", "r-d"}
	for _, r := range rooms {
		ts.createRoom(t, r)
	}
	x := openJoin(t, ts.dial(t), ts.token(t, "xavier"))
	for _, r := range rooms[:3] {
		x.join(r, nil)
	}
	y := openJoin(t, ts.dial(t), ts.token(t, "yvonne"))
	for _, r := range rooms {
		y.join(r, nil)
	}
	sendAll := func(round string) {
		for _, r := range rooms {
			if rep := y.post(r, round+" in "+r, ""); rep.GetCode() != 0 {
				t.Fatalf("send to %s: %s", r, rep.GetError())
			}
		}
	}
	// Everything y sends is queued for x before the sentinel, in order, so
	// when x sees the sentinel it has seen all it will ever get of the round.
	collect := func(sentinel string) map[string][]string {
		got := map[string][]string{}
		x.next(func(ev *parleyv1.JoinResponse) bool { return ev.GetMessage().GetBody() == sentinel }, func(ev *parleyv1.JoinResponse) {
			if m := ev.GetMessage(); m != nil {
				got[m.GetRoom()] = append(got[m.GetRoom()], m.GetBody())
			}
		})
		return got
	}
	sendAll("one")
	y.post("r-a", "sentinel-1", "")
	got := collect("sentinel-1")
	for _, r := range rooms[:3] {
		if len(got[r]) != 1 || got[r][0] != "one in "+r {
			t.Errorf("room %s delivered %q, want [one in %s]", r, got[r], r)
		}
	}
	if len(got["r-d"]) != 0 {
		t.Errorf("never-joined room r-d delivered %q", got["r-d"])
	}

	ref := x.send(&parleyv1.JoinRequest{Frame: &parleyv1.JoinRequest_Leave{Leave: &parleyv1.JoinRequest_LeaveRoom{Room: "r-b"}}})
	if r := x.reply(ref); r.GetCode() != 0 || r.GetRoom() != "r-b" {
		t.Fatalf("leave r-b: %v", r)
	}
	sendAll("two")
	y.post("r-a", "sentinel-2", "")
	got = collect("sentinel-2")
	if len(got["r-b"]) != 0 || len(got["r-d"]) != 0 {
		t.Errorf("after leaving r-b, got r-b %q and r-d %q", got["r-b"], got["r-d"])
	}
	for _, r := range []string{"r-a", "r-c"} {
		if len(got[r]) != 1 || got[r][0] != "two in "+r {
			t.Errorf("room %s delivered %q, want [two in %s]", r, got[r], r)
		}
	}
}

// A subscriber that stops reading is cut off with RESOURCE_EXHAUSTED and
// the seq to resume from, while 50 others keep receiving every message and
// the server's heap stays bounded.
func TestSlowConsumerIsCutOffOthersGoOn(t *testing.T) {
	const queueBytes = 128 << 10
	ts := startServer(t, func(c *appConfig) { c.MaxQueueBytes = queueBytes })
	ts.createRoom(t, "busy")
	conn := ts.dial(t)
	stalled := startJoin(t, conn, ts.token(t, "sloth"))
	// Join without reading: send the frame, read only the reply and state.
	ref := stalled.send(&parleyv1.JoinRequest{Frame: &parleyv1.JoinRequest_Join{Join: &parleyv1.JoinRequest_JoinRoom{Room: "busy"}}})
	for range 2 {
		ev, err := stalled.stream.Recv()
		if err != nil || (ev.GetReply() == nil && ev.GetJoined() == nil) {
			t.Fatalf("stalled join: %v %v (ref %s)", ev, err, ref)
		}
	}

	const readers = 50
	const total = 600 // ~1.2 MB for each subscriber, ten times the queue limit
	received := make([]atomic.Uint64, readers)
	var wg sync.WaitGroup
	for i := range readers {
		if i%10 == 0 {
			conn = ts.dial(t)
		}
		r := openJoin(t, conn, ts.token(t, "reader"+strconv.Itoa(i)))
		r.join("busy", nil)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for want := uint64(1); want <= total; want++ {
				if m := r.next(isMessage("busy"), nil).GetMessage(); m.GetSeq() != want {
					t.Errorf("reader got seq %d, want %d", m.GetSeq(), want)
					return
				}
				received[i].Store(want)
			}
		}()
	}
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)

	sender := openJoin(t, ts.dial(t), ts.token(t, "sender"))
	sender.join("busy", nil)
	body := strings.Repeat("x", 2000)
	// The sender stays at most a window ahead of the slowest reader that
	// reads, so only the stalled subscriber falls behind.
	const window = 32
	for i := 1; i <= total; i++ {
		waitFor(t, "readers to catch up", func() bool {
			for j := range received {
				if received[j].Load()+window < uint64(i) {
					return false
				}
			}
			return true
		})
		if r := sender.post("busy", body, ""); r.GetCode() != 0 {
			t.Fatalf("send %d: %s", i, r.GetError())
		}
	}
	wg.Wait()
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	growth := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("heap after %d messages to %d readers and one stalled subscriber: %+d KiB", total, readers, growth/1024)
	if growth > 16<<20 {
		t.Errorf("heap grew by %d MiB; queues are not bounded", growth>>20)
	}

	// The stalled stream now reads what was in flight, then the status.
	var last uint64
	var endErr error
	for {
		ev, err := stalled.stream.Recv()
		if err != nil {
			endErr = err
			break
		}
		if m := ev.GetMessage(); m != nil {
			if m.GetSeq() != last+1 {
				t.Fatalf("stalled stream got seq %d after %d", m.GetSeq(), last)
			}
			last = m.GetSeq()
		}
	}
	st := statusOf(endErr)
	if st.Code() != codes.ResourceExhausted {
		t.Fatalf("stalled stream ended with %v, want RESOURCE_EXHAUSTED", st)
	}
	if last >= total {
		t.Fatalf("stalled stream received all %d messages; it was never cut off", last)
	}
	var resume string
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			resume = info.GetMetadata()["after_seq/busy"]
		}
	}
	if resume != strconv.FormatUint(last, 10) || !strings.Contains(st.Message(), "busy="+resume) {
		t.Fatalf("resume position %q (message %q), want %d: the last seq the client received", resume, st.Message(), last)
	}
	t.Logf("stalled subscriber cut off after seq %d of %d; told to resume after %s", last, total, resume)

	// It resumes where it was told and misses nothing.
	back := openJoin(t, ts.dial(t), ts.token(t, "sloth"))
	back.join("busy", ptr(last))
	for want := last + 1; want <= total; want++ {
		if m := back.next(isMessage("busy"), nil).GetMessage(); m.GetSeq() != want {
			t.Fatalf("after resuming got seq %d, want %d", m.GetSeq(), want)
		}
	}
	if rp := back.next(func(ev *parleyv1.JoinResponse) bool { return ev.GetReplayed() != nil }, nil); rp.GetReplayed().GetThroughSeq() != total {
		t.Fatalf("replayed through %d, want %d", rp.GetReplayed().GetThroughSeq(), total)
	}
}
