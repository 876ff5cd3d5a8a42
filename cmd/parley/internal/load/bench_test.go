package load

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/parleychat/parley/cmd/parley/internal/cli"
	parleyv1 "github.com/parleychat/parley/gen/parley/v1"
	"github.com/parleychat/parley/server/app"
)

func runBenchJSON(t *testing.T, addr string, args ...string) (benchReport, cliResult) {
	t.Helper()
	r := parley(t, addr, "", append([]string{"bench", "--json"}, args...)...)
	var rep benchReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("bench --json output does not parse: %v\nstdout: %s\nstderr: %s", err, r.stdout, r.stderr)
	}
	return rep, r
}

// A small run: 20 receivers in 2 rooms, 2 senders at 200 msgs/s. Every
// receiver gets every message of its room exactly once and in order.
func TestBenchSmallRun(t *testing.T) {
	s := startServer(t)
	rep, r := runBenchJSON(t, s.Addr(), "--receivers", "20", "--rooms", "2", "--senders", "2", "--rate", "200",
		"--warmup", "500ms", "--duration", "2s")
	wantCode(t, r, cli.ExitOK)
	if !rep.OK || rep.Lost != 0 || rep.Duplicates != 0 || rep.OutOfOrder != 0 || rep.Extra != 0 || len(rep.Errors) != 0 {
		t.Fatalf("report is not clean: %+v\nstderr: %s", rep, r.stderr)
	}
	// 200 msgs/s for 2 s, each to the 10 receivers of its room.
	if rep.Acked < 300 || rep.Expected != rep.Acked*10 || rep.Received != rep.Expected {
		t.Errorf("acked %d, expected %d, received %d: want ~400 acked, 10 deliveries each", rep.Acked, rep.Expected, rep.Received)
	}
	if rep.Delivery.Count != rep.Received || rep.Delivery.P50 <= 0 || rep.Delivery.P99 < rep.Delivery.P50 || rep.Ack.Count != rep.Acked {
		t.Errorf("latencies: delivery %+v, ack %+v", rep.Delivery, rep.Ack)
	}
	if rep.Server.MetricsError != "" || rep.Server.CPUCores <= 0 || rep.Server.RSSMaxBytes <= 0 || rep.Server.CPUMicrosPerDelivery <= 0 {
		t.Errorf("server figures missing: %+v", rep.Server)
	}
	if rep.Bench.CPUCores <= 0 || rep.Connect.Streams != 22 {
		t.Errorf("bench cpu %v, connected streams %d", rep.Bench.CPUCores, rep.Connect.Streams)
	}
	if !strings.Contains(r.stderr, "bench:") || !strings.Contains(r.stderr, "measure") {
		t.Errorf("no progress lines on stderr: %q", r.stderr)
	}
}

// Subscribe receivers, several streams per connection, senders as fast as
// acks allow, and the table output.
func TestBenchSubscribeTable(t *testing.T) {
	s := startServer(t)
	r := parley(t, s.Addr(), "", "bench", "--subscribe", "--receivers", "12", "--rooms", "3", "--streams-per-conn", "5",
		"--senders", "3", "--rate", "0", "--warmup", "200ms", "--duration", "1s", "--quiet", "--size", "64")
	wantCode(t, r, cli.ExitOK)
	for _, want := range []string{`12 subscribe streams in 3 room\(s\) over 6 connection\(s\)`, "lost 0, extra 0, duplicates 0, out of order 0", `(?m)^result +PASS$`} {
		if !regexp.MustCompile(want).MatchString(r.stdout) {
			t.Errorf("table does not match %q:\n%s", want, r.stdout)
		}
	}
	if r.stderr != "" {
		t.Errorf("--quiet printed on stderr: %q", r.stderr)
	}
}

// Senders that call SendMessage and wait for each answer: they hold no
// stream, so only the receivers connect and get the messages, and every
// acknowledged message reaches each receiver of its room once, in order.
func TestBenchUnarySenders(t *testing.T) {
	s := startServer(t)
	rep, r := runBenchJSON(t, s.Addr(), "--send-via", "unary", "--receivers", "10", "--rooms", "2", "--senders", "3",
		"--rate", "0", "--warmup", "200ms", "--duration", "1s", "--quiet", "--room-prefix", "unary")
	wantCode(t, r, cli.ExitOK)
	if !rep.OK || rep.Lost != 0 || rep.Duplicates != 0 || rep.OutOfOrder != 0 || rep.Extra != 0 || len(rep.Errors) != 0 {
		t.Fatalf("report is not clean: %+v\nstderr: %s", rep, r.stderr)
	}
	if rep.Config.SendVia != "unary" || rep.Connect.Streams != 10 {
		t.Errorf("send via %q with %d streams connected: want unary, the 10 receivers' only", rep.Config.SendVia, rep.Connect.Streams)
	}
	if rep.Acked < 10 || rep.Expected != rep.Acked*5 || rep.Received != rep.Expected || rep.Ack.Count != rep.Acked {
		t.Errorf("acked %d, expected %d, received %d, ack latencies %d: want 5 deliveries per acked send", rep.Acked, rep.Expected, rep.Received, rep.Ack.Count)
	}
	// A failed call counts as a failed send with its status.
	rep, r = runBenchJSON(t, s.Addr(), "--send-via", "unary", "--receivers", "2", "--rooms", "1", "--senders", "1",
		"--rate", "20", "--size", "5000", "--warmup", "0s", "--duration", "300ms", "--quiet", "--room-prefix", "unary-big")
	wantCode(t, r, cli.ExitFail)
	if rep.Errors["InvalidArgument"] == 0 {
		t.Errorf("bodies over the server's limit: errors %v, want InvalidArgument", rep.Errors)
	}
}

// Idle streams and no senders: the run measures memory only.
func TestBenchIdle(t *testing.T) {
	s := startServer(t)
	rep, r := runBenchJSON(t, s.Addr(), "--receivers", "30", "--rooms", "30", "--senders", "0", "--warmup", "0s", "--duration", "300ms", "--quiet")
	wantCode(t, r, cli.ExitOK)
	if rep.Server.Streams != 30 || rep.Server.RSSConnectedBytes <= 0 {
		t.Errorf("server: %+v", rep.Server)
	}
}

func TestBenchFlagErrors(t *testing.T) {
	s := startServer(t)
	wantCode(t, parley(t, s.Addr(), "", "bench", "--size", "10"), cli.ExitUsage, "--size must be at least")
	wantCode(t, parley(t, s.Addr(), "", "bench", "--rooms", "600", "--senders", "2"), cli.ExitUsage, "use --senders 3 or more")
	wantCode(t, parley(t, s.Addr(), "", "bench", "--room-prefix", "Bad"), cli.ExitUsage, "--room-prefix")
	wantCode(t, parley(t, s.Addr(), "", "bench", "--send-via", "rest"), cli.ExitUsage, "--send-via must be join or unary")
	// A token that the server refuses is an error, not a report.
	wantCode(t, parley(t, s.Addr(), "bad-token", "bench", "--duration", "1s"), cli.ExitFail, "Unauthenticated")
}

// fakeStream replays encoded frames to a receiver.
type fakeStream struct {
	grpc.ClientStream
	frames [][]byte
}

func (f *fakeStream) RecvMsg(m any) error {
	if len(f.frames) == 0 {
		return io.EOF
	}
	b := f.frames[0]
	f.frames = f.frames[1:]
	return m.(*wireFrame).parse(b)
}

func messageFrame(t testing.TB, room string, seq uint64, body string) []byte {
	t.Helper()
	b, err := proto.Marshal(&parleyv1.JoinResponse{Event: &parleyv1.JoinResponse_Message{Message: &parleyv1.Message{
		Room: room, Seq: seq, Sender: "s", Body: body, SentAt: timestamppb.Now(), ClientMsgId: "c",
	}}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The receiver's accounting: a repeated or older seq is a duplicate, a
// skipped seq is out of order, other rooms' and non-bench messages are
// foreign, and only messages sent in the window count.
func TestReceiverAccounting(t *testing.T) {
	b := &bench{roomNames: []string{"r"}, e2e: newHistogram(1), live: newHistogram(1), epoch: time.Now()}
	b.stopping.Store(true) // the fake stream's end is not an error
	b.winStart.Store(100)
	b.winEnd.Store(1000)
	body := func(sent int64) string { return string(appendBody(nil, sent, 40)) }
	fs := &fakeStream{frames: [][]byte{
		messageFrame(t, "r", 1, body(50)),    // warm-up: in order, not counted
		messageFrame(t, "r", 2, body(200)),   // counted
		messageFrame(t, "r", 2, body(200)),   // duplicate
		messageFrame(t, "r", 4, body(300)),   // skips 3: out of order, counted
		messageFrame(t, "r", 3, body(250)),   // behind: duplicate
		messageFrame(t, "other", 5, body(0)), // another room: foreign
		messageFrame(t, "r", 5, "hello"),     // not a bench body: foreign
		messageFrame(t, "r", 5, body(2000)),  // after the window: not counted
	}}
	r := &receiver{b: b, stream: fs, last: 0}
	r.receive()
	got := []uint64{r.frames.Load(), r.measured.Load(), r.dups.Load(), r.gaps.Load(), r.foreign.Load(), r.last}
	want := []uint64{8, 2, 2, 1, 2, 5}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("frames, measured, dups, gaps, foreign, last = %v, want %v", got, want)
		}
	}
}

// The wire parser reads what the bench needs from every kind of frame,
// without allocating.
func TestWireFrameParse(t *testing.T) {
	enc := func(ev *parleyv1.JoinResponse) []byte {
		b, err := proto.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	msg := messageFrame(t, "room-1", 42, string(appendBody(nil, 123456789, 100)))
	reply := enc(&parleyv1.JoinResponse{Event: &parleyv1.JoinResponse_Reply{Reply: &parleyv1.Reply{
		Ref: "77", Room: "room-1", Message: &parleyv1.Message{Room: "room-1", Seq: 9, Body: "x"}}}})
	failed := enc(&parleyv1.JoinResponse{Event: &parleyv1.JoinResponse_Reply{Reply: &parleyv1.Reply{Ref: "j0", Code: 5, Error: "no such room"}}})
	joined := enc(&parleyv1.JoinResponse{Event: &parleyv1.JoinResponse_Joined{Joined: &parleyv1.Joined{Room: "room-1", HeadSeq: 17,
		Presence: []*parleyv1.Presence{{User: "u", Metas: []*parleyv1.PresenceMeta{{ConnId: "c"}}}}}}})
	diff := enc(&parleyv1.JoinResponse{Event: &parleyv1.JoinResponse_PresenceDiff{PresenceDiff: &parleyv1.PresenceDiff{Room: "room-1"}}})

	f := &wireFrame{wantRoom: "room-1"}
	check := func(b []byte, kind int, roomOK bool, seq uint64) {
		t.Helper()
		if err := f.parse(b); err != nil {
			t.Fatal(err)
		}
		if f.kind != kind || f.roomOK != roomOK || f.seq != seq {
			t.Fatalf("parsed kind %d roomOK %v seq %d, want %d %v %d", f.kind, f.roomOK, f.seq, kind, roomOK, seq)
		}
	}
	check(msg, kindMessage, true, 42)
	if f.sent != 123456789 {
		t.Errorf("sent = %d", f.sent)
	}
	check(reply, kindReply, true, 9)
	if !f.refOK || f.ref != 77 || f.code != 0 || f.sent != -1 {
		t.Errorf("reply: ref %d ok %v code %d sent %d", f.ref, f.refOK, f.code, f.sent)
	}
	check(failed, kindReply, false, 0)
	if f.refOK || f.code != 5 || f.errMsg != "no such room" {
		t.Errorf("failed reply: refOK %v code %d err %q", f.refOK, f.code, f.errMsg)
	}
	check(joined, kindJoined, true, 17)
	check(diff, kindPresence, false, 0)
	if err := f.parse([]byte{0x1a, 0x05, 0x01}); err == nil {
		t.Error("a truncated frame parsed")
	}
	if n := testing.AllocsPerRun(100, func() { _ = f.parse(msg); _ = f.parse(reply); _ = f.parse(joined) }); n != 0 {
		t.Errorf("parse allocates %v times per run, want 0", n)
	}
}

func BenchmarkWireFrameParse(b *testing.B) {
	msg := messageFrame(b, "room-1", 42, string(appendBody(nil, 123456789, 100)))
	f := &wireFrame{wantRoom: "room-1"}
	b.ReportAllocs()
	for b.Loop() {
		_ = f.parse(msg)
	}
}

// Both ways of receiving give the same clean result: the bench's own
// HTTP/2 framing (the default) and grpc-go's client. Bodies of 30 KB do
// not fit one HTTP/2 DATA frame (16 KiB), so the h2 receivers reassemble
// messages split across frames, and several streams share each connection.
// Small flow-control windows make the h2 receivers replenish them often.
func TestBenchReceiveVia(t *testing.T) {
	s := startServer(t, func(c *app.Config) { c.MaxBodyBytes = 30000 })
	defer func(sw, cw uint32) { h2StreamWindow, h2ConnWindow = sw, cw }(h2StreamWindow, h2ConnWindow)
	h2StreamWindow, h2ConnWindow = 100<<10, 300<<10
	for _, via := range []string{"h2", "grpc"} {
		t.Run(via, func(t *testing.T) {
			rep, r := runBenchJSON(t, s.Addr(), "--receive-via", via, "--receivers", "12", "--rooms", "2", "--streams-per-conn", "4",
				"--senders", "2", "--rate", "100", "--size", "30000", "--warmup", "300ms", "--duration", "1s", "--quiet", "--room-prefix", "via-"+via)
			wantCode(t, r, cli.ExitOK)
			if !rep.OK || rep.Lost != 0 || rep.Duplicates != 0 || rep.OutOfOrder != 0 || rep.Extra != 0 || len(rep.Errors) != 0 ||
				rep.Received == 0 || rep.Received != rep.Expected {
				t.Fatalf("report is not clean: %+v\nstderr: %s", rep, r.stderr)
			}
		})
	}
}

// A stream the server refuses fails the h2 receiver's open with the
// server's gRPC status, read from the trailers.
func TestH2ReceiverOpenFailsWithStatus(t *testing.T) {
	s := startServer(t)
	b := &bench{roomNames: []string{"lobby"}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := dialH2(ctx, b, s.Addr(), nil, &net.Dialer{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		c.close()
		b.readers.Wait()
	}()
	err = c.open(ctx, &receiver{b: b}, "not-a-token")
	if st, _ := status.FromError(err); st.Code() != codes.Unauthenticated {
		t.Fatalf("open with a bad token: %v, want UNAUTHENTICATED", err)
	}
}

// Rooms are created by the bench's users in turn, and a user refused for
// creating rooms too fast waits as the answer's RetryInfo says: with one
// token, 6 rooms against a burst of 2 all get created, the wait told on
// standard error.
func TestBenchCreatesRoomsWithinTheServersLimit(t *testing.T) {
	s := startServer(t, func(c *app.Config) { c.RoomCreateRate, c.RoomCreateBurst = 20, 2 })
	tok, _, err := s.Keys.Mint("solo", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	r := parley(t, s.Addr(), tok, "bench", "--json", "--receivers", "6", "--rooms", "6", "--senders", "0",
		"--warmup", "0s", "--duration", "100ms", "--quiet")
	wantCode(t, r, cli.ExitOK)
	if !strings.Contains(r.stderr, "creating rooms too fast") {
		t.Errorf("stderr does not tell of the wait:\n%s", r.stderr)
	}
	var rep benchReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || rep.Server.Streams != 6 {
		t.Errorf("report %+v (%v): want 6 streams, one in each room", rep.Server, err)
	}
}
