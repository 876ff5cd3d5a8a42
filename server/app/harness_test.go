package app_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	parleyv1 "github.com/parleychat/parley/gen/parley/v1"
	"github.com/parleychat/parley/server/app"
)

// waitTimeout bounds every wait on a condition in these tests.
const waitTimeout = 10 * time.Second

type testServer struct {
	*app.Server
	cfg app.Config
}

// startServer runs an in-process parleyd on a loopback port with its own
// data directory, shut down when the test ends.
func startServer(t testing.TB, mods ...func(*app.Config)) *testServer {
	t.Helper()
	cfg := app.Config{
		Listen:          "127.0.0.1:0",
		DataDir:         t.TempDir(),
		Store:           testStore(),
		SendRate:        -1, // tests that check the limits set them
		RoomCreateRate:  -1,
		Dev:             true,
		ShutdownTimeout: 5 * time.Second,
		Log:             slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	for _, m := range mods {
		m(&cfg)
	}
	s, err := app.Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("start server: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Shutdown(context.Background()); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return &testServer{Server: s, cfg: cfg}
}

func (ts *testServer) token(t testing.TB, user string) string {
	t.Helper()
	tok, _, err := ts.Keys.Mint(user, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// dial opens a native gRPC client connection. Fixed flow-control windows
// turn off BDP probing, as docs/clients.md recommends.
func (ts *testServer) dial(t testing.TB) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(ts.Addr(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(64<<10),
		grpc.WithInitialConnWindowSize(64<<10),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func (ts *testServer) client(t testing.TB, user string) (parleyv1.ChatServiceClient, context.Context) {
	return parleyv1.NewChatServiceClient(ts.dial(t)), authCtx(t, ts.token(t, user))
}

func authCtx(t testing.TB, token string) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

func (ts *testServer) createRoom(t testing.TB, name string) {
	t.Helper()
	c, ctx := ts.client(t, "admin")
	if _, err := c.CreateRoom(ctx, &parleyv1.CreateRoomRequest{Name: name}); err != nil {
		t.Fatalf("create room %s: %v", name, err)
	}
}

// joinStream is a Join stream whose events are read into a channel by a
// goroutine, so tests can wait for the event they expect.
type joinStream struct {
	t      testing.TB
	stream grpc.BidiStreamingClient[parleyv1.JoinRequest, parleyv1.JoinResponse]
	cancel context.CancelFunc
	events chan *parleyv1.JoinResponse
	done   chan struct{}
	err    error // why the stream ended; read after done
	sendMu sync.Mutex
	ref    int

	repMu    sync.Mutex
	replies  map[string]*parleyv1.Reply
	repReady chan struct{} // closed and replaced when a reply arrives
}

// openJoin opens a Join stream on conn as the user of token and reads it
// until it ends.
func openJoin(t testing.TB, conn *grpc.ClientConn, token string, md ...string) *joinStream {
	t.Helper()
	js := startJoin(t, conn, token, md...)
	go js.readAll()
	return js
}

// startJoin opens a Join stream that nobody reads yet.
func startJoin(t testing.TB, conn *grpc.ClientConn, token string, md ...string) *joinStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ctx = metadata.AppendToOutgoingContext(ctx, append([]string{"authorization", "Bearer " + token}, md...)...)
	stream, err := parleyv1.NewChatServiceClient(conn).Join(ctx)
	if err != nil {
		cancel()
		t.Fatalf("open join: %v", err)
	}
	js := &joinStream{t: t, stream: stream, cancel: cancel, events: make(chan *parleyv1.JoinResponse, 100000), done: make(chan struct{}),
		replies: make(map[string]*parleyv1.Reply), repReady: make(chan struct{})}
	t.Cleanup(js.close)
	return js
}

func (js *joinStream) readAll() {
	defer close(js.done)
	for {
		ev, err := js.stream.Recv()
		if err != nil {
			js.err = err
			return
		}
		if r := ev.GetReply(); r != nil {
			js.repMu.Lock()
			js.replies[r.GetRef()] = r
			close(js.repReady)
			js.repReady = make(chan struct{})
			js.repMu.Unlock()
			continue
		}
		js.events <- ev
	}
}

func (js *joinStream) close() {
	js.cancel()
}

// closeAndWait cancels the stream and waits for its reader to stop.
func (js *joinStream) closeAndWait() {
	js.cancel()
	select {
	case <-js.done:
	case <-time.After(waitTimeout):
		js.t.Fatal("join stream did not end after cancel")
	}
}

func (js *joinStream) nextRef() string {
	js.sendMu.Lock()
	defer js.sendMu.Unlock()
	js.ref++
	return fmt.Sprint(js.ref)
}

func (js *joinStream) send(req *parleyv1.JoinRequest) string {
	js.t.Helper()
	if req.Ref == "" {
		req.Ref = js.nextRef()
	}
	js.sendMu.Lock()
	err := js.stream.Send(req)
	js.sendMu.Unlock()
	if err != nil {
		js.t.Fatalf("send frame: %v", err)
	}
	return req.Ref
}

// next returns the next event that satisfies match, failing the test if
// none comes in time. Events that do not match are passed to skip, which
// may fail the test; nil skips them silently.
func (js *joinStream) next(match func(*parleyv1.JoinResponse) bool, skip func(*parleyv1.JoinResponse)) *parleyv1.JoinResponse {
	js.t.Helper()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	for {
		select {
		case ev := <-js.events:
			if match(ev) {
				return ev
			}
			if skip != nil {
				skip(ev)
			}
		case <-js.done:
			// Drain what was read before the end.
			select {
			case ev := <-js.events:
				if match(ev) {
					return ev
				}
				if skip != nil {
					skip(ev)
				}
				continue
			default:
			}
			js.t.Fatalf("stream ended while waiting: %v", js.err)
			return nil
		case <-deadline.C:
			js.t.Fatalf("no matching event within %v", waitTimeout)
			return nil
		}
	}
}

// reply waits for the reply to ref. Replies are kept apart from events,
// so waiting for one never consumes an event.
func (js *joinStream) reply(ref string) *parleyv1.Reply {
	js.t.Helper()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	for {
		js.repMu.Lock()
		r, ok := js.replies[ref]
		delete(js.replies, ref)
		ready := js.repReady
		js.repMu.Unlock()
		if ok {
			return r
		}
		select {
		case <-ready:
		case <-js.done:
			js.repMu.Lock()
			r, ok := js.replies[ref]
			js.repMu.Unlock()
			if ok {
				return r
			}
			js.t.Fatalf("stream ended before the reply to %s: %v", ref, js.err)
		case <-deadline.C:
			js.t.Fatalf("no reply to %s within %v", ref, waitTimeout)
		}
	}
}

// join joins room and waits for the joined event, failing on an error reply.
func (js *joinStream) join(room string, after *uint64) *parleyv1.Joined {
	js.t.Helper()
	ref := js.send(&parleyv1.JoinRequest{Frame: &parleyv1.JoinRequest_Join{Join: &parleyv1.JoinRequest_JoinRoom{Room: room, AfterSeq: after}}})
	if r := js.reply(ref); r.GetCode() != 0 {
		js.t.Fatalf("join %s: %s: %s", room, codes.Code(r.GetCode()), r.GetError())
	}
	return js.next(func(ev *parleyv1.JoinResponse) bool { return ev.GetJoined().GetRoom() == room }, nil).GetJoined()
}

// post sends a message and returns the reply.
func (js *joinStream) post(room, body, clientMsgID string) *parleyv1.Reply {
	js.t.Helper()
	ref := js.send(&parleyv1.JoinRequest{Frame: &parleyv1.JoinRequest_Send{Send: &parleyv1.JoinRequest_Post{Room: room, Body: body, ClientMsgId: clientMsgID}}})
	return js.reply(ref)
}

// waitEnd waits for the stream to end and returns its status.
func (js *joinStream) waitEnd() *status.Status {
	js.t.Helper()
	select {
	case <-js.done:
		return status.Convert(js.err)
	case <-time.After(waitTimeout):
		js.t.Fatal("stream did not end")
		return nil
	}
}

func isMessage(room string) func(*parleyv1.JoinResponse) bool {
	return func(ev *parleyv1.JoinResponse) bool { return ev.GetMessage().GetRoom() == room }
}

func isDiff(room string) func(*parleyv1.JoinResponse) bool {
	return func(ev *parleyv1.JoinResponse) bool { return ev.GetPresenceDiff().GetRoom() == room }
}

func ptr[T any](v T) *T { return &v }

type appConfig = app.Config

func statusOf(err error) *status.Status { return status.Convert(err) }

// timeAfter returns a channel that fires after d (a duration string).
func timeAfter(t testing.TB, d string) <-chan time.Time {
	dur, err := time.ParseDuration(d)
	if err != nil {
		t.Fatal(err)
	}
	return time.After(dur)
}

// waitFor polls cond until it holds, failing the test after waitTimeout.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		runtime.Gosched()
		time.Sleep(time.Millisecond) // polling interval, not synchronisation
	}
}

// testStore is the store the in-process servers use: PARLEY_TEST_STORE,
// default sqlite.
func testStore() string {
	if s := os.Getenv("PARLEY_TEST_STORE"); s != "" {
		return s
	}
	return "sqlite"
}
