package procs

import (
	"runtime"
	"testing"
)

func TestWantAddsAPForEachBlockingGoroutine(t *testing.T) {
	if got := Want(2, false); got != 4 {
		t.Errorf("Want(2) = %d, want 4", got)
	}
	if got := Want(1, false); got != 3 {
		t.Errorf("Want(1) = %d, want 3", got)
	}
}

func TestWantKeepsItWhenAsked(t *testing.T) {
	if got := Want(2, true); got != 2 {
		t.Errorf("Want(2, keep) = %d, want 2", got)
	}
}

func TestReserveRaisesOncePerProcess(t *testing.T) {
	before := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { runtime.GOMAXPROCS(before) })
	Reserve(true) // kept: no change, and the once is not spent
	if got := runtime.GOMAXPROCS(0); got != before {
		t.Fatalf("Reserve(keep) changed GOMAXPROCS %d -> %d", before, got)
	}
	Reserve(false)
	Reserve(false)
	if got := runtime.GOMAXPROCS(0); got != before+Blocking {
		t.Fatalf("GOMAXPROCS %d after two Reserves, want %d (once)", got, before+Blocking)
	}
}
