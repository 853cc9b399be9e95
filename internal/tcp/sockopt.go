package tcp

import "time"

// Socket options a stack lets the application change on an open
// connection (setsockopt's TCP_NODELAY, SO_KEEPALIVE with TCP_KEEPIDLE,
// SO_RCVBUF), each taking effect from the next segment or timer.

// SetNoDelay turns Nagle's algorithm off (true) or on (RFC 9293 §3.7.4,
// MUST-17: the application may disable it per connection).
func (c *Conn) SetNoDelay(on bool) { c.cfg.NoDelay = on }

// SetKeepAlive sets the idle time before the first keepalive probe
// (RFC 1122 §4.2.3.6); zero switches keepalive off. On an established
// connection the timer restarts from now.
func (c *Conn) SetKeepAlive(now, idle time.Duration) {
	if idle < 0 {
		idle = 0
	}
	c.cfg.KeepAlive = idle
	c.kaAt, c.kaProbes = 0, 0
	switch c.state {
	case Established, CloseWait:
		c.armKeepalive(now)
	}
}

// KeepAlive returns the idle time before the first keepalive probe; zero
// while keepalive is off.
func (c *Conn) KeepAlive() time.Duration { return c.cfg.KeepAlive }

// UrgentMark returns the peer's urgent mark (RFC 9293 §3.8.5: the
// sequence number after the urgent data) and whether one was received. It
// is a number, never an index (RFC 6093).
func (c *Conn) UrgentMark() (uint32, bool) { return c.rcvUp, c.urgValid }

// SetMaxRecvBuf changes the ceiling of receive-window auto-tuning. The
// window-scale shift was fixed by the handshake (RFC 7323 §2.2), so the
// ceiling is bounded by what that shift can advertise; the buffer never
// shrinks below its current size.
func (c *Conn) SetMaxRecvBuf(n int) {
	limit := 65535 << c.rcvShift
	n = min(max(n, c.rb.size), limit)
	c.cfg.MaxRecvBuf = n
}
