package app_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
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

// Health says NOT_SERVING while the broker is out of reach, and SERVING
// again once it is back.
func TestHealthFollowsTheBroker(t *testing.T) {
	dsn, url := postgresDSN(t), natsURL(t)
	proxy := newCutProxy(t, strings.TrimPrefix(url, "nats://"))
	schema := fmt.Sprintf("parley_brokerhealth_%d", rand.Uint32())
	dropSchema(t, dsn, schema)
	ts := startServer(t, func(c *appConfig) {
		c.Store, c.PostgresSchema = dsn, schema
		c.Broker, c.BrokerSubject = "nats://"+proxy.ln.Addr().String(), schema
	})
	hc := healthpb.NewHealthClient(ts.dial(t))
	serving := func(want healthpb.HealthCheckResponse_ServingStatus) func() bool {
		return func() bool {
			h, err := hc.Check(context.Background(), &healthpb.HealthCheckRequest{Service: "parley.v1.ChatService"})
			return err == nil && h.GetStatus() == want
		}
	}
	waitFor(t, "SERVING", serving(healthpb.HealthCheckResponse_SERVING))
	proxy.setCut(true)
	waitFor(t, "NOT_SERVING while NATS is cut off", serving(healthpb.HealthCheckResponse_NOT_SERVING))
	proxy.setCut(false)
	waitFor(t, "SERVING once NATS is back", serving(healthpb.HealthCheckResponse_SERVING))
}
