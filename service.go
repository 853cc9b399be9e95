package ultcp

import (
	"net"
	"net/netip"
	"time"

	"github.com/ultcp/ultcp/internal/tcp"
	"github.com/ultcp/ultcp/internal/wire"
)

// Services: the node's side of load balancing at the gateway (issue 8).
//
// A service is a virtual address and port on the cluster subnet that no
// node holds (10.77.255.1:80, say). A node joins the service's pool by
// listening on it:
//
//	l, err := stack.Listen("tcp", "10.77.255.1:80")
//
// Listen on a subnet address other than the stack's own is a service
// listen: the stack records its membership in the fabric directory
// (fabric.Node.JoinService, with the node's pid for liveness) and the
// gateway starts sending it connections for that address; Close (or the
// process's death) takes it out of the pool. The listener occupies the
// port on the stack: connections to the stack's own address at that port
// reach it too (a member stays reachable directly, for health checks),
// and a stack cannot listen on its own address and a service at one port.
// The scheduling policy is the gateway's (`ultcp gateway --service
// VIP:PORT=POLICY`, default queue): the pool does not choose how it is
// balanced (gateway/service.go).
//
// The data path: the gateway picks a member for each new connection from
// outside, opens a fabric connection to it as it does for any inbound
// flow, and puts the outside host's packets on it unchanged: their
// destination is the service address. The member's stack accepts them
// because a listener of that service is on the port (embryo.lip), and the
// connection's local address is the service address: its segments leave
// from the VIP (Conn.lip), and LocalAddr says so. Nothing is translated:
// the fabric connection is the tunnel, as Maglev's encapsulation is (the
// backends own the VIP, replies go straight back), so the gateway keeps
// its per-packet path as it is, its conntrack keys the flow by the VIP's
// 4-tuple, its RSTs for a dead member come from the VIP, and ICMP errors
// quoting the VIP find the flow. Only the gateway may speak for a service
// address: the member accepts the VIP as destination only on fabric
// connections from the registered gateway (SYNs from outside), never from
// another node.

// isServiceAddr reports whether a, named as the local address of a
// listen, is a service address: an IPv4 address of the subnet that is not
// the stack's own (fabric.Node.JoinService checks that no live node holds
// it).
func (s *Stack) isServiceAddr(a netip.Addr) bool {
	a = a.Unmap()
	return a.Is4() && a != s.addr && !a.IsUnspecified() && s.subnet().Contains(a)
}

// joinServiceLocked, called with s.mu held right after l was put on its
// port, makes l a member of its service if its address is not the
// stack's; on failure it takes l off the port again.
func (l *Listener) joinServiceLocked() (*Listener, error) {
	s := l.s
	a, ok := netip.AddrFromSlice(l.addr.IP)
	if !ok || a.Unmap() == s.addr {
		return l, nil
	}
	a = a.Unmap()
	if err := s.node.JoinService(netip.AddrPortFrom(a, l.port), ""); err != nil {
		delete(s.listeners, l.port)
		return nil, &net.OpError{Op: "listen", Net: "tcp", Source: l.addr, Err: err}
	}
	l.vip = a.As4()
	return l, nil
}

// leaveService takes l's stack out of l's service pool (Close).
func (l *Listener) leaveService() {
	if l.vip == (wire.IPv4Addr{}) {
		return
	}
	l.s.node.LeaveService(netip.AddrPortFrom(netip.AddrFrom4(l.vip), l.port))
}

// serves reports whether a SYN for local address dst belongs to l: the
// stack's own address always, the service's if l is a service listener.
func (l *Listener) serves(dst wire.IPv4Addr) bool {
	return dst == l.s.ip || (dst == l.vip && l.vip != wire.IPv4Addr{})
}

// serviceDst returns the destination of record b (the first record of a
// fabric connection from the gateway) if it is the address of a service
// listener on its destination port, else zero (the stack's own address
// applies, and decodeRecord refuses any other).
func (s *Stack) serviceDst(b []byte) wire.IPv4Addr {
	if len(b) < ipHdrLen || b[0]>>4 != 4 || b[9] != 6 {
		return wire.IPv4Addr{}
	}
	ihl := int(b[0]&0xf) * 4
	if ihl < ipHdrLen || len(b) < ihl+4 {
		return wire.IPv4Addr{}
	}
	dst := wire.IPv4Addr(b[16:20])
	if dst == s.ip {
		return wire.IPv4Addr{}
	}
	port := uint16(b[ihl+2])<<8 | uint16(b[ihl+3])
	s.mu.Lock()
	l := s.listeners[port]
	s.mu.Unlock()
	if l == nil || l.vip != dst {
		return wire.IPv4Addr{}
	}
	return dst
}

// self is the local address of the embryo's segments.
func (e *embryo) self() wire.IPv4Addr {
	if e.lip != (wire.IPv4Addr{}) {
		return e.lip
	}
	return e.s.ip
}

// setLocal makes lip the local address of c (a service's address), before
// c is published: its segments leave from lip and must arrive for it.
func (c *Conn) setLocal(lip wire.IPv4Addr) {
	if lip == c.lip {
		return
	}
	c.lip = lip
	c.laddr = &net.TCPAddr{IP: netip.AddrFrom4(lip).AsSlice(), Port: int(c.tuple.lport)}
	c.tmpl.build(lip, c.rip, c.tuple.lport, c.tuple.rport, ipFields(c.ip.Load()))
}

// local is c's local address; a Conn made without newConn (a test's
// literal Conn) has the stack's.
func (c *Conn) local() wire.IPv4Addr {
	if c.lip == (wire.IPv4Addr{}) {
		return c.s.ip
	}
	return c.lip
}

// holdInRing reports whether c, a connection waiting in a listener's
// backlog, leaves what arrives in its fabric ring for now. A service
// member's connection does once its handshake is complete, until Accept
// hands it to the application (whose Read takes the data) or for at most
// Config.Grace: requests waiting for the application then stay in the
// ring, where the gateway reads them from the ring pointers as the
// member's queue (gateway/lb's queue policy). Consumed by the stack at
// once, as any other connection's are, they would show the gateway only
// how fast the stack runs, not how far behind the application is.
func (c *Conn) holdInRing(now time.Duration) bool {
	l := c.lst
	if l.vip == (wire.IPv4Addr{}) || c.lip != l.vip || c.tc.State() != tcp.Established {
		return false
	}
	if c.heldAt == 0 {
		c.heldAt = max(now, 1)
	}
	if now-c.heldAt >= c.s.cfg.Grace {
		return false
	}
	c.s.arm(c, c.heldAt+c.s.cfg.Grace)
	return true
}
