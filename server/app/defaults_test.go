package app_test

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/parleychat/parley/server/app"
)

// The defaults app resolves or names are the ones docs/clients.md and the
// README promise.
func TestDefaultsAreDocumented(t *testing.T) {
	if app.DefaultMaxQueueBytes != 1<<20 || app.DefaultMaxRoomsPerConn != 256 || app.DefaultDBCheckTimeout != 30*time.Second {
		t.Fatalf("defaults: queue %d bytes, %d rooms per stream, database check %v", app.DefaultMaxQueueBytes, app.DefaultMaxRoomsPerConn, app.DefaultDBCheckTimeout)
	}
	for file, wants := range map[string][]string{
		"../../docs/clients.md": {
			"| rooms on one `Join` or `Subscribe` stream | 256 | `--max-rooms-per-stream` |",
			"| queued bytes for one stream | 1 MiB | `--max-queue-bytes` |",
		},
		"../../README.md": {"(`--db-check-timeout`, default\n30s)"},
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

// The message body must fit in half a message whether either limit is set
// or left to its default.
func TestBodyFitsInMessage(t *testing.T) {
	for _, c := range []struct {
		body, message int
		ok            bool
	}{
		{0, 0, true}, {4096, 0, true}, {0, 8192, true}, {40000, 1 << 20, true},
		{40000, 0, false}, {0, 4096, false}, {5000, 8192, false},
	} {
		err := app.Config{MaxBodyBytes: c.body, MaxMessageBytes: c.message}.Validate()
		if (err == nil) != c.ok {
			t.Errorf("body %d, message %d: %v", c.body, c.message, err)
		}
	}
}
