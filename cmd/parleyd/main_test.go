package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
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
	for _, want := range []string{"--listen", "-data-dir", "-dev", "-tls-cert", "PARLEY_", "parleyd token"} {
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
