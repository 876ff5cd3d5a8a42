package load

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// histogram records durations in log-linear buckets, HDR style: exact below
// 256 ns, then 128 buckets per power of two, so a recorded value is known
// within 0.8%. Recording is one atomic add on a bucket of the caller's
// shard, with no lock, so thousands of receiver goroutines can record into
// it at once.
//
// Rejected: github.com/HdrHistogram/hdrhistogram-go. It is not safe for
// concurrent use, so it would need a lock on the receive path or one
// histogram per stream, which costs ~130 KB each at 3 significant digits
// (1.3 GB for 10,000 streams).
type histogram struct {
	shards []histShard
	max    atomic.Int64
}

const (
	histSubBits = 7
	histSub     = 1 << histSubBits // buckets per power of two
	histMaxBits = 42               // values up to 2^42 ns (73 min); larger ones are clamped
	histBuckets = 2*histSub + (histMaxBits-histSubBits-1)*histSub
)

type histShard struct {
	counts [histBuckets]atomic.Uint64
	_      [64]byte // keep shards' hot buckets off each other's cache lines
}

func newHistogram(shards int) *histogram {
	return &histogram{shards: make([]histShard, max(1, shards))}
}

func bucketOf(v int64) int {
	if v < 0 {
		v = 0
	}
	u := uint64(v)
	if u < 2*histSub {
		return int(u)
	}
	e := bits.Len64(u) - (histSubBits + 1) // u>>e is in [128, 256)
	i := 2*histSub + (e-1)*histSub + int(u>>e) - histSub
	return min(i, histBuckets-1)
}

// bucketRange returns the smallest and largest value of bucket i.
func bucketRange(i int) (lo, hi int64) {
	if i < 2*histSub {
		return int64(i), int64(i)
	}
	e := (i-2*histSub)/histSub + 1
	m := int64((i-2*histSub)%histSub + histSub)
	return m << e, (m+1)<<e - 1
}

// record adds one value to shard (any int; taken modulo the shard count).
func (h *histogram) record(shard int, v time.Duration) {
	h.shards[shard%len(h.shards)].counts[bucketOf(int64(v))].Add(1)
	for {
		m := h.max.Load()
		if int64(v) <= m || h.max.CompareAndSwap(m, int64(v)) {
			return
		}
	}
}

// snapshot returns the merged bucket counts.
func (h *histogram) snapshot() []uint64 {
	out := make([]uint64, histBuckets)
	for s := range h.shards {
		for i := range out {
			out[i] += h.shards[s].counts[i].Load()
		}
	}
	return out
}

// latencySummary is the report's view of a histogram, in milliseconds.
type latencySummary struct {
	Count uint64  `json:"count"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p99_9_ms"`
	Max   float64 `json:"max_ms"`
}

// summarize computes quantiles from bucket counts; maxV is the exact
// largest value if known (else 0: the top bucket's bound is used).
func summarize(counts []uint64, maxV time.Duration) latencySummary {
	var total uint64
	for _, c := range counts {
		total += c
	}
	s := latencySummary{Count: total}
	if total == 0 {
		return s
	}
	if maxV <= 0 {
		maxV = quantile(counts, total, 1)
	}
	// A bucket's upper bound may lie above the largest value recorded.
	q := func(p float64) float64 { return ms(min(quantile(counts, total, p), maxV)) }
	s.P50, s.P90, s.P99, s.P999, s.Max = q(0.50), q(0.90), q(0.99), q(0.999), ms(maxV)
	return s
}

// quantile returns the value at quantile q: the upper bound of the bucket
// holding the ceil(q*total)-th value, so it never understates.
func quantile(counts []uint64, total uint64, q float64) time.Duration {
	rank := uint64(q*float64(total) + 0.999999)
	rank = max(1, min(rank, total))
	var seen uint64
	for i, c := range counts {
		seen += c
		if seen >= rank {
			_, hi := bucketRange(i)
			return time.Duration(hi)
		}
	}
	return 0
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

// diffCounts returns a-b bucket by bucket (a is the later snapshot).
func diffCounts(a, b []uint64) []uint64 {
	out := make([]uint64, len(a))
	for i := range a {
		out[i] = a[i] - b[i]
	}
	return out
}
