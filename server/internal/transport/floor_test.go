package transport

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// BenchmarkIdleStreamFloor measures what grpc-go's server holds for idle
// streams before any of Parley's state: the transport options parleyd
// uses, the preface-splitting listener, and a bidi handler that waits in
// RecvMsg, as a Join stream's handler does. With join=false the handler
// does nothing else; with join=true it first uses 12 KiB of stack (what a
// real handler's goroutine may need at its start: after garbage
// collection its stack shows whether it can shrink back while parked in
// RecvMsg) and sends two messages, as a join's reply and joined event are.
//
// The clients write their frames by hand and keep only their sockets, so
// the process's growth is the server's (plus ~0.3 KiB per client socket).
// Run it with -benchtime 1x (each run opens its streams once), one case per
// process: a later case reuses the goroutine descriptors and stacks an
// earlier one freed, and so looks cheaper than a fresh server.
//
//	go test -run '^$' -bench 'IdleStreamFloor/conns=2000/streams-per-conn=1/join=true' -benchtime 1x ./server/internal/transport
func BenchmarkIdleStreamFloor(b *testing.B) {
	for _, c := range []struct {
		conns, perConn int
		join           bool
	}{{2000, 1, false}, {2000, 1, true}, {20, 100, false}, {20, 100, true}} {
		b.Run(fmt.Sprintf("conns=%d/streams-per-conn=%d/join=%v", c.conns, c.perConn, c.join), func(b *testing.B) {
			for b.Loop() {
				measureIdleStreams(b, c.conns, c.perConn, c.join)
			}
		})
	}
}

// idleDesc's stream reads a message, sends its server's sends, and then
// reads until the client goes.
var idleDesc = grpc.ServiceDesc{
	ServiceName: "bench.Idle",
	HandlerType: (*any)(nil),
	Streams: []grpc.StreamDesc{{
		StreamName: "Park", ServerStreams: true, ClientStreams: true,
		Handler: func(srv any, ss grpc.ServerStream) error {
			f := srv.(*idleServer)
			if f.join {
				useStack(12 << 10)
			}
			var req healthpb.HealthCheckRequest
			if err := ss.RecvMsg(&req); err != nil {
				return err
			}
			for range f.sends {
				if err := ss.SendMsg(&healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}); err != nil {
					return err
				}
			}
			f.parked.Add(1)
			for { // until the client goes
				if err := ss.RecvMsg(&req); err != nil {
					return err
				}
			}
		},
	}},
}

type idleServer struct {
	join   bool
	sends  int // messages sent before waiting
	parked atomic.Int64
}

// useStack uses about n bytes of stack.
//
//go:noinline
func useStack(n int) byte {
	var buf [512]byte
	buf[n%512] = byte(n)
	if n <= 512 {
		return buf[0]
	}
	return useStack(n-512) + buf[1]
}

func measureIdleStreams(b *testing.B, conns, perConn int, join bool) {
	srv := &idleServer{join: join}
	if join {
		srv.sends = 2
	}
	gs := grpc.NewServer(append(GRPCServerOptions(Config{}), grpc.SharedWriteBuffer(true))...)
	gs.RegisterService(&idleDesc, srv)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	split := newSplitListener(ln, 10*time.Second, slog.New(slog.NewTextHandler(io.Discard, nil)))
	go split.run()
	go gs.Serve(split.grpc)
	defer func() { gs.Stop(); ln.Close() }()

	// A first connection makes what grpc-go makes once (buffer pools):
	// not part of what a stream holds.
	warm, err := openIdleStreams(ln.Addr().String(), 1)
	if err != nil {
		b.Fatal(err)
	}
	for srv.parked.Load() < 1 {
		time.Sleep(time.Millisecond) // polling for the handler
	}
	warm.Close()
	srv.parked.Store(0)
	before := settledMemStats()
	clients := make([]net.Conn, 0, conns)
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	for range conns {
		c, err := openIdleStreams(ln.Addr().String(), perConn)
		if err != nil {
			b.Fatal(err)
		}
		clients = append(clients, c)
	}
	want := int64(conns * perConn)
	deadline := time.Now().Add(time.Minute)
	for srv.parked.Load() < want {
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d streams parked after a minute", srv.parked.Load(), want)
		}
		time.Sleep(10 * time.Millisecond) // polling for the handlers
	}
	after := settledMemStats()
	n := float64(want)
	b.ReportMetric(float64(after.stack-before.stack)/n, "stack-B/stream")
	b.ReportMetric(float64(after.heapInuse-before.heapInuse)/n, "heap-inuse-B/stream")
	b.ReportMetric(float64(after.heapAlloc-before.heapAlloc)/n, "heap-live-B/stream")
	b.ReportMetric(float64(after.goroutines-before.goroutines)/float64(conns), "goroutines/conn")
	b.ReportMetric(float64(after.sys-before.sys)/n, "sys-B/stream")
}

type memSample struct {
	stack, heapInuse, heapAlloc, sys uint64
	goroutines                       int
}

// settledMemStats collects garbage four times (each collection may halve
// a stack that uses less than a quarter of it) and reads the runtime's
// memory statistics.
func settledMemStats() memSample {
	for range 4 {
		runtime.GC()
	}
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return memSample{stack: m.StackInuse, heapInuse: m.HeapInuse, heapAlloc: m.HeapAlloc,
		sys: m.HeapInuse + m.StackInuse + m.MSpanInuse + m.MCacheInuse + m.GCSys + m.OtherSys, goroutines: runtime.NumGoroutine()}
}

// applyServerSettings sends what buf holds, reads the server's settings
// and applies the header table size, as grpc-go's client does.
func applyServerSettings(c net.Conn, fr *http2.Framer, buf *bytes.Buffer, henc *hpack.Encoder) error {
	if _, err := c.Write(buf.Bytes()); err != nil {
		return err
	}
	buf.Reset()
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return err
		}
		if sf, ok := f.(*http2.SettingsFrame); ok && !sf.IsAck() {
			if v, ok := sf.Value(http2.SettingHeaderTableSize); ok {
				henc.SetMaxDynamicTableSizeLimit(v)
			}
			return nil
		}
	}
}

// openIdleStreams opens an HTTP/2 connection to addr and n Park streams on
// it, each with a first message, writing the frames by hand: the client
// keeps no goroutine and no buffer, only its socket. Its headers are what
// the bench's carry, with a bearer token of a typical size.
func openIdleStreams(addr string, n int) (net.Conn, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	var buf, hbuf bytes.Buffer
	buf.WriteString(http2.ClientPreface)
	fr := http2.NewFramer(&buf, bufio.NewReader(c))
	henc := hpack.NewEncoder(&hbuf)
	fr.WriteSettings()
	if err := applyServerSettings(c, fr, &buf, henc); err != nil {
		c.Close()
		return nil, err
	}
	token := "Bearer " + strings.Repeat("t", 180)
	for i := range n {
		hbuf.Reset()
		for _, f := range []hpack.HeaderField{
			{Name: ":method", Value: "POST"}, {Name: ":scheme", Value: "http"}, {Name: ":path", Value: "/bench.Idle/Park"},
			{Name: ":authority", Value: addr}, {Name: "content-type", Value: "application/grpc"}, {Name: "te", Value: "trailers"},
			{Name: "user-agent", Value: "parley-cli"}, {Name: "parley-client", Value: "parley-cli"}, {Name: "authorization", Value: token},
		} {
			henc.WriteField(f)
		}
		id := uint32(2*i + 1)
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hbuf.Bytes(), EndHeaders: true})
		fr.WriteData(id, false, []byte{0, 0, 0, 0, 0}) // an empty message
	}
	if _, err := c.Write(buf.Bytes()); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}
