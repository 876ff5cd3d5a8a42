package store_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/parleychat/parley/server/internal/store"
)

// An entry travels as JSON with snake_case names; a message leaves out
// the fields only other kinds use, and JSON without a kind (as sent
// before kinds existed) reads as a message.
func TestMessageJSON(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	msg := store.Message{Room: "r", Seq: 7, Sender: "alice", Body: "hi", SentAt: at, ClientMsgID: "c1"}
	b, err := json.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"room":"r","seq":7,"sender":"alice","body":"hi","sent_at":"2026-01-02T03:04:05.000000006Z","client_msg_id":"c1"}`; string(b) != want {
		t.Errorf("message JSON %s, want %s", b, want)
	}
	react := store.Message{Room: "r", Seq: 8, Kind: store.KindReactionAdd, Sender: "bob", SentAt: at, TargetSeq: 7, Emoji: "👍"}
	b, err = json.Marshal(react)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"kind":"reaction_add"`) || !strings.Contains(string(b), `"target_seq":7`) || !strings.Contains(string(b), `"emoji":"👍"`) {
		t.Errorf("reaction JSON %s", b)
	}
	var back store.Message
	if err := json.Unmarshal(b, &back); err != nil || !reflect.DeepEqual(back, react) {
		t.Errorf("round trip = %+v (%v), want %+v", back, err, react)
	}
	var old store.Message
	if err := json.Unmarshal([]byte(`{"room":"r","seq":1,"sender":"a","body":"x"}`), &old); err != nil || old.Kind != store.KindMessage {
		t.Errorf("JSON without a kind = %+v (%v)", old, err)
	}
	if err := json.Unmarshal([]byte(`{"kind":"poll"}`), &old); err == nil {
		t.Error("an unknown kind decoded without error")
	}
	if _, err := json.Marshal(store.Message{Kind: 99}); err == nil {
		t.Error("an unknown kind encoded without error")
	}
}

func TestKindText(t *testing.T) {
	for k := store.KindMessage; k <= store.KindReactionRemove; k++ {
		text, err := k.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		var back store.Kind
		if err := back.UnmarshalText(text); err != nil || back != k || k.String() != string(text) {
			t.Errorf("%d: %q -> %d (%v)", k, text, back, err)
		}
	}
	if store.Kind(5).Valid() || store.Kind(5).String() != "kind(5)" {
		t.Errorf("kind 5: valid %v, %q", store.Kind(5).Valid(), store.Kind(5).String())
	}
}

func TestSnippet(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"short", "short"},
		{strings.Repeat("é", store.SnippetRunes), strings.Repeat("é", store.SnippetRunes)},
		{strings.Repeat("é", store.SnippetRunes+1), strings.Repeat("é", store.SnippetRunes)},
	} {
		if got := store.Snippet(tc.in); got != tc.want {
			t.Errorf("Snippet(%d runes) has %d bytes, want %d", len([]rune(tc.in)), len(got), len(tc.want))
		}
	}
}

// Check turns away malformed entries before they reach a store.
func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		m  store.NewMessage
		ok bool
	}{
		{store.NewMessage{Body: "hi"}, true},
		{store.NewMessage{Body: "re", ReplyToSeq: 3}, true},
		{store.NewMessage{Kind: store.KindEdit, TargetSeq: 1, Body: "x"}, true},
		{store.NewMessage{Kind: store.KindDelete, TargetSeq: 1}, true},
		{store.NewMessage{Kind: store.KindReactionAdd, TargetSeq: 1, Emoji: "👍"}, true},
		{store.NewMessage{Kind: store.KindReactionRemove, TargetSeq: 1, Emoji: "👍"}, true},
		{store.NewMessage{Kind: 7, TargetSeq: 1}, false},
		{store.NewMessage{Body: "x", TargetSeq: 1}, false},
		{store.NewMessage{Body: "x", Emoji: "👍"}, false},
		{store.NewMessage{Kind: store.KindEdit, Body: "x"}, false},
		{store.NewMessage{Kind: store.KindEdit, TargetSeq: 1, Body: "x", ReplyToSeq: 1}, false},
		{store.NewMessage{Kind: store.KindDelete, TargetSeq: 1, Body: "x"}, false},
		{store.NewMessage{Kind: store.KindReactionAdd, TargetSeq: 1}, false},
		{store.NewMessage{Kind: store.KindReactionAdd, TargetSeq: 1, Emoji: "👍", Body: "x"}, false},
	} {
		err := tc.m.Check()
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, store.ErrInvalidEntry)) {
			t.Errorf("Check(%+v) = %v, want ok=%v", tc.m, err, tc.ok)
		}
	}
}
