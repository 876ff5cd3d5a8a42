package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/parleychat/parley/server/internal/store"
)

// testMembers: private and direct rooms keep their members; VisibleRooms
// shows public rooms and the caller's own.
func testMembers(t *testing.T, s store.Store) {
	ctx := context.Background()
	mustCreate := func(r store.Room) {
		t.Helper()
		if _, err := s.CreateRoom(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	mustCreate(store.Room{Name: "pub", Visibility: store.Public, CreatedBy: "ann"})
	mustCreate(store.Room{Name: "priv", Visibility: store.Private, CreatedBy: "ann"})
	mustCreate(store.Room{Name: "dm:ann:bob", Visibility: store.Direct, CreatedBy: "ann", Members: []string{"bob"}})
	members := func(room string) []string {
		t.Helper()
		m, err := s.Members(ctx, room)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	if got := members("priv"); !slices.Equal(got, []string{"ann"}) {
		t.Fatalf("private room members %v, want the creator", got)
	}
	if got := members("dm:ann:bob"); !slices.Equal(got, []string{"ann", "bob"}) {
		t.Fatalf("direct room members %v", got)
	}
	if got := members("pub"); len(got) != 0 {
		t.Fatalf("public room members %v, want none", got)
	}
	for _, op := range []func() error{
		func() error { return s.AddMember(ctx, "priv", "cat") },
		func() error { return s.AddMember(ctx, "priv", "cat") }, // again: no error
		func() error { return s.AddMember(ctx, "priv", "dan") },
		func() error { return s.RemoveMember(ctx, "priv", "dan") },
		func() error { return s.RemoveMember(ctx, "priv", "nobody") },
	} {
		if err := op(); err != nil {
			t.Fatal(err)
		}
	}
	if got := members("priv"); !slices.Equal(got, []string{"ann", "cat"}) {
		t.Fatalf("after add and remove: %v", got)
	}
	for _, c := range []struct {
		room, user string
		want       bool
	}{{"priv", "cat", true}, {"priv", "dan", false}, {"dm:ann:bob", "bob", true}, {"dm:ann:bob", "cat", false}, {"nowhere", "ann", false}} {
		if got, err := s.IsMember(ctx, c.room, c.user); err != nil || got != c.want {
			t.Errorf("IsMember(%s, %s) = %v, %v; want %v", c.room, c.user, got, err, c.want)
		}
	}
	for _, err := range []error{s.AddMember(ctx, "nowhere", "x"), s.RemoveMember(ctx, "nowhere", "x"), func() error { _, err := s.Members(ctx, "nowhere"); return err }()} {
		if !errors.Is(err, store.ErrRoomNotFound) {
			t.Errorf("unknown room: %v, want ErrRoomNotFound", err)
		}
	}
	visible := func(user, after string, limit int) string {
		t.Helper()
		rooms, err := s.VisibleRooms(ctx, user, after, limit)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, r := range rooms {
			names = append(names, r.Name)
		}
		return fmt.Sprint(names)
	}
	for _, c := range []struct{ user, after, want string }{
		{"ann", "", "[dm:ann:bob priv pub]"},
		{"bob", "", "[dm:ann:bob pub]"},
		{"cat", "", "[priv pub]"},
		{"eve", "", "[pub]"},
		{"ann", "dm:ann:bob", "[priv pub]"},
	} {
		if got := visible(c.user, c.after, 10); got != c.want {
			t.Errorf("VisibleRooms(%s, after %q) = %s, want %s", c.user, c.after, got, c.want)
		}
	}
	if got := visible("ann", "", 2); got != "[dm:ann:bob priv]" {
		t.Errorf("VisibleRooms limit 2 = %s", got)
	}
	for _, limit := range []int{0, -1} { // as ListRooms: nothing, not everything
		if got := visible("ann", "", limit); got != "[]" {
			t.Errorf("VisibleRooms limit %d = %s, want []", limit, got)
		}
	}
}
