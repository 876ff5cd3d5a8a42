package api

import (
	"testing"
	"time"

	"github.com/parleychat/parley/server/internal/auth"
	"github.com/parleychat/parley/server/internal/hub"
)

// FuzzPresenceToken parses arbitrary page tokens: nothing panics, what is
// accepted names a valid user (and connection), and its cursor encodes
// back to a token that parses to the same cursor.
func FuzzPresenceToken(f *testing.F) {
	f.Add(presenceToken("big", hub.PageCursor{User: "alice"}), "big")
	f.Add(presenceToken("dm:a:b", hub.PageCursor{User: "b", OnlineAt: time.Unix(0, 1796538065660526715), Conn: "BBCRWU7O3MHIEJ6H"}), "dm:a:b")
	f.Add("cDF8YmlnfGE", "big")
	f.Add("!!!", "big")
	f.Fuzz(func(t *testing.T, tok, room string) {
		c, err := parsePresenceToken(tok, room)
		if err != nil || tok == "" {
			return
		}
		if !auth.ValidUser(c.User) || (c.Conn != "" && !connIDRE.MatchString(c.Conn)) {
			t.Fatalf("token %q accepted with cursor %+v", tok, c)
		}
		again, err := parsePresenceToken(presenceToken(room, c), room)
		if err != nil || again.User != c.User || again.Conn != c.Conn || !again.OnlineAt.Equal(c.OnlineAt) {
			t.Fatalf("cursor %+v of token %q did not survive a round trip: %+v, %v", c, tok, again, err)
		}
	})
}
