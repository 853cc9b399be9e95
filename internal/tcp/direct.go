package tcp

import "time"

// The direct receive path. A stack whose reader is waiting with an empty
// receive buffer can copy an arriving segment's payload straight from the
// link into the reader's buffer (one copy, link → application) instead of
// link → receive buffer → application. InputDirect tells the engine that it
// did so: the engine still makes every decision Input makes (acceptability,
// PAWS, window, FIN), and only when it accepts the text in order with
// nothing readable ahead of it does it count the placed octets as received
// and read, without storing them. Otherwise the octets are handled exactly
// as by Input, so a speculative copy that the engine refuses costs
// nothing but the copy.

// directState is the context of one InputDirect call.
type directState struct {
	placed int   // payload octets the caller already put in the reader's buffer
	first  *byte // the payload's first octet, to recognise an untrimmed front
	taken  int   // octets the engine accepted as delivered
}

// InputDirect processes seg as Input does. The caller has already copied
// seg.Payload[:placed] into the application's read buffer. When the
// connection has nothing readable and nothing out of order, and seg's text
// starts exactly at RCV.NXT within the window, those octets are taken as
// delivered: RCV.NXT moves past them, they count as read (so the window
// stays open), and only the payload beyond them is stored. It returns how
// many octets were delivered that way; 0 means the caller's copy must be
// ignored, the segment having been handled as by Input (stored, queued out
// of order, or dropped).
func (c *Conn) InputDirect(now time.Duration, seg *Segment, placed int, out []Segment) (int, []Segment) {
	if placed > len(seg.Payload) {
		placed = len(seg.Payload)
	}
	if placed <= 0 {
		return 0, c.Input(now, seg, out)
	}
	c.direct = directState{placed: placed, first: &seg.Payload[0]}
	out = c.Input(now, seg, out)
	n := c.direct.taken
	c.direct = directState{}
	return n, out
}

// takeDirect is called by inputText for accepted in-order text p at offset
// off beyond RCV.NXT: it returns how many octets at the front of p the
// caller of InputDirect has already delivered (0 outside InputDirect). The
// front must be untrimmed (p starts where the payload starts) so that the
// placed octets are exactly p's first ones, and nothing may be readable or
// held out of order, so that the delivered octets come next in the stream.
func (c *Conn) takeDirect(off int, p []byte) int {
	d := &c.direct
	if d.placed == 0 || off != 0 || c.rb.n != 0 || c.rb.nooo != 0 || &p[0] != d.first {
		return 0
	}
	k := min(d.placed, len(p))
	d.placed, d.taken = 0, k
	c.drained += k
	return k
}
