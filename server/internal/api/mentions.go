package api

import (
	"context"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/parleychat/parley/server/internal/auth"
	"github.com/parleychat/parley/server/internal/store"
)

// maxMentions bounds the users one text mentions: a message naming more
// mentions the first maxMentions of them.
const maxMentions = 50

// A mention is '@' and a user id (see auth.ValidUser) in a message's or
// an edit's text. The server parses them, so every client shows the same
// ones and counts need no parsing:
//
//   - it starts at the beginning of the text or after a character that
//     cannot end a name or an e-mail address's local part: not a letter,
//     digit or mark of a script written with spaces between words, and
//     none of ._-+=%&~/@ (so bob@example.com and example.com/@bob are no
//     mentions, while "(@bob", "«@bob" and "会議@bob" are);
//   - it runs over the characters a user id may hold, less any trailing
//     dots (sentence punctuation: "ask @bob." mentions bob, and a user
//     whose id ends in '.' cannot be mentioned);
//   - it ends there only if the next character could not continue a word
//     either, and is not another '@' ("@bobé" and "@bob@example.com" are
//     no mentions; "@bob," "@bob's" "@bob)" and "@bobさん" are).
//
// Each user counts once, in the order of first mention; ids are compared
// as they are (user ids are case-sensitive).
func parseMentions(text string) []string {
	var out []string
	for i := 0; i < len(text) && len(out) < maxMentions; {
		at := strings.IndexByte(text[i:], '@')
		if at < 0 {
			break
		}
		at += i
		i = at + 1
		if !mentionMayStart(text[:at]) {
			continue
		}
		end := i
		for end < len(text) && isUserIDByte(text[end]) {
			end++
		}
		id := strings.TrimRight(text[i:end], ".")
		if end == i || !mentionMayEnd(text[i+len(id):]) || !auth.ValidUser(id) {
			continue
		}
		i = end
		if !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	return out
}

// isUserIDByte reports whether b may be part of a user id.
func isUserIDByte(b byte) bool {
	return 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || b == '.' || b == '_' || b == '-'
}

// mentionMayStart reports whether a mention may start after before.
func mentionMayStart(before string) bool {
	r, n := utf8.DecodeLastRuneInString(before)
	if n == 0 {
		return true
	}
	return !isWordRune(r) && !strings.ContainsRune("._-+=%&~/@", r)
}

// mentionMayEnd reports whether a mention may end before after.
func mentionMayEnd(after string) bool {
	r, n := utf8.DecodeRuneInString(after)
	return n == 0 || (!isWordRune(r) && r != '@')
}

// spacelessScripts are written without spaces between words, so a name
// next to one of their letters is still a word of its own.
var spacelessScripts = []*unicode.RangeTable{unicode.Han, unicode.Hiragana, unicode.Katakana, unicode.Thai, unicode.Lao, unicode.Khmer, unicode.Myanmar}

// isWordRune reports whether r continues a word next to a mention.
func isWordRune(r rune) bool {
	if !unicode.IsLetter(r) && !unicode.IsDigit(r) && !unicode.IsMark(r) {
		return false
	}
	return !unicode.IsOneOf(spacelessScripts, r)
}

// mentionProbe is how many mentioned users are looked up one by one in a
// private room before its whole member list is read instead.
const mentionProbe = 4

// mentions returns the users body mentions who count in room r: in a
// public room every well-formed user id (Parley keeps no directory of
// users, so it cannot tell a user who never connected from a typo); in a
// private or direct room only its members, so a mention cannot reach, or
// count for, someone who cannot read the room.
func (s *Service) mentions(ctx context.Context, r store.Room, body string) ([]string, error) {
	ids := parseMentions(body)
	switch {
	case len(ids) == 0 || r.Visibility == store.Public:
		return ids, nil
	case r.Visibility == store.Direct:
		a, b, _ := strings.Cut(strings.TrimPrefix(r.Name, directPrefix), ":")
		return slices.DeleteFunc(ids, func(id string) bool { return id != a && id != b }), nil
	case len(ids) <= mentionProbe:
		return keepMembers(ids, func(id string) (bool, error) { return s.cfg.Store.IsMember(ctx, r.Name, id) })
	}
	members, err := s.cfg.Store.Members(ctx, r.Name)
	if err != nil {
		return nil, err
	}
	return keepMembers(ids, func(id string) (bool, error) {
		_, found := slices.BinarySearch(members, id)
		return found, nil
	})
}

// keepMembers returns the ids for which member answers true, in order.
func keepMembers(ids []string, member func(string) (bool, error)) ([]string, error) {
	out := ids[:0]
	for _, id := range ids {
		ok, err := member(id)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, id)
		}
	}
	return out, nil
}
