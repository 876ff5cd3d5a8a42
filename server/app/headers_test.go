package app_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"nhooyr.io/websocket"

	parleyv1 "github.com/parleychat/parley/gen/parley/v1"
)

// wsCall opens a grpc-web WebSocket for method, sends header (the first
// frame: "name: value" lines) and req, and returns the call's grpc-status
// and grpc-message, or the error that ended the socket first. The client
// sends nothing more after req.
func wsCall(t *testing.T, addr, method, header string, req proto.Message) (codes.Code, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws://"+addr+"/parley.v1.ChatService/"+method,
		&websocket.DialOptions{Subprotocols: []string{"grpc-websockets"}})
	if err != nil {
		t.Fatalf("websocket dial: %v", err)
	}
	defer c.Close(websocket.StatusNormalClosure, "")
	if err := c.Write(ctx, websocket.MessageBinary, []byte(header)); err != nil {
		return 0, "", err
	}
	msg, _ := proto.Marshal(req)
	frame := make([]byte, 6, 6+len(msg))
	binary.BigEndian.PutUint32(frame[2:], uint32(len(msg)))
	if err := c.Write(ctx, websocket.MessageBinary, append(frame, msg...)); err != nil {
		return 0, "", err
	}
	if err := c.Write(ctx, websocket.MessageBinary, []byte{1}); err != nil { // end of the client's sending
		return 0, "", err
	}
	// The answer is a byte stream of grpc-web frames split over messages.
	var stream bytes.Buffer
	for {
		_, b, err := c.Read(ctx)
		if err != nil {
			return 0, "", err
		}
		stream.Write(b)
		for stream.Len() >= 5 {
			hdr := stream.Bytes()[:5]
			n := int(binary.BigEndian.Uint32(hdr[1:]))
			if stream.Len() < 5+n {
				break
			}
			flags := hdr[0]
			data := stream.Bytes()[5 : 5+n]
			if flags&0x80 != 0 {
				if code, msg, ok := grpcStatusIn(string(data)); ok {
					return code, msg, nil
				}
			}
			stream.Next(5 + n)
		}
	}
}

// grpcStatusIn finds grpc-status and grpc-message in a header block.
func grpcStatusIn(block string) (codes.Code, string, bool) {
	var code codes.Code
	var msg string
	found := false
	for _, line := range strings.Split(block, "\r\n") {
		k, v, _ := strings.Cut(line, ":")
		switch strings.ToLower(strings.TrimSpace(k)) {
		case "grpc-status":
			fmt.Sscan(strings.TrimSpace(v), &code)
			found = true
		case "grpc-message":
			msg = strings.TrimSpace(v)
		}
	}
	return code, msg, found
}

// A request with two authorization headers is refused, whichever front
// door it comes through: which of the two a proxy or library would use
// differs, so the server picks neither.
func TestTwoAuthorizationHeadersAreRefused(t *testing.T) {
	ts := startServer(t)
	good, other := ts.token(t, "alice"), ts.token(t, "mallory")
	for _, pair := range []struct{ name, first, second string }{
		{"the same token twice", good, good},
		{"a good token and another user's", good, other},
		{"a good token and garbage", good, "garbage"},
	} {
		t.Run("native gRPC/"+pair.name, func(t *testing.T) {
			c := parleyv1.NewChatServiceClient(ts.dial(t))
			ctx := metadata.AppendToOutgoingContext(context.Background(),
				"authorization", "Bearer "+pair.first, "authorization", "Bearer "+pair.second)
			_, err := c.ListRooms(ctx, &parleyv1.ListRoomsRequest{})
			wantTwoHeaders(t, statusOf(err).Code(), statusOf(err).Message())
			stream, err := c.Join(ctx)
			if err == nil {
				_, err = stream.Recv()
			}
			wantTwoHeaders(t, statusOf(err).Code(), statusOf(err).Message())
		})
		t.Run("grpc-web/"+pair.name, func(t *testing.T) {
			code, msg := grpcWebUnary(t, ts.Addr(), "ListRooms", []string{pair.first, pair.second}, &parleyv1.ListRoomsRequest{})
			wantTwoHeaders(t, code, msg)
		})
		t.Run("grpc-web WebSocket/"+pair.name, func(t *testing.T) {
			header := "content-type: application/grpc-web+proto\r\nx-grpc-web: 1\r\n" +
				"authorization: Bearer " + pair.first + "\r\nauthorization: Bearer " + pair.second + "\r\n"
			code, msg, err := wsCall(t, ts.Addr(), "Join", header, &parleyv1.JoinRequest{Ref: "1"})
			if err != nil {
				t.Fatalf("websocket ended without a status: %v", err)
			}
			wantTwoHeaders(t, code, msg)
		})
		t.Run("REST/"+pair.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, "http://"+ts.Addr()+"/v1/rooms", nil)
			req.Header.Add("Authorization", "Bearer "+pair.first)
			req.Header.Add("Authorization", "Bearer "+pair.second)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), "2 authorization headers") {
				t.Fatalf("GET /v1/rooms: %s %s, want 401 naming the two headers", resp.Status, body)
			}
		})
	}
	// One header still works on every door.
	if code, msg := grpcWebUnary(t, ts.Addr(), "ListRooms", []string{good}, &parleyv1.ListRoomsRequest{}); code != codes.OK {
		t.Fatalf("grpc-web with one header: %v %s", code, msg)
	}
	if code, _ := restDo(t, http.MethodGet, "http://"+ts.Addr()+"/v1/rooms", good, nil); code != http.StatusOK {
		t.Fatalf("REST with one header: %d", code)
	}
}

func wantTwoHeaders(t *testing.T, code codes.Code, msg string) {
	t.Helper()
	if code != codes.Unauthenticated || !strings.Contains(msg, "2 authorization headers") {
		t.Fatalf("got %v %q, want UNAUTHENTICATED naming the two authorization headers", code, msg)
	}
}

// grpcWebUnary makes a grpc-web call over HTTP/1.1 with one authorization
// header per token and returns its status.
func grpcWebUnary(t *testing.T, addr, method string, tokens []string, req proto.Message) (codes.Code, string) {
	t.Helper()
	msg, _ := proto.Marshal(req)
	body := make([]byte, 5, 5+len(msg))
	binary.BigEndian.PutUint32(body[1:], uint32(len(msg)))
	hreq, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/parley.v1.ChatService/"+method, bytes.NewReader(append(body, msg...)))
	hreq.Header.Set("Content-Type", "application/grpc-web+proto")
	hreq.Header.Set("X-Grpc-Web", "1")
	for _, tok := range tokens {
		hreq.Header.Add("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(hreq)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if code, msg, ok := grpcStatusIn(headerBlock(resp.Header)); ok {
		return code, msg
	}
	for {
		f, err := readGRPCWebFrame(resp.Body)
		if err != nil {
			t.Fatalf("grpc-web %s: no status: %v", method, err)
		}
		if code, msg, ok := grpcStatusIn(string(f.data)); f.trailer && ok {
			return code, msg
		}
	}
}

func headerBlock(h http.Header) string {
	var b strings.Builder
	h.Write(&b)
	return b.String()
}

// The header frame that opens a grpc-web WebSocket is held to the same
// limit as any other request's headers, and must come within
// ReadHeaderTimeout of the upgrade.
func TestWebSocketHeaderFrameLimits(t *testing.T) {
	ts := startServer(t, func(c *appConfig) { c.ReadHeaderTimeout = 300 * time.Millisecond })
	tok := ts.token(t, "alice")
	base := "content-type: application/grpc-web+proto\r\nx-grpc-web: 1\r\nauthorization: Bearer " + tok + "\r\n"
	t.Run("a header frame within the limit", func(t *testing.T) {
		code, msg, err := wsCall(t, ts.Addr(), "ListRooms", base+"x-pad: "+strings.Repeat("p", 16<<10)+"\r\n", &parleyv1.ListRoomsRequest{})
		if err != nil || code != codes.OK {
			t.Fatalf("got %v %q (%v), want OK", code, msg, err)
		}
	})
	t.Run("a header frame over the limit", func(t *testing.T) {
		code, msg, err := wsCall(t, ts.Addr(), "ListRooms", base+"x-pad: "+strings.Repeat("p", 40<<10)+"\r\n", &parleyv1.ListRoomsRequest{})
		if err != nil || code != codes.ResourceExhausted || !strings.Contains(msg, "limit is 32768") {
			t.Fatalf("got %v %q (%v), want RESOURCE_EXHAUSTED naming the limit", code, msg, err)
		}
	})
	t.Run("no header frame", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		c, _, err := websocket.Dial(ctx, "ws://"+ts.Addr()+"/parley.v1.ChatService/Join",
			&websocket.DialOptions{Subprotocols: []string{"grpc-websockets"}})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(websocket.StatusNormalClosure, "")
		start := time.Now()
		_, _, err = c.Read(ctx)
		if err == nil || errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 5*time.Second {
			t.Fatalf("silent WebSocket: read returned %v after %v, want the server to close it after ~300ms", err, time.Since(start))
		}
	})
}

// REST answers 431 to headers over the limit, including those net/http's
// own check lets through and the gateway's gRPC call would exceed with
// what it adds (that was 500 INTERNAL).
func TestRESTHeaderLimit(t *testing.T) {
	ts := startServer(t)
	for _, tc := range []struct {
		authBytes int
		want      int
	}{
		{20 << 10, http.StatusUnauthorized}, // a token over the 8 KiB token limit
		{33 << 10, http.StatusRequestHeaderFieldsTooLarge},
		{35 << 10, http.StatusRequestHeaderFieldsTooLarge},
		{1 << 20, http.StatusRequestHeaderFieldsTooLarge},
	} {
		req, _ := http.NewRequest(http.MethodGet, "http://"+ts.Addr()+"/v1/rooms", nil)
		req.Header.Set("Authorization", "Bearer "+strings.Repeat("a", tc.authBytes))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%d-byte authorization: %s %.200s, want %d", tc.authBytes, resp.Status, body, tc.want)
		}
	}
}
