package transport

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// A client's frames cost the server no BDP probe: the windows are fixed
// (64 KiB a stream, 1 MiB a connection), so a DATA frame is not answered
// with a PING. The client writes its frames by hand and follows each
// DATA frame with a PING of its own; the server writes its frames in the
// order it read theirs, so a probe would come before the answer to that
// PING.
func TestNoFlowControlProbes(t *testing.T) {
	gs := grpc.NewServer(append(GRPCServerOptions(Config{}), grpc.SharedWriteBuffer(true))...)
	gs.RegisterService(&idleDesc, &idleServer{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	var buf, hbuf bytes.Buffer
	buf.WriteString(http2.ClientPreface)
	fr := http2.NewFramer(&buf, bufio.NewReader(c))
	henc := hpack.NewEncoder(&hbuf)
	fr.WriteSettings()
	if _, err := c.Write(buf.Bytes()); err != nil {
		t.Fatal(err)
	}
	buf.Reset()

	// The server's first frames, up to its answer to our SETTINGS,
	// announce its windows.
	var streamWindow, connIncrement uint32
	for acked := false; !acked; {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("read the server's first frames: %v", err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			acked = f.IsAck()
			if !acked {
				streamWindow, _ = f.Value(http2.SettingInitialWindowSize)
			}
		case *http2.WindowUpdateFrame:
			if f.StreamID == 0 {
				connIncrement = f.Increment
			}
		}
	}
	if streamWindow != 64<<10 || 65535+connIncrement != 1<<20 {
		t.Errorf("windows: stream %d, connection 65535+%d; want 65536 and 1 MiB", streamWindow, connIncrement)
	}

	for _, f := range []hpack.HeaderField{
		{Name: ":method", Value: "POST"}, {Name: ":scheme", Value: "http"}, {Name: ":path", Value: "/bench.Idle/Park"},
		{Name: ":authority", Value: "parley"}, {Name: "content-type", Value: "application/grpc"}, {Name: "te", Value: "trailers"},
	} {
		henc.WriteField(f)
	}
	fr.WriteSettingsAck()
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hbuf.Bytes(), EndHeaders: true})
	for i := range 3 {
		fr.WriteData(1, false, []byte{0, 0, 0, 0, 0}) // an empty message
		mark := [8]byte{'p', 'a', 'r', 'l', 'e', 'y', '0', byte('0' + i)}
		fr.WritePing(false, mark)
		if _, err := c.Write(buf.Bytes()); err != nil {
			t.Fatal(err)
		}
		buf.Reset()
		for answered := false; !answered; {
			f, err := fr.ReadFrame()
			if err != nil {
				t.Fatalf("message %d: waiting for the answer to our PING: %v", i, err)
			}
			switch f := f.(type) {
			case *http2.PingFrame:
				if !f.IsAck() {
					t.Fatalf("message %d: the server sent a PING (% x) after a DATA frame: a flow-control probe", i, f.Data)
				}
				answered = f.Data == mark
			case *http2.RSTStreamFrame, *http2.GoAwayFrame:
				t.Fatalf("message %d: the server ended the stream: %v", i, strings.TrimSpace(f.Header().String()))
			}
		}
	}
}

// A message longer than a stream's fixed window still arrives whole:
// grpc-go widens the window for the message it is reading.
func TestLongMessageThroughFixedWindows(t *testing.T) {
	gs := grpc.NewServer(GRPCServerOptions(Config{MaxMessageBytes: 2 << 20})...)
	gs.RegisterService(&idleDesc, &idleServer{sends: 1})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)
	cc, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	st, err := cc.NewStream(ctx, &idleDesc.Streams[0], "/bench.Idle/Park")
	if err != nil {
		t.Fatal(err)
	}
	long := &healthpb.HealthCheckRequest{Service: strings.Repeat("x", 1<<20)} // 16 times a stream's window
	if err := st.SendMsg(long); err != nil {
		t.Fatal(err)
	}
	var resp healthpb.HealthCheckResponse
	if err := st.RecvMsg(&resp); err != nil {
		t.Fatalf("the server did not answer a message of %d bytes: %v", len(long.Service), err)
	}
}
