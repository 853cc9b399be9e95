package lb

import (
	"sync"
	"testing"
)

type fakeRing struct{ occ, cons int }

func (r *fakeRing) RingOccupancy() int   { return r.occ }
func (r *fakeRing) RingConsumed() uint64 { return uint64(r.cons) }

func TestRingLoadSumsOpenRings(t *testing.T) {
	var l RingLoad
	a, b := &fakeRing{occ: 100, cons: 1000}, &fakeRing{occ: 50, cons: 20}
	l.Add(a)
	l.Add(b)
	if occ, cons, n := l.Occupancy(), l.Consumed(), l.Conns(); occ != 150 || cons != 1020 || n != 2 {
		t.Fatalf("occupancy %d, consumed %d, conns %d; want 150, 1020, 2", occ, cons, n)
	}
}

func TestRingLoadKeepsWhatRemovedRingsConsumed(t *testing.T) {
	var l RingLoad
	a, b := &fakeRing{occ: 100, cons: 1000}, &fakeRing{occ: 50, cons: 20}
	l.Add(a)
	l.Add(b)
	l.Remove(a)
	if occ, cons, n := l.Occupancy(), l.Consumed(), l.Conns(); occ != 50 || cons != 1020 || n != 1 {
		t.Fatalf("after removing a: occupancy %d, consumed %d, conns %d; want 50, 1020, 1", occ, cons, n)
	}
	l.Remove(a) // twice: nothing
	if cons := l.Consumed(); cons != 1020 {
		t.Fatalf("consumed %d after a second Remove, want 1020", cons)
	}
}

func TestRingLoadConsumedNeverGoesBackwards(t *testing.T) {
	var l RingLoad
	a := &fakeRing{cons: 500}
	l.Add(a)
	l.Consumed()
	a.cons = 10 // a hostile tail
	if cons := l.Consumed(); cons != 500 {
		t.Fatalf("consumed %d after the tail went back, want 500", cons)
	}
}

func TestRingLoadNegativeOccupancyCountsAsZero(t *testing.T) {
	var l RingLoad
	l.Add(&fakeRing{occ: -7})
	if occ := l.Occupancy(); occ != 0 {
		t.Fatalf("occupancy %d, want 0", occ)
	}
}

func TestRingLoadIsSafeForConcurrentUse(t *testing.T) {
	var l RingLoad
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				r := &fakeRing{occ: 1, cons: 1}
				l.Add(r)
				l.Occupancy()
				l.Remove(r)
			}
		}()
	}
	wg.Wait()
	if n, cons := l.Conns(), l.Consumed(); n != 0 || cons != 800 {
		t.Fatalf("conns %d, consumed %d after 800 add/remove pairs; want 0 and 800", n, cons)
	}
}

// Drained counts, per ring, only what it consumed of the bytes it held
// at the previous call: a request that waited for the application, not
// a handshake that arrived and was taken in between two readings.
func TestRingLoadDrainedCountsOnlyBytesThatWaited(t *testing.T) {
	var l RingLoad
	waiting, fresh := &fakeRing{occ: 100, cons: 60}, &fakeRing{occ: 0, cons: 0}
	l.Add(waiting)
	l.Add(fresh)
	if got := l.Drained(); got != 0 {
		t.Fatalf("first Drained = %d, want 0 (nothing seen before)", got)
	}
	// waiting: its 100 bytes taken, plus 50 that arrived and were taken
	// at once; fresh: a 60-byte handshake taken in on arrival.
	waiting.occ, waiting.cons = 0, 60+150
	fresh.cons = 60
	if got := l.Drained(); got != 100 {
		t.Fatalf("Drained = %d, want 100 (only the bytes held at the last call)", got)
	}
}

// A ring removed while it held bytes counts what it consumed of them:
// the flow ended, its data is gone from the member.
func TestRingLoadDrainedCountsRemovedRing(t *testing.T) {
	var l RingLoad
	r := &fakeRing{occ: 80, cons: 0}
	l.Add(r)
	l.Drained()
	r.occ, r.cons = 0, 80
	l.Remove(r)
	if got := l.Drained(); got != 80 {
		t.Fatalf("Drained = %d after removing a ring that took its 80 bytes, want 80", got)
	}
}

// A tail that goes backwards drains nothing (and Drained never
// decreases).
func TestRingLoadDrainedIgnoresTailGoingBack(t *testing.T) {
	var l RingLoad
	r := &fakeRing{occ: 100, cons: 500}
	l.Add(r)
	l.Drained()
	r.cons = 10
	if got := l.Drained(); got != 0 {
		t.Fatalf("Drained = %d after the tail went back, want 0", got)
	}
}
