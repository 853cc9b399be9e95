package tcp

// Accessors for a stack that shares retransmission duty with a custodian
// (ultcp's gateway flows): how many bytes the engine holds, and where the
// sequence space it has emitted ends.

// Retained returns the bytes the send buffer holds: in retaining mode
// every byte written and not yet acknowledged (sent or still queued), in
// custody mode only what waits to be emitted. It is the memory the
// connection keeps for retransmission; in custody mode it drops to zero
// as bytes leave.
func (c *Conn) Retained() int { return c.sb.n }

// SndMax returns the highest sequence number sent plus one (RFC 9293's
// SND.NXT before any retransmission pulled it back). Everything below it
// has been emitted once, so a custodian handed this value when custody
// ends holds every byte it was given and no byte the engine sends later.
func (c *Conn) SndMax() uint32 { return c.sndMax }

// RetainedInFlight returns the octets of sequence space sent, not yet
// acknowledged and held by the engine for retransmission: everything in
// flight in retaining mode, none of what a custodian holds in custody
// mode (RFC 9293's SND.NXT − SND.UNA, less the custodian's part).
func (c *Conn) RetainedInFlight() int {
	if !c.retainedInFlight() {
		return 0
	}
	return int(c.sndMax - seqMax(c.sndUna, c.custodyEnd))
}

// RetainedPeak returns the most octets of sequence space the engine has
// held for retransmission at once over the connection's life (sent, not
// yet acknowledged, not in a custodian's care): the memory a custodian
// saves a node. Octets written and not yet sent are not counted.
func (c *Conn) RetainedPeak() int { return c.board.peak }
