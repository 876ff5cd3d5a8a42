package app_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	parleyv1 "github.com/parleychat/parley/gen/parley/v1"
)

// postgresDSN returns the test database's URL, skipping the test when it is
// not reachable (unless PARLEY_REQUIRE_POSTGRES=1).
func postgresDSN(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv("PARLEY_TEST_POSTGRES")
	if dsn == "" {
		dsn = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		if os.Getenv("PARLEY_REQUIRE_POSTGRES") == "1" {
			t.Fatalf("PostgreSQL at %s: %v", dsn, err)
		}
		t.Skipf("PostgreSQL not reachable at %s (set PARLEY_TEST_POSTGRES): %v", dsn, err)
	}
	conn.Close(ctx)
	return dsn
}

// dropSchema removes a test's schema when it ends.
func dropSchema(t testing.TB, dsn, schema string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if conn, err := pgx.Connect(ctx, dsn); err == nil {
			conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
			conn.Close(ctx)
		}
	})
}

// cutProxy forwards TCP to a target until cut, when it drops every
// connection and refuses new ones, as a database outage would look.
type cutProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	cut    bool
	conns  []net.Conn
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target}
	t.Cleanup(func() { ln.Close(); p.setCut(true) })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.serve(c)
		}
	}()
	return p
}

func (p *cutProxy) serve(c net.Conn) {
	p.mu.Lock()
	if p.cut {
		p.mu.Unlock()
		c.Close()
		return
	}
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		p.mu.Unlock()
		c.Close()
		return
	}
	p.conns = append(p.conns, c, up)
	p.mu.Unlock()
	go func() { io.Copy(up, c); up.Close() }()
	io.Copy(c, up)
	c.Close()
}

func (p *cutProxy) setCut(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = cut
	if cut {
		for _, c := range p.conns {
			c.Close()
		}
		p.conns = nil
	}
}

// parleyd on PostgreSQL: messages and heads live in the database, so a new
// server on the same schema continues each room; while the database is out
// of reach, sends answer UNAVAILABLE at once (no hang, no false ack) and
// health says NOT_SERVING; when it is back, everything works again.
func TestPostgresStoreAndOutage(t *testing.T) {
	dsn := postgresDSN(t)
	schema := fmt.Sprintf("parley_apptest_%d", rand.Uint32())
	dropSchema(t, dsn, schema)
	proxy := newCutProxy(t, "127.0.0.1:5432")
	proxied := fmt.Sprintf("postgres://postgres@%s/test?sslmode=disable&connect_timeout=2", proxy.ln.Addr())
	pg := func(c *appConfig) { c.Store, c.PostgresSchema = proxied, schema }

	first := startServer(t, pg)
	first.createRoom(t, "pgroom")
	c, ctx := first.client(t, "pat")
	for i := range 5 {
		if _, err := c.SendMessage(ctx, &parleyv1.SendMessageRequest{Room: "pgroom", Body: fmt.Sprint("m", i), ClientMsgId: fmt.Sprint("k", i)}); err != nil {
			t.Fatal(err)
		}
	}
	second := startServer(t, pg)
	c2, ctx2 := second.client(t, "pat")
	resp, err := c2.SendMessage(ctx2, &parleyv1.SendMessageRequest{Room: "pgroom", Body: "from the second server"})
	if err != nil || resp.GetMessage().GetSeq() != 6 {
		t.Fatalf("second server's send: seq %d (%v), want 6", resp.GetMessage().GetSeq(), err)
	}
	// A retry through the other server finds the original.
	dup, err := c2.SendMessage(ctx2, &parleyv1.SendMessageRequest{Room: "pgroom", Body: "m0 again", ClientMsgId: "k0"})
	if err != nil || dup.GetMessage().GetSeq() != 1 {
		t.Fatalf("retry on the other server: seq %d (%v), want 1", dup.GetMessage().GetSeq(), err)
	}

	proxy.setCut(true)
	start := time.Now()
	sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	_, err = c.SendMessage(sctx, &parleyv1.SendMessageRequest{Room: "pgroom", Body: "during the outage", ClientMsgId: "out-1"})
	cancel()
	if status.Code(err) != codes.Unavailable || time.Since(start) > 5*time.Second {
		t.Fatalf("send while PostgreSQL is unreachable: %v after %v, want UNAVAILABLE within 5s", err, time.Since(start))
	}
	t.Logf("send during the outage answered %v in %v", status.Code(err), time.Since(start).Round(time.Millisecond))
	hc := healthpb.NewHealthClient(first.dial(t))
	waitFor(t, "NOT_SERVING while the store is down", func() bool {
		h, err := hc.Check(context.Background(), &healthpb.HealthCheckRequest{Service: "parley.v1.ChatService"})
		return err == nil && h.GetStatus() == healthpb.HealthCheckResponse_NOT_SERVING
	})
	if resp, err := http.Get("http://" + first.Addr() + "/healthz"); err != nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("/healthz during the outage: %v %v", resp, err)
	}

	proxy.setCut(false)
	waitFor(t, "SERVING once the store is back", func() bool {
		h, err := hc.Check(context.Background(), &healthpb.HealthCheckRequest{Service: "parley.v1.ChatService"})
		return err == nil && h.GetStatus() == healthpb.HealthCheckResponse_SERVING
	})
	var after *parleyv1.SendMessageResponse
	waitFor(t, "a send to succeed after the outage", func() bool {
		after, err = c.SendMessage(ctx, &parleyv1.SendMessageRequest{Room: "pgroom", Body: "during the outage", ClientMsgId: "out-1"})
		return err == nil || !errors.Is(err, context.Canceled) && status.Code(err) != codes.Unavailable
	})
	if err != nil || after.GetMessage().GetSeq() != 7 {
		t.Fatalf("retried send after the outage: seq %d (%v), want 7 (nothing was stored during it)", after.GetMessage().GetSeq(), err)
	}
}

// PostgreSQL goes away while four senders send: every failed send answers
// UNAVAILABLE within seconds (no hang), senders retry with the same
// client_msg_id, and in the end every message is stored exactly once with
// seqs 1..N (no false ack, nothing lost).
func TestPostgresOutageUnderLoad(t *testing.T) {
	dsn := postgresDSN(t)
	schema := fmt.Sprintf("parley_outage_load_%d", rand.Uint32())
	dropSchema(t, dsn, schema)
	proxy := newCutProxy(t, "127.0.0.1:5432")
	ts := startServer(t, func(c *appConfig) {
		c.Store = fmt.Sprintf("postgres://postgres@%s/test?sslmode=disable&connect_timeout=2", proxy.ln.Addr())
		c.PostgresSchema = schema
	})
	ts.createRoom(t, "loaded")
	const senders, each = 4, 60
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		refused  int
		slowest  time.Duration
		acked    = map[string]uint64{}
		progress atomic.Int64
	)
	for s := range senders {
		c, ctx := ts.client(t, fmt.Sprint("loader", s))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				id := fmt.Sprint(s, "-", i)
				for {
					start := time.Now()
					cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
					resp, err := c.SendMessage(cctx, &parleyv1.SendMessageRequest{Room: "loaded", Body: id, ClientMsgId: id})
					cancel()
					took := time.Since(start)
					if err == nil {
						mu.Lock()
						acked[id] = resp.GetMessage().GetSeq()
						mu.Unlock()
						progress.Add(1)
						break
					}
					if status.Code(err) != codes.Unavailable {
						t.Errorf("send %s: %v", id, err)
						return
					}
					mu.Lock()
					refused++
					slowest = max(slowest, took)
					mu.Unlock()
					time.Sleep(50 * time.Millisecond) // client back-off before a retry
				}
			}
		}()
	}
	waitFor(t, "load before the outage", func() bool { return progress.Load() >= 40 })
	proxy.setCut(true)
	before := progress.Load()
	cutAt := time.Now()
	waitFor(t, "sends to be refused during the outage", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return refused >= 8 && time.Since(cutAt) > 500*time.Millisecond
	})
	if p := progress.Load(); p > before+senders {
		t.Fatalf("%d sends were acked while PostgreSQL was out of reach", p-before)
	}
	proxy.setCut(false)
	wg.Wait()
	if t.Failed() {
		return
	}
	c, ctx := ts.client(t, "checker")
	var stored []*parleyv1.Message
	req := &parleyv1.ListMessagesRequest{Room: "loaded", Limit: 200, Order: parleyv1.MessageOrder_MESSAGE_ORDER_OLDEST_FIRST}
	for {
		resp, err := c.ListMessages(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		stored = append(stored, resp.GetMessages()...)
		if req.PageToken = resp.GetNextPageToken(); req.PageToken == "" {
			break
		}
	}
	if len(stored) != senders*each || len(acked) != senders*each {
		t.Fatalf("stored %d, acked %d, want %d each", len(stored), len(acked), senders*each)
	}
	for i, m := range stored {
		if m.GetSeq() != uint64(i+1) || acked[m.GetBody()] != m.GetSeq() {
			t.Fatalf("stored seq %d (%q) at position %d, acked as %d", m.GetSeq(), m.GetBody(), i, acked[m.GetBody()])
		}
	}
	if slowest > 5*time.Second {
		t.Fatalf("a refused send took %v", slowest)
	}
	t.Logf("%d messages stored once each; %d sends refused during the outage, the slowest answer in %v", len(stored), refused, slowest.Round(time.Millisecond))
}
