package storetest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/parleychat/parley/server/internal/store"
	"github.com/parleychat/parley/server/internal/store/memory"
)

// testAgainstModel sends a long random mix of entries of every kind, valid
// and not, some mentioning users, many pipelined through StartAppend so
// that a store that batches sees targets, duplicates and conflicts within
// one batch, and checks every answer, the log and the history against the
// memory store fed the same entries one at a time. After each round it
// moves read markers in both and compares every user's read state.
func testAgainstModel(t *testing.T, s store.Store) {
	ctx := context.Background()
	model := memory.New()
	defer model.Close()
	room := store.Room{Name: "r", Visibility: store.Private, CreatedBy: "u0", Members: []string{"u1", "u2", "u3"}}
	for _, st := range []store.Store{s, model} {
		if _, err := st.CreateRoom(ctx, room); err != nil {
			t.Fatal(err)
		}
	}
	g := &gen{rng: rand.New(rand.NewPCG(7, 11))}
	outcomes := map[string]int{}
	for round := range 50 {
		batch := make([]store.NewMessage, 1+g.rng.IntN(60))
		for i := range batch {
			batch[i] = g.entry(i)
		}
		waits := make([]func() (store.Message, bool, error), len(batch))
		for i, m := range batch {
			waits[i] = s.StartAppend(ctx, m)
		}
		for i, m := range batch {
			got, gotDup, gotErr := waits[i]()
			want, wantDup, wantErr := model.Append(ctx, m)
			if gotDup != wantDup || got.Seq != want.Seq || !sameRule(gotErr, wantErr) || !sameEntryIgnoringTime(got, want) {
				t.Fatalf("round %d, entry %d %+v:\n got  %+v dup %v err %v\n want %+v dup %v err %v", round, i, m, got, gotDup, gotErr, want, wantDup, wantErr)
			}
			g.learn(want)
			outcomes[outcome(m, want, wantDup, wantErr)]++
		}
		compareReadState(t, s, model, g)
		if round == 30 { // retention in the middle: what it leaves must count the same
			n, err := s.Prune(ctx, store.Retention{MaxMessages: 150})
			if m, _ := model.Prune(ctx, store.Retention{MaxMessages: 150}); err != nil || n != m {
				t.Fatalf("Prune deleted %d (%v), the model %d", n, err, m)
			}
			t.Logf("pruned %d entries", n)
			compareReadState(t, s, model, g)
		}
	}
	t.Logf("outcomes: %v", outcomes)
	compareLogs(t, s, model)
	for _, viewer := range []string{"u0", "u2", "nobody"} {
		compareHistories(t, s, model, viewer)
	}
}

// gen makes random entries, mostly about messages that were stored
// (known from the model's answers), so that most are allowed.
type gen struct {
	rng    *rand.Rand
	head   uint64
	msgs   []store.Message // messages stored
	adds   []store.Message // reactions added
	recent []store.NewMessage
}

func (g *gen) learn(m store.Message) {
	g.head = max(g.head, m.Seq)
	switch m.Kind {
	case store.KindMessage:
		if m.Seq != 0 {
			g.msgs = append(g.msgs, m)
		}
	case store.KindReactionAdd:
		g.adds = append(g.adds, m)
	}
}

// entry returns an entry of a random kind; i is its place in its batch.
func (g *gen) entry(i int) store.NewMessage {
	rng := g.rng
	if n := len(g.recent); i > 0 && g.recent[n-1].Kind == store.KindEdit && rng.IntN(3) == 0 {
		// Take back what was just edited, in the same batch.
		prev := g.recent[n-1]
		m := store.NewMessage{Room: "r", Kind: store.KindDelete, Sender: prev.Sender, TargetSeq: prev.TargetSeq}
		g.recent = append(g.recent, m)
		return m
	}
	m := store.NewMessage{Room: "r", Sender: fmt.Sprint("u", rng.IntN(4))}
	target := func() uint64 {
		switch n := len(g.msgs); {
		case n > 0 && rng.IntN(3) == 0:
			return g.msgs[rng.IntN(min(n, 2))].Seq // hot messages, to meet the reaction cap
		case n > 0 && rng.IntN(4) != 0:
			t := g.msgs[rng.IntN(n)]
			if rng.IntN(2) == 0 {
				m.Sender = t.Sender
			}
			return t.Seq
		}
		return 1 + rng.Uint64N(g.head+uint64(i)+2) // anything, maybe in this batch
	}
	switch k := rng.IntN(10); {
	case k < 3:
		m.Body = fmt.Sprint("text ", rng.IntN(1000))
		if rng.IntN(4) == 0 {
			m.ReplyToSeq = target()
		}
	case k < 4:
		m.Kind, m.TargetSeq, m.Body = store.KindEdit, target(), fmt.Sprint("edit ", rng.IntN(1000))
	case k < 5:
		m.Kind, m.TargetSeq = store.KindDelete, target()
		if len(g.msgs) > 2 && m.TargetSeq <= g.msgs[1].Seq {
			m.TargetSeq = g.msgs[2+rng.IntN(len(g.msgs)-2)].Seq // spare the hot ones
		}
	case k < 8:
		m.Kind, m.TargetSeq, m.Emoji = store.KindReactionAdd, target(), fmt.Sprint("e", rng.IntN(30))
	case len(g.adds) > 0 && rng.IntN(2) == 0:
		a := g.adds[rng.IntN(len(g.adds))]
		m = store.NewMessage{Room: "r", Kind: store.KindReactionRemove, Sender: a.Sender, TargetSeq: a.TargetSeq, Emoji: a.Emoji}
	default:
		m.Kind, m.TargetSeq, m.Emoji = store.KindReactionRemove, target(), fmt.Sprint("e", rng.IntN(30))
	}
	if (m.Kind == store.KindMessage || m.Kind == store.KindEdit) && rng.IntN(3) == 0 {
		m.Mentions = g.users(1 + rng.IntN(3)) // may name the sender, or a user twice
	}
	if rng.IntN(3) == 0 {
		m.ClientMsgID = fmt.Sprint("id", rng.IntN(200))
	}
	if len(g.recent) > 0 && rng.IntN(15) == 0 {
		m = g.recent[rng.IntN(len(g.recent))] // a retry, of any kind
	}
	g.recent = append(g.recent, m)
	return m
}

// outcome names what became of m, for the log of a run.
func outcome(m store.NewMessage, got store.Message, dup bool, err error) string {
	switch {
	case err != nil:
		for _, e := range ruleErrors {
			if errors.Is(err, e) {
				return fmt.Sprintf("%s:%v", m.Kind, e)
			}
		}
		return fmt.Sprintf("%s:%v", m.Kind, err)
	case dup && got.Seq == 0:
		return fmt.Sprint(m.Kind, ":no-op")
	case dup:
		return fmt.Sprint(m.Kind, ":duplicate")
	}
	return fmt.Sprint(m.Kind, ":stored")
}

var ruleErrors = []error{store.ErrInvalidEntry, store.ErrTargetNotFound, store.ErrTargetDeleted,
	store.ErrNotAllowed, store.ErrBadReply, store.ErrTooManyReactions}

// sameRule reports whether a and b are both nil or break the same rule.
func sameRule(a, b error) bool {
	if (a == nil) != (b == nil) {
		return false
	}
	for _, e := range ruleErrors {
		if errors.Is(a, e) != errors.Is(b, e) {
			return false
		}
	}
	return true
}

func sameEntryIgnoringTime(a, b store.Message) bool {
	a.SentAt = b.SentAt
	return reflect.DeepEqual(a, b)
}

func compareLogs(t *testing.T, s, model store.Store) {
	t.Helper()
	got := mustMessages(t, s, "r", store.Query{Limit: 10000})
	want := mustMessages(t, model, "r", store.Query{Limit: 10000})
	if len(got) != len(want) {
		t.Fatalf("log holds %d entries, the model %d", len(got), len(want))
	}
	for i := range got {
		if !sameEntryIgnoringTime(got[i], want[i]) {
			t.Errorf("entry %d = %+v, the model's %+v", i, got[i], want[i])
		}
	}
}

func compareHistories(t *testing.T, s, model store.Store, viewer string) {
	t.Helper()
	got := mustHistory(t, s, "r", viewer, store.Query{Limit: 10000})
	want := mustHistory(t, model, "r", viewer, store.Query{Limit: 10000})
	if len(got) != len(want) {
		t.Fatalf("history holds %d messages, the model %d", len(got), len(want))
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.EditedAt.IsZero() != w.EditedAt.IsZero() {
			t.Errorf("seq %d: edited at %v, the model at %v", g.Seq, g.EditedAt, w.EditedAt)
		}
		g.SentAt, g.EditedAt = w.SentAt, w.EditedAt
		if !reflect.DeepEqual(g, w) {
			t.Errorf("viewer %s, seq %d:\n got  %+v\n want %+v", viewer, g.Seq, g, w)
		}
	}
}

// users returns n users picked at random, among the room's and others.
func (g *gen) users(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprint("u", g.rng.IntN(6))
	}
	return out
}

// compareReadState moves some markers in s and the model alike, some
// back, some beyond the head, and compares the answers and every user's
// read state, alone and in VisibleRooms.
func compareReadState(t *testing.T, s, model store.Store, g *gen) {
	t.Helper()
	ctx := context.Background()
	var ms []store.ReadMarker
	for u := range 6 {
		if g.rng.IntN(2) == 0 {
			ms = append(ms, store.ReadMarker{Room: "r", User: fmt.Sprint("u", u), Seq: g.rng.Uint64N(g.head + 4)})
		}
	}
	got, err := s.SetReadMarkers(ctx, ms)
	want, _ := model.SetReadMarkers(ctx, ms)
	if err != nil || len(got) != len(want) {
		t.Fatalf("SetReadMarkers(%+v) = %+v (%v), the model %+v", ms, got, err, want)
	}
	for i := range got {
		if got[i].Seq != want[i].Seq || got[i].User != want[i].User || got[i].ReadAt.IsZero() != want[i].ReadAt.IsZero() {
			t.Errorf("marker %d = %+v, the model's %+v", i, got[i], want[i])
		}
	}
	for u := range 6 {
		user := fmt.Sprint("u", u)
		got, err := s.ReadState(ctx, user, "r")
		want, _ := model.ReadState(ctx, user, "r")
		if err != nil || got != want {
			t.Fatalf("ReadState(%s) = %+v (%v), the model's %+v", user, got, err, want)
		}
		rooms, err := s.VisibleRooms(ctx, user, "", 10)
		if err != nil || (len(rooms) > 0 && rooms[0].Read != want) {
			t.Fatalf("VisibleRooms(%s) = %+v (%v), the model's read state %+v", user, rooms, err, want)
		}
	}
}
