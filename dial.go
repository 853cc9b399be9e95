package ultcp

import (
	"context"
	"net"
	"net/netip"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ultcp/ultcp/fabric"
	"github.com/ultcp/ultcp/internal/tcp"
)

// Dialer mirrors net.Dialer for a Stack, so that code using net.Dialer
// moves over by replacing the type.
type Dialer struct {
	// Stack is the stack to dial from. Required.
	Stack *Stack
	// Timeout bounds the whole dial, as net.Dialer.Timeout.
	Timeout time.Duration
	// Deadline is an absolute bound, as net.Dialer.Deadline.
	Deadline time.Time
	// LocalAddr is the local address to dial from, as
	// net.Dialer.LocalAddr (RFC 9293 MUST-43): its IP must be the stack's
	// address or unspecified (nil or unspecified: the stack picks, MUST-44);
	// a port of 0 means an ephemeral port.
	LocalAddr *net.TCPAddr
}

// Dial connects to address ("ip:port"): a node of the fabric, or, through
// the fabric's gateway, a host outside its subnet (gateway.go).
func (d *Dialer) Dial(network, address string) (net.Conn, error) {
	return d.DialContext(context.Background(), network, address)
}

// DialContext connects to address; ctx bounds the connection attempt (not
// the connection's life), as in net.Dialer.
func (d *Dialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	c, err := d.DialTCP(ctx, network, address)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// DialTCP is DialContext returning the concrete *Conn.
func (d *Dialer) DialTCP(ctx context.Context, network, address string) (*Conn, error) {
	s := d.Stack
	if s == nil {
		return nil, &net.OpError{Op: "dial", Net: network, Err: errNoStack}
	}
	if network != "tcp" && network != "tcp4" {
		return nil, &net.OpError{Op: "dial", Net: network, Err: net.UnknownNetworkError(network)}
	}
	ap, err := netip.ParseAddrPort(address)
	if err != nil || !ap.Addr().Is4() {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: &net.AddrError{Err: "not an IPv4 address and port", Addr: address}}
	}
	if err := s.checkRemote(ap.Addr()); err != nil {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Addr: net.TCPAddrFromAddrPort(ap), Err: err}
	}
	_, lport, err := s.localFor(d.LocalAddr, ap.Addr())
	if err != nil {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Source: d.LocalAddr, Addr: net.TCPAddrFromAddrPort(ap), Err: err}
	}
	if d.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d.Timeout)
		defer cancel()
	}
	if !d.Deadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, d.Deadline)
		defer cancel()
	}
	return s.dial(ctx, ap, lport)
}

// Dial connects to address from the stack.
func (s *Stack) Dial(network, address string) (net.Conn, error) {
	d := Dialer{Stack: s}
	return d.DialContext(context.Background(), network, address)
}

// DialContext connects to address from the stack; ctx bounds the attempt.
func (s *Stack) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	d := Dialer{Stack: s}
	return d.DialContext(ctx, network, address)
}

// dial opens a fabric connection to the remote node, or to the gateway
// for an address outside the subnet, and runs the handshake on it (RFC
// 9293 §3.5) in the calling goroutine. A non-zero lport is the local
// port the application asked for.
func (s *Stack) dial(ctx context.Context, raddr netip.AddrPort, lport uint16) (*Conn, error) {
	ta := &net.TCPAddr{IP: raddr.Addr().AsSlice(), Port: int(raddr.Port())}
	fail := func(src net.Addr, err error) (*Conn, error) {
		s.stats.attemptFails.Add(1)
		return nil, opError("dial", src, ta, err)
	}
	hop, err := s.routeFor(raddr.Addr())
	if err != nil {
		return fail(nil, err)
	}
	rip := raddr.Addr()
	viaGW := hop != rip
	fc, err := s.node.Dial(ctx, hop, fabric.ConnConfig{RingSize: s.cfg.RingSize})
	if err != nil {
		if viaGW {
			s.forgetGateway(hop) // it may have died since the directory said it lived
		}
		return fail(nil, err)
	}
	s.mu.Lock()
	if lport != 0 {
		if _, used := s.inUse[fourTuple{lport: lport, rip: rip.As4(), rport: raddr.Port()}]; used {
			err = os.NewSyscallError("bind", syscall.EADDRINUSE)
		}
	} else {
		lport, err = s.ports.Pick(s.addr, raddr, func(p uint16) bool {
			_, used := s.inUse[fourTuple{lport: p, rip: rip.As4(), rport: raddr.Port()}]
			return used
		})
	}
	s.mu.Unlock()
	if err != nil {
		fc.Close()
		return fail(nil, err)
	}
	la := &net.TCPAddr{IP: s.addr.AsSlice(), Port: int(lport)}
	now := s.now()
	iss := s.isn.ISN(now, netip.AddrPortFrom(s.addr, lport), raddr)
	tcfg := &s.tcfg
	if viaGW {
		g := s.cfg.gatewayTCPConfig() // a real network's settings (config.go)
		tcfg = &g
	}
	tc, out := tcp.Dial(now, tcfg, lport, raddr.Port(), iss, nil)
	// The ring stays unarmed while this goroutine spins for the SYN-ACK:
	// armed, the answer would ring the doorbell and wake the progress
	// engine for a segment we read ourselves (wait arms it before
	// sleeping).
	c := newConn(s, fc, tc, la, ta, true)
	c.active = true
	if viaGW {
		c.setRemote(rip.As4()) // the fabric peer is the gateway (gateway.go)
		s.gw.dials.Add(1)
	}
	if err := s.register(c); err != nil {
		fc.Close()
		return fail(la, err)
	}
	s.stats.activeOpens.Add(1)

	var dl atomic.Int64
	if t, ok := ctx.Deadline(); ok {
		dl.Store(t.UnixNano())
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.out = append(c.out[:0], out...)
	c.sendLocked()
	// The SYN's retransmission timer runs on the progress engine's
	// wheel while this goroutine waits for the answer: without it a SYN
	// lost outside (on the fabric nothing is lost) was never sent again
	// and the dial waited out its deadline.
	c.rearmLocked(now)
	for {
		now = s.now()
		if !c.polling && !c.rxDone {
			c.drainLocked(now, nil, false)
		}
		switch st := c.tc.State(); {
		case st >= tcp.Established:
			c.touchLocked(now)
			return c, nil
		case st == tcp.Closed:
			err := c.tc.Err()
			if err == nil {
				err = syscall.ECONNRESET
			}
			c.releaseFailedDialLocked()
			return fail(la, err)
		}
		if err := ctx.Err(); err != nil {
			c.out = c.tc.Abort(now, c.out[:0])
			c.sendLocked()
			c.releaseFailedDialLocked()
			return fail(la, err)
		}
		c.wait(&c.ww, &dl, ctx.Done())
	}
}

// releaseFailedDialLocked releases a connection whose handshake failed.
func (c *Conn) releaseFailedDialLocked() {
	c.appClosed = true
	c.closed.Store(true)
	now := c.s.now()
	c.orphanAt = now + c.s.cfg.OrphanTimeout
	c.maybeFinishLocked()
	if !c.finished {
		c.rearmLocked(now)
	}
}
