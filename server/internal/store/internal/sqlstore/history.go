package sqlstore

import "github.com/parleychat/parley/server/internal/store"

// ReactionPage files the reactions read for a page of history under the
// page's messages, by seq.
type ReactionPage map[uint64]*store.MessageView

// NewReactionPage indexes a non-empty page of history and returns the
// lowest and highest seq of it, whichever way it is ordered: the range
// its reactions are read from.
func NewReactionPage(page []store.MessageView) (p ReactionPage, lo, hi uint64) {
	p = make(ReactionPage, len(page))
	for i := range page {
		p[page[i].Seq] = &page[i]
	}
	lo, hi = page[0].Seq, page[len(page)-1].Seq
	return p, min(lo, hi), max(lo, hi)
}

// Add appends one emoji's count to the message target, in the order the
// counts are read; a deleted message shows none.
func (p ReactionPage) Add(target uint64, c store.ReactionCount) {
	if v := p[target]; v != nil && !v.Deleted {
		v.Reactions = append(v.Reactions, c)
	}
}

// MarkMine sets Mine on the message target's count of emoji: the viewer
// reacted with it.
func (p ReactionPage) MarkMine(target uint64, emoji string) {
	if v := p[target]; v != nil {
		for i := range v.Reactions {
			if v.Reactions[i].Emoji == emoji {
				v.Reactions[i].Mine = true
			}
		}
	}
}
