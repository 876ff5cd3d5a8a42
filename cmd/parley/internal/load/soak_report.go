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
}

var soakCSVHeader = []string{"elapsed_s", "rss_bytes", "heap_inuse_bytes", "goroutines", "open_fds", "streams",
	"grpc_connections", "queue_bytes", "deliveries", "sends", "resumes", "cutoffs", "violations"}

func (s soakSample) csvRow() []string {
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
	u := func(v uint64) string { return strconv.FormatUint(v, 10) }
	return []string{strconv.FormatFloat(s.at.Seconds(), 'f', 1, 64), f(s.srv.rss), f(s.srv.heapInuse), f(s.srv.goroutines),
		f(s.srv.fds), f(s.srv.streams), f(s.srv.grpcConns), f(s.srv.queueBytes),
		u(s.deliveries), u(s.sends), u(s.resumes), u(s.cutoffs), u(s.violations)}
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
		resumes: c.resumes.Load() + c.rejoins.Load(), cutoffs: c.cutoffs.Load(), violations: s.check.count("")}
	s.samples = append(s.samples, smp)
	if err := out.write(smp.csvRow()); err != nil {
		s.progressf("%v", err)
	}
	s.progressf("%5.0fs rss %s heap %s goroutines %.0f fds %.0f streams %.0f | deliveries %d sends %d resumes %d cut-offs %d violations %d",
		smp.at.Seconds(), bytesText(srv.rss), bytesText(srv.heapInuse), srv.goroutines, srv.fds, srv.streams,
		smp.deliveries, smp.sends, smp.resumes, smp.cutoffs, smp.violations)
}

// soakReport is the summary of a run.
type soakReport struct {
	s       *soak
	elapsed time.Duration
	base    serverSample
	leaks   leakCheck
	ok      bool
}

func (s *soak) report(base serverSample, leaks leakCheck, elapsed time.Duration) *soakReport {
	return &soakReport{s: s, elapsed: elapsed, base: base, leaks: leaks, ok: s.check.count("") == 0}
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
	smp := r.s.samples
	if len(smp) > 1 {
		smp = smp[:len(smp)-1]
	}
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
	if err := tw.Flush(); err != nil {
		return err
	}
	secs := r.elapsed.Seconds()
	lines := []string{
		fmt.Sprintf("deliveries\t%d (%.0f/s) checked on Join, Subscribe and REST streams; %d send replies checked", s.check.deliveries.Load(), float64(s.check.deliveries.Load())/secs, s.check.replies.Load()),
		fmt.Sprintf("sends\t%d (%.0f/s), %d sent again with the same client_msg_id; %d typing", c.sends.Load(), float64(c.sends.Load())/secs, c.retries.Load(), c.typing.Load()),
		fmt.Sprintf("resumes\t%d Join streams reopened with after_seq, %d rooms left and joined again, %d TCP connections dropped (RST), %d left silent, %d Join streams that failed to open",
			c.resumes.Load(), c.rejoins.Load(), c.drops.Load(), c.vanished.Load(), c.streamOpenFails.Load()),
		fmt.Sprintf("side streams\t%d Subscribe, %d REST, each cut after 1-10 s", c.subscribes.Load(), c.rests.Load()),
		fmt.Sprintf("cut-offs\t%d slow consumers resumed from the server's after_seq (%d pauses; server counted %.0f; %d positions behind what arrived)", c.cutoffs.Load(), c.pauses.Load(), r.leaks.final.slowCuts-r.base.slowCuts, c.cutBehind.Load()),
		fmt.Sprintf("released\t%s", r.releasedText()),
	}
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
