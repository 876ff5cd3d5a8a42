package sqlstore

import (
	"slices"
	"testing"

	"github.com/parleychat/parley/server/internal/store"
)

func TestReadCountsState(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    ReadCounts
		want store.ReadState
	}{
		{"no marker", ReadCounts{Head: 9, RoomMsgs: 6, OwnMsgs: 2, DeletedAfter: 1, MentionsAfter: 2},
			store.ReadState{HeadSeq: 9, Unread: 3, Mentions: 2}},
		{"marker", ReadCounts{Head: 9, RoomMsgs: 6, MarkerSeq: 5, MarkerOrd: 4, MarkerOwn: 1, OwnMsgs: 2, MentionsAfter: 1},
			store.ReadState{LastReadSeq: 5, HeadSeq: 9, Unread: 1, Mentions: 1}},
		// Retention took seqs up to ord 5 and one of the user's messages;
		// the marker below counts only what is stored.
		{"marker below pruned", ReadCounts{Head: 20, RoomMsgs: 10, PrunedOrd: 5, MarkerSeq: 2, MarkerOrd: 2, OwnMsgs: 3, OwnPruned: 1},
			store.ReadState{LastReadSeq: 2, HeadSeq: 20, Unread: 3}},
		{"direct", ReadCounts{Direct: true, RoomMsgs: 4, OwnMsgs: 1, MentionsAfter: 0},
			store.ReadState{Unread: 3, Mentions: 3}},
		{"damaged counters clamp", ReadCounts{RoomMsgs: 1, OwnMsgs: 3, MentionsAfter: 4},
			store.ReadState{}},
	} {
		if got := tc.c.State(); got != tc.want {
			t.Errorf("%s: State() = %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

func TestMentions(t *testing.T) {
	if EncodeMentions(nil) != "" || EncodeMentions([]string{}) != "" {
		t.Error("no mentions must encode as the empty text")
	}
	in := []string{"bob", `q"uote`, "ünï"}
	got, err := DecodeMentions(EncodeMentions(in))
	if err != nil || !slices.Equal(got, in) {
		t.Errorf("round trip = %q (%v), want %q", got, err, in)
	}
	if got, err := DecodeMentions(""); got != nil || err != nil {
		t.Errorf(`DecodeMentions("") = %q, %v`, got, err)
	}
	if _, err := DecodeMentions("[oops"); err == nil {
		t.Error("DecodeMentions of broken JSON succeeded")
	}
	if got := MentionedUsers("ann", []string{"bob", "ann", "bob", "cat"}); !slices.Equal(got, []string{"bob", "cat"}) {
		t.Errorf("MentionedUsers = %q, want bob, cat", got)
	}
}

func TestMarkerBatch(t *testing.T) {
	ms := []store.ReadMarker{{Room: "a", User: "u", Seq: 3}, {Room: "b", User: "u", Seq: 1}, {Room: "a", User: "u", Seq: 7}, {Room: "a", User: "v", Seq: 2}}
	b := NewMarkerBatch(ms)
	if want := []MarkerKey{{"a", "u"}, {"b", "u"}, {"a", "v"}}; !slices.Equal(b.Keys, want) || !slices.Equal(b.Seqs, []uint64{7, 1, 2}) {
		t.Fatalf("batch %v %v", b.Keys, b.Seqs)
	}
	got := Answer(ms, map[MarkerKey]store.ReadMarker{{"a", "u"}: {Room: "a", User: "u", Seq: 7}, {"a", "v"}: {Room: "a", User: "v", Seq: 2}})
	if len(got) != 3 || got[0].Seq != 7 || got[1].Seq != 7 || got[2].User != "v" {
		t.Errorf("Answer = %+v: want a/u twice at 7 and a/v, without b (unknown room)", got)
	}
}
