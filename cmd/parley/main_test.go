package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	parleyv1 "github.com/parleychat/parley/gen/parley/v1"
	"github.com/parleychat/parley/server/app"
)

// waitTimeout bounds every wait on a condition in these tests.
const waitTimeout = 20 * time.Second

// TestMain lets a test run the real parley command in a child process (the
// test binary itself, re-executed with PARLEY_TEST_MAIN=1), so that
// parley chat can be driven through a pseudo-terminal or pipes.
func TestMain(m *testing.M) {
	if os.Getenv("PARLEY_TEST_MAIN") == "1" {
		main()
	}
	os.Exit(m.Run())
}

// startServer runs an in-process parleyd with a durable SQLite store in a
// temporary directory (or the store PARLEY_TEST_STORE names), shut down
// when the test ends.
func startServer(t testing.TB, mods ...func(*app.Config)) *app.Server {
	t.Helper()
	cfg := app.Config{
		Listen: "127.0.0.1:0", DataDir: t.TempDir(), Dev: true, ShutdownTimeout: 5 * time.Second,
		SendRate: -1, // the tests send in bursts; the per-user limit has its own tests
		Log:      slog.New(slog.NewTextHandler(io.Discard, nil)),
		Store:    os.Getenv("PARLEY_TEST_STORE"),
	}
	for _, m := range mods {
		m(&cfg)
	}
	s, err := app.Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("start server: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Shutdown(context.Background()); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return s
}

func mint(t testing.TB, s *app.Server, user string) string {
	t.Helper()
	tok, _, err := s.Keys.Mint(user, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// cliResult is what one in-process run of parley printed and returned.
type cliResult struct {
	code           int
	stdout, stderr string
}

// parley runs the command in-process against addr with the given token ("" for none).
func parley(t testing.TB, addr, token string, args ...string) cliResult {
	t.Helper()
	return parleyInput(t, addr, token, "", args...)
}

func parleyInput(t testing.TB, addr, token, stdin string, args ...string) cliResult {
	t.Helper()
	t.Setenv("PARLEY_TOKEN", token)
	t.Setenv("PARLEY_ADDR", addr)
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitTimeout)
	defer cancel()
	code := run(ctx, args, strings.NewReader(stdin), &out, &errOut)
	return cliResult{code: code, stdout: out.String(), stderr: errOut.String()}
}

// apiClient is a plain gRPC client of s, authenticated as user.
func apiClient(t testing.TB, s *app.Server, user string) (parleyv1.ChatServiceClient, context.Context) {
	t.Helper()
	conn, err := grpc.NewClient(s.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(1<<20), grpc.WithInitialConnWindowSize(1<<20))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return parleyv1.NewChatServiceClient(conn), metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+mint(t, s, user))
}

// waitFor polls cond until it holds, failing the test after waitTimeout.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not synchronisation
	}
}

// syncBuffer is a bytes.Buffer safe for one writer and polling readers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
