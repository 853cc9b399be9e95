package ultcp

import "github.com/ultcp/ultcp/internal/wire"

// The urgent signal (RFC 9293 §3.8.5, MUST-32, MUST-33). The engine keeps
// the peer's urgent mark; RFC 6093 delivers urgent bytes in line, so the
// mark is only advice. TCP must tell the application asynchronously when
// urgent data arrives, which a BSD stack does with SIGURG; here the Conn
// offers a channel, signalled by whichever goroutine processes the ring
// (a Read, a Write, or the progress engine when nobody reads), so an
// application learns of urgent data without reading.

// urgentState is a Conn's memory of the urgent marks it signalled.
type urgentState struct {
	ch   chan struct{} // created by UrgentNotify; nil until then
	last uint32        // the last mark signalled
	seen bool          // a mark was signalled (last is valid)
}

// UrgentNotify returns a channel that receives a value each time the peer
// signals urgent data beyond what was last signalled (coalesced: one
// pending value at most). If urgent data is already pending when it is
// first called, the channel holds a value at once.
func (c *Conn) UrgentNotify() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.urg.ch == nil {
		c.urg.ch = make(chan struct{}, 1)
		if c.tc.UrgentPending() {
			c.urg.ch <- struct{}{}
		}
	}
	return c.urg.ch
}

// UrgentPending reports whether urgent data the peer signalled lies ahead
// of what the application has read (MUST-33; as SIOCATMARK's question).
func (c *Conn) UrgentPending() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tc.UrgentPending()
}

// urgentLocked runs after TCP input of a segment with URG set: a mark
// beyond the last one signalled wakes UrgentNotify's channel.
func (c *Conn) urgentLocked() {
	up, ok := c.tc.UrgentMark()
	if !ok || c.urg.seen && !seqAfter(up, c.urg.last) {
		return
	}
	c.urg.last, c.urg.seen = up, true
	if c.urg.ch != nil {
		select {
		case c.urg.ch <- struct{}{}:
		default:
		}
	}
}

// seqAfter is RFC 9293's a > b in sequence space.
func seqAfter(a, b uint32) bool { return int32(a-b) > 0 }

// urgentFlag reports whether a segment carries URG (the hook's test).
func urgentFlag(f wire.TCPFlags) bool { return f&wire.FlagURG != 0 }
