package fabric

import (
	"bytes"
	"sync/atomic"
	"testing"
	"unsafe"
)

// pattern returns n bytes that differ from unit to unit and within each,
// so that a unit copied to the wrong place shows.
func pattern(n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(i*7 + i>>18)
	}
	return p
}

// TestDMAAssistSplitsALargeRecordBetweenBothSides sends records large
// enough to be offered to the sender (4 MiB and a ragged 5 MiB + 12345
// bytes) while the receiver waits for them, and checks that every byte
// arrives and that the sender pushed part of them.
func TestDMAAssistSplitsALargeRecordBetweenBothSides(t *testing.T) {
	ca, cb := pair(t)
	if !ca.DMA() || !ca.peer.weAccess {
		t.Skip("the kernel refuses cross-memory access here")
	}
	for _, n := range []int{4 << 20, 5<<20 + 12345} {
		src := pattern(n)
		errc := make(chan error, 1)
		go func() { errc <- ca.SendDMA([]byte("hdr"), src) }()
		dst := make([]byte, n+3)
		if got, err := cb.Recv(dst); err != nil || got != n+3 {
			t.Fatalf("Recv = %d, %v; want %d", got, err, n+3)
		}
		if err := <-errc; err != nil {
			t.Fatalf("SendDMA: %v", err)
		}
		if string(dst[:3]) != "hdr" || !bytes.Equal(dst[3:], src) {
			t.Fatalf("%d-byte record: payload differs", n)
		}
	}
	if cb.assistOffers == 0 {
		t.Fatal("the receiver made no assist offer for records of 4 MiB and more")
	}
	t.Logf("offers %d, units pushed by the sender %d", cb.assistOffers, cb.assistPushed)
}

// offer writes an assist offer on the receiving end of ca's ring by hand
// (what a receiver, honest or not, could write) and returns the claim
// word's address.
func offer(ca *Conn, tag, units, addr, off, n, seq uint64) *uint64 {
	atomic.StoreUint64(ca.tx.ctl64(offAssistAddr), addr)
	atomic.StoreUint64(ca.tx.ctl64(offAssistOff), off)
	atomic.StoreUint64(ca.tx.ctl64(offAssistLen), n)
	atomic.StoreUint64(ca.tx.ctl64(offAssistSeq), seq)
	w := ca.tx.ctl64(offAssistW)
	atomic.StoreUint64(w, tag<<40|units)
	return w
}

func TestDMAAssistSenderRefusesAnOfferBeyondItsBuffer(t *testing.T) {
	ca, _ := pair(t)
	p := make([]byte, 4<<20)
	dst := make([]byte, 8<<20)
	addr := uint64(uintptr(unsafe.Pointer(&dst[0])))
	for _, tc := range []struct {
		name          string
		units, off, n uint64
	}{
		{"length past the end", 32, 0, 8 << 20},
		{"offset past the end", 1, 4<<20 + 1, 1},
		{"offset plus length wraps", 16, 1 << 63, 1 << 63},
		{"more units than the length", 17, 0, 4 << 20},
		{"empty", 1, 0, 0},
	} {
		w := offer(ca, 7, tc.units, addr, tc.off, tc.n, 1)
		if ca.assist(p, 1) {
			t.Errorf("%s: assist pushed", tc.name)
		}
		if got := atomic.LoadUint64(w); got != 7<<40|tc.units {
			t.Errorf("%s: claim word %#x, want it untouched (%#x)", tc.name, got, uint64(7<<40|tc.units))
		}
	}
}

func TestDMAAssistSenderIgnoresAnOfferForAnotherRecord(t *testing.T) {
	ca, _ := pair(t)
	p := make([]byte, 4<<20)
	dst := make([]byte, 4<<20)
	w := offer(ca, 3, 16, uint64(uintptr(unsafe.Pointer(&dst[0]))), 0, 4<<20, 2)
	if ca.assist(p, 1) {
		t.Fatal("assist pushed for record 2 while sending record 1")
	}
	if got := atomic.LoadUint64(w); got != 3<<40|16 {
		t.Fatalf("claim word %#x, want it untouched", got)
	}
}

// A push that the kernel refuses (here: an address the receiver never
// mapped) is reported with the failed bit and the count of the units done
// before it, so that the receiver copies the rest itself.
func TestDMAAssistFailedPushIsReported(t *testing.T) {
	ca, _ := pair(t)
	if !ca.peer.weAccess {
		t.Skip("the kernel refuses cross-memory access here")
	}
	p := make([]byte, 4<<20)
	w := offer(ca, 5, 16, 0x1000, 0, 4<<20, 1) // page 1 is never mapped
	if !ca.assist(p, 1) {
		t.Fatal("assist did not claim a unit of a valid-looking offer")
	}
	if got := atomic.LoadUint64(w); got != 5<<40|15 {
		t.Errorf("claim word %#x, want the last unit claimed (%#x)", got, uint64(5<<40|15))
	}
	if got := atomic.LoadUint64(ca.tx.ctl64(offAssistDone)); got != 5<<40|assistFailed {
		t.Errorf("done word %#x, want tag 5, failed, 0 units (%#x)", got, uint64(5<<40|assistFailed))
	}
}
