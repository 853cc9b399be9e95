package ultcp

import (
	"net/netip"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ultcp/ultcp/internal/wire"
)

// The node's side of the fabric's gateway (issue 7; the helpers' gateway
// contract). The gateway is a fabric node that joins the cluster to the
// outside world; the fabric directory names it (fabric.Fabric.Gateway).
//
//   - Routing: a Dial to an address outside the stack's subnet opens its
//     fabric connection to the gateway instead of to a node, and every
//     record on it carries the outside address as the packet's
//     destination; the gateway forwards them. No live gateway: the dial
//     fails with ENETUNREACH, as connect(2) without a route.
//   - Accepting: the gateway opens a fabric connection to this node for
//     each flow from outside and writes the outside host's SYN on it.
//     Such a record's source lies outside the subnet; it is accepted only
//     on a fabric connection whose peer is the registered gateway, so no
//     other node can speak for an outside address (anti-spoofing, RFC
//     2827's ingress filtering at the one place that can do it). The
//     address rules of addrcheck.go apply as to any SYN.
//   - A Conn through the gateway has two peers: its fabric peer, the
//     gateway, and its TCP peer, the outside host (Conn.rip). Its records
//     are checked against the TCP peer (decodeRecord), which the gateway
//     alone can send as.
//   - Engine: such a Conn runs as on a real network (Config's
//     gatewayTCPConfig): it retains what it sends, retransmits, and runs
//     CUBIC, until the gateway takes custody of its bytes (custody.go).
//   - Gateway death: the fabric notices the gateway's process die and
//     fails its fabric connections; every Conn through it then fails with
//     ECONNRESET, as for any dead peer, and conns inside the fabric are
//     untouched.

// gatewayState is the stack's gateway bookkeeping (Stack.gw): the last
// answer of the fabric directory, and counters.
type gatewayState struct {
	known                                 atomic.Pointer[knownGateway]
	dials, noRoute, inbound, spoofed      atomic.Uint64
	grants, revokes, losses, fails, drops atomic.Uint64
}

// knownGateway is a live gateway the fabric directory named, believed
// until the stack's clock passes until.
type knownGateway struct {
	addr  netip.Addr
	until time.Duration
}

// gatewayTTL is how long the stack believes the directory's answer that a
// gateway is live. Asking costs ~17 µs and 16 allocations
// (BenchmarkRouteOutside), which every outside Dial and every fabric conn
// bringing a SYN from outside would otherwise pay. Within the TTL after
// the gateway died, a Dial to the outside fails with the fabric's error
// for a dead node instead of ENETUNREACH (and forgets the answer); nothing
// can arrive from a dead gateway, so the inbound check is unaffected. An
// absent gateway is never remembered: one that starts is used at once.
const gatewayTTL = 100 * time.Millisecond

// GatewayStats are a stack's counters of traffic through the fabric's
// gateway. They only grow.
type GatewayStats struct {
	Dials     uint64 // connections dialled to the outside through the gateway
	NoGateway uint64 // dials to the outside refused with ENETUNREACH: no live gateway
	Inbound   uint64 // fabric connections from the gateway whose first record came from outside
	// Spoofed counts fabric connections dropped because their first
	// record's source lay outside the subnet and their peer is not the
	// gateway.
	Spoofed uint64
	// Custody messages acted on (custody.go), and custody records
	// dropped: malformed, not from the gateway, of a type a node never
	// receives, or on a connection that does not go through the gateway.
	Grants, Revokes, Losses, Fails, CustodyDrops uint64
}

// GatewayStats returns the stack's gateway counters.
func (s *Stack) GatewayStats() GatewayStats {
	g := &s.gw
	return GatewayStats{
		Dials: g.dials.Load(), NoGateway: g.noRoute.Load(), Inbound: g.inbound.Load(), Spoofed: g.spoofed.Load(),
		Grants: g.grants.Load(), Revokes: g.revokes.Load(), Losses: g.losses.Load(), Fails: g.fails.Load(),
		CustodyDrops: g.drops.Load(),
	}
}

// outside reports whether a lies outside the stack's subnet: only the
// gateway reaches it.
func (s *Stack) outside(a netip.Addr) bool { return !s.subnet().Contains(a) }

// gateway returns the fabric's live gateway, if one is registered: the
// fabric directory's answer (a few small file reads and a kill(pid, 0)),
// remembered for gatewayTTL. Per dial and per new fabric connection,
// never per record.
func (s *Stack) gateway() (netip.Addr, bool) {
	now := s.now()
	if k := s.gw.known.Load(); k != nil && now < k.until {
		return k.addr, true
	}
	a, ok := s.fab.Gateway()
	if ok {
		s.gw.known.Store(&knownGateway{addr: a, until: now + gatewayTTL})
	} else {
		s.gw.known.Store(nil)
	}
	return a, ok
}

// forgetGateway drops the remembered answer after a dial to gw failed:
// the next look-up asks the directory again.
func (s *Stack) forgetGateway(gw netip.Addr) {
	if k := s.gw.known.Load(); k != nil && k.addr == gw {
		s.gw.known.CompareAndSwap(k, nil)
	}
}

// routeFor returns the fabric node a connection to dst opens its fabric
// connection to: dst itself inside the subnet, the gateway outside it.
// With no live gateway the outside is unreachable (ENETUNREACH, as
// connect(2) with no route).
func (s *Stack) routeFor(dst netip.Addr) (netip.Addr, error) {
	if !s.outside(dst) {
		return dst, nil
	}
	gw, ok := s.gateway()
	if !ok {
		s.gw.noRoute.Add(1)
		return netip.Addr{}, os.NewSyscallError("connect", syscall.ENETUNREACH)
	}
	return gw, nil
}

// viaGateway reports whether c reaches its TCP peer through the gateway:
// its fabric peer is then another node than its TCP peer.
func (c *Conn) viaGateway() bool {
	return c.fc.RemoteAddr() != netip.AddrFrom4(c.rip)
}

// setRemote makes rip the TCP peer of c, whose fabric peer is the
// gateway: records must then come from rip (decodeRecord) and go to it
// (encodeHeaders), and rip is part of c's 4-tuple. Called before c is
// published.
func (c *Conn) setRemote(rip wire.IPv4Addr) {
	c.rip = rip
	c.tuple.rip = rip
	// The prebuilt headers (link.go) were made for the fabric peer: every
	// segment without options (a RST, a bare ACK) would otherwise go to
	// the gateway's address, and no record from rip would match the fast
	// decode.
	c.tmpl.build(c.local(), rip, c.tuple.lport, c.tuple.rport, ipFields(c.ip.Load()))
}

// routeEmbryo decides, from the first TCP record b of a fabric connection
// a peer opened, whom the embryo's segments must come from: the fabric
// peer, or, for a packet whose source lies outside the subnet, that
// outside host, provided the fabric peer is the registered gateway. It
// reports false (and counts) when a non-gateway peer sends as an outside
// address; the caller then drops the fabric connection. A record that is
// not an IPv4 TCP packet decides nothing: decodeRecord refuses it, or it
// is a custody message that came before the SYN (embryo.input).
func (s *Stack) routeEmbryo(e *embryo, b []byte) bool {
	fpeer := e.fc.RemoteAddr()
	e.peer, _ = wire.AddrFromNetip(fpeer)
	if len(b) < ipHdrLen || b[0]>>4 != 4 || b[9] != 6 {
		return true
	}
	e.routed = true
	src := netip.AddrFrom4([4]byte(b[12:16]))
	if !s.outside(src) {
		return true
	}
	if gw, ok := s.gateway(); !ok || gw != fpeer {
		s.gw.spoofed.Add(1)
		return false
	}
	e.peer = src.As4()
	e.outside = true
	s.gw.inbound.Add(1)
	return true
}
