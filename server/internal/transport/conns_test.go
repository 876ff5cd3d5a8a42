package transport

import (
	"net"
	"testing"
)

// OpenConns counts a connection until its socket is closed, and forgets
// closed ones as connections come and go, so its set stays bounded.
func TestOpenConnsCountsUntilClosed(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var open OpenConns
	cl := countingListener{Listener: ln, conns: &open}
	accept := func() net.Conn {
		t.Helper()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		s, err := cl.Accept()
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	kept := []net.Conn{accept(), accept(), accept()}
	if n := open.Count(); n != 3 {
		t.Fatalf("3 accepted: Count() = %d, want 3", n)
	}
	kept[1].Close()
	if n := open.Count(); n != 2 {
		t.Fatalf("one of 3 closed: Count() = %d, want 2", n)
	}
	for range 1000 { // churn without anyone counting
		accept().Close()
	}
	open.mu.Lock()
	held := len(open.conns)
	open.mu.Unlock()
	if held > 2*2+64 {
		t.Fatalf("after 1,000 closed connections the set holds %d, want at most %d", held, 2*2+64)
	}
	if n := open.Count(); n != 2 {
		t.Fatalf("Count() = %d, want the 2 still open", n)
	}
	for _, c := range kept {
		c.Close()
	}
}
