package store

import (
	"fmt"
	"time"
)

// Kind says what a log entry is.
type Kind uint8

// Kinds of log entries. The zero value is a message, so that entries
// stored or sent before kinds existed read as messages.
const (
	KindMessage Kind = iota
	KindEdit
	KindDelete
	KindReactionAdd
	KindReactionRemove
)

var kindNames = [...]string{"message", "edit", "delete", "reaction_add", "reaction_remove"}

// Valid reports whether k is one of the known kinds.
func (k Kind) Valid() bool { return int(k) < len(kindNames) }

// String returns k's name as in MarshalText, or "kind(N)" for an unknown kind.
func (k Kind) String() string {
	if k.Valid() {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// MarshalText implements encoding.TextMarshaler: "message", "edit",
// "delete", "reaction_add" or "reaction_remove". An unknown kind is an error.
func (k Kind) MarshalText() ([]byte, error) {
	if !k.Valid() {
		return nil, fmt.Errorf("store: unknown entry kind %d", uint8(k))
	}
	return []byte(kindNames[k]), nil
}

// UnmarshalText implements encoding.TextUnmarshaler; unknown text is an error.
func (k *Kind) UnmarshalText(b []byte) error {
	for i, name := range kindNames {
		if string(b) == name {
			*k = Kind(i)
			return nil
		}
	}
	return fmt.Errorf("store: unknown entry kind %q", b)
}

// Limits of the history view and of reactions, the same in every store.
const (
	// MaxReactionsPerMessage is the most distinct emoji one message may
	// carry; a reaction with a further one is ErrTooManyReactions.
	MaxReactionsPerMessage = 20
	// ReactionUsers is how many of an emoji's first reactors a
	// ReactionCount names.
	ReactionUsers = 3
	// SnippetRunes is the length of a reply's quote of its parent.
	SnippetRunes = 100
)

// MessageView is a message of a room's history as it is now: its
// current body (that of the latest edit), when it was last edited, whether
// it was deleted, its reactions and what it replies to. Message holds the
// message entry itself with Body replaced by the current body.
type MessageView struct {
	Message
	// EditedAt is when the latest edit was stored; zero if never edited.
	EditedAt time.Time `json:"edited_at,omitzero"`
	// Deleted marks a tombstone: Body is empty and Reactions nil.
	Deleted bool `json:"deleted,omitempty"`
	// Reactions are the message's emoji in the order each first appeared
	// (the seq of the reaction that added it while it had none).
	Reactions []ReactionCount `json:"reactions,omitempty"`
	// ReplyTo is the message this one replies to, nil if none.
	ReplyTo *ReplyRef `json:"reply_to,omitempty"`
}

// ReactionCount is one emoji on a message as a viewer sees it.
type ReactionCount struct {
	Emoji string `json:"emoji"`
	Count int    `json:"count"`
	// Mine reports whether the viewer is one of those who reacted.
	Mine bool `json:"mine,omitempty"`
	// Users are the first ReactionUsers users who reacted, oldest first.
	Users []string `json:"users"`
}

// ReplyRef is the parent of a reply as it is now.
type ReplyRef struct {
	Seq uint64 `json:"seq"`
	// Sender is empty when the parent is no longer stored (pruned).
	Sender string `json:"sender"`
	// Snippet is the first SnippetRunes runes of the parent's current
	// body; empty if it was deleted or pruned.
	Snippet string `json:"snippet"`
	Deleted bool   `json:"deleted,omitempty"`
}

// Snippet returns the first SnippetRunes runes of body.
func Snippet(body string) string {
	n := 0
	for i := range body {
		if n == SnippetRunes {
			return body[:i]
		}
		n++
	}
	return body
}
