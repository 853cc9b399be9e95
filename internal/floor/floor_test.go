package floor

import (
	"errors"
	"os"
	"testing"
	"time"

	"github.com/ultcp/ultcp/internal/proc"
)

func TestMain(m *testing.M) {
	proc.RunChild()
	os.Exit(m.Run())
}

func startRing(t *testing.T, cfg Config) *Ring {
	t.Helper()
	r, err := StartRing(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func startCMA(t *testing.T) *CMA {
	t.Helper()
	c, err := StartCMA(Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// 100,000 does not divide the 4 MiB ring, so blocks straddle the end of
// the ring at ever-changing offsets; 240 blocks wrap it five times.
func TestRingDeliversBlocksInOrderAcrossWrap(t *testing.T) {
	r := startRing(t, Config{})
	s, err := r.Run(100_000, 240*100_000, true)
	if err != nil {
		t.Fatal(err)
	}
	if s.Bytes != 24_000_000 {
		t.Errorf("Bytes = %d, want 24000000", s.Bytes)
	}
}

// Runs after the first continue from where the indexes were left, with a
// block size that does not divide the previous one.
func TestRingRunsBackToBackWithDifferentBlockSizes(t *testing.T) {
	r := startRing(t, Config{})
	for _, block := range []int{72, 4096, 1 << 20, 72} {
		if _, err := r.Run(block, int64(block)*int64(6<<20/block), true); err != nil {
			t.Fatalf("block %d: %v", block, err)
		}
	}
}

func TestRingReportsCPUOfBothSides(t *testing.T) {
	r := startRing(t, Config{})
	s, err := r.Run(64<<10, 256<<20, false)
	if err != nil {
		t.Fatal(err)
	}
	// Moving 256 MiB costs each side at least one copy of it; a zero here
	// would mean the child's figure never arrived.
	if s.SenderCPU <= 0 || s.ReceiverCPU <= 0 || s.Elapsed <= 0 {
		t.Errorf("SenderCPU %v, ReceiverCPU %v, Elapsed %v: want all > 0", s.SenderCPU, s.ReceiverCPU, s.Elapsed)
	}
}

func TestRingRejectsBlockLargerThanRing(t *testing.T) {
	r := startRing(t, Config{})
	if _, err := r.Run(RingSize+1, RingSize+1, false); err == nil {
		t.Fatal("Run accepted a block larger than the ring")
	}
}

func TestRunRejectsEmptyBlock(t *testing.T) {
	r := startRing(t, Config{})
	if _, err := r.Run(0, 100, false); err == nil {
		t.Fatal("Run accepted a block of 0 bytes")
	}
}

func TestCMAPlainCopiesSenderBuffer(t *testing.T) {
	c := startCMA(t)
	if _, err := c.Run(1<<20, 8<<20, false, true); err != nil {
		t.Fatal(err)
	}
}

func TestCMAHandshakeDeliversEachTransferInOrder(t *testing.T) {
	c := startCMA(t)
	for _, block := range []int{64, 64 << 10} {
		if _, err := c.Run(block, int64(block)*1000, true, true); err != nil {
			t.Fatalf("block %d: %v", block, err)
		}
	}
}

func TestPingPongSpinningGivesOrderedStatistics(t *testing.T) {
	p, err := StartPingPong(Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	l, err := p.Run(20, 1000, false)
	if err != nil {
		t.Fatal(err)
	}
	if !(l.MinNs > 0 && l.MinNs <= l.MedianNs) {
		t.Errorf("min %.1f ns, median %.1f ns: want 0 < min <= median", l.MinNs, l.MedianNs)
	}
}

func TestPingPongFutexRunsTwiceOnOneSession(t *testing.T) {
	p, err := StartPingPong(Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for i := range 2 {
		if _, err := p.Run(5, 20, true); err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
	}
}

func TestDeadPeerGivesErrorNotHang(t *testing.T) {
	p, err := StartPingPong(Config{Stall: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	p.s.child.Kill()
	_ = p.s.child.Wait(5 * time.Second)
	t0 := time.Now()
	_, err = p.Run(1, 10, false)
	if err == nil {
		t.Fatal("Run against a dead child succeeded")
	}
	if d := time.Since(t0); d > 3*time.Second {
		t.Errorf("Run took %v to fail, want about the 200ms stall", d)
	}
	p.s.mem.close()
}

func TestWaiterStallsAfterBound(t *testing.T) {
	var word uint64
	w := waiter{stall: 50 * time.Millisecond}
	t0 := time.Now()
	if err := w.waitU64(&word, 1); !errors.Is(err, ErrStalled) {
		t.Fatalf("waitU64 on a word nobody writes = %v, want ErrStalled", err)
	}
	if d := time.Since(t0); d > 2*time.Second {
		t.Errorf("stall noticed after %v, want about 50ms", d)
	}
}
