package api

import (
	"context"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	parleyv1 "github.com/parleychat/parley/gen/parley/v1"
	"github.com/parleychat/parley/server/internal/hub"
	"github.com/parleychat/parley/server/internal/store"
	"github.com/parleychat/parley/server/internal/store/memory"
)

// flushingStore lets the hub's flush of pending read markers finish right
// after one read of read state, once it is armed: a reader of the store
// that then asks the hub for pending markers finds none, and what it read
// is already old.
type flushingStore struct {
	store.Store
	hub   *hub.Hub
	armed atomic.Bool
}

func (f *flushingStore) flushOnce(ctx context.Context) error {
	if f.armed.CompareAndSwap(true, false) {
		return f.hub.FlushReadMarks(ctx)
	}
	return nil
}

func (f *flushingStore) VisibleRooms(ctx context.Context, user, after string, limit int) ([]store.Room, error) {
	rooms, err := f.Store.VisibleRooms(ctx, user, after, limit)
	if err != nil {
		return nil, err
	}
	return rooms, f.flushOnce(ctx)
}

func (f *flushingStore) ReadMarkers(ctx context.Context, room string, limit int) ([]store.ReadMarker, error) {
	ms, err := f.Store.ReadMarkers(ctx, room, limit)
	if err != nil {
		return nil, err
	}
	return ms, f.flushOnce(ctx)
}

// A room list and a joiner's read state count a marker that the hub
// stored while they read the store: they read it again.
func TestReadStateOfAMarkerStoredMeanwhile(t *testing.T) {
	ctx := t.Context()
	st := &flushingStore{Store: memory.New()}
	h := hub.New(hub.Config{ReadMarkFlush: time.Hour}, st, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	t.Cleanup(h.Close)
	st.hub = h
	svc := New(Config{Hub: h, Store: st})
	if _, err := st.CreateRoom(ctx, store.Room{Name: "r", Visibility: store.Public, CreatedBy: "bob"}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, _, err := st.Append(ctx, store.NewMessage{Room: "r", Sender: "bob", Body: "hi"}); err != nil {
			t.Fatal(err)
		}
	}
	// user's marker is stored at 1, and waits in the hub at 3.
	markTwice := func(user string) {
		t.Helper()
		if err := h.MarkRead(ctx, user, "r", hub.ReadMark{Seq: 1}, nil); err != nil {
			t.Fatal(err)
		}
		if err := h.FlushReadMarks(ctx); err != nil {
			t.Fatal(err)
		}
		if err := h.MarkRead(ctx, user, "r", hub.ReadMark{Seq: 3}, nil); err != nil {
			t.Fatal(err)
		}
		st.armed.Store(true)
	}

	markTwice("alice")
	rooms, err := svc.visibleRooms(ctx, "alice", "", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(rooms) != 1 || rooms[0].Read.LastReadSeq != 3 || rooms[0].Read.Unread != 0 {
		t.Fatalf("room list after a mark at 3: %+v", rooms)
	}

	markTwice("carol")
	data, err := svc.joinedTail(ctx, "carol", "r")
	if err != nil {
		t.Fatal(err)
	}
	var resp parleyv1.JoinResponse
	if err := proto.Unmarshal(data, &resp); err != nil {
		t.Fatal(err)
	}
	j := resp.GetJoined()
	var receipt uint64
	for _, r := range j.GetReceipts() {
		if r.GetUser() == "carol" {
			receipt = r.GetSeq()
		}
	}
	if j.GetLastReadSeq() != 3 || receipt != 3 {
		t.Fatalf("joined after a mark at 3: last read %d, carol's receipt %d", j.GetLastReadSeq(), receipt)
	}
}
