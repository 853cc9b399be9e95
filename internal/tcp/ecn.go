package tcp

import (
	"time"

	"github.com/ultcp/ultcp/internal/wire"
)

// Explicit Congestion Notification (RFC 3168 §6.1). Negotiated in the
// handshake (an ECN-setup SYN carries ECE and CWR, the SYN-ACK ECE only),
// then: new data leaves ECT(0); a receiver that gets a CE-marked segment
// sets ECE on its ACKs until a segment with CWR arrives; a sender that
// sees ECE reduces cwnd as for a loss, at most once per window of data,
// and sets CWR on its next new data segment.

// ecnSYN reports whether the peer's SYN (or SYN-ACK, when ack is true)
// agrees to ECN (RFC 3168 §6.1.1).
func ecnSYN(f wire.TCPFlags, ack bool) bool {
	if ack {
		return f&(wire.FlagECE|wire.FlagCWR) == wire.FlagECE
	}
	return f&(wire.FlagECE|wire.FlagCWR) == wire.FlagECE|wire.FlagCWR
}

// ecnInput is the receiver's part for an acceptable segment (RFC 3168
// §6.1.3): CWR ends the echo, a CE mark on data starts it again.
func (c *Conn) ecnInput(seg *Segment) {
	if !c.ecnOK {
		return
	}
	if seg.Hdr.Flags&wire.FlagCWR != 0 {
		c.ecnEcho = false
	}
	if seg.ECN == ECNCE && len(seg.Payload) > 0 {
		c.stats.ECNCE++
		c.ecnEcho = true
		c.ackNow = true // tell the sender now, not a delayed ACK later
	}
}

// ecnAck is the sender's part for an arriving ACK (RFC 3168 §6.1.2): an
// echo reduces the window once per window of data, and the next new
// data segment carries CWR.
func (c *Conn) ecnAck(now time.Duration, seg *Segment) {
	if !c.ecnOK || seg.Hdr.Flags&wire.FlagECE == 0 || c.state < Established {
		return
	}
	if c.inRecovery || c.rtoRecovery || seqLT(c.sndUna, c.ecnRecover) {
		return // this window already had its response
	}
	c.cc.OnCongestion(now, c.flightSize(), true)
	c.cc.OnRecoveryEnd(now)
	c.ecnRecover = c.sndMax
	c.cwrPending = true
	c.stats.ECNResponses++
}
