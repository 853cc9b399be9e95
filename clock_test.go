package ultcp

import (
	"testing"
	"time"
)

// Once calibrated, the counter clock agrees with the monotonic clock (to
// a small fraction of the elapsed time) and never goes back.
func TestStackClockTracksTheMonotonicClockAfterCalibration(t *testing.T) {
	k := newStackClock()
	if !k.tsc.Load() {
		t.Skip("the kernel does not keep time with the TSC here")
	}
	for k.scale.Load() == nil {
		if time.Since(k.epoch) > 10*time.Second {
			t.Fatal("the clock never calibrated")
		}
		k.now()
		time.Sleep(time.Millisecond)
	}
	prev := k.now()
	end := time.Now().Add(100 * time.Millisecond)
	for time.Now().Before(end) {
		// Bracketed by two monotonic readings, so that a preemption
		// between the reads widens the interval instead of failing.
		lo := time.Since(k.epoch)
		got := k.now()
		hi := time.Since(k.epoch)
		if got < prev {
			t.Fatalf("the clock went back from %v to %v", prev, got)
		}
		prev = got
		tol := 20*time.Microsecond + hi/10000
		if got < lo-tol || got > hi+tol {
			t.Fatalf("counter clock %v outside the monotonic clock's [%v, %v] (± %v)", got, lo, hi, tol)
		}
	}
}

func BenchmarkStackClock(b *testing.B) {
	k := newStackClock()
	for k.scale.Load() == nil && k.tsc.Load() {
		k.now()
		time.Sleep(time.Millisecond)
	}
	b.ReportAllocs()
	var sink time.Duration
	for b.Loop() {
		sink += k.now()
	}
	_ = sink
}
