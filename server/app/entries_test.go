package app_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	parleyv1 "github.com/parleychat/parley/gen/parley/v1"
)

// Every kind of entry, sent over a Join stream, as a unary call and over
// REST, is stored with the next seq, answered with it (0 for a no-op),
// and delivered live to every member in seq order among the messages.
// Applying the entries in order gives exactly what ListMessages shows;
// a resume from any position replays every entry once, in order, from the
// store or from the ring, and never the deleted text; so does the REST
// event stream.
func TestEveryEntryKindEndToEnd(t *testing.T) {
	ts := startServer(t)
	ts.createRoom(t, "conv")
	base := "http://" + ts.Addr()
	alice := openJoin(t, ts.dial(t), ts.token(t, "alice"))
	alice.join("conv", nil)
	bob := openJoin(t, ts.dial(t), ts.token(t, "bob"))
	bob.join("conv", nil)
	carol, cctx := ts.client(t, "carol")
	carolTok, aliceTok := ts.token(t, "carol"), ts.token(t, "alice")
	const json_ = "application/json"

	want := func(step string, got, seq uint64) {
		t.Helper()
		if got != seq {
			t.Fatalf("%s: seq %d, want %d", step, got, seq)
		}
	}
	rest := func(step, method, url, token, body string) map[string]any {
		t.Helper()
		ct := ""
		if body != "" {
			ct = json_
		}
		code, _, out := restRaw(t, method, url, token, ct, body)
		if code != http.StatusOK {
			t.Fatalf("%s: %s %s: %d %v", step, method, url, code, out)
		}
		return out
	}
	restSeq := func(out map[string]any, field string) uint64 {
		inner, _ := out[field].(map[string]any)
		var seq uint64
		if s, ok := inner["seq"].(string); ok { // protojson writes uint64 as a string
			fmt.Sscan(s, &seq)
		}
		return seq
	}

	want("post", okSeq(t, alice.post("conv", "hello", "")), 1)
	want("reply", okSeq(t, bob.postReply("conv", "hi alice", 1, "")), 2)
	want("edit", okSeq(t, alice.edit("conv", 1, "hello, world", "")), 3)
	want("react", okSeq(t, bob.react("conv", 1, "👍", "")), 4)
	r, err := carol.AddReaction(cctx, &parleyv1.AddReactionRequest{Room: "conv", Seq: 1, Emoji: "👍"})
	if err != nil {
		t.Fatal(err)
	}
	want("unary react", r.GetReaction().GetSeq(), 5)
	want("REST react", restSeq(rest("PUT reaction", "PUT", reactionURL(base, "conv", 1, "🎉"), aliceTok, ""), "reaction"), 6)
	sent, err := carol.SendMessage(cctx, &parleyv1.SendMessageRequest{Room: "conv", Body: "carol here", ReplyToSeq: 2})
	if err != nil {
		t.Fatal(err)
	}
	want("unary reply", sent.GetMessage().GetSeq(), 7)
	if sent.GetMessage().GetReplyToSeq() != 2 {
		t.Fatalf("unary reply answered reply_to_seq %d", sent.GetMessage().GetReplyToSeq())
	}
	want("REST edit", restSeq(rest("PATCH", "PATCH", base+"/v1/rooms/conv/messages/7", carolTok, `{"body":"carol was here"}`), "edit"), 8)
	want("unreact", okSeq(t, bob.unreact("conv", 1, "👍", "")), 9)
	noop, err := carol.RemoveReaction(authCtx(t, ts.token(t, "bob")), &parleyv1.RemoveReactionRequest{Room: "conv", Seq: 1, Emoji: "👍"})
	if err != nil || noop.GetReaction() != nil {
		t.Fatalf("removing a reaction that is not there: %v, %v; want OK with no entry", noop, err)
	}
	want("unreact twice", okSeq(t, bob.unreact("conv", 1, "👍", "")), 0)
	want("post secret", okSeq(t, alice.post("conv", "secret text", "")), 10)
	ed, err := carol.EditMessage(authCtx(t, aliceTok), &parleyv1.EditMessageRequest{Room: "conv", Seq: 10, Body: "more secret"})
	if err != nil {
		t.Fatal(err)
	}
	want("unary edit", ed.GetEdit().GetSeq(), 11)
	want("react on secret", okSeq(t, bob.react("conv", 10, "😀", "")), 12)
	want("REST delete", restSeq(rest("DELETE", "DELETE", base+"/v1/rooms/conv/messages/10", aliceTok, ""), "delete"), 13)
	del, err := carol.DeleteMessage(authCtx(t, aliceTok), &parleyv1.DeleteMessageRequest{Room: "conv", Seq: 10})
	if err != nil || del.GetDelete() != nil {
		t.Fatalf("deleting a deleted message: %v, %v; want OK with no entry", del, err)
	}
	want("delete twice over Join", okSeq(t, alice.del("conv", 10, "")), 0)
	want("REST react 2", restSeq(rest("PUT reaction", "PUT", reactionURL(base, "conv", 2, "❤️"), carolTok, ""), "reaction"), 14)
	want("REST unreact", restSeq(rest("DELETE reaction", "DELETE", reactionURL(base, "conv", 2, "❤️"), carolTok, ""), "reaction"), 15)
	want("post after", okSeq(t, alice.post("conv", "after", "")), 16)
	const head = 16

	kinds := []string{"message", "message", "edit", "reaction_added", "reaction_added", "reaction_added", "message", "edit",
		"reaction_removed", "message", "edit", "reaction_added", "delete", "reaction_added", "reaction_removed", "message"}
	live := map[string][]*parleyv1.JoinResponse{"alice": alice.entries(1, head), "bob": bob.entries(1, head)}
	for who, evs := range live {
		var got []string
		for _, ev := range evs {
			got = append(got, entryKind(ev))
		}
		if !slices.Equal(got, kinds) {
			t.Fatalf("%s received kinds %v, want %v", who, got, kinds)
		}
	}
	for _, viewer := range []string{"alice", "bob", "carol"} {
		hist, h := ts.history(t, viewer, "conv")
		if h != head || len(hist) != 5 {
			t.Fatalf("history: head %d with %d messages, want %d with 5", h, len(hist), head)
		}
		sameView(t, "live entries as "+viewer, live["bob"], hist, viewer)
	}
	hist, _ := ts.history(t, "bob", "conv")
	for _, s := range hist {
		if bytes.Contains([]byte(s), []byte("secret")) {
			t.Fatalf("ListMessages still shows the deleted text: %s", s)
		}
	}

	// Resume from every position: the ring after the delete starts at 12
	// (10 and 11 carried the text), so some are served from the ring and
	// some from the store.
	for after := uint64(0); after <= head; after++ {
		js := openJoin(t, ts.dial(t), ts.token(t, "bob"))
		js.join("conv", ptr(after))
		evs := js.entries(after+1, int(head-after))
		if raw := marshalAll(t, evs); bytes.Contains(raw, []byte("secret")) {
			t.Fatalf("resume after %d: the deleted text is in the received bytes", after)
		}
		for i, ev := range evs {
			if k := entryKind(ev); k != kinds[int(after)+i] {
				t.Fatalf("resume after %d: seq %d is %s, want %s", after, entrySeq(ev), k, kinds[int(after)+i])
			}
		}
		if r := js.next(func(ev *parleyv1.JoinResponse) bool { return ev.GetReplayed() != nil }, func(ev *parleyv1.JoinResponse) {
			if isEntry(ev) {
				t.Fatalf("resume after %d: entry %d after the last", after, entrySeq(ev))
			}
		}); r.GetReplayed().GetThroughSeq() != head {
			t.Fatalf("resume after %d: replayed through %d", after, r.GetReplayed().GetThroughSeq())
		}
		if after == 0 {
			sameView(t, "a resume from 0", evs, hist, "bob")
		}
		js.closeAndWait()
	}

	// grpc-web's Subscribe carries the same frames.
	sub := grpcWebPost(t.Context(), t, ts.Addr(), "Subscribe", carolTok, &parleyv1.SubscribeRequest{Room: "conv", AfterSeq: ptr(uint64(0))})
	var webKinds []string
	for len(webKinds) < head {
		f, err := readGRPCWebFrame(sub.Body)
		if err != nil || f.trailer {
			t.Fatalf("grpc-web stream ended after %v: %v", webKinds, err)
		}
		var ev parleyv1.SubscribeResponse
		if err := proto.Unmarshal(f.data, &ev); err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(f.data, []byte("secret")) {
			t.Fatal("grpc-web: the deleted text was sent")
		}
		switch ev.GetEvent().(type) {
		case *parleyv1.SubscribeResponse_Joined, *parleyv1.SubscribeResponse_PresenceDiff, *parleyv1.SubscribeResponse_Typing:
		default:
			webKinds = append(webKinds, string(ev.ProtoReflect().WhichOneof(ev.ProtoReflect().Descriptor().Oneofs().ByName("event")).Name()))
		}
	}
	if !slices.Equal(webKinds, kinds) {
		t.Fatalf("grpc-web stream: %v, want %v", webKinds, kinds)
	}

	// The REST event stream carries every kind, once, in order, as NDJSON.
	resp := getStream(t, base+"/v1/rooms/conv/events?afterSeq=0", carolTok)
	lines := bufio.NewScanner(resp.Body)
	var got []string
	var raw []byte
	for len(got) < head && lines.Scan() {
		raw = append(raw, lines.Bytes()...)
		var line struct{ Result map[string]json.RawMessage }
		if err := json.Unmarshal(lines.Bytes(), &line); err != nil || len(line.Result) != 1 {
			t.Fatalf("line %q: %v", lines.Text(), err)
		}
		for k := range line.Result {
			switch k {
			case "message", "edit", "delete", "reactionAdded", "reactionRemoved":
				got = append(got, k)
			}
		}
	}
	restKinds := []string{"message", "message", "edit", "reactionAdded", "reactionAdded", "reactionAdded", "message", "edit",
		"reactionRemoved", "message", "edit", "reactionAdded", "delete", "reactionAdded", "reactionRemoved", "message"}
	if !slices.Equal(got, restKinds) {
		t.Fatalf("REST stream: %v, want %v", got, restKinds)
	}
	if bytes.Contains(raw, []byte("secret")) {
		t.Fatal("REST stream: the deleted text was sent")
	}
}
