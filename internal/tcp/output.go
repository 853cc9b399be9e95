package tcp

import (
	"math"
	"time"

	"github.com/ultcp/ultcp/internal/tcp/cc"
	"github.com/ultcp/ultcp/internal/wire"
)

// tsOptLen is the space the timestamp option takes in every segment once
// negotiated (10 bytes padded to 12, RFC 7323 Appendix A), which RFC 6691
// says to subtract from the MSS when sizing segments.
const tsOptLen = 12

// defaultCC is the controller of a Config without CC: cc.DefaultName
// (CUBIC, RFC 9438, with HyStart++), unpaced.
func defaultCC() cc.Controller {
	r, err := cc.New(cc.DefaultName, cc.Config{})
	if err != nil {
		panic("tcp: the default controller's configuration is invalid: " + err.Error())
	}
	return r
}

// tsNow is our TSval clock: milliseconds (RFC 7323 §5.4 asks for a tick
// between 1 ms and 1 s) plus a per-connection offset.
func (c *Conn) tsNow(now time.Duration) uint32 {
	return uint32(int64(now/time.Millisecond)) + c.tsOffset
}

// emit appends one segment with the given sequence number, flags and
// payload, filling in ports, the acknowledgment, the window and options.
// It does no send-side accounting (see emitData).
func (c *Conn) emit(now time.Duration, out []Segment, seq uint32, flags wire.TCPFlags, payload []byte) []Segment {
	out = append(out, Segment{})
	s := &out[len(out)-1]
	s.Payload = payload
	h := &s.Hdr
	h.SrcPort, h.DstPort = c.localPort, c.remotePort
	h.Seq = seq
	h.Flags = flags
	if flags&wire.FlagACK != 0 {
		h.Ack = c.rcvNxt
		c.lastAckSent = c.rcvNxt
		c.ackNow = false
		c.rcvUnacked = 0
		c.delackAt = 0
	}
	if flags&wire.FlagSYN != 0 {
		// RFC 7323 §2.2: the window of a SYN is never scaled.
		w := c.rb.free()
		if w > 65535 {
			w = 65535
		}
		h.Window = uint16(w)
		c.rcvAdvEdge = c.rcvNxt + uint32(w)
		o := &h.Options
		o.MSS = uint16(c.cfg.MSS)
		offer := c.state == SynSent
		if (offer && !c.cfg.NoWindowScale) || c.wsOK {
			o.HasWScale, o.WScale = true, c.rcvShift
		}
		if (offer && !c.cfg.NoTimestamps) || c.tsOK {
			o.HasTimestamp, o.TSVal, o.TSEcr = true, c.tsNow(now), c.tsRecent
		}
		if (offer && !c.cfg.NoSACK) || c.sackOK {
			o.SACKPermitted = true // RFC 2018 §2
		}
	} else if flags&wire.FlagRST == 0 {
		if c.sndUpValid && seqGT(c.sndUp, seq) {
			h.Flags |= wire.FlagURG
			h.Urgent = uint16(min(c.sndUp-seq, 65535))
		}
		h.Window = c.advertise()
		if c.ecnEcho && flags&wire.FlagACK != 0 {
			h.Flags |= wire.FlagECE // RFC 3168 §6.1.3: until the peer's CWR
		}
		if c.tsOK {
			h.Options.HasTimestamp = true
			h.Options.TSVal, h.Options.TSEcr = c.tsNow(now), c.tsRecent
		}
		if flags&wire.FlagACK != 0 && c.sackOK && (c.rb.nooo > 0 || c.dsackPending) {
			c.fillSACK(&h.Options) // RFC 2018 §4: every ACK while data is held out of order
		}
	}
	c.stats.SegsOut++
	c.stats.BytesOut += uint64(len(payload))
	return out
}

// advertise computes the window field for an outgoing segment and records
// the right edge it promises. The edge never moves left except by the
// rounding RFC 7323 §2.4 allows, and it moves right only in steps of at
// least min(buffer/2, MSS): receiver-side silly window syndrome avoidance
// (RFC 9293 §3.8.6.2.2, MUST-39).
func (c *Conn) advertise() uint16 {
	edge := c.rcvNxt + uint32(c.rb.free())
	// After the peer's FIN no data can follow, so there is no silly
	// window to avoid (and the FIN's own sequence number would otherwise
	// show as a one-octet shrink).
	// The edge the peer already knows; if it accepted data beyond it (we
	// take what fits in the buffer), RCV.NXT.
	base := c.rcvAdvEdge
	if seqLT(base, c.rcvNxt) {
		base = c.rcvNxt
	}
	if !c.finRcvd && seqGT(edge, base) {
		step := c.rb.size / 2
		if step > c.rcvMSS {
			step = c.rcvMSS
		}
		if int(edge-base) < step {
			edge = base
		}
	}
	if seqLT(edge, c.rcvNxt) {
		edge = c.rcvNxt
	}
	w := (edge - c.rcvNxt) >> c.rcvShift
	if w > 65535 {
		w = 65535
	}
	c.rcvAdvEdge = c.rcvNxt + w<<c.rcvShift
	return uint16(w)
}

// emitACK appends a pure ACK <SEQ=SND.NXT><ACK=RCV.NXT>, where SND.NXT is
// the RFC's: the highest sequence number sent (sndMax), not our
// go-back-N resend point. After a timeout rewinds sndNxt, the peer may
// already hold octets beyond it; an ACK numbered below its RCV.NXT would
// fail its acceptability test and both ends could deadlock, each
// discarding the other's ACKs (BSD sends pure ACKs at snd_max too).
func (c *Conn) emitACK(now time.Duration, out []Segment) []Segment {
	return c.emit(now, out, c.sndMax, wire.FlagACK, nil)
}

// emitRST appends <SEQ=seq><CTL=RST>.
func (c *Conn) emitRST(out []Segment, seq uint32) []Segment {
	out = append(out, Segment{})
	h := &out[len(out)-1].Hdr
	h.SrcPort, h.DstPort = c.localPort, c.remotePort
	h.Seq, h.Flags = seq, wire.FlagRST
	c.stats.SegsOut++
	return out
}

// challengeACK sends the ACK of RFC 5961 §§3–5 (also used for segments
// failing the sequence or PAWS checks), at most ChallengeACKLimit a second
// for this connection (RFC 5961 §7).
func (c *Conn) challengeACK(now time.Duration, out []Segment) []Segment {
	if !c.challenge.allow(now, c.cfg.ChallengeACKLimit) {
		c.stats.ChallengeLimit++
		return out
	}
	c.stats.ChallengeACKs++
	return c.emitACK(now, out)
}

// sendSYN (re)sends our SYN, or SYN-ACK in SYN-RECEIVED.
func (c *Conn) sendSYN(now time.Duration, out []Segment) []Segment {
	flags := wire.FlagSYN
	if c.state == SynReceived {
		flags |= wire.FlagACK
		if c.ecnOK {
			flags |= wire.FlagECE // RFC 3168 §6.1.1: ECN-setup SYN-ACK
		}
	} else if c.cfg.ECN {
		flags |= wire.FlagECE | wire.FlagCWR // ECN-setup SYN
	}
	if c.sndMax != c.iss {
		c.stats.Retransmits++
		c.rttTiming = false // Karn's algorithm (RFC 6298 §3)
	} else {
		c.rttTiming, c.rttSeq, c.rttAt = true, c.iss, now
	}
	out = c.emit(now, out, c.iss, flags, nil)
	c.sndNxt = c.iss + 1
	c.sndMax = c.iss + 1
	if c.rtoAt == 0 {
		c.rtoAt = now + c.rto
	}
	return out
}

// retainedInFlight reports whether sent sequence space that the engine
// itself must retransmit is unacknowledged.
func (c *Conn) retainedInFlight() bool {
	return seqLT(seqMax(c.sndUna, c.custodyEnd), c.sndMax)
}

// usableWindow is how much new data may go out now: the room in the
// peer's window (SND.UNA + SND.WND - SND.NXT) and in the congestion
// window (cwnd - pipe, RFC 6675 §4: SACKed and lost octets are not in
// the network), whichever is smaller.
func (c *Conn) usableWindow() int {
	room := 0
	if inflight := c.sndNxt - c.sndUna; c.sndWnd > inflight {
		room = int(c.sndWnd - inflight)
	}
	if cw := c.cwndRoom(); cw < room {
		room = cw
	}
	return max(room, 0)
}

// sendable decides how many of avail unsent octets at SND.NXT go into the
// next segment. It applies, in order: the send and congestion windows, the
// MSS, and for a short segment RFC 9293 §3.8.6.2.1's sender-side SWS rule
// with Nagle's algorithm (§3.7.4) folded in: send a short segment only if
// it empties the queue and nothing is in flight (or NoDelay, or a FIN is
// queued), if it is at least half the largest window the peer has
// offered, or if it retransmits.
func (c *Conn) sendable(avail int) (int, bool) {
	if avail <= 0 {
		return 0, false
	}
	n := avail
	if n > c.sndMSS {
		n = c.sndMSS
	}
	if u := c.usableWindow(); n > u {
		n = u
	}
	if n <= 0 {
		return 0, false
	}
	if n == c.sndMSS || seqLT(c.sndNxt, c.sndMax) {
		return n, true
	}
	if n == avail && (c.cfg.NoDelay || c.sndNxt == c.sndUna || c.finQueued) {
		return n, true
	}
	if c.maxSndWnd > 0 && uint32(n) >= c.maxSndWnd/2 {
		return n, true
	}
	return 0, false
}

// emitData emits payload at seq with flags and does the send-side
// accounting: SND.NXT and the highest sequence sent, RTT timing, the
// retransmission timer and custody.
func (c *Conn) emitData(now time.Duration, out []Segment, seq uint32, flags wire.TCPFlags, payload []byte) []Segment {
	end := seq + uint32(len(payload))
	if flags&wire.FlagFIN != 0 {
		end++
	}
	if seqLT(seq, c.sndMax) {
		c.stats.Retransmits++
		c.rttTiming = false // Karn: no sample from retransmitted data
	} else if !c.rttTiming && end != seq {
		c.rttTiming, c.rttSeq, c.rttAt = true, seq, now
	}
	out = c.emit(now, out, seq, flags, payload)
	if c.ecnOK && seq == c.sndMax && len(payload) > 0 {
		// RFC 3168 §6.1.5: new data only is ECN-capable (not
		// retransmissions, not pure ACKs); CWR rides on the first new
		// data after a response to ECE (§6.1.2).
		s := &out[len(out)-1]
		s.ECN = ECNECT0
		if c.cwrPending {
			s.Hdr.Flags |= wire.FlagCWR
			c.cwrPending = false
		}
	}
	if seq == c.sndMax && !c.custody && end != seq {
		c.board.add(seq, end, now, flags&wire.FlagFIN != 0) // a new record (scoreboard.go)
	}
	if rate := c.cc.PacingRate(); rate > 0 && end != seq {
		// Space the next data segment by this one's transmission time
		// at the controller's rate.
		c.nextSendAt = max(now, c.nextSendAt) + time.Duration(int64(len(payload))*int64(time.Second)/rate)
	}
	if seq == c.sndNxt {
		c.sndNxt = end
	}
	if seqGT(end, c.sndMax) {
		c.sndMax = end
	}
	if c.custody {
		if seqGT(end, c.custodyEnd) {
			c.custodyEnd = end
		}
	} else if c.rtoAt == 0 {
		c.rtoAt = now + c.rto
	}
	c.persistAt = 0
	return out
}

// dataEnd is the sequence number just past the last queued data octet.
func (c *Conn) dataEnd() uint32 { return c.sb.end() }

// finSent and finAcked report the fate of our FIN, numbered dataEnd().
func (c *Conn) finSent() bool  { return c.finQueued && seqGT(c.sndMax, c.dataEnd()) }
func (c *Conn) finAcked() bool { return c.finQueued && seqGT(c.sndUna, c.dataEnd()) }

// cwndRoom is how many octets the congestion window lets into the
// network now: cwnd - pipe (RFC 6675 §5). A controller whose window is
// negative imposes no limit (a lossless fabric's).
func (c *Conn) cwndRoom() int {
	cw := c.cc.CWnd()
	if cw < 0 {
		return math.MaxInt32
	}
	return cw - c.pipe()
}

// paced reports whether pacing holds data back at now, arming the pacing
// timer if so.
func (c *Conn) paced(now time.Duration) bool {
	if c.nextSendAt <= now || c.cc.PacingRate() <= 0 {
		return false
	}
	c.paceAt = c.nextSendAt
	return true
}

// sendData emits what the windows allow, in RFC 6675 NextSeg's order:
// lost segments first, then new data (and the FIN), then, in recovery
// with nothing else to send, one rescue retransmission.
func (c *Conn) sendData(now time.Duration, out []Segment) []Segment {
	if seqLT(c.sndNxt, c.sb.seq) {
		c.sndNxt = c.sb.seq // custody released these; never resend them
	}
	n := len(out)
	out = c.sendLost(now, out)
	if c.custodyWanted {
		// Custody waits for what the engine retains to be acknowledged
		// (SetCustody): send nothing new to retain meanwhile.
		return out
	}
	sent := c.sndMax
	out = c.sendNew(now, out, false)
	if c.sndMax != sent || (c.inRecovery && len(out) > n) {
		c.armTLP(now) // RFC 8985 §7.2: restart the PTO after new data (rack.go)
	}
	if c.inRecovery && len(out) == n {
		out = c.rescue(now, out)
	}
	return out
}

// sendLost retransmits lost segments while pipe < cwnd (RFC 6675 §5,
// NextSeg rule 1). The first retransmission of a recovery goes out
// whatever pipe says (RFC 5681 §3.2 step 4's fast retransmit).
func (c *Conn) sendLost(now time.Duration, out []Segment) []Segment {
	b := &c.board
	if b.lost == 0 {
		c.forceRetx = false
		return out
	}
	for i := b.firstLost(); i >= 0 && i < b.n() && b.lost > 0; i++ {
		s := b.at(i)
		if s.flags&segLost == 0 {
			continue
		}
		if !c.forceRetx && (c.cwndRoom() < min(s.len(), c.sndMSS) || c.paced(now)) {
			break
		}
		c.forceRetx = false
		out = c.retransmit(now, out, s)
	}
	return out
}

// retransmit sends the record s again, whole (two segments if its octets
// wrap around the send ring, more if the MSS was lowered since it was
// sent: RFC 1191 §6.3, a path that dropped it would drop it again), and
// notes it in the scoreboard. Octets in a custodian's care are never
// resent.
func (c *Conn) retransmit(now time.Duration, out []Segment, s *txSeg) []Segment {
	if seqLT(s.start, c.custodyEnd) {
		return out
	}
	fin := s.flags&segFIN != 0
	last := s.end // one past the last data octet
	if fin {
		last--
	}
	dataEnd := c.dataEnd()
	for pos := s.start; seqLT(pos, last); {
		p := c.sb.slice(pos, min(int(last-pos), c.sndMSS))
		if len(p) == 0 {
			break // not retained: cannot happen outside custody
		}
		flags := wire.FlagACK
		if e := pos + uint32(len(p)); e == last {
			if e == dataEnd {
				flags |= wire.FlagPSH
			}
			if fin {
				flags |= wire.FlagFIN
			}
		}
		out = c.emitData(now, out, pos, flags, p)
		pos += uint32(len(p))
	}
	if fin && s.start == last {
		out = c.emitData(now, out, s.start, wire.FlagFIN|wire.FlagACK, nil)
	}
	c.board.retransmitted(s, now)
	c.noteUndoRetx(s)
	return out
}

// rescue is RFC 6675's rescue retransmission (NextSeg rule 4): once per
// recovery, when there is neither lost nor new data to send but room in
// cwnd, resend the highest unSACKed segment, so that a lost tail is
// repaired without waiting for the RTO.
func (c *Conn) rescue(now time.Duration, out []Segment) []Segment {
	if c.rescueDone || !c.sackOK || c.board.n() == 0 || c.cwndRoom() < c.sndMSS {
		return out
	}
	for i := c.board.n() - 1; i >= 0; i-- {
		s := c.board.at(i)
		if s.flags&segSACKed != 0 {
			continue
		}
		if s.flags&segRetx != 0 || c.paced(now) {
			return out // already resent this recovery: nothing to rescue
		}
		c.rescueDone = true
		c.stats.Rescues++
		return c.retransmit(now, out, s)
	}
	return out
}

// sendNew emits as much new data (and the FIN) as the windows and the
// SWS/Nagle rules allow. A tail loss probe (probe) sends at most one
// segment and is limited by the peer's window only (RFC 8985 §7.3).
func (c *Conn) sendNew(now time.Duration, out []Segment, probe bool) []Segment {
	for {
		end := c.dataEnd()
		avail := 0
		if seqLT(c.sndNxt, end) {
			avail = int(end - c.sndNxt)
		}
		if avail == 0 {
			if c.finQueued && c.sndNxt == end {
				out = c.emitData(now, out, c.sndNxt, wire.FlagFIN|wire.FlagACK, nil)
			}
			// Out of data with window to spare: the application, not
			// the network, limits us (RFC 7661), so the controller
			// should not grow cwnd on the ACKs that follow. Not so
			// while a WriteDirect writer waits with more (directWait):
			// its bytes are not queued here, but they are there.
			c.appLimited = !c.directWait && c.usableWindow() > 0
			return out
		}
		c.appLimited = false
		var k int
		var ok bool
		if probe {
			k = min(avail, c.sndMSS)
			if inflight := c.sndNxt - c.sndUna; c.sndWnd > inflight {
				k = min(k, int(c.sndWnd-inflight))
			} else {
				k = 0
			}
			ok = k > 0
		} else if c.paced(now) {
			return out
		} else {
			k, ok = c.sendable(avail)
		}
		if !ok {
			// The peer's window (or Nagle) stops us while cwnd has
			// room: RFC 7661's reasoning holds as for an application
			// out of data (the unused cwnd was never validated by the
			// network), so cwnd must not grow meanwhile; otherwise a
			// slow start held back by a receive window that autotuning
			// opens round by round would inflate cwnd far past the path
			// and release it in one burst once the window opens.
			c.appLimited = c.cwndRoom() >= c.sndMSS
			c.armPersist(now)
			return out
		}
		p := c.sb.slice(c.sndNxt, k)
		flags := wire.FlagACK
		if c.sndNxt+uint32(len(p)) == end {
			flags |= wire.FlagPSH
			if c.finQueued {
				flags |= wire.FlagFIN
			}
		}
		out = c.emitData(now, out, c.sndNxt, flags, p)
		if c.custody {
			rel := c.sndNxt
			if seqGT(rel, end) {
				rel = end
			}
			c.sb.release(rel)
		}
		if probe {
			return out
		}
	}
}

// Output emits what the connection can send now: queued data and FIN as
// the windows allow, and any ACK or window update that is due. Call it
// after Write, Read, Discard or Close.
func (c *Conn) Output(now time.Duration, out []Segment) []Segment {
	return c.output(now, out)
}

func (c *Conn) output(now time.Duration, out []Segment) []Segment {
	switch c.state {
	case Established, CloseWait, FinWait1, Closing, LastAck:
		out = c.sendData(now, out)
	}
	switch c.state {
	case Established, FinWait1, FinWait2:
		if !c.ackNow && c.windowUpdateDue() {
			c.ackNow = true
		}
	}
	if c.ackNow {
		switch c.state {
		case Closed, Listen, SynSent:
			c.ackNow = false
		default:
			out = c.emitACK(now, out)
		}
	}
	return out
}

// windowUpdateDue reports whether reading has opened the window enough to
// tell the peer unprompted: the new window is at least twice the one last
// advertised and larger by at least a segment (and by the receiver SWS
// step, which advertise enforces).
func (c *Conn) windowUpdateDue() bool {
	old := int(c.rcvAdvEdge - c.rcvNxt)
	if seqLT(c.rcvAdvEdge, c.rcvNxt) {
		old = 0
	}
	nw := c.rb.free()
	return nw >= 2*old && nw-old >= c.rcvMSS && nw-old >= c.rb.size/2
}
