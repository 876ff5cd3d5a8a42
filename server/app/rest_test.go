package app_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	parleyv1 "github.com/parleychat/parley/gen/parley/v1"
)

// restRaw sends body as it is, with contentType if not empty, and returns
// the HTTP status, the headers and the decoded JSON answer.
func restRaw(t *testing.T, method, url, token, contentType, body string) (int, http.Header, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("%s %s: %s: answer is not JSON: %q", method, url, resp.Status, raw)
	}
	return resp.StatusCode, resp.Header, out
}

// REST refuses, with a status that says why, what it used to accept and
// half-understand: unknown fields, data after the JSON object, bodies that
// are not JSON, values that are not UTF-8, and methods a route lacks. None
// of the refused requests stores anything.
func TestRESTRefusesWhatItShould(t *testing.T) {
	ts := startServer(t)
	ts.createRoom(t, "strict")
	tok := ts.token(t, "curl")
	base := "http://" + ts.Addr()
	const jsonCT = "application/json"
	cases := []struct {
		name, method, path, contentType, body string
		code                                  int
		msg                                   string // in the answer's message
		allow                                 string // the Allow header, for 405
	}{
		{"misspelled field", "POST", "/v1/rooms/strict/messages", jsonCT, `{"body":"x","clientMsgID":"k1"}`, 400, `unknown field "clientMsgID"`, ""},
		{"misspelled field of CreateRoom", "POST", "/v1/rooms", jsonCT, `{"name":"zzz","visibilty":"ROOM_VISIBILITY_PRIVATE"}`, 400, `unknown field "visibilty"`, ""},
		{"trailing garbage", "POST", "/v1/rooms/strict/messages", jsonCT, `{"body":"x","clientMsgId":"k2"} garbage`, 400, "data after the JSON object", ""},
		{"two objects", "POST", "/v1/rooms/strict/messages", jsonCT, `{"body":"x","clientMsgId":"k3"}{"body":"y"}`, 400, "data after the JSON object", ""},
		{"not JSON", "POST", "/v1/rooms/strict/messages", jsonCT, `body=x`, 400, "not JSON", ""},
		{"text/plain", "POST", "/v1/rooms/strict/messages", "text/plain", `{"body":"x","clientMsgId":"k4"}`, 415, "application/json", ""},
		{"form (curl -d)", "POST", "/v1/rooms/strict/messages", "application/x-www-form-urlencoded", `{"body":"x","clientMsgId":"k5"}`, 415, "--json", ""},
		{"no content type", "POST", "/v1/rooms/strict/messages", "", `{"body":"x","clientMsgId":"k6"}`, 415, "without a Content-Type", ""},
		{"other charset", "POST", "/v1/rooms/strict/messages", "application/json; charset=latin1", `{"body":"x","clientMsgId":"k7"}`, 415, "UTF-8", ""},
		{"page token not UTF-8", "GET", "/v1/rooms?pageToken=%ff%fe", "", "", 400, "pageToken is not valid UTF-8", ""},
		{"history token not UTF-8", "GET", "/v1/rooms/strict/messages?pageToken=a%ff", "", "", 400, "pageToken is not valid UTF-8", ""},
		{"room not UTF-8", "GET", "/v1/rooms/%ff/messages", "", "", 400, "room is not valid UTF-8", ""},
		{"PUT rooms", "PUT", "/v1/rooms", jsonCT, `{"name":"x"}`, 405, "allowed: GET, POST", "GET, POST"},
		{"DELETE messages", "DELETE", "/v1/rooms/strict/messages", "", "", 405, "allowed: GET, POST", "GET, POST"},
		{"PATCH a member", "PATCH", "/v1/rooms/strict/members/bob", "", "", 405, "allowed: DELETE", "DELETE"},
		{"misspelled query parameter", "GET", "/v1/rooms/strict/messages?before=10", "", "", 400, `unknown query parameter "before"; ListMessagesRequest has room, beforeSeq`, ""},
		{"query parameter of another request", "GET", "/v1/rooms?clientMsgId=x", "", "", 400, `unknown query parameter "clientMsgId"`, ""},
		{"query on a POST", "POST", "/v1/rooms/strict/messages?clientMsgId=k8", jsonCT, `{"body":"x"}`, 400, "not the query string", ""},
		{"no such route", "GET", "/v1/nothing", "", "", 404, "Not Found", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, hdr, out := restRaw(t, tc.method, base+tc.path, tok, tc.contentType, tc.body)
			msg, _ := out["message"].(string)
			if code != tc.code || !strings.Contains(msg, tc.msg) {
				t.Fatalf("%s %s: %d %v, want %d with %q", tc.method, tc.path, code, out, tc.code, tc.msg)
			}
			if testing.Verbose() {
				t.Logf("%d %s", code, msg)
			}
			if got := hdr.Get("Allow"); got != tc.allow {
				t.Fatalf("Allow: %q, want %q", got, tc.allow)
			}
		})
	}
	// What a client should send is accepted: JSON, with or without a
	// charset, and GETs with no body.
	for i, ct := range []string{jsonCT, "application/json; charset=utf-8", "Application/JSON; Charset=UTF-8"} {
		code, _, out := restRaw(t, "POST", base+"/v1/rooms/strict/messages", tok, ct, `{"body":"ok","clientMsgId":"ok`+string(rune('0'+i))+`"} `)
		if code != http.StatusOK {
			t.Fatalf("POST with Content-Type %q: %d %v", ct, code, out)
		}
	}
	for _, q := range []string{"order=MESSAGE_ORDER_OLDEST_FIRST", "before_seq=3&afterSeq=0&limit=2", "room=other"} {
		if code, _, out := restRaw(t, "GET", base+"/v1/rooms/strict/messages?"+q, tok, "", ""); code != http.StatusOK {
			t.Fatalf("GET history ?%s: %d %v", q, code, out)
		}
	}
	c, ctx := ts.client(t, "curl")
	hist, err := c.ListMessages(ctx, &parleyv1.ListMessagesRequest{Room: "strict"})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(hist.GetMessages()); n != 3 {
		t.Fatalf("room holds %d messages after 3 accepted sends and the refused ones", n)
	}
	if names := roomNames(t, c, ctx); len(names) != 2 { // lobby and strict
		t.Fatalf("rooms after refused creations: %v", names)
	}
}
