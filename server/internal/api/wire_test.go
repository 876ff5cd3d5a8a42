package api

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	parleyv1 "github.com/parleychat/parley/gen/parley/v1"
	"github.com/parleychat/parley/server/internal/hub"
	"github.com/parleychat/parley/server/internal/store"
)

// A send's reply built from the room's encoded event is, byte for byte,
// the reply marshalled from the message converted again; without an event
// (or with one that is not a message) the reply is made the old way.
func TestSentReplyReusesTheEvent(t *testing.T) {
	msg := store.Message{Room: "lobby", Seq: 4242, Sender: "alice", Body: strings.Repeat("é", 300),
		SentAt: time.Unix(1765000000, 123456789), ClientMsgID: "0188f1c2a3b4c5d6-7-42"}
	event, err := EncodeEvent(hub.Event{Kind: hub.EventMessage, Room: msg.Room, Message: msg})
	if err != nil {
		t.Fatal(err)
	}
	want, err := proto.Marshal(&parleyv1.JoinResponse{Event: &parleyv1.JoinResponse_Reply{Reply: &parleyv1.Reply{
		Ref: "r1", Room: "lobby", Message: messageToProto(msg)}}})
	if err != nil {
		t.Fatal(err)
	}
	typing, err := EncodeEvent(hub.Event{Kind: hub.EventTyping, Room: "lobby", User: "bob", Active: true})
	if err != nil {
		t.Fatal(err)
	}
	for name, ev := range map[string][]byte{"event": event, "no event": nil, "not a message": typing, "cut short": event[:len(event)-1]} {
		got, err := sentReply(&parleyv1.Reply{Ref: "r1", Room: "lobby"}, hub.Sent{Message: msg, Event: ev})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%s: reply\n%x\nwant\n%x", name, got, want)
		}
	}
}

// BenchmarkSentReply is the reply to a stored send: from the room's
// encoded event ("event") or converted and marshalled again ("convert").
func BenchmarkSentReply(b *testing.B) {
	msg := store.Message{Room: "lobby", Seq: 4242, Sender: "alice", Body: strings.Repeat("x", 100),
		SentAt: time.Now(), ClientMsgID: "0188f1c2a3b4c5d6-7-42"}
	event, err := EncodeEvent(hub.Event{Kind: hub.EventMessage, Room: msg.Room, Message: msg})
	if err != nil {
		b.Fatal(err)
	}
	for name, ev := range map[string][]byte{"event": event, "convert": nil} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := sentReply(&parleyv1.Reply{Ref: "r1", Room: "lobby"}, hub.Sent{Message: msg, Event: ev}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// Every kind of log entry is encoded once into the field of its kind, and
// the same bytes decode as that field of a SubscribeResponse too, with
// every field of the entry.
func TestEncodeEveryEntryKind(t *testing.T) {
	at := time.Unix(1765000000, 5)
	base := store.Message{Room: "lobby", Seq: 7, Sender: "alice", SentAt: at, ClientMsgID: "k", TargetSeq: 3}
	with := func(f func(*store.Message)) store.Message { m := base; f(&m); return m }
	for _, tc := range []struct {
		m    store.Message
		want proto.Message // the SubscribeResponse the bytes must decode to
	}{
		{with(func(m *store.Message) { m.TargetSeq, m.Body, m.ReplyToSeq = 0, "hi", 2 }), &parleyv1.SubscribeResponse{Event: &parleyv1.SubscribeResponse_Message{Message: &parleyv1.Message{
			Room: "lobby", Seq: 7, Sender: "alice", Body: "hi", SentAt: timestamppb.New(at), ClientMsgId: "k", ReplyToSeq: 2}}}},
		{with(func(m *store.Message) { m.Kind, m.Body = store.KindEdit, "fixed" }), &parleyv1.SubscribeResponse{Event: &parleyv1.SubscribeResponse_Edit{Edit: &parleyv1.MessageEdit{
			Room: "lobby", Seq: 7, Sender: "alice", SentAt: timestamppb.New(at), ClientMsgId: "k", TargetSeq: 3, Body: "fixed"}}}},
		{with(func(m *store.Message) { m.Kind = store.KindDelete }), &parleyv1.SubscribeResponse{Event: &parleyv1.SubscribeResponse_Delete{Delete: &parleyv1.MessageDelete{
			Room: "lobby", Seq: 7, Sender: "alice", SentAt: timestamppb.New(at), ClientMsgId: "k", TargetSeq: 3}}}},
		{with(func(m *store.Message) { m.Kind, m.Emoji = store.KindReactionAdd, "👍" }), &parleyv1.SubscribeResponse{Event: &parleyv1.SubscribeResponse_ReactionAdded{ReactionAdded: &parleyv1.Reaction{
			Room: "lobby", Seq: 7, Sender: "alice", SentAt: timestamppb.New(at), ClientMsgId: "k", TargetSeq: 3, Emoji: "👍"}}}},
		{with(func(m *store.Message) { m.Kind, m.Emoji = store.KindReactionRemove, "👍" }), &parleyv1.SubscribeResponse{Event: &parleyv1.SubscribeResponse_ReactionRemoved{ReactionRemoved: &parleyv1.Reaction{
			Room: "lobby", Seq: 7, Sender: "alice", SentAt: timestamppb.New(at), ClientMsgId: "k", TargetSeq: 3, Emoji: "👍"}}}},
	} {
		data, err := EncodeEvent(hub.Event{Kind: hub.EventMessage, Room: "lobby", Message: tc.m})
		if err != nil {
			t.Fatalf("%v: %v", tc.m.Kind, err)
		}
		var got parleyv1.SubscribeResponse
		if err := proto.Unmarshal(data, &got); err != nil {
			t.Fatalf("%v: %v", tc.m.Kind, err)
		}
		if !proto.Equal(&got, tc.want) {
			t.Errorf("%v: decoded %v, want %v", tc.m.Kind, &got, tc.want)
		}
	}
}
