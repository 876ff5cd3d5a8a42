// Command go is a small Parley client in Go, built on the generated code in
// gen/parley/v1. It joins one room over a Join stream, prints the room's
// messages, their edits, deletes and reactions, and presence, sends each
// line of standard input as a message, and when the connection drops it
// reconnects and resumes the room after the last seq it printed, so nothing
// is lost or printed twice. Unacked
// lines are sent again with the same client_msg_id, so the server stores
// each one once.
//
//	go run ./examples/go --dev-user alice --room lobby
//
// With --json it prints one JSON object per event; with --send N it sends N
// messages of its own after joining; with --expect M it exits once it has
// received M messages. See examples/README.md.
package main

import (
	"bufio"
	"cmp"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	parleyv1 "github.com/parleychat/parley/gen/parley/v1"
)

// flowWindow fixes grpc-go's HTTP/2 flow-control windows. Setting them turns
// off its BDP estimator, whose PING after every burst of data roughly
// doubles the server's CPU per delivered message (docs/clients.md).
const flowWindow = 1 << 20

// Reconnect backoff, doubled after each failed attempt, with jitter.
const (
	backoffMin = 200 * time.Millisecond
	backoffMax = 5 * time.Second
)

type config struct {
	addr, token, devUser, room, name string
	tls, json                        bool
	after                            int64 // -1: live messages only
	send, expect                     int
}

func main() {
	var cfg config
	flag.StringVar(&cfg.addr, "addr", envOr("PARLEY_ADDR", "127.0.0.1:8080"), "server address host:port (env PARLEY_ADDR)")
	flag.StringVar(&cfg.token, "token", "", "bearer token (default: env PARLEY_TOKEN)")
	flag.StringVar(&cfg.devUser, "dev-user", "", "without a token: log in as this user through DevLogin (a --dev server only)")
	flag.StringVar(&cfg.room, "room", "lobby", "room to join")
	flag.StringVar(&cfg.name, "name", "example-go", "client name other users see in presence (the parley-client header)")
	flag.BoolVar(&cfg.tls, "tls", false, "connect with TLS, verifying the server against the system's roots")
	flag.Int64Var(&cfg.after, "after", -1, "on the first join, replay stored messages after this seq (0: all); -1: live only")
	flag.IntVar(&cfg.send, "send", 0, "after joining, send this many messages of our own")
	flag.IntVar(&cfg.expect, "expect", 0, "exit after receiving this many messages (0: at end of input)")
	flag.BoolVar(&cfg.json, "json", false, "print one JSON object per event instead of text")
	flag.Parse()
	if cfg.token == "" {
		cfg.token = os.Getenv("PARLEY_TOKEN")
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, cfg)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", describe(err))
		os.Exit(1)
	}
}

func run(ctx context.Context, cfg config) error {
	creds := insecure.NewCredentials()
	if cfg.tls {
		creds = credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12})
	}
	conn, err := grpc.NewClient(cfg.addr,
		grpc.WithTransportCredentials(creds),
		grpc.WithInitialWindowSize(flowWindow),
		grpc.WithInitialConnWindowSize(flowWindow),
		// grpc-go's default reconnect backoff grows to 120 s; a chat should
		// be back within seconds of its server.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: backoffMax},
			MinConnectTimeout: 5 * time.Second,
		}))
	if err != nil {
		return err
	}
	defer conn.Close()
	api := parleyv1.NewChatServiceClient(conn)
	if cfg.token == "" {
		if cfg.devUser == "" {
			return errors.New("no token: pass --token, set PARLEY_TOKEN, or use --dev-user NAME on a --dev server")
		}
		if cfg.token, err = devLogin(ctx, api, cfg.devUser); err != nil {
			return err
		}
	}
	c := newClient(cfg, api)
	go c.readLines(ctx, os.Stdin)
	return c.run(ctx)
}

func devLogin(ctx context.Context, api parleyv1.ChatServiceClient, user string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := api.DevLogin(ctx, &parleyv1.DevLoginRequest{User: user})
	if err != nil {
		return "", fmt.Errorf("dev login: %w", err)
	}
	return resp.GetToken(), nil
}

// outgoing is a message not yet acknowledged by the server.
type outgoing struct {
	body, id string
	sent     bool // sent on the current stream, reply awaited
}

// client is the chat state. Only its run loop touches it, so the loop is
// also the only goroutine that sends on the stream, as grpc-go requires.
type client struct {
	cfg config
	api parleyv1.ChatServiceClient
	out *json.Encoder

	lastSeq  uint64 // the last seq printed; resume after it
	resume   bool   // lastSeq is set: rejoin with after_seq
	received int
	joins    int

	pending []*outgoing
	idBase  string
	idSeq   int
	retry   <-chan time.Time // set while a refused send waits to be retried

	refs    map[string]*outgoing // the current stream's unanswered sends, by ref
	nextRef int

	online map[string]map[string]string // user -> conn id -> client name
	seen   map[string]map[string]bool   // every user and client name seen online

	lines chan string
	eof   bool
}

func newClient(cfg config, api parleyv1.ChatServiceClient) *client {
	var b [4]byte
	_, _ = rand.Read(b[:])
	c := &client{
		cfg: cfg, api: api, out: json.NewEncoder(os.Stdout),
		idBase: cfg.name + "-" + hex.EncodeToString(b[:]),
		online: map[string]map[string]string{}, seen: map[string]map[string]bool{},
		lines: make(chan string),
	}
	if cfg.after >= 0 {
		c.lastSeq, c.resume = uint64(cfg.after), true
	}
	// Sent right after the first join frame, which the server handles first.
	for i := 1; i <= cfg.send; i++ {
		c.queue(fmt.Sprintf("%s message %d", cfg.name, i))
	}
	return c
}

func (c *client) readLines(ctx context.Context, r io.Reader) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		select {
		case c.lines <- sc.Text():
		case <-ctx.Done():
			return
		}
	}
	close(c.lines)
}

// run keeps a Join stream open, reconnecting with backoff, until the
// client is done or a fatal error ends it.
func (c *client) run(ctx context.Context) error {
	delay := backoffMin
	for {
		joinsBefore := c.joins
		err := c.session(ctx)
		if fatal(err) {
			return err
		}
		if c.done() {
			c.printFinal()
			return nil
		}
		if ctx.Err() != nil {
			return nil
		}
		if c.joins > joinsBefore {
			delay = backoffMin // the stream worked for a while
		}
		d := time.Duration(float64(delay) * (0.8 + 0.4*mrand.Float64()))
		delay = min(2*delay, backoffMax)
		c.status("reconnecting", fmt.Sprintf("connection lost (%s); reconnecting in %v", describe(err), d.Round(time.Millisecond)))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(d):
		}
	}
}

// fatal reports whether an error that ended a stream should end the client
// rather than cause a reconnect: retrying cannot fix these.
func fatal(err error) bool {
	switch status.Code(err) {
	case codes.Unauthenticated, codes.PermissionDenied, codes.InvalidArgument, codes.NotFound, codes.Unimplemented:
		return true
	}
	return false
}

// session opens one Join stream, joins the room (resuming after the last
// seq seen), resends unacknowledged messages, and serves the stream until
// it ends.
func (c *client) session(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+c.cfg.token, "parley-client", c.cfg.name)
	stream, err := c.api.Join(ctx)
	if err != nil {
		return err
	}
	events := make(chan *parleyv1.JoinResponse)
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
			case <-ctx.Done():
				return
			}
		}
	}()

	c.refs = map[string]*outgoing{}
	clear(c.online)
	join := &parleyv1.JoinRequest_JoinRoom{Room: c.cfg.room}
	if c.resume {
		after := c.lastSeq
		join.AfterSeq = &after
	}
	c.request(stream, &parleyv1.JoinRequest{Frame: &parleyv1.JoinRequest_Join{Join: join}})
	// Frames are handled in order, so sends after the join frame go to a
	// joined room.
	for _, p := range c.pending {
		p.sent = false
	}
	c.flush(stream)

	for !c.done() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-ended:
			return err
		case ev := <-events:
			if err := c.event(stream, ev); err != nil {
				return err
			}
		case line, ok := <-c.lines:
			c.input(line, ok)
		case <-c.retry:
			c.retry = nil
		}
		c.flush(stream)
	}
	// Done: half-close, and show what the server still sends before it
	// ends the stream.
	_ = stream.CloseSend()
	timeout := time.After(2 * time.Second)
	for {
		select {
		case ev := <-events:
			_ = c.event(stream, ev)
		case err := <-ended:
			if errors.Is(err, io.EOF) {
				return nil // the server ended the stream with OK
			}
			return err
		case <-timeout:
			return nil
		}
	}
}

// done reports whether the client has what it came for.
func (c *client) done() bool {
	if c.cfg.expect > 0 {
		return c.received >= c.cfg.expect
	}
	return c.eof && len(c.pending) == 0
}

// request sends a frame with a fresh ref. An error here means the stream
// broke; the receiving goroutine reports why.
func (c *client) request(stream parleyv1.ChatService_JoinClient, req *parleyv1.JoinRequest) string {
	c.nextRef++
	req.Ref = fmt.Sprint(c.nextRef)
	_ = stream.Send(req)
	return req.Ref
}

// flush sends every pending message not yet sent on this stream.
func (c *client) flush(stream parleyv1.ChatService_JoinClient) {
	for _, p := range c.pending {
		if p.sent {
			continue
		}
		p.sent = true
		ref := c.request(stream, &parleyv1.JoinRequest{Frame: &parleyv1.JoinRequest_Send{
			Send: &parleyv1.JoinRequest_Post{Room: c.cfg.room, Body: p.body, ClientMsgId: p.id},
		}})
		c.refs[ref] = p
	}
}

// queue adds a message to send; its client_msg_id makes resending it safe.
func (c *client) queue(body string) {
	c.idSeq++
	c.pending = append(c.pending, &outgoing{body: body, id: fmt.Sprintf("%s-%d", c.idBase, c.idSeq)})
}

func (c *client) input(line string, ok bool) {
	if !ok {
		c.lines, c.eof = nil, true // a nil channel is never ready again
		return
	}
	if line = strings.TrimSpace(line); line != "" {
		c.queue(line)
	}
}

// event handles one frame from the server.
func (c *client) event(stream parleyv1.ChatService_JoinClient, ev *parleyv1.JoinResponse) error {
	switch e := ev.GetEvent().(type) {
	case *parleyv1.JoinResponse_Reply:
		return c.reply(stream, e.Reply)
	case *parleyv1.JoinResponse_Joined:
		c.joined(e.Joined)
	case *parleyv1.JoinResponse_Message:
		c.message(e.Message)
	case *parleyv1.JoinResponse_PresenceDiff:
		c.presenceDiff(e.PresenceDiff)
	case *parleyv1.JoinResponse_Typing:
		if !c.cfg.json && e.Typing.GetActive() {
			fmt.Printf("* %s is typing…\n", e.Typing.GetUser())
		}
	case *parleyv1.JoinResponse_Edit:
		ed := e.Edit
		c.entry(ed.GetSeq(), map[string]any{"event": "edit", "room": ed.GetRoom(), "seq": ed.GetSeq(),
			"sender": ed.GetSender(), "target_seq": ed.GetTargetSeq(), "body": ed.GetBody()},
			"%s edited #%d: %s", ed.GetSender(), ed.GetTargetSeq(), ed.GetBody())
	case *parleyv1.JoinResponse_Delete:
		d := e.Delete
		c.entry(d.GetSeq(), map[string]any{"event": "delete", "room": d.GetRoom(), "seq": d.GetSeq(),
			"sender": d.GetSender(), "target_seq": d.GetTargetSeq()},
			"%s deleted #%d", d.GetSender(), d.GetTargetSeq())
	case *parleyv1.JoinResponse_ReactionAdded:
		r := e.ReactionAdded
		c.entry(r.GetSeq(), map[string]any{"event": "reaction_added", "room": r.GetRoom(), "seq": r.GetSeq(),
			"sender": r.GetSender(), "target_seq": r.GetTargetSeq(), "emoji": r.GetEmoji()},
			"%s reacted %s to #%d", r.GetSender(), r.GetEmoji(), r.GetTargetSeq())
	case *parleyv1.JoinResponse_ReactionRemoved:
		r := e.ReactionRemoved
		c.entry(r.GetSeq(), map[string]any{"event": "reaction_removed", "room": r.GetRoom(), "seq": r.GetSeq(),
			"sender": r.GetSender(), "target_seq": r.GetTargetSeq(), "emoji": r.GetEmoji()},
			"%s took back %s on #%d", r.GetSender(), r.GetEmoji(), r.GetTargetSeq())
	case *parleyv1.JoinResponse_Replayed:
		// Stored messages are done; live ones follow.
	default:
		// A kind of event newer than this code (docs/clients.md, "Clients
		// that do not know a kind"): the oneof is unset and its bytes are
		// an unknown field. Skip it and keep reading; the position stays
		// at the last entry known, and the next one moves it past.
	}
	return nil
}

// entry handles an edit, a delete or a reaction: an entry of the room's
// log with its own seq, which moves the position like a message does. A
// client that shows messages would apply it to the message target_seq
// (docs/clients.md, "Building the view"); this one prints it.
func (c *client) entry(seq uint64, asJSON map[string]any, format string, args ...any) {
	if c.resume && seq <= c.lastSeq {
		return // already printed before a reconnect
	}
	c.lastSeq, c.resume = seq, true
	if c.cfg.json {
		c.emit(asJSON)
		return
	}
	fmt.Printf("* #%d "+format+"\n", append([]any{seq}, args...)...)
}

// reply matches an answer to the frame that asked, by ref.
func (c *client) reply(stream parleyv1.ChatService_JoinClient, r *parleyv1.Reply) error {
	code := codes.Code(r.GetCode())
	p, isSend := c.refs[r.GetRef()]
	delete(c.refs, r.GetRef())
	switch {
	case isSend && code == codes.OK:
		c.pending = slices.DeleteFunc(c.pending, func(q *outgoing) bool { return q == p })
	case isSend && (code == codes.ResourceExhausted || code == codes.Unavailable || code == codes.FailedPrecondition):
		// Sending too fast, the server is busy, or the room is being
		// joined again: send it again later, with the same client_msg_id.
		p.sent = false
		if c.retry == nil {
			c.retry = time.After(500 * time.Millisecond)
		}
	case isSend:
		c.pending = slices.DeleteFunc(c.pending, func(q *outgoing) bool { return q == p })
		c.warn("not sent (%s: %s): %q", code, r.GetError(), p.body)
	case code == codes.OutOfRange:
		// The server's history ends before our position: it lost messages
		// (a memory store restarted). Follow it from its newest message.
		c.warn("room %s restarted on the server (%s); following it from now", c.cfg.room, r.GetError())
		c.resume = false
		c.request(stream, &parleyv1.JoinRequest{Frame: &parleyv1.JoinRequest_Join{Join: &parleyv1.JoinRequest_JoinRoom{Room: c.cfg.room}}})
	case code != codes.OK:
		// The join failed (no such room, private room, bad name), or, with
		// an empty ref, the server says we were removed from the room.
		return status.Error(code, r.GetError())
	}
	return nil
}

func (c *client) joined(j *parleyv1.Joined) {
	c.joins++
	var after *uint64 // the position we resumed from, if any
	if c.resume {
		seq := c.lastSeq
		after = &seq
	} else {
		c.lastSeq, c.resume = j.GetHeadSeq(), true
	}
	var users []string
	for _, p := range j.GetPresence() {
		c.track(p)
		users = append(users, p.GetUser())
	}
	if c.cfg.json {
		c.emit(map[string]any{"event": "joined", "room": j.GetRoom(), "head_seq": j.GetHeadSeq(), "after_seq": after, "online": users})
		return
	}
	fmt.Printf("* joined #%s (newest seq %d); online: %s\n", j.GetRoom(), j.GetHeadSeq(), strings.Join(users, ", "))
}

func (c *client) message(m *parleyv1.Message) {
	if c.resume && m.GetSeq() <= c.lastSeq {
		return // already printed before a reconnect
	}
	c.lastSeq, c.resume = m.GetSeq(), true
	c.received++
	if c.cfg.json {
		c.emit(map[string]any{"event": "message", "room": m.GetRoom(), "seq": m.GetSeq(),
			"sender": m.GetSender(), "body": m.GetBody(), "client_msg_id": m.GetClientMsgId(), "reply_to_seq": m.GetReplyToSeq()})
		return
	}
	reply := ""
	if m.GetReplyToSeq() != 0 {
		reply = fmt.Sprintf("(re #%d) ", m.GetReplyToSeq())
	}
	fmt.Printf("#%d [%s] %s: %s%s\n", m.GetSeq(), m.GetSentAt().AsTime().Local().Format("15:04:05"), m.GetSender(), reply, m.GetBody())
}

func (c *client) presenceDiff(d *parleyv1.PresenceDiff) {
	for _, p := range d.GetJoins() {
		c.track(p)
		if !c.cfg.json {
			fmt.Printf("* %s came online (%s)\n", p.GetUser(), clientNames(p))
		}
	}
	for _, p := range d.GetLeaves() {
		for _, m := range p.GetMetas() {
			delete(c.online[p.GetUser()], m.GetConnId())
		}
		if len(c.online[p.GetUser()]) == 0 {
			delete(c.online, p.GetUser())
		}
		if !c.cfg.json {
			fmt.Printf("* %s went away (%s)\n", p.GetUser(), clientNames(p))
		}
	}
	if c.cfg.json {
		c.emit(map[string]any{"event": "presence_diff", "room": d.GetRoom(), "joins": users(d.GetJoins()), "leaves": users(d.GetLeaves())})
	}
}

// track records one user's connections as online.
func (c *client) track(p *parleyv1.Presence) {
	if c.online[p.GetUser()] == nil {
		c.online[p.GetUser()] = map[string]string{}
	}
	if c.seen[p.GetUser()] == nil {
		c.seen[p.GetUser()] = map[string]bool{}
	}
	for _, m := range p.GetMetas() {
		c.online[p.GetUser()][m.GetConnId()] = m.GetClient()
		c.seen[p.GetUser()][m.GetClient()] = true
	}
}

// printFinal prints who was seen online (in --json mode, one line that a
// test can check).
func (c *client) printFinal() {
	seen := map[string][]string{}
	for u, names := range c.seen {
		for n := range names {
			seen[u] = append(seen[u], n)
		}
		slices.Sort(seen[u])
	}
	online := make([]string, 0, len(c.online))
	for u := range c.online {
		online = append(online, u)
	}
	slices.Sort(online)
	if c.cfg.json {
		c.emit(map[string]any{"event": "presence", "room": c.cfg.room, "online": online, "seen": seen})
		return
	}
	fmt.Printf("* online in #%s now: %s\n", c.cfg.room, strings.Join(online, ", "))
}

func (c *client) emit(v map[string]any) { _ = c.out.Encode(v) }

// status reports a change of connection state: to stderr as text, and in
// --json mode also as an event.
func (c *client) status(event, text string) {
	fmt.Fprintln(os.Stderr, "*", text)
	if c.cfg.json {
		c.emit(map[string]any{"event": event, "text": text})
	}
}

func (c *client) warn(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "! "+format+"\n", args...)
}

func users(ps []*parleyv1.Presence) []string {
	out := make([]string, 0, len(ps))
	for _, p := range ps {
		out = append(out, p.GetUser())
	}
	return out
}

func clientNames(p *parleyv1.Presence) string {
	var names []string
	for _, m := range p.GetMetas() {
		names = append(names, cmp.Or(m.GetClient(), "unnamed client"))
	}
	return strings.Join(names, ", ")
}

func envOr(name, dflt string) string { return cmp.Or(os.Getenv(name), dflt) }

// describe shows a gRPC status as its code and message.
func describe(err error) string {
	if st, ok := status.FromError(err); ok {
		return fmt.Sprintf("%s: %s", st.Code(), st.Message())
	}
	return err.Error()
}
