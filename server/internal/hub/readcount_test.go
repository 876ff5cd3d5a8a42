package hub

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/parleychat/parley/server/internal/store"
	"github.com/parleychat/parley/server/internal/store/memory"
	"github.com/parleychat/parley/server/internal/store/sqlite"
)

// countStores are the stores the ring's counts are checked against.
var countStores = []struct {
	name string
	open func(t *testing.T) store.Store
}{
	{"memory", func(*testing.T) store.Store { return memory.New() }},
	{"sqlite", func(t *testing.T) store.Store {
		st, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(t.TempDir(), "parley.db")})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}},
}

// countHub is a hub over st with rooms created as given, each kept live
// by a connection in it.
func countHub(t *testing.T, cfg Config, st store.Store, rooms ...store.Room) *Hub {
	t.Helper()
	ctx := context.Background()
	h := New(cfg, st, testEncode, slog.New(slog.NewTextHandler(io.Discard, nil)))
	t.Cleanup(h.Close)
	for _, r := range rooms {
		if _, err := st.CreateRoom(ctx, r); err != nil {
			t.Fatal(err)
		}
		if err := h.Join(ctx, h.Connect("keeper", "", false), r.Name, JoinOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	return h
}

// sendAll sends entries to room through the hub, as the API does.
func sendAll(t *testing.T, h *Hub, room string, ms ...store.NewMessage) {
	t.Helper()
	for _, m := range ms {
		m.Room = room
		if _, _, err := h.Send(context.Background(), m); err != nil {
			t.Fatalf("send %+v: %v", m, err)
		}
	}
}

// storeMark moves user's marker to seq through the store, as the API does
// when the hub cannot, and returns the store's read state then.
func storeMark(t *testing.T, h *Hub, st store.Store, user, room string, seq uint64) store.ReadState {
	t.Helper()
	ctx := context.Background()
	if err := h.MarkRead(ctx, user, room, ReadMark{Seq: seq}, nil); err != nil {
		t.Fatal(err)
	}
	if err := h.FlushReadMarks(ctx); err != nil {
		t.Fatal(err)
	}
	rs, err := st.ReadState(ctx, user, room)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// readString is a marker and its counts as "seq/unread/mentions@head".
func readString(seq uint64, unread, mentions int, head uint64) string {
	return fmt.Sprintf("%d/%d/%d@%d", seq, unread, mentions, head)
}

// The counts MarkReadLive takes from the ring are the store's, at every
// seq and for every reader: own messages, edits that add or drop a
// mention, reactions and deletes, and a direct room where every unread
// message is a mention. Where the ring does not reach (before a delete's
// cut) it leaves the mark to the store, and changes nothing.
func TestMarkReadLiveCountsAsTheStore(t *testing.T) {
	for _, sc := range countStores {
		t.Run(sc.name, func(t *testing.T) {
			st := sc.open(t)
			h := countHub(t, Config{}, st, store.Room{Name: "r", Visibility: store.Public},
				store.Room{Name: "dm:ann:bob", Visibility: store.Direct, CreatedBy: "ann", Members: []string{"ann", "bob"}})
			msg := func(from, body string, mentions ...string) store.NewMessage {
				return store.NewMessage{Sender: from, Body: body, Mentions: mentions}
			}
			sendAll(t, h, "r",
				msg("bob", "hi @ann", "ann"),            // 1: mentions ann until 8 drops it
				msg("bob", "plain"),                     // 2: mentions ann after 9
				msg("ann", "mine @bob", "bob"),          // 3: ann's own
				msg("cy", "to @ann @bob", "ann", "bob"), // 4
				store.NewMessage{Sender: "cy", Kind: store.KindReactionAdd, TargetSeq: 1, Emoji: "👍"}, // 5
				msg("bob", "gone soon @ann", "ann"), // 6: deleted by 11
				msg("cy", "hello"),                  // 7
				store.NewMessage{Sender: "bob", Kind: store.KindEdit, TargetSeq: 1, Body: "hi all"},                                // 8
				store.NewMessage{Sender: "bob", Kind: store.KindEdit, TargetSeq: 2, Body: "plain @ann", Mentions: []string{"ann"}}, // 9
				msg("bob", "late @cy", "cy"),                                                                                      // 10
				store.NewMessage{Sender: "bob", Kind: store.KindDelete, TargetSeq: 6},                                             // 11: cuts the ring up to 6
				msg("cy", "after @ann", "ann"),                                                                                    // 12
				store.NewMessage{Sender: "ann", Kind: store.KindEdit, TargetSeq: 3, Body: "mine"},                                 // 13
				store.NewMessage{Sender: "cy", Kind: store.KindEdit, TargetSeq: 7, Body: "hello @ann", Mentions: []string{"ann"}}, // 14
			)
			sendAll(t, h, "dm:ann:bob", msg("bob", "psst"), msg("ann", "yes?"), msg("bob", "@ann look", "ann"), msg("bob", "and this"))
			ctx := context.Background()
			for _, c := range []struct {
				room    string
				head    uint64
				ringTo  uint64 // the first seq the ring can count from
				readers []string
			}{{"r", 14, 6, []string{"ann", "bob", "cy", "dee"}}, {"dm:ann:bob", 4, 0, []string{"ann", "bob"}}} {
				for _, user := range c.readers {
					h.NoteReadMark(user, c.room, 0) // what the API would read from the store
					for seq := uint64(1); seq <= c.head; seq++ {
						m, ok, err := h.MarkReadLive(ctx, user, c.room, seq, nil)
						if err != nil {
							t.Fatal(err)
						}
						if seq < c.ringTo {
							if ok {
								t.Fatalf("%s marks %s at %d, before the ring's cut at %d: answered %+v from memory", user, c.room, seq, c.ringTo, m)
							}
							if p, pending := h.PendingRead(user, c.room); pending && p.Seq >= seq {
								t.Fatalf("%s at %d: a mark the hub did not answer is pending: %+v", user, seq, p)
							}
							storeMark(t, h, st, user, c.room, seq)
							continue
						}
						if !ok {
							t.Fatalf("%s marks %s at %d: not answered from memory", user, c.room, seq)
						}
						got := readString(m.Seq, m.Unread, m.Mentions, m.HeadSeq)
						rs := storeMark(t, h, st, user, c.room, seq)
						if want := readString(rs.LastReadSeq, rs.Unread, rs.Mentions, rs.HeadSeq); got != want {
							t.Fatalf("%s marks %s at %d: %s from memory, the store says %s", user, c.room, seq, got, want)
						}
						// A lower seq answers the marker as it is.
						if seq > 1 {
							m, ok, err := h.MarkReadLive(ctx, user, c.room, seq-1, nil)
							if err != nil || !ok || readString(m.Seq, m.Unread, m.Mentions, m.HeadSeq) != got {
								t.Fatalf("%s marks %s back at %d: %+v %v %v, want %s", user, c.room, seq-1, m, ok, err, got)
							}
						}
					}
				}
			}
		})
	}
}

// MarkReadLive leaves a mark to the store when the hub cannot answer it
// alone: a room not loaded here, a user whose marker it has not learnt, a
// seq beyond the room's head, a stretch longer than the ring, and one
// that retention may have thinned (by count or by age); the counts it
// does give then are still the store's after retention ran.
func TestMarkReadLiveLeavesTheRestToTheStore(t *testing.T) {
	ctx := context.Background()
	st := memory.New()
	h := countHub(t, Config{RecentMessages: 8, ReadMarkFlush: time.Hour, Retention: store.Retention{MaxMessages: 6, MaxAge: time.Hour}}, st,
		store.Room{Name: "r", Visibility: store.Public})
	if _, err := st.CreateRoom(ctx, store.Room{Name: "idle", Visibility: store.Public}); err != nil {
		t.Fatal(err)
	}
	for range 12 {
		sendAll(t, h, "r", store.NewMessage{Sender: "bob", Body: "x"})
	}
	if _, err := st.Prune(ctx, h.cfg.Retention); err != nil { // keeps 7..12
		t.Fatal(err)
	}
	live := func(user, room string, seq uint64) (ReadMark, bool) {
		t.Helper()
		m, ok, err := h.MarkReadLive(ctx, user, room, seq, nil)
		if err != nil {
			t.Fatal(err)
		}
		return m, ok
	}
	if _, ok := live("ann", "r", 11); ok {
		t.Fatal("answered for a user whose marker the hub never learnt")
	}
	h.NoteReadMark("ann", "r", 0)
	h.NoteReadMark("ann", "idle", 0) // not loaded: nothing to note in
	if _, ok := live("ann", "idle", 1); ok {
		t.Fatal("answered for a room that is not loaded")
	}
	if _, ok := live("ann", "r", 13); ok {
		t.Fatal("answered for a seq beyond the head")
	}
	if _, ok := live("ann", "r", 3); ok {
		t.Fatal("answered for a stretch longer than the ring (8 entries, 9 after seq 3)")
	}
	if _, ok := live("ann", "r", 8); ok {
		t.Fatal("answered for 4 messages when retention keeps 6: the store may hold newer ones, and prune these")
	}
	m, ok := live("ann", "r", 9)
	if !ok || readString(m.Seq, m.Unread, m.Mentions, m.HeadSeq) != "9/3/0@12" {
		t.Fatalf("3 messages after seq 9: %+v %v, want 9/3/0@12 from memory", m, ok)
	}
	if got := h.Stats(); got.MarksInMemory != 1 || got.MarksFromStore != 5 {
		t.Fatalf("stats: %d marks in memory, %d from the store; want 1 and 5", got.MarksInMemory, got.MarksFromStore)
	}
	// Messages near the retention's age limit are left to the store. (No
	// flush runs, which would read the clock too.)
	h.now = func() time.Time { return time.Now().Add(time.Hour - retentionMargin/2) }
	if _, ok := live("ann", "r", 10); ok {
		t.Fatal("answered for messages retention may take any moment")
	}
	if m, ok := live("ann", "r", 12); !ok || m.Unread != 0 || m.HeadSeq != 12 {
		t.Fatalf("a mark at the head counts nothing, however old: %+v %v", m, ok)
	}
}

// After a flush, the hub knows the marker it stored; a marker another
// node stored comes as an event on the user subject, and the hub learns
// it too: a lower mark answers it as it is, with no store read.
func TestMarkReadLiveLearnsStoredMarkers(t *testing.T) {
	ctx := context.Background()
	st := memory.New()
	h := countHub(t, Config{ReadMarkFlush: time.Hour}, st, store.Room{Name: "r", Visibility: store.Public})
	for range 6 {
		sendAll(t, h, "r", store.NewMessage{Sender: "bob", Body: "x"})
	}
	storeMark(t, h, st, "ann", "r", 2) // a flush: the hub learns ann's marker
	m, ok, err := h.MarkReadLive(ctx, "ann", "r", 1, nil)
	if err != nil || !ok || readString(m.Seq, m.Unread, m.Mentions, m.HeadSeq) != "2/4/0@6" {
		t.Fatalf("ann marks 1 after 2 was stored: %+v %v %v, want 2/4/0@6 from memory", m, ok, err)
	}
	// Another node stores 5, and says so on the user subject.
	if _, err := st.SetReadMarkers(ctx, []store.ReadMarker{{Room: "r", User: "ann", Seq: 5}}); err != nil {
		t.Fatal(err)
	}
	ev, err := json.Marshal(Event{Version: EventVersion, Node: "other", Kind: EventReadMarker, Room: "r", User: "ann",
		Read: &ReadMark{Seq: 5, Unread: 1, HeadSeq: 6}})
	if err != nil {
		t.Fatal(err)
	}
	h.onUserWire(ev)
	m, ok, err = h.MarkReadLive(ctx, "ann", "r", 3, nil)
	if err != nil || !ok || readString(m.Seq, m.Unread, m.Mentions, m.HeadSeq) != "5/1/0@6" {
		t.Fatalf("ann marks 3 after another node stored 5: %+v %v %v, want 5/1/0@6", m, ok, err)
	}
	if p, pending := h.PendingRead("ann", "r"); pending {
		t.Fatalf("a mark below the stored marker is pending: %+v", p)
	}
}
