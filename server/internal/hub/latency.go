package hub

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// latencies are the hub's histograms of where a message waits inside the
// server, so that a delivery latency measured by a client can be split
// into the server's part and the rest: the wait for the store's answer
// to a send, and the wait of a connection with frames queued for a turn
// with the hub's writers. Observing costs a clock read and an atomic add.
type latencies struct {
	storeWait prometheus.Histogram
	lineWait  prometheus.Histogram
}

// latencyBuckets run from 50 µs to ~1.6 s, doubling.
var latencyBuckets = prometheus.ExponentialBuckets(50e-6, 2, 16)

func newLatencies() latencies {
	return latencies{
		storeWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "parley_send_store_wait_seconds",
			Help:    "From a send's queueing in the store to the store's answer being taken (the batch's wait, its commit and the handler's wake-up).",
			Buckets: latencyBuckets,
		}),
		lineWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "parley_write_line_wait_seconds",
			Help:    "How long a connection with frames queued waited in line for one of the hub's writers to write them.",
			Buckets: latencyBuckets,
		}),
	}
}

// Collectors returns the hub's Prometheus histograms (see latencies).
func (h *Hub) Collectors() []prometheus.Collector {
	return []prometheus.Collector{h.lat.storeWait, h.lat.lineWait}
}

// since returns the seconds from t to now.
func since(t time.Time) float64 { return time.Since(t).Seconds() }
