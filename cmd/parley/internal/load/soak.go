package load

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	"github.com/parleychat/parley/cmd/parley/internal/cli"
	parleyv1 "github.com/parleychat/parley/gen/parley/v1"
)

// soakConfig is parley soak's flags.
type soakConfig struct {
	users        int
	rooms        int
	roomsPerUser int
	duration     time.Duration
	every        time.Duration
	size         int
	pauseMax     time.Duration
	sample       time.Duration
	settle       time.Duration
	csv          string
	roomPrefix   string
	tokenCmd     string
	metricsURL   string
	slack        int
	fdSlack      int
	maxReplay    int
	heapFrom     time.Duration
	heapGrowth   float64
	seed         uint64
	quiet        bool
	allowRemote  bool
}

func (c *soakConfig) validate() error {
	switch {
	case c.users < 1 || c.rooms < 1:
		return cli.Usagef("--users and --rooms must be at least 1")
	case c.roomsPerUser < 1 || c.roomsPerUser > min(c.rooms, maxRoomsPerStream):
		return cli.Usagef("--rooms-per-user must be 1 to min(--rooms, %d)", maxRoomsPerStream)
	case c.duration <= 0 || c.every <= 0 || c.sample <= 0 || c.settle <= 0 || c.pauseMax <= 0:
		return cli.Usagef("--duration, --every, --sample, --settle and --pause-max must be positive")
	case c.size < 16:
		return cli.Usagef("--size must be at least 16 bytes")
	case !roomPrefixRE.MatchString(c.roomPrefix):
		return cli.Usagef("--room-prefix must be 1-48 characters of a-z, 0-9, '-', '_'")
	case c.slack < 0 || c.fdSlack < 0:
		return cli.Usagef("--goroutine-slack and --fd-slack must not be negative")
	case c.maxReplay < 0:
		return cli.Usagef("--max-replay must not be negative")
	case c.heapFrom <= 0 || c.heapGrowth <= 0:
		return cli.Usagef("--heap-from and --heap-growth must be positive")
	}
	return nil
}

func parseSoakFlags(e *cli.Env, args []string) (soakConfig, error) {
	fs := cli.NewFlagSet(e, "soak", "soak [flags]", `
Churns a running server the way a busy service sees it and checks its
guarantees exactly. --users users, each on its own connection, are spread
over --rooms rooms. Every --every (on average) each user does one thing:
sends a message (with a client_msg_id; sometimes the same send twice,
which must be answered with the original seq), says it is typing, leaves
a room and joins another (see --max-replay for where it starts), ends
its Join stream and resumes on a new one, drops its TCP connection
(an RST, no goodbye) or vanishes from it (the connection stays open but
silent until the soak ends, and the user resumes over a new one), stops
reading for up to --pause-max (a slow consumer is cut off with
RESOURCE_EXHAUSTED and resumes from the seq the server gives), or opens a
Subscribe stream or a REST event stream (GET /v1/rooms/{room}/events) and
cuts it mid-stream.

Checked on every stream, across every resume: each room's seqs after the
start position arrive once, in order, with no gap; a send's reply never
arrives before a message of its room with a lower seq, nor before the
sent message; a retried client_msg_id gets the original seq. At the end
every stream and connection must be released: the server's streams and
gRPC connections back to where they were before the soak, its goroutines
and open files back to that baseline (within --goroutine-slack and
--fd-slack: idle workers and the store's connection pool may stay),
within --settle. Each violation prints a line starting VIOLATION; any
violation exits 1.

Where a join starts: with --max-replay N (default 100), a user resumes a
room from its last seq only if that is at most N messages behind the
room's head (the highest seq the soak has seen in it); a room it left
longer ago, or never was in, it joins live or from N messages behind the
head, half each, as a client opening a room with its recent history
would. Subscribe and REST streams start at most N behind the head too.
So the replays asked for do not lengthen as the rooms' history grows,
and the load stays the same from minute to minute. --max-replay 0
resumes every room from where the user left it, however long ago: the
replays then grow with the run.

Every --sample the server's RSS, heap in use, goroutines, open files,
streams and queued bytes (from its /metrics), and the soak's counts
(messages replayed among them), are written to --csv; a summary table
(first, median and last sample), a table per minute and the counts end
the run. When the run lasts at least --heap-from + 3m, the median heap
in use of the samples from --heap-from - 1m to --heap-from + 1m is
compared with that of the last two minutes: more than --heap-growth
percent higher fails the run.

Start parleyd with --send-rate -1 (the users send in bursts). A smaller
--max-queue-bytes makes paused readers reach the slow-consumer cut-off
sooner.`)
	c := soakConfig{}
	fs.IntVar(&c.users, "users", 200, "users, each with its own connection")
	fs.IntVar(&c.rooms, "rooms", 20, "rooms the users are spread over")
	fs.IntVar(&c.roomsPerUser, "rooms-per-user", 2, "rooms each user's Join stream is in at a time")
	fs.DurationVar(&c.duration, "duration", time.Minute, "how long the churn runs")
	fs.DurationVar(&c.every, "every", time.Second, "mean time between one user's actions")
	fs.IntVar(&c.size, "size", 2048, "largest message body in bytes (bodies are 16 to this many)")
	fs.DurationVar(&c.pauseMax, "pause-max", 15*time.Second, "longest time a user stops reading its stream")
	fs.DurationVar(&c.sample, "sample", 5*time.Second, "how often the server's /metrics are sampled")
	fs.DurationVar(&c.settle, "settle", 30*time.Second, "how long the server may take to release everything after the users leave")
	fs.StringVar(&c.csv, "csv", "", "write the samples to this CSV file")
	fs.StringVar(&c.roomPrefix, "room-prefix", "soak", "prefix of the soak's room and user names")
	fs.StringVar(&c.tokenCmd, "token-cmd", "", "shell command printing a token for the user name appended to it (default: DevLogin on a --dev server)")
	fs.StringVar(&c.metricsURL, "metrics-url", "", "the server's Prometheus endpoint (default: http(s)://<addr>/metrics)")
	fs.IntVar(&c.slack, "goroutine-slack", 5, "goroutines above the baseline tolerated at the end (idle workers the server may keep)")
	fs.IntVar(&c.fdSlack, "fd-slack", 8, "open files above the baseline tolerated at the end (the store's connection pool: SQLite keeps up to 4 read connections of 2 files each)")
	fs.IntVar(&c.maxReplay, "max-replay", 100, "longest replay a join or side stream asks for, in messages behind the room's head (0: resume from where the user left, however far back)")
	fs.DurationVar(&c.heapFrom, "heap-from", 5*time.Minute, "when the server's heap in use should have levelled off; compared with the last two minutes")
	fs.Float64Var(&c.heapGrowth, "heap-growth", 10, "largest growth of heap in use, in percent, from --heap-from to the end")
	fs.Uint64Var(&c.seed, "seed", 0, "random seed (0: from the clock); the report prints the one used")
	fs.BoolVar(&c.quiet, "quiet", false, "no progress lines on stderr")
	fs.BoolVar(&c.allowRemote, "allow-remote", false, "soak a server that is not on a loopback address (it drops connections and floods rooms: never a production server)")
	pos, err := cli.ParseFlags(fs, args)
	if err != nil {
		return c, err
	}
	if len(pos) != 0 {
		return c, cli.Usagef("soak takes no arguments")
	}
	if c.seed == 0 {
		c.seed = uint64(time.Now().UnixNano())
	}
	if err := c.validate(); err != nil {
		return c, err
	}
	if !c.allowRemote {
		for _, a := range e.Globals.Addrs() {
			if !isLoopback(a) {
				return c, cli.Usagef("%s is not a loopback address: the soak drops connections and floods rooms; pass --allow-remote to soak it anyway", a)
			}
		}
	}
	return c, nil
}

// isLoopback reports whether addr's host is localhost or a loopback IP.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// soak is one run of parley soak.
type soak struct {
	cfg     soakConfig
	e       *cli.Env
	ctrl    *grpc.ClientConn
	api     parleyv1.ChatServiceClient
	metrics *metricsClient
	check   *checker
	rest    *http.Client // REST event streams, one TCP connection each
	restURL string       // scheme://host:port

	roomNames []string
	heads     roomHeads
	users     []*soakUser
	counts    soakCounts
	samples   []soakSample
	stopping  atomic.Bool
}

// soakCounts are the things users did, for the report.
type soakCounts struct {
	sends, retries, typing, rejoins, resumes, drops, vanished, pauses atomic.Uint64
	cutoffs, cutBehind, subscribes, rests, streamOpenFails            atomic.Uint64
	// Joins and side streams with after_seq, the messages they asked to
	// have replayed (the head when joined minus after_seq), the longest.
	replays, replayed, longestReplay atomic.Uint64
	// Joins the server accepted but could not replay (a ref-less
	// UNAVAILABLE notice for the room), joined again.
	replayFails atomic.Uint64
}

// Soak runs parley soak with the command's arguments args: it churns the
// server of e's globals, prints its report on e.Stdout and violations on
// e.Stderr. It returns cli.ErrFailed when a guarantee was broken or the
// server did not release what the users held.
func Soak(ctx context.Context, e *cli.Env, args []string) error {
	cfg, err := parseSoakFlags(e, args)
	if err != nil {
		return err
	}
	s, err := newSoak(e, cfg)
	if err != nil {
		return err
	}
	defer s.ctrl.Close()
	rep, err := s.run(ctx)
	if err != nil {
		return err
	}
	if err := rep.writeTable(e.Stdout); err != nil {
		return err
	}
	if !rep.ok {
		return cli.ErrFailed
	}
	return nil
}

func newSoak(e *cli.Env, cfg soakConfig) (*soak, error) {
	ctrl, err := e.Globals.Dial()
	if err != nil {
		return nil, err
	}
	mc, err := newMetricsClient(e.Globals, cfg.metricsURL)
	if err != nil {
		ctrl.Close()
		return nil, err
	}
	tc, _ := e.Globals.TLSConfig() // checked by newMetricsClient
	scheme := "http"
	if tc != nil {
		scheme = "https"
	}
	s := &soak{cfg: cfg, e: e, ctrl: ctrl, api: parleyv1.NewChatServiceClient(ctrl), metrics: mc, check: newChecker(e.Stderr),
		rest:    &http.Client{Transport: &http.Transport{TLSClientConfig: tc, DisableKeepAlives: true}},
		restURL: scheme + "://" + e.Globals.Addrs()[0], heads: make(roomHeads, cfg.rooms)}
	for i := range cfg.rooms {
		s.roomNames = append(s.roomNames, fmt.Sprintf("%s-%d", cfg.roomPrefix, i))
		s.heads[s.roomNames[i]] = new(atomic.Uint64)
	}
	return s, nil
}

// run prepares users and rooms, takes the baseline, churns for
// --duration, then checks that the server released everything.
func (s *soak) run(ctx context.Context) (*soakReport, error) {
	if _, err := raiseNoFile(uint64(s.cfg.users)*3 + 256); err != nil {
		return nil, err
	}
	if err := s.prepare(ctx); err != nil {
		return nil, err
	}
	csv, err := openSampleCSV(s.cfg.csv) // before the baseline: the server may be in this process
	if err != nil {
		return nil, err
	}
	defer csv.close()
	base, err := s.baseline(ctx)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	stopSampling := s.startSampling(ctx, start, csv)
	s.churn(ctx)
	leaks := s.settle(ctx, base)
	stopSampling()
	s.sampleOnce(ctx, start, csv)
	if err := csv.close(); err != nil {
		return nil, err
	}
	return s.report(base, leaks, time.Since(start)), ctx.Err()
}

// prepare gets a token per user and creates the rooms.
func (s *soak) prepare(ctx context.Context) error {
	src := newTokenSource(s.e.Globals, s.cfg.tokenCmd, s.api)
	s.users = make([]*soakUser, s.cfg.users)
	err := parallel(ctx, s.cfg.users, 8, func(ctx context.Context, i int) error {
		name := fmt.Sprintf("%s-u%d", s.cfg.roomPrefix, i)
		tok, err := src(ctx, name)
		if err == nil {
			s.users[i] = newSoakUser(s, i, name, tok)
		}
		return err
	})
	if err != nil {
		return err
	}
	rc := &roomCreator{e: s.e, api: s.api}
	return parallel(ctx, s.cfg.rooms, 16, func(ctx context.Context, i int) error {
		return rc.create(ctx, s.users[i%len(s.users)].token, s.roomNames[i])
	})
}

// baseline is the server's state before the users connect. A REST call
// first makes the gateway open its own connection to the server, which it
// keeps, so that it is part of the baseline rather than a leak.
func (s *soak) baseline(ctx context.Context) (serverSample, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.restURL+"/v1/rooms?pageSize=1", nil)
	if err != nil {
		return serverSample{}, err
	}
	req.Header.Set("authorization", "Bearer "+s.users[0].token)
	resp, err := s.rest.Do(req)
	if err != nil {
		return serverSample{}, fmt.Errorf("REST gateway: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return serverSample{}, fmt.Errorf("REST gateway: GET /v1/rooms: HTTP %d", resp.StatusCode)
	}
	s.warmStore(ctx)
	// Let the short-lived HTTP/1.1 connection of that call close first.
	var last serverSample
	deadline := time.Now().Add(s.cfg.settle)
	for {
		cur, err := s.metrics.scrape(ctx)
		if err != nil {
			return cur, fmt.Errorf("the soak needs the server's /metrics: %w", err)
		}
		if (cur.fds == last.fds && cur.goroutines == last.goroutines) || time.Now().After(deadline) {
			return cur, nil
		}
		last = cur
		if err := sleepCtx(ctx, 200*time.Millisecond); err != nil {
			return cur, err
		}
	}
}

// warmStore reads history from every room, many at once, so that the
// store's pool of read connections (files or sockets it keeps open) has
// grown before the baseline is taken. The pages tell the rooms' heads.
func (s *soak) warmStore(ctx context.Context) {
	_ = parallel(ctx, 4*len(s.roomNames), 16, func(ctx context.Context, i int) error {
		cctx, cancel := context.WithTimeout(cli.WithAuth(ctx, s.users[0].token), s.e.Globals.Timeout)
		defer cancel()
		room := s.roomNames[i%len(s.roomNames)]
		resp, err := s.api.ListMessages(cctx, &parleyv1.ListMessagesRequest{Room: room, Limit: 50})
		if err == nil {
			s.heads.see(room, resp.GetHeadSeq())
		}
		return err
	})
}

// roomHeads is, per room, the highest seq the soak has seen in it (on any
// stream, in a reply or a history page): its idea of the room's head,
// behind the real one by the messages in flight. The map is filled before
// the users start and only read after.
type roomHeads map[string]*atomic.Uint64

// see records that room has a message seq.
func (h roomHeads) see(room string, seq uint64) {
	p := h[room]
	if p == nil {
		return
	}
	for cur := p.Load(); seq > cur && !p.CompareAndSwap(cur, seq); cur = p.Load() {
	}
}

// get returns room's head as far as the soak knows (0: none seen).
func (h roomHeads) get(room string) uint64 {
	if p := h[room]; p != nil {
		return p.Load()
	}
	return 0
}

// replayFloor is the lowest after_seq in room that --max-replay allows:
// the known head minus the bound (0 when unbounded or the room is short).
func (s *soak) replayFloor(room string) uint64 {
	n, head := uint64(s.cfg.maxReplay), s.heads.get(room)
	if n == 0 || head <= n {
		return 0
	}
	return head - n
}

// noteReplay records a join or side stream that started at after in
// room, whose head was head when it was joined: head - after messages
// are replayed.
func (s *soak) noteReplay(room string, after, head uint64) {
	s.heads.see(room, head)
	c := &s.counts
	c.replays.Add(1)
	if head <= after {
		return
	}
	n := head - after
	c.replayed.Add(n)
	for cur := c.longestReplay.Load(); n > cur && !c.longestReplay.CompareAndSwap(cur, n); cur = c.longestReplay.Load() {
	}
}

// churn runs every user for --duration, starting them over the first
// tenth of it (at most 5 s) so that they do not all connect at once.
func (s *soak) churn(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.duration)
	defer cancel()
	ramp := min(s.cfg.duration/10, 5*time.Second)
	var wg sync.WaitGroup
	for i, u := range s.users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if sleepCtx(ctx, ramp*time.Duration(i)/time.Duration(len(s.users))) == nil {
				u.run(ctx)
			}
			u.close()
		}()
	}
	wg.Wait()
	s.stopping.Store(true)
	s.rest.CloseIdleConnections()
}

// leakCheck is what the server still held after the users left.
type leakCheck struct {
	final   serverSample
	waited  time.Duration
	settled bool
	err     error
}

// settle waits until the server's streams, gRPC connections, goroutines
// and open files are back to the baseline, or --settle has passed; what is
// left then is a leak.
func (s *soak) settle(ctx context.Context, base serverSample) leakCheck {
	start := time.Now()
	deadline := start.Add(s.cfg.settle)
	var lc leakCheck
	for {
		lc.final, lc.err = s.metrics.scrape(ctx)
		lc.waited = time.Since(start)
		if lc.err == nil && s.released(base, lc.final) {
			lc.settled = true
			return lc
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		_ = sleepCtx(ctx, 250*time.Millisecond)
	}
	if lc.err != nil {
		s.check.violation(violLeak, "could not read the server's /metrics after the soak: %v", lc.err)
		return lc
	}
	f := lc.final
	s.check.violation(violLeak, "%s after the users left: streams %.0f (baseline %.0f), gRPC connections %.0f (%.0f), goroutines %.0f (%.0f + %d slack), open fds %.0f (%.0f + %d slack)",
		s.cfg.settle, f.streams, base.streams, f.grpcConns, base.grpcConns, f.goroutines, base.goroutines, s.cfg.slack, f.fds, base.fds, s.cfg.fdSlack)
	return lc
}

func (s *soak) released(base, cur serverSample) bool {
	return cur.streams <= base.streams && cur.grpcConns <= base.grpcConns &&
		cur.goroutines <= base.goroutines+float64(s.cfg.slack) && cur.fds <= base.fds+float64(s.cfg.fdSlack)
}

// rooms picks n distinct rooms at random.
func (s *soak) pickRooms(rng *rand.Rand, n int) []string {
	perm := rng.Perm(len(s.roomNames))[:n]
	out := make([]string, n)
	for i, r := range perm {
		out[i] = s.roomNames[r]
	}
	return out
}

func (s *soak) progressf(format string, args ...any) {
	if !s.cfg.quiet {
		fmt.Fprintf(s.e.Stderr, "soak: "+format+"\n", args...)
	}
}

// sleepCtx sleeps for d or until ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
