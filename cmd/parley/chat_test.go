package main

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/creack/pty"
	"google.golang.org/grpc/codes"

	"github.com/parleychat/parley/cmd/parley/internal/cli"
	parleyv1 "github.com/parleychat/parley/gen/parley/v1"
	"github.com/parleychat/parley/server/app"
)

// chatProc is parley chat running as a child process.
type chatProc struct {
	t     *testing.T
	cmd   *exec.Cmd
	in    io.Writer // what the user types
	out   *syncBuffer
	ended chan struct{}
	err   error // from Wait, once ended
}

// parleyCmd returns the test binary re-executed as the parley command.
func parleyCmd(addr, token string, args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], append([]string{"--addr", addr}, args...)...)
	cmd.Env = append(os.Environ(), "PARLEY_TEST_MAIN=1", "PARLEY_TOKEN="+token, "TZ=UTC")
	return cmd
}

// startChatPTY runs parley chat on a pseudo-terminal, as a person would.
func startChatPTY(t *testing.T, addr, token string, rooms ...string) *chatProc {
	t.Helper()
	cmd := parleyCmd(addr, token, append([]string{"chat"}, rooms...)...)
	tty, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 40, Cols: 160})
	if err != nil {
		t.Fatalf("start parley chat on a pty: %v", err)
	}
	p := &chatProc{t: t, cmd: cmd, in: tty, out: &syncBuffer{}, ended: make(chan struct{})}
	go func() { _, _ = io.Copy(p.out, tty) }() // ends with EIO when the child exits
	p.watch()
	t.Cleanup(func() {
		p.kill()
		tty.Close()
	})
	return p
}

// startChatPipes runs parley chat with stdin and stdout as pipes.
func startChatPipes(t *testing.T, addr, token string, rooms ...string) (*chatProc, io.WriteCloser) {
	t.Helper()
	cmd := parleyCmd(addr, token, append([]string{"chat"}, rooms...)...)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &chatProc{t: t, cmd: cmd, in: in, out: &syncBuffer{}, ended: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.watch()
	t.Cleanup(p.kill)
	return p, in
}

func (p *chatProc) watch() {
	go func() {
		p.err = p.cmd.Wait()
		close(p.ended)
	}()
}

func (p *chatProc) kill() {
	select {
	case <-p.ended:
	default:
		_ = p.cmd.Process.Kill()
		<-p.ended
	}
}

// typeLine types a line and presses Enter.
func (p *chatProc) typeLine(line string) {
	p.t.Helper()
	if _, err := io.WriteString(p.in, line+"\r"); err != nil {
		p.t.Fatalf("type %q: %v", line, err)
	}
}

// waitOutput waits until the output contains want.
func (p *chatProc) waitOutput(want string) {
	p.t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !strings.Contains(p.out.String(), want) {
		if time.Now().After(deadline) {
			p.t.Fatalf("parley chat did not print %q within %v; it printed:\n%s", want, waitTimeout, p.out.String())
		}
		time.Sleep(5 * time.Millisecond) // polling interval
	}
}

func (p *chatProc) waitExit() error {
	p.t.Helper()
	select {
	case <-p.ended:
		return p.err
	case <-time.After(waitTimeout):
		p.t.Fatalf("parley chat did not exit; it printed:\n%s", p.out.String())
		return nil
	}
}

// peer is a plain gRPC Join stream on the other side of a chat.
type peer struct {
	t      *testing.T
	stream parleyv1.ChatService_JoinClient
	mu     sync.Mutex
	events []*parleyv1.JoinResponse
}

func openPeer(t *testing.T, s *app.Server, user, room string) (*peer, context.CancelFunc) {
	t.Helper()
	api, ctx := apiClient(t, s, user)
	ctx, cancel := context.WithCancel(ctx)
	stream, err := api.Join(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p := &peer{t: t, stream: stream}
	go func() {
		for {
			ev, err := stream.Recv()
			if err != nil {
				return
			}
			p.mu.Lock()
			p.events = append(p.events, ev)
			p.mu.Unlock()
		}
	}()
	p.send(&parleyv1.JoinRequest{Ref: "1", Frame: &parleyv1.JoinRequest_Join{Join: &parleyv1.JoinRequest_JoinRoom{Room: room}}})
	p.wait("joined", func(ev *parleyv1.JoinResponse) bool { return ev.GetJoined().GetRoom() == room })
	return p, cancel
}

func (p *peer) send(req *parleyv1.JoinRequest) {
	p.t.Helper()
	if err := p.stream.Send(req); err != nil {
		p.t.Fatal(err)
	}
}

func (p *peer) wait(what string, match func(*parleyv1.JoinResponse) bool) *parleyv1.JoinResponse {
	p.t.Helper()
	var found *parleyv1.JoinResponse
	waitFor(p.t, what, func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, ev := range p.events {
			if match(ev) {
				found = ev
				return true
			}
		}
		return false
	})
	return found
}

// A person at a terminal: joins, sees others come and go, type and talk,
// sends lines that arrive at another client, uses /who, /history and /dm,
// and quits.
func TestChatOnTerminal(t *testing.T) {
	s := startServer(t)
	alice := startChatPTY(t, s.Addr(), mint(t, s, "alice"), "lobby")
	alice.waitOutput("joined #lobby: 1 online (alice)")

	bob, leave := openPeer(t, s, "bob", "lobby")
	alice.waitOutput("#lobby → bob joined")

	alice.typeLine("hello bob")
	got := bob.wait("alice's message", func(ev *parleyv1.JoinResponse) bool { return ev.GetMessage().GetBody() == "hello bob" })
	if got.GetMessage().GetSender() != "alice" || got.GetMessage().GetRoom() != "lobby" {
		t.Fatalf("bob got %v", got)
	}
	alice.waitOutput("#lobby alice: hello bob")

	bob.send(&parleyv1.JoinRequest{Ref: "2", Frame: &parleyv1.JoinRequest_Typing{Typing: &parleyv1.JoinRequest_SetTyping{Room: "lobby", Active: true}}})
	alice.waitOutput("#lobby bob is typing")
	bob.send(&parleyv1.JoinRequest{Ref: "3", Frame: &parleyv1.JoinRequest_Send{Send: &parleyv1.JoinRequest_Post{Room: "lobby", Body: "hi alice"}}})
	alice.waitOutput("#lobby bob: hi alice")

	alice.typeLine("/who")
	alice.waitOutput("online in #lobby (2): alice (parley-cli), bob")
	alice.typeLine("/history 5")
	alice.waitOutput("last 2 message(s) of #lobby:")
	alice.typeLine("/dm no!body")
	alice.typeLine("hi?")
	alice.waitOutput("/dm no!body: InvalidArgument: to_user")
	alice.typeLine("/dm bob")
	alice.typeLine("psst")
	alice.waitOutput("joined #dm:alice:bob: 1 online (alice); talking in #dm:alice:bob")
	alice.waitOutput("#dm:alice:bob alice: psst")
	alice.typeLine("/join lobby")
	alice.waitOutput("talking in #lobby")

	api, ctx := apiClient(t, s, "bob")
	if _, err := api.CreateRoom(ctx, &parleyv1.CreateRoomRequest{Name: "random"}); err != nil {
		t.Fatal(err)
	}
	alice.typeLine("/join random")
	alice.waitOutput("joined #random: 1 online (alice); talking in #random")
	alice.typeLine("in random")
	alice.waitOutput("#random alice: in random")
	alice.typeLine("/join nowhere")
	alice.waitOutput(`cannot join #nowhere: NotFound: room "nowhere" does not exist`)

	leave()
	alice.waitOutput("#lobby ← bob left")

	alice.typeLine("/quit")
	if err := alice.waitExit(); err != nil {
		t.Fatalf("parley chat exited with %v; it printed:\n%s", err, alice.out.String())
	}
	// alice's line reached the server once, in the room she was talking in.
	resp, err := api.ListMessages(ctx, &parleyv1.ListMessagesRequest{Room: "random"})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetMessages()) != 1 || resp.GetMessages()[0].GetBody() != "in random" {
		t.Fatalf("random's history: %v", resp.GetMessages())
	}
}

// A chat whose connection drops reconnects on its own, resumes after the
// last seq it printed (printing nothing twice and missing nothing), and
// resends an unacknowledged line with the same client_msg_id so that it is
// stored once.
func TestChatReconnectsAndResumes(t *testing.T) {
	s := startServer(t)
	px := startProxy(t, s.Addr())
	alice, stdin := startChatPipes(t, px.addr(), mint(t, s, "alice"), "lobby")
	alice.waitOutput("joined #lobby")
	api, ctx := apiClient(t, s, "bob")
	send := func(body string) {
		t.Helper()
		if _, err := api.SendMessage(ctx, &parleyv1.SendMessageRequest{Room: "lobby", Body: body}); err != nil {
			t.Fatal(err)
		}
	}
	send("m1")
	alice.waitOutput("#lobby bob: m1")

	// Cut the connection while alice's client cannot hear the server: her
	// line is stored but its ack and its message are lost on the way.
	px.mute.Store(true)
	if _, err := io.WriteString(stdin, "lost ack\n"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the server to store alice's line", func() bool { return countStored(t, api, ctx, "lost ack") == 1 })
	px.setDown(true)
	px.cut()
	px.mute.Store(false)
	alice.waitOutput("connection lost")

	// While she is away: messages she must get on resume, and a line she types.
	send("m2")
	send("m3")
	if _, err := io.WriteString(stdin, "typed while away\n"); err != nil {
		t.Fatal(err)
	}
	px.setDown(false)
	alice.waitOutput("rejoined #lobby")
	alice.waitOutput("#lobby alice: typed while away")
	send("m4")
	alice.waitOutput("#lobby bob: m4")

	out := alice.out.String()
	for _, line := range []string{"bob: m1", "bob: m2", "bob: m3", "bob: m4", "alice: lost ack", "alice: typed while away"} {
		if n := strings.Count(out, "#lobby "+line+"\n"); n != 1 {
			t.Errorf("%q printed %d times, want once; output:\n%s", line, n, out)
		}
	}
	if i, j := strings.Index(out, "bob: m2"), strings.Index(out, "bob: m3"); i > j {
		t.Errorf("m3 printed before m2:\n%s", out)
	}
	for _, body := range []string{"lost ack", "typed while away"} {
		if n := countStored(t, api, ctx, body); n != 1 {
			t.Errorf("%q stored %d times, want once", body, n)
		}
	}
	// End of input: the client waits for acks, then exits 0.
	stdin.Close()
	if err := alice.waitExit(); err != nil {
		t.Fatalf("parley chat exited with %v:\n%s", err, alice.out.String())
	}
}

func countStored(t *testing.T, api parleyv1.ChatServiceClient, ctx context.Context, body string) int {
	t.Helper()
	resp, err := api.ListMessages(ctx, &parleyv1.ListMessagesRequest{Room: "lobby", Limit: 200})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, m := range resp.GetMessages() {
		if m.GetBody() == body {
			n++
		}
	}
	return n
}

// Piped input is sent and acknowledged before parley chat exits; a fatal
// error (a bad token) ends it with status 1 and the server's message.
func TestChatPipedInputAndFatalError(t *testing.T) {
	s := startServer(t)
	r := parleyInput(t, s.Addr(), mint(t, s, "carol"), "one\ntwo\n", "chat", "lobby")
	wantCode(t, r, cli.ExitOK)
	api, ctx := apiClient(t, s, "bob")
	resp, err := api.ListMessages(ctx, &parleyv1.ListMessagesRequest{Room: "lobby", Order: parleyv1.MessageOrder_MESSAGE_ORDER_OLDEST_FIRST})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetMessages()) != 2 || resp.GetMessages()[0].GetBody() != "one" || resp.GetMessages()[1].GetBody() != "two" {
		t.Fatalf("history after piped chat: %v", resp.GetMessages())
	}
	r = parleyInput(t, s.Addr(), "bad-token", "hi\n", "chat", "lobby")
	wantCode(t, r, cli.ExitFail, codes.Unauthenticated.String())
}

// proxy is a TCP proxy that a test can cut, refuse connections through, or
// mute (drop what the server sends).
type proxy struct {
	t    *testing.T
	ln   net.Listener
	to   string
	mute atomic.Bool

	mu    sync.Mutex
	down  bool
	conns []net.Conn
	wg    sync.WaitGroup
}

func startProxy(t *testing.T, to string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{t: t, ln: ln, to: to}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() {
		ln.Close()
		p.cut()
		p.wg.Wait()
	})
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		down := p.down
		p.mu.Unlock()
		if down {
			c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.to)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, up)
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(up, c, nil)
		go p.pipe(c, up, &p.mute)
	}
}

// pipe copies src to dst, dropping the bytes while mute is set.
func (p *proxy) pipe(dst, src net.Conn, mute *atomic.Bool) {
	defer p.wg.Done()
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && (mute == nil || !mute.Load()) {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if !errors.Is(err, net.ErrClosed) && !errors.Is(err, io.EOF) {
				p.t.Logf("proxy: %v", err)
			}
			return
		}
	}
}

func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func (p *proxy) setDown(down bool) {
	p.mu.Lock()
	p.down = down
	p.mu.Unlock()
}
