package app_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"slices"
	"testing"
	"time"

	parleyv1 "github.com/parleychat/parley/gen/parley/v1"
	"github.com/parleychat/parley/server/app"
)

// getStream opens a REST event stream as curl -N would.
func getStream(t *testing.T, url, token string) *http.Response {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// The REST event stream is served as application/x-ndjson: one JSON object
// per line, each {"result": event}, and an error that ends the stream as
// {"error": status}. A stream refused before its first event is one JSON
// document with the HTTP status of its code.
func TestRESTEventStreamIsNDJSON(t *testing.T) {
	s, err := app.Start(context.Background(), app.Config{
		Listen: "127.0.0.1:0", DataDir: t.TempDir(), Store: "memory", SendRate: -1,
		ShutdownTimeout: 5 * time.Second, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	shut := false
	t.Cleanup(func() {
		if !shut {
			s.Shutdown(context.Background())
		}
	})
	tok, _, err := s.Keys.Mint("curl", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + s.Addr() + "/v1/rooms/"

	refused := getStream(t, base+"nope/events", tok)
	var doc struct{ Error struct{ Code int } }
	if ct := refused.Header.Get("Content-Type"); refused.StatusCode != http.StatusNotFound || ct != "application/json" {
		t.Fatalf("events of a missing room: %s, Content-Type %q; want 404 application/json", refused.Status, ct)
	}
	if err := json.NewDecoder(refused.Body).Decode(&doc); err != nil || doc.Error.Code != 5 {
		t.Fatalf("events of a missing room: %+v (%v), want {\"error\":{\"code\":5,...}}", doc, err)
	}

	resp := getStream(t, base+"lobby/events?afterSeq=0", tok)
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || ct != "application/x-ndjson" {
		t.Fatalf("events: %s, Content-Type %q; want 200 application/x-ndjson", resp.Status, ct)
	}
	lines := bufio.NewScanner(resp.Body)
	next := func(want string) map[string]json.RawMessage {
		t.Helper()
		if !lines.Scan() {
			t.Fatalf("event stream ended before a %q line: %v", want, lines.Err())
		}
		var line map[string]json.RawMessage
		if err := json.Unmarshal(lines.Bytes(), &line); err != nil || len(line) != 1 || line[want] == nil {
			t.Fatalf("line %q: want one JSON object {%q: ...} (%v)", lines.Text(), want, err)
		}
		var inner map[string]json.RawMessage
		if err := json.Unmarshal(line[want], &inner); err != nil {
			t.Fatalf("line %q: %v", lines.Text(), err)
		}
		return inner
	}
	for _, event := range []string{"joined", "replayed"} {
		if ev := next("result"); ev[event] == nil {
			t.Fatalf("got %v, want a %s event", ev, event)
		}
	}
	c := parleyv1.NewChatServiceClient((&testServer{Server: s}).dial(t))
	if _, err := c.SendMessage(authCtx(t, tok), &parleyv1.SendMessageRequest{Room: "lobby", Body: "hi"}); err != nil {
		t.Fatal(err)
	}
	if ev := next("result"); ev["message"] == nil {
		t.Fatalf("got %v, want the message", ev)
	}

	// Shutting down ends the stream with UNAVAILABLE: an error line.
	shut = true
	done := make(chan error, 1)
	go func() { done <- s.Shutdown(context.Background()) }()
	var code int
	if err := json.Unmarshal(next("error")["code"], &code); err != nil || code != 14 {
		t.Errorf("the stream ended with code %d (%v), want 14 (UNAVAILABLE)", code, err)
	}
	if err := <-done; err != nil {
		t.Errorf("shutdown: %v", err)
	}
}

// The server serves the REST API's OpenAPI document, the one generated
// into server/internal/transport/openapi, at /openapi.json.
func TestOpenAPIDocumentIsServed(t *testing.T) {
	ts := startServer(t)
	resp, err := http.Get("http://" + ts.Addr() + "/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || ct != "application/json" {
		t.Fatalf("GET /openapi.json: %s, Content-Type %q; want 200 application/json", resp.Status, ct)
	}
	var doc struct {
		Swagger string
		Info    struct{ Title string }
		Paths   map[string]map[string]struct{ Produces []string }
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatalf("GET /openapi.json: %v", err)
	}
	if _, ok := doc.Paths["/v1/users/{toUser}/messages"]["post"]; doc.Swagger != "2.0" || doc.Info.Title != "Parley ChatService" || !ok {
		t.Fatalf("GET /openapi.json: swagger %q, title %q, paths %v; want 2.0, Parley ChatService, with the direct-message route",
			doc.Swagger, doc.Info.Title, slices.Sorted(maps.Keys(doc.Paths)))
	}
	if p := doc.Paths["/v1/rooms/{room}/events"]["get"].Produces; !slices.Equal(p, []string{"application/x-ndjson"}) {
		t.Fatalf("GET /openapi.json: the events route produces %q, want application/x-ndjson", p)
	}
	generated, err := os.ReadFile("../internal/transport/openapi/parley.swagger.json")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(body, generated) {
		t.Fatal("/openapi.json differs from the generated server/internal/transport/openapi/parley.swagger.json")
	}
}
