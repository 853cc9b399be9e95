package tcp

import (
	"errors"
	"net/netip"
	"time"

	"github.com/ultcp/ultcp/internal/wire"
)

// DefaultBacklog is the listen backlog when ListenerConfig.Backlog is 0.
const DefaultBacklog = 128

// ListenerConfig configures a Listener.
type ListenerConfig struct {
	// Conn configures every connection the listener creates.
	Conn Config
	// Backlog bounds the connections the listener holds for the
	// application: a SYN is admitted only while those still in
	// SYN-RECEIVED plus those established and not yet taken by Accept
	// number fewer than Backlog. A handshake completed from a cookie is
	// admitted while fewer than Backlog established connections wait
	// for Accept, so at most 2×Backlog connections are ever held.
	// Default DefaultBacklog.
	Backlog int
	// ISN chooses initial sequence numbers (RFC 6528). Required.
	ISN *ISNGenerator
	// Cookies, when set, answers SYNs that find the backlog full with
	// stateless SYN cookies (RFC 4987 §3.6) instead of dropping them.
	Cookies *SYNCookies
}

// ListenerStats are a listener's counters.
type ListenerStats struct {
	Syns            uint64 // SYNs admitted into the backlog
	Accepted        uint64 // connections handed to the application
	BacklogOverflow uint64 // SYNs dropped because the backlog was full and cookies are off
	CookiesSent     uint64 // SYN-ACKs carrying a cookie
	CookiesAccepted uint64 // handshakes completed from a valid cookie
	CookiesRejected uint64 // ACKs whose cookie was invalid or stale (answered with RST)
	ResetsSent      uint64 // RSTs sent in answer to stray ACKs
	Dropped         uint64 // RSTs and segments without SYN or ACK (ignored)
}

// Listener is a passive open on one local port, without I/O like Conn.
// It admits SYNs into a bounded backlog, each as a new Conn in
// SYN-RECEIVED that the stack registers under its 4-tuple and drives
// from then on; Accept hands over the connections whose handshake is
// complete. When the backlog is full, SYN cookies (if configured) keep
// answering without keeping state.
type Listener struct {
	cfg     ListenerConfig
	cfg6    Config // cfg.Conn for IPv6 peers
	pending []*Conn
	stats   ListenerStats
}

// NewListener returns a listener configured by cfg.
func NewListener(cfg *ListenerConfig) (*Listener, error) {
	if cfg.ISN == nil {
		return nil, errors.New("tcp: ListenerConfig.ISN is required")
	}
	if cfg.Backlog < 0 {
		return nil, errors.New("tcp: negative listen backlog")
	}
	l := &Listener{cfg: *cfg}
	l.cfg.Conn = cfg.Conn.withDefaults()
	l.cfg6 = l.cfg.Conn
	l.cfg6.IPv6 = true
	if l.cfg.Backlog == 0 {
		l.cfg.Backlog = DefaultBacklog
	}
	return l, nil
}

// Stats returns the listener's counters.
func (l *Listener) Stats() ListenerStats { return l.stats }

// Pending returns how many connections occupy the backlog.
func (l *Listener) Pending() int {
	l.prune()
	return len(l.pending)
}

// prune forgets pending connections that have died.
func (l *Listener) prune() {
	j := 0
	for _, c := range l.pending {
		if c.state != Closed {
			l.pending[j] = c
			j++
		}
	}
	clear(l.pending[j:])
	l.pending = l.pending[:j]
}

// acceptQueue counts the established connections not yet accepted.
func (l *Listener) acceptQueue() int {
	l.prune()
	n := 0
	for _, c := range l.pending {
		if c.state != SynReceived {
			n++
		}
	}
	return n
}

// Accept returns the oldest connection whose handshake has completed, or
// nil when there is none.
func (l *Listener) Accept() *Conn {
	l.prune()
	for i, c := range l.pending {
		if c.state.synchronized() && c.state != SynReceived {
			l.pending = append(l.pending[:i], l.pending[i+1:]...)
			l.stats.Accepted++
			return c
		}
	}
	return nil
}

// Input processes a segment addressed to the listening port from remote
// to local that matches no existing connection (RFC 9293 §3.10.7.2). When
// it creates a connection it returns it; the stack must then route that
// 4-tuple's segments to the Conn. Everything to send is appended to out.
func (l *Listener) Input(now time.Duration, local, remote netip.AddrPort, seg *Segment, out []Segment) (*Conn, []Segment) {
	h := &seg.Hdr
	f := h.Flags
	switch {
	case f&wire.FlagRST != 0:
		l.stats.Dropped++
		return nil, out
	case f&(wire.FlagSYN|wire.FlagFIN) == wire.FlagSYN|wire.FlagFIN:
		l.stats.Dropped++
		return nil, out
	case f&wire.FlagACK != 0:
		if f&wire.FlagSYN == 0 && l.cfg.Cookies != nil {
			if c, out, ok := l.cookieACK(now, local, remote, seg, out); ok {
				return c, out
			}
		}
		l.stats.ResetsSent++
		return nil, ResetFor(seg, out)
	case f&wire.FlagSYN == 0:
		l.stats.Dropped++
		return nil, out
	}
	l.prune()
	if len(l.pending) >= l.cfg.Backlog {
		if l.cfg.Cookies == nil {
			l.stats.BacklogOverflow++
			return nil, out
		}
		return nil, l.cookieSYNACK(now, local, remote, seg, out)
	}
	iss := l.cfg.ISN.ISN(now, local, remote)
	c := NewListening(l.connConfig(remote), local.Port(), remote.Port(), iss)
	out = c.Input(now, seg, out)
	if c.state != SynReceived {
		return nil, out
	}
	l.stats.Syns++
	l.pending = append(l.pending, c)
	return c, out
}

// connConfig is the configuration for a connection from remote: the
// listener's, with IPv6 set from the address family (precomputed, so a
// SYN flood costs no allocation).
func (l *Listener) connConfig(remote netip.AddrPort) *Config {
	if a := remote.Addr(); a.Is6() && !a.Is4In6() {
		return &l.cfg6
	}
	return &l.cfg.Conn
}

// tsOffsetFor is the TSval clock offset of the connection whose ISS is
// iss (see newConn), so a cookie SYN-ACK and the connection it becomes
// share one timestamp clock.
func tsOffsetFor(iss uint32) uint32 { return iss*2654435761 + 0x9e3779b9 }

// peerMSS is the clamped MSS of a SYN's option (RFC 9293 §3.7.1).
func (cfg *Config) peerMSS(o *wire.TCPOptions) int {
	mss := int(o.MSS)
	if mss == 0 {
		mss = DefaultMinMSS // RFC 9293 §3.7.1 (MUST-15)
		if cfg.IPv6 {
			mss = DefaultMSSIPv6
		}
	}
	return min(max(mss, cfg.MinMSS), cfg.MSS)
}

// cookieSYNACK answers a SYN statelessly with a SYN cookie as its ISS.
// The window-scale option is offered only when the SYN carried
// timestamps, because only then can the peer's shift be recovered from
// the echoed TSval (see EncodeSYNOptionsTS).
func (l *Listener) cookieSYNACK(now time.Duration, local, remote netip.AddrPort, seg *Segment, out []Segment) []Segment {
	cfg := l.connConfig(remote)
	h := &seg.Hdr
	iss := l.cfg.Cookies.Make(now, local, remote, h.Seq, uint16(cfg.peerMSS(&h.Options)))
	l.stats.CookiesSent++
	out = append(out, Segment{})
	r := &out[len(out)-1].Hdr
	r.SrcPort, r.DstPort = h.DstPort, h.SrcPort
	r.Seq, r.Ack = iss, h.Seq+1
	r.Flags = wire.FlagSYN | wire.FlagACK
	r.Window = uint16(min(cfg.RecvBuf, 65535))
	r.Options.MSS = uint16(cfg.MSS)
	if h.Options.HasTimestamp && !cfg.NoTimestamps {
		o := SYNOptions{WScale: -1}
		if h.Options.HasWScale && !cfg.NoWindowScale {
			o.WScale = int8(min(h.Options.WScale, 14))
			r.Options.HasWScale, r.Options.WScale = true, cfg.rcvShift()
		}
		if h.Options.SACKPermitted && !cfg.NoSACK {
			o.SACKPermitted = true
			r.Options.SACKPermitted = true
		}
		if cfg.ECN && ecnSYN(h.Flags, false) {
			o.ECN = true
			r.Flags |= wire.FlagECE
		}
		tsNow := uint32(int64(now/time.Millisecond)) + tsOffsetFor(iss)
		r.Options.HasTimestamp = true
		r.Options.TSVal, r.Options.TSEcr = EncodeSYNOptionsTS(tsNow, o), h.Options.TSVal
	}
	return out
}

// cookieACK completes a handshake from a SYN cookie: the ACK's
// acknowledgment number less one must be a valid cookie for this 4-tuple
// and the peer's ISN (its sequence number less one).
func (l *Listener) cookieACK(now time.Duration, local, remote netip.AddrPort, seg *Segment, out []Segment) (*Conn, []Segment, bool) {
	h := &seg.Hdr
	iss, irs := h.Ack-1, h.Seq-1
	mss, ok := l.cfg.Cookies.Check(now, local, remote, irs, iss)
	if !ok {
		l.stats.CookiesRejected++
		return nil, out, false
	}
	if l.acceptQueue() >= l.cfg.Backlog {
		// The application is not accepting: drop, the peer will
		// retransmit (as Linux does with a full accept queue). Embryos
		// in SYN-RECEIVED do not count here: under a SYN flood they fill
		// the backlog, and cookies exist precisely to get past them.
		l.stats.BacklogOverflow++
		return nil, out, true
	}
	cfg := l.connConfig(remote)
	c := newConn(cfg, local.Port(), remote.Port(), iss)
	c.passive = true
	c.irs, c.rcvNxt = irs, irs+1
	c.sndUna, c.sndNxt, c.sndMax = iss+1, iss+1, iss+1
	c.custodyEnd = iss + 1
	c.sndMSS = min(max(int(mss), cfg.MinMSS), cfg.MSS)
	c.rcvMSS = min(cfg.MSS, DefaultMinMSS)
	c.wsOK, c.sndShift, c.rcvShift = false, 0, 0
	if h.Options.HasTimestamp && !cfg.NoTimestamps {
		o := DecodeSYNOptionsTS(h.Options.TSEcr)
		c.tsOK = true
		c.tsRecent, c.tsRecentAt = h.Options.TSVal, now
		c.sndMSS -= tsOptLen
		if o.WScale >= 0 && !cfg.NoWindowScale {
			c.wsOK, c.sndShift, c.rcvShift = true, uint8(o.WScale), cfg.rcvShift()
		}
		c.sackOK = o.SACKPermitted && !cfg.NoSACK
		c.ecnOK = o.ECN && cfg.ECN
	}
	if !c.wsOK {
		c.cfg.MaxRecvBuf = min(c.cfg.MaxRecvBuf, 65535)
		c.rb.size = min(c.rb.size, 65535)
	}
	c.rcvAdvEdge = c.rcvNxt + uint32(min(cfg.RecvBuf, 65535))
	c.sndWnd = uint32(h.Window) << c.sndShift
	c.maxSndWnd = c.sndWnd
	c.sndWl1, c.sndWl2 = h.Seq, h.Ack
	c.recover = c.sndUna
	c.state = Established
	c.lastRecvAt = now
	c.cc.Init(now, c.sndMSS)
	c.armKeepalive(now)
	l.stats.CookiesAccepted++
	l.pending = append(l.pending, c)
	// The ACK may carry data (and even a FIN): process it as the
	// established connection's first segment.
	if len(seg.Payload) > 0 || h.Flags&wire.FlagFIN != 0 {
		out = c.Input(now, seg, out)
	}
	return c, out, true
}

// Close stops the listener: every connection it still holds (in
// SYN-RECEIVED, or established and never accepted) is reset, so no peer
// is left believing in a connection nobody will serve. The RSTs are
// appended to out; the Listener must not be used afterwards.
func (l *Listener) Close(now time.Duration, out []Segment) []Segment {
	for _, c := range l.pending {
		out = c.Abort(now, out)
	}
	clear(l.pending)
	l.pending = l.pending[:0]
	return out
}
