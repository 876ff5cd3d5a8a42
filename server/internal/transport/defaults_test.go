package transport

import (
	"os"
	"strings"
	"testing"
	"time"
)

// The defaults are the ones docs/clients.md and the README promise.
func TestDefaultsAreDocumented(t *testing.T) {
	var c Config
	c.setDefaults()
	if c.MaxHeaderBytes != 32<<10 || c.ReadHeaderTimeout != 10*time.Second ||
		c.KeepaliveTime != 20*time.Second || c.KeepaliveTimeout != 10*time.Second {
		t.Fatalf("defaults: headers %d, read-header timeout %v, keepalive %v + %v", c.MaxHeaderBytes, c.ReadHeaderTimeout, c.KeepaliveTime, c.KeepaliveTimeout)
	}
	if c.Listen != "127.0.0.1:8080" || c.MaxMessageBytes != 64<<10 || c.MaxStreamsPerConn != 100 {
		t.Fatalf("defaults: listen %s, message %d bytes, %d streams per connection", c.Listen, c.MaxMessageBytes, c.MaxStreamsPerConn)
	}
	for file, wants := range map[string][]string{
		"../../../docs/clients.md": {
			"| request headers (all of them: token, `parley-client`, anything else) | 32 KiB | `--max-header-bytes` |",
			"or a grpc-web WebSocket's header frame | 10 s | `--read-header-timeout` |",
			"| a silent connection is pinged after | 20 s | `--keepalive-time` |",
			"| a pinged connection that sends nothing is closed after | 10 s more | `--keepalive-timeout` |",
			"maximum size (32768 bytes)",
			"The server listens on `127.0.0.1:8080` unless started with `--listen`.",
			"| one gRPC message or grpc-web frame from a client | 64 KiB | `--max-message-bytes` |",
			"| concurrent streams on one HTTP/2 connection | 100 | `--max-streams-per-conn` |",
		},
		"../../../README.md": {"`--max-header-bytes`\n(32 KiB", "(10 s to\nsend", "(20 s/10 s:", "within 30 s",
			"`--listen` (default `127.0.0.1:8080`)"},
	} {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range wants {
			if !strings.Contains(string(b), w) {
				t.Errorf("%s does not say %q", file, w)
			}
		}
	}
}
