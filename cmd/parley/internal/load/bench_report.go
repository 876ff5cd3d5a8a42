package load

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"runtime"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
)

// benchReport is what parley bench prints, as a table or as JSON.
type benchReport struct {
	Config  reportConfig  `json:"config"`
	Connect connectReport `json:"connect"`

	Sent            uint64  `json:"sent"`
	Acked           uint64  `json:"acked"`
	SentPerSec      float64 `json:"sent_per_sec"`
	AckedPerSec     float64 `json:"acked_per_sec"`
	DeliveredPerSec float64 `json:"delivered_per_sec"`

	Expected   uint64 `json:"expected_deliveries"`
	Received   uint64 `json:"received_deliveries"`
	Lost       uint64 `json:"lost"`
	Extra      uint64 `json:"extra"`
	Duplicates uint64 `json:"duplicates"`
	OutOfOrder uint64 `json:"out_of_order"`
	Foreign    uint64 `json:"foreign_messages"`

	Delivery       latencySummary `json:"delivery_latency"`
	Ack            latencySummary `json:"ack_latency"`
	SenderLagMaxMs float64        `json:"sender_lag_max_ms"`

	Marks       uint64  `json:"marks"` // mark_read frames sent in the measured window
	MarksPerSec float64 `json:"marks_per_sec"`

	Errors       map[string]uint64 `json:"errors"`
	ErrorSamples []string          `json:"error_samples,omitempty"`

	Server  serverReport  `json:"server"`
	Bench   cpuReport     `json:"bench"`
	Machine machineReport `json:"machine"`

	OK       bool     `json:"ok"`
	Problems []string `json:"problems,omitempty"`
}

type reportConfig struct {
	Mode           string  `json:"mode"`
	Receivers      int     `json:"receivers"`
	Rooms          int     `json:"rooms"`
	Senders        int     `json:"senders"`
	SendVia        string  `json:"send_via"`
	Rate           float64 `json:"rate"`
	SizeBytes      int     `json:"size_bytes"`
	WarmupSec      float64 `json:"warmup_sec"`
	DurationSec    float64 `json:"duration_sec"`
	StreamsPerConn int     `json:"streams_per_conn"`
	Connections    int     `json:"connections"`
	MaxInflight    int     `json:"max_inflight"`
	MarkReadRate   float64 `json:"mark_read_rate"`
	Addr           string  `json:"addr"`
}

type connectReport struct {
	Streams   int            `json:"streams"`
	Seconds   float64        `json:"seconds"`
	PerStream latencySummary `json:"per_stream"`
}

type serverReport struct {
	CPUCores             float64 `json:"cpu_cores"`
	CPUMicrosPerDelivery float64 `json:"cpu_us_per_delivery"`
	DeliveriesPerSec     float64 `json:"deliveries_per_sec"`
	RSSMaxBytes          float64 `json:"rss_max_bytes"`
	RSSBeforeBytes       float64 `json:"rss_before_connect_bytes"`
	RSSConnectedBytes    float64 `json:"rss_connected_bytes"`
	RSSPerStreamBytes    float64 `json:"rss_per_stream_bytes"`
	Streams              float64 `json:"streams"`
	SlowConsumerCuts     float64 `json:"slow_consumer_cuts"`
	MetricsError         string  `json:"metrics_error,omitempty"`
}

type cpuReport struct {
	CPUCores float64 `json:"cpu_cores"`
}

// machineReport is the whole machine's CPU over the measured window, so a
// reader can tell whether something besides the server and the bench ran.
type machineReport struct {
	Cores        int     `json:"cores"`
	BusyCores    float64 `json:"busy_cores"`
	SoftirqCores float64 `json:"softirq_cores"`
	// OtherCores is busy minus softirq, server and bench: other processes.
	OtherCores float64 `json:"other_cores"`
}

func (rep *benchReport) fillConfig(b *bench, conns int) {
	c := b.cfg
	mode := "join"
	if c.subscribe {
		mode = "subscribe"
	}
	rep.Config = reportConfig{Mode: mode, Receivers: c.receivers, Rooms: c.rooms, Senders: c.senders, SendVia: c.sendVia, Rate: c.rate,
		SizeBytes: c.size, WarmupSec: c.warmup.Seconds(), DurationSec: c.duration.Seconds(),
		StreamsPerConn: c.streamsPerConn, Connections: conns + c.senders, MaxInflight: c.window(), MarkReadRate: c.markRate,
		Addr: b.e.Globals.Addr}
}

// fillWindow records the server's and the bench's CPU over the measured
// window, from samples at its two edges.
func (rep *benchReport) fillWindow(b *bench, w0, w1 windowSample, rssMax float64) {
	wall := w1.wall.Sub(w0.wall).Seconds()
	rep.Machine.Cores = runtime.NumCPU()
	if wall > 0 {
		rep.Bench.CPUCores = (w1.cpu - w0.cpu).Seconds() / wall
		rep.Machine.BusyCores = (w1.mach.busy - w0.mach.busy) / wall
		rep.Machine.SoftirqCores = (w1.mach.softirq - w0.mach.softirq) / wall
	}
	defer func() {
		rep.Machine.OtherCores = max(0, rep.Machine.BusyCores-rep.Machine.SoftirqCores-rep.Bench.CPUCores-rep.Server.CPUCores)
	}()
	if err := firstErr(w0.err, w1.err); err != nil {
		rep.Server.MetricsError = err.Error()
		return
	}
	swall := w1.server.at.Sub(w0.server.at).Seconds()
	cpu := w1.server.cpuSeconds - w0.server.cpuSeconds
	deliveries := w1.server.deliveries - w0.server.deliveries
	if swall > 0 {
		rep.Server.CPUCores = cpu / swall
		rep.Server.DeliveriesPerSec = deliveries / swall
	}
	if deliveries > 0 {
		rep.Server.CPUMicrosPerDelivery = cpu * 1e6 / deliveries
	}
	rep.Server.RSSMaxBytes = rssMax
	rep.Server.Streams = w1.server.streams
	rep.Server.SlowConsumerCuts = w1.server.slowCuts - w0.server.slowCuts
}

// fillServerIdle records memory before and after the streams connected.
func (rep *benchReport) fillServerIdle(b *bench, before, connected serverSample, err error) {
	if err != nil {
		if rep.Server.MetricsError == "" {
			rep.Server.MetricsError = err.Error()
		}
		return
	}
	rep.Server.RSSBeforeBytes = before.rss
	rep.Server.RSSConnectedBytes = connected.rss
	if n := b.cfg.receivers + b.cfg.senders; n > 0 {
		rep.Server.RSSPerStreamBytes = (connected.rss - before.rss) / float64(n)
	}
}

// finish adds up the counters, checks the invariants and sets OK.
func (rep *benchReport) finish(b *bench) {
	d := b.cfg.duration.Seconds()
	for _, s := range b.senders {
		rep.Sent += s.measured.Load()
	}
	for r := range b.roomAcked {
		rep.Acked += b.roomAcked[r].Load()
	}
	rep.Expected, rep.Received = b.expected(), b.received()
	for _, r := range b.receivers {
		rep.Duplicates += r.dups.Load()
		rep.OutOfOrder += r.gaps.Load()
		rep.Foreign += r.foreign.Load()
	}
	if rep.Expected > rep.Received {
		rep.Lost = rep.Expected - rep.Received
	} else {
		rep.Extra = rep.Received - rep.Expected
	}
	rep.SentPerSec, rep.AckedPerSec, rep.DeliveredPerSec = float64(rep.Sent)/d, float64(rep.Acked)/d, float64(rep.Received)/d
	rep.Delivery = summarize(b.e2e.snapshot(), time.Duration(b.e2e.max.Load()))
	rep.Ack = summarize(b.ack.snapshot(), time.Duration(b.ack.max.Load()))
	rep.SenderLagMaxMs = ms(time.Duration(b.maxLag.Load()))
	rep.Marks = b.marksMeasured.Load()
	rep.MarksPerSec = float64(rep.Marks) / d
	b.errMu.Lock()
	rep.Errors = make(map[string]uint64, len(b.errCounts))
	for c, n := range b.errCounts {
		rep.Errors[c.String()] = n
	}
	rep.ErrorSamples = append([]string(nil), b.errSamples...)
	b.errMu.Unlock()
	rep.check(b)
}

func (rep *benchReport) check(b *bench) {
	add := func(cond bool, format string, args ...any) {
		if cond {
			rep.Problems = append(rep.Problems, fmt.Sprintf(format, args...))
		}
	}
	add(rep.Lost > 0, "%d expected deliveries had not arrived when --drain %s ended (lost, or still queued: see the latencies)", rep.Lost, b.cfg.drain)
	add(rep.Extra > 0, "%d more deliveries than expected", rep.Extra)
	add(rep.Duplicates > 0, "%d duplicate deliveries", rep.Duplicates)
	add(rep.OutOfOrder > 0, "%d deliveries skipped ahead of the next seq", rep.OutOfOrder)
	add(len(rep.Errors) > 0, "%d errors", b.errorTotal())
	add(b.cfg.senders > 0 && rep.Acked == 0, "no message sent in the measured window was acknowledged")
	add(rep.Acked < rep.Sent && len(rep.Errors) == 0, "%d sends were not acknowledged within --drain", rep.Sent-rep.Acked)
	rep.OK = len(rep.Problems) == 0
}

func (rep *benchReport) writeJSON(w io.Writer) error { return writeJSON(w, rep) }

// writeJSON writes v as indented JSON.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func (rep *benchReport) writeTable(w io.Writer) error {
	c := rep.Config
	fmt.Fprintf(w, "parley bench against %s: %d %s streams in %d room(s) over %d connection(s), %d %s sender(s) at %s, %d-byte bodies, %gs warm-up + %gs measured\n\n",
		c.Addr, c.Receivers, c.Mode, c.Rooms, c.Connections, c.Senders, c.SendVia, rateText(c.Rate), c.SizeBytes, c.WarmupSec, c.DurationSec)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	cs := rep.Connect.PerStream
	fmt.Fprintf(tw, "connect\t%d streams in %.2fs (per stream p50 %s, p99 %s, max %s)\n", rep.Connect.Streams, rep.Connect.Seconds, msText(cs.P50), msText(cs.P99), msText(cs.Max))
	fmt.Fprintf(tw, "rates\tsent %.1f/s, acked %.1f/s, delivered %.1f/s\n", rep.SentPerSec, rep.AckedPerSec, rep.DeliveredPerSec)
	if c.MarkReadRate > 0 {
		fmt.Fprintf(tw, "read marks\t%d mark_read frames in the measured window, %.1f/s (asked %g/s)\n", rep.Marks, rep.MarksPerSec, c.MarkReadRate)
	}
	fmt.Fprintf(tw, "deliveries\texpected %d, received %d: lost %d, extra %d, duplicates %d, out of order %d\n",
		rep.Expected, rep.Received, rep.Lost, rep.Extra, rep.Duplicates, rep.OutOfOrder)
	fmt.Fprintf(tw, "latency (ms)\tcount\tp50\tp90\tp99\tp99.9\tmax\n")
	for _, l := range []struct {
		name string
		s    latencySummary
	}{{"  delivery", rep.Delivery}, {"  ack", rep.Ack}} {
		fmt.Fprintf(tw, "%s\t%d\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\n", l.name, l.s.Count, l.s.P50, l.s.P90, l.s.P99, l.s.P999, l.s.Max)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "sender lag\tmax %.2f ms behind schedule\n", rep.SenderLagMaxMs)
	fmt.Fprintf(tw, "errors\t%s\n", errorsText(rep.Errors))
	for _, s := range rep.ErrorSamples {
		fmt.Fprintf(tw, "\t  %s\n", s)
	}
	fmt.Fprintf(tw, "server\t%s\n", rep.Server.text())
	fmt.Fprintf(tw, "bench\tcpu %.2f cores\n", rep.Bench.CPUCores)
	m := rep.Machine
	fmt.Fprintf(tw, "machine\t%d cores, %.2f busy: softirq %.2f, other processes %.2f\n", m.Cores, m.BusyCores, m.SoftirqCores, m.OtherCores)
	result := "PASS"
	if !rep.OK {
		result = "FAIL: " + strings.Join(rep.Problems, "; ")
	}
	fmt.Fprintf(tw, "result\t%s\n", result)
	return tw.Flush()
}

func (s serverReport) text() string {
	if s.MetricsError != "" {
		return "no metrics: " + s.MetricsError
	}
	return fmt.Sprintf("cpu %.2f cores, %.2f µs/delivery, %.0f deliveries/s; rss max %s (before connect %s, connected %s: %s/stream); slow-consumer cut-offs %.0f",
		s.CPUCores, s.CPUMicrosPerDelivery, s.DeliveriesPerSec, bytesText(s.RSSMaxBytes), bytesText(s.RSSBeforeBytes),
		bytesText(s.RSSConnectedBytes), bytesText(s.RSSPerStreamBytes), s.SlowConsumerCuts)
}

func rateText(r float64) string {
	if r == 0 {
		return "max rate"
	}
	return fmt.Sprintf("%g msgs/s", r)
}

func msText(v float64) string { return fmt.Sprintf("%.1fms", v) }

func bytesText(b float64) string {
	switch a := math.Abs(b); {
	case a >= 1<<30:
		return fmt.Sprintf("%.2f GiB", b/(1<<30))
	case a >= 1<<20:
		return fmt.Sprintf("%.1f MiB", b/(1<<20))
	case a >= 1<<10:
		return fmt.Sprintf("%.1f KiB", b/(1<<10))
	}
	return fmt.Sprintf("%.0f B", b)
}

func errorsText(m map[string]uint64) string {
	if len(m) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}

// progress prints a line a second on stderr and tracks the server's
// largest RSS.
type progress struct {
	b      *bench
	done   chan struct{}
	wg     sync.WaitGroup
	mu     sync.Mutex
	rssMax float64
}

func (b *bench) startProgress() *progress {
	p := &progress{b: b, done: make(chan struct{})}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		p.loop()
	}()
	return p
}

func (p *progress) stop() {
	close(p.done)
	p.wg.Wait()
}

func (p *progress) noteRSS(v float64) {
	p.mu.Lock()
	p.rssMax = max(p.rssMax, v)
	p.mu.Unlock()
}

func (p *progress) maxRSS() float64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rssMax
}

// counters is a point-in-time sum of the bench's counters.
type counters struct {
	at                  time.Time
	sent, acked, frames uint64
	cpu                 time.Duration
	live                []uint64
	server              serverSample
	serverOK            bool
}

func (p *progress) sample() counters {
	b := p.b
	c := counters{at: time.Now(), cpu: cpuTime(), live: b.live.snapshot()}
	for _, s := range b.senders {
		c.sent += s.sent.Load()
		c.acked += s.acked.Load()
	}
	for _, r := range b.receivers {
		c.frames += r.frames.Load()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 900*time.Millisecond)
	defer cancel()
	var err error
	if c.server, err = b.metrics.scrape(ctx); err == nil {
		c.serverOK = true
		p.noteRSS(c.server.rss)
	}
	return c
}

func (p *progress) loop() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	prev := p.sample()
	for {
		select {
		case <-p.done:
			return
		case <-t.C:
		}
		cur := p.sample()
		if !p.b.cfg.quiet {
			fmt.Fprintln(p.b.e.Stderr, p.line(prev, cur))
		}
		prev = cur
	}
}

func (p *progress) line(prev, cur counters) string {
	b := p.b
	now := b.now()
	phase := "measure"
	switch {
	case now < b.winStart.Load():
		phase = "warm-up"
	case now >= b.winEnd.Load():
		phase = "drain"
	}
	dt := cur.at.Sub(prev.at).Seconds()
	rate := func(a, b uint64) float64 { return float64(a-b) / dt }
	lat := summarize(diffCounts(cur.live, prev.live), 0)
	line := fmt.Sprintf("bench: %5.1fs %-7s sent %.0f/s acked %.0f/s delivered %.0f/s | delivery p50 %.1fms p99 %.1fms | bench cpu %.2f",
		time.Duration(now).Seconds(), phase, rate(cur.sent, prev.sent), rate(cur.acked, prev.acked), rate(cur.frames, prev.frames),
		lat.P50, lat.P99, (cur.cpu-prev.cpu).Seconds()/dt)
	if cur.serverOK && prev.serverOK {
		sdt := cur.server.at.Sub(prev.server.at).Seconds()
		line += fmt.Sprintf(" | server cpu %.2f rss %s streams %.0f", (cur.server.cpuSeconds-prev.server.cpuSeconds)/sdt,
			bytesText(cur.server.rss), cur.server.streams)
	}
	return line
}
