package load

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/parleychat/parley/cmd/parley/internal/cli"
)

// parley bench --ramp grows a crowd in steps and, at each, reports what
// joining cost, what the server holds per stream and per connection, and
// how long one message takes to reach everyone. Messages are sent only
// between steps, one at a time, so each step's fan-out is one message's.

// rampReport is what parley bench --ramp prints, as a table or as JSON.
type rampReport struct {
	Config       reportConfig      `json:"config"`
	RampMessages int               `json:"ramp_messages"`
	Base         rampServer        `json:"base"` // before the first step, the senders connected
	Steps        []rampStep        `json:"steps"`
	StoppedBy    string            `json:"stopped_by,omitempty"`
	Errors       map[string]uint64 `json:"errors"`
	ErrorSamples []string          `json:"error_samples,omitempty"`
	OK           bool              `json:"ok"`
	Problems     []string          `json:"problems,omitempty"`
}

// rampStep is one step of the ramp. Per-stream and per-connection figures
// divide the server's growth since Base by the streams and connections open.
type rampStep struct {
	Streams        int            `json:"streams"`
	Connections    int            `json:"connections"`
	NewStreams     int            `json:"new_streams"`
	NewConnections int            `json:"new_connections"`
	ConnectSec     float64        `json:"connect_sec"`    // dialling the step's new connections
	JoinSec        float64        `json:"join_sec"`       // then opening its streams until the last joined
	AllJoinedSec   float64        `json:"all_joined_sec"` // both
	Join           latencySummary `json:"join_per_stream"`
	SettleSec      float64        `json:"settle_sec"` // waiting for the server's goroutines to settle
	// What connecting and joining cost, in cores over AllJoinedSec: the
	// server's CPU (from /metrics), the bench's own, and the machine's
	// (anything else running shows as busy beyond the two).
	JoinServerCores  float64 `json:"join_server_cores"`
	JoinBenchCores   float64 `json:"join_bench_cores"`
	JoinMachineCores float64 `json:"join_machine_busy_cores"`
	// PresenceDiffsPerStream is how many presence diffs the streams
	// received from the step's start until the server settled, per stream
	// open at its end.
	PresenceDiffsPerStream float64 `json:"presence_diffs_per_stream"`

	Server              rampServer   `json:"server"`
	RSSPerStream        float64      `json:"rss_per_stream_bytes"`
	RSSPerConn          float64      `json:"rss_per_conn_bytes"`
	HeapPerStream       float64      `json:"heap_per_stream_bytes"`
	StackPerStream      float64      `json:"stack_per_stream_bytes"`
	GoroutinesPerConn   float64      `json:"goroutines_per_conn"`
	GoroutinesPerStream float64      `json:"goroutines_per_stream"`
	Fanout              fanoutReport `json:"fanout"`
}

// rampServer is the server's state at one reading.
type rampServer struct {
	RSSBytes        float64 `json:"rss_bytes"` // once it stopped falling (see --rss-settle)
	RSSSource       string  `json:"rss_source"`
	RSSAfterGCBytes float64 `json:"rss_after_gc_bytes"` // right after the garbage collection
	RSSSettleSec    float64 `json:"rss_settle_sec"`
	HeapInuseBytes  float64 `json:"heap_inuse_bytes"`
	StackInuseBytes float64 `json:"stack_inuse_bytes"`
	// HeapKeptBytes is heap the runtime has free but has not returned to
	// the operating system (idle minus released): part of RSS.
	HeapKeptBytes float64 `json:"heap_kept_bytes"`
	Goroutines    float64 `json:"goroutines"`
	Streams       float64 `json:"streams"`
	GRPCConns     float64 `json:"grpc_connections"`
	OpenFDs       float64 `json:"open_fds"`
	MaxFDs        float64 `json:"max_fds"`
	Error         string  `json:"error,omitempty"`
}

// fanoutReport is a step's messages and their deliveries to every stream
// connected so far.
type fanoutReport struct {
	Messages   uint64         `json:"messages"` // acknowledged
	Expected   uint64         `json:"expected_deliveries"`
	Received   uint64         `json:"received_deliveries"`
	Lost       uint64         `json:"lost"`
	Duplicates uint64         `json:"duplicates"`
	OutOfOrder uint64         `json:"out_of_order"`
	Latency    latencySummary `json:"delivery_latency"`
	Ack        latencySummary `json:"ack_latency"`
}

// rampState is what the ramp keeps between steps.
type rampState struct {
	opened   int      // receivers open: [0, opened)
	roomOpen []uint64 // receivers open per room
	limit    uint64   // the bench's open-file limit
}

func parseRamp(v string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || (len(out) > 0 && n <= out[len(out)-1]) {
			return nil, fmt.Errorf("--ramp takes stream counts, rising, comma-separated (e.g. 1000,5000,19000): %q", v)
		}
		out = append(out, n)
	}
	return out, nil
}

func parseIPs(v string) ([]net.IP, error) {
	var out []net.IP
	for _, f := range strings.Split(v, ",") {
		ip := net.ParseIP(strings.TrimSpace(f))
		if ip == nil {
			return nil, fmt.Errorf("--local-addrs takes IP addresses, comma-separated (e.g. 127.0.0.2,127.0.0.3): %q", f)
		}
		out = append(out, ip)
	}
	return out, nil
}

// runRamp does a whole ramp and returns its report. A step that fails
// stops the ramp; the report then says why and fails.
func (b *bench) runRamp(ctx context.Context) (*rampReport, error) {
	cfg := b.cfg
	final := (cfg.receivers + cfg.streamsPerConn - 1) / cfg.streamsPerConn
	limit, err := raiseNoFile(uint64(final+cfg.senders) + filesBesideConns)
	if err != nil && !errors.Is(err, errFileLimit) {
		return nil, err
	}
	if err := b.fetchTokens(ctx); err != nil {
		return nil, err
	}
	if err := b.createRooms(ctx); err != nil {
		return nil, err
	}
	rep := &rampReport{RampMessages: cfg.rampMessages}
	fake := &benchReport{}
	fake.fillConfig(b, final)
	rep.Config = fake.Config
	rep.Config.Mode += " ramp"
	// Every message the ramp sends is measured.
	b.winStart.Store(0)
	b.winEnd.Store(math.MaxInt64)
	if err := b.openSenders(ctx); err != nil {
		return nil, err
	}
	rs := &rampState{roomOpen: make([]uint64, cfg.rooms), limit: limit}
	rep.Base = b.serverState(ctx, "base")
	for k, target := range cfg.ramp {
		st, err := b.rampStep(ctx, rs, k, target, rep.Base)
		rep.Steps = append(rep.Steps, st)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if err != nil {
			rep.StoppedBy = err.Error()
			b.progressf("ramp stopped: %s", rep.StoppedBy)
			break
		}
	}
	rep.finish(b)
	return rep, nil
}

// rampStep grows the crowd to target streams, then reads the server's
// memory and measures the fan-out.
func (b *bench) rampStep(ctx context.Context, rs *rampState, k, target int, base rampServer) (rampStep, error) {
	cfg := b.cfg
	conns := (target + cfg.streamsPerConn - 1) / cfg.streamsPerConn
	st := rampStep{Streams: target, Connections: conns, NewStreams: target - rs.opened,
		NewConnections: conns - len(b.h2conns) - len(b.rconns)}
	what := fmt.Sprintf("step %d/%d (%d streams over %d connections)", k+1, len(cfg.ramp), target, conns)
	if need := uint64(conns+cfg.senders) + filesBesideConns; need > rs.limit {
		return st, fmt.Errorf("%s: %w", what, fileLimitError(rs.limit))
	}
	sctx, cancel := context.WithTimeout(ctx, cfg.stepTimeout)
	defer cancel()
	var opened atomic.Int64
	cpu0, mach0, diffs0 := cpuTime(), readMachineCPU(), b.presenceDiffs()
	srv0, serr := b.metrics.scrape(ctx)
	t0 := time.Now()
	stopTicker := b.tick(func() {
		b.progressf("%s: %d/%d new streams joined after %.0fs", what, opened.Load(), st.NewStreams, time.Since(t0).Seconds())
	})
	defer stopTicker()
	err := b.dialReceivers(sctx, conns)
	st.ConnectSec = time.Since(t0).Seconds()
	if err == nil {
		t1 := time.Now()
		lat := newHistogram(16)
		err = b.openStreams(sctx, rs.opened, target, lat, &opened)
		st.JoinSec = time.Since(t1).Seconds()
		st.Join = summarize(lat.snapshot(), time.Duration(lat.max.Load()))
	}
	st.AllJoinedSec = time.Since(t0).Seconds()
	stopTicker()
	st.JoinBenchCores = (cpuTime() - cpu0).Seconds() / st.AllJoinedSec
	st.JoinMachineCores = (readMachineCPU().busy - mach0.busy) / st.AllJoinedSec
	if srv1, err := b.metrics.scrape(ctx); err == nil && serr == nil {
		st.JoinServerCores = (srv1.cpuSeconds - srv0.cpuSeconds) / srv1.at.Sub(srv0.at).Seconds()
	}
	if err != nil {
		return st, fmt.Errorf("%s: %w%s", what, err, b.stallHint(ctx, sctx))
	}
	for i := rs.opened; i < target; i++ {
		rs.roomOpen[i%cfg.rooms]++
	}
	rs.opened = target
	b.progressf("%s: connected in %.2fs, joined in %.2fs", what, st.ConnectSec, st.JoinSec)
	t2 := time.Now()
	b.settle(ctx)
	st.SettleSec = time.Since(t2).Seconds()
	st.PresenceDiffsPerStream = float64(b.presenceDiffs()-diffs0) / float64(target)
	st.Server = b.serverState(ctx, strconv.Itoa(target))
	st.perStream(base)
	st.Fanout, err = b.rampFanout(ctx, rs)
	if err != nil {
		return st, fmt.Errorf("%s: %w", what, err)
	}
	return st, nil
}

// stallHint explains a step that ran out of time, when the server's
// metrics tell why.
func (b *bench) stallHint(ctx, sctx context.Context) string {
	if !errors.Is(sctx.Err(), context.DeadlineExceeded) {
		return ""
	}
	hint := fmt.Sprintf(" (--step-timeout %s)", b.cfg.stepTimeout)
	s, err := b.metrics.scrape(ctx)
	if err == nil && s.maxFDs > 0 && s.fds >= s.maxFDs-16 {
		hint += fmt.Sprintf("; the server has %.0f of its %.0f files open (its ulimit -n): it cannot accept more connections; use --streams-per-conn", s.fds, s.maxFDs)
	}
	return hint
}

func (st *rampStep) perStream(base rampServer) {
	s := st.Server
	if s.Error != "" || base.Error != "" {
		return
	}
	n, c := float64(st.Streams), float64(st.Connections)
	st.RSSPerStream = (s.RSSBytes - base.RSSBytes) / n
	st.RSSPerConn = (s.RSSBytes - base.RSSBytes) / c
	st.HeapPerStream = (s.HeapInuseBytes - base.HeapInuseBytes) / n
	st.StackPerStream = (s.StackInuseBytes - base.StackInuseBytes) / n
	st.GoroutinesPerStream = (s.Goroutines - base.Goroutines) / n
	st.GoroutinesPerConn = (s.Goroutines - base.Goroutines) / c
}

// settle waits until the server's goroutine count is the same two seconds
// running (what joins started has finished), for at most 30 s.
func (b *bench) settle(ctx context.Context) {
	deadline := time.Now().Add(30 * time.Second)
	last := -1.0
	for time.Now().Before(deadline) {
		s, err := b.metrics.scrape(ctx)
		if err != nil {
			return
		}
		if s.goroutines == last {
			return
		}
		last = s.goroutines
		select {
		case <-time.After(time.Second): // polling interval
		case <-ctx.Done():
			return
		}
	}
}

// serverState reads the server's memory: garbage-collected first if
// --server-pprof is given (and its profiles kept with --profile-dir, named
// after step), RSS from /proc with --server-pid, the rest from /metrics.
func (b *bench) serverState(ctx context.Context, step string) rampServer {
	if b.cfg.serverPprof != "" {
		if err := b.collectServer(ctx, step); err != nil {
			return rampServer{Error: err.Error()}
		}
	}
	out, err := b.readServer(ctx)
	if err != nil {
		return rampServer{Error: err.Error()}
	}
	out.RSSAfterGCBytes = out.RSSBytes
	if b.cfg.rssSettle <= 0 {
		return out
	}
	// The runtime returns freed memory to the system a little at a time
	// (about 1% of a core's time): after a storm, RSS falls for a while.
	t0 := time.Now()
	deadline := t0.Add(b.cfg.rssSettle)
	var past []float64 // RSS once a second
	for time.Now().Before(deadline) {
		past = append(past, out.RSSBytes)
		if n := len(past); n > 5 && past[n-1] >= 0.995*past[n-6] {
			break // fell less than 0.5% in 5 s
		}
		select {
		case <-time.After(time.Second): // polling interval
		case <-ctx.Done():
			return out
		}
		next, err := b.readServer(ctx)
		if err != nil {
			break
		}
		next.RSSAfterGCBytes = out.RSSAfterGCBytes
		out = next
	}
	out.RSSSettleSec = time.Since(t0).Seconds()
	return out
}

// readServer reads the server's /metrics, and RSS from /proc with
// --server-pid.
func (b *bench) readServer(ctx context.Context) (rampServer, error) {
	s, err := b.metrics.scrape(ctx)
	if err != nil {
		return rampServer{}, err
	}
	out := rampServer{RSSBytes: s.rss, RSSSource: "/metrics", HeapInuseBytes: s.heapInuse, StackInuseBytes: s.stackInuse,
		HeapKeptBytes: s.heapIdle - s.heapFreed, Goroutines: s.goroutines, Streams: s.streams, GRPCConns: s.grpcConns, OpenFDs: s.fds, MaxFDs: s.maxFDs}
	if b.cfg.serverPID > 0 {
		path := fmt.Sprintf("/proc/%d/status", b.cfg.serverPID)
		rss, err := procRSS(path)
		if err != nil {
			return out, err
		}
		out.RSSBytes, out.RSSSource = rss, path
	}
	return out, nil
}

// procRSS reads VmRSS from a /proc/PID/status file, in bytes.
func procRSS(path string) (float64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("server RSS: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			if err != nil {
				return 0, fmt.Errorf("server RSS: %s: %q: %w", path, line, err)
			}
			return kb * 1024, nil
		}
	}
	return 0, fmt.Errorf("server RSS: no VmRSS in %s", path)
}

// collectServer garbage-collects the server four times (what a
// connect storm left behind is then freed) through its pprof endpoint, and
// keeps its heap and goroutine profiles with --profile-dir.
func (b *bench) collectServer(ctx context.Context, step string) error {
	base := strings.TrimSuffix(b.cfg.serverPprof, "/")
	var heap []byte
	for range 4 {
		var err error
		if heap, err = b.get(ctx, base+"/debug/pprof/heap?gc=1"); err != nil {
			return err
		}
	}
	if b.cfg.profileDir == "" {
		return nil
	}
	gor, err := b.get(ctx, base+"/debug/pprof/goroutine?debug=1")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(b.cfg.profileDir, "heap-"+step+".pb.gz"), heap, 0o644); err != nil {
		return fmt.Errorf("profile: %w", err)
	}
	if err := os.WriteFile(filepath.Join(b.cfg.profileDir, "goroutine-"+step+".txt"), gor, 0o644); err != nil {
		return fmt.Errorf("profile: %w", err)
	}
	return nil
}

// get fetches url with the metrics client's HTTP client, allowing a
// minute: a collection of a big heap takes seconds.
func (b *bench) get(ctx context.Context, url string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	client := *b.metrics.http
	client.Timeout = 0
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("server pprof: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	if err != nil {
		return nil, fmt.Errorf("server pprof %s: %w", url, err)
	}
	return body, nil
}

// rampFanout sends --ramp-messages rounds, one message from each sender to
// each of its rooms per round, each round once the last one's deliveries
// have all arrived (or --drain has passed), and reports their deliveries.
func (b *bench) rampFanout(ctx context.Context, rs *rampState) (fanoutReport, error) {
	var out fanoutReport
	recv0, dups0, gaps0 := b.received(), b.duplicates(), b.gaps()
	e2e0, ack0 := b.e2e.snapshot(), b.ack.snapshot()
	b.e2e.max.Store(0)
	b.ack.max.Store(0)
	acked := make([]uint64, len(b.roomAcked))
	for range b.cfg.rampMessages {
		for r := range acked {
			acked[r] = b.roomAcked[r].Load()
		}
		if err := b.sendRound(ctx); err != nil {
			return out, err
		}
		for r := range acked {
			n := b.roomAcked[r].Load() - acked[r]
			out.Messages += n
			out.Expected += n * rs.roomOpen[r]
		}
		b.awaitDeliveries(ctx, recv0+out.Expected)
	}
	out.Received = b.received() - recv0
	out.Duplicates, out.OutOfOrder = b.duplicates()-dups0, b.gaps()-gaps0
	if out.Expected > out.Received {
		out.Lost = out.Expected - out.Received
	}
	out.Latency = summarize(diffCounts(b.e2e.snapshot(), e2e0), time.Duration(b.e2e.max.Load()))
	out.Ack = summarize(diffCounts(b.ack.snapshot(), ack0), time.Duration(b.ack.max.Load()))
	return out, nil
}

// sendRound has every sender send one message to each of its rooms at
// once and waits for their acks.
func (b *bench) sendRound(ctx context.Context) error {
	deadline := time.Now().Add(b.cfg.drain)
	errs := make([]error, len(b.senders))
	var wg sync.WaitGroup
	for j, s := range b.senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[j] = s.sendRound(ctx, deadline)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// awaitDeliveries waits until the receivers have counted want measured
// deliveries, or --drain has passed.
func (b *bench) awaitDeliveries(ctx context.Context, want uint64) {
	deadline := time.Now().Add(b.cfg.drain)
	for b.received() < want && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(2 * time.Millisecond) // polling interval
	}
}

func (b *bench) presenceDiffs() (n uint64) {
	for _, r := range b.receivers {
		n += r.presence.Load()
	}
	return n
}

func (b *bench) duplicates() (n uint64) {
	for _, r := range b.receivers {
		n += r.dups.Load()
	}
	return n
}

func (b *bench) gaps() (n uint64) {
	for _, r := range b.receivers {
		n += r.gaps.Load()
	}
	return n
}

// finish checks every step's fan-out and the errors, and sets OK.
func (rep *rampReport) finish(b *bench) {
	add := func(cond bool, format string, args ...any) {
		if cond {
			rep.Problems = append(rep.Problems, fmt.Sprintf(format, args...))
		}
	}
	for _, st := range rep.Steps {
		f := st.Fanout
		add(f.Lost > 0, "at %d streams: %d expected deliveries had not arrived when --drain %s ended", st.Streams, f.Lost, b.cfg.drain)
		add(f.Received > f.Expected, "at %d streams: %d more deliveries than expected", st.Streams, f.Received-f.Expected)
		add(f.Duplicates > 0, "at %d streams: %d duplicate deliveries", st.Streams, f.Duplicates)
		add(f.OutOfOrder > 0, "at %d streams: %d deliveries skipped ahead of the next seq", st.Streams, f.OutOfOrder)
	}
	add(rep.StoppedBy != "", "the ramp stopped: %s", rep.StoppedBy)
	b.errMu.Lock()
	rep.Errors = make(map[string]uint64, len(b.errCounts))
	for c, n := range b.errCounts {
		rep.Errors[c.String()] = n
	}
	rep.ErrorSamples = append([]string(nil), b.errSamples...)
	b.errMu.Unlock()
	add(len(rep.Errors) > 0, "%d errors", b.errorTotal())
	rep.OK = len(rep.Problems) == 0
}

func (rep *rampReport) writeTable(w io.Writer) error {
	c := rep.Config
	fmt.Fprintf(w, "parley bench --ramp against %s: %s streams in %d room(s), %d per connection, %d sender(s), %d message(s) per sender and room per step\n",
		c.Addr, strings.TrimSuffix(c.Mode, " ramp"), c.Rooms, c.StreamsPerConn, c.Senders, rep.RampMessages)
	fmt.Fprintf(w, "server before the ramp: %s\n\n", rep.Base.text())
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "streams\tconns\tconnect s\tjoin s\tall joined s\tjoin p50/p99/max ms\tjoin cores srv/bench/all\tdiffs/stream\tserver rss (after GC)\trss/stream\trss/conn\theap/stream\tstacks/stream\tfree heap kept\tgoroutines\t/conn\tfan-out p50/p99/max ms\tack p50 ms\tlost/dup/reorder")
	for _, st := range rep.Steps {
		f, j := st.Fanout, st.Join
		fmt.Fprintf(tw, "%d\t%d\t%.2f\t%.2f\t%.2f\t%.0f/%.0f/%.0f\t%.2f/%.2f/%.2f\t%.1f\t%s (%s)\t%s\t%s\t%s\t%s\t%s\t%.0f\t%.2f\t%.1f/%.1f/%.1f\t%.1f\t%d/%d/%d\n",
			st.Streams, st.Connections, st.ConnectSec, st.JoinSec, st.AllJoinedSec, j.P50, j.P99, j.Max,
			st.JoinServerCores, st.JoinBenchCores, st.JoinMachineCores, st.PresenceDiffsPerStream,
			bytesText(st.Server.RSSBytes), bytesText(st.Server.RSSAfterGCBytes), bytesText(st.RSSPerStream), bytesText(st.RSSPerConn), bytesText(st.HeapPerStream),
			bytesText(st.StackPerStream), bytesText(st.Server.HeapKeptBytes), st.Server.Goroutines, st.GoroutinesPerConn,
			f.Latency.P50, f.Latency.P99, f.Latency.Max, f.Ack.P50, f.Lost, f.Duplicates, f.OutOfOrder)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw)
	for _, st := range rep.Steps {
		if st.Server.Error != "" {
			fmt.Fprintf(tw, "server at %d\tno figures: %s\n", st.Streams, st.Server.Error)
		}
	}
	fmt.Fprintf(tw, "errors\t%s\n", errorsText(rep.Errors))
	for _, s := range rep.ErrorSamples {
		fmt.Fprintf(tw, "\t  %s\n", s)
	}
	result := "PASS"
	if !rep.OK {
		result = "FAIL: " + strings.Join(rep.Problems, "; ")
	}
	fmt.Fprintf(tw, "result\t%s\n", result)
	return tw.Flush()
}

func (s rampServer) text() string {
	if s.Error != "" {
		return "no figures: " + s.Error
	}
	return fmt.Sprintf("rss %s (from %s; %s right after GC), heap in use %s, stacks %s, free heap not returned %s, %.0f goroutines, %.0f of %.0f files open",
		bytesText(s.RSSBytes), s.RSSSource, bytesText(s.RSSAfterGCBytes), bytesText(s.HeapInuseBytes), bytesText(s.StackInuseBytes), bytesText(s.HeapKeptBytes),
		s.Goroutines, s.OpenFDs, s.MaxFDs)
}

// rampCmd runs a ramp for Bench and prints its report.
func rampCmd(ctx context.Context, b *bench) error {
	rep, err := b.runRamp(ctx)
	if err != nil {
		return err
	}
	if b.cfg.json {
		err = writeJSON(b.e.Stdout, rep)
	} else {
		err = rep.writeTable(b.e.Stdout)
	}
	if err != nil {
		return err
	}
	if !rep.OK {
		return cli.ErrFailed
	}
	return nil
}
