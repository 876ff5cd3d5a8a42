package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	_ "modernc.org/sqlite" // to fill the database behind parleyd's back

	parleyv1 "github.com/parleychat/parley/gen/parley/v1"
)

// The scenario of the report: random bytes over 8 KB in the middle of a
// parley.db with many rows. The real binary finds the damage at start,
// logs the file and what to do, answers /healthz 503 with the reason, and
// refuses sends with UNAVAILABLE instead of storing them.
func TestDamagedDatabaseReportedAtStart(t *testing.T) {
	d := startDaemon(t, "--default-room", "-")
	d.stop(t) // the schema is in place
	path := filepath.Join(d.dir, "parley.db")
	fillDatabase(t, path)
	overwriteMiddle(t, path, 8<<10)

	var logs lockedBuffer
	cmd := exec.Command(parleydBinary(t), "--listen", "127.0.0.1:0", "--data-dir", d.dir, "--log-format", "json")
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addr := listenAddr(t, &logs)

	l := logs.String()
	if !strings.Contains(l, "the database is damaged") || !strings.Contains(l, path) || !strings.Contains(l, "restore") {
		t.Fatalf("the log does not report the damage, the file and what to do:\n%s", l)
	}
	if code, text := getHealthz(t, addr); code != http.StatusServiceUnavailable || !strings.Contains(text, "database damaged") {
		t.Errorf("/healthz = %d %q, want 503 saying the database is damaged", code, text)
	}
	c := parleyv1.NewChatServiceClient(dialDaemon(t, addr))
	ctx, cancel := context.WithTimeout(bearer(context.Background(), d.token(t, "alice")), 10*time.Second)
	defer cancel()
	_, err := c.SendMessage(ctx, &parleyv1.SendMessageRequest{Room: "room-00", Body: "hello"})
	if st := status.Convert(err); st.Code() != codes.Unavailable || !strings.Contains(st.Message(), "damaged") {
		t.Errorf("send = %v, want UNAVAILABLE saying the database is damaged", err)
	}
}

// fillDatabase stores 40 rooms of 200 messages in the database at path.
func fillDatabase(t *testing.T, path string) {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	_, err = db.Exec(`
		WITH RECURSIVE r(i) AS (SELECT 0 UNION ALL SELECT i+1 FROM r WHERE i < 39)
		INSERT INTO rooms (name, visibility, created_by, created_at, last_seq, last_message_at) SELECT printf('room-%02d', i), 1, 'alice', 0, 200, 0 FROM r;
		WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i+1 FROM s WHERE i < 7999)
		INSERT INTO messages (room, seq, sender, body, sent_at, client_msg_id) SELECT printf('room-%02d', i/200), i%200+1, 'alice', hex(randomblob(200)), 0, '' FROM s;
		PRAGMA wal_checkpoint(TRUNCATE);`)
	if err != nil {
		t.Fatalf("fill the database: %v", err)
	}
}

// overwriteMiddle writes n random bytes over the middle of the file at path.
func overwriteMiddle(t *testing.T, path string, n int) {
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

// listenAddr waits for parleyd's JSON log to say where it listens.
func listenAddr(t *testing.T, logs *lockedBuffer) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		for _, line := range strings.Split(logs.String(), "\n") {
			var l struct{ Msg, Addr string }
			if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "parleyd listening" {
				return l.Addr
			}
		}
		time.Sleep(10 * time.Millisecond) // polling interval, not synchronisation
	}
	t.Fatalf("parleyd did not listen within 30s:\n%s", logs.String())
	return ""
}

// lockedBuffer collects a process's output for reading while it runs.
type lockedBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// A real full disk (a small tmpfs; needs root): sends answer UNAVAILABLE
// "the server's storage is full", /healthz stays 200 but says degraded;
// once space is freed sends are stored again, and nothing acknowledged was
// lost.
func TestFullDiskAtRunTime(t *testing.T) {
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a small tmpfs to fill (needs root): %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() })
	spare := filepath.Join(dir, "spare")
	if err := os.WriteFile(spare, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	d := &daemon{dir: filepath.Join(dir, "data"), addr: "127.0.0.1:0", args: []string{"--send-rate", "-1"}}
	d.start(t)
	t.Cleanup(func() { d.kill(t) }) // before the unmount
	c := parleyv1.NewChatServiceClient(dialDaemon(t, d.addr))
	ctx, cancel := context.WithTimeout(bearer(context.Background(), d.token(t, "alice")), time.Minute)
	defer cancel()
	body := strings.Repeat("z", 2000)
	acked := 0
	for ; ; acked++ {
		_, err := c.SendMessage(ctx, &parleyv1.SendMessageRequest{Room: "lobby", Body: body, ClientMsgId: fmt.Sprint(acked)})
		if err != nil {
			if st := status.Convert(err); st.Code() != codes.Unavailable || !strings.Contains(st.Message(), "the server's storage is full") {
				t.Fatalf("send on a full disk = %v, want UNAVAILABLE saying the storage is full", err)
			}
			break
		}
		if acked > 5000 {
			t.Fatal("the disk never filled up")
		}
	}
	if code, text := getHealthz(t, d.addr); code != http.StatusOK || !strings.Contains(text, "degraded") {
		t.Errorf("/healthz on a full disk = %d %q, want 200 degraded", code, text)
	}
	if err := os.Remove(spare); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SendMessage(ctx, &parleyv1.SendMessageRequest{Room: "lobby", Body: "after", ClientMsgId: "after"}); err != nil {
		t.Fatalf("send after space was freed: %v", err)
	}
	if code, text := getHealthz(t, d.addr); code != http.StatusOK || text != "ok\n" {
		t.Errorf("/healthz after space was freed = %d %q, want 200 ok", code, text)
	}
	msgs := history(t, c, ctx, "lobby")
	if len(msgs) != acked+1 {
		t.Fatalf("history holds %d messages, want the %d acknowledged and one more", len(msgs), acked)
	}
	for i, m := range msgs[:acked] {
		if m.GetSeq() != uint64(i+1) || m.GetClientMsgId() != fmt.Sprint(i) {
			t.Fatalf("message %d: seq %d id %q, want seq %d id %d", i, m.GetSeq(), m.GetClientMsgId(), i+1, i)
		}
	}
}

func getHealthz(t *testing.T, addr string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}
