package api

import (
	"context"
	"encoding/base64"
	"regexp"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	parleyv1 "github.com/parleychat/parley/gen/parley/v1"
	"github.com/parleychat/parley/server/internal/auth"
	"github.com/parleychat/parley/server/internal/hub"
)

// Pages of presence (see docs/clients.md): a page token is the room and
// where the page before ended — after a user, or after one connection of a
// user with more than a page holds — so users joining or leaving between
// two pages shift none of the others. It is opaque to clients.

const (
	// maxPresencePage is the most users one page of presence holds.
	maxPresencePage = 1000
	// presenceTokenPrefix versions the token's form.
	presenceTokenPrefix = "p1|"
)

// connIDRE matches the connection ids the hub makes (base32, no padding).
var connIDRE = regexp.MustCompile(`^[A-Z2-7]{1,32}$`)

// presenceToken is the page token for the page after c in room; empty for
// the zero cursor (no page follows).
func presenceToken(room string, c hub.PageCursor) string {
	if c == (hub.PageCursor{}) {
		return ""
	}
	tok := presenceTokenPrefix + room + "|" + c.User
	if c.Conn != "" {
		tok += "|" + strconv.FormatInt(c.OnlineAt.UnixNano(), 10) + "|" + c.Conn
	}
	return base64.RawURLEncoding.EncodeToString([]byte(tok))
}

// parsePresenceToken returns where a page token for room's presence
// continues (the zero cursor for no token).
func parsePresenceToken(tok, room string) (hub.PageCursor, error) {
	if tok == "" {
		return hub.PageCursor{}, nil
	}
	bad := invalidf("page_token is not one this server issued for the presence of room %q; start again without it", room)
	if len(tok) > 300 {
		return hub.PageCursor{}, bad
	}
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return hub.PageCursor{}, bad
	}
	rest, ok := strings.CutPrefix(string(raw), presenceTokenPrefix)
	if !ok {
		return hub.PageCursor{}, bad
	}
	// Neither a room name (validateRoom), a user id nor a connection id
	// has a '|'.
	parts := strings.Split(rest, "|")
	if (len(parts) != 2 && len(parts) != 4) || !auth.ValidUser(parts[1]) {
		return hub.PageCursor{}, bad
	}
	c := hub.PageCursor{User: parts[1]}
	if len(parts) == 4 {
		nanos, err := strconv.ParseInt(parts[2], 10, 64)
		if err != nil || !connIDRE.MatchString(parts[3]) {
			return hub.PageCursor{}, bad
		}
		c.OnlineAt, c.Conn = time.Unix(0, nanos).UTC(), parts[3]
	}
	if parts[0] != room {
		return hub.PageCursor{}, invalidf("page_token was issued for the presence of room %q, not %q; page through each room with its own tokens", truncate(parts[0], 80), room)
	}
	return c, nil
}

// presencePageSize checks a requested page size: 1 to maxPresencePage,
// or 0 for the default.
func presencePageSize(n int32, zero string) (int, error) {
	if n < 0 || n > maxPresencePage {
		return 0, invalidf("page_size must be between 1 and %d (0 means %s), got %d", maxPresencePage, zero, n)
	}
	return int(n), nil
}

// ListPresence implements parleyv1.ChatServiceServer.
func (s *Service) ListPresence(ctx context.Context, req *parleyv1.ListPresenceRequest) (*parleyv1.ListPresenceResponse, error) {
	if _, err := s.access(ctx, identity(ctx).User, req.GetRoom()); err != nil {
		return nil, err
	}
	size, err := presencePageSize(req.GetPageSize(), "every user in a small room, 100 in a big one")
	if err != nil {
		return nil, err
	}
	after, err := parsePresenceToken(req.GetPageToken(), req.GetRoom())
	if err != nil {
		return nil, err
	}
	page, err := s.cfg.Hub.PresencePage(ctx, req.GetRoom(), after, size)
	if err != nil {
		return nil, err
	}
	return &parleyv1.ListPresenceResponse{Presence: presenceToProto(page.Presence), Stale: s.cfg.Hub.CutOff(),
		NextPageToken: presenceToken(req.GetRoom(), page.Next), OnlineCount: int32(page.Online)}, nil
}

// presencePage answers a presence_page frame: the page follows the
// presence diffs queued for the stream before it, so the client applies
// both in the order they arrive.
func (sess *session) presencePage(p *parleyv1.JoinRequest_PresencePageRequest, reply *parleyv1.Reply) error {
	room := p.GetRoom()
	if err := validateRoom(room); err != nil {
		return err
	}
	size, err := presencePageSize(p.GetPageSize(), "100")
	if err != nil {
		return err
	}
	if size == 0 {
		size = 100
	}
	after, err := parsePresenceToken(p.GetPageToken(), room)
	if err != nil {
		return err
	}
	if !sess.s.cfg.Hub.Joined(sess.conn, room) {
		return errorf(errPrecondition, "join room %q on this stream before asking for pages of its presence (ListPresence pages any room you may read)", room)
	}
	return sess.s.cfg.Hub.QueuePresencePage(sess.conn, room, after, size, func(page hub.PresencePage) ([]byte, error) {
		reply.PresencePage = &parleyv1.PresencePage{Presence: presenceToProto(page.Presence),
			NextPageToken: presenceToken(room, page.Next), OnlineCount: int32(page.Online)}
		return proto.Marshal(&parleyv1.JoinResponse{Event: &parleyv1.JoinResponse_Reply{Reply: reply}})
	})
}
