package tcp

import (
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"
)

var (
	cookieKey    = [16]byte{0xc0, 0x0c, 0x1e, 0x5e, 0xc2, 0xe7, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a}
	cookieLocal  = netip.MustParseAddrPort("10.77.0.1:80")
	cookieRemote = netip.MustParseAddrPort("192.0.2.7:51000")
)

const cookiePeerISN = 0x1234abcd

func TestSYNCookieRoundTripCarriesMSS(t *testing.T) {
	c := NewSYNCookies(cookieKey)
	for _, tc := range []struct{ announced, want uint16 }{
		{0, 64}, // below the table: the floor
		{63, 64},
		{64, 64}, // the engine's MinMSSFloor
		{535, 64},
		{536, 536}, // RFC 9293 default
		{1219, 536},
		{1220, 1220}, // IPv6 minimum MTU
		{1300, 1300},
		{1439, 1300},
		{1440, 1440}, // IPv6 over Ethernet
		{1459, 1440},
		{1460, 1460}, // IPv4 over Ethernet
		{8959, 1460},
		{8960, 8960}, // jumbo
		{9000, 8960},
		{65483, 65483}, // fabric with timestamps
		{65495, 65483}, // fabric / loopback without
		{65535, 65483},
	} {
		if got := SYNCookieMSS(tc.announced); got != tc.want {
			t.Errorf("SYNCookieMSS(%d) = %d, want %d", tc.announced, got, tc.want)
		}
		iss := c.Make(10*time.Second, cookieLocal, cookieRemote, cookiePeerISN, tc.announced)
		mss, ok := c.Check(20*time.Second, cookieLocal, cookieRemote, cookiePeerISN, iss)
		if !ok || mss != tc.want {
			t.Errorf("SYN with MSS %d: Check(Make) = %d, %v; want %d, true", tc.announced, mss, ok, tc.want)
		}
	}
}

func TestSYNCookieRoundTripIPv6(t *testing.T) {
	c := NewSYNCookies(cookieKey)
	l := netip.MustParseAddrPort("[2001:db8::1]:443")
	r := netip.MustParseAddrPort("[2001:db8::beef]:60000")
	iss := c.Make(time.Second, l, r, cookiePeerISN, 1440)
	if mss, ok := c.Check(time.Second, l, r, cookiePeerISN, iss); !ok || mss != 1440 {
		t.Fatalf("IPv6 cookie: Check = %d, %v; want 1440, true", mss, ok)
	}
}

// TestSYNCookieAcceptsCurrentAndPreviousSlotOnly walks a cookie made at
// 10 s (slot 0) through time: accepted through slots 0 and 1, i.e. until
// 128 s, rejected from slot 2 on.
func TestSYNCookieAcceptsCurrentAndPreviousSlotOnly(t *testing.T) {
	c := NewSYNCookies(cookieKey)
	iss := c.Make(10*time.Second, cookieLocal, cookieRemote, cookiePeerISN, 1460)
	for _, tc := range []struct {
		now  time.Duration
		want bool
	}{
		{10 * time.Second, true},
		{64*time.Second - 1, true},
		{64 * time.Second, true}, // slot 1: the previous slot is still good
		{128*time.Second - 1, true},
		{128 * time.Second, false}, // slot 2: expired
		{192 * time.Second, false},
		{256 * time.Second, false}, // slot 4: slot bits alias slot 0, MAC rejects
		{320 * time.Second, false}, // slot 5: aliases slot 1, MAC rejects
	} {
		if _, ok := c.Check(tc.now, cookieLocal, cookieRemote, cookiePeerISN, iss); ok != tc.want {
			t.Errorf("cookie from 10s checked at %v: ok = %v, want %v", tc.now, ok, tc.want)
		}
	}
}

func TestSYNCookieRejectsCookieFromTheFuture(t *testing.T) {
	c := NewSYNCookies(cookieKey)
	iss := c.Make(200*time.Second, cookieLocal, cookieRemote, cookiePeerISN, 1460) // slot 3
	if _, ok := c.Check(190*time.Second, cookieLocal, cookieRemote, cookiePeerISN, iss); ok {
		t.Errorf("cookie made in slot 3 accepted in slot 2")
	}
}

// TestSYNCookieSlotBitsWrap checks a cookie across the point where the two
// slot bits wrap from 3 to 0 (slot 3 → slot 4), and far from the epoch.
func TestSYNCookieSlotBitsWrap(t *testing.T) {
	c := NewSYNCookies(cookieKey)
	for _, made := range []time.Duration{
		3*SYNCookieSlot + time.Second,         // slot 3, checked in slot 4
		(1<<20-1)*SYNCookieSlot + time.Second, // slot 2^20-1, checked in 2^20
		200 * 365 * 24 * time.Hour,            // two centuries of uptime
	} {
		iss := c.Make(made, cookieLocal, cookieRemote, cookiePeerISN, 1460)
		if _, ok := c.Check(made+SYNCookieSlot, cookieLocal, cookieRemote, cookiePeerISN, iss); !ok {
			t.Errorf("cookie made at %v rejected one slot later", made)
		}
		if _, ok := c.Check(made+2*SYNCookieSlot, cookieLocal, cookieRemote, cookiePeerISN, iss); ok {
			t.Errorf("cookie made at %v accepted two slots later", made)
		}
	}
}

// TestSYNCookieWrapsPeerISN uses the peer ISNs at the edges of the 32-bit
// space: 0xffffffff is what the engine computes as SEG.SEQ-1 for an ACK
// whose sequence number wrapped to 0.
func TestSYNCookieWrapsPeerISN(t *testing.T) {
	c := NewSYNCookies(cookieKey)
	for _, peerISN := range []uint32{0, 1, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff} {
		iss := c.Make(time.Second, cookieLocal, cookieRemote, peerISN, 1460)
		ack := iss + 1 // the ACK's acknowledgment number, mod 2^32
		seq := peerISN + 1
		if mss, ok := c.Check(time.Second, cookieLocal, cookieRemote, seq-1, ack-1); !ok || mss != 1460 {
			t.Errorf("peer ISN %#08x: Check = %d, %v; want 1460, true", peerISN, mss, ok)
		}
	}
}

func TestSYNCookieRejectsEveryOneBitTamper(t *testing.T) {
	c := NewSYNCookies(cookieKey)
	iss := c.Make(time.Second, cookieLocal, cookieRemote, cookiePeerISN, 1460)
	for bit := range 32 {
		if mss, ok := c.Check(time.Second, cookieLocal, cookieRemote, cookiePeerISN, iss^1<<bit); ok {
			t.Errorf("cookie with bit %d flipped accepted (MSS %d)", bit, mss)
		}
	}
}

func TestSYNCookieRejectsOtherTuple(t *testing.T) {
	c := NewSYNCookies(cookieKey)
	iss := c.Make(time.Second, cookieLocal, cookieRemote, cookiePeerISN, 1460)
	for _, tp := range [][2]netip.AddrPort{
		{cookieLocal, netip.MustParseAddrPort("192.0.2.7:51001")},   // remote port
		{cookieLocal, netip.MustParseAddrPort("192.0.2.8:51000")},   // remote address
		{netip.MustParseAddrPort("10.77.0.1:81"), cookieRemote},     // local port
		{netip.MustParseAddrPort("10.77.0.2:80"), cookieRemote},     // local address
		{cookieRemote, cookieLocal},                                 // reversed
		{netip.MustParseAddrPort("[2001:db8::1]:80"), cookieRemote}, // other family
	} {
		if _, ok := c.Check(time.Second, tp[0], tp[1], cookiePeerISN, iss); ok {
			t.Errorf("cookie for %v→%v accepted for %v→%v", cookieRemote, cookieLocal, tp[1], tp[0])
		}
	}
}

func TestSYNCookieRejectsOtherPeerISN(t *testing.T) {
	c := NewSYNCookies(cookieKey)
	iss := c.Make(time.Second, cookieLocal, cookieRemote, cookiePeerISN, 1460)
	for _, peerISN := range []uint32{cookiePeerISN + 1, cookiePeerISN - 1, cookiePeerISN ^ 0x80000000, 0} {
		if _, ok := c.Check(time.Second, cookieLocal, cookieRemote, peerISN, iss); ok {
			t.Errorf("cookie for peer ISN %#08x accepted with peer ISN %#08x", uint32(cookiePeerISN), peerISN)
		}
	}
}

func TestSYNCookieRejectsOtherKey(t *testing.T) {
	other := cookieKey
	other[0] ^= 1
	iss := NewSYNCookies(cookieKey).Make(time.Second, cookieLocal, cookieRemote, cookiePeerISN, 1460)
	if _, ok := NewSYNCookies(other).Check(time.Second, cookieLocal, cookieRemote, cookiePeerISN, iss); ok {
		t.Fatal("cookie made under one key accepted under another")
	}
}

// TestSYNCookieRejectsBlindGuesses plays a blind attacker: 2^16 random
// acknowledgment numbers for one tuple. With a 27-bit MAC each is accepted
// with probability 2^-27 (times 1/2 for the slot bits), so the expected
// number accepted is 0.0002; with a fixed seed the result is deterministic.
func TestSYNCookieRejectsBlindGuesses(t *testing.T) {
	c := NewSYNCookies(cookieKey)
	r := rand.New(rand.NewPCG(1, 2))
	accepted := 0
	for range 1 << 16 {
		if _, ok := c.Check(100*time.Second, cookieLocal, cookieRemote, cookiePeerISN, r.Uint32()); ok {
			accepted++
		}
	}
	if accepted != 0 {
		t.Fatalf("%d of 65536 random cookies accepted", accepted)
	}
}

func TestSYNCookieDiffersAcrossPeerISN(t *testing.T) {
	c := NewSYNCookies(cookieKey)
	a := c.Make(time.Second, cookieLocal, cookieRemote, 1000, 1460)
	b := c.Make(time.Second, cookieLocal, cookieRemote, 1001, 1460)
	if a == b || a-b == 0xffffffff {
		t.Fatalf("peer ISNs 1000 and 1001 give related cookies %#08x and %#08x", a, b)
	}
}

func TestSYNOptionsTSRoundTrip(t *testing.T) {
	for _, o := range []SYNOptions{
		{WScale: -1},
		{WScale: 0},
		{WScale: 7, SACKPermitted: true},
		{WScale: 14, SACKPermitted: true, ECN: true},
		{WScale: -1, ECN: true},
	} {
		ts := EncodeSYNOptionsTS(0x12345678, o)
		if got := DecodeSYNOptionsTS(ts); got != o {
			t.Errorf("Decode(Encode(%+v)) = %+v", o, got)
		}
	}
}

func TestSYNOptionsTSClampsWScaleTo14(t *testing.T) {
	got := DecodeSYNOptionsTS(EncodeSYNOptionsTS(0x1000, SYNOptions{WScale: 15}))
	if got.WScale != 14 {
		t.Fatalf("window scale 15 came back as %d, want 14 (RFC 7323 §2.3)", got.WScale)
	}
}

func TestSYNOptionsTSNeverAheadOfClock(t *testing.T) {
	for _, tc := range []struct {
		tsNow uint32
		o     SYNOptions
		want  uint32
	}{
		// 0x1000 | 0x3f would be ahead of the clock: step back 64.
		{0x1000, SYNOptions{WScale: -1, SACKPermitted: true, ECN: true}, 0x0fff},
		// Bits fit below tsNow's own low bits: kept in this block.
		{0x103f, SYNOptions{WScale: 7}, 0x1007},
		{0x1007, SYNOptions{WScale: 7}, 0x1007},
		// Stepping back wraps modulo 2^32.
		{5, SYNOptions{WScale: 14, ECN: true}, 0xffffffee},
	} {
		if got := EncodeSYNOptionsTS(tc.tsNow, tc.o); got != tc.want {
			t.Errorf("EncodeSYNOptionsTS(%#x, %+v) = %#x, want %#x", tc.tsNow, tc.o, got, tc.want)
		}
	}
}

func BenchmarkSYNCookieMake(b *testing.B) {
	b.ReportAllocs()
	c := NewSYNCookies(cookieKey)
	var sink uint32
	for i := 0; b.Loop(); i++ {
		sink ^= c.Make(time.Second, cookieLocal, cookieRemote, uint32(i), 1460)
	}
	_ = sink
}

func BenchmarkSYNCookieCheck(b *testing.B) {
	b.ReportAllocs()
	c := NewSYNCookies(cookieKey)
	iss := c.Make(time.Second, cookieLocal, cookieRemote, cookiePeerISN, 1460)
	for b.Loop() {
		if _, ok := c.Check(time.Second, cookieLocal, cookieRemote, cookiePeerISN, iss); !ok {
			b.Fatal("genuine cookie rejected")
		}
	}
}
