// Package api implements parley.v1.ChatService: it turns protobuf requests
// into hub and store calls, authenticates callers, validates every
// client-controlled field, and maps errors to gRPC status codes in one place.
// Its words (session, join, send, ...) are those of the glossary in package
// app.
package api

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	parleyv1 "github.com/parleychat/parley/gen/parley/v1"
	"github.com/parleychat/parley/server/internal/auth"
	"github.com/parleychat/parley/server/internal/hub"
	"github.com/parleychat/parley/server/internal/store"
)

// Config holds the service's dependencies and limits. Zero limits mean
// their defaults.
type Config struct {
	Hub   *hub.Hub
	Store store.Store
	Keys  *auth.Keys
	Log   *slog.Logger
	// MaxBodyBytes bounds a message body (default DefaultMaxBodyBytes).
	MaxBodyBytes int
	// Dev enables DevLogin.
	Dev bool
	// DevTokenTTL is the lifetime of tokens from DevLogin (default
	// DefaultDevTokenTTL).
	DevTokenTTL time.Duration
	// SendRate is how many entries per second one user may send across
	// all their streams and REST: messages, edits, deletes and reactions
	// alike, from one budget (default DefaultSendRate; negative: no
	// limit), with bursts of SendBurst (default 2×SendRate).
	SendRate  float64
	SendBurst int
	// RoomCreateRate is how many rooms per second one user may create
	// with CreateRoom (default DefaultRoomCreateRate; negative: no limit),
	// with bursts of RoomCreateBurst (default DefaultRoomCreateBurst).
	// A direct room, made by a user's first message to another, counts
	// too.
	RoomCreateRate  float64
	RoomCreateBurst int
	// MaxJoinStreamsPerUser bounds one user's open Join streams (default
	// DefaultMaxJoinStreamsPerUser).
	MaxJoinStreamsPerUser int
	// TypingInterval is the shortest time between two typing changes of
	// one user in one room that are forwarded (default 250ms); changes in
	// between are coalesced (see typingLimiter).
	TypingInterval time.Duration
}

// Defaults of the Config fields that parleyd shows in its flags.
const (
	DefaultMaxBodyBytes          = 4096
	DefaultDevTokenTTL           = 24 * time.Hour
	DefaultSendRate              = 50
	DefaultRoomCreateRate        = 0.2
	DefaultRoomCreateBurst       = 20
	DefaultMaxJoinStreamsPerUser = 32
)

// Service implements parleyv1.ChatServiceServer. Its methods return errors
// that its UnaryInterceptor and StreamInterceptor turn into statuses: a
// server serves it with both.
type Service struct {
	parleyv1.UnimplementedChatServiceServer
	cfg Config
	log *slog.Logger
	// streams tracks each stream's reader and writer goroutines, which may
	// outlive their handler by the moment it takes the stream to close.
	streams sync.WaitGroup
	limits  *userLimits
	typing  *typingLimiter
	// draining is closed when the server starts shutting down.
	draining  chan struct{}
	drainOnce sync.Once
}

// New returns a Service.
func New(cfg Config) *Service {
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.DevTokenTTL <= 0 {
		cfg.DevTokenTTL = DefaultDevTokenTTL
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.SendRate == 0 {
		cfg.SendRate = DefaultSendRate
	}
	if cfg.SendBurst <= 0 {
		cfg.SendBurst = int(max(2*cfg.SendRate, 1))
	}
	if cfg.RoomCreateRate == 0 {
		cfg.RoomCreateRate = DefaultRoomCreateRate
	}
	if cfg.RoomCreateBurst <= 0 {
		cfg.RoomCreateBurst = DefaultRoomCreateBurst
	}
	if cfg.MaxJoinStreamsPerUser <= 0 {
		cfg.MaxJoinStreamsPerUser = DefaultMaxJoinStreamsPerUser
	}
	if cfg.TypingInterval <= 0 {
		cfg.TypingInterval = defaultTypingInterval
	}
	s := &Service{cfg: cfg, log: cfg.Log, draining: make(chan struct{}),
		limits: newUserLimits(cfg.SendRate, cfg.SendBurst, cfg.MaxJoinStreamsPerUser)}
	s.limits.limitCreates(cfg.RoomCreateRate, cfg.RoomCreateBurst)
	s.typing = newTypingLimiter(cfg.TypingInterval, func(c *hub.Conn, room string, active bool) error {
		return s.cfg.Hub.Typing(c, room, active)
	})
	return s
}

// Drain ends every open stream with UNAVAILABLE and waits until their
// goroutines are gone or ctx is done.
func (s *Service) Drain(ctx context.Context) error {
	s.drainOnce.Do(func() { close(s.draining) })
	s.typing.stop()
	s.cfg.Hub.EndAll(errShuttingDown)
	done := make(chan struct{})
	go func() { s.streams.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("streams still open: %w", ctx.Err())
	}
}

// Wait blocks until every stream goroutine has ended.
func (s *Service) Wait() { s.streams.Wait() }

// access returns a room the caller may use, or NOT_FOUND. A private or
// direct room that the caller is not a member of is answered exactly as a
// room that does not exist: a non-member learns nothing of it, not even
// that it exists.
func (s *Service) access(ctx context.Context, user, name string) (store.Room, error) {
	if err := validateRoom(name); err != nil {
		return store.Room{}, err
	}
	r, err := s.cfg.Hub.Room(ctx, name)
	if err != nil {
		if errors.Is(err, store.ErrRoomNotFound) {
			return store.Room{}, roomNotFound(name)
		}
		return store.Room{}, err
	}
	if err := s.mayUse(ctx, user, r); err != nil {
		return store.Room{}, err
	}
	return r, nil
}

// mayUse returns NOT_FOUND unless user may use room r: a public room, or
// a private or direct one they are a member of.
func (s *Service) mayUse(ctx context.Context, user string, r store.Room) error {
	if r.Visibility == store.Public {
		return nil
	}
	member, err := s.cfg.Store.IsMember(ctx, r.Name, user)
	if err != nil {
		return err
	}
	if !member {
		return roomNotFound(r.Name)
	}
	return nil
}

// holdForSend is access for a send whose room name is valid: it holds the
// room loaded for the message (see hub.Hub.Hold), so that the hub does not
// look it up again.
func (s *Service) holdForSend(ctx context.Context, user, name string) (hub.Held, error) {
	held, err := s.cfg.Hub.Hold(ctx, name)
	if err != nil {
		if errors.Is(err, store.ErrRoomNotFound) {
			return hub.Held{}, roomNotFound(name)
		}
		return hub.Held{}, err
	}
	if err := s.mayUse(ctx, user, held.Info()); err != nil {
		held.Release()
		return hub.Held{}, err
	}
	return held, nil
}

// SendMessage implements parleyv1.ChatServiceServer.
func (s *Service) SendMessage(ctx context.Context, req *parleyv1.SendMessageRequest) (*parleyv1.SendMessageResponse, error) {
	user := identity(ctx).User
	m := store.NewMessage{Room: req.GetRoom(), Sender: user, Body: req.GetBody(),
		ClientMsgID: req.GetClientMsgId(), ReplyToSeq: req.GetReplyToSeq()}
	if req.GetToUser() != "" {
		// Checked before the direct room is made: bad input makes none.
		if err := s.checkEntry(m); err != nil {
			return nil, err
		}
		var err error
		if m.Room, err = s.directRoom(ctx, user, req); err != nil {
			return nil, err
		}
	}
	sent, err := s.sendEntry(ctx, m)
	if err != nil {
		return nil, err
	}
	return &parleyv1.SendMessageResponse{Message: messageToProto(sent.Message)}, nil
}

// startSend queues an entry, checked but for its rate, for the store (see
// hub.Held.StartSend), and takes over held; wait stores and delivers it.
// A send refused for its rate is held before the answer when hold is set
// (see allowSend): not on a Join stream, whose frames are handled in
// order, so holding one would hold the user's joins and typing behind it.
// from is the connection it was sent on, if any.
func (s *Service) startSend(ctx context.Context, held hub.Held, m store.NewMessage, hold bool, from *hub.Conn) (wait func() (hub.Sent, error), err error) {
	if err := s.limits.allowSend(ctx, m.Sender, hold); err != nil {
		held.Release()
		return nil, err
	}
	m.Room = held.Info().Name
	if m.Kind == store.KindMessage || m.Kind == store.KindEdit {
		if m.Mentions, err = s.mentions(ctx, held.Info(), m.Body); err != nil {
			held.Release()
			return nil, err
		}
	}
	stored := held.StartSend(ctx, m, from)
	return func() (hub.Sent, error) {
		sent, err := stored()
		if err == nil {
			err = kindOf(m, sent)
		}
		return sent, err
	}, nil
}

// Paging limits.
const (
	defaultPageSize = 50
	maxPageSize     = 200
)

func pageSize(n int32, field string) (int, error) {
	switch {
	case n == 0:
		return defaultPageSize, nil
	case n < 0 || n > maxPageSize:
		return 0, invalidf("%s must be between 1 and %d (0 means %d), got %d", field, maxPageSize, defaultPageSize, n)
	}
	return int(n), nil
}

// ListMessages implements parleyv1.ChatServiceServer.
func (s *Service) ListMessages(ctx context.Context, req *parleyv1.ListMessagesRequest) (*parleyv1.ListMessagesResponse, error) {
	limit, err := pageSize(req.GetLimit(), "limit")
	if err != nil {
		return nil, err
	}
	if _, err := s.access(ctx, identity(ctx).User, req.GetRoom()); err != nil {
		return nil, err
	}
	cur := messageCursor{room: req.GetRoom(), after: req.GetAfterSeq(), before: req.GetBeforeSeq(),
		desc: req.GetOrder() != parleyv1.MessageOrder_MESSAGE_ORDER_OLDEST_FIRST}
	q := store.Query{After: cur.after, Before: cur.before, Limit: limit + 1, Descending: cur.desc}
	if req.GetPageToken() != "" {
		if cur, err = parseMessageCursor(req.GetPageToken(), req); err != nil {
			return nil, err
		}
		q = cur.query(limit + 1)
	}
	views, err := s.cfg.Store.History(ctx, req.GetRoom(), identity(ctx).User, q)
	if err != nil {
		return nil, err
	}
	info, err := s.cfg.Store.Room(ctx, req.GetRoom())
	if err != nil {
		return nil, err
	}
	resp := &parleyv1.ListMessagesResponse{HeadSeq: info.LastSeq}
	if len(views) > limit {
		views = views[:limit]
		cur.pos = views[limit-1].Seq
		resp.NextPageToken = cur.String()
	}
	resp.Messages = make([]*parleyv1.Message, len(views))
	for i, v := range views {
		resp.Messages[i] = viewToProto(v)
	}
	return resp, nil
}

// A message cursor is the query for the next page: the room, the order,
// the bounds the request gave (after_seq, before_seq) and the position
// past the last message returned. The request that brings it back must
// give the same room, order and bounds.
type messageCursor struct {
	room          string
	desc          bool
	after, before uint64 // as the first request gave them; 0 is no bound
	pos           uint64 // the last seq returned
}

func (c messageCursor) String() string {
	dir := "a"
	if c.desc {
		dir = "d"
	}
	raw := fmt.Sprintf("m2|%s|%s|%d|%d|%d", c.room, dir, c.after, c.before, c.pos)
	return base64.RawURLEncoding.EncodeToString([]byte(raw))
}

// query is the store query for the page after c.
func (c messageCursor) query(limit int) store.Query {
	q := store.Query{After: c.after, Before: c.before, Limit: limit, Descending: c.desc}
	if c.desc {
		q.Before = c.pos
	} else {
		q.After = c.pos
	}
	return q
}

// parseMessageCursor reads a page token and checks it against the request
// it came back with.
func parseMessageCursor(tok string, req *parleyv1.ListMessagesRequest) (messageCursor, error) {
	room := req.GetRoom()
	bad := invalidf("page_token is not one this server issued for room %q; start again without it", room)
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(raw) > 200 {
		return messageCursor{}, bad
	}
	parts := strings.Split(string(raw), "|")
	if len(parts) != 6 || parts[0] != "m2" || parts[1] != room || (parts[2] != "a" && parts[2] != "d") {
		return messageCursor{}, bad
	}
	c := messageCursor{room: room, desc: parts[2] == "d"}
	var errs [3]error
	c.after, errs[0] = strconv.ParseUint(parts[3], 10, 64)
	c.before, errs[1] = strconv.ParseUint(parts[4], 10, 64)
	c.pos, errs[2] = strconv.ParseUint(parts[5], 10, 64)
	if errors.Join(errs[:]...) != nil {
		return messageCursor{}, bad
	}
	switch {
	case c.desc != (req.GetOrder() != parleyv1.MessageOrder_MESSAGE_ORDER_OLDEST_FIRST):
		return messageCursor{}, invalidf("page_token was issued for the other order; keep order the same while paging")
	case c.before != req.GetBeforeSeq():
		return messageCursor{}, invalidf("page_token was issued for before_seq %d, not %d; keep before_seq the same while paging (0 or unset: no bound), or start again without page_token", c.before, req.GetBeforeSeq())
	case c.after != req.GetAfterSeq():
		return messageCursor{}, invalidf("page_token was issued for after_seq %d, not %d; keep after_seq the same while paging (0 or unset: no bound), or start again without page_token", c.after, req.GetAfterSeq())
	}
	return c, nil
}

// ListRooms implements parleyv1.ChatServiceServer.
func (s *Service) ListRooms(ctx context.Context, req *parleyv1.ListRoomsRequest) (*parleyv1.ListRoomsResponse, error) {
	size, err := pageSize(req.GetPageSize(), "page_size")
	if err != nil {
		return nil, err
	}
	after := ""
	if tok := req.GetPageToken(); tok != "" {
		raw, err := base64.RawURLEncoding.DecodeString(tok)
		if err != nil || !strings.HasPrefix(string(raw), "r1|") {
			return nil, invalidf("page_token is not one this server issued; start again without it")
		}
		after = string(raw[3:])
	}
	rooms, err := s.visibleRooms(ctx, identity(ctx).User, after, size+1)
	if err != nil {
		return nil, err
	}
	resp := &parleyv1.ListRoomsResponse{}
	if len(rooms) > size {
		rooms = rooms[:size]
		resp.NextPageToken = base64.RawURLEncoding.EncodeToString([]byte("r1|" + rooms[size-1].Name))
	}
	for _, r := range rooms {
		resp.Rooms = append(resp.Rooms, roomToProto(r, s.cfg.Hub.OnlineCount(r.Name)))
	}
	return resp, nil
}

// CreateRoom implements parleyv1.ChatServiceServer.
func (s *Service) CreateRoom(ctx context.Context, req *parleyv1.CreateRoomRequest) (*parleyv1.CreateRoomResponse, error) {
	if strings.HasPrefix(req.GetName(), directPrefix) {
		return nil, invalidf("%s rooms are direct conversations and cannot be created: send the first message to the user instead (SendMessage with to_user; REST: POST /v1/users/{user}/messages)", directPrefix)
	}
	if err := validateRoom(req.GetName()); err != nil {
		return nil, err
	}
	vis := store.Public
	switch req.GetVisibility() {
	case parleyv1.RoomVisibility_ROOM_VISIBILITY_UNSPECIFIED, parleyv1.RoomVisibility_ROOM_VISIBILITY_PUBLIC:
	case parleyv1.RoomVisibility_ROOM_VISIBILITY_PRIVATE:
		vis = store.Private
	default:
		return nil, invalidf("visibility must be PUBLIC or PRIVATE; direct rooms are made by sending to a user")
	}
	if err := s.limits.allowCreate(identity(ctx).User); err != nil {
		return nil, err
	}
	r, err := s.cfg.Store.CreateRoom(ctx, store.Room{Name: req.GetName(), Visibility: vis, CreatedBy: identity(ctx).User})
	if err != nil {
		if errors.Is(err, store.ErrRoomExists) {
			return nil, errorf(errExists, "room %q already exists", req.GetName())
		}
		return nil, err
	}
	// Room lists learn of it without polling: a public room is everyone's,
	// a private one is its creator's (on their other devices) until they
	// add members.
	switch r.Visibility {
	case store.Public:
		s.cfg.Hub.RoomVisible(r.Name, "")
	default:
		s.cfg.Hub.RoomVisible(r.Name, r.CreatedBy)
	}
	return &parleyv1.CreateRoomResponse{Room: roomToProto(r, 0)}, nil
}

// DevLogin implements parleyv1.ChatServiceServer.
func (s *Service) DevLogin(_ context.Context, req *parleyv1.DevLoginRequest) (*parleyv1.DevLoginResponse, error) {
	if !s.cfg.Dev {
		return nil, errorf(errDenied, "dev login is disabled; start parleyd with --dev or use a token from 'parleyd token'")
	}
	if !auth.ValidUser(req.GetUser()) {
		return nil, invalidf("%w", auth.ErrBadUser)
	}
	tok, exp, err := s.cfg.Keys.Mint(req.GetUser(), s.cfg.DevTokenTTL)
	if err != nil {
		return nil, err
	}
	s.log.Warn("dev login issued a token", "user", req.GetUser())
	return &parleyv1.DevLoginResponse{Token: tok, ExpiresAt: timestamppb.New(exp)}, nil
}
