//go:build unix

package web_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The browser tests drive Debian's chromium with playwright-core (web/e2e)
// against the real parleyd. They skip, saying why, where chromium or
// web/node_modules is missing, unless PARLEY_REQUIRE_BROWSER=1 (CI), where
// that is a failure.

var (
	buildOnce sync.Once
	parleyd   string
	buildErr  error
	buildDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// parleydBinary builds cmd/parleyd once for the package's tests.
func parleydBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		if buildDir, buildErr = os.MkdirTemp("", "parley-web-test-"); buildErr != nil {
			return
		}
		parleyd = filepath.Join(buildDir, "parleyd")
		out, err := exec.Command("go", "build", "-o", parleyd, "github.com/parleychat/parley/cmd/parleyd").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build parleyd: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return parleyd
}

// needBrowser returns the chromium and node to use, or skips (fails under
// PARLEY_REQUIRE_BROWSER=1) when the browser test cannot run here.
func needBrowser(t *testing.T) (chromium, node string) {
	t.Helper()
	missing := func(why string) {
		if os.Getenv("PARLEY_REQUIRE_BROWSER") == "1" {
			t.Fatalf("PARLEY_REQUIRE_BROWSER=1, but %s", why)
		}
		t.Skipf("skipping the browser test: %s (set PARLEY_REQUIRE_BROWSER=1 to make this a failure)", why)
	}
	chromium = os.Getenv("PARLEY_CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	if _, err := os.Stat(chromium); err != nil {
		missing(chromium + " is missing (apt-get install chromium)")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		missing("node is not on PATH")
	}
	if _, err := os.Stat(filepath.Join("node_modules", "playwright-core", "package.json")); err != nil {
		missing("web/node_modules is missing (run npm ci in web/)")
	}
	return chromium, node
}

// TestBrowser runs web/e2e in Chromium: people chatting (presence, live
// messages, typing, reload, a cut connection and resume, history paging,
// private rooms and conversations a third person cannot see or join), the
// origin checks, and token sign-in on a server without --dev.
func TestBrowser(t *testing.T) {
	chromium, node := needBrowser(t)
	bin := parleydBinary(t)
	artifacts := os.Getenv("PARLEY_ARTIFACTS")
	if artifacts == "" {
		var err error
		if artifacts, err = os.MkdirTemp("", "parley-browser-"); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(artifacts, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots and server logs: %s", artifacts)

	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "--test", "--test-concurrency=1", "--test-reporter=spec",
		"e2e/chat.test.mjs", "e2e/events.test.mjs", "e2e/mobile.test.mjs", "e2e/origin.test.mjs", "e2e/ratelimit.test.mjs", "e2e/readstate.test.mjs", "e2e/roomlist.test.mjs", "e2e/token.test.mjs")
	cmd.Env = append(os.Environ(), "PARLEYD_BIN="+bin, "PARLEY_ARTIFACTS="+artifacts, "PARLEY_CHROMIUM="+chromium)
	// node, the browsers and the servers it starts share a process group, so
	// nothing outlives the test, even on a timeout.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	logFile, err := os.Create(filepath.Join(artifacts, "e2e-output.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	out := io.MultiWriter(t.Output(), logFile)
	cmd.Stdout, cmd.Stderr = out, out
	start := time.Now()
	err = cmd.Run()
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // stragglers, if any
	}
	t.Logf("browser tests took %v", time.Since(start).Round(time.Millisecond))
	if err != nil {
		t.Fatalf("browser tests failed (%v); screenshots and server logs in %s", err, artifacts)
	}
}

// TestServesApp checks how parleyd serves the embedded app: index.html
// revalidated on every load with a strict CSP, hashed assets cached for a
// year, and 404 for anything else.
func TestServesApp(t *testing.T) {
	base, _ := startParleyd(t, parleydBinary(t))
	get := func(method, path string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp, string(body)
	}
	resp, index := get("GET", "/")
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /: %s %q", resp.Status, resp.Header.Get("Content-Type"))
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "no-cache" {
		t.Errorf("GET /: Cache-Control %q, want no-cache", cc)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "connect-src 'self'") || !strings.Contains(csp, "script-src 'self'") {
		t.Errorf("GET /: Content-Security-Policy %q", csp)
	}
	assets := regexp.MustCompile(`/assets/app-[A-Z0-9]+\.(js|css)`).FindAllString(index, -1)
	if len(assets) != 2 {
		t.Fatalf("index.html names %d assets, want a script and a stylesheet:\n%s", len(assets), index)
	}
	for _, a := range assets {
		resp, body := get("GET", a)
		if resp.StatusCode != 200 || len(body) == 0 {
			t.Errorf("GET %s: %s, %d bytes", a, resp.Status, len(body))
		}
		if cc := resp.Header.Get("Cache-Control"); !strings.Contains(cc, "immutable") {
			t.Errorf("GET %s: Cache-Control %q, want a long immutable cache", a, cc)
		}
	}
	if resp, _ := get("GET", assets[0]); resp.Header.Get("ETag") == "" {
		t.Errorf("GET %s: no ETag", assets[0])
	}
	for _, p := range []string{"/nope", "/assets/", "/assets/app-XXXX.js", "/index.htm", "/rooms/lobby"} {
		if resp, _ := get("GET", p); resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %s, want 404", p, resp.Status)
		}
	}
	if resp, _ := get("POST", "/"); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /: %s, want 405", resp.Status)
	}
	if resp, body := get("HEAD", "/"); resp.StatusCode != 200 || body != "" {
		t.Errorf("HEAD /: %s, %d bytes", resp.Status, len(body))
	}
}

// startParleyd runs the binary with --dev on a free port, plus args, and
// returns its base URL once it logs "parleyd listening", and its stderr
// lines so far and to come; the test's cleanup stops it.
func startParleyd(t *testing.T, bin string, args ...string) (string, *logLines) {
	t.Helper()
	args = append([]string{"--dev", "--listen", "127.0.0.1:0", "--data-dir", t.TempDir(), "--log-format", "json"}, args...)
	cmd := exec.Command(bin, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := &logLines{}
	addrs := make(chan string, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines.add(sc.Text())
			var rec struct{ Msg, Addr string }
			if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Msg == "parleyd listening" {
				addrs <- rec.Addr
			}
		}
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		<-done
		_ = cmd.Wait()
	})
	select {
	case addr := <-addrs:
		return "http://" + addr, lines
	case <-done:
		t.Fatalf("parleyd exited before listening:\n%s", strings.Join(lines.all(), "\n"))
	case <-time.After(20 * time.Second):
		t.Fatal("parleyd did not log its address within 20s")
	}
	return "", nil
}

// logLines collects a process's log lines.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) add(line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, line)
}

func (l *logLines) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.lines)
}
