package api

import (
	"os"
	"strings"
	"testing"
	"time"
)

// The defaults are the ones docs/clients.md promises.
func TestDefaultsAreDocumented(t *testing.T) {
	s := New(Config{})
	c := s.cfg
	if c.MaxBodyBytes != 4096 || c.SendRate != 50 || c.SendBurst != 100 || c.MaxJoinStreamsPerUser != 32 || c.DevTokenTTL != 24*time.Hour ||
		c.RoomCreateRate != 0.2 || c.RoomCreateBurst != 20 {
		t.Fatalf("defaults: body %d bytes, %g sends/s in bursts of %d, %d streams per user, dev tokens for %v, %g rooms/s in bursts of %d",
			c.MaxBodyBytes, c.SendRate, c.SendBurst, c.MaxJoinStreamsPerUser, c.DevTokenTTL, c.RoomCreateRate, c.RoomCreateBurst)
	}
	b, err := os.ReadFile("../../../docs/clients.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{
		"| message body | 4096 bytes | `--max-body-bytes` |",
		"| sends per user | 50/s, bursts of 100 | `--send-rate`, `--send-burst` |",
		"| open `Join` and `Subscribe` streams per user, together | 32 | `--max-join-streams-per-user` |",
		"| 0.2/s (12 a minute), bursts of 20 | `--room-create-rate`, `--room-create-burst` |",
	} {
		if !strings.Contains(string(b), w) {
			t.Errorf("docs/clients.md does not say %q", w)
		}
	}
}
