package lb

import (
	"testing"
	"time"
)

func TestHistogramIsExactBelow128ns(t *testing.T) {
	var h Histogram
	for _, d := range []time.Duration{3, 5, 5, 100} {
		h.Record(d)
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0, 3}, {0.25, 3}, {0.5, 5}, {0.75, 5}, {1, 100}} {
		if got := h.Quantile(c.q); got != c.want {
			t.Errorf("Quantile(%v) = %v, want %v", c.q, got, c.want)
		}
	}
}

func TestHistogramQuantileWithinOneBucket(t *testing.T) {
	var h Histogram
	for i := 1; i <= 1000; i++ {
		h.Record(time.Duration(i) * time.Microsecond)
	}
	// The 500th of 1..1000 µs is 500 µs; a bucket is at most 1/64 wide
	// and Quantile returns its upper edge.
	if got := h.Quantile(0.5); got < 500*time.Microsecond || got > 500*time.Microsecond*65/64 {
		t.Fatalf("median %v, want 500µs to 507.8µs", got)
	}
	if got := h.Quantile(1); got != time.Millisecond {
		t.Fatalf("max quantile %v, want 1ms (clamped to the largest recorded)", got)
	}
	if got := h.Count(); got != 1000 {
		t.Fatalf("count %d, want 1000", got)
	}
}

func TestHistogramBucketsCoverEveryValueOnce(t *testing.T) {
	for i := 0; i < histBuckets-1; i++ {
		if lo, hi, next := bucketLow(i), bucketHigh(i), bucketLow(i+1); lo > hi || hi+1 != next {
			t.Fatalf("bucket %d is [%d, %d], next starts at %d", i, lo, hi, next)
		}
		if bucketOf(bucketLow(i)) != i || bucketOf(bucketHigh(i)) != i {
			t.Fatalf("bucket %d's edges map to %d and %d", i, bucketOf(bucketLow(i)), bucketOf(bucketHigh(i)))
		}
	}
}

func TestHistogramNegativeCountsAsZero(t *testing.T) {
	var h Histogram
	h.Record(-time.Second)
	if got := h.Quantile(1); got != 0 {
		t.Fatalf("quantile of a negative record %v, want 0", got)
	}
}

func TestHistogramMergeAddsCounts(t *testing.T) {
	var a, b Histogram
	a.Record(10 * time.Millisecond)
	b.Record(1 * time.Millisecond)
	b.Record(2 * time.Millisecond)
	a.Merge(&b)
	if a.Count() != 3 || a.Max() != 10*time.Millisecond {
		t.Fatalf("merged count %d max %v, want 3 and 10ms", a.Count(), a.Max())
	}
	if got := a.Quantile(0); got < time.Millisecond || got > time.Millisecond*65/64 {
		t.Fatalf("merged minimum quantile %v, want ~1ms", got)
	}
}

func TestHistogramRecordDoesNotAllocate(t *testing.T) {
	var h Histogram
	if n := testing.AllocsPerRun(100, func() { h.Record(123 * time.Microsecond) }); n != 0 {
		t.Fatalf("Record allocates %v times", n)
	}
}

func BenchmarkHistogramRecord(b *testing.B) {
	var h Histogram
	b.ReportAllocs()
	d := time.Duration(1)
	for b.Loop() {
		d = d*7 + 13
		h.Record(d % time.Second)
	}
}

// Above counts what lies beyond the bucket of d.
func TestHistogramAbove(t *testing.T) {
	var h Histogram
	for _, d := range []time.Duration{time.Millisecond, 2 * time.Millisecond, 30 * time.Millisecond, 60 * time.Millisecond} {
		h.Record(d)
	}
	if got := h.Above(20 * time.Millisecond); got != 0.5 {
		t.Fatalf("Above(20ms) = %v, want 0.5", got)
	}
	if got := h.Above(time.Second); got != 0 {
		t.Fatalf("Above(1s) = %v, want 0", got)
	}
	var empty Histogram
	if got := empty.Above(0); got != 0 {
		t.Fatalf("empty Above = %v, want 0", got)
	}
}
