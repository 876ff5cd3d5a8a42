package sqlstore

import (
	"testing"

	"github.com/parleychat/parley/server/internal/store"
)

func TestReactionPage(t *testing.T) {
	page := []store.MessageView{ // newest first, as a descending page reads
		{Message: store.Message{Seq: 9}},
		{Message: store.Message{Seq: 7}, Deleted: true},
		{Message: store.Message{Seq: 4}},
	}
	p, lo, hi := NewReactionPage(page)
	if lo != 4 || hi != 9 {
		t.Fatalf("span %d-%d, want 4-9", lo, hi)
	}
	p.Add(9, store.ReactionCount{Emoji: "👍", Count: 2})
	p.Add(9, store.ReactionCount{Emoji: "🎉", Count: 1})
	p.Add(7, store.ReactionCount{Emoji: "👍", Count: 1}) // deleted: shows none
	p.Add(5, store.ReactionCount{Emoji: "👍", Count: 1}) // not on the page
	p.MarkMine(9, "🎉")
	p.MarkMine(4, "👍") // no such count: nothing to mark
	if got := page[0].Reactions; len(got) != 2 || got[0].Emoji != "👍" || got[0].Mine || got[1].Emoji != "🎉" || !got[1].Mine {
		t.Fatalf("seq 9 reactions %+v", got)
	}
	if len(page[1].Reactions) != 0 || len(page[2].Reactions) != 0 {
		t.Fatalf("deleted or unreacted messages got reactions: %+v, %+v", page[1].Reactions, page[2].Reactions)
	}
}
