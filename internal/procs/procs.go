// Package procs gives Go's scheduler a P for each goroutine of ultcp that
// sleeps in a futex system call.
//
// A node's progress engine (or the gateway's event loop) and the fabric's
// control loop sleep on shared-memory doorbells that Go's netpoller cannot
// take over, so they block their threads, and the scheduler counts a
// thread blocked in a system call as holding its P until sysmon takes the
// P back (after 20 µs, and up to 10 ms once sysmon has slowed down). With
// GOMAXPROCS equal to the CPUs and a goroutine spinning on a ring, every
// such sleep has sysmon retake the P and start a thread that finds no work
// (two futex calls and two context switches per wake-up, sysmon stuck at
// its fastest tick); with GOMAXPROCS 2 both Ps can be held by the two
// sleeps at once, and a goroutine made runnable then waits for sysmon. An
// execution trace of `GOMAXPROCS=2 ultcp bench` showed Accept runnable but
// not running for 1–6 ms at a time, and the connection rate fell to
// 200–1,000 per second; BenchmarkCRR on two CPUs took 57–60 µs per
// connection with GOMAXPROCS 2 and 37–44 µs with 4.
//
// It must never lower GOMAXPROCS, and raises it once per process, however
// many stacks and gateways the process runs.
package procs

import (
	"runtime"
	"sync"
)

// Blocking is how many goroutines of a node (or gateway) sleep in futex
// calls: its event loop and the fabric's control loop.
const Blocking = 2

var once sync.Once

// Reserve raises GOMAXPROCS by Blocking, the first time it is called in
// the process with keep false. The GOMAXPROCS variable is the program's
// parallelism for its own Go code: the extra Ps come on top of it.
func Reserve(keep bool) {
	if keep {
		return
	}
	once.Do(func() {
		cur := runtime.GOMAXPROCS(0)
		if n := Want(cur, keep); n != cur {
			runtime.GOMAXPROCS(n)
		}
	})
}

// Want is the GOMAXPROCS wanted when it is cur.
func Want(cur int, keep bool) int {
	if keep {
		return cur
	}
	return cur + Blocking
}
