package tcp

import (
	"syscall"
	"time"

	"github.com/ultcp/ultcp/internal/tcp/cc"
	"github.com/ultcp/ultcp/internal/wire"
)

// pawsIdle is RFC 7323 §5.5's limit: a TS.Recent older than 24 days is
// stale and no longer used to reject segments.
const pawsIdle = 24 * 24 * time.Hour

// pawsSlack is how many ticks older than TS.Recent a TSval may be before
// PAWS rejects it (see inputSynchronized).
const pawsSlack = 1

// Input processes one arriving segment (RFC 9293 §3.10.7, "SEGMENT
// ARRIVES") and appends what must be sent in answer, including any data
// the segment allowed to go out. seg is only read; its payload is copied
// into the receive buffer if accepted.
func (c *Conn) Input(now time.Duration, seg *Segment, out []Segment) []Segment {
	if o, ok := c.fastInput(now, seg, out); ok {
		return o // header prediction (fastpath.go)
	}
	c.stats.SegsIn++
	f := seg.Hdr.Flags
	// SYN and FIN together make no sense in any state; many stacks drop
	// them (they are a classic scanner fingerprint).
	if f&(wire.FlagSYN|wire.FlagFIN) == wire.FlagSYN|wire.FlagFIN {
		c.stats.DropBadFlags++
		return out
	}
	switch c.state {
	case Closed:
		c.stats.DropClosed++
		return ResetFor(seg, out)
	case Listen:
		return c.inputListen(now, seg, out)
	case SynSent:
		return c.inputSynSent(now, seg, out)
	}
	return c.inputSynchronized(now, seg, out)
}

// InputBatch processes several segments that arrived together, as Input
// does for each, but sends the ACK they call for once, after the last:
// RFC 9293 §3.10.7 (MUST-58, MUST-59) asks that a series of queued
// segments be processed in full before any ACK is sent. Answers that
// cannot wait (resets, challenge ACKs, SYN-ACKs, fast retransmissions)
// still go out as each segment is processed.
func (c *Conn) InputBatch(now time.Duration, segs []Segment, out []Segment) []Segment {
	c.batching = true
	for i := range segs {
		out = c.Input(now, &segs[i], out)
	}
	c.batching = false
	return c.output(now, out)
}

// flush ends the processing of one segment: send what is due, unless a
// batch is being processed.
func (c *Conn) flush(now time.Duration, out []Segment) []Segment {
	if c.batching {
		return out
	}
	return c.output(now, out)
}

// negotiate applies the options of the peer's SYN (RFC 9293 §3.7.1,
// RFC 7323 §§2–3).
func (c *Conn) negotiate(now time.Duration, o *wire.TCPOptions) {
	// No option means 536 (RFC 9293 §3.7.1). Clamp: a tiny or zero MSS
	// would cut the stream into absurdly small segments; a large one is
	// bounded by our own link.
	mss := c.cfg.peerMSS(o)
	if o.HasWScale && !c.cfg.NoWindowScale {
		c.wsOK = true
		c.sndShift = min(o.WScale, 14) // RFC 7323 §2.3
	} else {
		c.wsOK = false
		c.sndShift, c.rcvShift = 0, 0
		c.cfg.MaxRecvBuf = min(c.cfg.MaxRecvBuf, 65535)
		c.rb.size = min(c.rb.size, 65535)
	}
	if o.HasTimestamp && !c.cfg.NoTimestamps {
		c.tsOK = true
		c.tsRecent, c.tsRecentAt = o.TSVal, now
		mss -= tsOptLen // RFC 6691: options come out of the MSS
	} else {
		c.tsOK = false
	}
	// RFC 2018 §2: SACK only if both SYNs carried SACK-permitted.
	c.sackOK = o.SACKPermitted && !c.cfg.NoSACK
	c.sndMSS = mss
	c.rcvMSS = min(c.cfg.MSS, DefaultMinMSS)
}

// inputListen is RFC 9293 §3.10.7.2.
func (c *Conn) inputListen(now time.Duration, seg *Segment, out []Segment) []Segment {
	h := &seg.Hdr
	switch {
	case h.Flags&wire.FlagRST != 0:
		c.stats.DropRST++ // an incoming RST is ignored
		return out
	case h.Flags&wire.FlagACK != 0:
		c.stats.DropBadAck++ // <SEQ=SEG.ACK><CTL=RST>
		return ResetFor(seg, out)
	case h.Flags&wire.FlagSYN == 0:
		c.stats.DropBadFlags++
		return out
	}
	if c.remotePort != 0 && h.SrcPort != c.remotePort {
		c.stats.DropBadFlags++
		return out
	}
	c.remotePort = h.SrcPort
	c.irs, c.rcvNxt = h.Seq, h.Seq+1
	c.negotiate(now, &h.Options)
	c.ecnOK = c.cfg.ECN && ecnSYN(h.Flags, false)
	c.sndWnd, c.maxSndWnd = uint32(h.Window), uint32(h.Window)
	c.sndWl1, c.sndWl2 = h.Seq, c.iss
	c.lastRecvAt = now
	c.state = SynReceived
	// Data carried by the SYN is not acknowledged (RCV.NXT covers the SYN
	// only), so the peer sends it again once we are synchronized.
	return c.sendSYN(now, out)
}

// inputSynSent is RFC 9293 §3.10.7.3, with RFC 5961 §3.2's rule that a RST
// is accepted in SYN-SENT only when it acknowledges our SYN.
func (c *Conn) inputSynSent(now time.Duration, seg *Segment, out []Segment) []Segment {
	h := &seg.Hdr
	f := h.Flags
	ackOK := false
	if f&wire.FlagACK != 0 {
		if seqLEQ(h.Ack, c.iss) || seqGT(h.Ack, c.sndMax) {
			if f&wire.FlagRST != 0 {
				c.stats.DropRST++
				return out
			}
			c.stats.DropBadAck++
			return c.emitRST(out, h.Ack)
		}
		ackOK = true
	}
	if f&wire.FlagRST != 0 {
		if !ackOK {
			c.stats.DropRST++
			return out
		}
		c.enterClosed(syscall.ECONNREFUSED)
		return out
	}
	if f&wire.FlagSYN == 0 {
		c.stats.DropBadFlags++
		return out
	}
	if h.SrcPort != c.remotePort {
		c.stats.DropBadFlags++
		return out
	}
	c.irs, c.rcvNxt = h.Seq, h.Seq+1
	c.negotiate(now, &h.Options)
	c.ecnOK = c.cfg.ECN && ecnSYN(h.Flags, ackOK)
	c.rcvAdvEdge = c.rcvNxt + uint32(min(c.rb.free(), 65535)) // what our SYN offered
	c.lastRecvAt = now
	// RFC 7323 §2.2: the window of a SYN segment is never scaled.
	c.sndWnd, c.maxSndWnd = uint32(h.Window), uint32(h.Window)
	c.sndWl1, c.sndWl2 = h.Seq, h.Ack
	if !ackOK {
		// Simultaneous open (RFC 9293 §3.5, Figure 8).
		c.state = SynReceived
		return c.sendSYN(now, out)
	}
	c.ackOfSYN(now, h.Ack)
	c.state = Established
	if c.finQueued {
		c.state = FinWait1
	}
	c.ackNow = true
	if len(seg.Payload) > 0 {
		c.inputText(now, h.Seq+1, seg.Payload, false)
	}
	return c.flush(now, out)
}

// ackOfSYN completes the handshake: our SYN is acknowledged by ack.
func (c *Conn) ackOfSYN(now time.Duration, ack uint32) {
	if c.rttTiming && seqGT(ack, c.rttSeq) {
		c.rttSample(now - c.rttAt)
	}
	c.rttTiming = false
	if c.retries > 0 && c.srtt == 0 && c.cfg.RTOInitial < 3*time.Second {
		// RFC 6298 §5.7: the SYN timed out and Karn's rule left no
		// sample; data transmission starts with an RTO of 3 s.
		c.rto = 3 * time.Second
	}
	c.sndUna = ack
	if seqLT(c.sndNxt, ack) {
		c.sndNxt = ack
	}
	c.retries = 0
	c.rtoAt = 0
	c.recover = ack
	c.cc.Init(now, c.sndMSS)
	c.armKeepalive(now)
}

// acceptable is the segment acceptability test of RFC 9293 §3.10.7.4.
func (c *Conn) acceptable(seq, n, wnd uint32) bool {
	switch {
	case n == 0 && wnd == 0:
		return seq == c.rcvNxt
	case n == 0:
		return seqInRange(seq, c.rcvNxt, c.rcvNxt+wnd)
	case wnd == 0:
		return false
	default:
		return seqInRange(seq, c.rcvNxt, c.rcvNxt+wnd) ||
			seqInRange(seq+n-1, c.rcvNxt, c.rcvNxt+wnd)
	}
}

// inputSynchronized is RFC 9293 §3.10.7.4 for SYN-RECEIVED and every
// later state, in the RFC's order of checks.
func (c *Conn) inputSynchronized(now time.Duration, seg *Segment, out []Segment) []Segment {
	h := &seg.Hdr
	f := h.Flags
	seq := h.Seq

	// Our SYN-ACK was lost and the peer repeats its SYN.
	if c.state == SynReceived && f&(wire.FlagSYN|wire.FlagACK|wire.FlagRST) == wire.FlagSYN && seq == c.irs {
		return c.sendSYN(now, out)
	}
	// Simultaneous open (RFC 9293 Figure 8, line 4): the peer's SYN-ACK
	// repeats its SYN, which RCV.NXT already covers, so the sequence test
	// below would reject it; its ACK completes our side.
	if c.state == SynReceived && f&(wire.FlagSYN|wire.FlagACK|wire.FlagRST) == wire.FlagSYN|wire.FlagACK && seq == c.irs {
		if seqLEQ(h.Ack, c.sndUna) || seqGT(h.Ack, c.sndMax) {
			c.stats.DropBadAck++
			return c.emitRST(out, h.Ack)
		}
		c.ackOfSYN(now, h.Ack)
		c.sndWnd, c.sndWl1, c.sndWl2 = uint32(h.Window), seq, h.Ack // a SYN's window is unscaled
		c.maxSndWnd = max(c.maxSndWnd, c.sndWnd)
		c.state = Established
		if c.finQueued {
			c.state = FinWait1
		}
		c.ackNow = true
		return c.flush(now, out)
	}

	// RFC 7323 §5.3: PAWS, before anything else looks at the segment.
	if c.tsOK && f&wire.FlagRST == 0 {
		if !h.Options.HasTimestamp {
			c.stats.DropNoTimestamp++ // RFC 7323 §3.2
			return out
		}
		// One tick of slack, as Linux's TCP_PAWS_WINDOW: a pure ACK
		// may have moved TS.Recent past data sent a moment earlier
		// and reordered on the way, which is no old duplicate.
		if seqLT(h.Options.TSVal, c.tsRecent-pawsSlack) && now-c.tsRecentAt <= pawsIdle {
			c.stats.DropPAWS++
			return c.challengeACK(now, out)
		}
	}

	// First: is the sequence number acceptable?
	wnd := uint32(c.rb.free())
	if !c.acceptable(seq, seg.seqLen(), wnd) {
		// RCV.WND zero: still take a valid ACK, URG or RST at RCV.NXT
		// (§3.10.7.4), dropping the text.
		if !(wnd == 0 && seq == c.rcvNxt) {
			if f&wire.FlagRST != 0 {
				c.stats.DropRST++
				return out
			}
			c.stats.DropOutOfWindow++
			if c.state == TimeWait && f&wire.FlagFIN != 0 {
				c.twAt = now + c.cfg.TimeWait // a retransmitted FIN restarts 2MSL
			}
			if len(seg.Payload) > 0 && f&wire.FlagSYN == 0 {
				// Old duplicate data: the peer lost our ACK. Data
				// segments are not part of ACK loops, so no limit.
				// RFC 2883 §4: report the duplicate in a D-SACK.
				if end := seq + uint32(len(seg.Payload)); seqLEQ(end, c.rcvNxt) {
					c.noteDSACK(seq, end)
				}
				return c.emitACK(now, out)
			}
			return c.challengeACK(now, out)
		}
	}

	// Second: RST (RFC 5961 §3.2: exactly RCV.NXT resets, anything
	// else in the window only earns a challenge ACK).
	if f&wire.FlagRST != 0 {
		if seq != c.rcvNxt {
			c.stats.DropRST++
			return c.challengeACK(now, out)
		}
		switch c.state {
		case SynReceived:
			c.enterClosed(syscall.ECONNREFUSED)
		case Established, FinWait1, FinWait2, CloseWait:
			c.enterClosed(syscall.ECONNRESET)
		default:
			c.enterClosed(nil)
		}
		return out
	}

	// Fourth: SYN in a synchronized state (RFC 5961 §4.2): challenge ACK.
	if f&wire.FlagSYN != 0 {
		c.stats.DropSYN++
		return c.challengeACK(now, out)
	}

	// Fifth: the ACK field.
	if f&wire.FlagACK == 0 {
		c.stats.DropBadFlags++
		return out
	}
	if c.state == SynReceived {
		if seqLEQ(h.Ack, c.sndUna) || seqGT(h.Ack, c.sndMax) {
			c.stats.DropBadAck++
			return c.emitRST(out, h.Ack)
		}
		c.ackOfSYN(now, h.Ack)
		c.sndWnd = uint32(h.Window) << c.sndShift
		c.maxSndWnd = max(c.maxSndWnd, c.sndWnd)
		c.sndWl1, c.sndWl2 = seq, h.Ack
		c.state = Established
		if c.finQueued {
			c.state = FinWait1
		}
	}
	// RFC 5961 §5.2: the ACK must lie in
	// [SND.UNA - MAX.SND.WND, SND.NXT]; else a challenge ACK.
	if seqGT(h.Ack, c.sndMax) || seqLT(h.Ack, c.sndUna-c.maxSndWnd) {
		c.stats.DropBadAck++
		return c.challengeACK(now, out)
	}
	c.lastRecvAt = now
	c.ackSinceTimeout = true // the peer is alive (zero-window probing)
	c.kaProbes = 0
	if c.kaAt != 0 {
		c.kaAt = now + c.cfg.KeepAlive
	}
	// RFC 7323 §4.3: remember the timestamp to echo.
	if c.tsOK && seqGEQ(h.Options.TSVal, c.tsRecent) && seqLEQ(seq, c.lastAckSent) {
		c.tsRecent, c.tsRecentAt = h.Options.TSVal, now
	}
	out = c.processAck(now, seg, out)
	if c.state == Closed {
		return out
	}

	// Sixth: URG. RFC 6093: the pointer only marks a position; it is
	// recorded as a sequence number and never used to index anything,
	// so a pointer of 0 or beyond the data is harmless.
	if f&wire.FlagURG != 0 && h.Urgent != 0 {
		switch c.state {
		case Established, FinWait1, FinWait2:
			up := seq + uint32(h.Urgent)
			if !c.urgValid || seqGT(up, c.rcvUp) {
				c.rcvUp, c.urgValid = up, true
			}
		}
	}

	// Seventh and eighth: text and FIN.
	c.ecnInput(seg)
	c.inputText(now, seq, seg.Payload, f&wire.FlagFIN != 0)
	return c.flush(now, out)
}

// processAck is the ACK processing of the established states.
func (c *Conn) processAck(now time.Duration, seg *Segment, out []Segment) []Segment {
	h := &seg.Hdr
	ack := h.Ack
	wnd := uint32(h.Window) << c.sndShift
	blocks := c.sackBlocksOf(&h.Options)
	if isDSACK(blocks, ack) {
		// RFC 2883: the first block reports a duplicate, not new data.
		c.onDSACK(now, blocks[0])
		blocks = blocks[1:]
	}
	c.rack.haveSample, c.rack.advanced, c.rack.retxAcked = false, false, false
	delivered := 0 // octets newly acknowledged, cumulatively or by SACK
	advanced := seqGT(ack, c.sndUna)
	if advanced {
		acked := int(ack - c.sndUna)
		c.ackSinceTimeout = true
		sackedBefore := c.board.sacked
		c.board.ackTo(ack, c, now)
		// Octets SACKed earlier were counted as delivered then.
		delivered += acked - (sackedBefore - c.board.sacked) - c.csackTo(ack)
		c.sndUna = ack
		if seqLT(c.sndNxt, ack) {
			c.sndNxt = ack
		}
		if c.sndUpValid && seqGEQ(ack, c.sndUp) {
			c.sndUpValid = false // the urgent data has been delivered
		}
		rel := ack
		if c.finQueued && seqGT(rel, c.dataEnd()) {
			rel = c.dataEnd()
		}
		if !c.custody || seqGT(rel, c.sb.seq) {
			c.sb.release(rel)
		}
		if c.rttTiming && seqGT(ack, c.rttSeq) {
			c.rttSample(now - c.rttAt)
			c.rttTiming = false
		} else if !c.rttTiming {
			c.sampleUntimed(now, &h.Options) // Karn stopped the timing (timer.go)
		}
		c.retries = 0
		c.dupAcks = 0
		c.tlpAcked(now, ack)
		if c.inRecovery {
			if seqGEQ(ack, c.recover) {
				c.inRecovery = false
				c.cc.OnRecoveryEnd(now)
			} else if !c.sackOK && c.board.n() > 0 {
				// RFC 6582 §3.2: a partial ACK means the next segment
				// was lost too; resend it at once.
				if c.board.markLost(c.board.at(0)) {
					c.forceRetx = true
				}
			}
		}
		if c.rtoRecovery && seqGEQ(ack, c.recover) {
			c.rtoRecovery = false
		}
	} else if ack == c.sndUna && len(seg.Payload) == 0 && h.Flags&wire.FlagFIN == 0 &&
		wnd == c.sndWnd && wnd != 0 && seqLT(c.sndUna, c.sndMax) {
		// RFC 5681 §2's duplicate ACK. Answers to zero-window probes
		// repeat the ACK too, but say nothing about loss.
		c.stats.DupAcks++
		c.dupAcks++
		if !c.sackOK && c.dupAcks == 3 && !c.inRecovery && !c.rtoRecovery && seqGEQ(c.sndUna, c.recover) &&
			!seqLT(c.sndUna, c.custodyEnd) && c.board.n() > 0 {
			// RFC 5681 §3.2 without SACK: the segment at SND.UNA is lost.
			c.board.markLost(c.board.at(0))
			c.enterRecovery(now)
		}
	}
	for _, blk := range blocks {
		delivered += c.board.sack(blk.Left, blk.Right, c, now)
		if seqLT(c.sndUna, c.custodyEnd) {
			delivered += c.csack(blk.Left, blk.Right)
		}
	}
	if c.sackOK && c.board.n() > 0 {
		out = c.detectLoss(now, out)
	}
	if delivered > 0 {
		var sample time.Duration
		if c.rack.haveSample {
			// Every ACK that delivers a segment sent once gives an RTT
			// sample, timed by the records (RFC 8985 §6.2, RFC 9406's
			// per-ACK samples); the RFC 6298 estimator above keeps its
			// one-per-round-trip timing.
			sample = max(now-c.rack.sampleAt, 1)
			if c.minRTT == 0 || sample < c.minRTT {
				c.minRTT = sample
			}
		}
		// The event lives in the Conn: a local would escape through the
		// interface call and cost an allocation per ACK.
		c.ackEv = cc.AckEvent{Now: now, Acked: delivered, RTT: sample, MinRTT: c.minRTT,
			InFlight: int(c.sndMax-c.sndUna) - c.board.sacked - c.cs.sacked, InRecovery: c.inRecovery,
			AppLimited: c.appLimited}
		c.cc.OnAck(&c.ackEv)
	}
	c.ecnAck(now, seg)
	if advanced {
		// RFC 6298 §5.2–5.3.
		if c.retainedInFlight() {
			c.rtoAt = now + c.rto
		} else {
			c.rtoAt = 0
			c.tlpAt, c.rackAt = 0, 0
			if c.custodyWanted {
				c.custody, c.custodyWanted = true, false
			}
		}
		c.armTLP(now)
	}
	// Window update (RFC 9293 §3.10.7.4, SND.WL1/SND.WL2 rule).
	if seqLT(c.sndWl1, h.Seq) || (c.sndWl1 == h.Seq && seqLEQ(c.sndWl2, ack)) {
		c.sndWnd, c.sndWl1, c.sndWl2 = wnd, h.Seq, ack
		if wnd > c.maxSndWnd {
			c.maxSndWnd = wnd
		}
		if wnd > 0 {
			c.persistAt, c.persistBackoff = 0, 0
		}
	}
	if c.finAcked() {
		switch c.state {
		case FinWait1:
			c.state = FinWait2
			if c.cfg.FinWait2Timeout > 0 {
				c.twAt = now + c.cfg.FinWait2Timeout
			}
		case Closing:
			c.enterTimeWait(now)
		case LastAck:
			c.enterClosed(nil)
		}
	}
	return out
}

// inputText accepts the payload (at seq) and FIN of an acceptable
// segment: RFC 9293 §3.10.7.4's seventh and eighth steps, with
// out-of-order segments kept for later (RFC 9293 §3.10.7.4, "held for
// later processing").
func (c *Conn) inputText(now time.Duration, seq uint32, p []byte, fin bool) {
	switch c.state {
	case Established, FinWait1, FinWait2:
	default:
		if len(p) > 0 || fin {
			c.stats.DropAfterFIN++ // the peer already sent its FIN
		}
		return
	}
	finAt := seq + uint32(len(p))
	if seqLT(seq, c.rcvNxt) { // the front was received already
		c.noteDSACK(seq, min(finAt-seq, c.rcvNxt-seq)+seq) // RFC 2883 §4
		d := c.rcvNxt - seq
		if int(d) >= len(p) {
			p = nil
		} else {
			p = p[d:]
		}
		seq = c.rcvNxt
		c.ackNow = true
	}
	off := int(seq - c.rcvNxt)
	if free := c.rb.free(); off+len(p) > free { // beyond the window: trim
		if off >= free {
			p = nil
		} else {
			p = p[:free-off]
		}
		fin = false
		c.ackNow = true
	}
	if len(p) > 0 {
		k := c.takeDirect(off, p) // octets InputDirect's caller already delivered
		c.rb.put(off, p[k:])
		if off == 0 {
			c.rcvNxt += uint32(len(p))
			c.rb.n += len(p) - k
			c.stats.BytesIn += uint64(len(p))
			if c.rb.nooo > 0 {
				nxt := c.rb.takeOOO(c.rcvNxt)
				if nxt != c.rcvNxt {
					c.stats.BytesIn += uint64(nxt - c.rcvNxt)
					c.rb.n += int(nxt - c.rcvNxt)
					c.rcvNxt = nxt
				}
				c.ackNow = true // RFC 5681 §4.2: ACK at once when a hole fills
			}
			if len(p) > c.rcvMSS {
				c.rcvMSS = min(len(p), c.cfg.MSS)
			}
			c.rcvUnacked += len(p)
			// RFC 9293 §3.8.6.3 (SHLD-19, MUST-40): an ACK for at least every
			// second full-sized segment, and none later than DelayedAck.
			if c.rcvUnacked >= 2*c.rcvMSS || c.cfg.DelayedAck < 0 {
				c.ackNow = true
			} else if c.quickAcks > 0 {
				c.quickAcks-- // a sender repairing a loss is waiting (sack.go)
				c.ackNow = true
			} else if c.delackAt == 0 && !c.ackNow {
				c.delackAt = now + c.cfg.DelayedAck
			}
			c.autotune(now)
		} else {
			e := seq + uint32(len(p))
			if c.rb.coversOOO(seq, e) {
				c.noteDSACK(seq, e) // RFC 2883 §4: a duplicate of data held out of order
			} else if c.rb.addOOO(seq, e) {
				c.stats.OutOfOrder++
				c.noteSACKArrival(seq, e)
				c.quickAcks = quickAcksAfterHole
			} else {
				c.stats.DropOOOFull++
			}
			c.ackNow = true // RFC 5681 §4.2: out-of-order data is ACKed at once
		}
	}
	if fin {
		if finAt == c.rcvNxt {
			c.acceptFIN(now)
		} else if seqGT(finAt, c.rcvNxt) {
			c.finPending, c.finSeq = true, finAt
			c.ackNow = true
		}
	} else if c.finPending && c.finSeq == c.rcvNxt {
		c.acceptFIN(now)
	}
}

// acceptFIN consumes the peer's FIN (RFC 9293 §3.10.7.4, eighth step).
func (c *Conn) acceptFIN(now time.Duration) {
	c.rcvNxt++
	c.finRcvd, c.finPending = true, false
	c.ackNow = true
	if c.rb.nooo > 0 {
		// Octets held out of order lie beyond the FIN, where the peer's
		// stream has ended: a broken or hostile peer's, never to be
		// delivered (RCV.NXT now covers the FIN, so keeping them would
		// even place them at RCV.NXT).
		c.stats.DropAfterFIN++
		c.rb.nooo = 0
	}
	switch c.state {
	case Established:
		c.state = CloseWait
	case FinWait1:
		if c.finAcked() {
			c.enterTimeWait(now)
		} else {
			c.state = Closing
		}
	case FinWait2:
		c.enterTimeWait(now)
	}
}

// enterTimeWait starts the 2MSL wait (RFC 9293 §3.6).
func (c *Conn) enterTimeWait(now time.Duration) {
	c.state = TimeWait
	c.twAt = now + c.cfg.TimeWait
	c.rtoAt, c.persistAt, c.kaAt = 0, 0, 0
}

// MayReuse answers, for a connection in TIME-WAIT, whether a new SYN from
// the same 4-tuple may end it and open a new incarnation (RFC 6191 with
// timestamps: the SYN's TSval is newer than TS.Recent; without them,
// RFC 9293 §3.6.1 / RFC 1122 §4.2.2.13: its sequence number is beyond
// RCV.NXT). A stack calls it before handing such a SYN to its Listener;
// when it reports true the stack drops this Conn.
func (c *Conn) MayReuse(seg *Segment) bool {
	h := &seg.Hdr
	if c.state != TimeWait || h.Flags&(wire.FlagSYN|wire.FlagACK|wire.FlagRST|wire.FlagFIN) != wire.FlagSYN {
		return false
	}
	if c.tsOK && h.Options.HasTimestamp {
		return seqGT(h.Options.TSVal, c.tsRecent)
	}
	return seqGT(h.Seq, c.rcvNxt)
}
