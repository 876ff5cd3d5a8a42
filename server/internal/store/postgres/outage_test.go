package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parleychat/parley/server/internal/store"
	"github.com/parleychat/parley/server/internal/store/postgres"
)

// prompt is how soon an operation must fail when the server is down or
// silent; the configured timeouts are well inside it.
const prompt = 3 * time.Second

// closedPort returns an address on which nothing listens.
func closedPort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func checkPromptUnavailable(t *testing.T, what string, start time.Time, err error) {
	t.Helper()
	elapsed := time.Since(start)
	t.Logf("%s after %v: %v", what, elapsed.Round(time.Millisecond), err)
	if err == nil {
		t.Fatalf("%s succeeded, want an error", what)
	}
	if !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("%s error %q does not wrap store.ErrUnavailable", what, err)
	}
	if elapsed > prompt {
		t.Errorf("%s took %v, want an error within %v", what, elapsed, prompt)
	}
}

// TestOpenFailsFast: no server at the address, or one that accepts and
// never answers, is reported within about ConnectTimeout.
func TestOpenFailsFast(t *testing.T) {
	blackhole, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer blackhole.Close() // the kernel completes handshakes; nobody reads
	for _, tc := range []struct{ name, addr string }{
		{"closed port", closedPort(t)},
		{"silent server", blackhole.Addr().String()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := postgres.Config{DSN: "postgres://postgres@" + tc.addr + "/test?sslmode=disable", ConnectTimeout: time.Second}
			start := time.Now()
			s, err := postgres.Open(context.Background(), cfg)
			if err == nil {
				s.Close()
			}
			checkPromptUnavailable(t, "Open", start, err)
		})
	}
}

// openThroughProxy opens a store whose connections go through a proxy.
func openThroughProxy(t *testing.T, cfg postgres.Config) (*postgres.Store, *proxy) {
	p, dsn := newProxy(t, postgres.NeedPostgres(t))
	cfg.DSN = dsn
	s := postgres.OpenTest(t, cfg)
	if _, err := s.CreateRoom(context.Background(), store.Room{Name: "a", Visibility: store.Public}); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, s, store.NewMessage{Room: "a", Sender: "u", Body: "before"})
	return s, p
}

// TestServerDown: with the server gone (connections reset, port refused)
// appends, reads and Ping fail at once with store.ErrUnavailable and store
// nothing; once it is back, appends succeed and continue the room's seqs.
func TestServerDown(t *testing.T) {
	s, p := openThroughProxy(t, postgres.Config{ConnectTimeout: time.Second})
	ctx := context.Background()
	p.stop()
	start := time.Now()
	_, _, err := s.Append(ctx, store.NewMessage{Room: "a", Sender: "u", Body: "lost", ClientMsgID: "down-1"})
	checkPromptUnavailable(t, "Append", start, err)
	start = time.Now()
	_, _, err = s.Append(ctx, store.NewMessage{Room: "a", Sender: "u", Body: "lost", ClientMsgID: "down-2"})
	checkPromptUnavailable(t, "second Append", start, err)
	start = time.Now()
	_, err = s.Messages(ctx, "a", store.Query{Limit: 10})
	checkPromptUnavailable(t, "Messages", start, err)
	start = time.Now()
	checkPromptUnavailable(t, "Ping", start, s.Ping(ctx))

	p.start()
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping after the server came back: %v", err)
	}
	m, dup, err := s.Append(ctx, store.NewMessage{Room: "a", Sender: "u", Body: "back", ClientMsgID: "down-2"})
	if err != nil || dup || m.Seq != 2 {
		t.Fatalf("Append after the server came back = seq %d dup %v err %v, want seq 2", m.Seq, dup, err)
	}
}

// TestServerSilent: with a server that stops answering (connections open,
// nothing comes back) appends and reads fail within QueryTimeout, even
// with no deadline of the caller's; when it answers again, so does the
// store. The failed append is the ambiguous case: the proxy delivers the
// statement it held once it thaws, as a healed network may, so it may have
// been stored after all; its retry says which.
func TestServerSilent(t *testing.T) {
	s, p := openThroughProxy(t, postgres.Config{ConnectTimeout: time.Second, QueryTimeout: time.Second})
	ctx := context.Background()
	p.freeze()
	start := time.Now()
	_, _, err := s.Append(ctx, store.NewMessage{Room: "a", Sender: "u", Body: "maybe", ClientMsgID: "silent-1"})
	checkPromptUnavailable(t, "Append", start, err)
	start = time.Now()
	_, err = s.Room(ctx, "a")
	checkPromptUnavailable(t, "Room", start, err)
	start = time.Now()
	checkPromptUnavailable(t, "Ping", start, s.Ping(ctx))
	// A caller's own deadline is kept, however long the batch would take.
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	start = time.Now()
	_, _, err = s.Append(short, store.NewMessage{Room: "a", Sender: "u", Body: "maybe", ClientMsgID: "silent-1"})
	if elapsed := time.Since(start); !errors.Is(err, context.DeadlineExceeded) || elapsed > 700*time.Millisecond {
		t.Errorf("Append with a 200ms deadline = %v after %v, want DeadlineExceeded at the deadline", err, elapsed)
	}

	p.thaw()
	m, dup, err := s.Append(ctx, store.NewMessage{Room: "a", Sender: "u", Body: "maybe", ClientMsgID: "silent-1"})
	if err != nil || m.Seq != 2 {
		t.Fatalf("retry after the server answered again = seq %d dup %v err %v, want seq 2", m.Seq, dup, err)
	}
	t.Logf("the retry found the message stored already: %v", dup)
	if m, dup, err := s.Append(ctx, store.NewMessage{Room: "a", Sender: "u", Body: "next"}); err != nil || dup || m.Seq != 3 {
		t.Fatalf("next Append = seq %d dup %v err %v, want seq 3", m.Seq, dup, err)
	}
}

// TestAppendersRideOutAnOutage: appenders keep sending (each retrying its
// message with the same ClientMsgID until it is acknowledged) while the
// server goes down and comes back. Every acknowledged message is stored,
// once, under the seq it was acknowledged with, and the room's seqs are
// 1..N without a gap.
func TestAppendersRideOutAnOutage(t *testing.T) {
	s, p := openThroughProxy(t, postgres.Config{ConnectTimeout: time.Second})
	const workers, perWorker = 8, 40
	var acked sync.Map // client id -> store.Message
	var ackCount atomic.Int64
	failed := make(chan struct{}, 1)
	up := make(chan struct{})
	halfway := make(chan struct{})
	var once sync.Once
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				id := fmt.Sprintf("w%d-%03d", w, i)
				m, err := appendUntilAcked(s, store.NewMessage{Room: "a", Sender: fmt.Sprint("w", w), Body: id, ClientMsgID: id}, failed, up)
				if err != nil {
					t.Errorf("Append %s: %v", id, err)
					return
				}
				acked.Store(id, m)
				if ackCount.Add(1) == workers*perWorker/4 {
					once.Do(func() { close(halfway) })
				}
			}
		})
	}
	<-halfway
	p.stop()
	<-failed // some appender has seen the outage
	p.start()
	close(up)
	wg.Wait()

	stored, err := s.Messages(context.Background(), "a", store.Query{Limit: 10_000})
	if err != nil {
		t.Fatal(err)
	}
	n := 1 + workers*perWorker // "before", then one per id
	if len(stored) != n {
		t.Fatalf("room holds %d messages, want %d", len(stored), n)
	}
	for i, m := range stored {
		if m.Seq != uint64(i+1) {
			t.Fatalf("stored[%d] has seq %d: a gap or a duplicate", i, m.Seq)
		}
		if i == 0 {
			continue
		}
		a, ok := acked.Load(m.ClientMsgID)
		if !ok || a.(store.Message).Seq != m.Seq || a.(store.Message).Body != m.Body {
			t.Fatalf("stored %+v, acknowledged %+v", m, a)
		}
	}
}

// appendUntilAcked appends m, and after an error waits for up (the test
// restarting the server; failed tells it an error was seen) and retries,
// a bounded number of times.
func appendUntilAcked(s store.Store, m store.NewMessage, failed chan<- struct{}, up <-chan struct{}) (store.Message, error) {
	var err error
	for range 20 {
		var got store.Message
		if got, _, err = s.Append(context.Background(), m); err == nil {
			return got, nil
		}
		if !errors.Is(err, store.ErrUnavailable) {
			return store.Message{}, err
		}
		select {
		case failed <- struct{}{}:
		default:
		}
		<-up
	}
	return store.Message{}, err
}

// TestServerRestartBetweenAppends: connections that died while idle (the
// server restarted) cost no caller an error: they are pinged before use.
// (pingIdle is set to zero so that the test need not wait for them to be
// idle long enough.)
func TestServerRestartBetweenAppends(t *testing.T) {
	defer postgres.SetPingIdle(0)()
	s, p := openThroughProxy(t, postgres.Config{})
	p.stop()
	p.start()
	for i := range 3 {
		m, dup, err := s.Append(context.Background(), store.NewMessage{Room: "a", Sender: "u", Body: fmt.Sprint(i)})
		if err != nil || dup || m.Seq != uint64(i+2) {
			t.Fatalf("Append %d after the restart = seq %d dup %v err %v, want seq %d", i, m.Seq, dup, err, i+2)
		}
	}
}
