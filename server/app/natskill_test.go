package app_test

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	parleyv1 "github.com/parleychat/parley/gen/parley/v1"
)

// startNATSCluster runs three clustered NATS servers in this process.
func startNATSCluster(t *testing.T) []*natsserver.Server {
	t.Helper()
	var servers []*natsserver.Server
	for i := range 3 {
		opts := &natsserver.Options{
			ServerName: fmt.Sprint("nats-", i), Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true,
			Cluster: natsserver.ClusterOpts{Name: "parley-test", Host: "127.0.0.1", Port: -1},
		}
		if i > 0 {
			opts.Routes = natsserver.RoutesFromStr(fmt.Sprintf("nats://%s", servers[0].ClusterAddr()))
		}
		s, err := natsserver.NewServer(opts)
		if err != nil {
			t.Fatal(err)
		}
		go s.Start()
		if !s.ReadyForConnections(10 * time.Second) {
			t.Fatal("NATS server not ready")
		}
		t.Cleanup(s.Shutdown)
		servers = append(servers, s)
	}
	waitFor(t, "the NATS servers to route to each other", func() bool {
		for _, s := range servers {
			if s.NumRoutes() < 2 {
				return false
			}
		}
		return true
	})
	return servers
}

// Kill one NATS server of three while messages flow: its parleyd node
// reconnects to another server, messaging goes on, and every receiver gets
// every message once, in order, filling what the broker missed from the
// store.
func TestClusterSurvivesNATSServerLoss(t *testing.T) {
	dsn := postgresDSN(t)
	servers := startNATSCluster(t)
	id := rand.Uint32()
	schema := fmt.Sprintf("parley_natskill_%d", id)
	dropSchema(t, dsn, schema)
	nodes := make([]*testServer, 3)
	for i := range nodes {
		urls := []string{servers[i].ClientURL(), servers[(i+1)%3].ClientURL(), servers[(i+2)%3].ClientURL()}
		nodes[i] = startServer(t, func(c *appConfig) {
			c.Store, c.PostgresSchema = dsn, schema
			c.Broker, c.BrokerSubject, c.NodeID = strings.Join(urls, ","), fmt.Sprintf("natskill-%d", id), fmt.Sprint("node-", i)
		})
	}
	nodes[0].createRoom(t, "sturdy")
	var receivers []*joinStream
	for i := range 3 {
		js := openJoin(t, nodes[i].dial(t), nodes[i].token(t, fmt.Sprint("r", i)))
		js.join("sturdy", nil)
		receivers = append(receivers, js)
	}
	sender := openJoin(t, nodes[0].dial(t), nodes[0].token(t, "sender"))
	sender.join("sturdy", nil)
	const total = 60
	for i := 1; i <= total; i++ {
		if i == 20 {
			servers[1].Shutdown() // node 1's server
		}
		if r := sender.post("sturdy", fmt.Sprint("m", i), ""); r.GetCode() != 0 {
			t.Fatalf("send %d: %s", i, r.GetError())
		}
		time.Sleep(5 * time.Millisecond) // pacing, so sends span the loss
	}
	for i, js := range receivers {
		for want := uint64(1); want <= total; want++ {
			if m := js.next(isMessage("sturdy"), nil).GetMessage(); m.GetSeq() != want {
				t.Fatalf("receiver on node %d: seq %d, want %d", i, m.GetSeq(), want)
			}
		}
	}
	st := nodes[1].Hub().Stats()
	t.Logf("node 1 (its NATS server killed): %d messages through the broker, %d from the store", st.RemoteMessages, st.GapFills)
}

// natsProcess is a nats-server of the test's own, on a port it keeps
// across restarts.
type natsProcess struct {
	t    *testing.T
	port int
	cmd  *exec.Cmd
}

// startNATSProcess runs /usr/sbin/nats-server on a free loopback port,
// skipping the test if it is not installed.
func startNATSProcess(t *testing.T) *natsProcess {
	t.Helper()
	if _, err := os.Stat(natsServerBin); err != nil {
		t.Skipf("no %s: %v", natsServerBin, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n := &natsProcess{t: t, port: ln.Addr().(*net.TCPAddr).Port}
	ln.Close()
	n.start()
	t.Cleanup(n.stop)
	return n
}

const natsServerBin = "/usr/sbin/nats-server"

func (n *natsProcess) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.port) }

func (n *natsProcess) start() {
	n.t.Helper()
	n.cmd = exec.Command(natsServerBin, "-a", "127.0.0.1", "-p", fmt.Sprint(n.port))
	if err := n.cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
	waitFor(n.t, "nats-server to listen", func() bool {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", n.port), time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

func (n *natsProcess) stop() {
	if n.cmd == nil {
		return
	}
	_ = n.cmd.Process.Kill()
	_ = n.cmd.Wait()
	n.cmd = nil
}

// A broker outage leaves the node SERVING and storing sends, reported as
// degraded: logged once when it starts and once when it ends, in /healthz
// (200) and in parley_broker_connected.
func TestBrokerOutageIsDegradedNotDown(t *testing.T) {
	dsn := postgresDSN(t)
	nats := startNATSProcess(t)
	schema := fmt.Sprintf("parley_brokerhealth_%d", rand.Uint32())
	dropSchema(t, dsn, schema)
	var logs syncBuffer
	ts := startServer(t, logTo(&logs), func(c *appConfig) {
		c.Store, c.PostgresSchema = dsn, schema
		c.Broker, c.BrokerSubject = nats.url(), schema
	})
	ts.createRoom(t, "chat")
	c, ctx := ts.client(t, "alice")
	if got := scrape(t, ts.Addr())["parley_broker_connected"]; got != 1 {
		t.Errorf("parley_broker_connected = %v, want 1", got)
	}

	nats.stop()
	waitFor(t, "/healthz to say degraded", func() bool {
		code, body := healthz(t, ts.Addr())
		return code == http.StatusOK && strings.Contains(body, "degraded: broker unreachable")
	})
	if got := grpcHealth(t, ts); got != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("gRPC health during the outage = %v, want SERVING (degraded)", got)
	}
	if got := scrape(t, ts.Addr())["parley_broker_connected"]; got != 0 {
		t.Errorf("parley_broker_connected during the outage = %v, want 0", got)
	}
	if _, err := c.SendMessage(ctx, &parleyv1.SendMessageRequest{Room: "chat", Body: "stored anyway"}); err != nil {
		t.Fatalf("send during the outage: %v", err)
	}
	js := openJoin(t, ts.dial(t), ts.token(t, "bob"))
	js.join("chat", ptr(uint64(0))) // the room goes live without the broker
	if m := js.next(isMessage("chat"), nil).GetMessage(); m.GetBody() != "stored anyway" {
		t.Fatalf("replay during the outage: %v", m)
	}

	nats.start()
	waitFor(t, "/healthz to say ok", func() bool {
		code, body := healthz(t, ts.Addr())
		return code == http.StatusOK && strings.TrimSpace(body) == "ok"
	})
	if got := scrape(t, ts.Addr())["parley_broker_connected"]; got != 1 {
		t.Errorf("parley_broker_connected after the outage = %v, want 1", got)
	}
	for phrase, want := range map[string]int{"broker unreachable: degraded": 1, "broker reachable again": 1, "NOT_SERVING": 0} {
		if n := strings.Count(logs.String(), phrase); n != want {
			t.Errorf("%q logged %d times, want %d:\n%s", phrase, n, want, logs.String())
		}
	}
}
