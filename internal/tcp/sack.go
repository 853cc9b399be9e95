package tcp

import "github.com/ultcp/ultcp/internal/wire"

// The receiver's side of SACK (RFC 2018 §4) and D-SACK (RFC 2883 §4).
// The out-of-order ranges themselves live in the receive buffer
// (recvBuf.ooo); here we remember which arrivals were most recent, since
// RFC 2018 orders the blocks by recency, not by sequence number, and
// which duplicate arrived, for a D-SACK block.

// maxRecentSACK is how many recent arrivals are remembered: the most
// blocks an ACK can carry.
const maxRecentSACK = wire.MaxSACKBlocks

// noteSACKArrival records that the out-of-order segment [s, e) arrived:
// RFC 2018 §4 requires the first SACK block to contain it, and the rest
// to repeat the most recently reported blocks.
func (c *Conn) noteSACKArrival(s, e uint32) {
	if !c.sackOK {
		return
	}
	copy(c.sackRecent[1:], c.sackRecent[:maxRecentSACK-1])
	c.sackRecent[0] = seqRange{s, e}
	c.nSackRecent = min(c.nSackRecent+1, maxRecentSACK)
}

// quickAcksAfterHole is how many in-order segments after an out-of-order
// arrival (the one filling the hole included) are ACKed at once rather
// than delayed (as Linux's quick-ACK
// mode, 16 segments). A hole means the sender is repairing a loss: RFC
// 5681 §4.2 already ACKs the out-of-order segments and the one that
// fills the hole at once, but the sender's recovery ends with an ACK of
// its last segment, and if that one is delayed (40 ms) or the ACK before
// it lost, the sender sits idle for hundreds of round trips waiting for
// the tail of its recovery. Delaying ACKs saves little while the sender
// is in trouble.
const quickAcksAfterHole = 16

// noteDSACK records that the octets [s, e) arrived again (RFC 2883 §4),
// to be reported as the first block of the next ACK, which goes out at
// once.
func (c *Conn) noteDSACK(s, e uint32) {
	if !c.sackOK || !seqLT(s, e) {
		return
	}
	c.dsack, c.dsackPending = seqRange{s, e}, true
	c.stats.DSACKsSent++
	c.ackNow = true
}

// oooContaining returns the out-of-order range holding seq.
func (c *Conn) oooContaining(seq uint32) (seqRange, bool) {
	for i := 0; i < c.rb.nooo; i++ {
		r := c.rb.ooo[i]
		if seqLEQ(r.start, seq) && seqLT(seq, r.end) {
			return r, true
		}
	}
	return seqRange{}, false
}

// fillSACK writes the SACK option of an outgoing ACK (RFC 2018 §4): a
// pending D-SACK block first (RFC 2883 §4), followed by the out-of-order
// block containing it if any; then the block holding the most recent
// arrival, then the other recently reported blocks, then any remaining
// out-of-order ranges, highest first, as far as option space allows
// (four blocks, three alongside timestamps).
func (c *Conn) fillSACK(o *wire.TCPOptions) {
	limit := wire.MaxSACKBlocks
	if c.tsOK {
		limit = 3
	}
	n := 0
	add := func(r seqRange) {
		if n >= limit {
			return
		}
		for i := 0; i < n; i++ {
			if o.SACK[i].Left == r.start && o.SACK[i].Right == r.end && !(i == 0 && c.dsackPending) {
				return
			}
		}
		o.SACK[n] = wire.SACKBlock{Left: r.start, Right: r.end}
		n++
	}
	if c.dsackPending {
		o.SACK[0] = wire.SACKBlock{Left: c.dsack.start, Right: c.dsack.end}
		n = 1
		if r, ok := c.oooContaining(c.dsack.start); ok {
			add(r)
		}
	}
	for i := 0; i < c.nSackRecent; i++ {
		if r, ok := c.oooContaining(c.sackRecent[i].start); ok {
			add(r)
		}
	}
	for i := c.rb.nooo - 1; i >= 0 && n < limit; i-- {
		add(c.rb.ooo[i])
	}
	c.dsackPending = false
	o.NumSACK = uint8(n)
}

// coversOOO reports whether [s, e) is already held out of order.
func (b *recvBuf) coversOOO(s, e uint32) bool {
	for i := 0; i < b.nooo; i++ {
		r := b.ooo[i]
		if seqLEQ(r.start, s) && seqLEQ(e, r.end) {
			return true
		}
	}
	return false
}
