// Package examples_test runs the example clients in examples/go,
// examples/node and examples/python against a real parleyd.
package examples_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Each client sends sendN messages after joining, then, after the test cut
// every connection, lineN lines from its standard input.
const (
	sendN = 10
	lineN = 3
	room  = "examples"
)

// example is one client to run: how to start it and who it is.
type example struct {
	lang   string // go, node, python
	user   string // the token's user
	client string // its default client name, shown in presence
	dir    string // working directory
	argv   []string
	env    []string
}

// TestExamples starts parleyd, and the Go, Node and Python examples in one
// room through a proxy. Each sends sendN messages and waits for everyone's;
// then the proxy cuts every connection, the test stores testEntries (an
// edit, a reaction added and taken back, a reply and a delete) over REST
// and types lineN lines into each client, which reconnect, resume after the
// last seq they printed and resend what was not acknowledged. Each must
// print every entry once, in seq order from 1 with no gap (every example's
// sendN+lineN messages and the test's entries), in the same order as the
// others, and must have seen the others in presence. An
// example whose tools are missing is a skipped subtest with its own
// reason, and the others run without it.
func TestExamples(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping the example clients")
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	langs := availableLanguages(t, root)
	start := time.Now()
	tmp := t.TempDir()
	examples := prepare(t, root, tmp, langs)
	t.Logf("built parleyd and the examples in %v", time.Since(start).Round(time.Millisecond))

	addr := startParleyd(t, filepath.Join(tmp, "parleyd"), filepath.Join(tmp, "data"))
	tokens := map[string]string{}
	for _, ex := range examples {
		tokens[ex.user] = devLogin(t, addr, ex.user)
	}
	createRoom(t, addr, tokens[examples[0].user], room)
	px := startProxy(t, addr)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	total := len(examples)*(sendN+lineN) + 1 // and the test's reply
	events := make(chan clientEvent, 1024)
	runs := make([]*run, len(examples))
	for i, ex := range examples {
		args := append(slices.Clone(ex.argv), "--addr", px.addr(), "--room", room, "--after", "0",
			"--send", fmt.Sprint(sendN), "--expect", fmt.Sprint(total), "--json")
		runs[i] = startClient(ctx, t, i, ex, args, tokens[ex.user], events)
	}
	phase := time.Now()

	// Phase 1: everyone has everyone's first sendN messages.
	collect(ctx, t, runs, events, func() bool {
		for _, r := range runs {
			if len(r.messages()) < len(runs)*sendN {
				return false
			}
		}
		return true
	})
	t.Logf("phase 1: %d messages each in %v", len(runs)*sendN, time.Since(phase).Round(time.Millisecond))
	phase = time.Now()

	// Phase 2: cut every connection; while the clients reconnect, edit,
	// react to, reply to and delete messages over REST; type lines, and
	// wait for everyone to finish.
	if n := px.cut(); n < len(runs) {
		t.Fatalf("cut %d connections; want at least one per client (%d)", n, len(runs))
	}
	changeMessages(t, addr, tokens, runs[0].messages(), examples[0].user)
	for _, r := range runs {
		for j := 1; j <= lineN; j++ {
			fmt.Fprintf(r.stdin, "%s line %d\n", r.ex.client, j)
		}
		r.stdin.Close()
	}
	collect(ctx, t, runs, events, func() bool {
		for _, r := range runs {
			if !r.eof {
				return false
			}
		}
		return true
	})
	for _, r := range runs {
		if err := r.cmd.Wait(); err != nil {
			t.Errorf("%s example: %v\nstderr:\n%s", r.ex.lang, err, r.stderr.String())
		}
	}
	t.Logf("phase 2: cut, reconnected and finished in %v", time.Since(phase).Round(time.Millisecond))

	want := expectedMessages(examples)
	var reference []event
	for _, r := range runs {
		t.Run(r.ex.lang, func(t *testing.T) {
			checkRun(t, r, examples, want)
			if reference == nil {
				reference = r.entries()
			} else if !sameOrder(reference, r.entries()) {
				t.Errorf("%s example saw entries in another order than the %s example", r.ex.lang, runs[0].ex.lang)
			}
		})
	}
	if t.Failed() {
		for _, r := range runs {
			t.Logf("%s example output:\n%s\nstderr:\n%s", r.ex.lang, r.stdout.String(), r.stderr.String())
		}
	}
}

// availableLanguages returns the examples that can run here: go always,
// node and python when their tools are installed. Each missing one is a
// skipped subtest with its own reason, or, with PARLEY_REQUIRE_EXAMPLES=1,
// fails the test.
func availableLanguages(t *testing.T, root string) []string {
	var langs, failures []string
	for _, lang := range []string{"go", "node", "python"} {
		missing := missingTools(root, lang)
		if len(missing) == 0 {
			langs = append(langs, lang)
			continue
		}
		msg := "the " + lang + " example needs: " + strings.Join(missing, "; ") + " (see examples/README.md)"
		if os.Getenv("PARLEY_REQUIRE_EXAMPLES") == "1" {
			failures = append(failures, msg)
			continue
		}
		t.Run(lang, func(t *testing.T) {
			t.Skip("skipping: " + msg + "; set PARLEY_REQUIRE_EXAMPLES=1 to fail instead")
		})
	}
	if len(failures) > 0 {
		t.Fatal(strings.Join(failures, "\n") + "\nPARLEY_REQUIRE_EXAMPLES=1 makes this a failure")
	}
	return langs
}

// missingTools lists what the example in lang needs and is not installed.
func missingTools(root, lang string) []string {
	var missing []string
	switch lang {
	case "node":
		if _, err := exec.LookPath("node"); err != nil {
			missing = append(missing, "node (Node.js 20 or later)")
		}
		if _, err := exec.LookPath("npm"); err != nil {
			missing = append(missing, "npm")
		}
		if _, err := os.Stat(filepath.Join(root, "examples/node/node_modules/.bin/tsx")); err != nil {
			missing = append(missing, "examples/node's packages (cd examples/node && npm ci)")
		}
	case "python":
		if err := exec.Command(python(), "-c", "import grpc, google.protobuf").Run(); err != nil {
			missing = append(missing, python()+" with grpc and protobuf (apt-get install python3-grpcio python3-protobuf)")
		}
		protoc, err := exec.LookPath("protoc")
		if err != nil {
			missing = append(missing, "protoc (apt-get install protobuf-compiler)")
		} else if _, err := os.Stat(filepath.Join(filepath.Dir(protoc), "../include/google/protobuf/timestamp.proto")); err != nil {
			missing = append(missing, "protoc's well-known types (apt-get install libprotobuf-dev)")
		}
		if _, err := exec.LookPath("grpc_python_plugin"); err != nil {
			missing = append(missing, "grpc_python_plugin (apt-get install protobuf-compiler-grpc)")
		}
	}
	return missing
}

// python is the interpreter with Debian's grpcio: /usr/bin/python3 unless
// PARLEY_PYTHON names another.
func python() string {
	if p := os.Getenv("PARLEY_PYTHON"); p != "" {
		return p
	}
	return "/usr/bin/python3"
}

// step is a command that prepares an example; lang "" is for all.
type step struct {
	lang, name, dir string
	argv            []string
}

// prepare builds parleyd and the Go example, and generates and type-checks
// the Node and Python code, all at once, for the examples in langs.
func prepare(t *testing.T, root, tmp string, langs []string) []example {
	nodeDir := filepath.Join(root, "examples/node")
	pyGen := filepath.Join(tmp, "pygen")
	steps := slices.DeleteFunc([]step{
		{"", "build parleyd", root, []string{"go", "build", "-o", filepath.Join(tmp, "parleyd"), "./cmd/parleyd"}},
		{"go", "build the Go example", root, []string{"go", "build", "-o", filepath.Join(tmp, "example-go"), "./examples/go"}},
		{"node", "generate and type-check the Node code", nodeDir, []string{"npm", "run", "--silent", "generate"}},
		{"python", "generate the Python code", root, []string{filepath.Join(root, "examples/python/generate.sh"), pyGen}},
	}, func(s step) bool { return s.lang != "" && !slices.Contains(langs, s.lang) })
	errs := make([]error, len(steps))
	var wg sync.WaitGroup
	for i, s := range steps {
		wg.Go(func() {
			start := time.Now()
			cmd := exec.Command(s.argv[0], s.argv[1:]...)
			cmd.Dir = s.dir
			if out, err := cmd.CombinedOutput(); err != nil {
				errs[i] = fmt.Errorf("%s: %v\n%s", s.name, err, out)
			}
			if s.dir == nodeDir && errs[i] == nil {
				// Type-check the TypeScript: tsx runs it without checking.
				cmd = exec.Command(filepath.Join(nodeDir, "node_modules/.bin/tsc"), "--noEmit")
				cmd.Dir = nodeDir
				if out, err := cmd.CombinedOutput(); err != nil {
					errs[i] = fmt.Errorf("tsc --noEmit in examples/node: %v\n%s", err, out)
				}
			}
			t.Logf("%s: %v", s.name, time.Since(start).Round(time.Millisecond))
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	return slices.DeleteFunc([]example{
		{lang: "go", user: "go-user", client: "example-go", dir: root, argv: []string{filepath.Join(tmp, "example-go")}},
		{lang: "node", user: "node-user", client: "example-node", dir: nodeDir,
			argv: []string{filepath.Join(nodeDir, "node_modules/.bin/tsx"), "src/main.ts"}},
		{lang: "python", user: "python-user", client: "example-python", dir: root,
			argv: []string{python(), filepath.Join(root, "examples/python/parley_chat.py")},
			env:  []string{"PARLEY_PY_GEN=" + pyGen}},
	}, func(ex example) bool { return !slices.Contains(langs, ex.lang) })
}

// startParleyd runs the real server on a free port and returns its address,
// read from its JSON log.
func startParleyd(t *testing.T, bin, dataDir string) string {
	cmd := exec.Command(bin, "--dev", "--listen", "127.0.0.1:0", "--data-dir", dataDir, "--log-format", "json")
	log := &logSink{addr: make(chan string, 1)}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			t.Errorf("parleyd did not stop within 15s of SIGTERM")
		}
		if t.Failed() {
			t.Logf("parleyd log:\n%s", log.String())
		}
	})
	select {
	case addr := <-log.addr:
		return addr
	case err := <-exited:
		t.Fatalf("parleyd exited before listening: %v\n%s", err, log.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("parleyd did not log its address within 30s:\n%s", log.String())
	}
	return ""
}

// logSink collects parleyd's log and reports the address of its
// "parleyd listening" line.
type logSink struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	next int // offset of the first line not yet parsed
	addr chan string
}

func (l *logSink) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	for {
		rest := l.buf.Bytes()[l.next:]
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			return len(p), nil
		}
		l.next += i + 1
		var line struct{ Msg, Addr string }
		if json.Unmarshal(rest[:i], &line) == nil && line.Msg == "parleyd listening" && line.Addr != "" {
			select {
			case l.addr <- line.Addr:
			default:
			}
		}
	}
}

func (l *logSink) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// post sends a JSON body to a REST route and decodes the JSON answer.
func post(t *testing.T, url, token string, body, out any) {
	call(t, http.MethodPost, url, token, body, out)
}

// call sends a REST request with body as JSON (none if nil) and decodes
// the answer into out, failing the test unless it is 200 OK.
func call(t *testing.T, method, url, token string, body, out any) {
	t.Helper()
	var data []byte
	if body != nil {
		var err error
		if data, err = json.Marshal(body); err != nil {
			t.Fatal(err)
		}
	}
	req, err := http.NewRequest(method, url, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %s: %s: %s", method, url, resp.Status, raw)
	}
	if err := json.Unmarshal(raw, out); err != nil {
		t.Fatalf("%s %s: %v: %s", method, url, err, raw)
	}
}

func devLogin(t *testing.T, addr, user string) string {
	var resp struct{ Token string }
	post(t, "http://"+addr+"/v1/dev/login", "", map[string]string{"user": user}, &resp)
	return resp.Token
}

// testEntries are what changeMessages stores after the examples' first
// messages (seqs 1 to len(examples)*sendN), in this order.
var testEntries = []event{
	{Event: "edit", TargetSeq: 1, Body: "edited by the test"},
	{Event: "reaction_added", TargetSeq: 2, Emoji: "👍"},
	{Event: "reaction_removed", TargetSeq: 2, Emoji: "👍"},
	{Event: "message", Body: testReply, ReplyToSeq: 1},
	{Event: "delete", TargetSeq: 3},
}

const testReply = "a reply to the first message"

// changeMessages stores testEntries over REST: each edit and delete by the
// sender of its target (msgs are the first messages, from seq 1), the rest
// by user.
func changeMessages(t *testing.T, addr string, tokens map[string]string, msgs []event, user string) {
	base := "http://" + addr + "/v1/rooms/" + room + "/messages"
	var out map[string]any
	call(t, http.MethodPatch, base+"/1", tokens[msgs[0].Sender], map[string]string{"body": "edited by the test"}, &out)
	call(t, http.MethodPut, base+"/2/reactions/%F0%9F%91%8D", tokens[user], nil, &out)
	call(t, http.MethodDelete, base+"/2/reactions/%F0%9F%91%8D", tokens[user], nil, &out)
	call(t, http.MethodPost, base, tokens[user], map[string]string{"body": testReply, "replyToSeq": "1"}, &out)
	call(t, http.MethodDelete, base+"/3", tokens[msgs[2].Sender], nil, &out)
}

func createRoom(t *testing.T, addr, token, name string) {
	var resp struct{ Room struct{ Name string } }
	post(t, "http://"+addr+"/v1/rooms", token, map[string]string{"name": name}, &resp)
	if resp.Room.Name != name {
		t.Fatalf("created room %q, want %q", resp.Room.Name, name)
	}
}

// proxy forwards TCP connections to parleyd and can cut them all at once.
type proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

func startProxy(t *testing.T, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Go(p.accept)
	t.Cleanup(func() {
		ln.Close()
		p.cut()
		p.wg.Wait()
	})
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns[c], p.conns[s] = struct{}{}, struct{}{}
		p.mu.Unlock()
		pipe := func(dst, src net.Conn) {
			_, _ = io.Copy(dst, src)
			// One direction ended: end the other, and forget both.
			c.Close()
			s.Close()
			p.mu.Lock()
			delete(p.conns, c)
			delete(p.conns, s)
			p.mu.Unlock()
		}
		p.wg.Go(func() { pipe(s, c) })
		p.wg.Go(func() { pipe(c, s) })
	}
}

// cut closes every open connection, client and server side, and returns
// how many client connections there were.
func (p *proxy) cut() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
	return len(p.conns) / 2
}

// event is one JSON line printed by an example with --json.
type event struct {
	Event       string              `json:"event"`
	Room        string              `json:"room"`
	Seq         uint64              `json:"seq"`
	Sender      string              `json:"sender"`
	Body        string              `json:"body"`
	ClientMsgID string              `json:"client_msg_id"`
	ReplyToSeq  uint64              `json:"reply_to_seq"`
	TargetSeq   uint64              `json:"target_seq"`
	Emoji       string              `json:"emoji"`
	HeadSeq     uint64              `json:"head_seq"`
	AfterSeq    *uint64             `json:"after_seq"`
	Seen        map[string][]string `json:"seen"`
}

// clientEvent is an event of client i, or the end of its output (eof).
type clientEvent struct {
	i   int
	ev  event
	eof bool
	err error
}

// run is one running example and what it printed.
type run struct {
	ex     example
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout syncBuffer
	stderr syncBuffer
	events []event // in the order printed
	eof    bool
}

// entries are the events of the room's log: messages, edits, deletes and
// reactions, each with its seq.
func (r *run) entries() []event {
	var out []event
	for _, e := range r.events {
		switch e.Event {
		case "message", "edit", "delete", "reaction_added", "reaction_removed":
			out = append(out, e)
		}
	}
	return out
}

func (r *run) messages() []event {
	var out []event
	for _, e := range r.events {
		if e.Event == "message" {
			out = append(out, e)
		}
	}
	return out
}

func startClient(ctx context.Context, t *testing.T, i int, ex example, args []string, token string, events chan<- clientEvent) *run {
	r := &run{ex: ex}
	r.cmd = exec.CommandContext(ctx, args[0], args[1:]...)
	r.cmd.Dir = ex.dir
	r.cmd.Env = append(os.Environ(), append(ex.env, "PARLEY_TOKEN="+token, "PARLEY_ADDR=")...)
	r.cmd.Stderr = &r.stderr
	var err error
	if r.stdin, err = r.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := r.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := r.cmd.Start(); err != nil {
		t.Fatalf("start the %s example: %v", ex.lang, err)
	}
	t.Cleanup(func() {
		if r.cmd.ProcessState == nil {
			_ = r.cmd.Process.Kill()
			_ = r.cmd.Wait()
		}
	})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			r.stdout.Write(append(sc.Bytes(), '\n'))
			var ev event
			err := json.Unmarshal(sc.Bytes(), &ev)
			if err != nil {
				err = fmt.Errorf("%s example printed a line that is not JSON: %q", ex.lang, sc.Text())
			}
			events <- clientEvent{i: i, ev: ev, err: err}
		}
		events <- clientEvent{i: i, eof: true}
	}()
	return r
}

// collect records the clients' events until done reports true.
func collect(ctx context.Context, t *testing.T, runs []*run, events <-chan clientEvent, done func() bool) {
	t.Helper()
	for !done() {
		select {
		case ce := <-events:
			r := runs[ce.i]
			switch {
			case ce.err != nil:
				t.Error(ce.err)
			case ce.eof:
				r.eof = true
			default:
				r.events = append(r.events, ce.ev)
			}
		case <-ctx.Done():
			for _, r := range runs {
				t.Logf("%s example: %d messages so far; stderr:\n%s", r.ex.lang, len(r.messages()), r.stderr.String())
			}
			t.Fatalf("timed out waiting for the examples: %v", ctx.Err())
		}
	}
}

// expectedMessages is every (sender, body) the examples send.
func expectedMessages(examples []example) map[[2]string]bool {
	want := map[[2]string]bool{}
	for _, ex := range examples {
		for j := 1; j <= sendN; j++ {
			want[[2]string{ex.user, fmt.Sprintf("%s message %d", ex.client, j)}] = true
		}
		for j := 1; j <= lineN; j++ {
			want[[2]string{ex.user, fmt.Sprintf("%s line %d", ex.client, j)}] = true
		}
	}
	want[[2]string{examples[0].user, testReply}] = true
	return want
}

// checkRun checks one example's output: every entry once, in seq order
// from 1 (the messages, and the test's edit, reactions and delete in their
// place), a resume after the cut from the last seq printed, and the other
// examples seen in presence.
func checkRun(t *testing.T, r *run, examples []example, want map[[2]string]bool) {
	t.Helper()
	lang := r.ex.lang
	for i, e := range r.entries() {
		if e.Seq != uint64(i+1) || e.Room != room {
			t.Errorf("%s example: entry %d is %+v; want seqs 1, 2, 3, … in room %s with no gap or duplicate", lang, i+1, e, room)
			break
		}
	}
	// What an entry is, without its seq and sender.
	change := func(e event) string {
		return fmt.Sprintf("%s target %d body %q emoji %q reply to %d", e.Event, e.TargetSeq, e.Body, e.Emoji, e.ReplyToSeq)
	}
	var changes, wantChanges []string
	for _, e := range r.entries() {
		if e.Seq > uint64(len(examples)*sendN) && (e.Event != "message" || e.Body == testReply) {
			changes = append(changes, change(e))
		}
	}
	for _, e := range testEntries {
		wantChanges = append(wantChanges, change(e))
	}
	if !slices.Equal(changes, wantChanges) {
		t.Errorf("%s example printed the test's changes as\n%s\nwant\n%s", lang, strings.Join(changes, "\n"), strings.Join(wantChanges, "\n"))
	}
	got := map[[2]string]bool{}
	for _, m := range r.messages() {
		key := [2]string{m.Sender, m.Body}
		if !want[key] || got[key] || m.Room != room {
			t.Errorf("%s example: unexpected, duplicate or misplaced message %+v", lang, m)
		}
		got[key] = true
	}
	if len(got) != len(want) {
		t.Errorf("%s example received %d distinct messages; want %d", lang, len(got), len(want))
	}

	// Every join after the first resumes after the last entry printed.
	joins, last := 0, uint64(0)
	var final *event
	for i, e := range r.events {
		switch e.Event {
		case "message", "edit", "delete", "reaction_added", "reaction_removed":
			last = e.Seq
		case "joined":
			joins++
			if e.AfterSeq == nil || *e.AfterSeq != last {
				t.Errorf("%s example: join %d resumed after %v; want after the last seq printed, %d", lang, joins, e.AfterSeq, last)
			}
		case "presence":
			final = &r.events[i]
		}
	}
	if joins < 2 {
		t.Errorf("%s example joined %d time(s); want a rejoin after the cut", lang, joins)
	}
	if final == nil {
		t.Errorf("%s example printed no final presence line", lang)
		return
	}
	for _, ex := range examples {
		if !slices.Contains(final.Seen[ex.user], ex.client) {
			t.Errorf("%s example never saw %s (%s) online; it saw %v", lang, ex.user, ex.client, final.Seen)
		}
	}
}

func sameOrder(a, b []event) bool {
	return slices.EqualFunc(a, b, func(x, y event) bool {
		return x.Event == y.Event && x.Seq == y.Seq && x.Sender == y.Sender && x.Body == y.Body && x.TargetSeq == y.TargetSeq && x.Emoji == y.Emoji
	})
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader at once.
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
