package tcp

import (
	"math/bits"
	"net/netip"
	"testing"
	"time"
)

var (
	isnKey    = [16]byte{0x4b, 0x17, 0xa0, 0x3c, 0x91, 0x5e, 0x22, 0xd8, 0x07, 0xee, 0x6f, 0x30, 0xc5, 0x88, 0x19, 0x7a}
	isnLocal  = netip.MustParseAddrPort("10.77.0.1:80")
	isnRemote = netip.MustParseAddrPort("10.77.0.2:40000")
)

func TestISNAdvances250000PerSecond(t *testing.T) {
	g := NewISNGenerator(isnKey)
	base := g.ISN(0, isnLocal, isnRemote)
	for _, tc := range []struct {
		now  time.Duration
		want uint32 // ISN - ISN(0), RFC 6528 §3: M ticks every 4 µs
	}{
		{3 * time.Microsecond, 0},
		{4 * time.Microsecond, 1},
		{time.Millisecond, 250},
		{time.Second, 250_000},
		{10 * time.Second, 2_500_000},
		{time.Hour, 900_000_000},
	} {
		if got := g.ISN(tc.now, isnLocal, isnRemote) - base; got != tc.want {
			t.Errorf("ISN(%v) - ISN(0) = %d, want %d", tc.now, got, tc.want)
		}
	}
}

func TestISNWrapsModulo2To32(t *testing.T) {
	g := NewISNGenerator(isnKey)
	// 2^32 ticks of 4 µs (4h46m20.967296s) bring M back to where it started.
	period := time.Duration(1<<32) * isnTick
	a := g.ISN(time.Second, isnLocal, isnRemote)
	b := g.ISN(time.Second+period, isnLocal, isnRemote)
	if a != b {
		t.Fatalf("ISN one M period (%v) later = %#08x, want %#08x", period, b, a)
	}
	// Just before the wrap the difference is 2^32-1 ticks, i.e. -1.
	if d := g.ISN(period-isnTick, isnLocal, isnRemote) - g.ISN(0, isnLocal, isnRemote); d != 0xffffffff {
		t.Fatalf("ISN(period-4µs) - ISN(0) = %#08x, want 0xffffffff", d)
	}
}

func TestISNIsSameForSameTupleAndTime(t *testing.T) {
	a := NewISNGenerator(isnKey).ISN(5*time.Second, isnLocal, isnRemote)
	b := NewISNGenerator(isnKey).ISN(5*time.Second, isnLocal, isnRemote)
	if a != b {
		t.Fatalf("two generators with one key disagree: %#08x vs %#08x", a, b)
	}
}

// isnTuples are 4-tuples that differ from isnLocal/isnRemote in one field
// each, the way an attacker's own probe connections would.
var isnTuples = [][2]netip.AddrPort{
	{isnLocal, isnRemote},
	{isnLocal, netip.MustParseAddrPort("10.77.0.2:40001")},
	{isnLocal, netip.MustParseAddrPort("10.77.0.3:40000")},
	{netip.MustParseAddrPort("10.77.0.1:81"), isnRemote},
	{netip.MustParseAddrPort("10.77.0.9:80"), isnRemote},
	{isnRemote, isnLocal}, // the reverse direction
	{netip.MustParseAddrPort("[2001:db8::1]:80"), netip.MustParseAddrPort("[2001:db8::2]:40000")},
	{netip.MustParseAddrPort("[2001:db8::1]:80"), netip.MustParseAddrPort("[2001:db8::3]:40000")},
	{netip.MustParseAddrPort("[fe80::1%eth0]:80"), netip.MustParseAddrPort("[fe80::2%eth0]:40000")},
}

func TestISNDiffersAcrossTuples(t *testing.T) {
	g := NewISNGenerator(isnKey)
	seen := map[uint32]int{}
	for i, tp := range isnTuples {
		isn := g.ISN(time.Second, tp[0], tp[1])
		if j, dup := seen[isn]; dup {
			t.Errorf("tuples %v and %v share ISN %#08x", isnTuples[j], tp, isn)
		}
		seen[isn] = i
	}
}

func TestISNDiffersAcrossKeys(t *testing.T) {
	other := isnKey
	other[15] ^= 1
	a := NewISNGenerator(isnKey).ISN(time.Second, isnLocal, isnRemote)
	b := NewISNGenerator(other).ISN(time.Second, isnLocal, isnRemote)
	if a == b {
		t.Fatalf("keys differing in one bit give the same ISN %#08x", a)
	}
}

// TestISNOffsetsLookUnrelated checks F's avalanche: over many tuples that
// differ from one another by a single remote port, the XOR of neighbouring
// offsets has about 16 of 32 bits set. A linear or weak F (say a sum of the
// fields) would show a handful. The bound (14..18 on average over 4096
// pairs) is about 30 standard deviations wide, so it only fails for a
// broken function.
func TestISNOffsetsLookUnrelated(t *testing.T) {
	for _, key := range [][16]byte{isnKey, {}} {
		g := NewISNGenerator(key)
		const n = 4096
		total := 0
		prev := g.ISN(0, isnLocal, netip.AddrPortFrom(isnRemote.Addr(), 1024))
		for p := 1025; p < 1025+n; p++ {
			cur := g.ISN(0, isnLocal, netip.AddrPortFrom(isnRemote.Addr(), uint16(p)))
			total += bits.OnesCount32(prev ^ cur)
			prev = cur
		}
		if avg := float64(total) / n; avg < 14 || avg > 18 {
			t.Errorf("key % x: neighbouring tuples' ISNs differ in %.2f bits on average, want about 16", key[:4], avg)
		}
	}
}

func TestISNAcceptsIPv4AndIPv6(t *testing.T) {
	g := NewISNGenerator(isnKey)
	v4 := g.ISN(0, isnLocal, isnRemote)
	mapped := g.ISN(0, netip.MustParseAddrPort("[::ffff:10.77.0.1]:80"), netip.MustParseAddrPort("[::ffff:10.77.0.2]:40000"))
	if v4 != mapped {
		t.Errorf("IPv4 tuple ISN %#08x differs from its IPv4-mapped IPv6 twin %#08x", v4, mapped)
	}
	v6 := g.ISN(0, netip.MustParseAddrPort("[2001:db8::1]:80"), netip.MustParseAddrPort("[2001:db8::2]:40000"))
	if v6 == v4 {
		t.Errorf("IPv6 tuple gives the IPv4 tuple's ISN %#08x", v6)
	}
	// The zero AddrPort is not a valid endpoint, but it must not panic.
	_ = g.ISN(0, netip.AddrPort{}, netip.AddrPort{})
}

func BenchmarkISN(b *testing.B) {
	b.ReportAllocs()
	g := NewISNGenerator(isnKey)
	var sink uint32
	for i := 0; b.Loop(); i++ {
		sink ^= g.ISN(time.Duration(i), isnLocal, isnRemote)
	}
	_ = sink
}
