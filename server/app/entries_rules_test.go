package app_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	parleyv1 "github.com/parleychat/parley/gen/parley/v1"
)

// Every rejection of the list, over a Join stream and as a unary
// call, answers its code and changes nothing: the head and the history
// stay as they were.
func TestEntryRejectionsChangeNothing(t *testing.T) {
	ts := startServer(t)
	ts.createRoom(t, "rules")
	alice := openJoin(t, ts.dial(t), ts.token(t, "alice"))
	alice.join("rules", nil)
	bob := openJoin(t, ts.dial(t), ts.token(t, "bob"))
	bob.join("rules", nil)
	okSeq(t, alice.post("rules", "alice's", ""))     // 1
	okSeq(t, bob.post("rules", "bob's", ""))         // 2
	okSeq(t, alice.post("rules", "taken back", ""))  // 3
	okSeq(t, alice.del("rules", 3, ""))              // 4
	okSeq(t, alice.edit("rules", 1, "alice's!", "")) // 5
	full := okSeq(t, alice.post("rules", "full of reactions", ""))
	for i := range 20 {
		okSeq(t, bob.react("rules", full, fmt.Sprintf("e%d", i), ""))
	}
	okSeq(t, alice.post("rules", "used id", "k-msg"))
	before, head := ts.history(t, "bob", "rules")
	c, actx := ts.client(t, "alice")

	type tc struct {
		name string
		code codes.Code
		join func() *parleyv1.Reply
		call func() error
	}
	edit := func(seq uint64, body, id string) tc {
		return tc{join: func() *parleyv1.Reply { return alice.edit("rules", seq, body, id) }, call: func() error {
			_, err := c.EditMessage(actx, &parleyv1.EditMessageRequest{Room: "rules", Seq: seq, Body: body, ClientMsgId: id})
			return err
		}}
	}
	del := func(seq uint64) tc {
		return tc{join: func() *parleyv1.Reply { return alice.del("rules", seq, "") }, call: func() error {
			_, err := c.DeleteMessage(actx, &parleyv1.DeleteMessageRequest{Room: "rules", Seq: seq})
			return err
		}}
	}
	react := func(seq uint64, emoji string) tc {
		return tc{join: func() *parleyv1.Reply { return alice.react("rules", seq, emoji, "") }, call: func() error {
			_, err := c.AddReaction(actx, &parleyv1.AddReactionRequest{Room: "rules", Seq: seq, Emoji: emoji})
			return err
		}}
	}
	unreact := func(seq uint64, emoji string) tc {
		return tc{join: func() *parleyv1.Reply { return alice.unreact("rules", seq, emoji, "") }, call: func() error {
			_, err := c.RemoveReaction(actx, &parleyv1.RemoveReactionRequest{Room: "rules", Seq: seq, Emoji: emoji})
			return err
		}}
	}
	reply := func(to uint64) tc {
		return tc{join: func() *parleyv1.Reply { return alice.postReply("rules", "re", to, "") }, call: func() error {
			_, err := c.SendMessage(actx, &parleyv1.SendMessageRequest{Room: "rules", Body: "re", ReplyToSeq: to})
			return err
		}}
	}
	named := func(name string, code codes.Code, x tc) tc { x.name, x.code = name, code; return x }
	cases := []tc{
		named("edit a deleted message", codes.FailedPrecondition, edit(3, "again", "")),
		named("react to a deleted message", codes.FailedPrecondition, react(3, "👍")),
		named("unreact on a deleted message", codes.FailedPrecondition, unreact(3, "👍")),
		named("edit a seq beyond the head", codes.NotFound, edit(head+10, "x", "")),
		named("edit an edit", codes.NotFound, edit(5, "x", "")),
		named("delete a delete", codes.NotFound, del(4)),
		named("react to a seq beyond the head", codes.NotFound, react(head+10, "👍")),
		named("edit someone else's message", codes.PermissionDenied, edit(2, "mine now", "")),
		named("delete someone else's message", codes.PermissionDenied, del(2)),
		named("reply to a seq beyond the head", codes.InvalidArgument, reply(head+10)),
		named("reply to an edit", codes.InvalidArgument, reply(5)),
		named("one emoji too many", codes.FailedPrecondition, react(full, "new")),
		named("emoji with a space", codes.InvalidArgument, react(1, "a b")),
		named("empty emoji", codes.InvalidArgument, react(1, "")),
		named("emoji too long", codes.InvalidArgument, react(1, "0123456789012345678901234567890123")),
		named("seq 0", codes.InvalidArgument, edit(0, "x", "")),
		named("empty edit", codes.InvalidArgument, edit(1, "", "")),
		named("client_msg_id of a message reused for an edit", codes.AlreadyExists, edit(1, "x", "k-msg")),
	}
	for _, x := range cases {
		for _, via := range []string{"join", "unary"} {
			var code codes.Code
			var msg string
			if via == "join" {
				r := x.join()
				code, msg = codes.Code(r.GetCode()), r.GetError()
			} else {
				st := statusOf(x.call())
				code, msg = st.Code(), st.Message()
			}
			if code != x.code {
				t.Errorf("%s (%s): %v %q, want %v", x.name, via, code, msg, x.code)
			}
			if testing.Verbose() {
				t.Logf("%s (%s): %v %s", x.name, via, code, msg)
			}
			after, h := ts.history(t, "bob", "rules")
			if h != head || !slices.Equal(after, before) {
				t.Fatalf("%s (%s) changed the room: head %d -> %d", x.name, via, head, h)
			}
		}
	}
	// Nothing was delivered either: the next entry bob receives after
	// those he saw is the next one stored.
	bob.entries(1, int(head))
	next := okSeq(t, alice.post("rules", "next", ""))
	if ev := bob.next(isEntry, nil); entrySeq(ev) != head+1 || next != head+1 {
		t.Fatalf("after the rejections bob received seq %d, the send got %d; want %d", entrySeq(ev), next, head+1)
	}
}

// A private room's creator may delete any message of it; in a public room
// nobody but the sender may.
func TestCreatorDeletesInPrivateRoom(t *testing.T) {
	ts := startServer(t)
	c, octx := ts.client(t, "owner")
	if _, err := c.CreateRoom(octx, &parleyv1.CreateRoomRequest{Name: "priv", Visibility: parleyv1.RoomVisibility_ROOM_VISIBILITY_PRIVATE}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.AddMember(octx, &parleyv1.AddMemberRequest{Room: "priv", User: "bob"}); err != nil {
		t.Fatal(err)
	}
	bob := openJoin(t, ts.dial(t), ts.token(t, "bob"))
	bob.join("priv", nil)
	seq := okSeq(t, bob.post("priv", "oops", ""))
	resp, err := c.DeleteMessage(octx, &parleyv1.DeleteMessageRequest{Room: "priv", Seq: seq})
	if err != nil || resp.GetDelete().GetTargetSeq() != seq || resp.GetDelete().GetSender() != "owner" {
		t.Fatalf("creator's delete: %v, %v", resp, err)
	}
	if ev := bob.entries(seq, 2)[1]; ev.GetDelete().GetTargetSeq() != seq {
		t.Fatalf("bob received %v, want the delete", ev)
	}
}

// A retry with the same client_msg_id returns the original entry, of every
// kind, over Join and unary, and stores nothing more.
func TestIdempotentEntryOfEveryKind(t *testing.T) {
	ts := startServer(t)
	ts.createRoom(t, "idem")
	alice := openJoin(t, ts.dial(t), ts.token(t, "alice"))
	alice.join("idem", nil)
	c, actx := ts.client(t, "alice")
	okSeq(t, alice.post("idem", "target", "")) // 1
	type step struct {
		name string
		join func(id string) *parleyv1.Reply
		call func(id string) (uint64, error)
	}
	steps := []step{
		{"reply", func(id string) *parleyv1.Reply { return alice.postReply("idem", "re", 1, id) }, func(id string) (uint64, error) {
			r, err := c.SendMessage(actx, &parleyv1.SendMessageRequest{Room: "idem", Body: "re", ReplyToSeq: 1, ClientMsgId: id})
			return r.GetMessage().GetSeq(), err
		}},
		{"edit", func(id string) *parleyv1.Reply { return alice.edit("idem", 1, "edited "+id, id) }, func(id string) (uint64, error) {
			r, err := c.EditMessage(actx, &parleyv1.EditMessageRequest{Room: "idem", Seq: 1, Body: "edited " + id, ClientMsgId: id})
			return r.GetEdit().GetSeq(), err
		}},
		{"react", func(id string) *parleyv1.Reply { return alice.react("idem", 1, id, id) }, func(id string) (uint64, error) {
			r, err := c.AddReaction(actx, &parleyv1.AddReactionRequest{Room: "idem", Seq: 1, Emoji: id, ClientMsgId: id})
			return r.GetReaction().GetSeq(), err
		}},
		{"unreact", func(id string) *parleyv1.Reply { return alice.unreact("idem", 1, "react-"+id[len("unreact-"):], id) }, func(id string) (uint64, error) {
			r, err := c.RemoveReaction(actx, &parleyv1.RemoveReactionRequest{Room: "idem", Seq: 1, Emoji: "react-" + id[len("unreact-"):], ClientMsgId: id})
			return r.GetReaction().GetSeq(), err
		}},
	}
	for _, via := range []string{"join", "unary"} {
		for _, s := range steps {
			id := s.name + "-" + via
			var first, again uint64
			if via == "join" {
				first, again = okSeq(t, s.join(id)), okSeq(t, s.join(id))
			} else {
				var err1, err2 error
				first, err1 = s.call(id)
				again, err2 = s.call(id)
				if err1 != nil || err2 != nil {
					t.Fatalf("%s: %v, %v", id, err1, err2)
				}
			}
			_, head := ts.history(t, "alice", "idem")
			if first == 0 || again != first || head != first {
				t.Fatalf("%s: seqs %d then %d, head %d; want one entry, answered twice", id, first, again, head)
			}
		}
	}
	// A delete last, since nothing can follow it on the message.
	for _, via := range []string{"join", "unary"} {
		tgt := okSeq(t, alice.post("idem", "to delete "+via, ""))
		id := "delete-" + via
		var first, again uint64
		if via == "join" {
			first, again = okSeq(t, alice.del("idem", tgt, id)), okSeq(t, alice.del("idem", tgt, id))
		} else {
			r1, err1 := c.DeleteMessage(actx, &parleyv1.DeleteMessageRequest{Room: "idem", Seq: tgt, ClientMsgId: id})
			r2, err2 := c.DeleteMessage(actx, &parleyv1.DeleteMessageRequest{Room: "idem", Seq: tgt, ClientMsgId: id})
			if err1 != nil || err2 != nil {
				t.Fatalf("%s: %v, %v", id, err1, err2)
			}
			first, again = r1.GetDelete().GetSeq(), r2.GetDelete().GetSeq()
		}
		_, head := ts.history(t, "alice", "idem")
		if first != tgt+1 || again != first || head != first {
			t.Fatalf("%s: seqs %d then %d, head %d; want %d twice", id, first, again, head, tgt+1)
		}
	}
}

// Edits, deletes and reactions take from the user's one send limiter: a
// user out of sends is out of them all, over Join and unary alike, and
// nothing is stored.
func TestEntriesCountAsSends(t *testing.T) {
	ts := startServer(t, func(c *appConfig) { c.SendRate, c.SendBurst = 0.001, 1 })
	js := openJoin(t, ts.dial(t), ts.token(t, "hasty"))
	js.join("lobby", nil)
	seq := okSeq(t, js.post("lobby", "one", ""))
	for name, r := range map[string]*parleyv1.Reply{
		"edit": js.edit("lobby", seq, "two", ""), "delete": js.del("lobby", seq, ""),
		"react": js.react("lobby", seq, "👍", ""), "unreact": js.unreact("lobby", seq, "👍", ""),
	} {
		if codes.Code(r.GetCode()) != codes.ResourceExhausted || r.GetRetryAfter().AsDuration() <= 0 {
			t.Errorf("%s beyond the rate: %v, want RESOURCE_EXHAUSTED with retry_after", name, r)
		}
	}
	c, ctx := ts.client(t, "hasty")
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second) // a refused unary call is held up to a second
	defer cancel()
	if _, err := c.AddReaction(ctx, &parleyv1.AddReactionRequest{Room: "lobby", Seq: seq, Emoji: "👍"}); statusOf(err).Code() != codes.ResourceExhausted {
		t.Errorf("unary reaction beyond the rate: %v", err)
	}
	if _, head := ts.history(t, "other", "lobby"); head != seq {
		t.Fatalf("head %d after refused entries, want %d", head, seq)
	}
}
