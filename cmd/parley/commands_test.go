package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/cmd/parley/internal/cli"
	parleyv1 "github.com/parleychat/parley/gen/parley/v1"
	"github.com/parleychat/parley/server/app"
)

// decodeArray parses a JSON array of protobuf messages printed by --json.
func decodeArray[T proto.Message](t *testing.T, out string, newT func() T) []T {
	t.Helper()
	var raw []json.RawMessage
	if err := json.Unmarshal([]byte(out), &raw); err != nil {
		t.Fatalf("output is not a JSON array: %v\n%s", err, out)
	}
	res := make([]T, len(raw))
	for i, r := range raw {
		res[i] = newT()
		if err := protojson.Unmarshal(r, res[i]); err != nil {
			t.Fatalf("element %d: %v\n%s", i, err, r)
		}
	}
	return res
}

func decodeRooms(t *testing.T, out string) []*parleyv1.Room {
	return decodeArray(t, out, func() *parleyv1.Room { return new(parleyv1.Room) })
}

func decodeMessages(t *testing.T, out string) []*parleyv1.Message {
	return decodeArray(t, out, func() *parleyv1.Message { return new(parleyv1.Message) })
}

func decodeObject(t *testing.T, out string, m proto.Message) {
	t.Helper()
	if err := protojson.Unmarshal([]byte(out), m); err != nil {
		t.Fatalf("output is not a JSON %T: %v\n%s", m, err, out)
	}
}

func wantCode(t *testing.T, r cliResult, code int, stderrHas ...string) {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit status %d, want %d\nstdout: %s\nstderr: %s", r.code, code, r.stdout, r.stderr)
	}
	for _, s := range stderrHas {
		if !strings.Contains(r.stderr, s) {
			t.Errorf("stderr %q does not contain %q", r.stderr, s)
		}
	}
}

func TestTokenFromDevServer(t *testing.T) {
	s := startServer(t)
	r := parley(t, s.Addr(), "", "token", "alice")
	wantCode(t, r, cli.ExitOK)
	tok := strings.TrimSpace(r.stdout)
	if strings.Count(tok, ".") != 2 {
		t.Fatalf("token %q is not a JWT", tok)
	}
	// The token works: rooms lists lobby as alice.
	rooms := parley(t, s.Addr(), tok, "rooms", "--json")
	wantCode(t, rooms, cli.ExitOK)
	if got := decodeRooms(t, rooms.stdout); len(got) != 1 || got[0].GetName() != "lobby" {
		t.Fatalf("rooms = %v, want lobby", got)
	}

	r = parley(t, s.Addr(), "", "token", "--json", "bob")
	wantCode(t, r, cli.ExitOK)
	var resp parleyv1.DevLoginResponse
	decodeObject(t, r.stdout, &resp)
	if resp.GetToken() == "" || resp.GetExpiresAt() == nil {
		t.Fatalf("token --json = %v, want a token and its expiry", &resp)
	}
}

func TestTokenRefusedWithoutDev(t *testing.T) {
	s := startServer(t, func(c *app.Config) { c.Dev = false })
	r := parley(t, s.Addr(), "", "token", "alice")
	wantCode(t, r, cli.ExitFail, "PermissionDenied", "dev login is disabled")
	if r.stdout != "" {
		t.Errorf("stdout = %q, want nothing", r.stdout)
	}
}

func TestCreateSendHistoryRooms(t *testing.T) {
	s := startServer(t)
	tok := mint(t, s, "alice")

	r := parley(t, s.Addr(), tok, "create", "--json", "general")
	wantCode(t, r, cli.ExitOK)
	var room parleyv1.Room
	decodeObject(t, r.stdout, &room)
	if room.GetName() != "general" || room.GetVisibility() != parleyv1.RoomVisibility_ROOM_VISIBILITY_PUBLIC || room.GetCreatedBy() != "alice" {
		t.Fatalf("created %v", &room)
	}
	wantCode(t, parley(t, s.Addr(), tok, "create", "--private", "secret"), cli.ExitOK)

	r = parley(t, s.Addr(), tok, "send", "general", "hello", "world")
	wantCode(t, r, cli.ExitOK)
	if !strings.Contains(r.stdout, "seq 1") {
		t.Errorf("send printed %q, want seq 1", r.stdout)
	}
	r = parley(t, s.Addr(), tok, "send", "--json", "--client-msg-id", "m2", "general", "--", "-second")
	wantCode(t, r, cli.ExitOK)
	var msg parleyv1.Message
	decodeObject(t, r.stdout, &msg)
	if msg.GetSeq() != 2 || msg.GetBody() != "-second" || msg.GetSender() != "alice" || msg.GetClientMsgId() != "m2" {
		t.Fatalf("sent %v", &msg)
	}
	// A retry with the same client_msg_id returns the original message.
	r = parley(t, s.Addr(), tok, "send", "--json", "--client-msg-id", "m2", "general", "--", "-second")
	wantCode(t, r, cli.ExitOK)
	decodeObject(t, r.stdout, &msg)
	if msg.GetSeq() != 2 {
		t.Fatalf("retried send got seq %d, want the original 2", msg.GetSeq())
	}

	r = parley(t, s.Addr(), tok, "history", "general", "--json")
	wantCode(t, r, cli.ExitOK)
	msgs := decodeMessages(t, r.stdout)
	if len(msgs) != 2 || msgs[0].GetSeq() != 2 || msgs[1].GetBody() != "hello world" {
		t.Fatalf("history (newest first) = %v", msgs)
	}
	r = parley(t, s.Addr(), tok, "history", "--oldest-first", "--limit", "1", "--json", "general")
	wantCode(t, r, cli.ExitOK)
	if msgs := decodeMessages(t, r.stdout); len(msgs) != 1 || msgs[0].GetSeq() != 1 {
		t.Fatalf("history --oldest-first --limit 1 = %v", msgs)
	}
	r = parley(t, s.Addr(), tok, "history", "general")
	wantCode(t, r, cli.ExitOK)
	if lines := strings.Split(strings.TrimSpace(r.stdout), "\n"); len(lines) != 2 || !strings.Contains(lines[1], "alice: hello world") {
		t.Fatalf("history lines:\n%s", r.stdout)
	}

	r = parley(t, s.Addr(), tok, "rooms", "--json")
	wantCode(t, r, cli.ExitOK)
	rooms := decodeRooms(t, r.stdout)
	var names []string
	for _, rm := range rooms {
		names = append(names, rm.GetName())
		if rm.GetName() == "general" && rm.GetLastSeq() != 2 {
			t.Errorf("general last_seq = %d, want 2", rm.GetLastSeq())
		}
	}
	if strings.Join(names, ",") != "general,lobby,secret" {
		t.Errorf("alice's rooms = %v, want general, lobby, secret", names)
	}
	// bob does not see alice's private room.
	r = parley(t, s.Addr(), mint(t, s, "bob"), "rooms")
	wantCode(t, r, cli.ExitOK)
	if strings.Contains(r.stdout, "secret") || !strings.Contains(r.stdout, "general") {
		t.Errorf("bob's rooms table:\n%s", r.stdout)
	}
}

// History pages through more than one ListMessages page.
func TestHistoryPaging(t *testing.T) {
	s := startServer(t)
	tok := mint(t, s, "alice")
	api, ctx := apiClient(t, s, "alice")
	const n = 230
	for i := 1; i <= n; i++ {
		if _, err := api.SendMessage(ctx, &parleyv1.SendMessageRequest{Room: "lobby", Body: fmt.Sprint("m", i)}); err != nil {
			t.Fatal(err)
		}
	}
	r := parley(t, s.Addr(), tok, "history", "--all", "--oldest-first", "--json", "lobby")
	wantCode(t, r, cli.ExitOK)
	msgs := decodeMessages(t, r.stdout)
	if len(msgs) != n {
		t.Fatalf("history --all returned %d messages, want %d", len(msgs), n)
	}
	for i, m := range msgs {
		if m.GetSeq() != uint64(i+1) {
			t.Fatalf("message %d has seq %d", i, m.GetSeq())
		}
	}
	r = parley(t, s.Addr(), tok, "history", "--limit", "210", "--before", "200", "--json", "lobby")
	wantCode(t, r, cli.ExitOK)
	msgs = decodeMessages(t, r.stdout)
	if len(msgs) != 199 || msgs[0].GetSeq() != 199 || msgs[198].GetSeq() != 1 {
		t.Fatalf("history --before 200 --limit 210: %d messages, first %d", len(msgs), msgs[0].GetSeq())
	}
}

func TestCommandErrors(t *testing.T) {
	s := startServer(t)
	tok := mint(t, s, "alice")
	wantCode(t, parley(t, s.Addr(), tok, "history", "nowhere"), cli.ExitFail, "NotFound", `room "nowhere" does not exist`)
	wantCode(t, parley(t, s.Addr(), tok, "send", "nowhere", "hi"), cli.ExitFail, "NotFound")
	wantCode(t, parley(t, s.Addr(), tok, "create", "lobby"), cli.ExitFail, "AlreadyExists", `room "lobby" already exists`)
	wantCode(t, parley(t, s.Addr(), tok, "create", "Bad Name"), cli.ExitFail, "InvalidArgument", "must be 1-64 characters")
	wantCode(t, parley(t, s.Addr(), "not-a-token", "rooms"), cli.ExitFail, "Unauthenticated")
	wantCode(t, parley(t, s.Addr(), "", "rooms"), cli.ExitUsage, "no token")
	wantCode(t, parley(t, s.Addr(), tok, "send", "lobby"), cli.ExitUsage, "give a room and the text")
	wantCode(t, parley(t, s.Addr(), tok, "history", "--limit", "x", "lobby"), cli.ExitUsage, "invalid value")
	wantCode(t, parley(t, s.Addr(), tok, "frobnicate"), cli.ExitUsage, "unknown command")
	wantCode(t, parley(t, s.Addr(), tok), cli.ExitUsage, "Commands:")
	wantCode(t, parley(t, "127.0.0.1:1", tok, "rooms", "--timeout", "2s"), cli.ExitFail, "Unavailable")
	for _, c := range commands() {
		r := parley(t, s.Addr(), tok, c.name, "--help")
		wantCode(t, r, cli.ExitOK, "Usage: parley "+c.name, "-addr", "-token")
	}
	// Global flags before the command work too.
	wantCode(t, parley(t, "127.0.0.1:1", "", "--addr", s.Addr(), "--token", tok, "rooms"), cli.ExitOK)
}
