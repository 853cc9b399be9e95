package tcp

import (
	"errors"
	"math/rand/v2"
	"net/netip"
	"sync"
	"testing"
)

var (
	portKey   = [16]byte{0x70, 0x6f, 0x72, 0x74, 0x73, 0x2d, 0x6b, 0x65, 0x79, 0x2d, 0x31, 0x32, 0x33, 0x34, 0x35, 0x36}
	portLocal = netip.MustParseAddr("10.77.0.1")
	portDstA  = netip.MustParseAddrPort("192.0.2.10:443")
	portDstB  = netip.MustParseAddrPort("192.0.2.11:443")
)

func noPortInUse(uint16) bool { return false }

func newTestPorts(t *testing.T, min, max uint16) *PortAllocator {
	t.Helper()
	a, err := NewPortAllocator(portKey, min, max)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestNewPortAllocatorRejectsBadRange(t *testing.T) {
	for _, r := range [][2]uint16{{0, 100}, {0, 0}, {2000, 1999}, {65535, 1}} {
		if a, err := NewPortAllocator(portKey, r[0], r[1]); err == nil || a != nil {
			t.Errorf("NewPortAllocator(%d, %d) = %v, %v; want nil and an error", r[0], r[1], a, err)
		}
	}
}

func TestPortPickStaysInRange(t *testing.T) {
	for _, r := range [][2]uint16{{1024, 65535}, {49152, 65535}, {40000, 40009}, {1, 65535}, {5000, 5000}} {
		a := newTestPorts(t, r[0], r[1])
		for i := range 2000 {
			dst := netip.AddrPortFrom(portDstA.Addr(), uint16(i%7+1))
			p, err := a.Pick(portLocal, dst, noPortInUse)
			if err != nil {
				t.Fatalf("range %d-%d: %v", r[0], r[1], err)
			}
			if p < r[0] || p > r[1] {
				t.Fatalf("range %d-%d: picked %d", r[0], r[1], p)
			}
		}
	}
}

// TestPortPickStepsThroughRangeForOneDestination is Algorithm 3's
// defining property: towards one destination, successive ports are
// min + (offset + 0), min + (offset + 1), ... modulo the range, so a port is
// reused for that destination only after the whole range has been used.
func TestPortPickStepsThroughRangeForOneDestination(t *testing.T) {
	a := newTestPorts(t, 40000, 40009) // ten ports
	first, err := a.Pick(portLocal, portDstA, noPortInUse)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < 25; i++ {
		p, err := a.Pick(portLocal, portDstA, noPortInUse)
		if err != nil {
			t.Fatal(err)
		}
		want := 40000 + (first-40000+uint16(i))%10
		if p != want {
			t.Fatalf("pick %d towards %v = %d, want %d (first was %d)", i, portDstA, p, want, first)
		}
	}
}

func TestPortPickSkipsPortsInUse(t *testing.T) {
	a := newTestPorts(t, 40000, 40009)
	b := newTestPorts(t, 40000, 40009)
	first, _ := b.Pick(portLocal, portDstA, noPortInUse) // what a would pick first
	busy := map[uint16]bool{first: true, 40000 + (first-40000+1)%10: true}
	var asked []uint16
	p, err := a.Pick(portLocal, portDstA, func(port uint16) bool {
		asked = append(asked, port)
		return busy[port]
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := 40000 + (first-40000+2)%10; p != want || len(asked) != 3 {
		t.Fatalf("with %d and the next port busy: picked %d after asking %v, want %d after 3 questions", first, p, asked, want)
	}
	// The counter moved past the busy ports too (RFC 6056: table[index]++
	// on every try), so the next pick continues after p.
	if next, _ := a.Pick(portLocal, portDstA, noPortInUse); next != 40000+(p-40000+1)%10 {
		t.Fatalf("pick after %d = %d, want %d", p, next, 40000+(p-40000+1)%10)
	}
}

// TestPortPickDestinationsAreIndependent: ports taken towards one
// destination do not move the sequence of another whose table index
// differs, and the two sequences start at unrelated points.
func TestPortPickDestinationsAreIndependent(t *testing.T) {
	a := newTestPorts(t, DefaultEphemeralMin, DefaultEphemeralMax)
	offA, idxA := a.hash(portLocal, portDstA)
	offB, idxB := a.hash(portLocal, portDstB)
	if idxA == idxB {
		t.Fatalf("precondition: %v and %v share table index %d under the test key", portDstA, portDstB, idxA)
	}
	if offA == offB {
		t.Fatalf("%v and %v share offset %d", portDstA, portDstB, offA)
	}
	fresh := newTestPorts(t, DefaultEphemeralMin, DefaultEphemeralMax)
	wantB, _ := fresh.Pick(portLocal, portDstB, noPortInUse)
	for range 1000 {
		if _, err := a.Pick(portLocal, portDstA, noPortInUse); err != nil {
			t.Fatal(err)
		}
	}
	if gotB, _ := a.Pick(portLocal, portDstB, noPortInUse); gotB != wantB {
		t.Fatalf("after 1000 picks towards %v, first pick towards %v = %d, want %d as on a fresh allocator", portDstA, portDstB, gotB, wantB)
	}
}

func TestPortPickDependsOnKey(t *testing.T) {
	other := portKey
	other[7] ^= 0x10
	a := newTestPorts(t, DefaultEphemeralMin, DefaultEphemeralMax)
	b, _ := NewPortAllocator(other, DefaultEphemeralMin, DefaultEphemeralMax)
	same := 0
	for i := range 100 {
		dst := netip.AddrPortFrom(portDstA.Addr(), uint16(1000+i))
		pa, _ := a.Pick(portLocal, dst, noPortInUse)
		pb, _ := b.Pick(portLocal, dst, noPortInUse)
		if pa == pb {
			same++
		}
	}
	// Each coincidence has probability 1/64512; allow a few.
	if same > 3 {
		t.Fatalf("%d of 100 destinations got the same port under two keys", same)
	}
}

func TestPortPickExhaustedReturnsError(t *testing.T) {
	a := newTestPorts(t, 40000, 40099)
	calls := 0
	p, err := a.Pick(portLocal, portDstA, func(uint16) bool { calls++; return true })
	if !errors.Is(err, ErrPortsExhausted) || p != 0 {
		t.Fatalf("Pick with every port busy = %d, %v; want 0 and ErrPortsExhausted", p, err)
	}
	if calls != 100 {
		t.Fatalf("Pick asked about %d ports before giving up, want exactly the 100 of the range", calls)
	}
}

func TestPortPickExhaustedFullRangeTerminates(t *testing.T) {
	a := newTestPorts(t, 1, 65535)
	seen := make([]bool, 65536)
	distinct := 0
	_, err := a.Pick(portLocal, portDstA, func(p uint16) bool {
		if !seen[p] {
			seen[p] = true
			distinct++
		}
		return true
	})
	if !errors.Is(err, ErrPortsExhausted) {
		t.Fatalf("Pick over a full range = %v, want ErrPortsExhausted", err)
	}
	if distinct != 65535 {
		t.Fatalf("Pick tried %d distinct ports, want every one of 65535", distinct)
	}
}

func TestPortPickNilInUseIsAnError(t *testing.T) {
	a := newTestPorts(t, 40000, 40009)
	if _, err := a.Pick(portLocal, portDstA, nil); err == nil {
		t.Fatal("Pick with a nil inUse returned no error")
	}
}

// TestPortPickIsRoughlyUniform picks one port for each of 64 000 random
// destinations (fixed seed) from 49152-65535 and counts them in 64 buckets
// of 256 ports. For uniform ports the chi-square statistic has 63 degrees
// of freedom (mean 63, standard deviation 11); the bound of 150 is about
// eight deviations away, so only a badly skewed allocator fails.
func TestPortPickIsRoughlyUniform(t *testing.T) {
	a := newTestPorts(t, 49152, 65535)
	r := rand.New(rand.NewPCG(6056, 3))
	const picks, buckets = 64000, 64
	var count [buckets]int
	for range picks {
		var ip [4]byte
		for i := range ip {
			ip[i] = byte(r.Uint32())
		}
		dst := netip.AddrPortFrom(netip.AddrFrom4(ip), uint16(r.Uint32()))
		p, err := a.Pick(portLocal, dst, noPortInUse)
		if err != nil {
			t.Fatal(err)
		}
		count[(p-49152)/256]++
	}
	chi2 := 0.0
	exp := float64(picks) / buckets
	for _, c := range count {
		d := float64(c) - exp
		chi2 += d * d / exp
	}
	if chi2 > 150 {
		t.Fatalf("chi-square over %d buckets = %.1f, want below 150 (counts %v)", buckets, chi2, count)
	}
}

// TestPortPickConcurrentPicksAreDistinct: goroutines picking towards one
// destination at once each get a port of their own, because the counter
// is advanced atomically.
func TestPortPickConcurrentPicksAreDistinct(t *testing.T) {
	a := newTestPorts(t, 30000, 30999)
	const workers, each = 4, 250 // exactly the 1000 ports of the range
	var mu sync.Mutex
	got := map[uint16]int{}
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range each {
				p, err := a.Pick(portLocal, portDstA, noPortInUse)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				got[p]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(got) != workers*each {
		t.Fatalf("%d concurrent picks gave %d distinct ports", workers*each, len(got))
	}
}

func BenchmarkPortPick(b *testing.B) {
	b.ReportAllocs()
	a, _ := NewPortAllocator(portKey, DefaultEphemeralMin, DefaultEphemeralMax)
	for b.Loop() {
		if _, err := a.Pick(portLocal, portDstA, noPortInUse); err != nil {
			b.Fatal(err)
		}
	}
}
