package tcp

import (
	"time"

	"github.com/ultcp/ultcp/internal/wire"
)

// The sender's scoreboard (RFC 6675 §3): one record per segment sent and
// not yet cumulatively acknowledged, in sequence order, with what the
// receiver's SACK blocks said of it and when it was last sent. Loss
// detection (RACK, RFC 8985; or RFC 6675's DupThresh rule; or three
// duplicate ACKs without SACK) marks records lost; the output path
// retransmits lost records first (RFC 6675 NextSeg), then new data.
//
// A record is the segment as first sent, so a retransmission repeats
// its exact range and SACK blocks (which a receiver reports along the
// boundaries of what arrived) cover records whole. Records exist only for
// octets the engine retains; in custody mode the custodian retransmits.

// Record flags.
const (
	segSACKed   uint8 = 1 << iota // the receiver holds it (RFC 2018)
	segLost                       // deemed lost and not yet retransmitted
	segRetx                       // retransmitted at least once (Karn; DSACK undo)
	segFIN                        // the record ends with our FIN
	segTLP                        // its last transmission was a tail loss probe
	segRetxLost                   // a retransmission of it was deemed lost again
)

// txSeg is one record: sequence range [start, end) (end counts a FIN),
// the time of its last transmission, and its flags.
type txSeg struct {
	start, end uint32
	sentAt     time.Duration
	flags      uint8
}

func (s *txSeg) len() int { return int(s.end - s.start) }

// scoreboard holds the records and the counters RFC 6675's pipe needs.
type scoreboard struct {
	segs []txSeg // records from segs[head] on, in sequence order
	head int
	// sacked and lost are the octets of records marked SACKed, and
	// marked lost but not SACKed, so that pipe is O(1).
	sacked, lost int
	nSACKed      int // records marked SACKed (RACK.segs_sacked)
	// highSACK is one past the highest SACKed octet (RFC 6675's
	// HighACK plus the SACKed data above it), valid when sacked > 0.
	highSACK uint32
	// peak is the most sequence space the records have spanned at once:
	// the most octets sent and held for retransmission (retained.go).
	peak int
}

// n returns the number of records.
func (b *scoreboard) n() int { return len(b.segs) - b.head }

// at returns the i-th record from the front.
func (b *scoreboard) at(i int) *txSeg { return &b.segs[b.head+i] }

// reset forgets every record.
func (b *scoreboard) reset() {
	b.segs, b.head, b.sacked, b.lost, b.nSACKed = b.segs[:0], 0, 0, 0, 0
}

// add appends a record for newly sent octets [start, end).
func (b *scoreboard) add(start, end uint32, at time.Duration, fin bool) {
	var f uint8
	if fin {
		f = segFIN
	}
	if b.head > 0 && b.head == len(b.segs) {
		b.segs, b.head = b.segs[:0], 0
	} else if b.head >= 1024 && 2*b.head >= len(b.segs) {
		k := copy(b.segs, b.segs[b.head:])
		b.segs, b.head = b.segs[:k], 0
	}
	b.segs = append(b.segs, txSeg{start: start, end: end, sentAt: at, flags: f})
	if d := int(end - b.segs[b.head].start); d > b.peak {
		b.peak = d
	}
}

// find returns the index (from the front) of the first record that ends
// after seq, or n() when there is none.
func (b *scoreboard) find(seq uint32) int {
	lo, hi := 0, b.n()
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if seqLEQ(b.at(m).end, seq) {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

// drop removes a record's contribution to the counters.
func (b *scoreboard) drop(s *txSeg) {
	switch {
	case s.flags&segSACKed != 0:
		b.sacked -= s.len()
		b.nSACKed--
	case s.flags&segLost != 0:
		b.lost -= s.len()
	}
}

// ackTo removes the records that ack covers (cumulative acknowledgment),
// telling c (when not nil) of each one not SACKed before. A record that
// ack splits
// (the peer acknowledged part of it: a window probe, or a retransmission
// with different boundaries) is trimmed to what remains.
func (b *scoreboard) ackTo(ack uint32, c *Conn, now time.Duration) {
	for b.n() > 0 {
		s := b.at(0)
		if seqLEQ(s.end, ack) {
			b.drop(s)
			if s.flags&segSACKed == 0 && c != nil {
				c.delivered(s, now)
			}
			b.head++
			continue
		}
		if seqLT(s.start, ack) {
			b.drop(s)
			s.start = ack
			switch {
			case s.flags&segSACKed != 0:
				b.sacked += s.len()
				b.nSACKed++
			case s.flags&segLost != 0:
				b.lost += s.len()
			}
		}
		break
	}
	if b.n() == 0 {
		b.segs, b.head = b.segs[:0], 0
	}
	if b.sacked == 0 {
		b.highSACK = ack
	}
}

// sack marks the records that lie wholly within the block [left, right)
// as SACKed, telling c (when not nil) of each newly marked one, and
// returns how many octets were newly SACKed.
func (b *scoreboard) sack(left, right uint32, c *Conn, now time.Duration) int {
	n := 0
	for i := b.find(left); i < b.n(); i++ {
		s := b.at(i)
		if seqGT(s.end, right) {
			break
		}
		if seqLT(s.start, left) || s.flags&segSACKed != 0 {
			continue
		}
		if s.flags&segLost != 0 {
			b.lost -= s.len()
		}
		s.flags = s.flags&^segLost | segSACKed
		b.sacked += s.len()
		b.nSACKed++
		n += s.len()
		if b.sacked == s.len() || seqGT(s.end, b.highSACK) {
			b.highSACK = seqMax(b.highSACK, s.end)
		}
		if c != nil {
			c.delivered(s, now)
		}
	}
	return n
}

// markLost marks a record lost (RFC 6675 IsLost, RACK, or a timeout) and
// reports whether it was not already.
func (b *scoreboard) markLost(s *txSeg) bool {
	if s.flags&(segSACKed|segLost) != 0 {
		return false
	}
	if s.flags&segRetx != 0 {
		s.flags |= segRetxLost
	}
	s.flags |= segLost
	b.lost += s.len()
	return true
}

// retransmitted notes that a lost record was sent again at now.
func (b *scoreboard) retransmitted(s *txSeg, now time.Duration) {
	if s.flags&segLost != 0 {
		s.flags &^= segLost
		b.lost -= s.len()
	}
	s.flags |= segRetx
	s.sentAt = now
}

// firstLost returns the index of the first record marked lost, or -1.
func (b *scoreboard) firstLost() int {
	if b.lost == 0 {
		return -1
	}
	for i := 0; i < b.n(); i++ {
		if b.at(i).flags&segLost != 0 {
			return i
		}
	}
	return -1
}

// dupThreshLost applies RFC 6675 §4's IsLost to every record below the
// highest SACKed octet: a record is lost when at least DupThresh (3)
// discontiguous SACKed segments, or more than (DupThresh-1)*SMSS SACKed
// octets, lie above it. One backward pass counts what lies above each
// record. It returns the octets newly marked lost.
func (b *scoreboard) dupThreshLost(smss int) int {
	const dupThresh = 3
	if b.sacked == 0 {
		return 0
	}
	newly, segsAbove, octetsAbove := 0, 0, 0
	for i := b.n() - 1; i >= 0; i-- {
		s := b.at(i)
		if s.flags&segSACKed != 0 {
			segsAbove++
			octetsAbove += s.len()
			continue
		}
		// IsLost judges an original transmission: a retransmission
		// is not judged by the SACKs that condemned its original (only
		// a timeout declares it lost again).
		if s.flags&segRetx == 0 && (segsAbove >= dupThresh || octetsAbove > (dupThresh-1)*smss) {
			if b.markLost(s) {
				newly += s.len()
			}
		}
	}
	return newly
}

// pipe is RFC 6675 §4's estimate of the octets in the network: what is
// outstanding, less what the receiver holds (SACKed) and what is deemed
// lost and awaits retransmission. A retransmitted record counts once:
// its original is lost and its retransmission is in flight. Octets in a
// custodian's care have no records; what the receiver SACKed of them is
// left out too (custodian_sack.go).
func (c *Conn) pipe() int {
	return int(c.sndMax-c.sndUna) - c.board.sacked - c.board.lost - c.cs.sacked
}

// sackBlocksOf returns the SACK blocks of an arriving segment, checking
// each one (RFC 2018 §3: a block is [Left, Right) with Left < Right) and
// ignoring any outside [SND.UNA - MAX.SND.WND, SND.MAX], which no honest
// receiver could send (RFC 5961's ACK window, applied to SACK so a blind
// attacker cannot make us mark data delivered).
func (c *Conn) sackBlocksOf(o *wire.TCPOptions) []wire.SACKBlock {
	if !c.sackOK || o.NumSACK == 0 {
		return nil
	}
	n := min(int(o.NumSACK), wire.MaxSACKBlocks)
	k := 0
	lo := c.sndUna - c.maxSndWnd
	for _, blk := range o.SACK[:n] {
		if !seqLT(blk.Left, blk.Right) || seqLT(blk.Left, lo) || seqGT(blk.Right, c.sndMax) {
			c.stats.DropBadSACK++
			continue
		}
		c.sackIn[k] = blk
		k++
	}
	return c.sackIn[:k]
}

// flightSize is what the controller's multiplicative decrease starts from
// when a custodian reports a loss (ReportLoss) or the network marks ECN:
// the octets sent and not yet delivered. Octets the receiver has SACKed
// are not counted: a custodian's report comes an RTT after the loss,
// while SACKs keep the window moving, and SND.MAX − SND.UNA would then
// overstate what the path carried, letting a "halved" window exceed the
// one that caused the loss. (The engine's own loss detection starts from
// lossFlightSize.)
func (c *Conn) flightSize() int { return int(c.sndMax-c.sndUna) - c.board.sacked - c.cs.sacked }

// lossFlightSize is what the decrease starts from when the engine itself
// detects a loss (RACK, DupThresh, a repairing probe): RFC 5681's
// FlightSize, the octets sent and not yet cumulatively acknowledged,
// SACKed octets included (as in RFC 6675 §5 step 4), but no more than
// cwnd. SACKed octets must count: RACK declares a loss once segments
// sent after it are SACKed, so on a small window most of the flight is
// SACKed by then, and leaving them out made every loss collapse cwnd to
// its floor of two segments (a flight of five, four SACKed: 0.7 × one
// segment) where CUBIC means 0.7 × five. The cap is for the other case:
// while a hole holds the cumulative ACK back, SACKs let new data out and
// SND.MAX − SND.UNA can exceed the window that caused the loss, which a
// decrease must not start above (Linux starts from cwnd).
func (c *Conn) lossFlightSize() int {
	f := int(c.sndMax - c.sndUna)
	if cw := c.cc.CWnd(); cw >= 0 && cw < f {
		f = cw
	}
	return f
}
