package hub

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/parleychat/parley/server/internal/store"
)

// The JSON form of an event is what nodes exchange: its names must not
// change without a new EventVersion.
func TestEventJSONIsStable(t *testing.T) {
	for _, tc := range []struct {
		ev   Event
		want string
	}{
		{Event{Version: 1, Kind: EventTyping, Node: "a", Room: "lobby", User: "bob", Active: true},
			`{"v":1,"k":"typing","n":"a","r":"lobby","u":"bob","a":true}`},
		{Event{Version: 1, Kind: EventRemoved, Node: "a", Room: "team", User: "eve"},
			`{"v":1,"k":"removed","n":"a","r":"team","u":"eve"}`},
		{Event{Version: 1, Kind: EventReplayed, Room: "lobby", ThroughSeq: 7},
			`{"v":1,"k":"replayed","r":"lobby","through":7}`},
		{Event{Version: 1, Kind: EventReadMarker, Node: "a", Room: "lobby", User: "bob",
			Read: &ReadMark{Seq: 7, ReadAt: time.Date(2026, 12, 6, 4, 0, 0, 0, time.UTC), Unread: 2, Mentions: 1, HeadSeq: 9}},
			`{"v":1,"k":"read_marker","n":"a","r":"lobby","u":"bob","rd":{"s":7,"t":"2026-12-06T04:00:00Z","un":2,"mn":1,"h":9}}`},
		{Event{Version: 1, Kind: EventReceipt, Node: "a", Room: "team", User: "ann", Read: &ReadMark{Seq: 3}},
			`{"v":1,"k":"receipt","n":"a","r":"team","u":"ann","rd":{"s":3}}`},
		{Event{Version: 1, Kind: EventRoomVisible, Node: "a", Room: "dm:ann:bob", User: "bob"},
			`{"v":1,"k":"room_visible","n":"a","r":"dm:ann:bob","u":"bob"}`},
		{Event{Version: 1, Kind: EventRoomVisible, Node: "a", Room: "news"},
			`{"v":1,"k":"room_visible","n":"a","r":"news"}`},
	} {
		got, err := json.Marshal(tc.ev)
		if err != nil {
			t.Fatalf("marshal %v: %v", tc.ev.Kind, err)
		}
		if string(got) != tc.want {
			t.Errorf("%v: got %s, want %s", tc.ev.Kind, got, tc.want)
		}
	}
}

func TestEventJSONRoundTrip(t *testing.T) {
	at := time.Date(2026, 12, 6, 4, 0, 0, 0, time.UTC)
	for _, ev := range []Event{
		{Version: 1, Kind: EventMessage, Node: "a", Room: "lobby",
			Message: store.Message{Room: "lobby", Seq: 3, Sender: "bob", Body: "hi", SentAt: at, ClientMsgID: "c1"}},
		{Version: 1, Kind: EventMessage, Node: "a", Room: "lobby",
			Message: store.Message{Room: "lobby", Seq: 4, Sender: "bob", Body: "re", SentAt: at, ReplyToSeq: 3}},
		{Version: 1, Kind: EventMessage, Node: "a", Room: "lobby",
			Message: store.Message{Room: "lobby", Seq: 5, Kind: store.KindEdit, Sender: "bob", Body: "hi!", SentAt: at, ClientMsgID: "c2", TargetSeq: 3}},
		{Version: 1, Kind: EventMessage, Node: "a", Room: "lobby",
			Message: store.Message{Room: "lobby", Seq: 6, Kind: store.KindDelete, Sender: "bob", SentAt: at, TargetSeq: 4}},
		{Version: 1, Kind: EventMessage, Node: "a", Room: "lobby",
			Message: store.Message{Room: "lobby", Seq: 7, Kind: store.KindReactionAdd, Sender: "ann", SentAt: at, TargetSeq: 3, Emoji: "👍"}},
		{Version: 1, Kind: EventMessage, Node: "a", Room: "lobby",
			Message: store.Message{Room: "lobby", Seq: 8, Kind: store.KindReactionRemove, Sender: "ann", SentAt: at, TargetSeq: 3, Emoji: "👍"}},
		{Version: 1, Kind: EventPresenceDiff, Room: "lobby",
			Joins: []Presence{{User: "bob", Metas: []Meta{{ConnID: "x", OnlineAt: at, Client: "cli", Node: "a"}}}}},
		{Version: 1, Kind: EventJoined, Room: "lobby", HeadSeq: 9, Presence: []Presence{{User: "ann", Metas: []Meta{{ConnID: "y", OnlineAt: at}}}}},
	} {
		data, err := json.Marshal(ev)
		if err != nil {
			t.Fatalf("marshal %v: %v", ev.Kind, err)
		}
		var back Event
		if err := json.Unmarshal(data, &back); err != nil {
			t.Fatalf("unmarshal %s: %v", data, err)
		}
		if !reflect.DeepEqual(back.Message, ev.Message) {
			t.Errorf("%s: entry %+v came back as %+v", data, ev.Message, back.Message)
		}
		again, _ := json.Marshal(back)
		if string(again) != string(data) {
			t.Errorf("%v: round trip changed %s into %s", ev.Kind, data, again)
		}
	}
}

func TestUnknownEventKindIsAnError(t *testing.T) {
	var ev Event
	if err := json.Unmarshal([]byte(`{"v":1,"k":"msg","r":"lobby"}`), &ev); err == nil {
		t.Fatalf("an unknown kind decoded as %v", ev.Kind)
	}
	if _, err := json.Marshal(Event{Kind: 0}); err == nil {
		t.Fatal("an event without a kind encoded")
	}
	for k := EventJoined; k <= EventRoomVisible; k++ {
		var back EventKind
		text, err := k.MarshalText()
		if err != nil || back.UnmarshalText(text) != nil || back != k {
			t.Errorf("kind %d: text %q, err %v, back %d", k, text, err, back)
		}
	}
}
