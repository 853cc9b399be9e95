package tcp

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
)

// This file is the keyed pseudo-random function behind the engine's three
// secrets-based choices: initial sequence numbers (RFC 6528), SYN cookies
// (RFC 4987 §3.6) and ephemeral ports (RFC 6056). RFC 6528 §3 asks for a
// PRF whose output an off-path attacker cannot predict without the key;
// SipHash-2-4 (J.-P. Aumasson and D. J. Bernstein, "SipHash: a fast
// short-input PRF", INDOCRYPT 2012) is built for exactly these short inputs
// and is what Linux uses for the same three jobs. It is written here from
// the paper's description and checked against the reference test vectors.
// It allocates nothing: callers hash a fixed-size array on their stack.

// sipKey is a 128-bit SipHash key, split into its two little-endian
// 64-bit halves k0 and k1 as the paper's §2 specifies.
type sipKey struct{ k0, k1 uint64 }

// newSipKey reads a 16-byte key as the paper does: k0 is bytes 0–7 and k1
// bytes 8–15, each little-endian.
func newSipKey(key [16]byte) sipKey {
	return sipKey{
		k0: binary.LittleEndian.Uint64(key[0:8]),
		k1: binary.LittleEndian.Uint64(key[8:16]),
	}
}

// sipRound is one SipRound (paper §2, figure 2.1): three rounds of
// add-rotate-xor on the four state words.
func sipRound(v0, v1, v2, v3 uint64) (uint64, uint64, uint64, uint64) {
	v0 += v1
	v1 = bits.RotateLeft64(v1, 13)
	v1 ^= v0
	v0 = bits.RotateLeft64(v0, 32)
	v2 += v3
	v3 = bits.RotateLeft64(v3, 16)
	v3 ^= v2
	v0 += v3
	v3 = bits.RotateLeft64(v3, 21)
	v3 ^= v0
	v2 += v1
	v1 = bits.RotateLeft64(v1, 17)
	v1 ^= v2
	v2 = bits.RotateLeft64(v2, 32)
	return v0, v1, v2, v3
}

// sum64 is SipHash-2-4 of m under k: two SipRounds per 8-byte message
// word (c = 2) and four in finalisation (d = 4).
func (k sipKey) sum64(m []byte) uint64 {
	// Initialisation: the key xored with "somepseudorandomlygeneratedbytes".
	v0 := k.k0 ^ 0x736f6d6570736575
	v1 := k.k1 ^ 0x646f72616e646f6d
	v2 := k.k0 ^ 0x6c7967656e657261
	v3 := k.k1 ^ 0x7465646279746573

	n := len(m)
	// Compression: each full little-endian word is xored into v3, mixed by
	// c SipRounds, then xored into v0.
	for len(m) >= 8 {
		w := binary.LittleEndian.Uint64(m)
		v3 ^= w
		v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
		v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
		v0 ^= w
		m = m[8:]
	}
	// The last word holds the 0–7 remaining bytes and, in its top byte,
	// the message length mod 256.
	w := uint64(n) << 56
	for i, c := range m {
		w |= uint64(c) << (8 * uint(i))
	}
	v3 ^= w
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	v0 ^= w

	// Finalisation: 0xff into v2, d SipRounds, fold the state.
	v2 ^= 0xff
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	return v0 ^ v1 ^ v2 ^ v3
}

// Domain-separation tags, the first byte of every message hashed by this
// package, so that one key given to several users (ISN, cookies, ports)
// still yields unrelated functions.
const (
	sipDomainISN       = 'I'
	sipDomainCookiePad = 'C'
	sipDomainCookieMAC = 'M'
	sipDomainPort      = 'P' // RFC 6056 Algorithm 3's F and G
)

// tupleLen is the length of a connection's 4-tuple as putTuple writes it.
const tupleLen = 2 * (16 + 2)

// putAddrPort writes a as its 16-byte IPv6 form (an IPv4 address as its
// IPv4-mapped form, RFC 4291 §2.5.5.2, so both families share one encoding
// and "1.2.3.4" and "::ffff:1.2.3.4" are the same endpoint) followed by the
// port, big-endian, and returns the 18 bytes written. The zone is ignored:
// it names an interface, not an endpoint. The zero Addr encodes as all
// zeros, so no input panics.
func putAddrPort(b []byte, a netip.AddrPort) int {
	ip := a.Addr().As16()
	copy(b[:16], ip[:])
	binary.BigEndian.PutUint16(b[16:18], a.Port())
	return 18
}

// putTuple writes local then remote (tupleLen bytes).
func putTuple(b []byte, local, remote netip.AddrPort) int {
	n := putAddrPort(b, local)
	return n + putAddrPort(b[n:], remote)
}
