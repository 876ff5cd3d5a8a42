package load

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/parleychat/parley/cmd/parley/internal/cli"
	parleyv1 "github.com/parleychat/parley/gen/parley/v1"
)

// Kinds of Join request a reply answers.
const (
	refJoin = iota + 1
	refLeave
	refSend
	refTyping
)

// soakRef is what a ref asked for.
type soakRef struct {
	kind  int
	room  string
	id    string  // a send's client_msg_id
	after *uint64 // a join's after_seq
}

// joinSession is one Join stream of a user. Its reader goroutine owns
// view; requests may come from the user's goroutine and from the reader
// (resends after a replay), one at a time.
type joinSession struct {
	u      *soakUser
	name   string
	ctx    context.Context
	cancel context.CancelFunc
	stream parleyv1.ChatService_JoinClient
	view   *streamView
	done   chan struct{}
	// joining holds, per room, the after_seq of each join the server has
	// accepted whose joined event has not come yet, in order: the room may
	// be left and joined again before the first joined arrives. Reader only.
	joining map[string][]*uint64

	pauseUntil atomic.Int64 // unix nanoseconds: the reader does not read before

	sendMu  sync.Mutex // one Send at a time
	mu      sync.Mutex // guards refs, nextRef, hist, leaving
	refs    map[string]soakRef
	nextRef int
	hist    map[string][]string // per room, the last few joins and leaves, for violation lines
	leaving map[string]bool     // rooms left on this stream
}

// newJoinSession returns the user's next session, not yet opened.
func newJoinSession(u *soakUser, ctx context.Context, cancel context.CancelFunc) *joinSession {
	name := fmt.Sprintf("%s join #%d", u.name, u.session)
	js := &joinSession{u: u, name: name, ctx: ctx, cancel: cancel, view: u.s.check.stream(name), done: make(chan struct{}),
		refs: make(map[string]soakRef), joining: make(map[string][]*uint64), hist: make(map[string][]string), leaving: make(map[string]bool)}
	js.view.explain = js.history
	return js
}

// openSession opens a Join stream and joins the user's rooms, each from
// the user's position in it (after_seq) if it has one, else live.
func (u *soakUser) openSession(ctx context.Context) {
	u.session++
	sctx, cancel := context.WithCancel(ctx)
	js := newJoinSession(u, sctx, cancel)
	stream, err := u.api.Join(cli.WithAuth(sctx, u.token), grpc.WaitForReady(true))
	if err != nil {
		cancel()
		u.js = nil
		if ctx.Err() == nil {
			u.s.counts.streamOpenFails.Add(1)
		}
		return
	}
	js.stream = stream
	u.js = js
	u.side.Add(1)
	go func() {
		defer u.side.Done()
		js.read()
	}()
	for _, room := range u.want {
		js.join(room)
	}
}

// join asks to join room from where joinFrom says; it reports whether
// that is a resume (after_seq).
func (js *joinSession) join(room string) bool {
	after := js.u.joinFrom(room)
	_ = js.request(soakRef{kind: refJoin, room: room, after: after},
		&parleyv1.JoinRequest{Frame: &parleyv1.JoinRequest_Join{Join: &parleyv1.JoinRequest_JoinRoom{Room: room, AfterSeq: after}}})
	return after != nil
}

// request sends req with a new ref that remembers info.
func (js *joinSession) request(info soakRef, req *parleyv1.JoinRequest) error {
	js.sendMu.Lock()
	defer js.sendMu.Unlock()
	return js.requestLocked(info, req)
}

// requestLocked is request with sendMu held. Lock order: sendMu, then mu.
func (js *joinSession) requestLocked(info soakRef, req *parleyv1.JoinRequest) error {
	js.mu.Lock()
	js.nextRef++
	ref := strconv.Itoa(js.nextRef)
	js.refs[ref] = info
	switch info.kind {
	case refJoin:
		delete(js.leaving, info.room)
		js.noteLocked(info.room, "join ref "+ref)
	case refLeave:
		js.leaving[info.room] = true
		js.noteLocked(info.room, "leave ref "+ref)
	}
	js.mu.Unlock()
	req.Ref = ref
	return js.stream.Send(req)
}

func (js *joinSession) sendPost(room, body, id string) error {
	return js.request(soakRef{kind: refSend, room: room, id: id},
		&parleyv1.JoinRequest{Frame: &parleyv1.JoinRequest_Send{Send: &parleyv1.JoinRequest_Post{Room: room, Body: body, ClientMsgId: id}}})
}

func (js *joinSession) ended() bool {
	select {
	case <-js.done:
		return true
	default:
		return false
	}
}

// stop cancels the stream and waits for its reader.
func (js *joinSession) stop() {
	js.cancel()
	<-js.done
}

// read handles the stream's events until it ends. While the user pauses,
// it does not read: the server's queue for the stream fills.
func (js *joinSession) read() {
	defer close(js.done)
	for {
		if d := time.Until(time.Unix(0, js.pauseUntil.Load())); d > 0 {
			_ = sleepCtx(js.ctx, d)
		}
		ev, err := js.stream.Recv()
		if err != nil {
			js.end(err)
			return
		}
		js.event(ev)
	}
}

func (js *joinSession) event(ev *parleyv1.JoinResponse) {
	switch e := ev.GetEvent().(type) {
	case *parleyv1.JoinResponse_Reply:
		js.reply(e.Reply)
	case *parleyv1.JoinResponse_Joined:
		js.joined(e.Joined)
	case *parleyv1.JoinResponse_Message:
		js.message(e.Message)
	case *parleyv1.JoinResponse_Replayed:
		js.resend(e.Replayed.GetRoom())
	}
}

// joined starts checking a room from the after_seq its join asked for, or
// from the head for a live join.
func (js *joinSession) joined(j *parleyv1.Joined) {
	room := j.GetRoom()
	start := j.GetHeadSeq()
	q := js.joining[room]
	if len(q) == 0 {
		js.u.s.check.violation(violStream, "%s: joined %s without an accepted join", js.name, room)
		return
	}
	if q[0] != nil {
		start = *q[0]
		js.u.s.noteReplay(room, start, j.GetHeadSeq())
	} else {
		js.u.s.heads.see(room, start)
	}
	if js.joining[room] = q[1:]; len(q) == 1 {
		delete(js.joining, room)
	}
	js.mu.Lock()
	js.noteLocked(room, "joined from "+strconv.FormatUint(start, 10))
	js.mu.Unlock()
	js.view.start(room, start)
	js.u.setPosition(room, start)
}

// replayFailed follows the server's notice that a join it accepted could
// not replay the room's history: the stream is out of the room, and joins
// it again from where it was, as docs/clients.md tells clients to.
func (js *joinSession) replayFailed(room, why string) {
	js.u.s.counts.replayFails.Add(1)
	js.mu.Lock()
	js.noteLocked(room, "replay failed: "+why)
	leaving := js.leaving[room]
	js.mu.Unlock()
	js.view.stop(room)
	if leaving {
		return
	}
	var after *uint64 // from the last seq received, as the notice says
	if pos, ok := js.u.position(room); ok {
		after = &pos
	}
	_ = js.request(soakRef{kind: refJoin, room: room, after: after},
		&parleyv1.JoinRequest{Frame: &parleyv1.JoinRequest_Join{Join: &parleyv1.JoinRequest_JoinRoom{Room: room, AfterSeq: after}}})
}

func (js *joinSession) message(m *parleyv1.Message) {
	js.u.s.heads.see(m.GetRoom(), m.GetSeq())
	js.view.message(m.GetRoom(), m.GetSeq())
	if last, ok := js.view.last(m.GetRoom()); ok {
		js.u.setPosition(m.GetRoom(), last)
	}
	if id := m.GetClientMsgId(); m.GetSender() == js.u.name && (js.u.isUnacked(id) || js.u.ledger.has(m.GetRoom(), id)) {
		js.u.ledger.message(js.name, m.GetRoom(), id, m.GetSeq())
	}
}

func (js *joinSession) reply(r *parleyv1.Reply) {
	if r.GetRef() == "" && codes.Code(r.GetCode()) == codes.Unavailable && r.GetRoom() != "" {
		js.replayFailed(r.GetRoom(), r.GetError())
		return
	}
	js.mu.Lock()
	info, ok := js.refs[r.GetRef()]
	delete(js.refs, r.GetRef())
	js.mu.Unlock()
	if !ok {
		js.u.s.check.violation(violStream, "%s: reply to unknown ref %q: %s %s", js.name, r.GetRef(), codes.Code(r.GetCode()), r.GetError())
		return
	}
	if r.GetCode() != 0 {
		js.u.s.check.violation(violStream, "%s: %s of room %s (ref %s) refused: %s: %s (the room on this stream: %s)", js.name, refName(info.kind), info.room,
			r.GetRef(), codes.Code(r.GetCode()), r.GetError(), js.history(info.room))
		return
	}
	switch info.kind {
	case refJoin:
		js.joining[info.room] = append(js.joining[info.room], info.after)
	case refLeave:
		js.mu.Lock()
		js.noteLocked(info.room, "left")
		js.mu.Unlock()
		js.view.stop(info.room)
	case refSend:
		m := r.GetMessage()
		js.u.s.heads.see(m.GetRoom(), m.GetSeq())
		js.view.reply(m.GetRoom(), m.GetSeq())
		js.u.ledger.reply(js.name, m.GetRoom(), m.GetClientMsgId(), m.GetSeq())
		js.u.acked(info.id)
	}
}

// noteLocked adds an entry to room's history on the stream.
func (js *joinSession) noteLocked(room, what string) {
	h := append(js.hist[room], what)
	if len(h) > 10 {
		h = h[len(h)-10:]
	}
	js.hist[room] = h
}

func (js *joinSession) history(room string) string {
	js.mu.Lock()
	defer js.mu.Unlock()
	return strings.Join(js.hist[room], ", ")
}

func refName(kind int) string {
	return [...]string{"?", "join", "leave", "send", "typing"}[kind]
}

// resend sends room's unacknowledged messages again, with their ids, once
// the room's replay is done: each must be stored once, whether or not the
// first attempt was. A room the user has left since is skipped.
func (js *joinSession) resend(room string) {
	js.sendMu.Lock()
	defer js.sendMu.Unlock()
	js.mu.Lock()
	left := js.leaving[room]
	js.mu.Unlock()
	if left {
		return
	}
	for id, body := range js.u.unackedIn(room) {
		js.u.s.counts.retries.Add(1)
		err := js.requestLocked(soakRef{kind: refSend, room: room, id: id},
			&parleyv1.JoinRequest{Frame: &parleyv1.JoinRequest_Send{Send: &parleyv1.JoinRequest_Post{Room: room, Body: body, ClientMsgId: id}}})
		if err != nil {
			return
		}
	}
}

// end records how the stream ended; after a slow-consumer cut-off the
// user resumes from the positions the server gave.
func (js *joinSession) end(err error) {
	lasts := make(map[string]uint64, len(js.view.rooms))
	for room, rv := range js.view.rooms {
		lasts[room] = rv.last
	}
	js.view.stopAll()
	js.u.watchUnacked()
	pos, _ := js.u.endStatus(js.ctx, js.name, err)
	js.u.checkCutPositions(js.name, pos, lasts)
	for room, seq := range pos {
		js.u.setPosition(room, seq)
	}
}
