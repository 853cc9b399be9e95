package bench

import (
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// cpuEnv names the CPU a child pins itself to (--pin same|split).
const cpuEnv = "ULTCP_BENCH_CPU"

func pinFromEnv() error {
	v := os.Getenv(cpuEnv)
	if v == "" {
		return nil
	}
	cpu, err := strconv.Atoi(v)
	if err != nil {
		return fmt.Errorf("%s=%q is not a CPU number", cpuEnv, v)
	}
	return pinAll(cpu)
}

// pinAll pins every thread of this process to cpu (-1: leaves them alone).
func pinAll(cpu int) error {
	if cpu < 0 {
		return nil
	}
	var set unix.CPUSet
	set.Set(cpu)
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return err
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := unix.SchedSetaffinity(tid, &set); err != nil {
			return fmt.Errorf("pinning thread %d to CPU %d: %w", tid, cpu, err)
		}
	}
	return nil
}

// Pin modes of --pin.
const (
	PinNone  = "none"  // the scheduler places both processes
	PinSame  = "same"  // both processes on CPU 0
	PinSplit = "split" // server on CPU 0, client on CPU 1
)

// cpuFor is the CPU the server (side 0) or client (side 1) is pinned to,
// or -1.
func cpuFor(pin string, side int) int {
	switch pin {
	case PinSame:
		return 0
	case PinSplit:
		return side
	}
	return -1
}
