package store

import "fmt"

// Target is what a store knows of the message that an entry names, as of
// the entry's place in the log: its target, or for a reply its parent.
type Target struct {
	// Found reports that the room holds an entry of kind message with that
	// seq (not pruned).
	Found   bool
	Sender  string
	Deleted bool
}

// ReactionState is what a store knows of a target's reactions, for a
// reaction entry.
type ReactionState struct {
	// Mine reports that the entry's sender has reacted with its emoji.
	Mine bool
	// Present reports that someone has reacted with its emoji.
	Present bool
	// Distinct is how many distinct emoji the target carries.
	Distinct int
}

// Check reports ErrInvalidEntry if m's kind is unknown or m lacks, or
// sets, a field its kind does not use. Every store calls it before
// queueing m.
func (m NewMessage) Check() error {
	bad := func(what string) error { return fmt.Errorf("%s entry %s: %w", m.Kind, what, ErrInvalidEntry) }
	switch {
	case !m.Kind.Valid():
		return fmt.Errorf("entry kind %d: %w", uint8(m.Kind), ErrInvalidEntry)
	case m.Kind == KindMessage && (m.TargetSeq != 0 || m.Emoji != ""):
		return bad("has a target or emoji")
	case m.Kind != KindMessage && m.TargetSeq == 0:
		return bad("has no target seq")
	case m.Kind != KindMessage && m.ReplyToSeq != 0:
		return bad("has a reply_to_seq")
	case (m.Kind == KindReactionAdd || m.Kind == KindReactionRemove) != (m.Emoji != ""):
		return bad("must carry an emoji if and only if it is a reaction")
	case (m.Kind == KindDelete || m.Kind == KindReactionAdd || m.Kind == KindReactionRemove) && m.Body != "":
		return bad("has a body")
	}
	return nil
}

// Decide applies the rules of the log to m, an entry that Check accepted,
// in room r: t is m's target (for a message, its reply parent; ignored
// for a message that replies to nothing), rs the target's reactions (for
// a reaction). It returns the rule m breaks, or noop if storing m would
// change nothing (see Store.Append). Each store gathers t and rs inside
// the transaction that stores m, so the decision and the write are one.
func Decide(m NewMessage, r Room, t Target, rs ReactionState) (noop bool, err error) {
	if m.Kind == KindMessage {
		if m.ReplyToSeq != 0 && !t.Found {
			return false, fmt.Errorf("reply to seq %d of room %q: %w", m.ReplyToSeq, m.Room, ErrBadReply)
		}
		return false, nil
	}
	if !t.Found {
		return false, fmt.Errorf("%s of seq %d in room %q: %w", m.Kind, m.TargetSeq, m.Room, ErrTargetNotFound)
	}
	switch m.Kind {
	case KindDelete:
		if m.Sender != t.Sender && (r.Visibility != Private || m.Sender != r.CreatedBy) {
			return false, fmt.Errorf("delete seq %d of room %q: %w: sent by someone else", m.TargetSeq, m.Room, ErrNotAllowed)
		}
		return t.Deleted, nil
	case KindEdit:
		if t.Deleted {
			return false, fmt.Errorf("edit seq %d of room %q: %w", m.TargetSeq, m.Room, ErrTargetDeleted)
		}
		if m.Sender != t.Sender {
			return false, fmt.Errorf("edit seq %d of room %q: %w: only its sender edits a message", m.TargetSeq, m.Room, ErrNotAllowed)
		}
		return false, nil
	}
	if t.Deleted {
		return false, fmt.Errorf("%s on seq %d of room %q: %w", m.Kind, m.TargetSeq, m.Room, ErrTargetDeleted)
	}
	if m.Kind == KindReactionRemove {
		return !rs.Mine, nil
	}
	if rs.Mine {
		return true, nil
	}
	if !rs.Present && rs.Distinct >= MaxReactionsPerMessage {
		return false, fmt.Errorf("reaction on seq %d of room %q: %w (%d)", m.TargetSeq, m.Room, ErrTooManyReactions, MaxReactionsPerMessage)
	}
	return false, nil
}

// Noop returns the answer to an entry that changes nothing: the entry
// asked for, with Seq 0 and no time.
func (m NewMessage) Noop() Message {
	return Message{Room: m.Room, Kind: m.Kind, Sender: m.Sender, Body: m.Body, ClientMsgID: m.ClientMsgID,
		TargetSeq: m.TargetSeq, ReplyToSeq: m.ReplyToSeq, Emoji: m.Emoji}
}
