package ultcp

import (
	"os"
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
// So a Stack gives the runtime a P for each of those two goroutines: it
// raises GOMAXPROCS by two, once per process, unless the program set
// GOMAXPROCS (the environment variable) or Config.KeepGOMAXPROCS. When
// they are not blocked, the extra Ps let up to two more goroutines run
// than there are CPUs, for the moments the engine works.
const blockingGoroutines = 2

var gomaxprocsOnce sync.Once

func raiseGOMAXPROCS(cfg *Config) {
	gomaxprocsOnce.Do(func() {
		cur := runtime.GOMAXPROCS(0)
		if n := gomaxprocsFor(cfg, os.Getenv("GOMAXPROCS"), cur); n != cur {
			runtime.GOMAXPROCS(n)
		}
	})
}

// gomaxprocsFor is the GOMAXPROCS a stack wants, given the environment
// variable's value and the current setting.
func gomaxprocsFor(cfg *Config, env string, cur int) int {
	if cfg.KeepGOMAXPROCS || env != "" {
		return cur
	}
	return cur + blockingGoroutines
}
