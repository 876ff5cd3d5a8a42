package app

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/parleychat/parley/server/internal/hub"
	"github.com/parleychat/parley/server/internal/transport"
)

// metrics exposes the server's state in Prometheus format. Hub counters are
// read when scraped, so the message path pays nothing for them.
type metrics struct {
	reg       *prometheus.Registry
	grpcConns transport.OpenConns
}

func newMetrics(h *hub.Hub, extra ...prometheus.Collector) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.reg.MustRegister(
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		// The scheduler's metrics too: go_sched_latencies_seconds (how long
		// goroutines wait runnable for a thread) is where a busy server's
		// tail shows before any of ours (docs/operations.md).
		collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(collectors.MetricsScheduler)),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "parley_grpc_connections", Help: "Open HTTP/2 connections on grpc-go's transport."},
			func() float64 { return float64(m.grpcConns.Count()) }),
	)
	stat := func(f func(hub.Stats) float64) func() float64 { return func() float64 { return f(h.Stats()) } }
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "parley_streams", Help: "Open Join and Subscribe streams."},
			stat(func(s hub.Stats) float64 { return float64(s.Conns) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "parley_rooms_live", Help: "Rooms loaded on this server: rooms with streams, presence or sends in flight (idle rooms are unloaded)."},
			stat(func(s hub.Stats) float64 { return float64(s.Rooms) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "parley_queue_bytes", Help: "Bytes waiting in all streams' outbound queues."},
			stat(func(s hub.Stats) float64 { return float64(s.QueuedBytes) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "parley_messages_total", Help: "Messages delivered to rooms."},
			stat(func(s hub.Stats) float64 { return float64(s.Messages) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "parley_deliveries_total", Help: "Message frames queued for streams."},
			stat(func(s hub.Stats) float64 { return float64(s.Deliveries) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "parley_slow_consumers_total", Help: "Streams cut off for falling too far behind."},
			stat(func(s hub.Stats) float64 { return float64(s.SlowConsumers) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "parley_cluster_messages_in_total", Help: "Messages received from other nodes through the broker."},
			stat(func(s hub.Stats) float64 { return float64(s.RemoteMessages) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "parley_gap_fills_total", Help: "Messages read from the store because the broker had not delivered them in time."},
			stat(func(s hub.Stats) float64 { return float64(s.GapFills) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "parley_read_markers_pending", Help: "Read markers marked but not stored yet (stored in batches every --read-marker-flush)."},
			stat(func(s hub.Stats) float64 { return float64(s.PendingReadMarks) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "parley_read_marks_in_memory_total", Help: "Read marks answered and counted from a live room's recent entries, without reading the store."},
			stat(func(s hub.Stats) float64 { return float64(s.MarksInMemory) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "parley_read_marks_from_store_total", Help: "Read marks that read the store: a room not live on this server, a marker not known here yet, or a long unread stretch."},
			stat(func(s hub.Stats) float64 { return float64(s.MarksFromStore) })),
	)
	m.reg.MustRegister(extra...)
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// storeCollectors returns the store's own metrics if it has any.
func storeCollectors(st any) []prometheus.Collector {
	if c, ok := st.(interface{ Collectors() []prometheus.Collector }); ok {
		return c.Collectors()
	}
	return nil
}
