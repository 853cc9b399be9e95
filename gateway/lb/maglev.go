package lb

import (
	"encoding/binary"
	"net/netip"
	"slices"
)

// Maglev consistent hashing (Eisenbud et al., "Maglev: A Fast and Reliable
// Software Network Load Balancer", NSDI 2016, §3.4). Each member prefers
// the table's M slots in the order of its own permutation
// (offset + j·skip) mod M, where offset and skip come from two hashes of
// its address and M is prime, so every skip in [1, M-1] visits every slot.
// The table is filled in rounds: in each, every member in turn takes its
// next preferred slot that is still free. So each member ends with
// ⌊M/N⌋ or ⌈M/N⌉ slots, and removing a member mostly hands its slots to
// others while the others keep theirs.

// buildTable refills s.table from the members that are up. Members are
// taken in address order, not join order, so that the table depends only
// on the set of members (a restarted gateway computes the same one).
func (s *Service) buildTable() {
	M := uint64(s.cfg.TableSize)
	if len(s.table) != int(M) {
		s.table = make([]int32, M)
	}
	if len(s.up) == 0 {
		return
	}
	ms := slices.Clone(s.up)
	slices.SortFunc(ms, func(a, b *Member) int { return a.addr.Compare(b.addr) })
	offsets := make([]uint64, len(ms))
	skips := make([]uint64, len(ms))
	for i, m := range ms {
		m.offset, m.skip = maglevPerm(s.cfg.Seed, m.addr, M)
		offsets[i], skips[i] = m.offset, m.skip
	}
	owner := populate(M, offsets, skips)
	for slot, i := range owner {
		s.table[slot] = ms[i].index
	}
}

// maglevPerm is a member's permutation: offset = h1 mod M, skip = h2 mod
// (M-1) + 1, with two independent hashes of the address.
func maglevPerm(seed uint64, addr netip.Addr, M uint64) (offset, skip uint64) {
	b := addr.As16()
	h1 := fnv1a(seed^0x6d61676c65763031, b[:]) // "maglev01"
	h2 := fnv1a(seed^0x6d61676c65763032, b[:]) // "maglev02"
	return h1 % M, h2%(M-1) + 1
}

// fnv1a is FNV-1a 64 with the seed folded into the offset basis, then a
// final avalanche (FNV's low bits mix poorly for nearby addresses).
func fnv1a(seed uint64, b []byte) uint64 {
	h := uint64(14695981039346656037) ^ seed
	for _, c := range b {
		h ^= uint64(c)
		h *= 1099511628211
	}
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	return h
}

// populate is Maglev's Population (pseudocode 1 of the paper): the owner
// (index into offsets) of each of the M slots.
func populate(M uint64, offsets, skips []uint64) []int {
	n := len(offsets)
	owner := make([]int, M)
	for i := range owner {
		owner[i] = -1
	}
	next := make([]uint64, n)
	filled := uint64(0)
	for {
		for i := 0; i < n; i++ {
			c := (offsets[i] + next[i]*skips[i]) % M
			for owner[c] >= 0 {
				next[i]++
				c = (offsets[i] + next[i]*skips[i]) % M
			}
			owner[c] = i
			next[i]++
			filled++
			if filled == M {
				return owner
			}
		}
	}
}

// FlowHash hashes a connection's 4-tuple for Pick (the hash policy sends
// equal hashes to one member, so a SYN retransmitted after a gateway
// restart lands where the first one did). It allocates nothing.
func FlowHash(seed uint64, src, dst netip.AddrPort) uint64 {
	a, d := src.Addr().As16(), dst.Addr().As16()
	h := seed ^ 0x243F6A8885A308D3
	h = mixWord(h, binary.BigEndian.Uint64(a[:8]))
	h = mixWord(h, binary.BigEndian.Uint64(a[8:]))
	h = mixWord(h, binary.BigEndian.Uint64(d[:8]))
	h = mixWord(h, binary.BigEndian.Uint64(d[8:]))
	h = mixWord(h, uint64(src.Port())<<16|uint64(dst.Port()))
	// Final avalanche (murmur3's fmix64), so the low bits used by the
	// table's modulo depend on every input bit.
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}

func mixWord(h, v uint64) uint64 {
	h ^= v
	h *= 0x9E3779B97F4A7C15
	return h ^ h>>29
}
