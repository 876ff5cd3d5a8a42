package app_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	parleyv1 "github.com/parleychat/parley/gen/parley/v1"
)

// grpcWebFrame is one length-prefixed frame of a grpc-web body.
type grpcWebFrame struct {
	trailer bool
	data    []byte
}

func readGRPCWebFrame(r io.Reader) (grpcWebFrame, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return grpcWebFrame{}, err
	}
	data := make([]byte, binary.BigEndian.Uint32(hdr[1:]))
	if _, err := io.ReadFull(r, data); err != nil {
		return grpcWebFrame{}, err
	}
	return grpcWebFrame{trailer: hdr[0]&0x80 != 0, data: data}, nil
}

// grpcWebPost starts a grpc-web call over HTTP/1.1 and returns the response.
func grpcWebPost(ctx context.Context, t *testing.T, addr, method, token string, req proto.Message) *http.Response {
	t.Helper()
	msg, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	body := make([]byte, 5, 5+len(msg))
	binary.BigEndian.PutUint32(body[1:], uint32(len(msg)))
	body = append(body, msg...)
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/parley.v1.ChatService/"+method, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	hreq.Header.Set("Content-Type", "application/grpc-web+proto")
	hreq.Header.Set("X-Grpc-Web", "1")
	hreq.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(hreq)
	if err != nil {
		t.Fatalf("grpc-web %s: %v", method, err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("grpc-web %s: HTTP %s", method, resp.Status)
	}
	return resp
}

// grpcWebStatus reads a trailer frame's grpc-status.
func grpcWebStatus(t *testing.T, f grpcWebFrame) string {
	t.Helper()
	tr, err := textproto.NewReader(bufio.NewReader(bytes.NewReader(append(f.data, "\r\n"...)))).ReadMIMEHeader()
	if err != nil {
		t.Fatalf("trailer frame %q: %v", f.data, err)
	}
	return tr.Get("Grpc-Status")
}

func restDo(t *testing.T, method, url, token string, body any) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("%s %s: decode: %v", method, url, err)
	}
	return resp.StatusCode, out
}

// The same room through every front door: native gRPC, grpc-web (unary
// and server-streaming) and REST, each seeing what the others send.
func TestEveryFrontDoorReachesTheSameRoom(t *testing.T) {
	ts := startServer(t)
	ts.createRoom(t, "doors")
	tok := ts.token(t, "webby")
	native := openJoin(t, ts.dial(t), ts.token(t, "native"))
	native.join("doors", nil)

	// grpc-web server streaming: Subscribe receives the room live.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sub := grpcWebPost(ctx, t, ts.Addr(), "Subscribe", tok, &parleyv1.SubscribeRequest{Room: "doors"})
	nextWebEvent := func() *parleyv1.SubscribeResponse {
		t.Helper()
		f, err := readGRPCWebFrame(sub.Body)
		if err != nil || f.trailer {
			t.Fatalf("grpc-web Subscribe frame: %v (trailer %q)", err, f.data)
		}
		var ev parleyv1.SubscribeResponse
		if err := proto.Unmarshal(f.data, &ev); err != nil {
			t.Fatal(err)
		}
		return &ev
	}
	if j := nextWebEvent().GetJoined(); j.GetRoom() != "doors" {
		t.Fatalf("first grpc-web Subscribe event is not the joined state: %v", j)
	}

	// Native gRPC send: seen by grpc-web Subscribe.
	if r := native.post("doors", "from native", ""); r.GetCode() != 0 {
		t.Fatal(r.GetError())
	}
	if m := native.next(isMessage("doors"), nil).GetMessage(); m.GetSeq() != 1 {
		t.Fatalf("native stream got %v, want its own message", m)
	}
	if m := nextWebEvent().GetMessage(); m.GetBody() != "from native" || m.GetSeq() != 1 {
		t.Fatalf("grpc-web Subscribe got %v, want the native message with seq 1", m)
	}

	// grpc-web unary send: seen by the native stream and by Subscribe.
	resp := grpcWebPost(context.Background(), t, ts.Addr(), "SendMessage", tok, &parleyv1.SendMessageRequest{Room: "doors", Body: "from grpc-web"})
	data, err := readGRPCWebFrame(resp.Body)
	if err != nil || data.trailer {
		t.Fatalf("grpc-web SendMessage: %v %q", err, data.data)
	}
	var sent parleyv1.SendMessageResponse
	if err := proto.Unmarshal(data.data, &sent); err != nil || sent.GetMessage().GetSeq() != 2 {
		t.Fatalf("grpc-web SendMessage response %v (%v), want seq 2", &sent, err)
	}
	trailer, err := readGRPCWebFrame(resp.Body)
	if err != nil || !trailer.trailer || grpcWebStatus(t, trailer) != "0" {
		t.Fatalf("grpc-web SendMessage trailer %q (%v), want grpc-status 0", trailer.data, err)
	}
	if m := native.next(isMessage("doors"), nil).GetMessage(); m.GetBody() != "from grpc-web" || m.GetSender() != "webby" {
		t.Fatalf("native stream got %v, want the grpc-web message", m)
	}
	if m := nextWebEvent().GetMessage(); m.GetBody() != "from grpc-web" {
		t.Fatalf("grpc-web Subscribe got %v", m)
	}

	// REST: the room is listed, and a POSTed message arrives live.
	base := "http://" + ts.Addr()
	code, rooms := restDo(t, http.MethodGet, base+"/v1/rooms", tok, nil)
	if code != http.StatusOK || !strings.Contains(fmt.Sprint(rooms["rooms"]), "name:doors") {
		t.Fatalf("GET /v1/rooms: %d %v", code, rooms)
	}
	code, posted := restDo(t, http.MethodPost, base+"/v1/rooms/doors/messages", tok, map[string]string{"body": "from rest", "clientMsgId": "r1"})
	if code != http.StatusOK {
		t.Fatalf("POST message: %d %v", code, posted)
	}
	if seq := posted["message"].(map[string]any)["seq"]; seq != "3" {
		t.Fatalf("POST message returned seq %v, want \"3\"", seq)
	}
	if m := native.next(isMessage("doors"), nil).GetMessage(); m.GetBody() != "from rest" || m.GetSeq() != 3 || m.GetClientMsgId() != "r1" {
		t.Fatalf("native stream got %v, want the REST message", m)
	}
	if m := nextWebEvent().GetMessage(); m.GetBody() != "from rest" {
		t.Fatalf("grpc-web Subscribe got %v", m)
	}

	// REST history sees all three, newest first.
	code, hist := restDo(t, http.MethodGet, base+"/v1/rooms/doors/messages", tok, nil)
	msgs, _ := hist["messages"].([]any)
	if code != http.StatusOK || len(msgs) != 3 || msgs[0].(map[string]any)["body"] != "from rest" {
		t.Fatalf("GET messages: %d %v", code, hist)
	}
}

// The REST event stream (NDJSON) follows a room live, as curl -N would.
func TestRESTEventStream(t *testing.T) {
	ts := startServer(t)
	ts.createRoom(t, "follow")
	tok := ts.token(t, "curl")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+ts.Addr()+"/v1/rooms/follow/events", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lines := bufio.NewScanner(resp.Body)
	next := func() map[string]any {
		t.Helper()
		if !lines.Scan() {
			t.Fatalf("event stream ended: %v", lines.Err())
		}
		var ev map[string]any
		if err := json.Unmarshal(lines.Bytes(), &ev); err != nil {
			t.Fatalf("event line %q: %v", lines.Text(), err)
		}
		return ev["result"].(map[string]any)
	}
	if _, ok := next()["joined"]; !ok {
		t.Fatal("first event is not the joined state")
	}
	c, cctx := ts.client(t, "sender")
	if _, err := c.SendMessage(cctx, &parleyv1.SendMessageRequest{Room: "follow", Body: "hello curl"}); err != nil {
		t.Fatal(err)
	}
	if m, _ := next()["message"].(map[string]any); m["body"] != "hello curl" {
		t.Fatalf("event stream got %v", m)
	}
}
