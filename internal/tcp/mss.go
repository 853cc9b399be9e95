package tcp

// ClampMSS lowers the connection's MSS to at most mss payload octets: the
// segments it sends from now on, and the ceiling a peer's MSS option is
// clamped to if the handshake is still to come (RFC 9293 §3.7.1: the
// sender uses the smaller of the peer's MSS and what its own link
// carries). A stack calls it when a connection's link carries smaller
// frames than the MSS the configuration announces, as a fabric ring
// smaller than 64 KiB does. It never raises the MSS, nor lowers it below
// Config.MinMSS.
func (c *Conn) ClampMSS(mss int) {
	mss = max(mss, c.cfg.MinMSS)
	if mss < c.cfg.MSS {
		c.cfg.MSS = mss
	}
	if mss < c.rcvMSS {
		c.rcvMSS = mss
	}
	if mss < c.sndMSS {
		c.sndMSS = mss
		if c.state >= Established {
			c.cc.SetMSS(mss) // before, the handshake's cc.Init takes it
		}
	}
}
