package transport

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"testing"

	"google.golang.org/grpc/grpclog"
)

// TestGRPCLogGoesToSlog checks where grpclog's lines go: grpc-go's errors
// to the server's log at ERROR, its info and warnings at DEBUG, and the
// grpc-web wrapper's complaint about a WebSocket that closed before its
// header frame at DEBUG, not as an error.
func TestGRPCLogGoesToSlog(t *testing.T) {
	var buf bytes.Buffer
	routeGRPCLog(slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	t.Cleanup(func() { routeGRPCLog(nil) })

	grpclog.Errorf("Unable to read first websocket message: %v %v %v", 0, []byte{}, "failed to get reader: EOF")
	grpclog.Errorf("server failed: %d", 7)
	grpclog.Warningf("connection reset")
	grpclog.Info("channel created")

	type record struct{ Level, Msg, Detail string }
	var got []record
	dec := json.NewDecoder(&buf)
	for dec.More() {
		var r record
		if err := dec.Decode(&r); err != nil {
			t.Fatalf("not a JSON log line: %v\n%s", err, buf.String())
		}
		got = append(got, r)
	}
	want := []record{
		{"DEBUG", "grpc-web: a WebSocket ended before its call started", "Unable to read first websocket message: 0 [] failed to get reader: EOF"},
		{"ERROR", "server failed: 7", ""},
		{"DEBUG", "connection reset", ""},
		{"DEBUG", "channel created", ""},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d records, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("record %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
}
