package app

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// brokerHealth follows whether the cluster's broker (NATS) is reachable.
// An unreachable broker degrades a node but leaves it SERVING: it still
// stores sends and serves its own clients, and every node loses the broker
// at once, so reporting NOT_SERVING would have a load balancer take the
// whole cluster out (docs/operations.md, "Failures").
type brokerHealth struct {
	log *slog.Logger

	mu    sync.Mutex // orders the episodes' log lines
	down  atomic.Bool
	since time.Time // start of the current outage; under mu
}

// observe notes the outcome of a ping of the broker, logging once when an
// outage starts and once when it ends.
func (b *brokerHealth) observe(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch down := err != nil; {
	case down && !b.down.Load():
		b.since = time.Now()
		b.down.Store(true)
		b.log.Warn("broker unreachable: degraded, still serving; other nodes' messages come from the store, their presence and typing stop", "err", err)
	case !down && b.down.Load():
		b.down.Store(false)
		b.log.Info("broker reachable again: catching up from the store", "outage", time.Since(b.since).Round(time.Millisecond))
	}
}

// detail describes the broker's state for /healthz: "" when reachable.
func (b *brokerHealth) detail() string {
	if !b.down.Load() {
		return ""
	}
	b.mu.Lock()
	since := b.since
	b.mu.Unlock()
	return "degraded: broker unreachable since " + since.UTC().Format(time.RFC3339) +
		": sends are stored and delivered on this node; other nodes' presence and typing are not"
}

// collector is the gauge parley_broker_connected.
func (b *brokerHealth) collector() prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "parley_broker_connected",
		Help: "1 while the cluster's broker is reachable, 0 while this node is degraded without it; absent without a broker.",
	}, func() float64 {
		if b.down.Load() {
			return 0
		}
		return 1
	})
}
