package load

import (
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
)

// soakSample is one sample of the server's /metrics and the soak's counts.
type soakSample struct {
	at         time.Duration // since the churn started
	srv        serverSample
	deliveries uint64
	sends      uint64
	resumes    uint64
	cutoffs    uint64
	violations uint64
	replays    uint64 // joins and side streams with after_seq
	replayed   uint64 // messages they asked to have replayed
}

// soakCSVHeader names the CSV's columns; the counts are totals since the
// churn started.
var soakCSVHeader = []string{"elapsed_s", "rss_bytes", "heap_inuse_bytes", "goroutines", "open_fds", "streams",
	"grpc_connections", "queue_bytes", "deliveries", "sends", "resumes", "cutoffs", "violations", "replays", "replayed"}

func (s soakSample) csvRow() []string {
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
	u := func(v uint64) string { return strconv.FormatUint(v, 10) }
	return []string{strconv.FormatFloat(s.at.Seconds(), 'f', 1, 64), f(s.srv.rss), f(s.srv.heapInuse), f(s.srv.goroutines),
		f(s.srv.fds), f(s.srv.streams), f(s.srv.grpcConns), f(s.srv.queueBytes),
		u(s.deliveries), u(s.sends), u(s.resumes), u(s.cutoffs), u(s.violations), u(s.replays), u(s.replayed)}
}

// sampleCSV writes samples to a file as they are taken (nil: no file).
type sampleCSV struct {
	f *os.File
	w *csv.Writer
}

func openSampleCSV(path string) (*sampleCSV, error) {
	if path == "" {
		return &sampleCSV{}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("csv: %w", err)
	}
	c := &sampleCSV{f: f, w: csv.NewWriter(f)}
	return c, c.write(soakCSVHeader)
}

func (c *sampleCSV) write(row []string) error {
	if c.w == nil {
		return nil
	}
	if err := c.w.Write(row); err != nil {
		return fmt.Errorf("csv: %w", err)
	}
	c.w.Flush() // each row on disk at once: a run cut short keeps its samples
	return c.w.Error()
}

func (c *sampleCSV) close() error {
	if c.f == nil {
		return nil
	}
	c.w.Flush()
	err := firstErr(c.w.Error(), c.f.Close())
	c.f, c.w = nil, nil
	return err
}

// startSampling samples every --sample until the returned stop is called.
func (s *soak) startSampling(ctx context.Context, start time.Time, out *sampleCSV) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.sampleOnce(ctx, start, out)
		t := time.NewTicker(s.cfg.sample)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				s.sampleOnce(ctx, start, out)
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// sampleOnce scrapes the server, records the sample with the soak's counts
// and prints a progress line. Only the sampling goroutine, or the run once
// it has stopped, calls it.
func (s *soak) sampleOnce(ctx context.Context, start time.Time, out *sampleCSV) {
	ctx, cancel := context.WithTimeout(ctx, 4*time.Second)
	defer cancel()
	srv, err := s.metrics.scrape(ctx)
	if err != nil {
		s.progressf("scrape failed: %v", err)
		return
	}
	c := &s.counts
	smp := soakSample{at: time.Since(start), srv: srv, deliveries: s.check.deliveries.Load(), sends: c.sends.Load(),
		resumes: c.resumes.Load() + c.rejoins.Load(), cutoffs: c.cutoffs.Load(), violations: s.check.count(""),
		replays: c.replays.Load(), replayed: c.replayed.Load()}
	s.samples = append(s.samples, smp)
	if err := out.write(smp.csvRow()); err != nil {
		s.progressf("%v", err)
	}
	s.progressf("%5.0fs rss %s heap %s goroutines %.0f fds %.0f streams %.0f | deliveries %d sends %d resumes %d replayed %d cut-offs %d violations %d",
		smp.at.Seconds(), bytesText(srv.rss), bytesText(srv.heapInuse), srv.goroutines, srv.fds, srv.streams,
		smp.deliveries, smp.sends, smp.resumes, smp.replayed, smp.cutoffs, smp.violations)
}

// soakReport is the summary of a run.
type soakReport struct {
	s       *soak
	elapsed time.Duration
	base    serverSample
	leaks   leakCheck
	heap    heapCheck
	ok      bool
}

func (s *soak) report(base serverSample, leaks leakCheck, elapsed time.Duration) *soakReport {
	r := &soakReport{s: s, elapsed: elapsed, base: base, leaks: leaks, ok: s.check.count("") == 0}
	r.heap = heapFlatness(r.churnSamples(), s.cfg.duration, s.cfg.heapFrom, s.cfg.heapGrowth)
	if r.heap.checked && !r.heap.flat {
		r.ok = false
	}
	return r
}

// churnSamples are the samples taken during the churn (the last one,
// after it, is left out).
func (r *soakReport) churnSamples() []soakSample {
	smp := r.s.samples
	if len(smp) > 1 {
		smp = smp[:len(smp)-1]
	}
	return smp
}

// heapCheck compares the server's heap in use after it should have
// levelled off with the end of the run: the median of each window's
// samples, so that one sample at a GC's peak or trough does not decide.
type heapCheck struct {
	checked     bool
	from, end   [2]time.Duration // the windows compared
	early, late float64          // their median heap in use
	growth      float64          // late/early - 1, in percent
	flat        bool             // growth within the limit
}

// heapFlatness compares the samples from from-1m to from+1m with those of
// the last two minutes of a run of duration d; a run too short for the
// windows to be apart is not checked.
func heapFlatness(smp []soakSample, d, from time.Duration, limit float64) heapCheck {
	hc := heapCheck{from: [2]time.Duration{from - time.Minute, from + time.Minute}, end: [2]time.Duration{d - 2*time.Minute, d}}
	if hc.end[0] < hc.from[1] {
		return hc
	}
	var early, late []float64
	for _, x := range smp {
		switch {
		case x.at >= hc.from[0] && x.at <= hc.from[1]:
			early = append(early, x.srv.heapInuse)
		case x.at >= hc.end[0] && x.at <= hc.end[1]:
			late = append(late, x.srv.heapInuse)
		}
	}
	if len(early) == 0 || len(late) == 0 {
		return hc
	}
	hc.checked = true
	hc.early, hc.late = median(early), median(late)
	hc.growth = 100 * (hc.late/hc.early - 1)
	hc.flat = hc.growth <= limit
	return hc
}

func median(v []float64) float64 {
	v = slices.Clone(v)
	slices.Sort(v)
	return v[len(v)/2]
}

func (r *soakReport) heapText() string {
	hc, cfg := r.heap, r.s.cfg
	if !hc.checked {
		return fmt.Sprintf("not checked: the run needs samples from %s to %s and in its last two minutes, apart (--duration at least --heap-from + 3m)",
			minText(hc.from[0]), minText(hc.from[1]))
	}
	verdict := "PASS"
	if !hc.flat {
		verdict = "FAIL"
	}
	return fmt.Sprintf("%s: heap in use %s at %s-%s, %s at %s-%s (median of the samples): %+.1f%%, limit +%g%%",
		verdict, bytesText(hc.early), minText(hc.from[0]), minText(hc.from[1]), bytesText(hc.late), minText(hc.end[0]), minText(hc.end[1]), hc.growth, cfg.heapGrowth)
}

func minText(d time.Duration) string { return strconv.FormatFloat(d.Minutes(), 'f', -1, 64) + "m" }

// minuteRow is one minute of the churn: the server's heap and goroutines
// (median of the minute's samples) and what the users did in it.
type minuteRow struct {
	minute                               int
	heap, goroutines                     float64
	deliveries, sends, resumes, replayed uint64
}

// perMinute splits the samples taken in the first d into minutes; the
// counts are the growth of the totals from the previous minute's last
// sample.
func perMinute(smp []soakSample, d time.Duration) []minuteRow {
	if i := slices.IndexFunc(smp, func(x soakSample) bool { return x.at > d }); i >= 0 {
		smp = smp[:i]
	}
	var rows []minuteRow
	var prev soakSample
	// A sample at 60 s ends minute 1; the one at 0 s is in it too.
	minute := func(at time.Duration) int { return max(1, int((at+time.Minute-1)/time.Minute)) }
	for i := 0; i < len(smp); {
		m := minute(smp[i].at)
		j := i
		var heap, gor []float64
		for ; j < len(smp) && minute(smp[j].at) == m; j++ {
			heap, gor = append(heap, smp[j].srv.heapInuse), append(gor, smp[j].srv.goroutines)
		}
		last := smp[j-1]
		rows = append(rows, minuteRow{minute: m, heap: median(heap), goroutines: median(gor),
			deliveries: last.deliveries - prev.deliveries, sends: last.sends - prev.sends,
			resumes: last.resumes - prev.resumes, replayed: last.replayed - prev.replayed})
		prev, i = last, j
	}
	return rows
}

// column is one metric of the samples.
type column struct {
	name string
	get  func(serverSample) float64
	text func(float64) string
}

func countText(v float64) string { return strconv.FormatFloat(v, 'f', 0, 64) }

var soakColumns = []column{
	{"rss", func(s serverSample) float64 { return s.rss }, bytesText},
	{"heap in use", func(s serverSample) float64 { return s.heapInuse }, bytesText},
	{"goroutines", func(s serverSample) float64 { return s.goroutines }, countText},
	{"open fds", func(s serverSample) float64 { return s.fds }, countText},
	{"streams", func(s serverSample) float64 { return s.streams }, countText},
	{"gRPC connections", func(s serverSample) float64 { return s.grpcConns }, countText},
	{"queued bytes", func(s serverSample) float64 { return s.queueBytes }, bytesText},
}

// sampleStats returns the first, median and last of a column over the
// samples taken during the churn (the last one, after it, is left out).
func (r *soakReport) sampleStats(col column) (first, median, last float64) {
	smp := r.churnSamples()
	if len(smp) == 0 {
		return 0, 0, 0
	}
	vals := make([]float64, len(smp))
	for i, x := range smp {
		vals[i] = col.get(x.srv)
	}
	first, last = vals[0], vals[len(vals)-1]
	slices.Sort(vals)
	return first, vals[len(vals)/2], last
}

func (r *soakReport) writeTable(w io.Writer) error {
	s, c := r.s, &r.s.counts
	cfg := s.cfg
	fmt.Fprintf(w, "parley soak against %s: %d users over %d rooms (%d each), an action per user every %s, bodies up to %d bytes, for %s (seed %d)\n\n",
		s.e.Globals.Addr, cfg.users, cfg.rooms, cfg.roomsPerUser, cfg.every, cfg.size, cfg.duration, cfg.seed)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "server (%d samples, every %s)\tfirst\tmedian\tlast\tafter\t\n", max(0, len(s.samples)-1), cfg.sample)
	for _, col := range soakColumns {
		first, median, last := r.sampleStats(col)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t\n", col.name, col.text(first), col.text(median), col.text(last), col.text(col.get(r.leaks.final)))
	}
	fmt.Fprintf(tw, "\n")
	fmt.Fprintf(tw, "minute\theap in use\tgoroutines\tdeliveries\tsends\tresumes\treplayed\t\n")
	for _, m := range perMinute(r.churnSamples(), cfg.duration) {
		fmt.Fprintf(tw, "%d\t%s\t%.0f\t%d\t%d\t%d\t%d\t\n", m.minute, bytesText(m.heap), m.goroutines, m.deliveries, m.sends, m.resumes, m.replayed)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	secs := r.elapsed.Seconds()
	lines := []string{
		fmt.Sprintf("deliveries\t%d (%.0f/s) checked on Join, Subscribe and REST streams; %d send replies checked", s.check.deliveries.Load(), float64(s.check.deliveries.Load())/secs, s.check.replies.Load()),
		fmt.Sprintf("sends\t%d (%.0f/s), %d sent again with the same client_msg_id; %d typing", c.sends.Load(), float64(c.sends.Load())/secs, c.retries.Load(), c.typing.Load()),
		fmt.Sprintf("resumes\t%d Join streams reopened with after_seq, %d room switches joining with after_seq, %d TCP connections dropped (RST), %d left silent, %d Join streams that failed to open",
			c.resumes.Load(), c.rejoins.Load(), c.drops.Load(), c.vanished.Load(), c.streamOpenFails.Load()),
		fmt.Sprintf("side streams\t%d Subscribe, %d REST, each cut after 1-10 s", c.subscribes.Load(), c.rests.Load()),
		fmt.Sprintf("replays\t%d joins and side streams with after_seq asked for %d messages (%.0f/s), the longest %d; %s; %d replays the server could not read and said so, joined again",
			c.replays.Load(), c.replayed.Load(), float64(c.replayed.Load())/secs, c.longestReplay.Load(), r.replayBoundText(), c.replayFails.Load()),
		fmt.Sprintf("cut-offs\t%d slow consumers resumed from the server's after_seq (%d pauses; server counted %.0f; %d positions behind what arrived)", c.cutoffs.Load(), c.pauses.Load(), r.leaks.final.slowCuts-r.base.slowCuts, c.cutBehind.Load()),
		fmt.Sprintf("released\t%s", r.releasedText()),
	}
	lines = append(lines, "heap flat\t"+r.heapText())
	lines = append(lines, s.check.reportLines()...)
	result := "PASS"
	if !r.ok {
		result = "FAIL"
	}
	lines = append(lines, "result\t"+result)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "\n%s\n", strings.Join(lines, "\n"))
	return tw.Flush()
}

func (r *soakReport) releasedText() string {
	b, f := r.base, r.leaks.final
	state := "yes"
	if !r.leaks.settled {
		state = "NO"
	}
	return fmt.Sprintf("%s, %.1fs after the users left: streams %.0f (baseline %.0f), gRPC connections %.0f (%.0f), goroutines %.0f (%.0f), open fds %.0f (%.0f)",
		state, r.leaks.waited.Seconds(), f.streams, b.streams, f.grpcConns, b.grpcConns, f.goroutines, b.goroutines, f.fds, b.fds)
}

func (r *soakReport) replayBoundText() string {
	if n := r.s.cfg.maxReplay; n > 0 {
		return fmt.Sprintf("--max-replay %d behind the head the soak knew", n)
	}
	return "unbounded (--max-replay 0): rejoins resume from where the user left"
}
