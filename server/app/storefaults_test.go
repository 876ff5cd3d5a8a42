package app_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	parleyv1 "github.com/parleychat/parley/gen/parley/v1"
	"github.com/parleychat/parley/server/app"
	"github.com/parleychat/parley/server/internal/store"
	"github.com/parleychat/parley/server/internal/store/sqlite"
)

// needSQLite skips tests of the embedded store's file when the suite runs
// on another store.
func needSQLite(t *testing.T) {
	if testStore() != "sqlite" {
		t.Skip("needs the sqlite store")
	}
}

// damagedDataDir returns a data directory whose parley.db holds 40 rooms of
// 200 messages each, with random bytes written over 8 KB in its middle.
func damagedDataDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "parley.db")
	st, err := sqlite.Open(context.Background(), sqlite.Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	body := strings.Repeat("x", 400)
	for r := range 40 {
		room := fmt.Sprintf("room-%02d", r)
		if _, err := st.CreateRoom(ctx, store.Room{Name: room, Visibility: store.Public, CreatedBy: "alice"}); err != nil {
			t.Fatal(err)
		}
		waits := make([]func() (store.Message, bool, error), 200)
		for i := range waits {
			waits[i] = st.StartAppend(ctx, store.NewMessage{Room: room, Sender: "alice", Body: body})
		}
		for _, w := range waits {
			if _, _, err := w(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	writeJunk(t, path, 8<<10)
	return dir
}

// writeJunk writes n random bytes over the middle of the file at path.
func writeJunk(t *testing.T, path string, n int) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	junk := make([]byte, n)
	rand.Read(junk)
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(junk, fi.Size()/2); err != nil {
		t.Fatal(err)
	}
}

// logTo sends a server's logs to buf.
func logTo(buf *syncBuffer) func(*app.Config) {
	return func(c *app.Config) { c.Log = slog.New(slog.NewTextHandler(buf, nil)) }
}

// healthz returns /healthz's status code and body.
func healthz(t *testing.T, addr string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// grpcHealth returns the ChatService's gRPC health status.
func grpcHealth(t *testing.T, ts *testServer) healthpb.HealthCheckResponse_ServingStatus {
	t.Helper()
	h, err := healthpb.NewHealthClient(ts.dial(t)).Check(context.Background(), &healthpb.HealthCheckRequest{Service: "parley.v1.ChatService"})
	if err != nil {
		t.Fatal(err)
	}
	return h.GetStatus()
}

// checkStorageStatus checks that err is UNAVAILABLE with the ErrorInfo
// reason and a message containing phrase.
func checkStorageStatus(t *testing.T, what string, err error, reason, phrase string) {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != codes.Unavailable || !strings.Contains(st.Message(), phrase) {
		t.Fatalf("%s: %v, want UNAVAILABLE saying %q", what, err, phrase)
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetReason() == reason {
			return
		}
	}
	t.Fatalf("%s: %v has no ErrorInfo with reason %s", what, err, reason)
}

// TestDamagedDatabaseFoundAtStart: parleyd on a damaged parley.db finds
// the damage at start, logs the file and what to do, reports NOT_SERVING
// (gRPC health, /healthz, /metrics), refuses sends with UNAVAILABLE, and
// answers no read with INTERNAL.
func TestDamagedDatabaseFoundAtStart(t *testing.T) {
	needSQLite(t)
	dir := damagedDataDir(t)
	var logs syncBuffer
	ts := startServer(t, logTo(&logs), func(c *app.Config) { c.DataDir = dir })
	path := filepath.Join(dir, "parley.db")
	if l := logs.String(); !strings.Contains(l, "the database is damaged") || !strings.Contains(l, path) || !strings.Contains(l, "restore") {
		t.Fatalf("the log does not report the damage, the file and what to do:\n%s", l)
	}
	if got := grpcHealth(t, ts); got != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("gRPC health = %v, want NOT_SERVING", got)
	}
	if code, body := healthz(t, ts.Addr()); code != http.StatusServiceUnavailable || !strings.Contains(body, "database damaged") {
		t.Errorf("/healthz = %d %q, want 503 saying the database is damaged", code, body)
	}
	if got := scrape(t, ts.Addr())["parley_store_damaged"]; got != 1 {
		t.Errorf("parley_store_damaged = %v, want 1", got)
	}
	c, ctx := ts.client(t, "bob")
	_, err := c.SendMessage(ctx, &parleyv1.SendMessageRequest{Room: "room-00", Body: "hello"})
	checkStorageStatus(t, "send", err, "STORAGE_DAMAGED", "damaged")
	checkReads(t, c, ctx)
}

// checkReads reads every room: each read succeeds or is UNAVAILABLE for
// the damage, never INTERNAL.
func checkReads(t *testing.T, c parleyv1.ChatServiceClient, ctx context.Context) (damaged int) {
	t.Helper()
	_, err := c.ListRooms(ctx, &parleyv1.ListRoomsRequest{})
	if err != nil {
		checkStorageStatus(t, "ListRooms", err, "STORAGE_DAMAGED", "damaged")
		damaged++
	}
	for r := range 40 {
		_, err := c.ListMessages(ctx, &parleyv1.ListMessagesRequest{Room: fmt.Sprintf("room-%02d", r), Limit: 200})
		if err != nil {
			checkStorageStatus(t, "ListMessages", err, "STORAGE_DAMAGED", "damaged")
			damaged++
		}
	}
	return damaged
}

// TestDamageFoundAtRunTime: with the check at start turned off, the first
// read that meets the damage flips health to NOT_SERVING and logs it once;
// from then on sends are refused.
func TestDamageFoundAtRunTime(t *testing.T) {
	needSQLite(t)
	dir := damagedDataDir(t)
	var logs syncBuffer
	ts := startServer(t, logTo(&logs), func(c *app.Config) { c.DataDir = dir; c.DBCheckTimeout = -1 })
	if got := grpcHealth(t, ts); got != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("gRPC health before any read = %v, want SERVING", got)
	}
	c, ctx := ts.client(t, "bob")
	if _, err := c.SendMessage(ctx, &parleyv1.SendMessageRequest{Room: "room-00", Body: "before"}); err != nil {
		t.Fatalf("send before the damage is found: %v", err)
	}
	if damaged := checkReads(t, c, ctx) + checkReads(t, c, ctx); damaged == 0 {
		t.Fatal("no read met the damage")
	}
	if got := grpcHealth(t, ts); got != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("gRPC health after the damage = %v, want NOT_SERVING", got)
	}
	if code, _ := healthz(t, ts.Addr()); code != http.StatusServiceUnavailable {
		t.Errorf("/healthz = %d, want 503", code)
	}
	if n := strings.Count(logs.String(), "the database is damaged"); n != 1 {
		t.Errorf("the damage was logged %d times, want once:\n%s", n, logs.String())
	}
	_, err := c.SendMessage(ctx, &parleyv1.SendMessageRequest{Room: "room-00", Body: "after"})
	checkStorageStatus(t, "send after the damage", err, "STORAGE_DAMAGED", "damaged")
}

// TestFullStorage fills the database to its limit (SQLITE_FULL, as on a
// full disk): sends answer UNAVAILABLE "the server's storage is full" on
// every front door, the episode is logged once and shown in /healthz
// (degraded, still 200) and /metrics; once space is freed sends succeed,
// the recovery is logged, and every acknowledged message is in history.
func TestFullStorage(t *testing.T) {
	needSQLite(t)
	var logs syncBuffer
	ts := startServer(t, logTo(&logs), func(c *app.Config) { c.SQLite.MaxBytes = 512 << 10 })
	ts.createRoom(t, "filler")
	ts.createRoom(t, "chat")
	c, ctx := ts.client(t, "alice")
	body := strings.Repeat("y", 2000)
	for range 50 { // half the limit: the sends to "chat" fill the rest
		if _, err := c.SendMessage(ctx, &parleyv1.SendMessageRequest{Room: "filler", Body: body}); err != nil {
			t.Fatalf("filler: %v", err)
		}
	}
	acked := 0
	for ; ; acked++ {
		_, err := c.SendMessage(ctx, &parleyv1.SendMessageRequest{Room: "chat", Body: body, ClientMsgId: fmt.Sprint(acked)})
		if err != nil {
			checkStorageStatus(t, "send on full storage", err, "STORAGE_FULL", "the server's storage is full")
			break
		}
		if acked > 10000 {
			t.Fatal("the storage never filled up")
		}
	}
	js := openJoin(t, ts.dial(t), ts.token(t, "alice"))
	js.join("chat", nil)
	if r := js.post("chat", body, "join-send"); codes.Code(r.GetCode()) != codes.Unavailable || !strings.Contains(r.GetError(), "storage is full") {
		t.Errorf("Join send on full storage: %s %q, want UNAVAILABLE saying the storage is full", codes.Code(r.GetCode()), r.GetError())
	}
	if n := strings.Count(logs.String(), "storage is full"); n != 1 {
		t.Errorf("the full storage was logged %d times, want once:\n%s", n, logs.String())
	}
	if code, text := healthz(t, ts.Addr()); code != http.StatusOK || !strings.Contains(text, "degraded: the server's storage is full") {
		t.Errorf("/healthz = %d %q, want 200 saying degraded, storage full", code, text)
	}
	if got := grpcHealth(t, ts); got != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("gRPC health = %v, want SERVING (degraded)", got)
	}
	if got := scrape(t, ts.Addr())["parley_store_full"]; got != 1 {
		t.Errorf("parley_store_full = %v, want 1", got)
	}

	freeSpace(t, filepath.Join(ts.cfg.DataDir, "parley.db"))
	if _, err := c.SendMessage(ctx, &parleyv1.SendMessageRequest{Room: "chat", Body: body, ClientMsgId: "after"}); err != nil {
		t.Fatalf("send after space was freed: %v", err)
	}
	if !strings.Contains(logs.String(), "storage writable again") {
		t.Errorf("the recovery was not logged:\n%s", logs.String())
	}
	if code, text := healthz(t, ts.Addr()); code != http.StatusOK || text != "ok\n" {
		t.Errorf("/healthz after recovery = %d %q, want 200 ok", code, text)
	}
	if got := scrape(t, ts.Addr())["parley_store_full"]; got != 0 {
		t.Errorf("parley_store_full after recovery = %v, want 0", got)
	}
	checkHistory(t, c, ctx, acked)
}

// freeSpace deletes the filler room's messages through a connection of
// its own, as an operator freeing space would; SQLite reuses the pages.
func freeSpace(t *testing.T, path string) {
	t.Helper()
	db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec("DELETE FROM messages WHERE room = 'filler'"); err != nil {
		t.Fatalf("free space: %v", err)
	}
}

// checkHistory checks that room chat holds the acked messages with ids 0
// to acked-1, then the one with id "after", at seqs 1 to acked+1.
func checkHistory(t *testing.T, c parleyv1.ChatServiceClient, ctx context.Context, acked int) {
	t.Helper()
	resp, err := c.ListMessages(ctx, &parleyv1.ListMessagesRequest{Room: "chat", Limit: 200, Order: parleyv1.MessageOrder_MESSAGE_ORDER_OLDEST_FIRST})
	if err != nil {
		t.Fatal(err)
	}
	msgs := resp.GetMessages()
	if len(msgs) != acked+1 {
		t.Fatalf("history holds %d messages, want the %d acknowledged and one more", len(msgs), acked)
	}
	for i, m := range msgs {
		want := fmt.Sprint(i)
		if i == acked {
			want = "after"
		}
		if m.GetSeq() != uint64(i+1) || m.GetClientMsgId() != want {
			t.Fatalf("message %d: seq %d id %q, want seq %d id %q", i, m.GetSeq(), m.GetClientMsgId(), i+1, want)
		}
	}
}

// TestInternalErrorIsLogged: an error nobody expected (here a table
// dropped behind the server's back) answers INTERNAL "internal error", and
// the server logs each such answer once, with the method and the cause,
// and without the caller's token.
func TestInternalErrorIsLogged(t *testing.T) {
	needSQLite(t)
	var logs syncBuffer
	ts := startServer(t, logTo(&logs))
	c, ctx := ts.client(t, "alice")
	if _, err := c.CreateRoom(ctx, &parleyv1.CreateRoomRequest{Name: "secret", Visibility: parleyv1.RoomVisibility_ROOM_VISIBILITY_PRIVATE}); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", filepath.Join(ts.cfg.DataDir, "parley.db")+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec("DROP TABLE members"); err != nil {
		t.Fatal(err)
	}

	_, err = c.ListMessages(ctx, &parleyv1.ListMessagesRequest{Room: "secret"})
	if st := status.Convert(err); st.Code() != codes.Internal || st.Message() != "internal error" {
		t.Fatalf("ListMessages = %v, want INTERNAL internal error", err)
	}
	tok := ts.token(t, "alice")
	js := openJoin(t, ts.dial(t), tok)
	ref := js.send(&parleyv1.JoinRequest{Frame: &parleyv1.JoinRequest_Join{Join: &parleyv1.JoinRequest_JoinRoom{Room: "secret"}}})
	if r := js.reply(ref); codes.Code(r.GetCode()) != codes.Internal {
		t.Fatalf("join reply = %s %q, want INTERNAL", codes.Code(r.GetCode()), r.GetError())
	}
	l := logs.String()
	for _, method := range []string{"/parley.v1.ChatService/ListMessages", "/parley.v1.ChatService/Join"} {
		lines := 0
		for _, line := range strings.Split(l, "\n") {
			if strings.Contains(line, "answered INTERNAL") && strings.Contains(line, method) {
				lines++
				if !strings.Contains(line, "no such table: members") {
					t.Errorf("the log line does not name the cause: %s", line)
				}
			}
		}
		if lines != 1 {
			t.Errorf("%d log lines for the INTERNAL answer to %s, want 1:\n%s", lines, method, l)
		}
	}
	if strings.Contains(l, tok[:40]) {
		t.Errorf("the log holds the token:\n%s", l)
	}
}
