//go:build unix

package web_test

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestWebSocketClosedEarlyIsNoError opens the web app's Join WebSocket and
// ends it before its header frame, as a page does that reconnects or goes
// away while connecting: once with a close frame, once by dropping the
// connection. parleyd notes each at debug and writes no ERROR, and no line
// that is not its JSON log (grpc-web's default logger wrote a plain-text
// "ERROR: Unable to read first websocket message" for each).
func TestWebSocketClosedEarlyIsNoError(t *testing.T) {
	base, logs := startParleyd(t, parleydBinary(t), "--log-level", "debug")
	host := strings.TrimPrefix(base, "http://")

	closing := dialJoinWebSocket(t, host)
	// A masked close frame, status 1000 (normal closure).
	mask := []byte{1, 2, 3, 4}
	frame := []byte{0x88, 0x82, mask[0], mask[1], mask[2], mask[3], 0x03 ^ mask[0], 0xe8 ^ mask[1]}
	if _, err := closing.Write(frame); err != nil {
		t.Fatal(err)
	}
	_ = closing.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, _ = io.Copy(io.Discard, closing) // the server's close frame, then EOF
	closing.Close()
	dialJoinWebSocket(t, host).Close()

	const ended = "grpc-web: a WebSocket ended before its call started"
	deadline := time.Now().Add(15 * time.Second)
	for {
		debug, mentions := 0, 0
		for _, line := range logs.all() {
			var rec struct{ Level, Msg string }
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Level == "DEBUG" && rec.Msg == ended {
				debug++
			} else if strings.Contains(line, "first websocket message") {
				mentions++
			}
		}
		if debug == 2 || mentions > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("parleyd did not log the two WebSockets ending; its log:\n%s", strings.Join(logs.all(), "\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, line := range logs.all() {
		var rec struct{ Level string }
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Errorf("parleyd wrote a line that is not its JSON log: %s", line)
		} else if rec.Level == "ERROR" {
			t.Errorf("parleyd logged an error: %s", line)
		}
	}
}

// dialJoinWebSocket opens the grpc-web WebSocket for Join, as the web app
// does, and returns the connection right after the handshake.
func dialJoinWebSocket(t *testing.T, host string) net.Conn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", host, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	key := make([]byte, 16)
	_, _ = rand.Read(key)
	req, _ := http.NewRequest("GET", "http://"+host+"/parley.v1.ChatService/Join", nil)
	req.Header.Set("Origin", "http://"+host)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", base64.StdEncoding.EncodeToString(key))
	req.Header.Set("Sec-WebSocket-Protocol", "grpc-websockets")
	if err := req.Write(conn); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("WebSocket handshake: %s", resp.Status)
	}
	return conn
}
