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
