package api

import (
	"strings"
	"testing"
)

// TestValidateEmoji pins the rule for a reaction's emoji: 1 to 32 bytes of
// valid UTF-8, no whitespace, no control characters; emoji sequences with
// joiners, variation selectors and skin tones pass.
func TestValidateEmoji(t *testing.T) {
	for _, tc := range []struct {
		emoji string
		ok    bool
	}{
		{"👍", true},
		{"❤️", true},                          // with U+FE0F
		{"👩‍👩‍👧‍👦", true},                     // joined by U+200D, 25 bytes
		{"👋🏽", true},                          // skin tone modifier
		{"🇫🇷", true},                          // flag: two regional indicators
		{"+1", true},                          // text is allowed: the rule is about shape, not Unicode's list
		{":tada:", true},                      // so are shortcodes
		{"", false},                           // empty
		{strings.Repeat("👍", 8), true},        // 32 bytes
		{strings.Repeat("👍", 8) + "x", false}, // 33 bytes
		{"👍 ", false},                         // trailing space
		{"a\tb", false},                       // tab
		{"\u00a0", false},                     // no-break space
		{"\u2028", false},                     // line separator
		{"👍\n", false},                        // newline
		{"\x00", false},                       // NUL
		{"\x1b[31m", false},                   // escape sequence
		{"\u0085", false},                     // next line (C1 control)
		{"\xff", false},                       // not UTF-8
		{"\xf0\x9f\x91", false},               // cut in the middle of a rune
	} {
		err := validateEmoji(tc.emoji)
		if (err == nil) != tc.ok {
			t.Errorf("validateEmoji(%q) = %v, want ok=%v", tc.emoji, err, tc.ok)
		}
		if err != nil && statusOf(err).Code() != 3 {
			t.Errorf("validateEmoji(%q): code %v, want INVALID_ARGUMENT", tc.emoji, statusOf(err).Code())
		}
	}
}

// TestValidateTarget: an edit, delete or reaction names a room and a seq
// of 1 or more.
func TestValidateTarget(t *testing.T) {
	for _, tc := range []struct {
		room string
		seq  uint64
		ok   bool
	}{
		{"lobby", 1, true},
		{"lobby", 1 << 63, true},
		{"lobby", 0, false},
		{"Lobby", 1, false},
		{"", 1, false},
	} {
		if err := validateTarget(tc.room, tc.seq); (err == nil) != tc.ok {
			t.Errorf("validateTarget(%q, %d) = %v, want ok=%v", tc.room, tc.seq, err, tc.ok)
		}
	}
}
