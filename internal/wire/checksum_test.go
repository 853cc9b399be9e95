package wire

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

// refSum is the textbook RFC 1071 sum: big-endian 16-bit words, odd byte
// padded with zero, carries folded at the end. The fast Sum must agree.
func refSum(b []byte) uint16 {
	var s uint64
	for i := 0; i+1 < len(b); i += 2 {
		s += uint64(b[i])<<8 | uint64(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint64(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}

// RFC 1071 §3 works this example: the sum of 00 01 f2 03 f4 f5 f6 f7 is ddf2.
func TestSumRFC1071Example(t *testing.T) {
	b := []byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}
	if got := Sum(b); got != 0xddf2 {
		t.Fatalf("Sum = %#04x, want 0xddf2", got)
	}
	if got := Checksum(b); got != 0x220d {
		t.Fatalf("Checksum = %#04x, want 0x220d", got)
	}
}

// A well-known IPv4 header whose checksum field holds b861.
func TestChecksumKnownIPv4Header(t *testing.T) {
	h := []byte{
		0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11,
		0x00, 0x00, // checksum zeroed
		0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
	}
	if got := Checksum(h); got != 0xb861 {
		t.Fatalf("Checksum = %#04x, want 0xb861", got)
	}
	h[10], h[11] = 0xb8, 0x61
	if got := Sum(h); got != 0xffff {
		t.Fatalf("Sum with checksum in place = %#04x, want 0xffff", got)
	}
}

func TestSumOfNothingIsZero(t *testing.T) {
	if got := Sum(nil); got != 0 {
		t.Fatalf("Sum(nil) = %#04x, want 0", got)
	}
}

// All-ones data makes every addition carry: the end-around carry paths of
// the 64-bit loop must all be right.
func TestSumAllOnesEveryLength(t *testing.T) {
	b := make([]byte, 300)
	for i := range b {
		b[i] = 0xff
	}
	for n := range len(b) {
		if got, want := Sum(b[:n]), refSum(b[:n]); got != want {
			t.Fatalf("len %d: Sum = %#04x, want %#04x", n, got, want)
		}
	}
}

func TestSumMatchesReferenceRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 70000)
	for i := range buf {
		buf[i] = byte(r.Uint32())
	}
	for range 2000 {
		off := r.IntN(16) // unaligned starts too
		n := r.IntN(2000)
		if r.IntN(50) == 0 {
			n = r.IntN(len(buf) - 16)
		}
		b := buf[off : off+n]
		if got, want := Sum(b), refSum(b); got != want {
			t.Fatalf("off %d len %d: Sum = %#04x, want %#04x", off, n, got, want)
		}
	}
}

func TestCombineEqualsWholeAtEverySplit(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	b := make([]byte, 257)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	want := Sum(b)
	for k := 0; k <= len(b); k++ {
		if got := Combine(Sum(b[:k]), Sum(b[k:]), k); got != want {
			t.Fatalf("split at %d: Combine = %#04x, want %#04x", k, got, want)
		}
	}
}

// RFC 1624 eqn. 3 must give exactly what recomputing gives.
func TestUpdate16MatchesRecompute(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	h := make([]byte, 20)
	for range 10000 {
		for i := range h {
			h[i] = byte(r.Uint32())
		}
		h[10], h[11] = 0, 0
		binary.BigEndian.PutUint16(h[10:], Checksum(h))
		off := 2 * r.IntN(10)
		if off == 10 {
			continue
		}
		old := binary.BigEndian.Uint16(h[off:])
		nw := uint16(r.Uint32())
		if r.IntN(8) == 0 {
			nw = 0xffff - old // drive the sum through 0 and 0xffff
		}
		inc := Update16(binary.BigEndian.Uint16(h[10:]), old, nw)
		binary.BigEndian.PutUint16(h[off:], nw)
		h[10], h[11] = 0, 0
		if want := Checksum(h); inc != want {
			t.Fatalf("field %d %#04x→%#04x: Update16 = %#04x, recompute = %#04x", off, old, nw, inc, want)
		}
	}
}

func TestUpdate32MatchesRecompute(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	h := make([]byte, 20)
	for range 10000 {
		for i := range h {
			h[i] = byte(r.Uint32())
		}
		h[10], h[11] = 0, 0
		binary.BigEndian.PutUint16(h[10:], Checksum(h))
		off := 12 + 4*r.IntN(2) // source or destination address
		old := binary.BigEndian.Uint32(h[off:])
		nw := r.Uint32()
		inc := Update32(binary.BigEndian.Uint16(h[10:]), old, nw)
		binary.BigEndian.PutUint32(h[off:], nw)
		h[10], h[11] = 0, 0
		if want := Checksum(h); inc != want {
			t.Fatalf("field %d %#08x→%#08x: Update32 = %#04x, recompute = %#04x", off, old, nw, inc, want)
		}
	}
}

// RFC 1624 §3 example: a header with checksum 0xdd2f whose word 0x5555
// becomes 0x3285 gets checksum 0x0000 by eqn. 3 (eqn. 2 would give 0xffff).
func TestUpdate16RFC1624Example(t *testing.T) {
	if got := Update16(0xdd2f, 0x5555, 0x3285); got != 0x0000 {
		t.Fatalf("Update16 = %#04x, want 0x0000", got)
	}
}

func TestPseudoHeaderSum(t *testing.T) {
	// 10.77.0.1 → 10.77.0.2, TCP, 40 bytes: the six words of RFC 9293 §3.1.
	got := PseudoHeaderSum(IPv4Addr{10, 77, 0, 1}, IPv4Addr{10, 77, 0, 2}, ProtoTCP, 40)
	want := refSum([]byte{10, 77, 0, 1, 10, 77, 0, 2, 0, 6, 0, 40})
	if got != want {
		t.Fatalf("PseudoHeaderSum = %#04x, want %#04x", got, want)
	}
}
