package sqlstore

import (
	"encoding/json"
	"fmt"
	"slices"

	"github.com/parleychat/parley/server/internal/store"
)

// Read state without a scan of the log. Both SQL stores keep, as they
// append:
//
//   - on every entry's row its ord: how many messages (entries of kind
//     message) the room's log holds up to and including it; on a
//     message's row its sord: how many messages its sender appended to
//     the room up to and including it;
//   - on the room's row msgs, how many messages were ever appended to it,
//     and pruned_ord, the ord of the newest entry retention deleted;
//   - per (room, sender) in room_senders: msgs, how many messages the
//     sender appended there, last_seq, the seq of the newest, and pruned,
//     how many of them retention deleted (PostgreSQL upserts the rows in
//     every batch; SQLite's writer counts in memory and writes a room's
//     rows about once a second, and its readers add what it has not
//     written yet: sqlite/senders.go);
//   - in mentions a row (room, seq, user) for each user that a message's
//     current text mentions, but for its sender: an edit replaces the
//     message's rows, a delete and retention remove them;
//   - a partial index over the deleted messages (deletions are rare).
//
// A read marker's row holds, besides its seq, the ord at that seq and how
// many of the user's own messages lie at or before it, worked out when the
// marker moves: the ord of the newest entry at or before the seq, and the
// user's msgs if their last_seq is not after it, else one less than the
// sord of their first message after it (a walk from the seq to that
// message, the one cost that grows: with how far the user's next message
// is). The log up to a seq never changes (but for retention, which only
// ever removes a prefix), so neither do those two numbers.
// ReadCounts turns the numbers into a store.ReadState: each term is a
// lookup by primary key, and the only ranges counted are the deleted
// messages and the user's mentions after the marker.

// ReadCounts is what a store reads, for one user and one room, to work
// out the user's read state there.
type ReadCounts struct {
	Direct bool
	Head   uint64
	// RoomMsgs and PrunedOrd are the room's msgs and pruned_ord.
	RoomMsgs, PrunedOrd int64
	// MarkerSeq, MarkerOrd and MarkerOwn are the user's marker (all 0 if
	// never set): its seq, the ord at it and the user's own messages at
	// or before it.
	MarkerSeq            uint64
	MarkerOrd, MarkerOwn int64
	// OwnMsgs and OwnPruned are the user's row of room_senders (0 if
	// none); in SQLite OwnMsgs adds the user's messages not written there
	// yet.
	OwnMsgs, OwnPruned int64
	// DeletedAfter counts the deleted messages after the marker that are
	// not the user's; MentionsAfter the user's mention rows after it.
	DeletedAfter, MentionsAfter int64
}

// State returns the read state that c describes. Messages up to the
// newest pruned one count as read, whatever the marker: they are gone.
// The counts cannot go below zero, even on a database damaged by hand.
func (c ReadCounts) State() store.ReadState {
	all := c.RoomMsgs - max(c.MarkerOrd, c.PrunedOrd)
	own := c.OwnMsgs - max(c.MarkerOwn, c.OwnPruned)
	rs := store.ReadState{LastReadSeq: c.MarkerSeq, HeadSeq: c.Head}
	rs.Unread = int(max(all-own-c.DeletedAfter, 0))
	rs.Mentions = int(min(max(c.MentionsAfter, 0), int64(rs.Unread)))
	if c.Direct {
		rs.Mentions = rs.Unread
	}
	return rs
}

// EncodeMentions returns the text that a row keeps of an entry's
// mentions: a JSON array, or "" for none (most entries).
func EncodeMentions(users []string) string {
	if len(users) == 0 {
		return ""
	}
	b, err := json.Marshal(users)
	if err != nil { // a []string always encodes
		panic(fmt.Sprintf("sqlstore: encode mentions: %v", err))
	}
	return string(b)
}

// DecodeMentions reads what EncodeMentions wrote; "" is none (nil).
func DecodeMentions(text string) ([]string, error) {
	if text == "" {
		return nil, nil
	}
	var users []string
	if err := json.Unmarshal([]byte(text), &users); err != nil {
		return nil, fmt.Errorf("mentions %.40q: %w", text, err)
	}
	return users, nil
}

// MentionedUsers returns the users that need a row in mentions for a
// text by sender mentioning users: each once, the sender never (their own
// messages are never unread to them).
func MentionedUsers(sender string, users []string) []string {
	var out []string
	for _, u := range users {
		if u != sender && !slices.Contains(out, u) {
			out = append(out, u)
		}
	}
	return out
}

// MarkerKey names a read marker.
type MarkerKey struct{ Room, User string }

// MarkerBatch is a SetReadMarkers call's markers, each (room, user) once
// with the highest seq asked for it.
type MarkerBatch struct {
	Keys []MarkerKey
	Seqs []uint64
	at   map[MarkerKey]int
}

// NewMarkerBatch collects ms: a store writes each marker once, and a
// statement that upserts a row twice fails on PostgreSQL.
func NewMarkerBatch(ms []store.ReadMarker) *MarkerBatch {
	b := &MarkerBatch{at: make(map[MarkerKey]int, len(ms))}
	for _, m := range ms {
		k := MarkerKey{m.Room, m.User}
		if i, ok := b.at[k]; ok {
			b.Seqs[i] = max(b.Seqs[i], m.Seq)
			continue
		}
		b.at[k] = len(b.Keys)
		b.Keys, b.Seqs = append(b.Keys, k), append(b.Seqs, m.Seq)
	}
	return b
}

// Answer returns SetReadMarkers' answer to ms: the markers as they are
// after the call (got, by key), in the order given, without those of
// unknown rooms (not in got). A marker given twice is answered twice,
// both times as it is after the call.
func Answer(ms []store.ReadMarker, got map[MarkerKey]store.ReadMarker) []store.ReadMarker {
	out := make([]store.ReadMarker, 0, len(ms))
	for _, m := range ms {
		if r, ok := got[MarkerKey{m.Room, m.User}]; ok {
			out = append(out, r)
		}
	}
	return out
}
