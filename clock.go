package ultcp

import (
	"os"
	"strings"
	"sync/atomic"
	"time"
)

// The stack's clock. The engine takes the time on every segment in and
// out (RTT samples, the delayed-ACK and keepalive deadlines, auto-tuning),
// two reads per message on a request/response connection. The monotonic
// clock (clock_gettime through the vDSO) costs 20–60 ns a read on a
// virtual machine, as much as a fifth of the stack's whole cost per
// message; the CPU's time-stamp counter costs a third of that. Where the
// kernel itself keeps time with the TSC (its clocksource is "tsc": the
// counter is invariant and synchronized across CPUs, or the kernel would
// not have chosen it), the stack reads the counter and scales it by a
// rate measured against the monotonic clock:
//
//   - for the first calibrateAfter the clock is the monotonic clock, and
//     the rate is then measured over that whole interval (a read pair's
//     error of ~100 ns over 10 ms: 1e-5, 36 ms an hour);
//   - the result is continuous with what was returned before (the
//     counter clock starts at the monotonic reading taken with the rate)
//     and monotonic from then on; nothing ever switches back. Only at the
//     switch may two goroutines' readings disagree, by the calibration
//     error (well under a microsecond); the engine takes a negative RTT
//     sample as the smallest one.
//
// The engine's timers are tens of milliseconds or more and the fabric
// needs no retransmission timer, so an error of 1e-5 in the rate is far
// below anything the engine could notice. Elsewhere (no invariant TSC,
// other architectures) it is the monotonic clock throughout.

// calibrateAfter is how long the monotonic clock serves before the rate
// of the counter is measured.
const calibrateAfter = 10 * time.Millisecond

// stackClock is one stack's clock (see above). Safe for concurrent use.
type stackClock struct {
	epoch time.Time
	t0    time.Duration // monotonic reading paired with c0
	c0    uint64
	scale atomic.Pointer[tscScale] // nil until calibrated (or for good)
	tsc   atomic.Bool              // the counter may be used (still to calibrate while scale is nil)
}

// tscScale maps counter readings to the stack's time: base + (tsc −
// tsc0)·mult / 2^32.
type tscScale struct {
	base time.Duration
	tsc0 uint64
	mult uint64 // nanoseconds per tick, 32.32 fixed point
}

func newStackClock() *stackClock {
	k := &stackClock{epoch: time.Now()}
	if haveTSC && tscUsable() {
		k.t0, k.c0 = k.pair()
		k.tsc.Store(true)
	}
	return k
}

// tscUsable reports whether the kernel keeps time with the TSC.
func tscUsable() bool {
	b, err := os.ReadFile("/sys/devices/system/clocksource/clocksource0/current_clocksource")
	return err == nil && strings.TrimSpace(string(b)) == "tsc"
}

// pair reads the monotonic clock and the counter at (nearly) the same
// moment: the counter is read on both sides of the clock and the pair is
// retried while they lie far apart (a preemption in between).
func (k *stackClock) pair() (time.Duration, uint64) {
	var t time.Duration
	var a, b uint64
	for range 8 {
		a = rdtsc()
		t = time.Since(k.epoch)
		b = rdtsc()
		if b-a < 4096 {
			break
		}
	}
	return t, a + (b-a)/2
}

// now returns the time since the stack started.
func (k *stackClock) now() time.Duration {
	if s := k.scale.Load(); s != nil {
		d := rdtsc() - s.tsc0
		hi, lo := d>>32, d&0xffffffff
		return s.base + time.Duration(hi*s.mult+(lo*s.mult)>>32)
	}
	t := time.Since(k.epoch)
	if t-k.t0 >= calibrateAfter && k.tsc.Load() {
		k.calibrate()
	}
	return t
}

// calibrate measures the counter's rate over the interval since the
// clock was made and switches to it. Concurrent callers may each compute
// a rate; the first to store wins, so the clock is set once.
func (k *stackClock) calibrate() {
	t1, c1 := k.pair()
	if c1 <= k.c0 || t1 <= k.t0 {
		k.tsc.Store(false) // a counter that does not advance: keep the monotonic clock
		return
	}
	mult := (uint64(t1-k.t0) << 32) / (c1 - k.c0)
	if mult == 0 {
		k.tsc.Store(false)
		return
	}
	k.scale.CompareAndSwap(nil, &tscScale{base: t1, tsc0: c1, mult: mult})
}
