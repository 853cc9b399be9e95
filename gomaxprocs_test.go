package ultcp

import "testing"

func TestGOMAXPROCSGetsAPForEachBlockingGoroutine(t *testing.T) {
	if got := gomaxprocsFor(&Config{}, 2); got != 4 {
		t.Errorf("GOMAXPROCS 2: the stack wants %d, want 4", got)
	}
	if got := gomaxprocsFor(&Config{}, 1); got != 3 {
		t.Errorf("GOMAXPROCS 1: the stack wants %d, want 3", got)
	}
}

func TestKeepGOMAXPROCSKeepsIt(t *testing.T) {
	if got := gomaxprocsFor(&Config{KeepGOMAXPROCS: true}, 2); got != 2 {
		t.Errorf("KeepGOMAXPROCS: %d, want 2", got)
	}
}
