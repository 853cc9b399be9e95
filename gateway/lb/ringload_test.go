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
