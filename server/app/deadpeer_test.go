package app_test

import (
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	parleyv1 "github.com/parleychat/parley/gen/parley/v1"
)

// freezingProxy forwards TCP connections to a server until frozen; then it
// stops reading from both sides, as a client stopped with SIGSTOP does:
// its kernel still accepts bytes, but nothing answers.
type freezingProxy struct {
	ln       net.Listener
	frozen   chan struct{}
	freezeMu sync.Once

	closedMu sync.Mutex
	closed   []time.Time // when a side closed its connection after the freeze
}

func startFreezingProxy(t *testing.T, target string) *freezingProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &freezingProxy{ln: ln, frozen: make(chan struct{})}
	done := make(chan struct{})
	var wg sync.WaitGroup
	t.Cleanup(func() { close(done); ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			wg.Go(func() { p.pipe(c, s, done) })
			wg.Go(func() { p.pipe(s, c, done) })
		}
	})
	return p
}

// pipe copies src to dst until either ends, or until the proxy freezes:
// then what src sent is dropped (a stopped process's kernel still takes
// bytes in) and dst is left open until the test ends.
func (p *freezingProxy) pipe(src, dst net.Conn, done chan struct{}) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		select {
		case <-p.frozen:
			if err != nil {
				p.closedMu.Lock()
				p.closed = append(p.closed, time.Now())
				p.closedMu.Unlock()
				<-done
				return
			}
			continue
		default:
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *freezingProxy) freeze() { p.freezeMu.Do(func() { close(p.frozen) }) }

// A client that freezes (stops reading and answering pings) is dropped
// within KeepaliveTime+KeepaliveTimeout, and its presence leaves.
func TestFrozenClientIsDropped(t *testing.T) {
	// grpc-go pings no sooner than after 1s of silence, whatever it is told.
	const kaTime, kaTimeout = time.Second, 300 * time.Millisecond
	ts := startServer(t, func(c *appConfig) { c.KeepaliveTime, c.KeepaliveTimeout = kaTime, kaTimeout })
	ts.createRoom(t, "icy")
	watcher := openJoin(t, ts.dial(t), ts.token(t, "watcher"))
	watcher.join("icy", nil)

	proxy := startFreezingProxy(t, ts.Addr())
	conn, err := grpc.NewClient(proxy.ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	frozen := openJoin(t, conn, ts.token(t, "frozen"))
	frozen.join("icy", nil)
	watcher.next(func(ev *parleyv1.JoinResponse) bool {
		return len(ev.GetPresenceDiff().GetJoins()) > 0 && ev.GetPresenceDiff().GetJoins()[0].GetUser() == "frozen"
	}, nil)

	proxy.freeze()
	start := time.Now()
	watcher.next(func(ev *parleyv1.JoinResponse) bool {
		l := ev.GetPresenceDiff().GetLeaves()
		return len(l) > 0 && l[0].GetUser() == "frozen"
	}, nil)
	took := time.Since(start)
	waitFor(t, "the server to close the frozen client's connection", func() bool {
		proxy.closedMu.Lock()
		defer proxy.closedMu.Unlock()
		return len(proxy.closed) > 0
	})
	t.Logf("frozen client's leave announced %v after it froze (keepalive %v + %v)", took.Round(time.Millisecond), kaTime, kaTimeout)
	// The server pings after kaTime of silence and gives up kaTimeout
	// later; the rest is margin for a busy machine.
	if took > kaTime+kaTimeout+3*time.Second {
		t.Fatalf("frozen client dropped after %v, want within %v", took, kaTime+kaTimeout)
	}
}

// A connection that sends the HTTP/2 preface and nothing more is closed
// within ReadHeaderTimeout (grpc-go's own handshake timeout is 120s), as
// is one that starts its settings frame and stops.
func TestPrefaceOnlyConnectionIsClosed(t *testing.T) {
	const timeout = 300 * time.Millisecond
	ts := startServer(t, func(c *appConfig) { c.ReadHeaderTimeout = timeout })
	for name, sent := range map[string]string{
		"preface only":             "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
		"preface and half a frame": "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x06\x04",
	} {
		t.Run(name, func(t *testing.T) {
			c, err := net.Dial("tcp", ts.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Write([]byte(sent)); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			c.SetReadDeadline(start.Add(waitTimeout))
			_, err = io.Copy(io.Discard, c) // the server's settings, then EOF
			if took := time.Since(start); err != nil || took > timeout+3*time.Second {
				t.Fatalf("connection held %v (read: %v); want it closed after ~%v", took, err, timeout)
			}
		})
	}
}

// An HTTP/1.1 connection left idle after a request is closed after
// KeepaliveTime+KeepaliveTimeout, like a silent HTTP/2 connection.
func TestIdleHTTPConnectionIsClosed(t *testing.T) {
	const kaTime, kaTimeout = time.Second, 300 * time.Millisecond
	ts := startServer(t, func(c *appConfig) { c.KeepaliveTime, c.KeepaliveTimeout = kaTime, kaTimeout })
	c, err := net.Dial("tcp", ts.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("GET /healthz HTTP/1.1\r\nHost: parley\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	c.SetReadDeadline(start.Add(waitTimeout))
	b, err := io.ReadAll(c) // the answer, then EOF when the server gives up on the connection
	if took := time.Since(start); err != nil || took > kaTime+kaTimeout+3*time.Second || !strings.Contains(string(b), "200 OK") {
		t.Fatalf("idle connection held %v (read %q, %v); want it closed after ~%v", took, b, err, kaTime+kaTimeout)
	}
}
