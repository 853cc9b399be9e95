package tcp

import (
	"encoding/binary"
	"net/netip"
	"time"
)

// SYNCookieSlot is the length of a SYN cookie's time slot. A cookie made in
// slot t is accepted in slots t and t+1 only (see SYNCookies.Check), so it
// lives between 64 and 128 seconds: long enough for a handshake over the
// slowest path and its SYN-ACK retransmissions (RFC 6298's 1 s initial RTO
// doubled a few times), short enough that a captured cookie is soon useless.
// It is a power of two of seconds as in Linux (whose slot is 60 s).
const SYNCookieSlot = 64 * time.Second

// synCookieMSS is the table of MSS values a cookie can carry (3 bits, 8
// entries). A SYN cookie has no room for the peer's exact MSS, so the
// listener answers with the largest entry not above it (RFC 4987 §3.6).
// The entries are the values that real paths announce, so that the common
// cases lose nothing:
//
//	   64  the floor: the engine clamps a peer's MSS to at least
//	       MinMSSFloor (64), so with this entry a cookie never carries
//	       more than the (clamped) MSS the peer announced
//	  536  RFC 9293 §3.7.1's default for IPv4 (576-byte datagrams)
//	 1220  IPv6's minimum MTU, 1280 − 40 − 20 (RFC 8200 §5)
//	 1300  a conservative value behind tunnels and VPNs with MSS clamping
//	 1440  IPv6 over Ethernet, 1500 − 40 − 20
//	 1460  IPv4 over Ethernet, 1500 − 20 − 20 (the most common of all)
//	 8960  IPv4 over 9000-byte jumbo Ethernet, as in data centres
//	65483  the fabric and loopback: the largest IPv4 datagram, 65535, less
//	       20 bytes of IP, 20 of TCP and 12 of the timestamp option. It is
//	       chosen 12 below 65495 so that a peer announcing either value
//	       (with or without counting timestamps) lands on it rather than on
//	       8960, which would cost a factor of seven in segment size.
var synCookieMSS = [8]uint16{64, 536, 1220, 1300, 1440, 1460, 8960, 65483}

// Bit layout of a cookie before it is masked (see SYNCookies).
const (
	cookieSlotShift = 30 // 2 bits: the slot counter mod 4
	cookieMSSShift  = 27 // 3 bits: index into synCookieMSS
	cookieMACBits   = 27 // the rest: a truncated SipHash MAC
	cookieMACMask   = 1<<cookieMACBits - 1
)

// SYNCookies makes and checks SYN cookies (RFC 4987 §3.6), the defence a
// listener falls back on when its SYN queue is full: instead of keeping
// state for a SYN, it encodes what it must remember in the initial sequence
// number of its SYN-ACK and recovers it from the acknowledgment number of
// the final ACK of the handshake. The scheme follows Linux's in spirit: the
// cookie carries a coarse time slot, an index into a table of MSS values
// and a keyed MAC. Here every 32-bit cookie is
//
//	cookie = pad XOR (slot mod 4 <<30 | mssIndex <<27 | MAC27)
//	pad    = SipHash(key, "C", 4-tuple, peerISN)           (32 bits)
//	MAC27  = SipHash(key, "M", 4-tuple, peerISN, slot, mssIndex) (27 bits)
//
// The pad makes the whole ISS unpredictable without the key, as RFC 6528
// wants of every ISN, and hides the slot and MSS. The MAC binds the cookie
// to the connection's 4-tuple, the peer's ISN, the full (not truncated)
// slot number and the MSS index, so a forged ACK is accepted with
// probability 2^-27 per try, and a cookie made for one connection is
// useless for another. Unlike Linux's additive scheme, no part of a cookie
// is a plain function of the time alone.
//
// A cookie cannot remember the peer's window scale, SACK-permitted or ECN
// setup; when the SYN carried timestamps, EncodeSYNOptionsTS and
// DecodeSYNOptionsTS keep them in our timestamp value as Linux does.
//
// Cookies do not keep RFC 6528's property that successive ISNs of one
// 4-tuple increase with time, so TIME-WAIT reuse by sequence number
// (RFC 9293 §3.6.1) must not be trusted for a connection that began with a
// cookie; timestamps (RFC 6191) still work.
//
// SYNCookies reads no clock (the caller passes now, the time since its
// monotonic epoch) and holds only its key, so it is safe for concurrent
// use. Make and Check allocate nothing.
type SYNCookies struct {
	key sipKey
}

// NewSYNCookies returns a cookie maker keyed with key, which must be secret
// and random (crypto/rand) and should differ from the ISN key. Making a new
// SYNCookies with a new key invalidates every outstanding cookie.
func NewSYNCookies(key [16]byte) *SYNCookies {
	return &SYNCookies{key: newSipKey(key)}
}

// SYNCookieMSS returns the MSS a cookie made for a SYN announcing mss will
// carry: the largest table entry not above mss, or the smallest entry (64)
// when mss is below all of them. The engine uses this value as the send
// MSS once the cookie comes back, so it may also announce it.
func SYNCookieMSS(mss uint16) uint16 {
	return synCookieMSS[cookieMSSIndex(mss)]
}

func cookieMSSIndex(mss uint16) uint8 {
	i := len(synCookieMSS) - 1
	for i > 0 && synCookieMSS[i] > mss {
		i--
	}
	return uint8(i)
}

// cookieSlot is the number of the slot now falls in. Times before the
// epoch are treated as slot 0.
func cookieSlot(now time.Duration) uint64 {
	if now < 0 {
		return 0
	}
	return uint64(now / SYNCookieSlot)
}

func (c *SYNCookies) pad(local, remote netip.AddrPort, peerISN uint32) uint32 {
	var b [1 + tupleLen + 4]byte
	b[0] = sipDomainCookiePad
	n := 1 + putTuple(b[1:], local, remote)
	binary.BigEndian.PutUint32(b[n:], peerISN)
	h := c.key.sum64(b[:])
	return uint32(h ^ h>>32)
}

func (c *SYNCookies) mac(local, remote netip.AddrPort, peerISN uint32, slot uint64, idx uint8) uint32 {
	var b [1 + tupleLen + 4 + 8 + 1]byte
	b[0] = sipDomainCookieMAC
	n := 1 + putTuple(b[1:], local, remote)
	binary.BigEndian.PutUint32(b[n:], peerISN)
	binary.BigEndian.PutUint64(b[n+4:], slot)
	b[n+12] = idx
	return uint32(c.key.sum64(b[:])) & cookieMACMask
}

// Make returns the cookie to use as the ISS of the SYN-ACK answering a SYN
// from remote to local with sequence number peerISN and MSS option mss
// (pass 536, RFC 9293 §3.7.1's default, when the SYN had none). The MSS is
// rounded down to the table (see SYNCookieMSS).
func (c *SYNCookies) Make(now time.Duration, local, remote netip.AddrPort, peerISN uint32, mss uint16) (iss uint32) {
	slot := cookieSlot(now)
	idx := cookieMSSIndex(mss)
	x := uint32(slot&3)<<cookieSlotShift | uint32(idx)<<cookieMSSShift | c.mac(local, remote, peerISN, slot, idx)
	return x ^ c.pad(local, remote, peerISN)
}

// Check validates the cookie returned by the final ACK of a handshake from
// remote to local: cookie is the ACK's acknowledgment number minus one and
// peerISN its sequence number minus one (both modulo 2^32; the caller does
// the subtraction). It reports the MSS the cookie carries and whether the
// cookie is genuine, was made for this 4-tuple and peer ISN, and was made
// in the current slot or the one before. Anything else, including a cookie
// from the future (a clock that went backwards), is rejected.
func (c *SYNCookies) Check(now time.Duration, local, remote netip.AddrPort, peerISN uint32, cookie uint32) (mss uint16, ok bool) {
	x := cookie ^ c.pad(local, remote, peerISN)
	slot := cookieSlot(now)
	// The two slot bits give the cookie's age modulo 4; only ages 0 and 1
	// are acceptable, and the MAC over the full slot number rejects an age
	// of 4, 5, ... that aliases to them.
	age := (slot - uint64(x>>cookieSlotShift)) & 3
	if age > 1 || age > slot {
		return 0, false
	}
	idx := uint8(x>>cookieMSSShift) & 7
	if c.mac(local, remote, peerISN, slot-age, idx) != x&cookieMACMask {
		return 0, false
	}
	return synCookieMSS[idx], true
}

// SYNOptions are the options of a SYN that a cookie's 32 bits have no room
// for. When the SYN carried a timestamp option, the listener stores them
// in the low bits of its own TSval with EncodeSYNOptionsTS; the peer echoes
// that value in the TSecr of its ACK (RFC 7323 §4.3), where
// DecodeSYNOptionsTS finds them again. Without timestamps they are lost
// and the connection runs without window scaling, SACK and ECN, as Linux's
// does.
//
// These bits are not covered by the cookie's MAC: only a peer that has
// seen the SYN-ACK can complete the handshake, and by changing them it can
// only misconfigure its own connection. Every bit pattern decodes to
// valid options (a shift of at most 14, or none).
type SYNOptions struct {
	// WScale is the peer's window-scale shift count (RFC 7323 §2.3, at most
	// 14), or -1 when the SYN had no window-scale option.
	WScale        int8
	SACKPermitted bool // the SYN carried SACK-permitted (RFC 2018)
	ECN           bool // the SYN asked for ECN (ECE and CWR set, RFC 3168 §6.1.1)
}

// Layout of the low six bits of a cookie TSval (Linux's layout).
const (
	tsOptWScaleMask = 0x0f // 0..14 = shift count, 15 = no window scaling
	tsOptNoWScale   = 0x0f
	tsOptSACK       = 1 << 4
	tsOptECN        = 1 << 5
	tsOptBits       = 6
	tsOptMask       = 1<<tsOptBits - 1
)

// EncodeSYNOptionsTS returns the TSval to send in a cookie SYN-ACK at
// timestamp clock value tsNow: tsNow with its low six bits replaced by o.
// The result is never later than tsNow (it steps back one 64-tick block if
// needed, modulo 2^32), so the timestamps of the connection that follows
// never appear to go backwards (RFC 7323 §5.4). A WScale above 14 is sent
// as 14 (RFC 7323 §2.3); a negative one means none.
func EncodeSYNOptionsTS(tsNow uint32, o SYNOptions) uint32 {
	var opt uint32 = tsOptNoWScale
	if o.WScale >= 0 {
		opt = uint32(min(o.WScale, 14))
	}
	if o.SACKPermitted {
		opt |= tsOptSACK
	}
	if o.ECN {
		opt |= tsOptECN
	}
	ts := tsNow&^tsOptMask | opt
	if int32(ts-tsNow) > 0 {
		ts -= 1 << tsOptBits
	}
	return ts
}

// DecodeSYNOptionsTS recovers the options EncodeSYNOptionsTS stored, from
// the TSecr of the ACK that completed a cookie handshake.
func DecodeSYNOptionsTS(tsecr uint32) SYNOptions {
	o := SYNOptions{
		WScale:        int8(tsecr & tsOptWScaleMask),
		SACKPermitted: tsecr&tsOptSACK != 0,
		ECN:           tsecr&tsOptECN != 0,
	}
	if o.WScale == tsOptNoWScale {
		o.WScale = -1
	}
	return o
}
