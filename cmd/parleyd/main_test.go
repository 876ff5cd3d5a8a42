package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	parleyv1 "github.com/parleychat/parley/gen/parley/v1"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// parleydBinary builds the real binary once for the package's tests.
func parleydBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "parleyd-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "parleyd")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = err
			t.Logf("go build: %s", out)
		}
	})
	if buildErr != nil {
		t.Fatalf("build parleyd: %v", buildErr)
	}
	return binPath
}

// daemon is a running parleyd process.
type daemon struct {
	cmd  *exec.Cmd
	addr string
	dir  string
	args []string
	exit chan struct{} // closed when the process has exited
	err  error         // its exit status, read after exit is closed
}

// startDaemon runs parleyd on a free loopback port with a new data
// directory and waits until it logs the address it listens on.
func startDaemon(t *testing.T, args ...string) *daemon {
	t.Helper()
	d := &daemon{dir: t.TempDir(), addr: "127.0.0.1:0", args: args}
	d.start(t)
	return d
}

// start runs the process on d.addr and d.dir; once it listens, d.addr is
// its concrete address, so a restart comes back on the same port.
func (d *daemon) start(t *testing.T) {
	t.Helper()
	d.exit = make(chan struct{})
	args := append([]string{"--listen", d.addr, "--data-dir", d.dir, "--log-format", "json"}, d.args...)
	cmd := exec.Command(parleydBinary(t), args...)
	d.cmd = cmd
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exit := d.exit
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exit
	})
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var line struct{ Msg, Addr string }
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "parleyd listening" {
				addr <- line.Addr
			}
		}
		io.Copy(io.Discard, stderr)
		d.err = cmd.Wait()
		close(exit)
	}()
	select {
	case d.addr = <-addr:
	case <-exit:
		t.Fatalf("parleyd exited before listening: %v", d.err)
	case <-time.After(30 * time.Second):
		t.Fatal("parleyd did not start listening within 30s")
	}
}

// kill ends the process with SIGKILL and waits for it to be gone.
func (d *daemon) kill(t *testing.T) {
	t.Helper()
	d.cmd.Process.Kill()
	<-d.exit
}

// stop ends the process with SIGTERM and waits for a clean exit.
func (d *daemon) stop(t *testing.T) {
	t.Helper()
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exit:
		if d.err != nil {
			t.Fatalf("parleyd exited with %v after SIGTERM", d.err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("parleyd did not exit within 15s of SIGTERM")
	}
}

func (d *daemon) token(t *testing.T, user string) string {
	t.Helper()
	out, err := exec.Command(parleydBinary(t), "token", "--data-dir", d.dir, user).Output()
	if err != nil {
		t.Fatalf("parleyd token: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// SIGTERM ends open streams with UNAVAILABLE and the process exits cleanly
// well within the shutdown deadline, even with a reflection stream open (as
// grpcurl leaves one).
func TestGracefulShutdownEndsStreamsAndExits(t *testing.T) {
	d := startDaemon(t, "--shutdown-timeout", "20s")
	conn, err := grpc.NewClient(d.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+d.token(t, "alice"))
	stream, err := parleyv1.NewChatServiceClient(conn).Join(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&parleyv1.JoinRequest{Ref: "1", Frame: &parleyv1.JoinRequest_Join{Join: &parleyv1.JoinRequest_JoinRoom{Room: "lobby"}}}); err != nil {
		t.Fatal(err)
	}
	for joined := false; !joined; {
		ev, err := stream.Recv()
		if err != nil {
			t.Fatalf("before shutdown: %v", err)
		}
		joined = ev.GetJoined() != nil
	}

	refl, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := refl.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	if _, err := refl.Recv(); err != nil {
		t.Fatalf("reflection: %v", err)
	}

	start := time.Now()
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	var endErr error
	for endErr == nil {
		_, endErr = stream.Recv()
	}
	if st := status.Convert(endErr); st.Code() != codes.Unavailable || !strings.Contains(st.Message(), "shutting down") {
		t.Fatalf("stream ended with %v, want UNAVAILABLE (shutting down)", st)
	}
	select {
	case <-d.exit:
		if d.err != nil {
			t.Fatalf("parleyd exited with %v, want 0", d.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("parleyd still running 5s after SIGTERM; open streams hold up shutdown")
	}
	t.Logf("stream ended and process exited %v after SIGTERM", time.Since(start).Round(time.Millisecond))
}

func TestHelpExplainsFlags(t *testing.T) {
	out, err := exec.Command(parleydBinary(t), "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("--help: %v\n%s", err, out)
	}
	for _, want := range []string{"--listen", "-data-dir", "-dev", "-tls-cert", "PARLEY_", "parleyd token",
		"-max-header-bytes int", "(default 32768)", "-keepalive-time duration", "(default 20s)", "-keepalive-timeout duration"} {
		if !strings.Contains(string(out), strings.TrimLeft(want, "-")) {
			t.Errorf("--help does not mention %s", want)
		}
	}
}

func TestBadFlagValueFailsClearly(t *testing.T) {
	out, err := exec.Command(parleydBinary(t), "--store", "cassandra", "--data-dir", t.TempDir()).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "cassandra") {
		t.Fatalf("--store cassandra: err %v, output %s", err, out)
	}
}

func TestEnvironmentSetsFlags(t *testing.T) {
	cmd := exec.Command(parleydBinary(t), "--data-dir", t.TempDir())
	cmd.Env = append(os.Environ(), "PARLEY_STORE=cassandra")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "cassandra") {
		t.Fatalf("PARLEY_STORE=cassandra: err %v, output %s", err, out)
	}
}

// A data directory that cannot be used stops parleyd at start with a clear
// error and a non-zero exit.
func TestUnusableDataDirFailsAtStart(t *testing.T) {
	file := filepath.Join(t.TempDir(), "not-a-dir")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, dir := range map[string]string{
		"a regular file":             file,
		"below a regular file":       filepath.Join(file, "data"),
		"on a read-only file system": "/proc/parley-data",
	} {
		cmd := exec.Command(parleydBinary(t), "--data-dir", dir, "--listen", "127.0.0.1:0")
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() == 0 {
			t.Fatalf("%s: parleyd exited with %v, want a non-zero exit; output:\n%s", name, err, out)
		}
		if !strings.Contains(string(out), "parleyd:") || !strings.Contains(string(out), dir) {
			t.Errorf("%s: output does not name the problem and the path:\n%s", name, out)
		}
	}
}

// --dev hands out tokens to anyone, so it refuses a non-loopback address
// unless told otherwise.
func TestDevRefusesRemoteListen(t *testing.T) {
	out, err := exec.Command(parleydBinary(t), "--dev", "--listen", "0.0.0.0:0", "--data-dir", t.TempDir()).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "--dev-allow-remote") {
		t.Fatalf("--dev on 0.0.0.0: err %v, output %s", err, out)
	}
}

// A data directory on a full disk stops parleyd at start with a clear error,
// and leaves no half-written key behind.
func TestFullDiskFailsAtStart(t *testing.T) {
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a small tmpfs to fill (needs root): %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() })
	if f, err := os.Create(filepath.Join(dir, "fill")); err == nil {
		f.Write(make([]byte, 128<<10)) // fails part way: the disk is now full
		f.Close()
	}
	data := filepath.Join(dir, "data")
	out, err := exec.Command(parleydBinary(t), "--data-dir", data, "--listen", "127.0.0.1:0").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "no space left on device") {
		t.Fatalf("parleyd on a full disk: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(data, "token-hs256.key")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a partial signing key was left behind: %v", err)
	}
}

// Flags may follow the user name, as in most command-line tools; "--" ends
// the flags.
func TestParseInterspersedFlags(t *testing.T) {
	for _, tc := range []struct {
		args          []string
		dataDir, ttl  string
		wantPositions []string
	}{
		{[]string{"bob", "--data-dir", "d"}, "d", "24h0m0s", []string{"bob"}},
		{[]string{"--data-dir", "d", "bob"}, "d", "24h0m0s", []string{"bob"}},
		{[]string{"--expiry", "1h", "bob", "--data-dir=d"}, "d", "1h0m0s", []string{"bob"}},
		{[]string{"bob", "alice", "-expiry", "2h"}, "data", "2h0m0s", []string{"bob", "alice"}},
		{[]string{"--data-dir", "d", "--", "-bob", "--expiry", "1h"}, "d", "24h0m0s", []string{"-bob", "--expiry", "1h"}},
		{[]string{"bob", "--", "--data-dir"}, "data", "24h0m0s", []string{"bob", "--data-dir"}},
	} {
		fs := flag.NewFlagSet("test", flag.ContinueOnError)
		dataDir := fs.String("data-dir", "data", "")
		ttl := fs.Duration("expiry", 24*time.Hour, "")
		if err := parseInterspersed(fs, tc.args); err != nil {
			t.Errorf("%q: %v", tc.args, err)
			continue
		}
		if *dataDir != tc.dataDir || ttl.String() != tc.ttl || !slices.Equal(fs.Args(), tc.wantPositions) {
			t.Errorf("%q: data-dir %q, expiry %v, args %q; want %q, %s, %q", tc.args, *dataDir, ttl, fs.Args(), tc.dataDir, tc.ttl, tc.wantPositions)
		}
	}
}

// parleyd token bob --data-dir DIR mints a token the server accepts.
func TestTokenFlagsAfterUser(t *testing.T) {
	d := startDaemon(t)
	out, err := exec.Command(parleydBinary(t), "token", "bob", "--data-dir", d.dir, "--expiry", "1h").CombinedOutput()
	if err != nil {
		t.Fatalf("parleyd token bob --data-dir DIR: %v\n%s", err, out)
	}
	if err := listRooms(t, d.addr, strings.TrimSpace(string(out))); err != nil {
		t.Fatalf("the server refused the token: %v", err)
	}
}

// listRooms calls ListRooms on addr with token.
func listRooms(t *testing.T, addr, token string) error {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	_, err = parleyv1.NewChatServiceClient(conn).ListRooms(ctx, &parleyv1.ListRoomsRequest{})
	return err
}

// parleyd token in a directory with no data directory creates no key: it
// says where it looked and fails.
func TestTokenWithoutKeyFails(t *testing.T) {
	wd := t.TempDir()
	cmd := exec.Command(parleydBinary(t), "token", "bob")
	cmd.Dir = wd
	cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "PARLEY_") })
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() == 0 {
		t.Fatalf("parleyd token with no key: %v, want a non-zero exit; output:\n%s", err, out)
	}
	path := filepath.Join(wd, "data", "token-hs256.key")
	if !strings.Contains(string(out), "no signing key") || !strings.Contains(string(out), path) || !strings.Contains(string(out), "--data-dir") {
		t.Errorf("output does not say that there is no key at %s and what to do:\n%s", path, out)
	}
	if entries, _ := os.ReadDir(wd); len(entries) != 0 {
		t.Errorf("parleyd token created %v in its working directory", entries)
	}
}

// A token signed with another data directory's key is refused with a
// message naming that key's kid and where to look, never the server's kid.
func TestTokenFromAnotherDataDirIsExplained(t *testing.T) {
	d := startDaemon(t)
	other := t.TempDir()
	otherKey := bytes.Repeat([]byte{'o'}, 32)
	if err := os.WriteFile(filepath.Join(other, "token-hs256.key"), otherKey, 0o600); err != nil {
		t.Fatal(err)
	}
	serverKey, err := os.ReadFile(filepath.Join(d.dir, "token-hs256.key"))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := exec.Command(parleydBinary(t), "token", "--data-dir", other, "bob").Output()
	if err != nil {
		t.Fatalf("parleyd token: %v", err)
	}
	st := status.Convert(listRooms(t, d.addr, strings.TrimSpace(string(tok))))
	msg := st.Message()
	if st.Code() != codes.Unauthenticated || !strings.Contains(msg, "another key") ||
		!strings.Contains(msg, kid(otherKey)) || !strings.Contains(msg, "--data-dir") {
		t.Fatalf("got %v; want UNAUTHENTICATED saying the token's key (kid %s) is another and to check --data-dir", st, kid(otherKey))
	}
	if strings.Contains(msg, kid(serverKey)) {
		t.Fatalf("the refusal %q reveals the server's kid", msg)
	}
}

// kid is the key id parleyd gives a secret: SHA-256's first 8 bytes in hex.
func kid(secret []byte) string {
	sum := sha256.Sum256(secret)
	return hex.EncodeToString(sum[:8])
}

// A stray argument is not silently ignored by the server.
func TestServeRefusesArguments(t *testing.T) {
	out, err := exec.Command(parleydBinary(t), "--data-dir", t.TempDir(), "--listen", "127.0.0.1:0", "tokn").CombinedOutput()
	if err == nil || !strings.Contains(string(out), `unexpected argument "tokn"`) {
		t.Fatalf("parleyd tokn: err %v, output %s", err, out)
	}
}

// A port that is taken gets a hint to choose another with --listen.
func TestPortInUseSuggestsListen(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	out, err := exec.Command(parleydBinary(t), "--data-dir", t.TempDir(), "--listen", ln.Addr().String()).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "address already in use") || !strings.Contains(string(out), "--listen") {
		t.Fatalf("parleyd on a taken port: err %v, output %s", err, out)
	}
}
