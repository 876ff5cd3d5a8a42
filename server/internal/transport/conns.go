package transport

import (
	"net"
	"sync"
	"syscall"
)

// OpenConns counts the connections grpc-go's own transport serves.
//
// A grpc stats handler could count them, but grpc-go then builds and
// times a stats event for every message on every stream (a few percent of
// a delivery's CPU). Wrapping the connections would cost grpc-go its
// *net.TCPConn fast paths (pooled read buffers). So the listeners note each
// connection they hand over, bare, and a connection counts as open until
// its socket is closed, which a no-op control call on it tells. Closed ones
// are forgotten when counted, and on accept once the set has doubled, so
// the set stays within twice the open connections.
type OpenConns struct {
	mu     sync.Mutex
	conns  []syscall.RawConn
	pruned int // len(conns) after the last pruning
}

// Count returns how many noted connections are still open.
func (o *OpenConns) Count() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.pruneLocked()
	return len(o.conns)
}

// add notes c, a *net.TCPConn or a connection wrapping one (*tls.Conn).
// Others (in-memory pipes) are not counted.
func (o *OpenConns) add(c net.Conn) {
	if nc, ok := c.(interface{ NetConn() net.Conn }); ok {
		c = nc.NetConn()
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.conns = append(o.conns, rc)
	if len(o.conns) >= 2*o.pruned+64 {
		o.pruneLocked()
	}
}

func (o *OpenConns) pruneLocked() {
	open := o.conns[:0]
	for _, rc := range o.conns {
		if rc.Control(func(uintptr) {}) == nil { // fails once the socket is closed
			open = append(open, rc)
		}
	}
	clear(o.conns[len(open):])
	o.conns = open
	o.pruned = len(open)
}

// countingListener notes every connection it accepts in conns; the
// connections themselves are handed on as they are.
type countingListener struct {
	net.Listener
	conns *OpenConns
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.conns.add(c)
	}
	return c, err
}
