package main

import (
	"strings"
	"testing"

	"github.com/parleychat/parley/cmd/parley/internal/cli"
	parleyv1 "github.com/parleychat/parley/gen/parley/v1"
)

// Edit, delete, react, unreact and send --reply-to from the command line,
// and history showing the result: "(edited)", a tombstone, reaction counts
// and the quoted parent of a reply.
func TestEditDeleteReactReply(t *testing.T) {
	s := startServer(t)
	alice, bob := mint(t, s, "alice"), mint(t, s, "bob")

	wantCode(t, parley(t, s.Addr(), alice, "send", "lobby", "hello", "wrold"), cli.ExitOK) // seq 1
	r := parley(t, s.Addr(), alice, "edit", "lobby", "1", "hello", "world")
	wantCode(t, r, cli.ExitOK)
	if want := "lobby [1]: edited, entry seq 2\n"; r.stdout != want {
		t.Errorf("edit printed %q, want %q", r.stdout, want)
	}
	r = parley(t, s.Addr(), bob, "send", "--json", "--reply-to", "1", "lobby", "hi", "alice") // seq 3
	wantCode(t, r, cli.ExitOK)
	var reply parleyv1.Message
	decodeObject(t, r.stdout, &reply)
	if reply.GetSeq() != 3 || reply.GetReplyToSeq() != 1 {
		t.Fatalf("reply = %v, want seq 3 replying to 1", &reply)
	}
	r = parley(t, s.Addr(), bob, "react", "--json", "--client-msg-id", "b1", "lobby", "1", "👍") // seq 4
	wantCode(t, r, cli.ExitOK)
	var reaction parleyv1.Reaction
	decodeObject(t, r.stdout, &reaction)
	if reaction.GetSeq() != 4 || reaction.GetTargetSeq() != 1 || reaction.GetEmoji() != "👍" || reaction.GetSender() != "bob" {
		t.Fatalf("react --json = %v", &reaction)
	}
	// Again: the server changes nothing and says OK.
	r = parley(t, s.Addr(), bob, "react", "lobby", "1", "👍")
	wantCode(t, r, cli.ExitOK)
	if !strings.Contains(r.stdout, "nothing changed") {
		t.Errorf("a second react printed %q, want nothing changed", r.stdout)
	}
	wantCode(t, parley(t, s.Addr(), alice, "react", "lobby", "1", "👍"), cli.ExitOK) // seq 5
	wantCode(t, parley(t, s.Addr(), alice, "react", "lobby", "1", "🎉"), cli.ExitOK) // seq 6
	r = parley(t, s.Addr(), alice, "unreact", "lobby", "1", "🎉")                    // seq 7
	wantCode(t, r, cli.ExitOK)
	if want := "lobby [1]: reaction taken back, entry seq 7\n"; r.stdout != want {
		t.Errorf("unreact printed %q, want %q", r.stdout, want)
	}
	r = parley(t, s.Addr(), alice, "unreact", "--json", "lobby", "1", "🎉")
	wantCode(t, r, cli.ExitOK)
	if strings.TrimSpace(r.stdout) != "null" {
		t.Errorf("a no-op unreact --json printed %q, want null", r.stdout)
	}
	wantCode(t, parley(t, s.Addr(), bob, "send", "lobby", "oops"), cli.ExitOK) // seq 8
	r = parley(t, s.Addr(), bob, "delete", "lobby", "8")                       // seq 9
	wantCode(t, r, cli.ExitOK)
	if want := "lobby [8]: deleted, entry seq 9\n"; r.stdout != want {
		t.Errorf("delete printed %q, want %q", r.stdout, want)
	}

	r = parley(t, s.Addr(), bob, "history", "--oldest-first", "lobby")
	wantCode(t, r, cli.ExitOK)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	want := []string{
		"alice: hello world (edited)  [👍 2]",
		`bob: (re [1] alice: "hello world") hi alice`,
		"bob: (message deleted)",
	}
	if len(lines) != len(want) {
		t.Fatalf("history printed %d lines, want %d:\n%s", len(lines), len(want), r.stdout)
	}
	for i, w := range want {
		if !strings.HasSuffix(lines[i], w) {
			t.Errorf("history line %d = %q, want it to end with %q", i, lines[i], w)
		}
	}
	r = parley(t, s.Addr(), bob, "history", "--json", "lobby")
	wantCode(t, r, cli.ExitOK)
	msgs := decodeMessages(t, r.stdout)
	if len(msgs) != 3 || !msgs[0].GetDeleted() || msgs[1].GetReplyTo().GetSeq() != 1 || msgs[2].GetEditedAt() == nil ||
		len(msgs[2].GetReactions()) != 1 || msgs[2].GetReactions()[0].GetCount() != 2 {
		t.Fatalf("history --json = %v", msgs)
	}
}

// Each rule the server enforces comes back as its gRPC status and exit
// status 1; command-line mistakes are usage errors that send nothing.
func TestEntryCommandErrors(t *testing.T) {
	s := startServer(t)
	alice, bob := mint(t, s, "alice"), mint(t, s, "bob")
	wantCode(t, parley(t, s.Addr(), alice, "send", "lobby", "mine"), cli.ExitOK) // seq 1

	wantCode(t, parley(t, s.Addr(), bob, "edit", "lobby", "1", "theirs"), cli.ExitFail, "parley edit: PermissionDenied:", "only its sender")
	wantCode(t, parley(t, s.Addr(), bob, "delete", "lobby", "1"), cli.ExitFail, "parley delete: PermissionDenied:")
	wantCode(t, parley(t, s.Addr(), alice, "edit", "lobby", "99", "x"), cli.ExitFail, "NotFound", "not found")
	wantCode(t, parley(t, s.Addr(), alice, "react", "lobby", "1", "a\tb"), cli.ExitFail, "InvalidArgument")
	wantCode(t, parley(t, s.Addr(), alice, "send", "--reply-to", "99", "lobby", "x"), cli.ExitFail, "InvalidArgument")
	wantCode(t, parley(t, s.Addr(), alice, "delete", "lobby", "1"), cli.ExitOK) // seq 2
	wantCode(t, parley(t, s.Addr(), alice, "react", "lobby", "1", "👍"), cli.ExitFail, "parley react: FailedPrecondition:", "deleted")
	wantCode(t, parley(t, s.Addr(), alice, "edit", "nowhere", "1", "x"), cli.ExitFail, "NotFound")

	wantCode(t, parley(t, s.Addr(), alice, "edit", "lobby", "1"), cli.ExitUsage, "give a room, a message's seq and the new text")
	wantCode(t, parley(t, s.Addr(), alice, "react", "lobby", "1", "a", "b"), cli.ExitUsage, "give a room, a message's seq and an emoji")
	wantCode(t, parley(t, s.Addr(), alice, "delete", "lobby"), cli.ExitUsage, "give a room and a message's seq")
	wantCode(t, parley(t, s.Addr(), alice, "delete", "lobby", "x"), cli.ExitUsage, `"x" is not a message's seq`)
	wantCode(t, parley(t, s.Addr(), alice, "unreact", "lobby", "0", "👍"), cli.ExitUsage, `"0" is not a message's seq`)
	wantCode(t, parley(t, s.Addr(), "", "delete", "lobby", "1"), cli.ExitUsage, "no token")

	// Nothing above stored anything but the message and its delete.
	api, ctx := apiClient(t, s, "alice")
	resp, err := api.ListMessages(ctx, &parleyv1.ListMessagesRequest{Room: "lobby"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetHeadSeq() != 2 {
		t.Errorf("head seq = %d, want 2 (the message and its delete)", resp.GetHeadSeq())
	}
}

// parley chat shows another user's edit, reaction, reply and delete as
// they arrive, and sends its own with /edit, /react, /unreact, /reply and
// /delete; a refused one is a warning with the server's status.
func TestChatEditsDeletesReactions(t *testing.T) {
	s := startServer(t)
	alice := startChatPTY(t, s.Addr(), mint(t, s, "alice"), "lobby")
	alice.waitOutput("joined #lobby")
	bob, ctx := apiClient(t, s, "bob")

	if _, err := bob.SendMessage(ctx, &parleyv1.SendMessageRequest{Room: "lobby", Body: "helo"}); err != nil { // seq 1
		t.Fatal(err)
	}
	alice.waitOutput("[1] ")
	alice.waitOutput("#lobby bob: helo")
	if _, err := bob.EditMessage(ctx, &parleyv1.EditMessageRequest{Room: "lobby", Seq: 1, Body: "hello"}); err != nil { // seq 2
		t.Fatal(err)
	}
	alice.waitOutput("#lobby * bob edited [1]: hello")
	if _, err := bob.AddReaction(ctx, &parleyv1.AddReactionRequest{Room: "lobby", Seq: 1, Emoji: "👍"}); err != nil { // seq 3
		t.Fatal(err)
	}
	alice.waitOutput("#lobby * bob reacted 👍 to [1]")
	if _, err := bob.SendMessage(ctx, &parleyv1.SendMessageRequest{Room: "lobby", Body: "and you?", ReplyToSeq: 1}); err != nil { // seq 4
		t.Fatal(err)
	}
	alice.waitOutput("#lobby bob: (re [1]) and you?")

	alice.typeLine("/react 1 🎉") // seq 5
	alice.waitOutput("#lobby * alice reacted 🎉 to [1]")
	alice.typeLine("/unreact 1 🎉") // seq 6
	alice.waitOutput("#lobby * alice took back 🎉 on [1]")
	alice.typeLine("/reply 4 fine, thanks") // seq 7
	alice.waitOutput("#lobby alice: (re [4]) fine, thanks")
	alice.typeLine("/edit 7 fine,   thanks!") // seq 8
	alice.waitOutput("#lobby * alice edited [7]: fine,   thanks!")
	alice.typeLine("/edit 1 not mine")
	alice.waitOutput("! /edit [1] in #lobby: PermissionDenied:")
	alice.typeLine("/unreact 1 🎉")
	alice.waitOutput("* /unreact [1] in #lobby: nothing changed")
	alice.typeLine("/delete x")
	alice.waitOutput("! usage: /delete <seq>")
	alice.typeLine("/react 1")
	alice.waitOutput("! usage: /react <seq> <emoji>")

	if _, err := bob.DeleteMessage(ctx, &parleyv1.DeleteMessageRequest{Room: "lobby", Seq: 1}); err != nil { // seq 9
		t.Fatal(err)
	}
	alice.waitOutput("[9] ")
	alice.waitOutput("#lobby * bob deleted [1]")
	alice.typeLine("/delete 7") // seq 10
	alice.waitOutput("#lobby * alice deleted [7]")

	alice.typeLine("/history")
	alice.waitOutput("#lobby bob: (message deleted)")
	alice.waitOutput(`#lobby bob: (re [1] bob: deleted) and you?`)
	alice.waitOutput(`#lobby alice: (re [4] bob: "and you?") (message deleted)`)
	alice.typeLine("/quit")
	if err := alice.waitExit(); err != nil {
		t.Fatalf("parley chat exited with %v; it printed:\n%s", err, alice.out.String())
	}
	resp, err := bob.ListMessages(ctx, &parleyv1.ListMessagesRequest{Room: "lobby"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetHeadSeq() != 10 {
		t.Errorf("head seq = %d, want 10; alice's chat printed:\n%s", resp.GetHeadSeq(), alice.out.String())
	}
}

// Edits, reactions and deletes move chat's resume position like messages:
// after a reconnect, those made while it was away are printed once, and
// none printed before the cut is printed again.
func TestChatResumesPastEntries(t *testing.T) {
	s := startServer(t)
	px := startProxy(t, s.Addr())
	alice, stdin := startChatPipes(t, px.addr(), mint(t, s, "alice"), "lobby")
	alice.waitOutput("joined #lobby")
	bob, ctx := apiClient(t, s, "bob")
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(bob.SendMessage(ctx, &parleyv1.SendMessageRequest{Room: "lobby", Body: "m1"}))               // seq 1
	must(bob.EditMessage(ctx, &parleyv1.EditMessageRequest{Room: "lobby", Seq: 1, Body: "m1 fixed"})) // seq 2
	must(bob.AddReaction(ctx, &parleyv1.AddReactionRequest{Room: "lobby", Seq: 1, Emoji: "👀"}))       // seq 3
	alice.waitOutput("* bob reacted 👀 to [1]")

	px.setDown(true)
	px.cut()
	alice.waitOutput("connection lost")
	must(bob.RemoveReaction(ctx, &parleyv1.RemoveReactionRequest{Room: "lobby", Seq: 1, Emoji: "👀"})) // seq 4
	must(bob.DeleteMessage(ctx, &parleyv1.DeleteMessageRequest{Room: "lobby", Seq: 1}))               // seq 5
	px.setDown(false)
	alice.waitOutput("rejoined #lobby")
	alice.waitOutput("[5] ")
	alice.waitOutput("* bob deleted [1]")
	must(bob.SendMessage(ctx, &parleyv1.SendMessageRequest{Room: "lobby", Body: "m6"})) // seq 6
	alice.waitOutput("#lobby bob: m6")

	out := alice.out.String()
	for _, line := range []string{"bob: m1", "* bob edited [1]: m1 fixed", "* bob reacted 👀 to [1]", "* bob took back 👀 on [1]", "* bob deleted [1]", "bob: m6"} {
		if n := strings.Count(out, "#lobby "+line+"\n"); n != 1 {
			t.Errorf("%q printed %d times, want once; output:\n%s", line, n, out)
		}
	}
	stdin.Close()
	if err := alice.waitExit(); err != nil {
		t.Fatalf("parley chat exited with %v:\n%s", err, out)
	}
}
