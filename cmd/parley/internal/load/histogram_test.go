package load

import (
	"math/rand/v2"
	"sort"
	"testing"
	"time"
)

// Every value falls in a bucket whose range holds it and is at most 1/128
// of the value wide.
func TestHistogramBuckets(t *testing.T) {
	prevHi := int64(-1)
	for i := range histBuckets {
		lo, hi := bucketRange(i)
		if lo != prevHi+1 || hi < lo {
			t.Fatalf("bucket %d = [%d, %d] after %d", i, lo, hi, prevHi)
		}
		if i >= 2*histSub && float64(hi-lo+1)/float64(lo) > 1.0/histSub+1e-9 {
			t.Fatalf("bucket %d = [%d, %d] is too wide", i, lo, hi)
		}
		for _, v := range []int64{lo, hi, (lo + hi) / 2} {
			if b := bucketOf(v); b != i {
				t.Fatalf("bucketOf(%d) = %d, want %d", v, b, i)
			}
		}
		prevHi = hi
	}
	if b := bucketOf(1 << 50); b != histBuckets-1 {
		t.Errorf("a huge value lands in bucket %d", b)
	}
}

// Quantiles agree with exact ones within the bucket width.
func TestHistogramQuantiles(t *testing.T) {
	h := newHistogram(4)
	var vals []int64
	for i := range 100000 {
		v := int64(rand.ExpFloat64() * float64(3*time.Millisecond))
		vals = append(vals, v)
		h.record(i, time.Duration(v))
	}
	sort.Slice(vals, func(i, j int) bool { return vals[i] < vals[j] })
	s := summarize(h.snapshot(), time.Duration(h.max.Load()))
	for _, c := range []struct {
		q   float64
		got float64
	}{{0.5, s.P50}, {0.9, s.P90}, {0.99, s.P99}, {0.999, s.P999}} {
		exact := ms(time.Duration(vals[int(c.q*float64(len(vals)))-1]))
		if c.got < exact*0.99 || c.got > exact*1.02 {
			t.Errorf("p%v = %.4f ms, exact %.4f ms", c.q*100, c.got, exact)
		}
	}
	if s.Count != 100000 || s.Max != ms(time.Duration(vals[len(vals)-1])) {
		t.Errorf("count %d max %v", s.Count, s.Max)
	}
}
