package tcp

import (
	"net/netip"
	"time"
)

// isnTick is the period of RFC 6528's clock M: "a 4 microsecond timer"
// (RFC 6528 §3, after RFC 793), so M advances 250 000 times a second and
// the 32-bit sequence space wraps every 4.77 hours.
const isnTick = 4 * time.Microsecond

// ISNGenerator chooses initial sequence numbers as RFC 6528 §3 specifies:
//
//	ISN = M + F(localip, localport, remoteip, remoteport, secretkey)
//
// where M is the 4 µs clock and F is SipHash-2-4 keyed with a secret. The
// hash gives every 4-tuple its own offset into the sequence space, so an
// off-path attacker who opens a connection of its own learns nothing about
// the ISN of anyone else's connection (the attack of RFC 6528 §2); the
// clock keeps successive incarnations of the same 4-tuple moving forward,
// which is what lets a new connection's segments be told from an old one's
// (RFC 9293 §3.4.1, and the TIME-WAIT reuse of RFC 6191).
//
// The generator reads no clock: the caller passes the time. It holds only
// its key, so one generator may serve every connection of a stack and is
// safe for concurrent use.
type ISNGenerator struct {
	key sipKey
}

// NewISNGenerator returns a generator keyed with key, which must be secret
// and random (RFC 6528 §3 recommends at least 128 bits from a good source,
// e.g. crypto/rand). The key may be changed by making a new generator;
// RFC 6528 §3 notes that doing so can break the monotonicity that old
// duplicates rely on, so do it rarely (at most at reboot-like intervals).
func NewISNGenerator(key [16]byte) *ISNGenerator {
	return &ISNGenerator{key: newSipKey(key)}
}

// ISN returns the initial send sequence number for a connection from local
// to remote at time now, where now is the time since the caller's monotonic
// epoch (never wall-clock time, which can step backwards). IPv4 and IPv6
// endpoints are both accepted; an IPv4 address and its IPv4-mapped IPv6
// form give the same ISN. It allocates nothing.
func (g *ISNGenerator) ISN(now time.Duration, local, remote netip.AddrPort) uint32 {
	var b [1 + tupleLen]byte
	b[0] = sipDomainISN
	putTuple(b[1:], local, remote)
	f := g.key.sum64(b[:])
	// M is taken modulo 2^32 (conversion from int64 keeps the low bits),
	// exactly as a free-running 32-bit counter would wrap.
	m := uint32(int64(now / isnTick))
	return m + uint32(f^f>>32)
}
