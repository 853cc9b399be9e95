package ultcp

import "testing"

func TestGOMAXPROCSGetsAPForEachBlockingGoroutine(t *testing.T) {
	if got := gomaxprocsFor(&Config{}, "", 2); got != 4 {
		t.Errorf("2 CPUs, nothing set: GOMAXPROCS %d, want 4", got)
	}
}

func TestGOMAXPROCSFromTheEnvironmentIsKept(t *testing.T) {
	if got := gomaxprocsFor(&Config{}, "3", 3); got != 3 {
		t.Errorf("GOMAXPROCS=3 in the environment: %d, want 3", got)
	}
}

func TestKeepGOMAXPROCSKeepsIt(t *testing.T) {
	if got := gomaxprocsFor(&Config{KeepGOMAXPROCS: true}, "", 2); got != 2 {
		t.Errorf("KeepGOMAXPROCS: %d, want 2", got)
	}
}
