package sim

import "sort"

// span is the half-open range [s, e) of stream offsets.
type span struct{ s, e int64 }

// rangeSet is a set of stream offsets kept as sorted, disjoint,
// non-touching spans. The simulator records in it the bytes that some
// transmission will deliver intact, to tell a needed retransmission from
// a spurious one; it stays small because delivered bytes merge into one
// long run with a few holes near its front.
type rangeSet struct{ r []span }

// add inserts [s, e).
func (m *rangeSet) add(s, e int64) {
	if s >= e {
		return
	}
	// The first span that ends at or after s can merge with [s, e).
	i := sort.Search(len(m.r), func(k int) bool { return m.r[k].e >= s })
	j := i
	for j < len(m.r) && m.r[j].s <= e {
		s = min(s, m.r[j].s)
		e = max(e, m.r[j].e)
		j++
	}
	switch {
	case j == i: // no overlap: insert
		m.r = append(m.r, span{})
		copy(m.r[i+1:], m.r[i:])
		m.r[i] = span{s, e}
	default: // spans i..j-1 become one
		m.r[i] = span{s, e}
		m.r = append(m.r[:i+1], m.r[j:]...)
	}
}

// covers reports whether every offset of [s, e) is in the set.
func (m *rangeSet) covers(s, e int64) bool {
	if s >= e {
		return true
	}
	i := sort.Search(len(m.r), func(k int) bool { return m.r[k].e > s })
	return i < len(m.r) && m.r[i].s <= s && m.r[i].e >= e
}
