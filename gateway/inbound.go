package gateway

import (
	"context"
	"errors"
	"time"

	"github.com/ultcp/ultcp/capture"
	"github.com/ultcp/ultcp/fabric"
	"github.com/ultcp/ultcp/internal/wire"
	"github.com/ultcp/ultcp/link/tun"
)

// Outside → node: packets from the device to the fabric connections.

// maxICMPRecord is the longest ICMP error a node accepts on its ring
// (RFC 1812 §4.3.2.3; icmp.go in package ultcp).
const maxICMPRecord = 576

// fromOutside handles one packet read from the device. p.Data is the
// gateway's own buffer, so it may be modified in place.
func (g *Gateway) fromOutside(now time.Duration, p tun.Packet) {
	b := p.Data
	if len(b) > 0 && b[0]>>4 == 6 {
		// IPv6 (the kernel sends router solicitations and the like as
		// soon as the link is up): the cluster speaks IPv4 only.
		g.stats.drop(dropProtocol)
		return
	}
	if len(b) < wire.IPv4HeaderLen || b[0]>>4 != 4 {
		g.stats.drop(dropBadPacket)
		return
	}
	ihl := int(b[0]&0x0f) * 4
	tot := int(be.Uint16(b[2:]))
	if ihl < wire.IPv4HeaderLen || tot < ihl || tot > len(b) {
		g.stats.drop(dropBadPacket)
		return
	}
	b = b[:tot] // a link may pad; the IPv4 total length is authoritative
	if wire.Checksum(b[:ihl]) != 0 {
		// RFC 1812 §5.2.2: a router verifies the header checksum.
		g.stats.drop(dropBadChecksum)
		return
	}
	if be.Uint16(b[6:])&0x3fff != 0 {
		g.stats.drop(dropFragment)
		return
	}
	src, dst := wire.IPv4Addr(b[12:16]), wire.IPv4Addr(b[16:20])
	if !g.subnet.Contains(dst.Netip()) {
		g.stats.drop(dropNotCluster)
		return
	}
	if g.subnet.Contains(src.Netip()) && !(src == g.addr && b[9] == 1) {
		// Cluster addresses live on the fabric side only (RFC 2827
		// ingress filtering); nodes trust what the gateway forwards.
		// One exception: the gateway's own kernel, routing a node's
		// packet out of the TUN device, sends its ICMP errors (such
		// as fragmentation needed, RFC 1191) from the address of the
		// interface the packet came in on, the TUN's, which is the
		// gateway's address. Those are routed by the quoted header
		// and checked by the node's engine like any ICMP error.
		g.stats.drop(dropSpoofed)
		return
	}
	if b[8] <= 1 {
		g.stats.drop(dropTTL)
		return
	}
	if c := g.cfg.Capture; c != nil && !g.replaying {
		captureDevice(c, tun.Packet{Data: b})
	}
	switch b[9] {
	case 6:
		g.tcpFromOutside(now, p, b, ihl)
	case 1:
		g.icmpFromOutside(now, p, b, ihl)
	default:
		g.stats.drop(dropProtocol)
	}
}

func (g *Gateway) tcpFromOutside(now time.Duration, p tun.Packet, b []byte, ihl int) {
	th := b[ihl:]
	if len(th) < wire.TCPHeaderLen {
		g.stats.drop(dropBadPacket)
		return
	}
	thl := int(th[12]>>4) * 4
	if thl < wire.TCPHeaderLen || thl > len(th) {
		g.stats.drop(dropBadPacket)
		return
	}
	src, dst := wire.IPv4Addr(b[12:16]), wire.IPv4Addr(b[16:20])
	if !p.DataValid && !p.NeedsCsum && wire.VerifyTCPChecksum(src, dst, th) != nil {
		// The kernel vouches with DATA_VALID; a partial checksum
		// (NEEDS_CSUM, always so for GRO) is the kernel's own packet.
		g.stats.drop(dropBadChecksum)
		return
	}
	key := FlowKey{Node: dst, NodePort: be.Uint16(th[2:]), Remote: src, RemotePort: be.Uint16(th[0:])}
	flags := th[13]
	isSYN := flags&(flagSYN|flagACK|flagRST) == flagSYN
	f := g.flows.byKey[key]
	if f != nil && isSYN && (f.done() || f.reset) {
		// A new connection reusing the 4-tuple of one that ended
		// (RFC 9293 §3.10.7.4 leaves TIME-WAIT reuse to the node).
		g.closeFlow(f, closeReplaced)
		f = nil
	}
	opened := false
	if f == nil {
		if !isSYN {
			g.stats.drop(dropNoFlow)
			if flags&flagRST == 0 {
				g.refuse(now, b, ihl, thl)
			}
			return
		}
		// The node to open the flow to: dst, or the member a service
		// at dst picks (service.go).
		node, ok := g.serviceTarget(now, key, b, ihl, thl)
		if !ok {
			return
		}
		if node == g.addr || !g.nodeLive(now, node) {
			g.stats.drop(dropNoNode)
			g.unreachable(now, b, ihl)
			return
		}
		if g.flows.full() {
			g.stats.drop(dropTableFull)
			return
		}
		if !g.contacted[node] {
			g.firstContact(now, node, b)
			return
		}
		c, err := g.dialNode(node)
		if err != nil {
			g.dialFailed(now, node, b, ihl, err)
			return
		}
		f = &Flow{conn: c, lastSeen: now}
		g.flows.add(f)
		g.flows.setKey(f, key)
		c.SetWatch(true)
		g.serviceFlowOpened(f)
		g.stats.FlowsOpened.Add(1)
		g.stats.Flows.Add(1)
		opened = true
	}
	b[8]-- // RFC 1812 §5.3.1
	if flags&flagSYN != 0 {
		f.synRemote = true
		if clampMSS(th[:thl], g.clamp) {
			g.stats.MSSClamped.Add(1)
		}
		mss, at := findMSS(th[:thl])
		if at < 0 {
			mss = 536 // RFC 9293 §3.7.1: no option, the default send MSS
		}
		f.mssOut = min(mss, g.clamp)
	}
	if flags&flagFIN != 0 {
		f.finRemote = true
	}
	if flags&flagRST != 0 {
		// Not the end yet: the node judges whether the RST is acceptable
		// (RFC 5961 §3); the flow ends when the node closes, or soon
		// (resetTimeout).
		f.reset = true
	}
	end := be.Uint32(th[4:]) + uint32(len(th)-thl)
	if flags&flagSYN != 0 {
		end++
	}
	if flags&flagFIN != 0 {
		end++
	}
	if opened || int32(end-f.remoteNxt) > 0 {
		f.remoteNxt = end
	}
	if flags&flagFIN != 0 {
		f.finRemoteEnd = end
	}
	if flags&flagACK != 0 && f.finNode && int32(be.Uint32(th[8:])-f.finNodeEnd) >= 0 {
		f.finNodeAcked = true
	}
	f.lastSeen = now
	g.cust.Inbound(f, now, b)
	if !g.toRing(f, b) {
		return
	}
	g.stats.InPackets.Add(1)
	g.stats.InBytes.Add(uint64(len(b)))
	if p.GSOSize != 0 {
		g.stats.InGRO.Add(1)
	}
	if f.finished() && len(f.queue) == 0 {
		g.closeFlow(f, closeFinished)
		return
	}
	if opened {
		g.cust.FlowOpened(f, now)
	}
}

// refuse answers a segment that belongs to no flow with a RST, as a closed
// port does (RFC 9293 §3.10.7.1): if it had ACK, <SEQ=SEG.ACK><CTL=RST>,
// else <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>. The RST comes from the
// address the segment was for.
func (g *Gateway) refuse(now time.Duration, b []byte, ihl, thl int) {
	if !g.limiter.allow(now) {
		return
	}
	th := b[ihl:]
	var r [40]byte
	r[0] = 0x45
	be.PutUint16(r[2:], 40)
	be.PutUint16(r[6:], 0x4000)
	r[8] = 64
	r[9] = 6
	copy(r[12:16], b[16:20])
	copy(r[16:20], b[12:16])
	rt := r[20:]
	copy(rt[0:2], th[2:4])
	copy(rt[2:4], th[0:2])
	rt[12] = 5 << 4
	flags := th[13]
	if flags&flagACK != 0 {
		copy(rt[4:8], th[8:12])
		rt[13] = flagRST
	} else {
		segLen := uint32(len(th) - thl)
		if flags&flagSYN != 0 {
			segLen++
		}
		if flags&flagFIN != 0 {
			segLen++
		}
		be.PutUint32(rt[8:], be.Uint32(th[4:])+segLen)
		rt[13] = flagRST | flagACK
	}
	g.emitSoft(now, r[:])
	g.stats.RSTSent.Add(1)
}

// unreachable answers a packet for a cluster address no live node holds
// with ICMP destination unreachable, code 1 (host unreachable; RFC 792,
// RFC 1812 §4.3.2.3: the IP header and at least 8 bytes of the datagram).
// It comes from the unreachable address itself: a source that is the
// gateway namespace's own address would be dropped there as martian.
func (g *Gateway) unreachable(now time.Duration, b []byte, ihl int) {
	if !g.limiter.allow(now) {
		return
	}
	quote := b[:min(len(b), ihl+8)]
	n := wire.IPv4HeaderLen + wire.ICMPv4HeaderLen + len(quote)
	r := g.icmp[:n]
	clear(r)
	r[0] = 0x45
	be.PutUint16(r[2:], uint16(n))
	be.PutUint16(r[6:], 0x4000)
	r[8] = 64
	r[9] = 1
	copy(r[12:16], b[16:20])
	copy(r[16:20], b[12:16])
	r[20] = 3 // destination unreachable
	r[21] = 1 // host unreachable
	copy(r[28:], quote)
	g.emitSoft(now, r)
	g.stats.ICMPUnreachSent.Add(1)
}

// icmpFromOutside answers echo requests for live nodes and routes ICMP
// errors to the flow whose segment they quote (RFC 9293 §3.9.2.2, RFC
// 5927: the node's TCP decides what to do with them).
func (g *Gateway) icmpFromOutside(now time.Duration, p tun.Packet, b []byte, ihl int) {
	m := b[ihl:]
	if len(m) < wire.ICMPv4HeaderLen {
		g.stats.drop(dropBadPacket)
		return
	}
	if !p.DataValid && !p.NeedsCsum && wire.Checksum(m) != 0 {
		g.stats.drop(dropBadChecksum)
		return
	}
	dst := wire.IPv4Addr(b[16:20])
	switch m[0] {
	case 8: // echo request (RFC 792)
		if dst != g.addr && !g.nodeLive(now, dst) {
			g.stats.drop(dropNoNode)
			g.unreachable(now, b, ihl)
			return
		}
		g.echoReply(now, b, ihl)
	case 3, 4, 5, 11, 12: // unreachable, source quench, redirect, time exceeded, parameter problem
		g.routeICMPError(now, b, ihl)
	default:
		g.stats.drop(dropICMP)
	}
}

// echoReply answers an echo request for a live node: the same identifier,
// sequence number and data, from the node's address (RFC 792).
func (g *Gateway) echoReply(now time.Duration, b []byte, ihl int) {
	r := g.out[:len(b)-ihl+wire.IPv4HeaderLen]
	clear(r[:wire.IPv4HeaderLen])
	r[0] = 0x45
	be.PutUint16(r[2:], uint16(len(r)))
	be.PutUint16(r[6:], 0x4000)
	r[8] = 64
	r[9] = 1
	copy(r[12:16], b[16:20])
	copy(r[16:20], b[12:16])
	copy(r[20:], b[ihl:])
	r[20], r[21] = 0, 0 // echo reply, code 0
	g.emitSoft(now, r)
	g.stats.ICMPEchoReplies.Add(1)
}

// routeICMPError puts an ICMP error on the ring of the flow its quoted
// header names. The node checks it again (icmp.go): its addresses, its
// checksum, and that the quoted sequence number is in flight.
func (g *Gateway) routeICMPError(now time.Duration, b []byte, ihl int) {
	if len(b) > maxICMPRecord {
		g.stats.drop(dropICMP)
		return
	}
	q, data, err := wire.QuotedIPv4(b[ihl+wire.ICMPv4HeaderLen:])
	if err != nil || q.Protocol != 6 || q.FragOffset != 0 || q.Src != wire.IPv4Addr(b[16:20]) {
		g.stats.drop(dropICMP)
		return
	}
	key := FlowKey{Node: q.Src, NodePort: be.Uint16(data[0:]), Remote: q.Dst, RemotePort: be.Uint16(data[2:])}
	f := g.flows.byKey[key]
	if f == nil {
		g.stats.drop(dropICMP)
		return
	}
	m := b[ihl:]
	if m[0] == 3 && m[1] == 4 {
		// Fragmentation needed (RFC 1191 §4): the node lowers its MSS
		// when it sees this; the gateway's own GSO and cutting of large
		// records follow the same path MTU. Forged advice must cost
		// little (RFC 5927 §4.1, §7.2): the quoted sequence number must
		// be one the node sent recently, and the MTU is taken no lower
		// than 552 (Linux's min_pmtu).
		seq := be.Uint32(data[4:])
		recent := int32(f.nodeNxt-seq) > 0 && f.nodeNxt-seq <= 64<<20
		if mtu := max(int(be.Uint16(m[6:])), 552); recent && mtu-40 < int(g.mssFor(f)) {
			f.mssOut = uint16(mtu - 40)
		}
	}
	if g.toRing(f, b) {
		g.stats.ICMPErrorsRouted.Add(1)
	}
}

// mssFor is f's outside MSS: what the outside host announced, clamped.
func (g *Gateway) mssFor(f *Flow) uint16 {
	if f.mssOut == 0 || f.mssOut > g.clamp {
		return g.clamp
	}
	return f.mssOut
}

// captureDevice writes p to a pcap writer: TCP as headers and payload (the
// writer fills the checksums in its copy), anything else as it is.
func captureDevice(c *capture.Writer, p tun.Packet) {
	d := p.Data
	if len(d) >= wire.IPv4HeaderLen && d[9] == 6 {
		ihl := int(d[0]&0x0f) * 4
		if len(d) >= ihl+wire.TCPHeaderLen {
			hl := ihl + int(d[ihl+12]>>4)*4
			if hl <= len(d) {
				if p.Payload != nil {
					c.Capture(true, d[:hl], p.Payload)
				} else {
					c.Capture(true, d[:hl], d[hl:])
				}
				return
			}
		}
	}
	c.Capture(true, d, p.Payload)
}

// captureFabric records a node's segment as it was on the fabric.
func (g *Gateway) captureFabric(h, payload []byte) {
	if c := g.cfg.CaptureFabric; c != nil {
		c.Capture(false, h, payload)
	}
}

// First contact with a node (fabric.Node.Dial's handshake over the node's
// socket) takes system calls and, from a node that does not answer, up to
// the fabric's handshake timeout: it runs in a goroutine, never in the
// event loop. The SYNs that arrive meanwhile wait (at most
// maxContactWaiters per node; more are dropped, and their senders resend).
// Later dials to the node take a ring pair from the segment: no system
// call, done in the loop.

const (
	maxContactWaiters = 64
	contactTimeout    = 5 * time.Second
)

type contactResult struct {
	node wire.IPv4Addr
	conn *fabric.Conn
	err  error
}

// firstContact queues the SYN b for node dst and starts the contact if it
// is not under way.
func (g *Gateway) firstContact(now time.Duration, dst wire.IPv4Addr, b []byte) {
	waiting, busy := g.contacting[dst]
	if len(waiting) >= maxContactWaiters {
		g.stats.drop(dropNoNode)
		return
	}
	g.contacting[dst] = append(waiting, append([]byte(nil), b...))
	if busy {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(g.bg, contactTimeout)
		c, err := g.node.Dial(ctx, dst.Netip(), fabric.ConnConfig{RingSize: g.cfg.RingSize})
		cancel()
		select {
		case g.contacts <- contactResult{dst, c, err}:
			g.node.Wake()
		case <-g.closed:
			if c != nil {
				c.Close()
			}
		}
	}()
}

// contactsDone hands the SYNs that waited for a first contact to the
// forwarding path (the first one gets the connection the contact made).
func (g *Gateway) contactsDone(now time.Duration) bool {
	any := false
	for {
		var r contactResult
		select {
		case r = <-g.contacts:
		default:
			return any
		}
		any = true
		waiting := g.contacting[r.node]
		delete(g.contacting, r.node)
		if r.err != nil {
			for _, syn := range waiting {
				g.dialFailed(now, r.node, syn, int(syn[0]&0x0f)*4, r.err)
			}
			continue
		}
		g.contacted[r.node] = true
		g.preDialed = r.conn
		g.replaying = true // captured when they came
		for _, syn := range waiting {
			// Verified when it first came; the kernel's word stands.
			g.fromOutside(now, tun.Packet{Data: syn, DataValid: true})
		}
		g.replaying = false
		if g.preDialed != nil {
			g.preDialed.Close() // the SYN found a flow after all
			g.preDialed = nil
		}
	}
}

// dialFailed answers SYN b, for which dst could not be reached, and counts
// dst as down for a second.
func (g *Gateway) dialFailed(now time.Duration, dst wire.IPv4Addr, b []byte, ihl int, err error) {
	g.stats.drop(dropNoNode)
	g.live[dst] = liveEntry{ok: false, until: now + time.Second}
	delete(g.contacted, dst)
	if errors.Is(err, fabric.ErrNoNode) {
		g.unreachable(now, b, ihl)
		return
	}
	g.log.Warn("gateway: cannot reach node; it counts as down for a second", "node", dst, "err", err)
}
