package load

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/parleychat/parley/cmd/parley/internal/cli"
	"github.com/parleychat/parley/server/app"
)

// runTimeout bounds one in-process run of a command in these tests.
const runTimeout = 40 * time.Second

// startServer runs an in-process parleyd with a durable SQLite store in a
// temporary directory (or the store PARLEY_TEST_STORE names), shut down
// when the test ends.
func startServer(t testing.TB, mods ...func(*app.Config)) *app.Server {
	t.Helper()
	cfg := app.Config{
		Listen: "127.0.0.1:0", DataDir: t.TempDir(), Dev: true, ShutdownTimeout: 5 * time.Second,
		SendRate: -1, // the load generator sends in bursts
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

// cliResult is what one in-process run of a command printed and returned.
type cliResult struct {
	code           int
	stdout, stderr string
}

// parley runs "parley <args>" in-process against addr with the given token
// ("" for none), as cmd/parley does: args[0] is bench or soak.
func parley(t testing.TB, addr, token string, args ...string) cliResult {
	t.Helper()
	commands := map[string]func(context.Context, *cli.Env, []string) error{"bench": Bench, "soak": Soak}
	run, ok := commands[args[0]]
	if !ok {
		t.Fatalf("no command %q", args[0])
	}
	t.Setenv("PARLEY_TOKEN", token)
	t.Setenv("PARLEY_ADDR", addr)
	var out, errOut bytes.Buffer
	e := &cli.Env{Globals: cli.NewGlobals(), Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errOut}
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	code := cli.Exit(&errOut, args[0], run(ctx, e, args[1:]))
	return cliResult{code: code, stdout: out.String(), stderr: errOut.String()}
}

// wantCode checks a run's exit status and that its stderr has each of
// stderrHas.
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
