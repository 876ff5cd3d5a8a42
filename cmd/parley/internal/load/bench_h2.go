package load

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/cmd/parley/internal/cli"
)

// The receiving side of the bench must cost less than the server it
// measures. grpc-go's client spends most of its CPU handing every message
// from the connection's reader goroutine to the stream's, so by default
// the bench's receivers speak HTTP/2 and gRPC's message framing themselves
// (golang.org/x/net/http2's framer and HPACK): one goroutine per connection
// reads every frame and parses each message in place. Senders, whose acks
// are few, keep using grpc-go.

// Flow-control windows of the receiving connections, replenished when half
// is used (variables so that a test can make them small).
var (
	h2StreamWindow uint32 = 4 << 20  // each receiving stream's
	h2ConnWindow   uint32 = 64 << 20 // the connection's
)

// h2Conn is one HTTP/2 connection carrying receiving streams.
type h2Conn struct {
	b    *bench
	nc   net.Conn
	fr   *http2.Framer
	auth string // :authority

	wmu  sync.Mutex // guards the writing side: bw, the framer's writes, henc, hbuf, next
	bw   *bufio.Writer
	hbuf bytes.Buffer
	henc *hpack.Encoder
	next uint32 // the next stream id

	mu      sync.Mutex
	streams map[uint32]*h2Stream

	connUnacked uint32 // bytes read since the last connection WINDOW_UPDATE (reader only)
}

// h2Stream is one receiving stream on an h2Conn. The connection's reader
// goroutine owns its fields after open.
type h2Stream struct {
	r       *receiver
	f       wireFrame
	buf     []byte     // the start of a message split across DATA frames
	opened  bool       // the joined frame arrived
	ready   chan error // the joined frame, or why the stream failed first (cap 1)
	unacked uint32     // bytes read since the stream's last WINDOW_UPDATE
}

// dialH2 opens a connection to addr with d (TLS if tc is not nil) and
// starts its reader goroutine, tracked by b.readers.
func dialH2(ctx context.Context, b *bench, addr string, tc *tls.Config, d *net.Dialer) (*h2Conn, error) {
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, dialError(addr, err)
	}
	if tc != nil {
		tc = tc.Clone()
		tc.NextProtos = []string{"h2"}
		if tc.ServerName == "" {
			tc.ServerName, _, _ = net.SplitHostPort(addr)
		}
		tlsConn := tls.Client(nc, tc)
		if err := tlsConn.HandshakeContext(ctx); err != nil {
			nc.Close()
			return nil, fmt.Errorf("TLS handshake with %s: %w", addr, err)
		}
		nc = tlsConn
	}
	c := &h2Conn{b: b, nc: nc, auth: addr, next: 1, streams: make(map[uint32]*h2Stream)}
	// Buffers sized for thousands of connections: the writer carries only
	// stream openings and window updates; a connection with one stream
	// reads a few frames at a time.
	readBuf := 64 << 10
	if b.cfg.streamsPerConn == 1 {
		readBuf = 16 << 10
	}
	c.bw = bufio.NewWriterSize(nc, 4<<10)
	c.fr = http2.NewFramer(c.bw, bufio.NewReaderSize(nc, readBuf))
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.fr.MaxHeaderListSize = 1 << 20
	c.fr.SetReuseFrames()
	c.henc = hpack.NewEncoder(&c.hbuf)
	err = c.write(func() error {
		if _, err := c.bw.WriteString(http2.ClientPreface); err != nil {
			return err
		}
		if err := c.fr.WriteSettings(http2.Setting{ID: http2.SettingEnablePush, Val: 0},
			http2.Setting{ID: http2.SettingInitialWindowSize, Val: h2StreamWindow}); err != nil {
			return err
		}
		return c.fr.WriteWindowUpdate(0, h2ConnWindow-65535)
	})
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("HTTP/2 preface to %s: %w", addr, err)
	}
	b.readers.Add(1)
	go func() {
		defer b.readers.Done()
		c.read()
	}()
	return c, nil
}

// write runs fn, which writes frames, under the write lock and flushes.
func (c *h2Conn) write(fn func() error) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := fn(); err != nil {
		return err
	}
	return c.bw.Flush()
}

// open starts r's stream (Join, or Subscribe) on the connection, joins its
// room, and waits for the joined frame.
func (c *h2Conn) open(ctx context.Context, r *receiver, token string) error {
	room := r.b.roomNames[r.room]
	method, msg, desc := r.request()
	endStream := !desc.ClientStreams
	body, err := proto.Marshal(msg)
	if err != nil {
		return err
	}
	data := binary.BigEndian.AppendUint32([]byte{0}, uint32(len(body)))
	data = append(data, body...)
	s := &h2Stream{r: r, f: wireFrame{wantRoom: room}, ready: make(chan error, 1)}
	var id uint32
	err = c.write(func() error {
		id = c.next
		c.next += 2
		c.mu.Lock()
		c.streams[id] = s
		c.mu.Unlock()
		c.hbuf.Reset()
		for _, f := range [...]hpack.HeaderField{
			{Name: ":method", Value: "POST"}, {Name: ":scheme", Value: c.scheme()}, {Name: ":path", Value: method},
			{Name: ":authority", Value: c.auth}, {Name: "content-type", Value: "application/grpc"}, {Name: "te", Value: "trailers"},
			{Name: "user-agent", Value: cli.ClientName}, {Name: "parley-client", Value: cli.ClientName},
			{Name: "authorization", Value: "Bearer " + token},
		} {
			if err := c.henc.WriteField(f); err != nil {
				return err
			}
		}
		if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.hbuf.Bytes(), EndHeaders: true}); err != nil {
			return err
		}
		return c.fr.WriteData(id, endStream, data)
	})
	if err != nil {
		return fmt.Errorf("open stream in %s: %w", room, err)
	}
	select {
	case err := <-s.ready:
		if err != nil {
			return fmt.Errorf("join %s: %w", room, err)
		}
		if !endStream {
			r.mark = func(seq uint64) error { return c.sendMark(id, room, seq) }
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("join %s: %w", room, ctx.Err())
	}
}

// sendMark writes a mark_read frame on stream id. The server's windows
// are not tracked: a mark is a few dozen bytes, a second or more apart
// per stream, and the server reads them as they come.
func (c *h2Conn) sendMark(id uint32, room string, seq uint64) error {
	body, err := markFrame(room, seq)
	if err != nil {
		return err
	}
	data := binary.BigEndian.AppendUint32([]byte{0}, uint32(len(body)))
	data = append(data, body...)
	return c.write(func() error { return c.fr.WriteData(id, false, data) })
}

func (c *h2Conn) scheme() string {
	if _, ok := c.nc.(*tls.Conn); ok {
		return "https"
	}
	return "http"
}

// close closes the connection; its reader ends every stream still open.
func (c *h2Conn) close() { c.nc.Close() }

// read is the connection's reader goroutine: it reads every frame until
// the connection fails or closes.
func (c *h2Conn) read() {
	for {
		frame, err := c.fr.ReadFrame()
		if err != nil {
			c.failAll(err)
			return
		}
		switch f := frame.(type) {
		case *http2.DataFrame:
			err = c.data(f)
		case *http2.MetaHeadersFrame:
			c.headers(f)
		case *http2.SettingsFrame:
			if !f.IsAck() {
				err = c.write(func() error { c.applySettings(f); return c.fr.WriteSettingsAck() })
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				err = c.write(func() error { return c.fr.WritePing(true, f.Data) })
			}
		case *http2.RSTStreamFrame:
			c.end(f.StreamID, fmt.Errorf("stream reset by the server: %v", f.ErrCode))
		}
		if err != nil {
			c.nc.Close()
			c.failAll(err)
			return
		}
	}
}

// applySettings applies the server's settings that bind the connection's
// writing side, as any HTTP/2 client must: the size of the header table
// the server keeps for the stream openings it decodes. Call it with wmu held.
func (c *h2Conn) applySettings(f *http2.SettingsFrame) {
	if v, ok := f.Value(http2.SettingHeaderTableSize); ok {
		c.henc.SetMaxDynamicTableSizeLimit(v)
	}
}

// data consumes a DATA frame: flow control, then each whole gRPC message.
func (c *h2Conn) data(f *http2.DataFrame) error {
	n := uint32(f.Length)
	c.mu.Lock()
	s := c.streams[f.StreamID]
	c.mu.Unlock()
	var connUpdate, streamUpdate uint32
	if c.connUnacked += n; c.connUnacked >= h2ConnWindow/2 {
		connUpdate, c.connUnacked = c.connUnacked, 0
	}
	if s != nil {
		if s.unacked += n; s.unacked >= h2StreamWindow/2 {
			streamUpdate, s.unacked = s.unacked, 0
		}
	}
	if connUpdate > 0 || streamUpdate > 0 {
		err := c.write(func() error {
			if connUpdate > 0 {
				if err := c.fr.WriteWindowUpdate(0, connUpdate); err != nil {
					return err
				}
			}
			if streamUpdate > 0 {
				return c.fr.WriteWindowUpdate(f.StreamID, streamUpdate)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	if s == nil {
		return nil
	}
	data := f.Data()
	if len(s.buf) > 0 {
		s.buf = append(s.buf, data...)
		data = s.buf
	}
	for len(data) >= 5 {
		if data[0] != 0 {
			c.end(f.StreamID, errors.New("compressed message: the bench asks for none"))
			return nil
		}
		size := binary.BigEndian.Uint32(data[1:5])
		if uint64(len(data)-5) < uint64(size) {
			break
		}
		if err := s.message(data[5 : 5+size]); err != nil {
			c.end(f.StreamID, err)
			return nil
		}
		data = data[5+size:]
	}
	switch {
	case len(data) == 0:
		s.buf = s.buf[:0]
	case len(s.buf) > 0: // data is the end of s.buf
		s.buf = s.buf[:copy(s.buf, data)]
	default:
		s.buf = append(s.buf[:0], data...)
	}
	return nil
}

// message handles one gRPC message of the stream.
func (s *h2Stream) message(msg []byte) error {
	f := &s.f
	if err := f.parse(msg); err != nil {
		return err
	}
	if !s.opened {
		ok, err := s.r.joined(f)
		if ok {
			s.opened = true
			s.ready <- nil
		}
		return err
	}
	switch f.kind {
	case kindMessage:
		s.r.deliver(f)
	case kindReply:
		s.r.reply(f)
	case kindPresence:
		s.r.presence.Add(1)
	}
	return nil
}

// headers handles response headers and trailers: a trailer (or a
// trailers-only response) ends the stream with its grpc-status.
func (c *h2Conn) headers(f *http2.MetaHeadersFrame) {
	if st := f.PseudoValue("status"); st != "" && st != "200" {
		c.end(f.StreamID, fmt.Errorf("HTTP status %s", st))
		return
	}
	fields := f.RegularFields()
	for _, h := range fields {
		if h.Name == "grpc-status" {
			n, _ := strconv.Atoi(h.Value)
			msg := ""
			for _, m := range fields {
				if m.Name == "grpc-message" {
					msg = m.Value
				}
			}
			c.end(f.StreamID, status.Error(codes.Code(n), msg))
			return
		}
	}
	if f.StreamEnded() {
		c.end(f.StreamID, errors.New("stream ended without a grpc-status"))
	}
}

// end forgets a stream and reports why it ended: to open if it never
// joined, else as an error of the run (unless the bench is stopping).
func (c *h2Conn) end(id uint32, err error) {
	c.mu.Lock()
	s := c.streams[id]
	delete(c.streams, id)
	c.mu.Unlock()
	if s != nil {
		s.finish(err)
	}
}

func (c *h2Conn) failAll(err error) {
	c.mu.Lock()
	streams := c.streams
	c.streams = map[uint32]*h2Stream{}
	c.mu.Unlock()
	for _, s := range streams {
		s.finish(err)
	}
}

func (s *h2Stream) finish(err error) {
	if !s.opened {
		s.ready <- err
		return
	}
	s.r.b.streamEnded(s.r.name(), err)
}
