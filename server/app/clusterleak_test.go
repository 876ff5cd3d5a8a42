package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"

	"github.com/parleychat/parley/server/app"
	"github.com/parleychat/parley/server/internal/hub"
	"github.com/parleychat/parley/server/internal/store"
)

// startClusterNode starts a cluster node that the test shuts down itself
// (shutdown), or its cleanup if the test ends first.
func startClusterNode(t *testing.T, dsn, schema, url, subject, node string) (ts *testServer, shutdown func() error) {
	t.Helper()
	cfg := app.Config{
		Listen: "127.0.0.1:0", DataDir: t.TempDir(), SendRate: -1, Dev: true,
		ShutdownTimeout: 5 * time.Second, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Store: dsn, PostgresSchema: schema, Broker: url, BrokerSubject: subject, NodeID: node,
		NodeTimeout: 2 * time.Second,
	}
	s, err := app.Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("start %s: %v", node, err)
	}
	var once sync.Once
	var serr error
	shutdown = func() error {
		once.Do(func() { serr = s.Shutdown(context.Background()) })
		return serr
	}
	t.Cleanup(func() { _ = shutdown() })
	return &testServer{Server: s, cfg: cfg}, shutdown
}

// A cluster node leaves none of its goroutines behind when it shuts down,
// even with the hub's own work — a catch-up after the broker came back,
// a member check, a gap fill — blocked in a database that does not answer
// (its tables locked). Before the hub had a lifetime, that work read with
// context.Background and a timeout of up to 30s: shutdown closed the
// store under it, and the connection pool's Close waited for it.
func TestClusterNodeShutdownLeavesNoGoroutines(t *testing.T) {
	dsn, url := postgresDSN(t), natsURL(t)
	before := parleyGoroutines("")
	id := rand.Uint32()
	schema, subject := fmt.Sprintf("parley_leak_%d", id), fmt.Sprintf("parley-leak-%d", id)
	dropSchema(t, dsn, schema)
	a, stopA := startClusterNode(t, dsn, schema, url, subject, "node-a")
	b, stopB := startClusterNode(t, dsn, schema, url, subject, "node-b")

	// bob is on node b in a public and a private room; alice sends from a.
	a.createRoom(t, "open")
	bs := privateRoomWithBob(t, a, b, "secret")
	bs.join("open", nil)
	as := openJoin(t, a.dial(t), a.token(t, "alice"))
	as.join("open", nil)
	as.join("secret", nil)
	for i := range 5 {
		for _, room := range []string{"open", "secret"} {
			if r := as.post(room, fmt.Sprint("hello ", i), ""); r.GetCode() != 0 {
				t.Fatalf("send: %v", r)
			}
			bs.next(isMessage(room), nil)
		}
	}

	// The database stops answering for Parley's tables.
	ctx := context.Background()
	lock, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close(ctx)
	tx, err := lock.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, fmt.Sprintf("LOCK TABLE %[1]s.messages, %[1]s.members, %[1]s.rooms IN ACCESS EXCLUSIVE MODE", pgx.Identifier{schema}.Sanitize())); err != nil {
		t.Fatal(err)
	}

	// A catch-up and a member check, as when the broker comes back...
	b.Hub().CatchUp()
	// ...and a gap fill: a message 10 seqs ahead, as if the 9 before it
	// were lost on the broker.
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ahead, _ := json.Marshal(hub.Event{Version: hub.EventVersion, Kind: hub.EventMessage, Node: "node-x", Room: "open",
		Message: store.Message{Room: "open", Seq: 20, Sender: "x", Body: "ahead", SentAt: time.Now()}})
	if err := nc.Publish(subject+".room.open", ahead); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the catch-up, the member check and the gap fill to block in the database", func() bool {
		return parleyGoroutines("hub.(*room).catchUp") > 0 && parleyGoroutines("hub.(*Hub).checkMembers") > 0 &&
			parleyGoroutines("hub.(*room).fillGap") > 0
	})

	bs.close()
	as.close()
	// The reads end when the hub closes, not when the store's statement
	// timeout (postgres.DefaultQueryTimeout, 5s) would end them: until
	// then they hold connections that closing the store waits for.
	const quick = 3 * time.Second
	for _, n := range []struct {
		name string
		stop func() error
	}{{"node-b", stopB}, {"node-a", stopA}} {
		start := time.Now()
		done := make(chan error, 1)
		go func() { done <- n.stop() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("shutdown %s: %v", n.name, err)
			}
		case <-time.After(quick):
			t.Fatalf("shutdown of %s did not return within %v; the server's goroutines:\n%s", n.name, quick, strings.Join(parleyStacks(""), "\n\n"))
		}
		t.Logf("shutdown of %s took %v", n.name, time.Since(start).Round(time.Millisecond))
	}
	deadline := time.Now().Add(waitTimeout)
	for parleyGoroutines("") > before {
		if time.Now().After(deadline) {
			t.Fatalf("after shutdown, %d goroutines of the server's own remain (%d before):\n%s",
				parleyGoroutines(""), before, strings.Join(parleyStacks(""), "\n\n"))
		}
		time.Sleep(time.Millisecond) // polling a condition, with a deadline
	}
}
