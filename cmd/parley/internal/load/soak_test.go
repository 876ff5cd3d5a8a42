package load

import (
	"bytes"
	"context"
	"encoding/csv"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/parleychat/parley/cmd/parley/internal/cli"
	parleyv1 "github.com/parleychat/parley/gen/parley/v1"
	"github.com/parleychat/parley/server/app"
)

// The checker flags each way a stream can break its guarantees, and
// nothing when it keeps them: fed the sequences below, it must count
// exactly these violations, or it could pass a broken server silently.
func TestSoakCheckerFlagsEveryViolation(t *testing.T) {
	type step struct {
		op  string // "m" message, "r" reply, "stop"
		seq uint64
	}
	cases := []struct {
		name  string
		start uint64
		steps []step
		want  map[string]uint64
	}{
		{"in order, reply after its message", 5, []step{{"m", 6}, {"m", 7}, {"r", 7}, {"m", 8}, {"r", 6}, {"stop", 0}}, nil},
		{"gap never filled", 0, []step{{"m", 1}, {"m", 2}, {"m", 4}, {"m", 5}, {"stop", 0}}, map[string]uint64{violGap: 1}},
		{"first message skips the start", 10, []step{{"m", 12}, {"stop", 0}}, map[string]uint64{violGap: 1}},
		{"duplicate", 0, []step{{"m", 1}, {"m", 2}, {"m", 2}, {"stop", 0}}, map[string]uint64{violDuplicate: 1}},
		{"replayed below the start", 5, []step{{"m", 5}, {"m", 6}, {"stop", 0}}, map[string]uint64{violDuplicate: 1}},
		{"reorder", 0, []step{{"m", 1}, {"m", 3}, {"m", 2}, {"m", 4}, {"stop", 0}}, map[string]uint64{violReorder: 1}},
		{"reply before a lower seq", 0, []step{{"m", 1}, {"r", 3}, {"m", 2}, {"m", 3}}, map[string]uint64{violReplyEarly: 1}},
		{"reply before its own message", 0, []step{{"m", 1}, {"m", 2}, {"r", 3}, {"m", 3}}, map[string]uint64{violReplyEarly: 1}},
		{"reply after a gap below it", 0, []step{{"m", 1}, {"m", 3}, {"r", 3}, {"m", 2}}, map[string]uint64{violReplyEarly: 1, violReorder: 1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			c := newChecker(&out)
			v := c.stream("test stream")
			v.start("r", tc.start)
			for _, s := range tc.steps {
				switch s.op {
				case "m":
					v.message("r", s.seq)
				case "r":
					v.reply("r", s.seq)
				case "stop":
					v.stop("r")
				}
			}
			var total uint64
			for kind, n := range tc.want {
				if got := c.count(kind); got != n {
					t.Errorf("%s violations = %d, want %d; printed:\n%s", kind, got, n, out.String())
				}
				total += n
			}
			if got := c.count(""); got != total {
				t.Errorf("violations = %d (%v), want %d; printed:\n%s", got, c.kinds(), total, out.String())
			}
			if lines := strings.Count(out.String(), "VIOLATION "); uint64(lines) != total {
				t.Errorf("%d VIOLATION lines printed, want %d:\n%s", lines, total, out.String())
			}
		})
	}
}

// A message of a room the stream is not in, and a retry answered with
// another seq or stored twice, are violations too.
func TestSoakCheckerRoomsAndRetries(t *testing.T) {
	c := newChecker(nil)
	v := c.stream("s")
	v.message("nowhere", 1)
	if c.count(violStream) != 1 {
		t.Errorf("a message of a room not joined: %v", c.kinds())
	}
	l := newIDLedger(c)
	l.watch("r", "id-1")
	l.reply("s", "r", "id-1", 7)
	l.message("s", "r", "id-1", 7) // the same message seen: fine
	l.reply("s", "r", "id-1", 7)   // the retry's answer: the original seq
	if n := c.count(violIdempotent); n != 0 {
		t.Fatalf("a retry answered with the original seq: %d violations", n)
	}
	l.reply("s", "r", "id-1", 9) // the retry stored anew
	l.message("s", "r", "id-1", 9)
	if n := c.count(violIdempotent); n != 2 {
		t.Errorf("a retry answered with a new seq and stored twice: %d violations, want 2", n)
	}
	l.reply("s", "r", "id-2", 3) // an id never retried is forgotten at its reply
	if l.has("r", "id-2") {
		t.Error("the ledger keeps an id that was not retried")
	}
}

// A REST stream's error line becomes the gRPC status a Subscribe stream
// would end with, slow-consumer positions included.
func TestSoakRESTErrorLine(t *testing.T) {
	c := newChecker(nil)
	ss := &sideStream{u: &soakUser{s: &soak{check: c}}, room: "r", view: c.stream("rest")}
	err := ss.restLine([]byte(`{"error":{"code":8,"message":"you fell too far behind","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"SLOW_CONSUMER","domain":"parley.chat","metadata":{"after_seq/r":"41"}}]}}`))
	st := status.Convert(err)
	pos, slow := slowPositions(st)
	if st.Code() != codes.ResourceExhausted || !slow || pos["r"] != 41 {
		t.Fatalf("error line: code %s, slow %v, positions %v", st.Code(), slow, pos)
	}
	if err := ss.restLine([]byte(`{"result":{"message":{"room":"r","seq":"1"}}}`)); err != nil || c.count("") != 1 {
		t.Fatalf("an event of a room not started: err %v, violations %v", err, c.kinds())
	}
}

// A short soak against a real server: every user churns, and the run
// ends with no violation, everything released, and a CSV of samples. The
// server shares this process with the soak, whose own goroutines (gRPC's
// for the connections it closed) are counted too: hence the larger slack.
func TestSoakChurn(t *testing.T) {
	s := startServer(t, func(c *app.Config) { c.MaxQueueBytes = 64 << 10 })
	path := filepath.Join(t.TempDir(), "soak.csv")
	r := parley(t, s.Addr(), "", "soak", "--users", "20", "--rooms", "4", "--duration", "5s", "--every", "150ms",
		"--pause-max", "2s", "--sample", "1s", "--settle", "20s", "--goroutine-slack", "10", "--csv", path, "--quiet")
	if r.code != cli.ExitOK || !strings.Contains(r.stdout, "violations    none") || !regexp.MustCompile(`(?m)^result +PASS$`).MatchString(r.stdout) {
		t.Fatalf("soak failed (exit %d):\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{`deliveries +[1-9]\d* \(`, `sends +[1-9]\d* \(`, `resumes +[1-9]\d* Join streams`, `side streams +[1-9]\d* Subscribe, [1-9]\d* REST`, `released +yes`} {
		if !regexp.MustCompile(want).MatchString(r.stdout) {
			t.Errorf("report does not match %q:\n%s", want, r.stdout)
		}
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) < 4 || strings.Join(rows[0], ",") != strings.Join(soakCSVHeader, ",") {
		t.Fatalf("csv: %d rows, header %v", len(rows), rows[0])
	}
	if rss, _ := strconv.ParseFloat(rows[len(rows)-1][1], 64); rss <= 0 {
		t.Errorf("csv: no rss in the last row %v", rows[len(rows)-1])
	}
}

func TestSoakFlagErrors(t *testing.T) {
	wantCode(t, parley(t, "127.0.0.1:1", "", "soak", "--users", "0"), cli.ExitUsage, "--users and --rooms")
	wantCode(t, parley(t, "127.0.0.1:1", "", "soak", "--rooms", "2", "--rooms-per-user", "3"), cli.ExitUsage, "--rooms-per-user")
	wantCode(t, parley(t, "127.0.0.1:1", "", "soak", "extra"), cli.ExitUsage, "no arguments")
	wantCode(t, parley(t, "192.0.2.1:8080", "", "soak"), cli.ExitUsage, "--allow-remote")
}

// discardJoin is a Join stream whose sends go nowhere: the test plays the
// server's side by handing events to the session.
type discardJoin struct {
	parleyv1.ChatService_JoinClient
}

func (discardJoin) Send(*parleyv1.JoinRequest) error { return nil }

// A room joined with after_seq, then left and joined again live, all
// written before the first joined event arrives: each joined starts from
// its own join's position, so the first join's replay is not taken for
// duplicates (the soak's first version did, once, in a test run).
func TestSoakSessionRejoinBeforeJoined(t *testing.T) {
	c := newChecker(nil)
	u := newSoakUser(&soak{check: c}, 0, "u", "token")
	u.setPosition("r", 16)
	js := newJoinSession(u, context.Background(), func() {})
	js.stream = discardJoin{}
	js.join("r")
	_ = js.request(soakRef{kind: refLeave, room: "r"}, &parleyv1.JoinRequest{})
	u.mu.Lock()
	delete(u.cursor, "r") // the second join is live
	u.mu.Unlock()
	js.join("r")
	ev := func(e *parleyv1.JoinResponse) { js.event(e) }
	reply := func(ref string) {
		ev(&parleyv1.JoinResponse{Event: &parleyv1.JoinResponse_Reply{Reply: &parleyv1.Reply{Ref: ref}}})
	}
	joined := func(head uint64) {
		ev(&parleyv1.JoinResponse{Event: &parleyv1.JoinResponse_Joined{Joined: &parleyv1.Joined{Room: "r", HeadSeq: head}}})
	}
	message := func(seq uint64) {
		ev(&parleyv1.JoinResponse{Event: &parleyv1.JoinResponse_Message{Message: &parleyv1.Message{Room: "r", Seq: seq}}})
	}
	reply("1")
	joined(49)
	for seq := uint64(17); seq <= 49; seq++ {
		message(seq)
	}
	reply("2")
	reply("3")
	joined(49)
	message(50)
	if n := c.count(""); n != 0 {
		t.Fatalf("violations %v", c.kinds())
	}
}

// With --max-replay, a user who left a room long ago, or never was in it,
// rejoins it live or at most that many messages behind the head, and one
// close to the head resumes where it was; the server's replays, counted
// by what the streams received, stay within the bound. With --max-replay
// 0 a user resumes from where it left, however far back.
func TestSoakBoundedReplay(t *testing.T) {
	const history, bound, users = 300, 50, 8
	srv := startServer(t)
	for _, tc := range []struct {
		name             string
		maxReplay        int
		pos              uint64 // where each user was in the room
		wantMin, wantMax uint64 // messages replayed to each user
		prefix           string
	}{
		{"left long ago", bound, 10, 0, bound, "far"},
		{"left a moment ago", bound, history - 20, 20, 20, "near"},
		{"unbounded", 0, 10, history - 10, history - 10, "all"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("PARLEY_ADDR", srv.Addr())
			e := &cli.Env{Globals: cli.NewGlobals(), Stdin: strings.NewReader(""), Stdout: io.Discard, Stderr: io.Discard}
			cfg, err := parseSoakFlags(e, []string{"--users", strconv.Itoa(users), "--rooms", "1", "--rooms-per-user", "1",
				"--room-prefix", tc.prefix, "--max-replay", strconv.Itoa(tc.maxReplay), "--seed", "1"})
			if err != nil {
				t.Fatal(err)
			}
			sk, err := newSoak(e, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer sk.ctrl.Close()
			ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
			defer cancel()
			if err := sk.prepare(ctx); err != nil {
				t.Fatal(err)
			}
			room := sk.roomNames[0]
			for i := range history {
				_, err := sk.api.SendMessage(cli.WithAuth(ctx, sk.users[0].token),
					&parleyv1.SendMessageRequest{Room: room, Body: "history " + strconv.Itoa(i)})
				if err != nil {
					t.Fatal(err)
				}
			}
			sk.warmStore(ctx)
			if h := sk.heads.get(room); h != history {
				t.Fatalf("known head %d, want %d", h, history)
			}
			for _, u := range sk.users {
				if err := u.dial(); err != nil {
					t.Fatal(err)
				}
				u.want = []string{room}
				u.setPosition(room, tc.pos)
				u.openSession(ctx)
				if u.js == nil {
					t.Fatalf("%s: Join did not open", u.name)
				}
			}
			// Every user ends at the head: live, or replayed up to it.
			for _, u := range sk.users {
				for {
					if pos, _ := u.position(room); pos == history {
						break
					}
					if sleepCtx(ctx, 10*time.Millisecond) != nil {
						t.Fatalf("%s: never reached the head", u.name)
					}
				}
				u.close()
			}
			c := &sk.counts
			got := sk.check.deliveries.Load()
			if got < tc.wantMin*users || got > tc.wantMax*users {
				t.Errorf("the streams received %d replayed messages, want %d to %d for %d users", got, tc.wantMin*users, tc.wantMax*users, users)
			}
			if c.longestReplay.Load() > tc.wantMax || c.replayed.Load() != got {
				t.Errorf("replays asked for %d messages, the longest %d; received %d, bound %d", c.replayed.Load(), c.longestReplay.Load(), got, tc.wantMax)
			}
			if tc.maxReplay > 0 && tc.pos < history-bound && (c.replays.Load() == 0 || c.replays.Load() == users) {
				t.Errorf("%d of %d users rejoined from the bound: want some live, some replaying", c.replays.Load(), users)
			}
			if n := sk.check.count(""); n != 0 {
				t.Errorf("violations %v", sk.check.kinds())
			}
		})
	}
}

// The heap check compares the median of the samples around --heap-from
// with that of the last two minutes, fails growth beyond the limit, and
// leaves a run too short for both windows unchecked.
func TestSoakHeapFlatness(t *testing.T) {
	const mib = 1 << 20
	samples := func(d time.Duration, heap func(at time.Duration) float64) []soakSample {
		var out []soakSample
		for at := time.Duration(0); at <= d; at += 5 * time.Second {
			out = append(out, soakSample{at: at, srv: serverSample{heapInuse: heap(at)}})
		}
		return out
	}
	sawtooth := func(base float64) func(time.Duration) float64 {
		return func(at time.Duration) float64 { return base + float64(at/(5*time.Second)%4)*10*mib }
	}
	flat := heapFlatness(samples(20*time.Minute, sawtooth(300*mib)), 20*time.Minute, 5*time.Minute, 10)
	if !flat.checked || !flat.flat || flat.growth != 0 {
		t.Errorf("a flat sawtooth: %+v", flat)
	}
	growing := func(at time.Duration) float64 { return 300*mib + float64(at/time.Minute)*10*mib }
	g := heapFlatness(samples(20*time.Minute, growing), 20*time.Minute, 5*time.Minute, 10)
	if !g.checked || g.flat || g.early != 350*mib || g.late != 490*mib {
		t.Errorf("10 MiB a minute from 300 MiB: %+v, want 350 -> 490 MiB, not flat", g)
	}
	if s := heapFlatness(samples(2*time.Minute, growing), 2*time.Minute, 5*time.Minute, 10); s.checked {
		t.Errorf("a 2-minute run was checked: %+v", s)
	}
	rows := perMinute(samples(150*time.Second, growing), 2*time.Minute)
	if len(rows) != 2 || rows[0].minute != 1 || rows[0].heap != 300*mib || rows[1].minute != 2 || rows[1].heap != 310*mib {
		t.Errorf("per minute: %+v", rows)
	}
}
