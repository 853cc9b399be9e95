package tcp

// Sequence-number arithmetic modulo 2^32 (RFC 9293 §3.4). Every comparison
// of sequence numbers in the engine goes through these helpers so that
// connections whose numbers wrap past 2^32 behave exactly like any other.

func seqLT(a, b uint32) bool  { return int32(a-b) < 0 }
func seqLEQ(a, b uint32) bool { return int32(a-b) <= 0 }
func seqGT(a, b uint32) bool  { return int32(a-b) > 0 }
func seqGEQ(a, b uint32) bool { return int32(a-b) >= 0 }

// seqMax returns the later of a and b in sequence space.
func seqMax(a, b uint32) uint32 {
	if seqGT(a, b) {
		return a
	}
	return b
}

// seqInRange reports whether lo <= x < hi in sequence space.
func seqInRange(x, lo, hi uint32) bool { return seqLEQ(lo, x) && seqLT(x, hi) }
