package tcp

// The node's side of custody and the receiver's SACK blocks.
//
// In custody mode the engine keeps no record of what it sent (the
// custodian does), so its scoreboard cannot say which octets the receiver
// holds, and RFC 6675 §4's pipe would count every octet between SND.UNA
// and SND.MAX as in the network, SACKed ones too: after a loss the node
// could send nothing new until the custodian's resend filled the hole and
// the cumulative ACK jumped, a stall of an RTT per loss. The SACK blocks
// of the ACKs the node sees still say what arrived, so the engine keeps
// the SACKed ranges of the custodian's part of the sequence space
// ([SND.UNA, custodyEnd)) here, without bytes or records, and leaves them
// out of pipe, as it leaves out SACKed records.
//
// What the engine does not do for those octets is judge them lost: a
// hole below SACKed octets is the custodian's to detect and resend, and
// its LOSS report (ReportLoss) is the congestion signal. Counting a hole
// as lost here would take it out of pipe while the custodian's resend of
// it is in flight, and the window would overshoot. The report comes an
// RTT after the loss (the custodian waits for the ACK that shows its
// resend filled the hole, RFC 8985 §6.2's test), and the octets SACKed
// meanwhile are left out of FlightSize too (flightSize), so the
// multiplicative decrease starts from what the path held, not from
// everything sent since: without that, each late report raised
// ssthresh and the window grew without bound at 5 % loss. The window
// grows on SACKed octets as it does on SACKed records, counted once, when
// first SACKed; the cumulative ACK that covers them later does not count
// them again. (Holding growth whenever a hole is open was measured too:
// the path's jitter reorders enough that it kept slow start from growing,
// 0.92 s instead of 0.35 s for the simulation's 4 MiB without loss.)

// maxCustodySACK bounds the SACKed ranges kept: three or four blocks come
// with each ACK (RFC 2018 §3), and a window rarely has more holes. When
// more are known the highest is forgotten, which only overestimates pipe.
const maxCustodySACK = 8

// custodySACK is the SACKed ranges above SND.UNA in custody, in sequence
// order, disjoint and not touching.
type custodySACK struct {
	r      [maxCustodySACK]seqRange
	n      int
	sacked int // octets in r (what pipe leaves out)
}

// csack notes the SACK block [left, right) for the octets in a
// custodian's care and returns how many of them it newly reports.
func (c *Conn) csack(left, right uint32) int {
	lo, hi := seqMax(left, c.sndUna), right
	if seqGT(hi, c.custodyEnd) {
		hi = c.custodyEnd
	}
	if !seqLT(lo, hi) {
		return 0
	}
	s := &c.cs
	before := s.sacked
	// Merge [lo, hi) with every range it overlaps or touches.
	i := 0
	for i < s.n && seqLT(s.r[i].end, lo) {
		i++
	}
	j := i
	for j < s.n && seqLEQ(s.r[j].start, hi) {
		if seqLT(s.r[j].start, lo) {
			lo = s.r[j].start
		}
		if seqGT(s.r[j].end, hi) {
			hi = s.r[j].end
		}
		j++
	}
	// Replace r[i:j] with the merged range.
	switch {
	case j-i == 0:
		if s.n == maxCustodySACK {
			if i == s.n {
				return 0 // above every range kept, and no room: forget it
			}
			s.n-- // forget the highest
		}
		copy(s.r[i+1:s.n+1], s.r[i:s.n])
		s.n++
	case j-i > 1:
		copy(s.r[i+1:], s.r[j:s.n])
		s.n -= j - i - 1
	}
	s.r[i] = seqRange{lo, hi}
	s.recount()
	return max(s.sacked-before, 0)
}

// csackTo forgets what the cumulative acknowledgment ack covers and
// returns how many of the octets it covers had been SACKed (and counted
// as delivered then).
func (c *Conn) csackTo(ack uint32) int {
	s := &c.cs
	if s.n == 0 {
		return 0
	}
	before := s.sacked
	k := 0
	for k < s.n && seqLEQ(s.r[k].end, ack) {
		k++
	}
	copy(s.r[:], s.r[k:s.n])
	s.n -= k
	if s.n > 0 && seqLT(s.r[0].start, ack) {
		s.r[0].start = ack
	}
	s.recount()
	return before - s.sacked
}

func (s *custodySACK) recount() {
	s.sacked = 0
	for _, r := range s.r[:s.n] {
		s.sacked += int(r.end - r.start)
	}
}

// noteCustodyUndo adds a range the custodian reported lost and resent to
// the episode's undo record (rack.go's onDSACK): one D-SACK per resent
// segment of it shows the original arrived too. A report comes after the
// ACK that covered the range, so the episode's marker moves down to it.
// (A custodian that sees the D-SACK before it reports does not report.)
func (c *Conn) noteCustodyUndo(start, end uint32) {
	if !c.undoEpisode {
		return
	}
	if c.nUndoRanges == maxUndoRanges {
		c.undoEpisode = false // too many to be a small mistake
		return
	}
	c.undoRanges[c.nUndoRanges] = seqRange{start, end}
	c.nUndoRanges++
	c.undoRetx += (int(end-start) + c.sndMSS - 1) / c.sndMSS
	if seqLT(start, c.undoMarker) {
		c.undoMarker = start
	}
}
