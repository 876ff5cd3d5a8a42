package api

import (
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/parleychat/parley/server/internal/auth"
)

// Limits on client-controlled fields.
const (
	maxRefBytes         = 64
	maxClientMsgIDBytes = 64
	maxClientNameBytes  = 64
	maxTokenBytes       = 8 << 10
)

var roomRE = regexp.MustCompile(`^[a-z0-9_-]{1,64}$`)

func validateRoom(name string) error {
	if !roomRE.MatchString(name) && !isDirectRoomName(name) {
		return invalidf("room name %q must be 1-64 characters of a-z, 0-9, '-', '_' (or a direct room's dm:<user>:<user>)", truncate(name, 80))
	}
	return nil
}

// directRoomName is the canonical name of the direct room between a and b:
// "dm:" and the two user ids, sorted, joined by ':' (which user ids cannot
// contain, and room names cannot either).
func directRoomName(a, b string) string {
	if b < a {
		a, b = b, a
	}
	return directPrefix + a + ":" + b
}

// directPrefix begins the name of every direct room, and no other.
const directPrefix = "dm:"

func isDirectRoomName(name string) bool {
	rest, ok := strings.CutPrefix(name, directPrefix)
	if !ok {
		return false
	}
	a, b, ok := strings.Cut(rest, ":")
	return ok && a < b && auth.ValidUser(a) && auth.ValidUser(b)
}

func (s *Service) validateBody(body string) error {
	switch {
	case body == "":
		return invalidf("message body must not be empty")
	case len(body) > s.cfg.MaxBodyBytes:
		return invalidf("message body is %d bytes; the limit is %d", len(body), s.cfg.MaxBodyBytes)
	case !utf8.ValidString(body):
		return invalidf("message body must be valid UTF-8")
	case strings.IndexByte(body, 0) >= 0:
		return invalidf("message body must not contain NUL (U+0000) characters")
	}
	return nil
}

// validatePost checks the body and client_msg_id of a send.
func (s *Service) validatePost(body, clientMsgID string) error {
	if err := s.validateBody(body); err != nil {
		return err
	}
	return validateClientMsgID(clientMsgID)
}

func validateClientMsgID(id string) error {
	if len(id) > maxClientMsgIDBytes {
		return invalidf("client_msg_id is %d bytes; the limit is %d", len(id), maxClientMsgIDBytes)
	}
	if !utf8.ValidString(id) || strings.IndexByte(id, 0) >= 0 {
		return invalidf("client_msg_id must be valid UTF-8 without NUL characters")
	}
	return nil
}

func validateRef(ref string) error {
	if len(ref) > maxRefBytes {
		return invalidf("ref is %d bytes; the limit is %d", len(ref), maxRefBytes)
	}
	return nil
}

// truncate shortens s for inclusion in an error message.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return cut(s, n) + "…"
}

// cut returns at most the first n bytes of s, ending on a rune boundary.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// maxEmojiBytes bounds a reaction's emoji: room for the longest emoji
// sequences (a family or a flag with modifiers is up to about 28 bytes).
const maxEmojiBytes = 32

// validateEmoji checks a reaction's emoji: 1 to maxEmojiBytes bytes of
// valid UTF-8 with no whitespace and no control characters. It does not
// check that the text is an emoji (Unicode's list grows every year);
// zero-width joiners and variation selectors, which emoji sequences are
// made of, are allowed.
func validateEmoji(emoji string) error {
	switch {
	case emoji == "":
		return invalidf("emoji must not be empty")
	case len(emoji) > maxEmojiBytes:
		return invalidf("emoji is %d bytes; the limit is %d", len(emoji), maxEmojiBytes)
	case !utf8.ValidString(emoji):
		return invalidf("emoji must be valid UTF-8")
	}
	for _, r := range emoji {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return invalidf("emoji %q must not contain whitespace or control characters (found %U)", emoji, r)
		}
	}
	return nil
}

// validateTarget checks the room and seq of the message an edit, delete or
// reaction names.
func validateTarget(room string, seq uint64) error {
	if err := validateRoom(room); err != nil {
		return err
	}
	if seq == 0 {
		return invalidf("seq must be the seq of a message of room %q (1 or more)", room)
	}
	return nil
}
