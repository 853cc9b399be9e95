package lb

import (
	"math"
	"math/bits"
	"time"
)

// Histogram counts durations in log-linear buckets: exact below 128 ns,
// then 64 buckets per power of two (a bucket is at most 1/64 = 1.6 % wide),
// up to the largest time.Duration. Record allocates nothing, so the load
// generator can record from its hot loop, and two histograms merge by
// adding counts (one per worker, merged at the end).
type Histogram struct {
	counts   [histBuckets]uint64
	n        uint64
	sum      float64
	min, max time.Duration
}

const (
	histLinear  = 128 // values below are their own bucket
	histSub     = 64  // buckets per power of two above
	histBuckets = histLinear + (64-7)*histSub
)

func bucketOf(v uint64) int {
	if v < histLinear {
		return int(v)
	}
	e := bits.Len64(v) // ≥ 8
	shift := e - 7
	top := v >> shift // in [64, 127]
	return histLinear + (e-8)*histSub + int(top-histSub)
}

// bucketLow is the smallest value of bucket i; bucketHigh the largest.
func bucketLow(i int) uint64 {
	if i < histLinear {
		return uint64(i)
	}
	k := i - histLinear
	e := k/histSub + 8
	top := uint64(k%histSub + histSub)
	return top << (e - 7)
}

func bucketHigh(i int) uint64 {
	if i < histLinear {
		return uint64(i)
	}
	if i == histBuckets-1 {
		return math.MaxInt64
	}
	return bucketLow(i+1) - 1
}

// Record counts one duration; negative durations count as zero.
func (h *Histogram) Record(d time.Duration) {
	d = max(d, 0)
	h.counts[bucketOf(uint64(d))]++
	if h.n == 0 || d < h.min {
		h.min = d
	}
	if d > h.max {
		h.max = d
	}
	h.n++
	h.sum += float64(d)
}

// Merge adds o's counts to h.
func (h *Histogram) Merge(o *Histogram) {
	if o.n == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	h.max = max(h.max, o.max)
	h.n += o.n
	h.sum += o.sum
}

// Count is the number of durations recorded.
func (h *Histogram) Count() uint64 { return h.n }

// Mean is their average (0 when empty).
func (h *Histogram) Mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.sum / float64(h.n))
}

// Max is the largest duration recorded.
func (h *Histogram) Max() time.Duration { return h.max }

// Quantile returns the q-quantile (q in [0, 1]): the upper edge of the
// bucket that holds the ⌈q·n⌉-th smallest duration, clamped to the
// largest recorded, so it never understates a tail.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	q = min(max(q, 0), 1)
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = max(rank, 1)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return min(time.Duration(bucketHigh(i)), h.max)
		}
	}
	return h.max
}

// CDFPoint is one step of the cumulative distribution: the fraction of
// durations at or below Latency.
type CDFPoint struct {
	Latency  time.Duration
	Fraction float64
}

// Above is the fraction of the recorded durations longer than d (to the
// histogram's resolution: a bucket counts whole, by its lower edge).
func (h *Histogram) Above(d time.Duration) float64 {
	if h.n == 0 {
		return 0
	}
	var n uint64
	for i := bucketOf(uint64(max(d, 0))) + 1; i < histBuckets; i++ {
		n += h.counts[i]
	}
	return float64(n) / float64(h.n)
}

// CDF returns the distribution's steps, one per non-empty bucket, at the
// bucket's upper edge (clamped to the largest recorded).
func (h *Histogram) CDF() []CDFPoint {
	var pts []CDFPoint
	var seen uint64
	for i, c := range h.counts {
		if c == 0 {
			continue
		}
		seen += c
		pts = append(pts, CDFPoint{min(time.Duration(bucketHigh(i)), h.max), float64(seen) / float64(h.n)})
	}
	return pts
}
