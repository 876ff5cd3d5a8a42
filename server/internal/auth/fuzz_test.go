package auth

import (
	"strings"
	"testing"
	"time"
)

// FuzzVerify feeds arbitrary strings to Verify: nothing panics, and the
// only tokens accepted are ones signed with the key, for a valid user.
func FuzzVerify(f *testing.F) {
	k, err := NewKeys(Config{Secret: []byte(strings.Repeat("k", 32))})
	if err != nil {
		f.Fatal(err)
	}
	good, _, _ := k.Mint("alice", time.Hour)
	expired, _, _ := k.Mint("alice", -time.Hour)
	for _, s := range []string{good, expired, "", "a.b.c", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIn0.", good + "x", strings.Replace(good, "e", "f", 1)} {
		f.Add(s)
	}
	other, _ := NewKeys(Config{Secret: []byte(strings.Repeat("o", 32))})
	f.Fuzz(func(t *testing.T, token string) {
		id, err := k.Verify(token)
		if err != nil {
			return
		}
		if !ValidUser(id.User) {
			t.Fatalf("accepted a token for user %q", id.User)
		}
		if _, err := other.Verify(token); err == nil {
			t.Fatalf("token %q verifies under two different secrets", token)
		}
	})
}
