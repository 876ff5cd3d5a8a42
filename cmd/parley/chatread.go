package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"

	parleyv1 "github.com/parleychat/parley/gen/parley/v1"
)

// Read state in parley chat: the client marks a room read up to the last
// entry it printed, at most once a second per room (the session's tick),
// so a busy room costs one mark_read frame a second rather than one per
// message; the server coalesces further. A read_marker event from another
// device of the user is shown when it goes past what this client marked,
// and receipts from the other readers of a small room as one line each.

// markPrinted records that room's entry seq was shown, to be marked read.
func (c *chat) markPrinted(room string, seq uint64) {
	if st, ok := c.rooms[room]; ok && seq > st.readWant {
		st.readWant = seq
	}
}

// sendMarks marks every room read up to what was printed since the last
// marks.
func (c *chat) sendMarks() {
	if c.stream == nil {
		return
	}
	for _, room := range c.order {
		st := c.rooms[room]
		if st.readWant <= st.readSent {
			continue
		}
		st.readSent = st.readWant
		c.request(refInfo{kind: "mark", room: room},
			&parleyv1.JoinRequest{Frame: &parleyv1.JoinRequest_MarkRead_{MarkRead: &parleyv1.JoinRequest_MarkRead{Room: room, Seq: st.readSent}}})
	}
}

// readMarker shows that the user read a room further on another device.
func (c *chat) readMarker(m *parleyv1.ReadMarker) {
	st, ok := c.rooms[m.GetRoom()]
	if !ok || m.GetSeq() <= st.readSent {
		return // a room not followed here, or this client's own mark
	}
	st.readSent = max(st.readSent, m.GetSeq())
	c.info("#%s read up to [%d] on another device: %s", m.GetRoom(), m.GetSeq(), unreadText(m.GetUnreadCount(), m.GetMentionCount()))
}

// receipt shows how far another reader of a small room has read it.
func (c *chat) receipt(r *parleyv1.Receipt) {
	if _, ok := c.rooms[r.GetRoom()]; !ok || r.GetUser() == c.me {
		return
	}
	c.print("%s #%s ✓ %s has read up to [%d]", clock(r.GetReadAt().AsTime()), r.GetRoom(), r.GetUser(), r.GetSeq())
}

// unreadText is "3 unread, 1 mentioning you", or "all read".
func unreadText(unread, mentions int32) string {
	if unread == 0 {
		return "all read"
	}
	s := fmt.Sprintf("%d unread", unread)
	if mentions > 0 {
		s += fmt.Sprintf(", %d mentioning you", mentions)
	}
	return s
}

// tokenUser returns the user a JWT speaks for (its sub claim), unverified:
// the client only uses it to tell its own receipts from others'. "" if
// the token is not a JWT.
func tokenUser(token string) string {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return ""
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return ""
	}
	var claims struct {
		Sub string `json:"sub"`
	}
	if json.Unmarshal(payload, &claims) != nil {
		return ""
	}
	return claims.Sub
}
