package transport

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"time"
)

// http2Preface is what every prior-knowledge HTTP/2 client (every gRPC
// client over cleartext) sends first.
var http2Preface = []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")

// splitListener hands each accepted connection to the gRPC server when it
// starts with the HTTP/2 preface and to the HTTP server otherwise. It peeks
// with MSG_PEEK instead of reading, so the gRPC server gets the bare
// *net.TCPConn and keeps grpc-go's pooled read buffers; a wrapped conn would
// cost every connection its own buffer.
type splitListener struct {
	ln      net.Listener
	timeout time.Duration
	log     *slog.Logger
	grpc    *chanListener
	http    *chanListener
}

func newSplitListener(ln net.Listener, timeout time.Duration, log *slog.Logger) *splitListener {
	done := make(chan struct{})
	var once sync.Once
	var closeErr error
	// Both servers close their listener on shutdown; only the first close
	// does anything and reports its result.
	closeAll := func() error {
		first := false
		once.Do(func() {
			first = true
			close(done)
			closeErr = ln.Close()
		})
		if !first {
			return nil
		}
		return closeErr
	}
	return &splitListener{
		ln: ln, timeout: timeout, log: log,
		grpc: &chanListener{ch: make(chan net.Conn), done: done, addr: ln.Addr(), close: closeAll},
		http: &chanListener{ch: make(chan net.Conn), done: done, addr: ln.Addr(), close: closeAll},
	}
}

// run accepts connections until the listener is closed.
func (s *splitListener) run() {
	var backoff time.Duration
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				s.grpc.Close()
				return
			}
			// Out of file descriptors and the like: back off, as net/http does.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Warn("accept failed; retrying", "err", err, "backoff", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		go s.route(c)
	}
}

func (s *splitListener) route(c net.Conn) {
	isGRPC, err := startsWithPreface(c, s.timeout)
	if err != nil {
		c.Close()
		return
	}
	to := s.http
	if isGRPC {
		to = s.grpc
	}
	select {
	case to.ch <- c:
	case <-to.done:
		c.Close()
	}
}

// startsWithPreface waits, up to timeout, until c's first bytes either
// match the whole HTTP/2 preface or differ from it.
func startsWithPreface(c net.Conn, timeout time.Duration) (bool, error) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return false, fmt.Errorf("split listener needs TCP connections, got %T", c)
	}
	if err := tc.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return false, err
	}
	defer tc.SetReadDeadline(time.Time{})
	rc, err := tc.SyscallConn()
	if err != nil {
		return false, err
	}
	buf := make([]byte, len(http2Preface))
	seen := 0
	for {
		var n int
		var perr error
		err := rc.Read(func(fd uintptr) bool {
			n, _, perr = syscall.Recvfrom(int(fd), buf, syscall.MSG_PEEK)
			if errors.Is(perr, syscall.EAGAIN) {
				return false
			}
			// Bytes already seen and still a prefix: wait for more to arrive.
			return perr != nil || n == 0 || n != seen
		})
		switch {
		case err != nil:
			return false, err
		case perr != nil:
			return false, perr
		case n == 0:
			return false, io.EOF
		case !bytes.Equal(buf[:n], http2Preface[:n]):
			return false, nil
		case n == len(http2Preface):
			return true, nil
		}
		seen = n
	}
}

// chanListener is a net.Listener fed by a splitListener.
type chanListener struct {
	ch    chan net.Conn
	done  chan struct{}
	addr  net.Addr
	close func() error
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error   { return l.close() }
func (l *chanListener) Addr() net.Addr { return l.addr }
