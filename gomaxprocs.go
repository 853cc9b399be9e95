package ultcp

import (
	"runtime"
	"sync"
)

// The stack has two goroutines that sleep in futex system calls: the
// progress engine (fabric.Node.Wait) and the node's control-ring event
// loop. The shared-memory doorbells they sleep on cannot be handed to Go's
// netpoller, so they block their threads, and Go's scheduler counts a
// thread blocked in a system call as holding its P until sysmon takes the
// P back (after 20 µs and up to 10 ms). With GOMAXPROCS equal to the CPUs
// and a goroutine spinning on a ring, every such sleep has sysmon retake
// the P and start a thread to look for work, which finds none and sleeps
// again: two futex calls and two context switches per wake-up of the
// engine, and sysmon itself stuck at its fastest, 20 µs, tick.
// Measured with BenchmarkCRR on two CPUs: 57–60 µs per connection with
// GOMAXPROCS 2, 37–39 µs with 4, and 3.3 against 2.4 context switches per
// connection.
//
// Worse, with GOMAXPROCS 2 both Ps can be held by those two sleeps at
// once: a goroutine made runnable then (a spinning Accept that yielded)
// has no P until sysmon, in its slow mode, retakes one, up to 10 ms later.
// An execution trace of `GOMAXPROCS=2 ultcp bench` showed Accept runnable
// but not running for 1–6 ms at a time, and the connection rate fell to
// 200–1,000 per second.
//
// So a Stack gives the runtime a P for each of those two goroutines: it
// raises GOMAXPROCS by two, once per process, unless Config.KeepGOMAXPROCS
// says otherwise. The GOMAXPROCS variable is the program's parallelism for
// its own Go code, and the extra Ps come on top of whatever it says. When
// the two goroutines are not asleep, the extra Ps let up to two more
// goroutines run than the setting, for the moments the engine works.
const blockingGoroutines = 2

var gomaxprocsOnce sync.Once

func raiseGOMAXPROCS(cfg *Config) {
	gomaxprocsOnce.Do(func() {
		cur := runtime.GOMAXPROCS(0)
		if n := gomaxprocsFor(cfg, cur); n != cur {
			runtime.GOMAXPROCS(n)
		}
	})
}

// gomaxprocsFor is the GOMAXPROCS a stack wants, given the current one.
func gomaxprocsFor(cfg *Config, cur int) int {
	if cfg.KeepGOMAXPROCS {
		return cur
	}
	return cur + blockingGoroutines
}
