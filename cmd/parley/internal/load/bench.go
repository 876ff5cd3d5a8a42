package load

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"regexp"
	"runtime/pprof"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/parleychat/parley/cmd/parley/internal/cli"
	parleyv1 "github.com/parleychat/parley/gen/parley/v1"
)

// benchConfig is parley bench's flags.
type benchConfig struct {
	receivers      int
	cpuProfile     string
	rooms          int
	senders        int
	rate           float64
	duration       time.Duration
	warmup         time.Duration
	drain          time.Duration
	size           int
	subscribe      bool
	receiveVia     string // "h2" or "grpc"
	sendVia        string // "join" or "unary"
	streamsPerConn int
	roomPrefix     string
	users          int
	tokenCmd       string
	maxInflight    int
	connectWorkers int
	metricsURL     string
	json           bool
	quiet          bool
	markRate       float64
	markStale      bool

	// Ramp mode (bench_ramp.go).
	ramp         []int // receiving streams after each step; empty: not a ramp
	rampMessages int
	stepTimeout  time.Duration
	localAddrs   []net.IP // source addresses of the receiving connections, in turn
	serverPID    int
	serverPprof  string
	profileDir   string
	rssSettle    time.Duration
}

// maxRoomsPerStream is parleyd's default --max-rooms-per-stream.
const maxRoomsPerStream = 256

var roomPrefixRE = regexp.MustCompile(`^[a-z0-9_-]{1,48}$`)

func (c *benchConfig) validate() error {
	switch {
	case c.receivers < 0 || c.senders < 0:
		return cli.Usagef("--receivers and --senders must not be negative")
	case c.rooms < 1:
		return cli.Usagef("--rooms must be at least 1")
	case c.rate < 0:
		return cli.Usagef("--rate must not be negative (0: as fast as acks allow)")
	case c.markStale && c.markRate <= 0:
		return cli.Usagef("--mark-read-stale goes with --mark-read-rate")
	case c.markRate < 0 || (c.markRate > 0 && c.subscribe):
		return cli.Usagef("--mark-read-rate must not be negative, and needs Join receivers (not --subscribe): marks go on their streams")
	case c.duration <= 0 || c.warmup < 0 || c.drain <= 0:
		return cli.Usagef("--duration and --drain must be positive, --warmup not negative")
	case c.size < bodyHeader:
		return cli.Usagef("--size must be at least %d bytes (the send time header)", bodyHeader)
	case c.streamsPerConn < 1 || c.users < 0 || c.connectWorkers < 1 || c.maxInflight < 0:
		return cli.Usagef("--streams-per-conn and --connect-concurrency must be at least 1, --users not negative")
	case c.receiveVia != "h2" && c.receiveVia != "grpc":
		return cli.Usagef("--receive-via must be h2 or grpc")
	case c.sendVia != "join" && c.sendVia != "unary":
		return cli.Usagef("--send-via must be join or unary")
	case !roomPrefixRE.MatchString(c.roomPrefix):
		return cli.Usagef("--room-prefix must be 1-48 characters of a-z, 0-9, '-', '_'")
	case len(c.ramp) > 0 && (c.rampMessages < 1 || c.stepTimeout <= 0):
		return cli.Usagef("--ramp-messages must be at least 1 and --step-timeout positive")
	case len(c.ramp) == 0 && (c.serverPID != 0 || c.serverPprof != "" || c.profileDir != ""):
		return cli.Usagef("--server-pid, --server-pprof and --profile-dir go with --ramp")
	case c.profileDir != "" && c.serverPprof == "":
		return cli.Usagef("--profile-dir needs --server-pprof (the profiles come from the server)")
	case c.senders > 0 && (c.rooms+c.senders-1)/c.senders > maxRoomsPerStream:
		return cli.Usagef("each sender joins the rooms it sends to, at most %d: use --senders %d or more", maxRoomsPerStream, (c.rooms+maxRoomsPerStream-1)/maxRoomsPerStream)
	}
	return nil
}

// window is how many sends a sender keeps unacknowledged.
func (c *benchConfig) window() int {
	switch {
	case c.maxInflight > 0:
		return c.maxInflight
	case c.rate == 0:
		return 1
	}
	return 1000
}

func parseBenchFlags(e *cli.Env, args []string) (benchConfig, error) {
	fs := cli.NewFlagSet(e, "bench", "bench [flags]", `
Measures a running server. Opens --receivers streams (Join, or Subscribe with
--subscribe) spread round-robin over --rooms rooms, and --senders Join streams
that send to those rooms at --rate messages/s in total (0: each as fast as its
acks allow). After --warmup, messages sent during --duration are counted:
every receiver in a room must get every one of them exactly once and in seq
order. Each body carries its send time, so delivery latency is measured end
to end; ack latency is send to reply. Reports connect time, rates, expected
and received deliveries with loss, duplicates and out-of-order counts,
latency percentiles, errors by status code, the server's CPU and memory from
its /metrics, and the bench's own CPU. Exits 1 on any loss, duplicate,
reordering or error.

Receiving streams are read with the bench's own HTTP/2 and gRPC framing
(--receive-via h2): one goroutine per connection parses every message in
place, so receiving costs a fraction of what the server spends sending.
--receive-via grpc reads them with grpc-go's client instead. Senders always
use grpc-go: Join streams, or SendMessage calls with --send-via unary.

Rooms are named <room-prefix>-<n> and created if missing, each by the bench's
users in turn (a bench user refused for creating rooms too fast waits as told).
Tokens: --token-cmd (run once per user, the user name appended), else --token
or PARLEY_TOKEN (every stream the same user), else DevLogin (a --dev server).
The server's per-user limits apply to the bench's users: start parleyd with
--send-rate -1 for load tests, or senders above its rate are refused, and with
--room-create-rate -1 when a few users create many rooms.

With --ramp (for example --ramp 1000,5000,19000) the bench grows a crowd in
steps instead: at each step it connects receiving streams up to the step's
count (--streams-per-conn to a connection, in --rooms), then reports how long
connecting and joining took, the server's memory (RSS per stream and per
connection, from /metrics or, with --server-pid, /proc/PID/status; heap and
goroutines) once its goroutine count has settled, and the fan-out of
--ramp-messages messages from the senders, one at a time, to every stream
connected so far: latency percentiles, loss, duplicates and reordering.
With --server-pprof the server is garbage-collected before each memory
reading, and --profile-dir keeps its heap and goroutine profiles per step.
The ramp stops at the first step the bench cannot open files for (see
ulimit -n) or that does not finish within --step-timeout. --rate,
--warmup and --duration do not apply.`)
	c := benchConfig{}
	fs.IntVar(&c.receivers, "receivers", 100, "receiving streams")
	fs.IntVar(&c.rooms, "rooms", 1, "rooms; receiver i is in room i mod rooms")
	fs.IntVar(&c.senders, "senders", 1, "sending Join streams; each joins and sends to its share of the rooms")
	fs.Float64Var(&c.rate, "rate", 100, "messages per second from all senders together; 0: as fast as acks allow")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "measured time")
	fs.DurationVar(&c.warmup, "warmup", 2*time.Second, "time sending before measuring starts (not counted)")
	fs.DurationVar(&c.drain, "drain", 10*time.Second, "after the measured window, how long to wait for the last acks and deliveries")
	fs.IntVar(&c.size, "size", 100, "message body size in bytes")
	fs.BoolVar(&c.subscribe, "subscribe", false, "receive with Subscribe (server streaming) instead of Join")
	fs.StringVar(&c.receiveVia, "receive-via", "h2", "how receiving streams are read: h2 (the bench's own HTTP/2 framing: one goroutine per connection, cheap) or grpc (grpc-go's client)")
	fs.StringVar(&c.sendVia, "send-via", "join", "how senders send: join (pipelined send frames on a Join stream that joined the sender's rooms, so the sender gets its own messages too) or unary (SendMessage calls, each sender waiting for its replies; no stream, so messages go to the receivers only)")
	fs.IntVar(&c.streamsPerConn, "streams-per-conn", 1, "receiving streams per HTTP/2 connection (the server allows 100 by default)")
	fs.StringVar(&c.roomPrefix, "room-prefix", "bench", "prefix of the bench's room and user names")
	fs.IntVar(&c.users, "users", 0, "distinct users the streams are spread over (0: one per stream); the server's per-user limits apply")
	fs.StringVar(&c.tokenCmd, "token-cmd", "", "shell command printing a token for the user name appended to it, e.g. 'parleyd token --data-dir data'")
	fs.IntVar(&c.maxInflight, "max-inflight", 0, "unacknowledged sends per sender (0: 1 with --rate 0, else 1000)")
	fs.IntVar(&c.connectWorkers, "connect-concurrency", 64, "streams opened at once while connecting")
	fs.StringVar(&c.metricsURL, "metrics-url", "", "the server's Prometheus endpoint (default: http(s)://<addr>/metrics)")
	fs.BoolVar(&c.json, "json", false, "print the report as JSON on stdout")
	fs.BoolVar(&c.quiet, "quiet", false, "no progress line on stderr")
	fs.StringVar(&c.cpuProfile, "cpuprofile", "", "write the bench's own CPU profile (pprof) for the whole run to this file")
	fs.BoolVar(&c.markStale, "mark-read-stale", false, "with --mark-read-rate: each receiver's marks after its first repeat that seq, so no marker moves (no store write, no receipt): what the mark frames and their replies cost alone")
	fs.Float64Var(&c.markRate, "mark-read-rate", 0, "mark_read frames per second from all receivers together, each marking its room read up to the last seq it received, the receivers in turn (0: none)")
	fs.Func("ramp", "grow the receiving streams in steps to these counts, comma-separated (e.g. 1000,5000,19000), reporting each step (instead of --receivers)", func(v string) error {
		var err error
		c.ramp, err = parseRamp(v)
		return err
	})
	fs.IntVar(&c.rampMessages, "ramp-messages", 1, "with --ramp: messages each sender sends to each of its rooms per step, one at a time, each after the last one's deliveries")
	fs.DurationVar(&c.stepTimeout, "step-timeout", 5*time.Minute, "with --ramp: how long one step's connects and joins may take")
	fs.Func("local-addrs", "source addresses of the receiving connections, comma-separated, used in turn (e.g. 127.0.0.2,127.0.0.3: each loopback address has its own ~28,000 ports to the server)", func(v string) error {
		var err error
		c.localAddrs, err = parseIPs(v)
		return err
	})
	fs.IntVar(&c.serverPID, "server-pid", 0, "with --ramp: the server's process id, to read its RSS from /proc/PID/status (a server on this machine)")
	fs.StringVar(&c.serverPprof, "server-pprof", "", "with --ramp: the server's pprof base URL (parleyd --pprof-listen), e.g. http://127.0.0.1:6060: garbage-collect it before each memory reading")
	fs.DurationVar(&c.rssSettle, "rss-settle", 2*time.Minute, "with --ramp: after each step's joins, wait up to this long for the server's RSS to stop falling (Go returns freed memory to the system gradually); 0: read it at once")
	fs.StringVar(&c.profileDir, "profile-dir", "", "with --ramp and --server-pprof: keep the server's heap and goroutine profiles of each step in this directory")
	pos, err := cli.ParseFlags(fs, args)
	if err != nil {
		return c, err
	}
	if len(pos) != 0 {
		return c, cli.Usagef("bench takes no arguments")
	}
	if len(c.ramp) > 0 {
		c.receivers = c.ramp[len(c.ramp)-1]
	}
	return c, c.validate()
}

// bench is one run of parley bench.
type bench struct {
	cfg   benchConfig
	e     *cli.Env
	ctrl  *grpc.ClientConn // unary calls: tokens, rooms
	api   parleyv1.ChatServiceClient
	codec benchCodec
	epoch time.Time

	roomNames     []string
	roomReceivers []int           // receivers per room
	roomAcked     []atomic.Uint64 // measured sends acknowledged, per room
	tokens        []string

	receivers []*receiver
	senders   []*sender
	conns     []*grpc.ClientConn // the senders' connections
	rconns    []*grpc.ClientConn // receiving connections with --receive-via grpc
	h2conns   []*h2Conn          // receiving connections with --receive-via h2
	streamCtx context.Context    // every stream's context; cancelled at the end
	stop      context.CancelFunc
	readers   sync.WaitGroup

	winStart, winEnd atomic.Int64 // the measured window, on the bench clock
	e2e, live        *histogram   // delivery latency: measured / everything
	ack, ackLive     *histogram
	joinLat          *histogram
	maxLag           atomic.Int64
	stopping         atomic.Bool
	marks            atomic.Uint64 // mark_read frames sent
	marksMeasured    atomic.Uint64 // of those, in the measured window

	errMu      sync.Mutex // error path only
	errCounts  map[codes.Code]uint64
	errSamples []string

	metrics *metricsClient
}

// Bench runs parley bench with the command's arguments args: it measures
// the server of e's globals and prints its report on e.Stdout, progress on
// e.Stderr. It returns cli.ErrFailed when the report found loss,
// duplicates, reordering or errors.
func Bench(ctx context.Context, e *cli.Env, args []string) error {
	cfg, err := parseBenchFlags(e, args)
	if err != nil {
		return err
	}
	b, err := newBench(e, cfg)
	if err != nil {
		return err
	}
	defer b.close()
	if cfg.cpuProfile != "" {
		stop, err := startCPUProfile(cfg.cpuProfile)
		if err != nil {
			return err
		}
		defer stop()
	}
	if len(cfg.ramp) > 0 {
		return rampCmd(ctx, b)
	}
	rep, err := b.run(ctx)
	if err != nil {
		return err
	}
	if cfg.json {
		err = rep.writeJSON(e.Stdout)
	} else {
		err = rep.writeTable(e.Stdout)
	}
	if err != nil {
		return err
	}
	if !rep.OK {
		return cli.ErrFailed
	}
	return nil
}

// startCPUProfile profiles this process into path until stop is called.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

func newBench(e *cli.Env, cfg benchConfig) (*bench, error) {
	ctrl, err := e.Globals.Dial()
	if err != nil {
		return nil, err
	}
	mc, err := newMetricsClient(e.Globals, cfg.metricsURL)
	if err != nil {
		ctrl.Close()
		return nil, err
	}
	shards := 16
	b := &bench{
		cfg: cfg, e: e, ctrl: ctrl, api: parleyv1.NewChatServiceClient(ctrl), codec: newBenchCodec(), epoch: time.Now(),
		roomReceivers: make([]int, cfg.rooms), roomAcked: make([]atomic.Uint64, cfg.rooms),
		e2e: newHistogram(shards), live: newHistogram(shards), ack: newHistogram(shards), ackLive: newHistogram(shards),
		joinLat: newHistogram(shards), errCounts: make(map[codes.Code]uint64), metrics: mc,
	}
	b.streamCtx, b.stop = context.WithCancel(context.Background())
	for i := range cfg.rooms {
		b.roomNames = append(b.roomNames, fmt.Sprintf("%s-%d", cfg.roomPrefix, i))
	}
	for i := range cfg.receivers {
		b.receivers = append(b.receivers, &receiver{b: b, id: i, room: i % cfg.rooms})
		b.roomReceivers[i%cfg.rooms]++
	}
	if b.cfg.users == 0 {
		b.cfg.users = max(1, cfg.receivers+cfg.senders)
	}
	for j := range cfg.senders {
		b.senders = append(b.senders, newSender(b, j, senderRooms(j, cfg.senders, cfg.rooms), cfg.window()))
	}
	return b, nil
}

// senderRooms returns the rooms sender j of n sends to: every n-th room,
// or, with more senders than rooms, one room.
func senderRooms(j, n, rooms int) []int {
	if n > rooms {
		return []int{j % rooms}
	}
	var out []int
	for r := j; r < rooms; r += n {
		out = append(out, r)
	}
	return out
}

// close ends every stream and connection.
func (b *bench) close() {
	b.stopping.Store(true)
	b.stop()
	for _, c := range b.conns {
		c.Close()
	}
	for _, c := range b.rconns {
		c.Close()
	}
	for _, c := range b.h2conns {
		c.close()
	}
	b.readers.Wait()
	b.ctrl.Close()
}

// now is the bench clock: monotonic nanoseconds since the bench started.
// Senders stamp bodies with it and receivers, in the same process, read it.
func (b *bench) now() int64 { return int64(time.Since(b.epoch)) }

// clientMsgID is a send's idempotency key, time-ordered as the server's
// clients are advised to make theirs (like UUIDv7): the wall-clock time of
// stamp as 16 hex digits, then the sender and the frame's ref, which make
// it unique. Ordered keys from every sender land together at the tail of
// the server's idempotency index.
func (b *bench) clientMsgID(stamp int64, sender int, ref string) string {
	var buf [48]byte
	t := strconv.AppendUint(buf[:0], uint64(b.epoch.UnixNano()+stamp), 16)
	id := make([]byte, 0, 16+len(ref)+8)
	for range 16 - len(t) {
		id = append(id, '0')
	}
	id = append(id, t...)
	id = append(id, '-')
	id = strconv.AppendInt(id, int64(sender), 10)
	id = append(id, '-')
	id = append(id, ref...)
	return string(id)
}

func (b *bench) inWindow(t int64) bool { return t >= b.winStart.Load() && t < b.winEnd.Load() }

func (b *bench) noteLag(d int64) {
	for {
		m := b.maxLag.Load()
		if d <= m || b.maxLag.CompareAndSwap(m, d) {
			return
		}
	}
}

// countError records a failure by status code, keeping a few samples.
func (b *bench) countError(code codes.Code, what string) {
	b.errMu.Lock()
	defer b.errMu.Unlock()
	b.errCounts[code]++
	if len(b.errSamples) < 5 {
		b.errSamples = append(b.errSamples, what)
	}
}

// streamEnded records a stream that ended before the bench stopped it.
func (b *bench) streamEnded(who string, err error) {
	if b.stopping.Load() {
		return
	}
	b.countError(status.Code(err), fmt.Sprintf("%s ended: %s", who, cli.Describe(err)))
}

func (b *bench) errorTotal() uint64 {
	b.errMu.Lock()
	defer b.errMu.Unlock()
	var n uint64
	for _, c := range b.errCounts {
		n += c
	}
	return n
}

// run does the whole benchmark and returns its report.
func (b *bench) run(ctx context.Context) (*benchReport, error) {
	cfg := b.cfg
	conns := (cfg.receivers + cfg.streamsPerConn - 1) / cfg.streamsPerConn
	if _, err := raiseNoFile(uint64(conns+cfg.senders) + filesBesideConns); err != nil {
		return nil, err
	}
	if err := b.fetchTokens(ctx); err != nil {
		return nil, err
	}
	if err := b.createRooms(ctx); err != nil {
		return nil, err
	}
	rep := &benchReport{}
	rep.fillConfig(b, conns)
	before, berr := b.metrics.scrape(ctx)
	if err := b.connect(ctx, rep); err != nil {
		return nil, err
	}
	afterConnect, aerr := b.metrics.scrape(ctx)
	if err := b.measure(ctx, rep); err != nil {
		return nil, err
	}
	rep.fillServerIdle(b, before, afterConnect, firstErr(berr, aerr))
	rep.finish(b)
	return rep, nil
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// connect opens every receiving stream (a few at a time) and every sender,
// each joined to its rooms, and reports how long that took.
func (b *bench) connect(ctx context.Context, rep *benchReport) error {
	cfg := b.cfg
	nconns := (cfg.receivers + cfg.streamsPerConn - 1) / cfg.streamsPerConn
	if err := b.dialReceivers(ctx, nconns); err != nil {
		return err
	}
	b.progressf("connecting %d receiving streams over %d connections", cfg.receivers, nconns)
	start := time.Now()
	var opened atomic.Int64
	stopTicker := b.tick(func() {
		b.progressf("connected %d/%d streams after %.0fs", opened.Load(), cfg.receivers, time.Since(start).Seconds())
	})
	defer stopTicker()
	if err := b.openStreams(ctx, 0, cfg.receivers, b.joinLat, &opened); err != nil {
		return err
	}
	if err := b.openSenders(ctx); err != nil {
		return err
	}
	streams := cfg.receivers + cfg.senders
	if cfg.sendVia == "unary" {
		streams = cfg.receivers // the senders have connections, not streams
	}
	rep.Connect = connectReport{Streams: streams, Seconds: time.Since(start).Seconds(),
		PerStream: summarize(b.joinLat.snapshot(), time.Duration(b.joinLat.max.Load()))}
	return nil
}

// dialReceivers opens receiving connections, connectWorkers at a time,
// until there are n.
func (b *bench) dialReceivers(ctx context.Context, n int) error {
	have := len(b.h2conns) + len(b.rconns)
	if n <= have {
		return nil
	}
	var tc *tls.Config
	if b.cfg.receiveVia == "h2" {
		var err error
		if tc, err = b.e.Globals.TLSConfig(); err != nil {
			return err
		}
	}
	h2 := make([]*h2Conn, n-have)
	rc := make([]*grpc.ClientConn, n-have)
	err := parallel(ctx, n-have, b.cfg.connectWorkers, func(ctx context.Context, i int) error {
		var err error
		if b.cfg.receiveVia == "h2" {
			h2[i], err = dialH2(ctx, b, b.e.Globals.NextAddr(), tc, b.dialer(have+i))
		} else {
			rc[i], err = b.dialGRPC(have + i)
		}
		return err
	})
	// Keep what was opened, so that close closes it even after a failure.
	for i := range h2 {
		if h2[i] != nil {
			b.h2conns = append(b.h2conns, h2[i])
		}
		if rc[i] != nil {
			b.rconns = append(b.rconns, rc[i])
		}
	}
	return err
}

// dialer returns the dialer of receiving connection i: from the i-th of
// --local-addrs in turn, if given.
func (b *bench) dialer(i int) *net.Dialer {
	d := &net.Dialer{}
	if n := len(b.cfg.localAddrs); n > 0 {
		d.LocalAddr = &net.TCPAddr{IP: b.cfg.localAddrs[i%n]}
	}
	return d
}

// dialGRPC opens receiving connection i with grpc-go's client.
func (b *bench) dialGRPC(i int) (*grpc.ClientConn, error) {
	d := b.dialer(i)
	return b.e.Globals.Dial(grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, dialError(addr, err)
		}
		return c, nil
	}))
}

// openStreams opens receivers [from, to) on their connections, connectWorkers
// at a time, each joined to its room, recording each one's join latency in
// lat and counting them in opened.
func (b *bench) openStreams(ctx context.Context, from, to int, lat *histogram, opened *atomic.Int64) error {
	cfg := b.cfg
	return parallel(ctx, to-from, cfg.connectWorkers, func(ctx context.Context, k int) error {
		i := from + k
		r := b.receivers[i]
		t0 := time.Now()
		token := b.tokens[i%len(b.tokens)]
		if cfg.receiveVia == "h2" {
			// The connection's reader goroutine receives for the stream.
			if err := b.h2conns[i/cfg.streamsPerConn].open(ctx, r, token); err != nil {
				return fmt.Errorf("receiver %d: %w", i, err)
			}
		} else {
			if err := r.open(ctx, b.streamCtx, b.rconns[i/cfg.streamsPerConn], token); err != nil {
				return fmt.Errorf("receiver %d: %w", i, err)
			}
			b.readers.Add(1)
			go func() {
				defer b.readers.Done()
				r.receive()
			}()
		}
		lat.record(i, time.Since(t0))
		opened.Add(1)
		return nil
	})
}

// openSenders opens every sender's stream on a connection of its own and
// joins its rooms.
func (b *bench) openSenders(ctx context.Context) error {
	for j, s := range b.senders {
		conn, err := b.e.Globals.Dial()
		if err != nil {
			return err
		}
		b.conns = append(b.conns, conn)
		token := b.tokens[(b.cfg.receivers+j)%len(b.tokens)]
		if b.cfg.sendVia == "unary" {
			s.api, s.token = parleyv1.NewChatServiceClient(conn), token
			continue
		}
		if err := s.open(b.streamCtx, conn, token); err != nil {
			return err
		}
	}
	return nil
}

// measure runs the senders through warm-up and the measured window, then
// waits for the last acks and deliveries.
func (b *bench) measure(ctx context.Context, rep *benchReport) error {
	cfg := b.cfg
	start := b.now() + int64(20*time.Millisecond)
	b.winStart.Store(start + int64(cfg.warmup))
	b.winEnd.Store(start + int64(cfg.warmup+cfg.duration))
	var interval time.Duration
	if cfg.rate > 0 && cfg.senders > 0 {
		interval = time.Duration(float64(time.Second) * float64(cfg.senders) / cfg.rate)
	}
	var sending sync.WaitGroup
	for j, s := range b.senders {
		offset := int64(interval) * int64(j) / int64(cfg.senders)
		sending.Add(1)
		go func() {
			defer sending.Done()
			s.run(b.streamCtx, start+offset, interval)
		}()
	}
	sending.Go(func() { b.markReads(b.streamCtx, start) })
	prog := b.startProgress()
	defer prog.stop()
	if err := b.sleepUntil(ctx, b.winStart.Load()); err != nil {
		return err
	}
	w0 := b.sampleWindow(ctx, prog)
	if err := b.sleepUntil(ctx, b.winEnd.Load()); err != nil {
		return err
	}
	w1 := b.sampleWindow(ctx, prog)
	sending.Wait()
	rep.fillWindow(b, w0, w1, prog.maxRSS())
	return b.drainAll(ctx)
}

func (b *bench) sleepUntil(ctx context.Context, t int64) error {
	d := time.Duration(t - b.now())
	if d <= 0 {
		return nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// windowSample is the state at one edge of the measured window.
type windowSample struct {
	wall   time.Time
	cpu    time.Duration // the bench's own CPU
	mach   machineCPU
	server serverSample
	err    error
}

func (b *bench) sampleWindow(ctx context.Context, prog *progress) windowSample {
	s := windowSample{wall: time.Now(), cpu: cpuTime(), mach: readMachineCPU()}
	s.server, s.err = b.metrics.scrape(ctx)
	if s.err == nil {
		prog.noteRSS(s.server.rss)
	}
	return s
}

// drainAll waits until every send is acknowledged and every expected
// delivery has arrived, or until --drain has passed.
func (b *bench) drainAll(ctx context.Context) error {
	deadline := time.Now().Add(b.cfg.drain)
	for _, s := range b.senders {
		s.drained(deadline)
	}
	expected := b.expected()
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if b.received() >= expected {
			break
		}
		time.Sleep(5 * time.Millisecond) // polling interval
	}
	return ctx.Err()
}

// expected is how many measured deliveries there should be: each
// acknowledged measured message once per receiver in its room.
func (b *bench) expected() uint64 {
	var n uint64
	for r := range b.roomAcked {
		n += b.roomAcked[r].Load() * uint64(b.roomReceivers[r])
	}
	return n
}

func (b *bench) received() uint64 {
	var n uint64
	for _, r := range b.receivers {
		n += r.measured.Load()
	}
	return n
}

// tick calls fn every second until the returned stop is called (once or
// more).
func (b *bench) tick(fn func()) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				fn()
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done); wg.Wait() }) }
}

func (b *bench) progressf(format string, args ...any) {
	if !b.cfg.quiet {
		fmt.Fprintf(b.e.Stderr, "bench: "+format+"\n", args...)
	}
}
