package tcp

import (
	"time"

	"github.com/ultcp/ultcp/internal/tcp/cc"
	"github.com/ultcp/ultcp/internal/wire"
)

// Header prediction: the fast paths of an established connection.
//
// RFC 9293 §3.10.7.4 processes an arriving segment in eight steps, most
// of which find nothing to do on a connection in the steady state of a
// request/response or bulk exchange. Van Jacobson's header prediction
// (4.4BSD tcp_input; RFC 1323 §4.2.2 was written with it in mind)
// recognises that common case from a few fields and handles it directly.
// The prediction here covers the segment a request/response connection
// receives most: in ESTABLISHED, only ACK (and PSH) set, no options, at
// exactly RCV.NXT, an open window whose right edge did not move left,
// acknowledging new data or carrying in-order data or both, with nothing
// out of order, nothing in recovery and nothing the engine retains
// awaiting its acknowledgment. (VJ's prediction also wants the window
// unchanged; here a receiver that keeps its right edge still while it
// takes data, as RFC 9293 §3.8.6.2.2's SWS avoidance does, advertises a
// smaller window on every segment, so the window update is done here.)
// The send side is its mirror: one segment that carries all of a write,
// with nothing queued before it, no ACK or window update owed first and
// no option to add.
//
// A fast path is an exact shortcut, never a different behaviour: each
// does what the full path does for the segments it takes (the same state
// changes in the same order, the same segments out), which the tests
// check by running both on the same inputs and comparing the whole
// connection (fastpath_test.go). Anything else — another state, another
// flag, any option, an old or future sequence number, a zero or shrunk
// window, a duplicate ACK, data held out of order, urgent data, ECN, timestamps,
// loss recovery — takes the full path, unchanged.

// fastInput handles seg by header prediction and reports whether it did;
// when it reports false nothing has changed and the caller runs the full
// path.
func (c *Conn) fastInput(now time.Duration, seg *Segment, out []Segment) ([]Segment, bool) {
	h := &seg.Hdr
	if c.state != Established || c.noFast || c.batching || c.tsOK || c.ecnOK ||
		h.Flags&^wire.FlagPSH != wire.FlagACK || h.Seq != c.rcvNxt || !noOptions(&h.Options) {
		return out, false
	}
	// The sender's state: nothing but new data in flight, all of it in
	// a custodian's care or none at all (an empty scoreboard: no record
	// to retire, no SACK or loss to account for).
	if c.sndNxt != c.sndMax || c.board.n() != 0 || c.cs.n != 0 || c.inRecovery || c.rtoRecovery ||
		c.tlp.active || c.sndUpValid {
		return out, false
	}
	ack := h.Ack
	wnd := uint32(h.Window) << c.sndShift
	n := len(seg.Payload)
	advanced := seqGT(ack, c.sndUna)
	switch {
	case wnd == 0 || seqLT(ack+wnd+(1<<c.sndShift-1), c.sndUna+c.sndWnd):
		// A zero window (the persist timer) or a right edge that moved
		// left (RFC 9293 §3.8.6: shrinking the window is strongly
		// discouraged; the full path copes with it) by more than the
		// rounding of a scaled window (RFC 7323 §2.4).
		return out, false
	case advanced && seqGT(ack, c.sndMax): // acknowledges what was never sent
		return out, false
	case !advanced && (ack != c.sndUna || n == 0): // old, or a duplicate ACK
		return out, false
	case n > 0 && (n > c.rb.free() || c.rb.nooo != 0 || c.finPending):
		return out, false
	}

	// What inputSynchronized does for this segment, step by step.
	c.stats.SegsIn++
	c.lastRecvAt = now
	c.ackSinceTimeout = true
	c.kaProbes = 0
	if c.kaAt != 0 {
		c.kaAt = now + c.cfg.KeepAlive
	}
	// processAck.
	c.rack.haveSample, c.rack.advanced = false, false
	if advanced {
		acked := int(ack - c.sndUna)
		c.board.ackTo(ack, c, now) // empty: resets its bookkeeping only
		c.sndUna = ack
		if !c.custody || seqGT(ack, c.sb.seq) {
			c.sb.release(ack)
		}
		if c.rttTiming && seqGT(ack, c.rttSeq) {
			c.rttSample(now - c.rttAt)
			c.rttTiming = false
		}
		c.retries = 0
		c.dupAcks = 0
		// Field by field: a composite literal is built on the stack
		// and copied in 16-byte moves that stall on the 8-byte stores
		// just made (store forwarding fails), ~8 ns a segment.
		// (Zeroed in place first, so a field added later is zero.)
		e := &c.ackEv
		*e = cc.AckEvent{}
		e.Now, e.Acked, e.MinRTT = now, acked, c.minRTT
		e.InFlight, e.AppLimited = int(c.sndMax-c.sndUna), c.appLimited
		c.cc.OnAck(&c.ackEv)
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
	// The window update (SND.WL1/SND.WL2 rule), as processAck: a
	// receiver that takes data and keeps its right edge advertises a
	// smaller window on every segment, so this is the common case too.
	if seqLT(c.sndWl1, h.Seq) || (c.sndWl1 == h.Seq && seqLEQ(c.sndWl2, ack)) {
		c.sndWnd, c.sndWl1, c.sndWl2 = wnd, h.Seq, ack
		if wnd > c.maxSndWnd {
			c.maxSndWnd = wnd
		}
		c.persistAt, c.persistBackoff = 0, 0 // wnd > 0
	}
	// inputText, for in-order text that fits the window.
	if n > 0 {
		p := seg.Payload
		k := c.takeDirect(0, p)
		c.rb.put(0, p[k:])
		c.rcvNxt += uint32(n)
		c.rb.n += n - k
		c.stats.BytesIn += uint64(n)
		if n > c.rcvMSS {
			c.rcvMSS = min(n, c.cfg.MSS)
		}
		c.rcvUnacked += n
		if c.rcvUnacked >= 2*c.rcvMSS || c.cfg.DelayedAck < 0 {
			c.ackNow = true
		} else if c.quickAcks > 0 {
			c.quickAcks-- // as inputText: after a hole (sack.go)
			c.ackNow = true
		} else if c.delackAt == 0 && !c.ackNow {
			c.delackAt = now + c.cfg.DelayedAck
		}
		c.autotune(now)
	}
	c.fastIn++
	// flush: output, which with nothing unsent only notes whether the
	// application limits the sender and sends the ACK if one is due.
	if c.sb.n != 0 || c.finQueued {
		return c.output(now, out), true
	}
	c.forceRetx = false
	c.appLimited = !c.directWait && c.usableWindow() > 0
	if !c.ackNow && c.windowUpdateDue() {
		c.ackNow = true
	}
	if c.ackNow {
		out = c.emitACK(now, out)
	}
	return out, true
}

// fastWrite is WriteDirect's fast path (custody mode): all of p goes out
// as one segment at once. It reports false, having changed nothing, when
// the full path must decide.
func (c *Conn) fastWrite(now time.Duration, p []byte, out []Segment) ([]Segment, bool) {
	u, ok := c.fastWriteOK(p)
	if !ok {
		return out, false
	}
	// What output does first with nothing unsent, then the data.
	c.forceRetx = false
	c.appLimited = u > 0
	c.directWait = false
	out = c.emitData(now, out, c.sndNxt, wire.FlagACK|wire.FlagPSH, p)
	c.sb.release(c.sndNxt)
	c.fastOut++
	return out, true
}

// fastWriteOK decides whether fastWrite may send p, and returns the
// usable window it found.
func (c *Conn) fastWriteOK(p []byte) (int, bool) {
	if c.state != Established || c.noFast || !c.custody || c.tsOK || c.ecnOK || c.sndUpValid ||
		len(p) == 0 || len(p) > c.sndMSS || c.sb.n != 0 || c.sndNxt != c.sndMax ||
		c.board.n() != 0 || c.inRecovery || c.ackNow || c.rb.nooo != 0 || c.dsackPending {
		return 0, false
	}
	// Output's window update would go first, as a pure ACK.
	if c.windowUpdateDue() {
		return 0, false
	}
	// sendable(len(p)) with nothing unsent before p and the usable window
	// computed once: all of p must fit the windows, and a segment shorter
	// than the MSS must pass the SWS/Nagle rules.
	n, u := len(p), c.usableWindow()
	if n > u || !(n == c.sndMSS || c.cfg.NoDelay || c.sndNxt == c.sndUna || c.maxSndWnd > 0 && uint32(n) >= c.maxSndWnd/2) {
		return 0, false
	}
	return u, true
}

// noOptions reports whether a segment carries no TCP option.
func noOptions(o *wire.TCPOptions) bool {
	return o.MSS == 0 && !o.HasWScale && !o.SACKPermitted && o.NumSACK == 0 && !o.HasTimestamp
}

// WriteFast is WriteDirect's fast path for a caller that reads its clock
// only once the segment has left: on a shared-memory link the clock read
// (tens of nanoseconds) is a good part of a message's whole cost, and
// taken after the send it is off the path the peer waits on. It emits all
// of p as one segment, as WriteDirect would, and reports true; or reports
// false, having changed nothing, and the caller uses WriteDirect. The only
// thing the send time decides on this path is the start of an RTT
// measurement (RFC 6298 §3 times one segment per round trip), so after a
// true the caller must call SentAt with the time the segment left, before
// any other call on the connection. (Pacing, which needs the time to
// space segments, takes WriteDirect.)
func (c *Conn) WriteFast(p []byte, out []Segment) ([]Segment, bool) {
	if c.cc.PacingRate() > 0 {
		return out, false
	}
	timing := c.rttTiming
	out, ok := c.fastWrite(0, p, out)
	if ok && !timing && c.rttTiming {
		c.stampPending = true
	}
	return out, ok
}

// FastHdr is the header of the segment WriteFastHdr sent, as far as it
// changes from one segment to the next: the ports are the connection's,
// and there is neither an option nor an urgent pointer.
type FastHdr struct {
	Seq, Ack uint32
	Window   uint16
	Flags    wire.TCPFlags
}

// WriteFastHdr is WriteFast for a link that encodes the segment itself
// from a prebuilt header: it does exactly what WriteFast does to the
// connection, and returns the segment's changing header fields instead
// of appending a Segment (the payload is p). The caller must call SentAt
// after it, as after WriteFast.
func (c *Conn) WriteFastHdr(p []byte) (FastHdr, bool) {
	if c.cc.PacingRate() > 0 {
		return FastHdr{}, false
	}
	u, ok := c.fastWriteOK(p)
	if !ok {
		return FastHdr{}, false
	}
	c.forceRetx = false
	c.appLimited = u > 0
	c.directWait = false
	// emitData and emit for new data at SND.NXT with ACK and PSH, in
	// custody mode, unpaced, with no option, urgent pointer or ECN to
	// add (fastWriteOK checked each), unrolled.
	seq := c.sndNxt
	end := seq + uint32(len(p))
	if !c.rttTiming {
		c.rttTiming, c.rttSeq, c.rttAt = true, seq, 0
		c.stampPending = true
	}
	h := FastHdr{Seq: seq, Ack: c.rcvNxt, Flags: wire.FlagACK | wire.FlagPSH}
	c.lastAckSent = c.rcvNxt
	c.ackNow = false
	c.rcvUnacked = 0
	c.delackAt = 0
	h.Window = c.advertise()
	c.stats.SegsOut++
	c.stats.BytesOut += uint64(len(p))
	c.sndNxt, c.sndMax = end, end
	if seqGT(end, c.custodyEnd) {
		c.custodyEnd = end
	}
	c.persistAt = 0
	c.sb.release(c.sndNxt)
	c.fastOut++
	return h, true
}

// SentAt gives the time the segment of the last WriteFast left: the start
// of the RTT measurement it began, if it began one.
func (c *Conn) SentAt(now time.Duration) {
	if c.stampPending {
		c.rttAt, c.stampPending = now, false
	}
}
