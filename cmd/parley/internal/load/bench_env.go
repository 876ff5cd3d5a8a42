package load

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/parleychat/parley/cmd/parley/internal/cli"
	parleyv1 "github.com/parleychat/parley/gen/parley/v1"
)

// serverSample is one scrape of the server's /metrics.
type serverSample struct {
	at         time.Time
	cpuSeconds float64 // process_cpu_seconds_total
	rss        float64 // process_resident_memory_bytes
	deliveries float64 // parley_deliveries_total
	messages   float64 // parley_messages_total
	streams    float64 // parley_streams
	slowCuts   float64 // parley_slow_consumers_total
	heapInuse  float64 // go_memstats_heap_inuse_bytes
	goroutines float64 // go_goroutines
	fds        float64 // process_open_fds
	grpcConns  float64 // parley_grpc_connections
	queueBytes float64 // parley_queue_bytes
	stackInuse float64 // go_memstats_stack_inuse_bytes
	maxFDs     float64 // process_max_fds
	heapIdle   float64 // go_memstats_heap_idle_bytes
	heapFreed  float64 // go_memstats_heap_released_bytes
}

// metricsClient scrapes the servers' Prometheus text endpoints; with
// several servers (a cluster) their samples are added up.
type metricsClient struct {
	urls []string
	http *http.Client
}

func newMetricsClient(g *cli.Globals, url string) (*metricsClient, error) {
	tc, err := g.TLSConfig()
	if err != nil {
		return nil, err
	}
	urls := []string{url}
	if url == "" {
		scheme := "http"
		if tc != nil {
			scheme = "https"
		}
		urls = urls[:0]
		for _, a := range g.Addrs() {
			urls = append(urls, scheme+"://"+a+"/metrics")
		}
	}
	tr := &http.Transport{TLSClientConfig: tc, MaxIdleConns: 2 * len(urls), IdleConnTimeout: 30 * time.Second}
	return &metricsClient{urls: urls, http: &http.Client{Transport: tr, Timeout: 5 * time.Second}}, nil
}

// scrape reads every server's samples and adds them up.
func (m *metricsClient) scrape(ctx context.Context) (serverSample, error) {
	var sum serverSample
	for _, u := range m.urls {
		s, err := m.scrapeOne(ctx, u)
		if err != nil {
			return sum, err
		}
		sum.cpuSeconds += s.cpuSeconds
		sum.rss += s.rss
		sum.deliveries += s.deliveries
		sum.messages += s.messages
		sum.streams += s.streams
		sum.slowCuts += s.slowCuts
		sum.heapInuse += s.heapInuse
		sum.goroutines += s.goroutines
		sum.fds += s.fds
		sum.grpcConns += s.grpcConns
		sum.queueBytes += s.queueBytes
		sum.stackInuse += s.stackInuse
		sum.maxFDs += s.maxFDs
		sum.heapIdle += s.heapIdle
		sum.heapFreed += s.heapFreed
		sum.at = s.at
	}
	return sum, nil
}

// scrapeOne reads the samples the bench reports from one server. Metrics
// are optional: a server without them yields an error that the report shows.
func (m *metricsClient) scrapeOne(ctx context.Context, url string) (serverSample, error) {
	s := serverSample{}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return s, err
	}
	resp, err := m.http.Do(req)
	if err != nil {
		return s, fmt.Errorf("scrape %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return s, fmt.Errorf("scrape %s: HTTP %d", url, resp.StatusCode)
	}
	want := map[string]*float64{
		"process_cpu_seconds_total":       &s.cpuSeconds,
		"process_resident_memory_bytes":   &s.rss,
		"parley_deliveries_total":         &s.deliveries,
		"parley_messages_total":           &s.messages,
		"parley_streams":                  &s.streams,
		"parley_slow_consumers_total":     &s.slowCuts,
		"go_memstats_heap_inuse_bytes":    &s.heapInuse,
		"go_goroutines":                   &s.goroutines,
		"process_open_fds":                &s.fds,
		"parley_grpc_connections":         &s.grpcConns,
		"parley_queue_bytes":              &s.queueBytes,
		"go_memstats_stack_inuse_bytes":   &s.stackInuse,
		"process_max_fds":                 &s.maxFDs,
		"go_memstats_heap_idle_bytes":     &s.heapIdle,
		"go_memstats_heap_released_bytes": &s.heapFreed,
	}
	found := 0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if p := want[name]; ok && p != nil {
			if v, err := strconv.ParseFloat(strings.TrimSpace(val), 64); err == nil {
				*p = v
				found++
			}
		}
	}
	s.at = time.Now()
	if err := sc.Err(); err != nil {
		return s, fmt.Errorf("scrape %s: %w", url, err)
	}
	if found == 0 {
		return s, fmt.Errorf("scrape %s: none of the expected metrics", url)
	}
	return s, nil
}

// cpuTime returns this process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// machineCPU is the machine's CPU time from /proc/stat (Linux; zero
// elsewhere): busy is everything but idle and iowait, softirq is the part
// spent in soft interrupts (loopback TCP delivery mostly), in seconds.
type machineCPU struct{ busy, softirq float64 }

func readMachineCPU() machineCPU {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return machineCPU{}
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return machineCPU{}
	}
	var v [8]float64
	for i := range v {
		v[i], _ = strconv.ParseFloat(f[i+1], 64)
	}
	const hz = 100 // USER_HZ on Linux
	// user nice system idle iowait irq softirq steal
	return machineCPU{busy: (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / hz, softirq: v[6] / hz}
}

// raiseNoFile raises the open-file limit to cover need descriptors, up to
// the hard limit, and reports the limit in force; if that is below need,
// the error says so (errFileLimit).
func raiseNoFile(need uint64) (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	if lim.Cur >= need {
		return lim.Cur, nil
	}
	lim.Cur = min(need, lim.Max)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	if lim.Cur < need {
		return lim.Cur, fmt.Errorf("%w: %d connections and streams need %d", fileLimitError(lim.Cur), need-filesBesideConns, need)
	}
	return lim.Cur, nil
}

// filesBesideConns is what the bench keeps open besides its connections:
// the control connection, metrics scrapes, standard streams, and slack.
const filesBesideConns = 256

// errFileLimit is the cause of a run stopped by the open-file limit.
var errFileLimit = errors.New("file limit")

// fileLimitError says what the open-file limit allows and what to do.
func fileLimitError(limit uint64) error {
	return fmt.Errorf("%w: the bench process may open at most %d files (ulimit -n); use --streams-per-conn", errFileLimit, limit)
}

// noFileLimit returns the open-file limit in force.
func noFileLimit() uint64 {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0
	}
	return lim.Cur
}

// dialError explains a failed connect whose cause the user can act on:
// the open-file limit, or no local port left.
func dialError(addr string, err error) error {
	switch {
	case errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE):
		return fmt.Errorf("connect to %s: %w (%v)", addr, fileLimitError(noFileLimit()), err)
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return fmt.Errorf("connect to %s: %w: no local port left (each source address has ~28,000 to one server address): "+
			"spread the connections with --local-addrs 127.0.0.2,127.0.0.3,... or use --streams-per-conn", addr, err)
	}
	return fmt.Errorf("connect to %s: %w", addr, err)
}

// tokenSource gets a token for a user: a fixed one, a command's output, or
// DevLogin on a --dev server.
type tokenSource func(ctx context.Context, user string) (string, error)

func (b *bench) tokenSource() tokenSource {
	return newTokenSource(b.e.Globals, b.cfg.tokenCmd, b.api)
}

// newTokenSource returns tokenCmd's tokens if set, else the fixed --token,
// else DevLogin's through api.
func newTokenSource(g *cli.Globals, tokenCmd string, api parleyv1.ChatServiceClient) tokenSource {
	switch {
	case tokenCmd != "":
		return func(ctx context.Context, user string) (string, error) {
			cmd := exec.CommandContext(ctx, "sh", "-c", tokenCmd+` "$1"`, "sh", user)
			out, err := cmd.Output()
			if err != nil {
				var ee *exec.ExitError
				if errors.As(err, &ee) {
					return "", fmt.Errorf("token-cmd for %s: %w: %s", user, err, strings.TrimSpace(string(ee.Stderr)))
				}
				return "", fmt.Errorf("token-cmd for %s: %w", user, err)
			}
			return strings.TrimSpace(string(out)), nil
		}
	case g.Token != "":
		return func(context.Context, string) (string, error) { return g.Token, nil }
	}
	return func(ctx context.Context, user string) (string, error) {
		cctx, cancel := context.WithTimeout(ctx, g.Timeout)
		defer cancel()
		resp, err := api.DevLogin(cctx, &parleyv1.DevLoginRequest{User: user})
		if err != nil {
			return "", fmt.Errorf("DevLogin %s (the server needs --dev, or pass --token or --token-cmd): %w", user, err)
		}
		return resp.GetToken(), nil
	}
}

// fetchTokens gets one token per bench user, a few at a time.
func (b *bench) fetchTokens(ctx context.Context) error {
	src := b.tokenSource()
	n := b.cfg.users
	if b.cfg.tokenCmd == "" && b.e.Globals.Token != "" {
		n = 1 // every stream is the token's user
	}
	b.tokens = make([]string, n)
	return parallel(ctx, n, 8, func(ctx context.Context, i int) error {
		tok, err := src(ctx, fmt.Sprintf("%s-u%d", b.cfg.roomPrefix, i))
		b.tokens[i] = tok
		return err
	})
}

// createRooms creates the bench's rooms, each by one of its users in
// turn; rooms that exist already are fine.
func (b *bench) createRooms(ctx context.Context) error {
	rc := &roomCreator{e: b.e, api: b.api}
	return parallel(ctx, b.cfg.rooms, 16, func(ctx context.Context, i int) error {
		return rc.create(ctx, b.tokens[i%len(b.tokens)], b.roomNames[i])
	})
}

// roomCreator creates the rooms of a bench or soak run.
type roomCreator struct {
	e    *cli.Env
	api  parleyv1.ChatServiceClient
	told sync.Once
}

// create creates a public room as the token's user; one that exists
// already is fine. Refused for creating too fast (the server's
// --room-create-rate), it waits as the answer's RetryInfo says and tries
// again, telling why on standard error the first time in the run.
func (c *roomCreator) create(ctx context.Context, token, name string) error {
	for {
		cctx, cancel := context.WithTimeout(cli.WithAuth(ctx, token), c.e.Globals.Timeout)
		_, err := c.api.CreateRoom(cctx, &parleyv1.CreateRoomRequest{Name: name})
		cancel()
		st := status.Convert(err)
		switch st.Code() {
		case codes.OK, codes.AlreadyExists:
			return nil
		case codes.ResourceExhausted:
		default:
			return fmt.Errorf("create room %s: %w", name, err)
		}
		wait := time.Second
		for _, d := range st.Details() {
			if ri, ok := d.(*errdetails.RetryInfo); ok {
				wait = ri.GetRetryDelay().AsDuration()
			}
		}
		c.told.Do(func() {
			fmt.Fprintf(c.e.Stderr, "parley: create room %s: %s (waiting as told; start parleyd with --room-create-rate -1 for load tests)\n", name, st.Message())
		})
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("create room %s: %w", name, ctx.Err())
		}
	}
}

// parallel runs fn(0..n-1) with at most workers at once and returns the
// first error; the others are cancelled.
func parallel(ctx context.Context, n, workers int, fn func(context.Context, int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	next := make(chan int)
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for range min(workers, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := fn(ctx, i); err != nil {
					once.Do(func() { first = err; cancel() })
				}
			}
		}()
	}
feed:
	for i := range n {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return first
}
