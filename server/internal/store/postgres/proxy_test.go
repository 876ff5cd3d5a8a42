package postgres_test

import (
	"net"
	"net/url"
	"sync"
	"testing"
)

// proxy stands between a store and PostgreSQL so that a test can take the
// server away without touching the real one: stop is a server that went
// down (connections reset, the port refuses), freeze is one that stopped
// answering (connections stay open, nothing comes back).
type proxy struct {
	t      testing.TB
	target string
	addr   string // fixed by the first start
	wg     sync.WaitGroup

	mu     sync.Mutex
	ln     net.Listener
	conns  map[net.Conn]bool
	thawed chan struct{} // closed while not frozen
}

// newProxy starts a proxy to the host:port of dsn and returns it and a DSN
// that goes through it.
func newProxy(t testing.TB, dsn string) (*proxy, string) {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatalf("proxy: DSN must be a URL: %v", err)
	}
	p := &proxy{t: t, target: u.Host, addr: "127.0.0.1:0", conns: map[net.Conn]bool{}, thawed: make(chan struct{})}
	close(p.thawed)
	p.start()
	t.Cleanup(func() {
		p.thaw()
		p.stop()
		p.wg.Wait()
	})
	u.Host = p.addr
	return p, u.String()
}

// start listens (again) on the proxy's address.
func (p *proxy) start() {
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		p.t.Fatalf("proxy: listen: %v", err)
	}
	p.mu.Lock()
	p.ln, p.addr = ln, ln.Addr().String()
	p.mu.Unlock()
	p.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.wg.Go(func() { p.serve(c) })
		}
	})
}

// stop closes the listener and every connection.
func (p *proxy) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

func (p *proxy) freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.thawed:
		p.thawed = make(chan struct{})
	default:
	}
}

func (p *proxy) thaw() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.thawed:
	default:
		close(p.thawed)
	}
}

// track registers c, or closes it and reports false if the proxy stopped.
func (p *proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln == nil {
		c.Close()
		return false
	}
	p.conns[c] = true
	return true
}

func (p *proxy) serve(client net.Conn) {
	if !p.track(client) {
		return
	}
	p.wait()
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		client.Close()
		return
	}
	if !p.track(server) {
		client.Close()
		return
	}
	var wg sync.WaitGroup
	wg.Go(func() { p.pump(server, client) })
	wg.Go(func() { p.pump(client, server) })
	wg.Wait()
}

// wait blocks while the proxy is frozen.
func (p *proxy) wait() {
	p.mu.Lock()
	ch := p.thawed
	p.mu.Unlock()
	<-ch
}

// pump copies from src to dst, holding the bytes while frozen, and closes
// both when either side ends.
func (p *proxy) pump(dst, src net.Conn) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.wait()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return // EOF, or a side closed by stop
		}
	}
}
