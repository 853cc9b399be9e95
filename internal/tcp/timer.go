package tcp

import (
	"time"

	"github.com/ultcp/ultcp/internal/wire"
)

// Deadline returns the earliest instant at which the connection needs
// OnTimer, or 0 when no timer is armed. It is the minimum over the
// retransmission, delayed-ACK, persist, keepalive and TIME-WAIT timers,
// RACK's reordering timer, the tail-loss-probe timer and the pacing
// timer, so a stack keeps one timing-wheel entry per connection.
func (c *Conn) Deadline() time.Duration {
	d := c.rtoAt
	for _, t := range [...]time.Duration{c.delackAt, c.persistAt, c.kaAt, c.twAt, c.rackAt, c.tlpAt, c.paceAt} {
		if t != 0 && (d == 0 || t < d) {
			d = t
		}
	}
	return d
}

// OnTimer runs every timer that is due at now and appends what they send.
// Calling it early, or when nothing is due, is harmless.
func (c *Conn) OnTimer(now time.Duration, out []Segment) []Segment {
	if c.state == Closed {
		return out
	}
	if c.twAt != 0 && now >= c.twAt {
		// RFC 9293 §3.10.8: TIME-WAIT timeout; or FinWait2Timeout.
		c.enterClosed(nil)
		return out
	}
	if c.tlpAt != 0 && now >= c.tlpAt && (c.rtoAt == 0 || c.tlpAt <= c.rtoAt) {
		// RFC 8985 §7.2: a probe due no later than the RTO goes in its
		// place; onTLP re-arms the RTO.
		out = c.onTLP(now, out)
	}
	if c.rtoAt != 0 && now >= c.rtoAt {
		out = c.onRTO(now, out)
		if c.state == Closed {
			return out
		}
	}
	if c.rackAt != 0 && now >= c.rackAt {
		// RFC 8985 §6.3: the reordering window of a segment ran out.
		if c.rackDetect(now) > 0 && !c.inRecovery && !c.rtoRecovery && seqGEQ(c.sndUna, c.recover) {
			c.enterRecovery(now)
		}
	}
	if c.tlpAt != 0 && now >= c.tlpAt {
		out = c.onTLP(now, out)
	}
	if c.paceAt != 0 && now >= c.paceAt {
		c.paceAt = 0 // output below sends what pacing held back
	}
	if c.persistAt != 0 && now >= c.persistAt {
		out = c.onPersist(now, out)
	}
	if c.kaAt != 0 && now >= c.kaAt {
		out = c.onKeepalive(now, out)
		if c.state == Closed {
			return out
		}
	}
	if c.delackAt != 0 && now >= c.delackAt {
		c.delackAt = 0
		c.ackNow = true
	}
	return c.output(now, out)
}

// rttSample folds one measurement into SRTT and RTTVAR (RFC 6298 §2).
func (c *Conn) rttSample(r time.Duration) {
	if r <= 0 {
		r = 1 // a same-instant answer (fake clock, shared memory) is still a sample
	}
	if c.minRTT == 0 || r < c.minRTT {
		c.minRTT = r
	}
	if c.srtt == 0 {
		c.srtt, c.rttvar = r, r/2
	} else {
		d := c.srtt - r
		if d < 0 {
			d = -d
		}
		c.rttvar = (3*c.rttvar + d) / 4
		c.srtt = (7*c.srtt + r) / 8
	}
	c.rto = c.baseRTO()
}

// sampleUntimed feeds the RFC 6298 estimator after an ACK of new data
// when no segment is being timed (Karn's rule dropped the timing at a
// retransmission), so that the first such ACK ends a backed-off RTO.
// The sample is the one the records give: the newest segment this ACK
// delivered that was sent only once (RFC 8985 §6.2 step 2), timed with
// our clock like the timed segment, unless the ACK also delivered a
// retransmission: then it may answer the retransmission, and originals
// whose own ACK was lost would be timed from their first sending, an
// RTO ago. Otherwise RFC 7323 §4's echoed timestamp is used, whose
// tick is a millisecond: it may not lower minRTT (RACK's reordering
// window, and its test of whether an ACK could be for a retransmission),
// and a difference of 0 ticks says only "under a millisecond", so it
// ends the backoff without moving SRTT. (Taking 0 ticks as a 1 ns round
// trip drove minRTT to 1 ns and RACK's reordering window to nothing.)
func (c *Conn) sampleUntimed(now time.Duration, o *wire.TCPOptions) {
	if c.rack.haveSample && !c.rack.retxAcked {
		c.rttSample(max(now-c.rack.sampleAt, 1))
		return
	}
	if !c.tsOK || o.TSEcr == 0 {
		return
	}
	d := c.tsNow(now) - o.TSEcr
	switch {
	case d >= 1<<31: // echoes a TSval from our future: not ours
	case d == 0:
		c.rto = c.baseRTO()
	default:
		minRTT := c.minRTT
		c.rttSample(time.Duration(d) * time.Millisecond)
		if minRTT != 0 {
			c.minRTT = minRTT
		}
	}
}

// baseRTO is SRTT + 4·RTTVAR bounded by RTOMin and RTOMax (RFC 6298
// §2.3–2.5), without backoff.
func (c *Conn) baseRTO() time.Duration {
	if c.srtt == 0 {
		return c.cfg.RTOInitial
	}
	r := c.srtt + 4*c.rttvar
	return min(max(r, c.cfg.RTOMin), c.cfg.RTOMax)
}

// onRTO handles the expiry of the retransmission timer (RFC 6298 §5.4–5.6;
// RFC 9293 §3.8.3 for giving up).
func (c *Conn) onRTO(now time.Duration, out []Segment) []Segment {
	c.rtoAt = 0
	handshake := c.state == SynSent || c.state == SynReceived
	if !handshake && !c.retainedInFlight() {
		return out
	}
	c.stats.Timeouts++
	if c.ackSinceTimeout && c.sndWnd == 0 {
		// Zero-window probing: the peer answers, so it is alive and the
		// connection must not time out (RFC 9293 §3.8.6.1, MUST-37).
		c.retries = 0
	}
	c.ackSinceTimeout = false
	c.retries++
	limit := c.cfg.MaxRetries
	if handshake {
		limit = c.cfg.SynRetries
	}
	if c.retries > limit {
		c.enterClosed(c.timeoutErr()) // ETIMEDOUT, or a soft ICMP error (icmp.go)
		return out
	}
	c.rto = min(2*c.rto, c.cfg.RTOMax) // §5.5: back off
	c.rttTiming = false                // Karn
	if handshake {
		out = c.sendSYN(now, out)
		c.rtoAt = now + c.rto
		return out
	}
	if c.sndWnd == 0 && seqLT(c.sndUna, c.dataEnd()) {
		// The timer guards a zero-window probe: probe again, one octet
		// beyond the closed window (RFC 9293 §3.8.6.1). This is not
		// congestion, so the controller is not told.
		c.stats.WindowProbes++
		out = c.emitData(now, out, c.sndUna, wire.FlagACK, c.sb.slice(c.sndUna, 1))
		c.rtoAt = now + c.rto
		return out
	}
	c.cc.OnRTO(now, int(c.sndMax-c.sndUna))
	// After a timeout, duplicate ACKs for data sent before it must not
	// start a fast retransmit (RFC 6582 §3.2 step 1).
	c.inRecovery, c.recover, c.dupAcks = false, c.sndMax, 0
	c.tlp, c.tlpAt, c.rackAt = tlpState{}, 0, 0
	c.startEpisode()
	if b := &c.board; b.n() > 0 {
		// RFC 8985 §6.3 (and RFC 6675 §5.1): every segment not SACKed
		// is deemed lost; they are resent in order as the collapsed
		// window reopens, skipping what the receiver holds.
		for i := 0; i < b.n(); i++ {
			b.markLost(b.at(i))
		}
		c.rtoRecovery = true
		c.forceRetx = true
	} else {
		// Nothing recorded (the octets were emitted in custody mode
		// before it was switched off): go back N from the first octet
		// the engine retains.
		c.sndNxt = seqMax(c.sndUna, c.custodyEnd)
	}
	out = c.sendData(now, out)
	if c.rtoAt == 0 {
		c.rtoAt = now + c.rto
	}
	return out
}

// armPersist starts the persist timer when data waits, nothing is in
// flight to provoke an ACK, and the peer's window is closed (or too small
// for the SWS rules to let anything go).
func (c *Conn) armPersist(now time.Duration) {
	if c.persistAt != 0 || c.rtoAt != 0 || c.sndNxt != c.sndUna {
		return
	}
	d := c.baseRTO() << min(c.persistBackoff, 16)
	c.persistAt = now + min(d, c.cfg.RTOMax)
}

// onPersist sends a zero-window probe (RFC 9293 §3.8.6.1, MUST-36). In
// retaining mode it is one octet of new data beyond the window, which the
// retransmission timer then repeats with backoff; in custody mode, where
// emitted bytes belong to the link, it is an ACK below SND.UNA that
// provokes the peer's current window without handing over data.
func (c *Conn) onPersist(now time.Duration, out []Segment) []Segment {
	c.persistAt = 0
	if c.sndNxt != c.sndUna || !seqLT(c.sndNxt, c.dataEnd()) {
		return out
	}
	switch c.state {
	case Established, CloseWait, FinWait1, Closing, LastAck:
	default:
		return out
	}
	c.stats.WindowProbes++
	c.persistBackoff++
	if c.custody {
		out = c.emit(now, out, c.sndUna-1, wire.FlagACK, nil)
		c.armPersist(now)
		return out
	}
	// With a small but open window, this is RFC 9293 §3.8.6.2.1's
	// override timeout: send what the window allows, SWS or not.
	k := min(c.usableWindow(), c.sndMSS, int(c.dataEnd()-c.sndNxt))
	if k < 1 {
		k = 1
	}
	return c.emitData(now, out, c.sndNxt, wire.FlagACK, c.sb.slice(c.sndNxt, k))
}

// armKeepalive starts the keepalive timer if keepalive is configured
// (RFC 1122 §4.2.3.6: off by default).
func (c *Conn) armKeepalive(now time.Duration) {
	if c.cfg.KeepAlive > 0 {
		c.kaAt = now + c.cfg.KeepAlive
	}
}

// onKeepalive probes an idle connection with <SEQ=SND.NXT-1><ACK=RCV.NXT>
// (RFC 1122 §4.2.3.6), which an alive peer must answer with an ACK.
func (c *Conn) onKeepalive(now time.Duration, out []Segment) []Segment {
	switch c.state {
	case Established, CloseWait:
	default:
		c.kaAt = 0
		return out
	}
	if c.sndUna != c.sndMax || c.rtoAt != 0 || c.persistAt != 0 {
		// Data in flight: the retransmission timer watches the peer.
		c.kaAt = now + c.cfg.KeepAlive
		return out
	}
	if c.kaProbes >= c.cfg.KeepAliveCount {
		c.enterClosed(c.timeoutErr())
		return out
	}
	c.kaProbes++
	c.stats.KeepAlives++
	c.kaAt = now + c.cfg.KeepAliveInterval
	return c.emit(now, out, c.sndMax-1, wire.FlagACK, nil)
}

// autotune grows the receive buffer toward MaxRecvBuf when the application
// drains it quickly: once per smoothed RTT it compares what was read in
// that RTT with the buffer, and doubles the buffer when the reader took
// more than half of it, so the window stays ahead of the sender (a
// dynamic right-sizing in the manner of Linux's DRS).
func (c *Conn) autotune(now time.Duration) {
	if c.rb.size >= c.cfg.MaxRecvBuf || c.srtt == 0 {
		return
	}
	if c.tuneAt == 0 {
		c.tuneAt, c.drained = now, 0
		return
	}
	if now-c.tuneAt < c.srtt {
		return
	}
	if 2*c.drained > c.rb.size {
		c.rb.grow(min(2*c.rb.size, c.cfg.MaxRecvBuf))
		c.stats.RecvBufGrowths++
	}
	c.tuneAt, c.drained = now, 0
}
