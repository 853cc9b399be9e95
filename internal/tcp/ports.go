package tcp

import (
	"errors"
	"fmt"
	"net/netip"
	"sync/atomic"
)

// Ephemeral port range recommended by RFC 6056 §3.2: every port above the
// well-known ones, so that the search space an attacker must guess from is
// as large as possible.
const (
	DefaultEphemeralMin = 1024
	DefaultEphemeralMax = 65535
)

// ErrPortsExhausted is returned (wrapped) by PortAllocator.Pick when every
// port in the ephemeral range is in use towards the requested destination.
var ErrPortsExhausted = errors.New("tcp: every ephemeral port is in use")

// portTableLen is RFC 6056 Algorithm 3's TABLE_LENGTH. The RFC suggests 10;
// Linux used 256 until Klein and Pinkas ("From IP ID to device ID and
// KASLR bypass", USENIX Security 2022) showed that an attacker who makes a
// victim connect to many of its own destinations can find which ones share
// a counter and so fingerprint the device for as long as the key lives.
// The attack's cost grows with the table; 2^15 counters (128 KiB per
// stack, one stack per process) puts it beyond a web page's reach, and
// rekeying (a new PortAllocator) resets it.
const portTableLen = 1 << 15

// PortAllocator picks ephemeral (local) ports for active opens with RFC 6056
// §3.3.3 Algorithm 3, "Simple Hash-Based Port Selection Algorithm" with a
// second hash ("double-hash"):
//
//	offset = F(local IP, remote IP, remote port, key)
//	index  = G(local IP, remote IP, remote port, key)
//	port   = min + (offset + table[index]) mod (max − min + 1)
//	table[index]++, and try the next one while the port is in use
//
// Why Algorithm 3 rather than Algorithm 4 (§3.3.4, random increments): each
// destination gets its own sequence starting at an unpredictable point, so
// an off-path attacker cannot guess the port of someone else's connection
// (RFC 6056 §1's goal), while ports towards one destination are handed out
// in order through the whole range, which keeps the port-reuse frequency
// for that destination as low as it can be (§3.1: the collisions with
// lingering TIME-WAIT state that Algorithms 1 and 2 cause). Algorithm 4's
// extra randomness only hides the order of successive ports towards one
// destination, which the attacker already connects to; it costs a random
// number per try and makes the allocator non-deterministic, which this
// sans-I/O engine avoids (every choice here follows from the key, so tests
// replay exactly). F and G are two independent halves of one SipHash-2-4
// output keyed with the allocator's secret.
//
// The table starts at zero rather than at random values as in the RFC's
// pseudo-code: the keyed offset already makes the first port of every
// destination unpredictable, and a random start would add nothing an
// attacker does not learn from one observed port.
//
// A PortAllocator is safe for concurrent use: the counters are atomic, so
// two goroutines picking for the same destination get different ports.
// It allocates nothing per Pick unless it fails.
type PortAllocator struct {
	key      sipKey
	min, max uint16
	table    []atomic.Uint32
}

// NewPortAllocator returns an allocator of ports in [min, max], keyed with
// key (secret and random, e.g. from crypto/rand). It returns an error when
// the range is empty or includes port 0, which is not a valid port.
func NewPortAllocator(key [16]byte, min, max uint16) (*PortAllocator, error) {
	if min == 0 || min > max {
		return nil, fmt.Errorf("tcp: invalid ephemeral port range %d-%d (need 1 <= min <= max <= 65535)", min, max)
	}
	return &PortAllocator{
		key:   newSipKey(key),
		min:   min,
		max:   max,
		table: make([]atomic.Uint32, portTableLen),
	}, nil
}

// hash returns Algorithm 3's offset (F) and table index (G) for a
// destination. The remote port is part of it, as in the RFC, so two
// services on one host have independent sequences.
func (a *PortAllocator) hash(local netip.Addr, remote netip.AddrPort) (offset uint32, index uint32) {
	var b [1 + 16 + 16 + 2]byte
	b[0] = sipDomainPort
	l := local.As16()
	copy(b[1:17], l[:])
	putAddrPort(b[17:], remote)
	h := a.key.sum64(b[:])
	return uint32(h), uint32(h>>32) % portTableLen
}

// Pick returns a local port for a connection from local to remote for which
// inUse reports false. inUse is the caller's test of whether the 4-tuple
// (local, port, remote) is taken (by an open connection or TIME-WAIT
// state); it is called at most once per port of the range, and Pick never
// holds a lock while calling it. When every port of the range is in use,
// Pick returns an error wrapping ErrPortsExhausted after exactly
// max−min+1 calls.
func (a *PortAllocator) Pick(local netip.Addr, remote netip.AddrPort, inUse func(port uint16) bool) (uint16, error) {
	if inUse == nil {
		return 0, errors.New("tcp: PortAllocator.Pick needs an inUse function")
	}
	n := uint32(a.max) - uint32(a.min) + 1
	offset, index := a.hash(local, remote)
	ctr := &a.table[index]
	for range n {
		// Add returns the incremented value; the RFC reads the counter
		// before incrementing it.
		c := ctr.Add(1) - 1
		port := a.min + uint16((offset%n+c%n)%n)
		if !inUse(port) {
			return port, nil
		}
	}
	return 0, fmt.Errorf("tcp: no local port in %d-%d for %v → %v: %w", a.min, a.max, local, remote, ErrPortsExhausted)
}
