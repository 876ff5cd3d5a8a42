package load

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/pprof"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/parleychat/parley/cmd/parley/internal/cli"
)

// A ramp of two steps, 60 then 300 Join streams, 10 to a connection, over
// two loopback source addresses: each step reports its connects, joins and
// the server's memory, and every stream connected so far gets each of the
// step's messages exactly once, in order.
func TestBenchRamp(t *testing.T) {
	s := startServer(t)
	r := parley(t, s.Addr(), "", "bench", "--json", "--quiet", "--ramp", "60,300", "--streams-per-conn", "10", "--rooms", "2",
		"--senders", "2", "--ramp-messages", "3", "--local-addrs", "127.0.0.1,127.0.0.2", "--server-pid", fmt.Sprint(os.Getpid()), "--rss-settle", "0")
	wantCode(t, r, cli.ExitOK)
	var rep rampReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("bench --ramp --json output does not parse: %v\n%s", err, r.stdout)
	}
	if !rep.OK || rep.StoppedBy != "" || len(rep.Errors) != 0 || len(rep.Steps) != 2 {
		t.Fatalf("report is not clean: %+v", rep)
	}
	for i, want := range []struct{ streams, conns int }{{60, 6}, {300, 30}} {
		st := rep.Steps[i]
		f := st.Fanout
		// 2 senders, each in its own room, 3 messages each; every
		// message reaches the streams of its room.
		if st.Streams != want.streams || st.Connections != want.conns || f.Messages != 6 ||
			f.Expected != uint64(3*want.streams) || f.Received != f.Expected || f.Lost+f.Duplicates+f.OutOfOrder != 0 {
			t.Errorf("step %d: %d streams over %d connections, fan-out %+v", i, st.Streams, st.Connections, f)
		}
		if f.Latency.Count != f.Expected || f.Latency.P99 <= 0 || f.Ack.Count != 6 {
			t.Errorf("step %d: latencies %+v, ack %+v", i, f.Latency, f.Ack)
		}
		if st.AllJoinedSec <= 0 || st.Join.Count != uint64(st.NewStreams) || st.Server.Error != "" ||
			st.Server.RSSSource != fmt.Sprintf("/proc/%d/status", os.Getpid()) || st.Server.RSSBytes <= 0 || st.Server.Streams < float64(want.streams) ||
			st.Server.RSSAfterGCBytes != st.Server.RSSBytes || st.JoinServerCores <= 0 || st.JoinBenchCores <= 0 {
			t.Errorf("step %d: join %+v in %.2fs, server %+v", i, st.Join, st.AllJoinedSec, st.Server)
		}
	}
}

// The table, and the server's heap and goroutine profiles per step.
func TestBenchRampTableAndProfiles(t *testing.T) {
	s := startServerWithPprof(t)
	dir := t.TempDir()
	r := parley(t, s.addr, "", "bench", "--quiet", "--ramp", "5,20", "--ramp-messages", "1",
		"--server-pprof", "http://"+s.pprof, "--profile-dir", dir, "--rss-settle", "1500ms")
	wantCode(t, r, cli.ExitOK)
	for _, want := range []string{`(?m)^5 +5 +`, `(?m)^20 +20 +`, `(?m)^result +PASS$`, `server before the ramp: rss`} {
		if !regexp.MustCompile(want).MatchString(r.stdout) {
			t.Errorf("table does not match %q:\n%s", want, r.stdout)
		}
	}
	for _, f := range []string{"heap-base.pb.gz", "heap-5.pb.gz", "heap-20.pb.gz", "goroutine-20.txt"} {
		if fi, err := os.Stat(filepath.Join(dir, f)); err != nil || fi.Size() == 0 {
			t.Errorf("profile %s: %v", f, err)
		}
	}
}

// A step that needs more connections than the bench may open files stops
// the ramp before it connects anything, and says what to do.
func TestRampStepStopsAtTheFileLimit(t *testing.T) {
	b := &bench{cfg: benchConfig{ramp: []int{500}, streamsPerConn: 1, senders: 1, rooms: 1}}
	_, err := b.rampStep(context.Background(), &rampState{roomOpen: []uint64{0}, limit: 400}, 0, 500, rampServer{})
	if !errors.Is(err, errFileLimit) || !strings.Contains(err.Error(), "the bench process may open at most 400 files (ulimit -n); use --streams-per-conn") {
		t.Fatalf("err = %v", err)
	}
	rep := &rampReport{StoppedBy: err.Error()}
	rep.finish(&bench{})
	if rep.OK {
		t.Error("a ramp stopped by the file limit passed")
	}
}

// Loss, duplicates and reordering in any step fail the ramp.
func TestRampReportFailsOnLoss(t *testing.T) {
	for _, f := range []fanoutReport{{Expected: 10, Received: 9, Lost: 1}, {Expected: 10, Received: 10, Duplicates: 1},
		{Expected: 10, Received: 10, OutOfOrder: 1}, {Expected: 10, Received: 11}} {
		rep := &rampReport{Steps: []rampStep{{Streams: 10, Fanout: fanoutReport{Expected: 1, Received: 1}}, {Streams: 20, Fanout: f}}}
		rep.finish(&bench{})
		if rep.OK || len(rep.Problems) != 1 || !strings.HasPrefix(rep.Problems[0], "at 20 streams: ") {
			t.Errorf("fan-out %+v: ok %v, problems %q", f, rep.OK, rep.Problems)
		}
	}
}

// Connect errors the user can act on say what to do.
func TestDialErrorAdvice(t *testing.T) {
	emfile := dialError("127.0.0.1:1", &net.OpError{Op: "dial", Err: os.NewSyscallError("socket", syscall.EMFILE)})
	if !errors.Is(emfile, errFileLimit) || !strings.Contains(emfile.Error(), "(ulimit -n); use --streams-per-conn") {
		t.Errorf("EMFILE: %v", emfile)
	}
	ports := dialError("127.0.0.1:1", &net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.EADDRNOTAVAIL)})
	if !strings.Contains(ports.Error(), "--local-addrs 127.0.0.2,127.0.0.3") {
		t.Errorf("EADDRNOTAVAIL: %v", ports)
	}
}

// Receiving connections take --local-addrs in turn as their source.
func TestReceiversSpreadOverLocalAddrs(t *testing.T) {
	s := startServer(t)
	b := &bench{cfg: benchConfig{localAddrs: []net.IP{net.ParseIP("127.0.0.2"), net.ParseIP("127.0.0.3")}}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i, want := range []string{"127.0.0.2", "127.0.0.3", "127.0.0.2"} {
		c, err := dialH2(ctx, b, s.Addr(), nil, b.dialer(i))
		if err != nil {
			t.Fatal(err)
		}
		got := c.nc.LocalAddr().(*net.TCPAddr).IP.String()
		c.close()
		if got != want {
			t.Errorf("connection %d from %s, want %s", i, got, want)
		}
	}
	b.readers.Wait()
}

func TestRampFlagErrors(t *testing.T) {
	s := startServer(t)
	wantCode(t, parley(t, s.Addr(), "", "bench", "--ramp", "100,50"), cli.ExitUsage, "rising")
	wantCode(t, parley(t, s.Addr(), "", "bench", "--ramp", "10", "--local-addrs", "nope"), cli.ExitUsage, "--local-addrs takes IP addresses")
	wantCode(t, parley(t, s.Addr(), "", "bench", "--server-pid", "1"), cli.ExitUsage, "go with --ramp")
	wantCode(t, parley(t, s.Addr(), "", "bench", "--ramp", "10", "--profile-dir", t.TempDir()), cli.ExitUsage, "needs --server-pprof")
}

// serverWithPprof is an in-process server and a pprof endpoint beside it,
// as parleyd --pprof-listen serves one.
type serverWithPprof struct{ addr, pprof string }

func startServerWithPprof(t *testing.T) serverWithPprof {
	t.Helper()
	s := startServer(t)
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	hs := httptest.NewServer(mux)
	t.Cleanup(hs.Close)
	return serverWithPprof{addr: s.Addr(), pprof: strings.TrimPrefix(hs.URL, "http://")}
}
