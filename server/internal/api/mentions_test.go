package api

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// TestParseMentions pins the mention rule (see parseMentions): where a
// mention may start and end, punctuation around it, e-mail addresses and
// URLs, repeats, unicode on either side, and the cap.
func TestParseMentions(t *testing.T) {
	for _, tc := range []struct {
		text string
		want []string
	}{
		// start and end of the text
		{"@bob", []string{"bob"}},
		{"@bob hi", []string{"bob"}},
		{"hi @bob", []string{"bob"}},
		{"@bob @alice", []string{"bob", "alice"}},
		{"@", nil},
		{"@ bob", nil},
		{"hi @", nil},
		// punctuation after the name
		{"@bob, look", []string{"bob"}},
		{"ask @bob.", []string{"bob"}},
		{"ask @bob...", []string{"bob"}},
		{"@bob: hi", []string{"bob"}},
		{"@bob! @alice?", []string{"bob", "alice"}},
		{"(@bob)", []string{"bob"}},
		{"[@bob]", []string{"bob"}},
		{`"@bob"`, []string{"bob"}},
		{"@bob's idea", []string{"bob"}},
		{"@bob;@alice", []string{"bob", "alice"}},
		{"!@bob", []string{"bob"}},
		{"@bob\n@alice\t@carol", []string{"bob", "alice", "carol"}},
		// ids with dots, dashes, underscores and capitals
		{"@bob.smith is here", []string{"bob.smith"}},
		{"@bob.smith.", []string{"bob.smith"}},
		{"@b-o_b.9", []string{"b-o_b.9"}},
		{"@Bob and @bob", []string{"Bob", "bob"}},
		{"@bob-", []string{"bob-"}},
		// not a mention: e-mail addresses, URLs, words
		{"mail bob@example.com", nil},
		{"bob@example.com and @carol", []string{"carol"}},
		{"a.b@example.com", nil},
		{"x+y@example.com", nil},
		{"@bob@example.com", nil},
		{"https://example.com/@bob", nil},
		{"5@bob", nil},
		{"@@bob", nil},
		{"@.", nil},
		{"@...", nil},
		{"@" + strings.Repeat("a", 64), []string{strings.Repeat("a", 64)}},
		{"@" + strings.Repeat("a", 65), nil},
		// repeated names count once, in order of first mention
		{"@bob @alice @bob @bob. (@alice)", []string{"bob", "alice"}},
		// unicode around
		{"«@bob»", []string{"bob"}},
		{"¡@bob!", []string{"bob"}},
		{"—@bob—", []string{"bob"}},
		{"@bob🙂", []string{"bob"}},
		{"🙂@bob", []string{"bob"}},
		{"\u00a0@bob\u00a0", []string{"bob"}},
		{"@bobé", nil},      // the word goes on past what an id may hold
		{"é@bob", nil},      // as in josé@example.com
		{"@bob\u0301", nil}, // a combining mark continues the word
		{"Привет @bob", []string{"bob"}},
		{"Привет@bob", nil},
		{"会議@bob", []string{"bob"}}, // written without spaces
		{"@bobさん、こんにちは", []string{"bob"}},
		{"สวัสดี@bob", []string{"bob"}},
		{"\xff@bob", []string{"bob"}}, // not UTF-8 before: not a word
	} {
		if got := parseMentions(tc.text); !slices.Equal(got, tc.want) {
			t.Errorf("parseMentions(%q) = %q, want %q", tc.text, got, tc.want)
		}
	}
}

// A text naming more than maxMentions users mentions the first
// maxMentions of them, however long.
func TestParseMentionsCapped(t *testing.T) {
	var b strings.Builder
	for i := range 3 * maxMentions {
		fmt.Fprintf(&b, "@u%d @u0 ", i)
	}
	got := parseMentions(b.String())
	if len(got) != maxMentions || got[0] != "u0" || got[maxMentions-1] != fmt.Sprint("u", maxMentions-1) {
		t.Fatalf("got %d mentions %q…, want u0 … u%d", len(got), got[:min(3, len(got))], maxMentions-1)
	}
}

func FuzzParseMentions(f *testing.F) {
	for _, s := range []string{"@bob", "hi @bob.", "bob@example.com", "(@a.b-c_d)", "@@", "会議@bob"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		got := parseMentions(text)
		if len(got) > maxMentions {
			t.Fatalf("%d mentions", len(got))
		}
		for i, id := range got {
			if !strings.Contains(text, "@"+id) || slices.Contains(got[:i], id) {
				t.Fatalf("parseMentions(%q) = %q", text, got)
			}
		}
	})
}
