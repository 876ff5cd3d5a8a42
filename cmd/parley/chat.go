package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/cmd/parley/internal/cli"
	parleyv1 "github.com/parleychat/parley/gen/parley/v1"
)

const chatHelp = `Commands:
  /join <room>     join a room (or switch to it) and talk there
  /leave [room]    leave a room (default: the current one)
  /who [room]      who is online, one entry per user with their connections
  /history [n]     the last n messages of the current room (default 20)
  /dm <user>       talk to a user directly (the server makes the room)
  /rooms           the rooms you can see
  /reply <seq> <text>   reply to message [seq] of the current room
  /edit <seq> <text>    replace the text of your message [seq]
  /delete <seq>         delete message [seq]
  /react <seq> <emoji>  react to message [seq]
  /unreact <seq> <emoji> take your reaction back
  /quit            leave (after unsent messages are acknowledged)
Any other line is sent to the current room; start it with // to send a
line that begins with /.`

// Reconnect backoff: doubled after each failed attempt, with jitter.
const (
	backoffMin = 200 * time.Millisecond
	backoffMax = 10 * time.Second
)

func runChat(ctx context.Context, e *cli.Env, args []string) error {
	fs := cli.NewFlagSet(e, "chat", "chat [flags] <room>...", `
Joins the rooms and prints their messages, presence and typing as lines of
"[seq] time #room sender: text", and edits, deletions and reactions as they
arrive ("[seq] time #room * bob edited [12]: text"). Typed lines go to the current room: the first one
given, or the one chosen with /join. If the connection drops, parley
reconnects with backoff and resumes every room after the last seq it printed,
so nothing is lost or printed twice; unacknowledged lines are sent again with
the same client_msg_id, so the server stores them once. Works with stdin as a
terminal or a pipe: at end of input it waits for the acks, then exits.

`+chatHelp)
	pos, err := cli.ParseFlags(fs, args)
	if err != nil {
		return err
	}
	if err := e.Globals.NeedToken(); err != nil {
		return err
	}
	conn, err := e.Globals.Dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	c := newChat(e, conn, pos)
	return c.run(ctx)
}

// chatRoom is what the client knows of a room it wants to be in.
type chatRoom struct {
	lastSeq uint64 // the last seq printed; resume after it
	known   bool   // lastSeq is set (a joined frame was seen)
	fresh   bool   // the next joined frame resets lastSeq (history was lost)
	joined  bool   // a joined frame was seen: later ones are rejoins

	readWant uint64 // the last entry printed, to mark read (see chatread.go)
	readSent uint64 // the last seq marked read, here or on another device
}

// pendingSend is a typed line not yet acknowledged by the server.
type pendingSend struct {
	room, body, id string
	replyTo        uint64 // the seq of the message it replies to, or 0
	sent           bool   // sent on the current stream
}

// refInfo says what a request frame on the current stream was for.
type refInfo struct {
	kind  string // "join", "leave", "send", "mark" or "entry" (an edit, delete or reaction)
	room  string
	send  *pendingSend
	label string // for an entry: the command, e.g. "/edit [12]"
}

// chat is the interactive client. Its run loop is the only goroutine that
// touches its fields, sends on the stream and prints.
type chat struct {
	e        *cli.Env
	me       string // the token's user
	api      parleyv1.ChatServiceClient
	out      io.Writer
	order    []string // rooms wanted, in join order
	rooms    map[string]*chatRoom
	current  string
	switchTo string // a /join whose joined frame makes it current
	dmTo     string // the next line goes directly to this user
	dmRooms  map[string]string

	pending []*pendingSend
	idBase  string
	idSeq   int

	stream  grpc.BidiStreamingClient[parleyv1.JoinRequest, parleyv1.JoinResponse]
	refs    map[string]refInfo
	nextRef int

	lines   chan string
	eof     bool
	quit    bool
	giveUp  time.Time // after end of input or /quit: when to stop waiting for acks
	backoff time.Duration
}

func newChat(e *cli.Env, conn *grpc.ClientConn, rooms []string) *chat {
	var b [4]byte
	_, _ = rand.Read(b[:])
	c := &chat{
		e: e, me: tokenUser(e.Globals.Token), api: parleyv1.NewChatServiceClient(conn), out: e.Stdout,
		rooms: make(map[string]*chatRoom), dmRooms: make(map[string]string), idBase: "cli-" + hex.EncodeToString(b[:]),
		lines: make(chan string), backoff: backoffMin,
	}
	for _, r := range rooms {
		c.want(r)
	}
	if len(c.order) > 0 {
		c.current = c.order[0]
	}
	return c
}

func (c *chat) want(room string) {
	if _, ok := c.rooms[room]; ok {
		return
	}
	c.rooms[room] = &chatRoom{}
	c.order = append(c.order, room)
}

func (c *chat) forget(room string) {
	delete(c.rooms, room)
	kept := c.pending[:0]
	for _, p := range c.pending {
		if p.room == room {
			c.warn("not sent to #%s: %q", room, p.body)
			continue
		}
		kept = append(kept, p)
	}
	clear(c.pending[len(kept):])
	c.pending = kept
	for i, r := range c.order {
		if r == room {
			c.order = append(c.order[:i], c.order[i+1:]...)
			break
		}
	}
	if c.current == room {
		c.current = ""
		if len(c.order) > 0 {
			c.current = c.order[0]
		}
	}
}

// run reads input and keeps a stream open until /quit, end of input, a
// fatal error or ctx ends.
func (c *chat) run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go c.readLines(ctx)
	c.info("type a line to send it to the current room; /help lists commands")
	for {
		err := c.session(ctx)
		if c.done() || ctx.Err() != nil {
			return c.finish()
		}
		if fatal(err) {
			c.warn("disconnected: %s", cli.Describe(err))
			return err
		}
		if err := c.wait(ctx, err); err != nil {
			return err
		}
		if c.done() || ctx.Err() != nil {
			return c.finish()
		}
	}
}

// fatal reports whether a stream error should end the client rather than
// trigger a reconnect.
func fatal(err error) bool {
	switch status.Code(err) {
	case codes.Unauthenticated, codes.PermissionDenied, codes.Unimplemented, codes.InvalidArgument:
		return true
	}
	return false
}

// done reports whether the client should stop: the user quit or input
// ended, and every line was acknowledged or the wait for that is over.
func (c *chat) done() bool {
	if !c.quit && !c.eof {
		return false
	}
	return len(c.pending) == 0 || time.Now().After(c.giveUp)
}

func (c *chat) finish() error {
	if n := len(c.pending); n > 0 {
		c.warn("%d message(s) were not acknowledged and may not have been sent", n)
		return cli.ErrFailed
	}
	return nil
}

// wait sleeps for the reconnect backoff while still taking input.
func (c *chat) wait(ctx context.Context, cause error) error {
	d := time.Duration(float64(c.backoff) * (0.8 + 0.4*mrand.Float64()))
	c.backoff = min(c.backoff*2, backoffMax)
	c.warn("connection lost (%s); reconnecting in %.1fs", cli.Describe(cause), d.Seconds())
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			return nil
		case line, ok := <-c.lines:
			c.input(ctx, line, ok)
			if c.done() {
				return nil
			}
		}
	}
}

func (c *chat) readLines(ctx context.Context) {
	sc := bufio.NewScanner(c.e.Stdin)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		select {
		case c.lines <- strings.TrimRight(sc.Text(), "\r"):
		case <-ctx.Done():
			return
		}
	}
	close(c.lines)
}

// session opens one Join stream, rejoins every room, resends what is
// unacknowledged, and serves it until it ends.
func (c *chat) session(ctx context.Context) error {
	sctx, cancel := context.WithCancel(cli.WithAuth(ctx, c.e.Globals.Token))
	defer cancel()
	stream, err := c.api.Join(sctx)
	if err != nil {
		return err
	}
	c.stream, c.refs = stream, make(map[string]refInfo)
	defer func() { c.stream = nil }()
	events := make(chan *parleyv1.JoinResponse, 64)
	ended := make(chan error, 1)
	go func() {
		for {
			ev, err := stream.Recv()
			if err != nil {
				ended <- err
				return
			}
			select {
			case events <- ev:
			case <-sctx.Done():
				return
			}
		}
	}()
	for _, room := range c.order {
		c.sendJoin(room)
	}
	for _, p := range c.pending {
		p.sent = false
	}
	c.flushPending()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-ended:
			return err
		case ev := <-events:
			c.event(ctx, ev)
		case line, ok := <-c.lines:
			c.input(ctx, line, ok)
		case <-tick.C:
			c.flushPending() // resends lines refused with a retryable code
			c.sendMarks()
		}
		if c.done() {
			c.sendMarks()
			return nil
		}
	}
}

// request sends a frame on the current stream; a failed send ends the
// stream, which the reader reports.
func (c *chat) request(info refInfo, req *parleyv1.JoinRequest) {
	if c.stream == nil {
		return
	}
	c.nextRef++
	req.Ref = itoa(uint64(c.nextRef))
	c.refs[req.Ref] = info
	_ = c.stream.Send(req)
}

func (c *chat) sendJoin(room string) {
	st := c.rooms[room]
	j := &parleyv1.JoinRequest_JoinRoom{Room: room}
	if st != nil && st.known && !st.fresh {
		seq := st.lastSeq
		j.AfterSeq = &seq
	}
	c.request(refInfo{kind: "join", room: room}, &parleyv1.JoinRequest{Frame: &parleyv1.JoinRequest_Join{Join: j}})
}

func (c *chat) flushPending() {
	for _, p := range c.pending {
		if p.sent || c.stream == nil {
			continue
		}
		if _, ok := c.rooms[p.room]; !ok {
			continue // sent after its room is joined again
		}
		p.sent = true
		c.request(refInfo{kind: "send", room: p.room, send: p},
			&parleyv1.JoinRequest{Frame: &parleyv1.JoinRequest_Send{Send: &parleyv1.JoinRequest_Post{Room: p.room, Body: p.body, ClientMsgId: p.id, ReplyToSeq: p.replyTo}}})
	}
}

func (c *chat) dropPending(p *pendingSend) {
	for i, q := range c.pending {
		if q == p {
			c.pending = append(c.pending[:i], c.pending[i+1:]...)
			if c.eof || c.quit {
				c.giveUp = time.Now().Add(c.e.Globals.Timeout)
			}
			return
		}
	}
}

// input handles one typed line; ok is false at end of input.
func (c *chat) input(ctx context.Context, line string, ok bool) {
	if !ok {
		c.lines = nil // a nil channel is never ready again
		c.eof, c.giveUp = true, time.Now().Add(c.e.Globals.Timeout)
		return
	}
	if strings.TrimSpace(line) == "" {
		return
	}
	if strings.HasPrefix(line, "/") && !strings.HasPrefix(line, "//") {
		c.command(ctx, line)
		return
	}
	line = strings.TrimPrefix(line, "/")
	if c.dmTo != "" {
		c.sendDirect(ctx, line)
		return
	}
	c.post(line, 0)
}

// post queues line for the current room, a reply to replyTo unless it is 0.
func (c *chat) post(line string, replyTo uint64) {
	if c.current == "" {
		c.warn("you are in no room: /join <room> first")
		return
	}
	c.idSeq++
	p := &pendingSend{room: c.current, body: line, id: fmt.Sprintf("%s-%d", c.idBase, c.idSeq), replyTo: replyTo}
	c.pending = append(c.pending, p)
	c.flushPending()
}

func (c *chat) command(ctx context.Context, line string) {
	f := strings.Fields(line)
	arg := func(i int) string {
		if i < len(f) {
			return f[i]
		}
		return ""
	}
	switch f[0] {
	case "/join":
		c.cmdJoin(arg(1))
	case "/leave":
		c.cmdLeave(arg(1))
	case "/who":
		c.cmdWho(ctx, arg(1))
	case "/history":
		c.cmdHistory(ctx, arg(1))
	case "/dm":
		c.cmdDM(arg(1))
	case "/rooms":
		c.cmdRooms(ctx)
	case "/reply", "/edit", "/delete", "/react", "/unreact":
		c.cmdEntry(f[0], strings.TrimSpace(strings.TrimPrefix(line, f[0])))
	case "/quit", "/exit":
		c.quit, c.giveUp = true, time.Now().Add(c.e.Globals.Timeout)
	case "/help":
		c.print("%s", chatHelp)
	default:
		c.warn("unknown command %s; /help lists them", f[0])
	}
}

func (c *chat) cmdJoin(room string) {
	if room == "" {
		c.warn("usage: /join <room>")
		return
	}
	c.dmTo = ""
	if _, ok := c.rooms[room]; ok {
		c.current = room
		c.info("talking in #%s", room)
		return
	}
	c.want(room)
	c.switchTo = room
	c.sendJoin(room)
}

func (c *chat) cmdLeave(room string) {
	if room == "" {
		room = c.current
	}
	if _, ok := c.rooms[room]; !ok {
		c.warn("you are not in #%s", room)
		return
	}
	c.request(refInfo{kind: "leave", room: room},
		&parleyv1.JoinRequest{Frame: &parleyv1.JoinRequest_Leave{Leave: &parleyv1.JoinRequest_LeaveRoom{Room: room}}})
	c.forget(room)
	c.info("left #%s%s", room, c.whereNow())
}

func (c *chat) whereNow() string {
	if c.current == "" {
		return "; you are in no room now (/join <room>)"
	}
	return "; talking in #" + c.current
}

func (c *chat) cmdWho(ctx context.Context, room string) {
	if room == "" {
		room = c.current
	}
	if room == "" {
		c.warn("usage: /who <room>")
		return
	}
	cctx, cancel := c.e.Globals.UnaryCtx(ctx)
	defer cancel()
	resp, err := c.api.ListPresence(cctx, &parleyv1.ListPresenceRequest{Room: room})
	if err != nil {
		c.warn("/who: %s", cli.Describe(err))
		return
	}
	var who []string
	for _, p := range resp.GetPresence() {
		who = append(who, presenceLabel(p))
	}
	online := max(len(who), int(resp.GetOnlineCount()))
	more := ""
	if resp.GetNextPageToken() != "" { // a big room: the first page
		more = fmt.Sprintf(", and %d more", online-len(who))
	}
	c.info("online in #%s (%d): %s%s", room, online, strings.Join(who, ", "), more)
}

// presenceLabel is a user with their connections' client names.
func presenceLabel(p *parleyv1.Presence) string {
	var clients []string
	for _, m := range p.GetMetas() {
		name := m.GetClient()
		if name == "" {
			name = "?"
		}
		clients = append(clients, name)
	}
	return fmt.Sprintf("%s (%s)", p.GetUser(), strings.Join(clients, ", "))
}

func (c *chat) cmdHistory(ctx context.Context, n string) {
	if c.current == "" {
		c.warn("you are in no room: /join <room> first")
		return
	}
	limit := 20
	if n != "" {
		if _, err := fmt.Sscan(n, &limit); err != nil || limit < 1 {
			c.warn("usage: /history [n], n at least 1")
			return
		}
	}
	msgs, err := fetchHistory(ctx, c.e.Globals, c.api, c.current, historyFlags{limit: limit})
	if err != nil {
		c.warn("/history: %s", cli.Describe(err))
		return
	}
	c.info("last %d message(s) of #%s:", len(msgs), c.current)
	for i := len(msgs) - 1; i >= 0; i-- {
		c.printMessage(msgs[i])
	}
}

// cmdDM starts a direct conversation with user: the next line typed is
// sent with SendMessage's to_user, and the server answers with the direct
// room it created or found, which the client then joins. There is no
// client-side naming scheme: the room's name comes from the server.
func (c *chat) cmdDM(user string) {
	if user == "" {
		c.warn("usage: /dm <user>")
		return
	}
	if room, ok := c.dmRooms[user]; ok {
		c.cmdJoin(room)
		return
	}
	c.dmTo = user
	c.info("type a line to send it to %s directly (/join <room> to go back)", user)
}

// sendDirect sends line to c.dmTo, then joins the direct room the server
// names so that the conversation goes on there.
func (c *chat) sendDirect(ctx context.Context, line string) {
	user := c.dmTo
	c.dmTo = ""
	c.idSeq++
	req := &parleyv1.SendMessageRequest{ToUser: user, Body: line, ClientMsgId: fmt.Sprintf("%s-%d", c.idBase, c.idSeq)}
	var resp *parleyv1.SendMessageResponse
	var err error
	for attempt := 0; attempt < 3; attempt++ { // same client_msg_id: a retry stores nothing twice
		cctx, cancel := c.e.Globals.UnaryCtx(ctx)
		resp, err = c.api.SendMessage(cctx, req)
		cancel()
		if err == nil || !retryable(status.Code(err)) {
			break
		}
	}
	if err != nil {
		c.warn("/dm %s: %s", user, cli.Describe(err))
		return
	}
	m := resp.GetMessage()
	c.dmRooms[user] = m.GetRoom()
	if _, ok := c.rooms[m.GetRoom()]; !ok {
		c.want(m.GetRoom())
		// Resume just before the message, so it is printed from the room.
		c.rooms[m.GetRoom()].lastSeq, c.rooms[m.GetRoom()].known = m.GetSeq()-1, true
		c.sendJoin(m.GetRoom())
	}
	c.switchTo = m.GetRoom()
}

func (c *chat) cmdRooms(ctx context.Context) {
	cctx, cancel := c.e.Globals.UnaryCtx(ctx)
	defer cancel()
	resp, err := c.api.ListRooms(cctx, &parleyv1.ListRoomsRequest{PageSize: 200})
	if err != nil {
		c.warn("/rooms: %s", cli.Describe(err))
		return
	}
	var names []string
	for _, r := range resp.GetRooms() {
		names = append(names, fmt.Sprintf("#%s (%d online, %s)", r.GetName(), r.GetOnlineCount(), unreadText(r.GetUnreadCount(), r.GetMentionCount())))
	}
	c.info("rooms: %s", strings.Join(names, ", "))
}

// event handles one frame from the server.
func (c *chat) event(ctx context.Context, ev *parleyv1.JoinResponse) {
	switch e := ev.GetEvent().(type) {
	case *parleyv1.JoinResponse_Reply:
		c.reply(e.Reply)
	case *parleyv1.JoinResponse_Joined:
		c.joined(e.Joined)
	case *parleyv1.JoinResponse_Message:
		c.message(e.Message)
	case *parleyv1.JoinResponse_PresenceDiff:
		c.presence(e.PresenceDiff)
	case *parleyv1.JoinResponse_Typing:
		if t := e.Typing; t.GetActive() {
			if _, ok := c.rooms[t.GetRoom()]; ok {
				c.print("%s #%s %s is typing…", clock(time.Now()), t.GetRoom(), t.GetUser())
			}
		}
	case *parleyv1.JoinResponse_Edit:
		c.edit(e.Edit)
	case *parleyv1.JoinResponse_Delete:
		c.deleted(e.Delete)
	case *parleyv1.JoinResponse_ReactionAdded:
		c.reaction(e.ReactionAdded, true)
	case *parleyv1.JoinResponse_ReactionRemoved:
		c.reaction(e.ReactionRemoved, false)
	case *parleyv1.JoinResponse_ReadMarker:
		c.readMarker(e.ReadMarker)
	case *parleyv1.JoinResponse_Receipts:
		for _, r := range e.Receipts.GetReceipts() {
			c.receipt(r)
		}
	case *parleyv1.JoinResponse_Replayed:
		// Stored messages are done; live ones follow. Nothing to show.
	default:
		// A kind of event this client does not know (newer than it): skip
		// it, as docs/clients.md asks. Its seq is not readable here, so the
		// room's position stays at the last entry known.
	}
}

func (c *chat) reply(r *parleyv1.Reply) {
	info, ok := c.refs[r.GetRef()]
	if !ok {
		return
	}
	delete(c.refs, r.GetRef())
	code := codes.Code(r.GetCode())
	switch info.kind {
	case "send":
		c.sendReply(info.send, code, r.GetError())
	case "join":
		c.joinReply(info.room, code, r.GetError())
	case "leave":
		if code != codes.OK && code != codes.FailedPrecondition {
			c.warn("leave #%s: %s: %s", info.room, code, r.GetError())
		}
	case "mark":
		if code != codes.OK {
			c.warn("marking #%s read: %s: %s", info.room, code, r.GetError())
		}
	case "entry":
		switch {
		case code != codes.OK:
			c.warn("%s in #%s: %s: %s", info.label, info.room, code, r.GetError())
		case r.GetSeq() == 0:
			c.info("%s in #%s: nothing changed", info.label, info.room)
		}
	}
}

func (c *chat) sendReply(p *pendingSend, code codes.Code, msg string) {
	switch {
	case code == codes.OK:
		c.dropPending(p)
		c.backoff = backoffMin
	case retryable(code):
		p.sent = false // the ticker sends it again with the same id
	default:
		c.warn("not sent to #%s (%s: %s): %q", p.room, code, msg, p.body)
		c.dropPending(p)
	}
}

func retryable(code codes.Code) bool {
	switch code {
	case codes.Unavailable, codes.ResourceExhausted, codes.Aborted, codes.Internal, codes.DeadlineExceeded, codes.Unknown:
		return true
	}
	return false
}

func (c *chat) joinReply(room string, code codes.Code, msg string) {
	st, ok := c.rooms[room]
	switch {
	case code == codes.OK || !ok:
	case code == codes.OutOfRange:
		// The server's history ends before what we printed: it lost data
		// (a memory store restarted). Start again from its head.
		c.warn("#%s restarted on the server (%s); following it from its newest message", room, msg)
		st.fresh = true
		c.sendJoin(room)
	case code == codes.FailedPrecondition:
		// Already joined on this stream: nothing to do.
	default:
		c.warn("cannot join #%s: %s: %s", room, code, msg)
		c.forget(room)
		if c.switchTo == room {
			c.switchTo = ""
		}
	}
}

func (c *chat) joined(j *parleyv1.Joined) {
	st, ok := c.rooms[j.GetRoom()]
	if !ok {
		return
	}
	first := !st.joined
	st.joined = true
	if !st.known || st.fresh {
		st.lastSeq, st.known, st.fresh = j.GetHeadSeq(), true, false
	}
	c.backoff = backoffMin
	if c.switchTo == j.GetRoom() {
		c.current, c.switchTo = j.GetRoom(), ""
	}
	var who []string
	for _, p := range j.GetPresence() {
		who = append(who, p.GetUser())
	}
	verb := "rejoined"
	if first {
		verb = "joined"
	}
	read := ""
	if n := j.GetLastReadSeq(); n > 0 {
		st.readSent = max(st.readSent, n)
		read = fmt.Sprintf("; read up to [%d]", n)
	}
	c.info("%s #%s: %d online (%s)%s%s", verb, j.GetRoom(), len(who), strings.Join(who, ", "), read, c.whereNow())
	c.flushPending()
}

// advance moves room's position to seq, an entry of any kind, and
// reports whether the entry is new (not of a room we left, not printed).
func (c *chat) advance(room string, seq uint64) bool {
	st, ok := c.rooms[room]
	if !ok || (st.known && seq <= st.lastSeq) {
		return false
	}
	st.lastSeq, st.known = seq, true
	c.markPrinted(room, seq)
	return true
}

func (c *chat) message(m *parleyv1.Message) {
	if c.advance(m.GetRoom(), m.GetSeq()) {
		c.printMessage(m)
	}
}

// printMessage prints a message: as sent (a live or replayed event), or as
// it is now (from ListMessages, with its edits, deletion and reactions).
func (c *chat) printMessage(m *parleyv1.Message) {
	if m.GetBody() == "" && !m.GetDeleted() {
		// Bodies are never empty when sent: a replayed message whose text
		// a later delete erased.
		m = proto.CloneOf(m)
		m.Deleted = true
	}
	c.print("[%d] %s #%s %s", m.GetSeq(), clock(m.GetSentAt().AsTime()), m.GetRoom(), messageText(m))
}

func (c *chat) edit(ed *parleyv1.MessageEdit) {
	if !c.advance(ed.GetRoom(), ed.GetSeq()) {
		return
	}
	text := ed.GetBody()
	if text == "" {
		text = "(erased: the message was deleted since)"
	}
	c.print("[%d] %s #%s * %s edited [%d]: %s", ed.GetSeq(), clock(ed.GetSentAt().AsTime()), ed.GetRoom(), ed.GetSender(), ed.GetTargetSeq(), text)
}

func (c *chat) deleted(d *parleyv1.MessageDelete) {
	if c.advance(d.GetRoom(), d.GetSeq()) {
		c.print("[%d] %s #%s * %s deleted [%d]", d.GetSeq(), clock(d.GetSentAt().AsTime()), d.GetRoom(), d.GetSender(), d.GetTargetSeq())
	}
}

func (c *chat) reaction(r *parleyv1.Reaction, added bool) {
	if !c.advance(r.GetRoom(), r.GetSeq()) {
		return
	}
	verb, prep := "reacted", "to"
	if !added {
		verb, prep = "took back", "on"
	}
	c.print("[%d] %s #%s * %s %s %s %s [%d]", r.GetSeq(), clock(r.GetSentAt().AsTime()), r.GetRoom(), r.GetSender(), verb, r.GetEmoji(), prep, r.GetTargetSeq())
}

// cmdEntry handles /reply, /edit, /delete, /react and /unreact, whose
// args are "<seq>" and, except for /delete, a text or an emoji. They act
// on the current room; all but /reply go as frames of the stream, whose
// events then show what changed.
func (c *chat) cmdEntry(cmd, args string) {
	seqArg, rest, _ := strings.Cut(args, " ")
	rest = strings.TrimSpace(rest)
	usage := map[string]string{
		"/reply": "/reply <seq> <text>", "/edit": "/edit <seq> <text>", "/delete": "/delete <seq>",
		"/react": "/react <seq> <emoji>", "/unreact": "/unreact <seq> <emoji>",
	}[cmd]
	seq, err := strconv.ParseUint(seqArg, 10, 64)
	if err != nil || seq == 0 || (cmd == "/delete") != (rest == "") {
		c.warn("usage: %s", usage)
		return
	}
	if c.current == "" {
		c.warn("you are in no room: /join <room> first")
		return
	}
	if cmd == "/reply" {
		c.post(rest, seq)
		return
	}
	if c.stream == nil {
		c.warn("%s: not connected; try again once rejoined", cmd)
		return
	}
	room := c.current
	var req *parleyv1.JoinRequest
	switch cmd {
	case "/edit":
		req = &parleyv1.JoinRequest{Frame: &parleyv1.JoinRequest_Edit{Edit: &parleyv1.JoinRequest_EditMessage{Room: room, Seq: seq, Body: rest}}}
	case "/delete":
		req = &parleyv1.JoinRequest{Frame: &parleyv1.JoinRequest_Delete{Delete: &parleyv1.JoinRequest_DeleteMessage{Room: room, Seq: seq}}}
	case "/react":
		req = &parleyv1.JoinRequest{Frame: &parleyv1.JoinRequest_React_{React: &parleyv1.JoinRequest_React{Room: room, Seq: seq, Emoji: rest}}}
	case "/unreact":
		req = &parleyv1.JoinRequest{Frame: &parleyv1.JoinRequest_Unreact{Unreact: &parleyv1.JoinRequest_React{Room: room, Seq: seq, Emoji: rest}}}
	}
	c.request(refInfo{kind: "entry", room: room, label: fmt.Sprintf("%s [%d]", cmd, seq)}, req)
}

func (c *chat) presence(d *parleyv1.PresenceDiff) {
	if _, ok := c.rooms[d.GetRoom()]; !ok {
		return
	}
	now := clock(time.Now())
	for _, p := range d.GetJoins() {
		c.print("%s #%s → %s joined (%s)", now, d.GetRoom(), p.GetUser(), clientsOf(p))
	}
	for _, p := range d.GetLeaves() {
		c.print("%s #%s ← %s left (%s)", now, d.GetRoom(), p.GetUser(), clientsOf(p))
	}
}

func clientsOf(p *parleyv1.Presence) string {
	var names []string
	for _, m := range p.GetMetas() {
		n := m.GetClient()
		if n == "" {
			n = "unnamed client"
		}
		names = append(names, n)
	}
	return strings.Join(names, ", ")
}

func clock(t time.Time) string { return t.Local().Format("15:04:05") }

func (c *chat) print(format string, args ...any) {
	fmt.Fprintf(c.out, format+"\n", args...)
}

func (c *chat) info(format string, args ...any) { c.print("* "+format, args...) }

func (c *chat) warn(format string, args ...any) { c.print("! "+format, args...) }
