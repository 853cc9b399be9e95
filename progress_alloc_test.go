package ultcp

import (
	"runtime"
	"testing"
	"time"
)

// The progress engine sleeps with one reused, Done-free context and is
// woken with fabric's Node.Wake: a wake-up allocates nothing (it used to
// allocate a cancellable context, its wrapper and an AfterFunc
// registration every time).
func TestEngineWakeupsAllocateNothing(t *testing.T) {
	c, _ := pair(t)
	s := c.s
	kick := func() {
		s.mu.Lock()
		if s.kick != nil {
			s.kick()
		}
		s.mu.Unlock()
	}
	for range 20 { // warm up: the engine's buffers reach their size
		kick()
		time.Sleep(200 * time.Microsecond)
	}
	var m0, m1 runtime.MemStats
	w0 := s.stats.engineWakeups.Load()
	runtime.ReadMemStats(&m0)
	for range 300 {
		kick()
		time.Sleep(200 * time.Microsecond)
	}
	runtime.ReadMemStats(&m1)
	wakeups := s.stats.engineWakeups.Load() - w0
	allocs := m1.Mallocs - m0.Mallocs
	if wakeups < 100 {
		t.Fatalf("only %d engine wake-ups for 300 kicks", wakeups)
	}
	// Other goroutines of the test binary may allocate a little; a
	// context per wake-up would be 2 or more per wake-up.
	if per := float64(allocs) / float64(wakeups); per > 0.2 {
		t.Fatalf("%d allocations for %d engine wake-ups (%.2f each), want none", allocs, wakeups, per)
	}
}
