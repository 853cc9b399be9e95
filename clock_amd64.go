package ultcp

// rdtsc reads the time-stamp counter (clock_amd64.s).
func rdtsc() uint64

// haveTSC: the counter exists on every amd64 CPU; tscUsable decides
// whether it may stand in for the monotonic clock.
const haveTSC = true
