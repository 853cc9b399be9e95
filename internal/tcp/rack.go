package tcp

import (
	"time"

	"github.com/ultcp/ultcp/internal/wire"
)

// Loss detection and recovery over the scoreboard.
//
// Which losses are detected how depends on what the peer negotiated:
//
//   - SACK and timestamps: RACK-TLP (RFC 8985), the default. A segment is
//     lost when a segment sent after it has been delivered and a
//     reordering window has passed since; a tail loss probe (TLP) makes
//     the receiver reveal a lost tail without waiting for the RTO.
//   - SACK without timestamps: RFC 6675's DupThresh rule (a segment is
//     lost when three segments above it are SACKed). Without timestamps
//     RACK cannot always tell an ACK of an original from one of its
//     retransmission (RFC 8985 §6.2 step 2), so we keep the classic rule.
//   - Neither: three duplicate ACKs (RFC 5681 §3.2) and NewReno's partial
//     ACKs (RFC 6582).
//
// Whichever way, a loss starts one recovery episode per window (RFC 6675
// §5, RFC 6582): the controller's OnCongestion, then lost segments are
// retransmitted ahead of new data while pipe < cwnd. D-SACKs (RFC 2883)
// that show every retransmission of an episode was unnecessary undo the
// controller's reduction, and widen RACK's reordering window.

// rackState is RACK's state (RFC 8985 §6.1) plus what this ACK delivered.
type rackState struct {
	xmitTS time.Duration // RACK.xmit_ts: send time of the most recently sent delivered segment
	endSeq uint32        // RACK.end_seq
	rtt    time.Duration // RACK.rtt
	valid  bool
	fack   uint32 // RACK.fack: highest end sequence delivered
	fackOK bool   // fack holds a delivered end (before that, 0 is no sequence number)
	// reorderingSeen is RACK.reordering_seen: a segment was delivered
	// below one delivered earlier, so the reordering window is used even
	// when DupThresh segments are SACKed.
	reorderingSeen bool
	reoWndMult     int    // RACK.reo_wnd_mult, widened by D-SACKs
	reoWndPersist  int    // recoveries left before reoWndMult resets
	dsackRound     uint32 // D-SACKs widen the window at most once per round trip: the next round ends here
	dsackRoundOK   bool

	// Per ACK: the newest send time among newly delivered segments never
	// retransmitted, for an RTT sample; advanced when xmitTS moved.
	sampleAt   time.Duration
	haveSample bool
	advanced   bool
	// retxAcked: the ACK delivered a retransmitted segment, so it may
	// have been sent in answer to the retransmission, long after the
	// originals it also covers arrived (their own ACK lost): timing
	// those gives no round trip (Linux drops such samples too).
	retxAcked bool
}

// tlpState is TLP's state (RFC 8985 §7).
type tlpState struct {
	endSeq    uint32 // TLP.end_seq: SND.NXT when the probe was sent; 0 when no probe is outstanding
	active    bool
	isRetrans bool // the probe retransmitted data (TLP.is_retrans)
	dsacked   bool // a D-SACK covered the probe: it was unnecessary
}

// useRACK reports whether RACK-TLP detects losses on this connection.
func (c *Conn) useRACK() bool { return c.sackOK && c.tsOK && !c.cfg.NoRACK }

// delivered updates RACK for a segment that an ACK newly acknowledged or
// SACKed (RFC 8985 §6.2 steps 1–3).
func (c *Conn) delivered(s *txSeg, now time.Duration) {
	r := &c.rack
	if s.flags&segRetx != 0 {
		r.retxAcked = true
		// Step 2: if the segment was retransmitted, the ACK may be for
		// its original; with no way to tell, ignore it unless the RTT
		// would be plausible for the retransmission.
		if c.minRTT > 0 && now-s.sentAt < c.minRTT {
			return
		}
	} else if !r.haveSample || s.sentAt > r.sampleAt {
		r.sampleAt, r.haveSample = s.sentAt, true
	}
	if !r.valid || s.sentAt > r.xmitTS || (s.sentAt == r.xmitTS && seqGT(s.end, r.endSeq)) {
		r.xmitTS, r.endSeq, r.rtt, r.valid = s.sentAt, s.end, now-s.sentAt, true
		r.advanced = true
	}
	// Step 3: a never-retransmitted segment delivered below the highest
	// one delivered so far arrived out of order.
	if s.flags&segRetx == 0 && r.fackOK && seqLT(s.end, r.fack) {
		r.reorderingSeen = true
	}
	if !r.fackOK || seqGT(s.end, r.fack) {
		// Unset until the first delivery: compared with a zero fack,
		// every sequence number in the half of the space "below" 0
		// would look reordered.
		r.fack, r.fackOK = s.end, true
	}
}

// reoWnd is RFC 8985 §6.2 step 4's reordering window.
func (c *Conn) reoWnd() time.Duration {
	r := &c.rack
	if !r.reorderingSeen && (c.inRecovery || c.rtoRecovery || c.board.nSACKed >= 3) {
		return 0
	}
	mult := max(r.reoWndMult, 1)
	w := time.Duration(mult) * c.minRTT / 4
	if c.srtt > 0 {
		w = min(w, c.srtt)
	}
	return w
}

// rackDetect is RFC 8985 §6.2 step 5: mark lost every unSACKed segment
// sent before the most recently delivered one, once RACK.rtt plus the
// reordering window has passed since it was sent; arm the reordering
// timer for the earliest one not yet due. It returns the octets newly
// marked lost.
func (c *Conn) rackDetect(now time.Duration) int {
	r := &c.rack
	c.rackAt = 0
	if !r.valid {
		return 0
	}
	wnd := c.reoWnd()
	var timeout time.Duration
	newly := 0
	b := &c.board
	for i := 0; i < b.n(); i++ {
		s := b.at(i)
		if s.flags&(segSACKed|segLost) != 0 {
			continue
		}
		if !(r.xmitTS > s.sentAt || (r.xmitTS == s.sentAt && seqGT(r.endSeq, s.end))) {
			continue // sent after the most recently delivered segment
		}
		remaining := s.sentAt + r.rtt + wnd - now
		if remaining <= 0 {
			if b.markLost(s) {
				newly += s.len()
				c.stats.RACKLosses++
			}
		} else {
			timeout = max(timeout, remaining)
		}
	}
	if timeout > 0 {
		c.rackAt = now + timeout
	}
	return newly
}

// isDSACK reports whether the first block of an ACK is a D-SACK (RFC
// 2883 §4.2): below the cumulative ACK, or inside the second block.
func isDSACK(bl []wire.SACKBlock, ack uint32) bool {
	if len(bl) == 0 {
		return false
	}
	if seqLEQ(bl[0].Right, ack) {
		return true
	}
	return len(bl) > 1 && seqGEQ(bl[0].Left, bl[1].Left) && seqLEQ(bl[0].Right, bl[1].Right)
}

// onDSACK handles a D-SACK block [l, r): the receiver got those octets
// twice, so a retransmission of them was unnecessary (RFC 2883 §4.2).
func (c *Conn) onDSACK(now time.Duration, blk wire.SACKBlock) {
	c.stats.DSACKsRcvd++
	r := &c.rack
	// RFC 8985 §6.2 step 4: widen the reordering window, at most once
	// per round trip, and keep it wide for 16 recoveries.
	if !r.dsackRoundOK || seqGEQ(c.sndUna, r.dsackRound) {
		r.reoWndMult++
		r.dsackRound, r.dsackRoundOK = c.sndMax, true
	}
	r.reoWndPersist = 16
	r.reorderingSeen = true
	if c.tlp.active && c.tlp.isRetrans && seqLEQ(blk.Right, c.tlp.endSeq) && seqGEQ(blk.Right, c.tlp.endSeq-uint32(c.sndMSS)) {
		c.tlp.dsacked = true // RFC 8985 §7.4.1: the probe was a duplicate
	}
	// RFC 2883 §4.2 / RFC 3708: every retransmission of the episode
	// reported as a duplicate means no loss happened; undo. Only
	// duplicates at or above SND.UNA at the episode's start count: older
	// ones answer retransmissions of an earlier episode.
	if c.undoEpisode && c.undoRetx > 0 && seqGEQ(blk.Left, c.undoMarker) && c.undoCovers(blk) {
		n := (int(blk.Right-blk.Left) + c.sndMSS - 1) / c.sndMSS
		c.undoRetx -= min(n, c.undoRetx)
		if c.undoRetx == 0 {
			c.undo(now)
		}
	}
}

// maxUndoRanges bounds the retransmissions an episode remembers for
// undo; an episode with more is never undone (it was no small mistake).
const maxUndoRanges = 32

// noteUndoRetx remembers a retransmission of the current episode, so that
// only D-SACKs for retransmitted octets count towards undo: a duplicate
// made by the network (RFC 3708 §3) proves nothing about our timers.
func (c *Conn) noteUndoRetx(s *txSeg) {
	if !c.undoEpisode {
		return
	}
	if c.nUndoRanges == maxUndoRanges {
		c.undoEpisode = false
		return
	}
	c.undoRanges[c.nUndoRanges] = seqRange{s.start, s.end}
	c.nUndoRanges++
	c.undoRetx++
}

// undoCovers reports whether the D-SACK block lies within a retransmission
// of the current episode.
func (c *Conn) undoCovers(blk wire.SACKBlock) bool {
	for i := 0; i < c.nUndoRanges; i++ {
		r := c.undoRanges[i]
		if seqLEQ(r.start, blk.Left) && seqLEQ(blk.Right, r.end) {
			return true
		}
	}
	return false
}

// undo reverts a congestion response shown spurious.
func (c *Conn) undo(now time.Duration) {
	c.cc.Undo(now)
	c.stats.SpuriousUndos++
	c.undoEpisode = false
	if c.inRecovery {
		c.inRecovery = false
	}
	c.rtoRecovery = false
	// What was marked lost was only late: forget the marks (RACK
	// marks again whatever really is lost).
	b := &c.board
	for i := 0; i < b.n() && b.lost > 0; i++ {
		s := b.at(i)
		if s.flags&segLost != 0 {
			s.flags &^= segLost
			b.lost -= s.len()
		}
	}
}

// startEpisode begins a congestion response that D-SACKs may undo.
func (c *Conn) startEpisode() {
	c.undoEpisode = true
	c.undoRetx = 0
	c.nUndoRanges = 0
	c.undoMarker = c.sndUna
}

// enterRecovery starts fast recovery on a detected loss (RFC 6675 §5
// step 4, RFC 5681 §3.2): one congestion response per window.
func (c *Conn) enterRecovery(now time.Duration) {
	c.cc.OnCongestion(now, c.lossFlightSize(), false)
	c.inRecovery, c.recover = true, c.sndMax
	c.stats.FastRetransmits++
	c.startEpisode()
	c.forceRetx = true // the first retransmission goes regardless of pipe
	c.rescueDone = false
	if r := &c.rack; r.reoWndPersist > 0 {
		r.reoWndPersist--
		if r.reoWndPersist == 0 {
			r.reoWndMult = 1
		}
	}
}

// armTLP schedules a tail loss probe (RFC 8985 §7.2) when the connection
// runs RACK-TLP, has retained data in flight and no probe outstanding,
// and either has nothing SACKed or is in fast recovery. RFC 8985 leaves
// fast recovery to RACK, which finds a lost retransmission only when
// something sent after it is delivered; on a small window the
// retransmission is often the last segment sent, and when it or the ACK
// answering it is lost (at 5 % loss each way, one recovery in ten),
// only the RTO was left. A probe after it (new data, or the
// retransmission again) lets RACK or the cumulative ACK finish the
// recovery instead. Outside recovery, SACKed data means RACK's
// reordering timer is watching (§7.2). It is called both when an ACK
// advances SND.UNA and after new data goes out, so the PTO runs from the
// last transmission and is sized by what is in flight after it. (Armed
// on ACKs only, a flight sent after the ACK that emptied the pipe had no
// probe at all, and the loss of its one ACK cost an RTO.)
//
// PTO = 2·SRTT, at least tlpMinPTO, or 2·SRTT + WCDelAckT when a single
// segment is in flight (its lone ACK may be delayed). When the PTO would
// reach the RTO, the probe takes the RTO's place (RFC 8985 §7.2: PTO =
// min(PTO, time to the RTO)): it repairs a lost tail as the RTO would
// without collapsing cwnd, and re-arms the RTO behind it (§7.3).
func (c *Conn) armTLP(now time.Duration) {
	c.tlpAt = 0
	if !c.useRACK() || c.rtoRecovery || c.tlp.active || c.board.n() == 0 ||
		(c.board.nSACKed > 0 && !c.inRecovery) || c.srtt == 0 || c.sndWnd == 0 {
		return
	}
	pto := max(2*c.srtt, tlpMinPTO)
	if c.sndMax-c.sndUna <= uint32(c.sndMSS) {
		pto = 2*c.srtt + tlpWorstDelAck // the lone segment's ACK may be delayed
	}
	at := now + pto
	if c.rtoAt != 0 && at > c.rtoAt {
		at = c.rtoAt
	}
	c.tlpAt = at
}

// tlpWorstDelAck is RFC 8985 §7.2's WCDelAckT: the longest a receiver
// may delay the ACK of a lone segment.
const tlpWorstDelAck = 200 * time.Millisecond

// tlpMinPTO is the shortest PTO. On a path whose RTT is 100 µs, 2·SRTT
// alone would fire at every hiccup of a busy host on the way (a receiver
// that ACKs a batch at once, a descheduled gateway), each time sending a
// segment the window had not allowed. Linux adds two timer ticks (2 ms
// at HZ=1000) to 2·SRTT; QUIC bounds every loss timer below by a
// granularity of 1 ms (RFC 9002 §6.1.2).
const tlpMinPTO = 2 * time.Millisecond

// onTLP sends a tail loss probe (RFC 8985 §7.3): new data if the peer's
// window allows, else the highest-sequence unSACKed segment again. The
// RTO is armed afresh.
//
// New data goes out as two segments when there are two (RFC 9002 §6.2.4
// lets a QUIC probe be two packets, so that one loss does not cost the
// next, doubled PTO). In TCP the second segment does more: a receiver
// holding one in-order segment may delay its ACK (40 ms on Linux, up to
// 500 ms by RFC 9293), but must ACK every second full-sized segment at
// once (RFC 9293 §3.8.6.3, RFC 5681 §4.2). The usual tail is a flight
// whose one ACK was lost (a receiver that ACKs a burst at once); a
// single new segment then arrives in order and waits for the delayed
// ACK, which also feeds SRTT a 40 ms "round trip"; two are answered at
// once, as are probes that arrive out of order because the tail itself
// was lost.
func (c *Conn) onTLP(now time.Duration, out []Segment) []Segment {
	c.tlpAt = 0
	c.stats.TLPProbes++
	n := len(out)
	for i := 0; i < tlpNewSegments && (seqLT(c.sndNxt, c.dataEnd()) || (c.finQueued && !c.finSent())); i++ {
		k := len(out)
		out = c.sendNew(now, out, true)
		if len(out) == k {
			break // the peer's window is full
		}
	}
	if len(out) > n {
		c.tlp = tlpState{endSeq: c.sndMax, active: true}
	} else {
		for i := c.board.n() - 1; i >= 0; i-- {
			s := c.board.at(i)
			if s.flags&segSACKed != 0 {
				continue
			}
			out = c.retransmit(now, out, s)
			s.flags |= segTLP
			c.tlp = tlpState{endSeq: c.sndMax, active: true, isRetrans: true}
			break
		}
	}
	if c.retainedInFlight() {
		c.rtoAt = now + c.rto
	}
	return out
}

// tlpNewSegments is how many new segments a probe sends (see onTLP).
const tlpNewSegments = 2

// tlpAcked ends a probe episode once the ACK covers it (RFC 8985 §7.4):
// a retransmitted probe not reported as a duplicate repaired a real loss,
// which the controller must hear of.
func (c *Conn) tlpAcked(now time.Duration, ack uint32) {
	if !c.tlp.active || seqLT(ack, c.tlp.endSeq) {
		return
	}
	if c.tlp.isRetrans && !c.tlp.dsacked && !c.inRecovery {
		c.cc.OnCongestion(now, c.lossFlightSize(), false)
		c.cc.OnRecoveryEnd(now)
		c.stats.TLPRecoveries++
	}
	c.tlp = tlpState{}
}

// detectLoss runs the connection's loss detection after an ACK that may
// have delivered data, and starts a recovery episode when it finds a
// loss outside one (RFC 6675 §5: not before SND.UNA passes the last
// episode's recovery point).
func (c *Conn) detectLoss(now time.Duration, out []Segment) []Segment {
	newly := 0
	if c.useRACK() {
		if c.rack.advanced {
			newly = c.rackDetect(now)
		}
	} else {
		newly = c.board.dupThreshLost(c.sndMSS)
		// RFC 6675 §5: DupThresh duplicate ACKs also mean the first
		// unacknowledged segment is lost (its first transmission).
		if s := c.board.at(0); c.dupAcks >= 3 && s.flags&segRetx == 0 && c.board.markLost(s) {
			newly += s.len()
		}
	}
	if newly > 0 && !c.inRecovery && !c.rtoRecovery && seqGEQ(c.sndUna, c.recover) {
		c.enterRecovery(now)
	}
	return out
}
