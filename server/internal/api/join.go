package api

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	parleyv1 "github.com/parleychat/parley/gen/parley/v1"
	"github.com/parleychat/parley/server/internal/hub"
	"github.com/parleychat/parley/server/internal/store"
)

// session is one Join stream's state, used by the goroutine that reads
// the client's frames.
type session struct {
	s       *Service
	stream  grpc.BidiStreamingServer[parleyv1.JoinRequest, parleyv1.JoinResponse]
	conn    *hub.Conn
	user    string
	expires atomic.Int64 // unix nanoseconds; moved by refresh frames

	sends *sends // made by the first send: most streams only receive
}

// sends are a Join stream's sends in flight (see session.pipeline): their
// messages are queued for the store, and the stream's next frames are
// read while they are stored.
type sends struct {
	wg        sync.WaitGroup
	slots     chan struct{} // one per send in flight, up to maxSendsInFlight
	lastReply chan struct{} // closed once the latest send's reply is queued; nil before any
}

// maxSendsInFlight bounds the sends of one Join stream waiting for the
// store; a client with more waits (HTTP/2 flow control holds its frames).
const maxSendsInFlight = 64

// Join implements parleyv1.ChatServiceServer.
func (s *Service) Join(stream grpc.BidiStreamingServer[parleyv1.JoinRequest, parleyv1.JoinResponse]) error {
	ctx := stream.Context()
	id := identity(ctx)
	release, err := s.limits.openStream(id.User)
	if err != nil {
		return err
	}
	defer release()
	sess := &session{s: s, stream: stream, user: id.User}
	sess.expires.Store(id.Expires.UnixNano())
	sess.conn = s.cfg.Hub.Connect(id.User, clientName(ctx), true)
	defer sess.conn.Close()
	s.log.Debug("join stream opened", "user", id.User, "conn", sess.conn.ID)
	st := s.startStream(stream, sess.conn, sess.expiry)
	st.read(ctx, sess.readLoop) // its Recv fails when the client goes
	err = st.wait()
	s.log.Debug("join stream ended", "user", id.User, "conn", sess.conn.ID, "status", statusOf(err).Code())
	return err
}

func (sess *session) expiry() time.Time { return time.Unix(0, sess.expires.Load()) }

// readLoop handles the client's frames in order until the stream ends.
// Each frame is handled on a short-lived goroutine while readLoop waits:
// what a frame does may need a deep stack (a store query for a join), and
// a goroutine keeps the stack it grew to, so the goroutine that waits in
// Recv for most of a stream's life stays at the few KiB that Recv needs.
//
// Sends are pipelined: once a send's message is queued for the store, the
// next frame is read while it is stored, and its reply follows when it is
// (see pipeline). Any other frame first waits for the sends before it, so
// frames still take effect, and are answered, in the order they came.
func (sess *session) readLoop() error {
	ctx := sess.stream.Context()
	defer sess.waitSends() // the replies of the last sends are queued before the stream drains
	for {
		req, err := sess.stream.Recv()
		if err != nil {
			return err
		}
		handled := make(chan error, 1) // per frame: an idle stream holds none
		go func() { handled <- sess.handle(ctx, req) }()
		if err := <-handled; err != nil {
			return err
		}
	}
}

// handle answers one frame with a reply; it returns an error only when the
// connection has ended.
func (sess *session) handle(ctx context.Context, req *parleyv1.JoinRequest) error {
	entry, sends := frameEntry(req, sess.user)
	if !sends {
		sess.waitSends()
	}
	reply := &parleyv1.Reply{Ref: req.GetRef()}
	if err := malformed(req); err != nil {
		return sess.replyInTurn(reply, err)
	}
	if err := validateRef(req.GetRef()); err != nil {
		reply.Ref = cut(req.GetRef(), maxRefBytes)
		return sess.replyInTurn(reply, err)
	}
	if sends {
		reply.Room = entry.Room
		wait, err := sess.send(ctx, entry)
		if err != nil {
			return sess.replyInTurn(reply, err)
		}
		sess.pipeline(reply, wait)
		return nil
	}
	var err error
	switch f := req.GetFrame().(type) {
	case *parleyv1.JoinRequest_Join:
		reply.Room = f.Join.GetRoom()
		if err = sess.join(ctx, f.Join, reply); err == nil {
			return nil // the ack was queued ahead of the room's state
		}
		if replay := (*hub.ReplayError)(nil); errors.As(err, &replay) {
			return sess.replayFailed(reply, replay)
		}
	case *parleyv1.JoinRequest_Leave:
		reply.Room = f.Leave.GetRoom()
		err = sess.leave(f.Leave.GetRoom())
	case *parleyv1.JoinRequest_Typing:
		reply.Room = f.Typing.GetRoom()
		err = sess.typing(f.Typing)
	case *parleyv1.JoinRequest_Refresh:
		err = sess.refresh(f.Refresh.GetToken())
	case *parleyv1.JoinRequest_MarkRead_:
		reply.Room = f.MarkRead.GetRoom()
		err = sess.markRead(ctx, f.MarkRead, reply)
	case *parleyv1.JoinRequest_PresencePage:
		reply.Room = f.PresencePage.GetRoom()
		if err = sess.presencePage(f.PresencePage, reply); err == nil {
			return nil // the reply, with the page, was queued in turn with the room's diffs
		}
	default:
		err = invalidf("frame must set one of join, leave, send, typing, refresh, edit, delete, react, unreact, mark_read, presence_page")
	}
	return sess.reply(reply, err)
}

// pipeline answers a send whose message is queued for the store: on a
// goroutine of its own it waits for the message to be stored and
// delivered, then for the reply of the send before it, and queues its
// reply. It returns at once unless maxSendsInFlight sends are waiting.
func (sess *session) pipeline(reply *parleyv1.Reply, wait func() (hub.Sent, error)) {
	if sess.sends == nil {
		sess.sends = &sends{slots: make(chan struct{}, maxSendsInFlight)}
	}
	ss := sess.sends
	ss.slots <- struct{}{}
	prev, done := ss.lastReply, make(chan struct{})
	ss.lastReply = done
	ss.wg.Add(1)
	go func() {
		defer ss.wg.Done()
		sent, err := wait()
		if prev != nil {
			<-prev
		}
		_ = sess.replySent(reply, sent, err) // fails only once the connection has ended, which ends the stream
		close(done)
		<-ss.slots
	}()
}

// waitSends waits until every send in flight has queued its reply.
func (sess *session) waitSends() {
	if sess.sends != nil {
		sess.sends.wg.Wait()
	}
}

// replyInTurn is reply for a send that failed before its message was
// queued: it still comes after the replies of the sends before it.
func (sess *session) replyInTurn(r *parleyv1.Reply, err error) error {
	if sess.sends != nil && sess.sends.lastReply != nil {
		<-sess.sends.lastReply
	}
	return sess.reply(r, err)
}

// reply queues the answer to a frame, with err's status if it failed.
func (sess *session) reply(r *parleyv1.Reply, err error) error {
	if err != nil {
		st := sess.s.answer(parleyv1.ChatService_Join_FullMethodName, err)
		r.Code, r.Error = int32(st.Code()), st.Message()
		r.Message = nil
		if d := retryDelay(st); d > 0 {
			r.RetryAfter = durationpb.New(d)
		}
	}
	data, merr := proto.Marshal(&parleyv1.JoinResponse{Event: &parleyv1.JoinResponse_Reply{Reply: r}})
	if merr != nil {
		return merr
	}
	return sess.enqueueReply(data)
}

// replayFailed tells the client of a join that was acknowledged but whose
// replay then failed: the join's ref had its answer, so this is a notice
// (a reply without a ref) for the room, which the connection is out of
// again. Nothing is sent when the connection ended, or left the room for
// another reason, which it hears of in its own way.
func (sess *session) replayFailed(r *parleyv1.Reply, e *hub.ReplayError) error {
	if errors.Is(e, hub.ErrNotJoined) || sess.conn.Err() != nil {
		return nil
	}
	r.Ref = ""
	return sess.reply(r, errorf(errUnavailable, "room %q: replaying its messages failed after the join was accepted, so you are out of the room again; join it again with after_seq set to the last seq you received", e.Room))
}

// replySent is reply for a send that was stored (err nil) or failed: the
// stored message's reply carries it as the room's event encoded it; that
// of another kind of entry carries its seq (0 if it changed nothing).
func (sess *session) replySent(r *parleyv1.Reply, sent hub.Sent, err error) error {
	if err != nil {
		return sess.reply(r, err)
	}
	if sent.Message.Kind != store.KindMessage {
		r.Seq = sent.Message.Seq
		return sess.reply(r, nil)
	}
	data, err := sentReply(r, sent)
	if err != nil {
		return err
	}
	return sess.enqueueReply(data)
}

func (sess *session) enqueueReply(data []byte) error {
	if !sess.conn.EnqueueUrgent(hub.Frame{Data: data}) {
		return sess.conn.Err()
	}
	return nil
}

func (sess *session) join(ctx context.Context, j *parleyv1.JoinRequest_JoinRoom, reply *parleyv1.Reply) error {
	if err := sess.s.cfg.Hub.CanJoinMore(sess.conn); err != nil {
		return err
	}
	if _, err := sess.s.access(ctx, sess.user, j.GetRoom()); err != nil {
		return err
	}
	var tail []byte
	if !j.GetQuiet() {
		// A quiet joiner follows the room for its counts, which it has
		// from ListRooms: its joined carries no marker and no receipts,
		// which spares the store a read or two a room.
		var err error
		if tail, err = sess.s.joinedTail(ctx, sess.user, j.GetRoom()); err != nil {
			return err
		}
	}
	ack, err := proto.Marshal(&parleyv1.JoinResponse{Event: &parleyv1.JoinResponse_Reply{Reply: reply}})
	if err != nil {
		return err
	}
	return sess.s.cfg.Hub.Join(ctx, sess.conn, j.GetRoom(), hub.JoinOptions{After: j.AfterSeq, Ack: ack, Tail: tail, Quiet: j.GetQuiet()})
}

func (sess *session) leave(room string) error {
	if err := validateRoom(room); err != nil {
		return err
	}
	return sess.s.cfg.Hub.Leave(sess.conn, room)
}

// send checks a send frame (a message, edit, delete or reaction) and
// queues its entry for the store. The room's access was checked when the
// stream joined it: a member removed since was taken out of it, unless
// this node could not learn of the removal yet (see hub.Hub.CutOff),
// when membership is read again.
func (sess *session) send(ctx context.Context, m store.NewMessage) (wait func() (hub.Sent, error), err error) {
	room := m.Room
	if err := validateRoom(room); err != nil {
		return nil, err
	}
	h := sess.s.cfg.Hub
	held, joined := h.HoldJoined(sess.conn, room)
	if !joined {
		if _, err := sess.s.access(ctx, sess.user, room); err != nil {
			return nil, err
		}
		return nil, errorf(errPrecondition, "join room %q before sending to it on this stream", room)
	}
	if err := sess.s.checkEntry(m); err != nil {
		held.Release()
		return nil, err
	}
	if h.CutOff() {
		if err := sess.s.mayUse(ctx, sess.user, held.Info()); err != nil {
			held.Release()
			return nil, err
		}
	}
	return sess.s.startSend(ctx, held, m, false, sess.conn)
}

func (sess *session) typing(t *parleyv1.JoinRequest_SetTyping) error {
	if err := validateRoom(t.GetRoom()); err != nil {
		return err
	}
	if !sess.s.cfg.Hub.Joined(sess.conn, t.GetRoom()) {
		return fmt.Errorf("room %q: %w", t.GetRoom(), hub.ErrNotJoined)
	}
	return sess.s.typing.typing(sess.conn, t.GetRoom(), t.GetActive())
}

func (sess *session) refresh(token string) error {
	if token == "" {
		return invalidf("refresh needs a token")
	}
	id, err := sess.s.cfg.Keys.Verify(token)
	if err != nil {
		return errorf(errUnauthenticated, "%s", authMessage(err))
	}
	if id.User != sess.user {
		return errorf(errDenied, "refresh token is for another user; a stream keeps its user")
	}
	sess.expires.Store(id.Expires.UnixNano())
	return nil
}

// Subscribe implements parleyv1.ChatServiceServer.
func (s *Service) Subscribe(req *parleyv1.SubscribeRequest, stream grpc.ServerStreamingServer[parleyv1.SubscribeResponse]) error {
	if err := malformed(req); err != nil {
		return err
	}
	ctx := stream.Context()
	id := identity(ctx)
	// Subscribe streams count with the user's Join streams: each holds a
	// connection in the hub and may replay history.
	release, err := s.limits.openStream(id.User)
	if err != nil {
		return err
	}
	defer release()
	cursors := append([]*parleyv1.SubscribeRequest_RoomCursor{{Room: req.GetRoom(), AfterSeq: req.AfterSeq}}, req.GetAdditionalRooms()...)
	for _, c := range cursors {
		if _, err := s.access(ctx, id.User, c.GetRoom()); err != nil {
			return err
		}
	}
	conn := s.cfg.Hub.Connect(id.User, clientName(ctx), false)
	defer conn.Close()
	st := s.startStream(stream, conn, func() time.Time { return id.Expires })
	defer conn.EndWith(ctx)() // nothing reads, so nothing else sees the client go
	// The handler's goroutine joins the rooms (a replay waits for the
	// writer to drain the queue) and then waits: there is nothing to read.
	if err := s.subscribeRooms(ctx, conn, cursors); err != nil {
		conn.End(err)
	}
	return st.wait()
}

func (s *Service) subscribeRooms(ctx context.Context, conn *hub.Conn, cursors []*parleyv1.SubscribeRequest_RoomCursor) error {
	for _, c := range cursors {
		tail, err := s.joinedTail(ctx, conn.User, c.GetRoom())
		if err != nil {
			return err
		}
		if err := s.cfg.Hub.Join(ctx, conn, c.GetRoom(), hub.JoinOptions{After: c.AfterSeq, Tail: tail}); err != nil {
			if errors.Is(err, store.ErrRoomNotFound) {
				return roomNotFound(c.GetRoom())
			}
			return err
		}
	}
	return nil
}
