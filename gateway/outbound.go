package gateway

import (
	"encoding/binary"
	"errors"
	"io"
	"time"

	"github.com/ultcp/ultcp/fabric"
	"github.com/ultcp/ultcp/internal/custody"
	"github.com/ultcp/ultcp/internal/wire"
	"github.com/ultcp/ultcp/link/tun"
)

// Node → outside: records from the fabric connections to the device.

// TCP flag bits (RFC 9293 §3.1).
const (
	flagFIN = 0x01
	flagSYN = 0x02
	flagRST = 0x04
	flagPSH = 0x08
	flagACK = 0x10
	flagURG = 0x20
	flagCWR = 0x80
)

var be = binary.BigEndian

// serveFlow reads f's records, at most recordBudget; true if records may
// be left.
func (g *Gateway) serveFlow(now time.Duration, f *Flow) bool {
	if len(f.queue) > 0 {
		g.flushQueue(f)
		if !f.closed && len(f.queue) == 0 && f.finished() {
			g.closeFlow(f, closeFinished)
		}
		if f.closed {
			return false
		}
	}
	for range recordBudget {
		r, err := f.conn.PeekNoWait()
		if err != nil {
			switch {
			case errors.Is(err, fabric.ErrWouldBlock):
				// The batch stays open: more of this flow's segments
				// may come while the loop polls (Run's spin); it is
				// written when anything else needs it, or before the
				// loop sleeps. A segment with PSH, or shorter than the
				// MSS, closes it at once, so that only bulk transfer
				// waits, at most the spin budget.
			case errors.Is(err, io.EOF):
				g.flushBatch(now)
				g.closeFlow(f, closeNodeClosed)
			default:
				// The node died or broke the ring: its outside peer
				// learns at once rather than at its own timeout.
				g.flushBatch(now)
				g.resetOutside(now, f)
				g.closeFlow(f, closeNodeError)
			}
			return false
		}
		g.fromNode(now, f, r)
		if f.closed {
			return false
		}
		f.conn.Release()
		g.markHot(f)
	}
	return true
}

// fromNode handles one record of f. Everything in r is in shared memory
// that the node can still write: the headers are copied once into g.hdr
// and only the copy is checked and used; the payload is forwarded as it
// is (a node that changes it under us only spoils its own packet).
func (g *Gateway) fromNode(now time.Duration, f *Flow, r fabric.Record) {
	total := len(r.Data) + r.DMALen
	h := g.hdr[:copy(g.hdr[:], r.Data)]
	if len(h) < wire.IPv4HeaderLen || h[0]>>4 != 4 {
		g.badRecord(f)
		return
	}
	ihl := int(h[0]&0x0f) * 4
	tot := int(be.Uint16(h[2:]))
	if ihl < wire.IPv4HeaderLen || ihl > len(h) || (tot != total && !(tot == 0 && total > 0xffff)) {
		g.badRecord(f)
		return
	}
	if be.Uint16(h[6:])&0x3fff != 0 {
		g.stats.drop(dropFragment)
		return
	}
	src, dst := wire.IPv4Addr(h[12:16]), wire.IPv4Addr(h[16:20])
	node, _ := wire.AddrFromNetip(f.conn.RemoteAddr())
	if f.keyed {
		// A service's member speaks as the service (service.go).
		node = f.Key.Node
	}
	switch h[9] {
	case 6:
	case custody.Proto:
		if src != node || dst != g.addr || r.DMA || !f.keyed {
			g.stats.drop(dropCustody)
			return
		}
		g.cust.Control(f, now, h[:min(len(h), total)])
		return
	default:
		g.stats.drop(dropProtocol)
		return
	}
	if len(h) < ihl+wire.TCPHeaderLen {
		g.badRecord(f)
		return
	}
	th := h[ihl:]
	thl := int(th[12]>>4) * 4
	hl := ihl + thl
	if thl < wire.TCPHeaderLen || hl > len(h) || (r.DMA && len(r.Data) != hl) {
		g.badRecord(f)
		return
	}
	h = h[:hl]
	th = th[:thl]
	if src != node || g.subnet.Contains(dst.Netip()) {
		g.stats.drop(dropWrongFlow)
		g.closeFlow(f, closeBadRecord)
		return
	}
	key := FlowKey{Node: src, NodePort: be.Uint16(th[0:]), Remote: dst, RemotePort: be.Uint16(th[2:])}
	flags := th[13]
	opened := false
	if !f.keyed {
		// A connection the node opened: its first record is the SYN that
		// names the flow.
		if flags&(flagSYN|flagACK|flagRST) != flagSYN {
			g.stats.drop(dropBadRecord)
			g.closeFlow(f, closeBadRecord)
			return
		}
		if old := g.flows.byKey[key]; old != nil {
			g.closeFlow(old, closeReplaced)
		}
		g.flows.setKey(f, key)
		g.stats.FlowsOpened.Add(1)
		g.stats.Flows.Add(1)
		opened = true
	} else if key != f.Key {
		g.stats.drop(dropWrongFlow)
		g.closeFlow(f, closeBadRecord)
		return
	}
	if h[8] <= 1 {
		g.stats.drop(dropTTL)
		return
	}
	h[8]-- // RFC 1812 §5.3.1: a router decrements the TTL
	var payload []byte
	if !r.DMA {
		payload = r.Data[hl:total]
	}
	plen := total - hl
	if flags&flagSYN != 0 {
		f.synNode = true
		if clampMSS(th, g.clamp) {
			g.stats.MSSClamped.Add(1)
		}
	}
	if flags&flagFIN != 0 {
		f.finNode = true
		g.serviceNodeFinished(f)
	}
	seq := be.Uint32(th[4:])
	end := seq + uint32(plen)
	if flags&flagSYN != 0 {
		end++
	}
	if flags&flagFIN != 0 {
		end++
	}
	// The node's SYN (or SYN-ACK, on a flow the outside opened) starts
	// nodeNxt: compared with a zero nodeNxt, an ISN in the upper half of
	// the sequence space would never count as ahead, and no ICMP error
	// would ever quote a "recent" sequence number (inbound.go).
	if opened || flags&flagSYN != 0 || int32(end-f.nodeNxt) > 0 {
		f.nodeNxt = end
	}
	if flags&flagFIN != 0 {
		f.finNodeEnd = end
	}
	if flags&flagACK != 0 && f.finRemote && int32(be.Uint32(th[8:])-f.finRemoteEnd) >= 0 {
		f.finRemoteAcked = true
	}
	f.lastSeen = now
	g.sendTCP(now, f, h, ihl, payload, r.DMA, plen)
	if opened && !f.closed {
		g.cust.FlowOpened(f, now)
	}
	if f.finished() && !f.closed && len(f.queue) == 0 {
		g.flushBatch(now)
		g.closeFlow(f, closeFinished)
		return
	}
	if flags&flagRST != 0 && !f.closed {
		// The node aborted: nothing more will come.
		f.finNode, f.finRemote = true, true
		g.flushBatch(now)
		g.closeFlow(f, closeReset)
	}
}

func (g *Gateway) badRecord(f *Flow) {
	g.stats.drop(dropBadRecord)
	g.flushBatch(0)
	g.closeFlow(f, closeBadRecord)
}

// segSize is the TCP payload per segment on the outside for a header of
// thl bytes: the MSS the outside host announced, clamped, less the TCP
// options (RFC 9293 §3.7.1: the MSS counts no options).
func (g *Gateway) segSize(f *Flow, thl int) int {
	return max(int(g.mssFor(f))-(thl-wire.TCPHeaderLen), 8)
}

// batch coalesces one flow's consecutive in-order segments of equal size
// (the last may be shorter) whose headers differ only in the sequence
// number and PSH, into one GSO write (the reverse of the kernel's GSO).
type batch struct {
	f     *Flow
	hdr   [maxHdrs]byte
	hl    int
	ihl   int
	buf   []byte
	n     int    // payload bytes held
	seg   int    // the segment size
	next  uint32 // the sequence number that continues the batch
	count int
	since time.Duration // when the first segment came
}

// sendTCP forwards a TCP segment of f: coalesced with its neighbours if it
// is an ordinary data segment of the outside MSS, else at once.
func (g *Gateway) sendTCP(now time.Duration, f *Flow, h []byte, ihl int, payload []byte, dma bool, plen int) {
	th := h[ihl:]
	thl := len(th)
	flags := th[13]
	gso := g.segSize(f, thl)
	b := &g.batch
	plain := !dma && plen > 0 && flags&^flagPSH == flagACK
	if plain && b.count > 0 && b.f == f && b.fits(h, ihl, plen) {
		g.cust.Outbound(f, now, h, payload)
		g.captureFabric(h, payload)
		copy(b.buf[b.n:], payload)
		b.n += plen
		b.next += uint32(plen)
		b.count++
		if plen < b.seg || flags&flagPSH != 0 {
			if flags&flagPSH != 0 {
				b.hdr[b.ihl+13] |= flagPSH
			}
			g.flushBatch(now)
		}
		return
	}
	g.flushBatch(now)
	if plain && plen == gso && flags&flagPSH == 0 && len(h)+2*plen <= tun.MaxPacketLen {
		g.cust.Outbound(f, now, h, payload)
		g.captureFabric(h, payload)
		b.f, b.hl, b.ihl = f, len(h), ihl
		copy(b.hdr[:], h)
		b.n = copy(b.buf, payload)
		b.seg = plen
		b.next = be.Uint32(th[4:]) + uint32(plen)
		b.count = 1
		b.since = now
		return
	}
	g.sendRecord(now, f, h, ihl, payload, dma, plen, gso)
}

// fits tells whether a segment with headers h and plen payload bytes
// continues the batch.
func (b *batch) fits(h []byte, ihl, plen int) bool {
	if len(h) != b.hl || ihl != b.ihl || plen > b.seg || b.hl+b.n+plen > tun.MaxPacketLen {
		return false
	}
	th, bt := h[ihl:], b.hdr[ihl:b.hl]
	if be.Uint32(th[4:]) != b.next {
		return false
	}
	// IPv4: version, IHL, TOS, TTL, protocol and addresses must match;
	// total length, ID and checksum are per packet.
	if h[0] != b.hdr[0] || h[1] != b.hdr[1] || h[8] != b.hdr[8] || string(h[12:ihl]) != string(b.hdr[12:ihl]) {
		return false
	}
	// TCP: ports, ACK, data offset, window, urgent pointer and options
	// must match; flags may differ in PSH only.
	return string(th[0:4]) == string(bt[0:4]) && string(th[8:13]) == string(bt[8:13]) &&
		th[13]&^flagPSH == bt[13]&^flagPSH && string(th[14:16]) == string(bt[14:16]) &&
		string(th[18:]) == string(bt[18:])
}

// flushBatch writes the batch out.
func (g *Gateway) flushBatch(now time.Duration) {
	b := &g.batch
	if b.count == 0 {
		return
	}
	f := b.f
	count := b.count
	b.count, b.f = 0, nil
	if f.closed {
		return
	}
	if count > 1 {
		g.stats.OutCoalesced.Add(uint64(count))
	}
	g.emitTCP(now, b.hdr[:b.hl], b.ihl, b.buf[:b.n], b.seg)
}

// sendRecord sends one record's segment, cut into packets of at most
// 65535 bytes if it is longer (BIG TCP, DMA); each piece is a GSO write if
// it carries more than one segment.
func (g *Gateway) sendRecord(now time.Duration, f *Flow, h []byte, ihl int, payload []byte, dma bool, plen, gso int) {
	th := h[ihl:]
	hl := len(h)
	per := tun.MaxPacketLen - hl
	per -= per % gso
	seq := be.Uint32(th[4:])
	flags := th[13]
	for off := 0; ; off += per {
		end := min(off+per, plen)
		var piece []byte
		if dma {
			k, err := f.conn.Pull(g.dmaBuf[:end-off])
			if err != nil || k != end-off {
				g.stats.drop(dropBadRecord)
				g.resetOutside(now, f)
				g.closeFlow(f, closeNodeError)
				return
			}
			piece = g.dmaBuf[:k]
		} else {
			piece = payload[off:end]
		}
		if off > 0 || end < plen {
			s, fl := seq+uint32(off), flags
			if off > 0 && flags&flagSYN != 0 {
				s++ // the SYN took one sequence number before the data
				fl &^= flagSYN
			}
			if end < plen {
				fl &^= flagFIN | flagPSH
			}
			be.PutUint32(th[4:], s)
			th[13] = fl
		}
		g.cust.Outbound(f, now, h, piece)
		g.captureFabric(h, piece)
		g.emitTCP(now, h, ihl, piece, gso)
		if end >= plen {
			return
		}
	}
}

// emitTCP fills the lengths and checksums of a TCP packet (headers h,
// payload) and writes it: as a GSO packet if the payload is longer than
// gso, else as one segment with the checksum offloaded or computed while
// copying.
func (g *Gateway) emitTCP(now time.Duration, h []byte, ihl int, payload []byte, gso int) {
	hl := len(h)
	total := hl + len(payload)
	be.PutUint16(h[2:], uint16(total))
	ipv4HeaderChecksum(h[:ihl])
	th := h[ihl:]
	th[16], th[17] = 0, 0
	tcpLen := total - ihl
	var p tun.Packet
	switch {
	case len(payload) > gso:
		p = tun.Packet{Data: h, Payload: payload, GSOSize: uint16(gso), NeedsCsum: true,
			CsumStart: uint16(ihl), CsumOffset: 16, HdrLen: uint16(hl), ECN: th[13]&flagCWR != 0}
		// virtio 1.2 §5.1.6.2: the checksum field holds the pseudo-header
		// sum (not complemented) of the whole super-packet.
		be.PutUint16(th[16:], tcpPseudoSum(h, tcpLen))
		g.stats.OutGSO.Add(1)
	case g.cfg.SoftChecksum:
		out := g.out[:total]
		copy(out, h)
		sum := copySum(out[hl:], payload)
		be.PutUint16(out[ihl+16:], tcpChecksumFinish(tcpPseudoSum(h, tcpLen), th, sum))
		p = tun.Packet{Data: out}
		g.stats.OutSoftCsum.Add(1)
	default:
		be.PutUint16(th[16:], tcpPseudoSum(h, tcpLen))
		p = tun.Packet{Data: h, Payload: payload, NeedsCsum: true, CsumStart: uint16(ihl), CsumOffset: 16, HdrLen: uint16(hl)}
		g.stats.OutOffloadCsum.Add(1)
	}
	g.emit(now, p)
}

// emit writes a packet to the device, through the impairment stage if
// there is one.
func (g *Gateway) emit(now time.Duration, p tun.Packet) {
	if g.imp != nil {
		if !g.imp.Push(now, p) {
			g.stats.drop(dropImpair)
			return
		}
		g.releaseImpaired(now)
		return
	}
	g.write(p)
}

func (g *Gateway) write(p tun.Packet) {
	if c := g.cfg.Capture; c != nil {
		captureDevice(c, p)
	}
	if err := g.dev.Write(p); err != nil {
		g.stats.drop(dropDevice)
		return
	}
	g.stats.OutPackets.Add(1)
	g.stats.OutBytes.Add(uint64(p.Len()))
}

func (g *Gateway) releaseImpaired(now time.Duration) {
	for {
		p, ok := g.imp.Pop(now)
		if !ok {
			return
		}
		g.write(p)
	}
}

// resend is the custodian's ToOutside: a whole IPv4 TCP packet, whose
// headers are copied so that the custodian's copy stays as it is.
func (g *Gateway) resend(f *Flow, pkt []byte) error {
	if f.closed {
		return errFlowClosed
	}
	if len(pkt) < wire.IPv4HeaderLen+wire.TCPHeaderLen || len(pkt) > tun.MaxPacketLen || pkt[9] != 6 {
		return errors.New("gateway: resend of a packet that is not IPv4 TCP")
	}
	ihl := int(pkt[0]&0x0f) * 4
	if ihl < wire.IPv4HeaderLen || len(pkt) < ihl+wire.TCPHeaderLen {
		return errors.New("gateway: resend of a malformed packet")
	}
	thl := int(pkt[ihl+12]>>4) * 4
	if thl < wire.TCPHeaderLen || len(pkt) < ihl+thl {
		return errors.New("gateway: resend of a malformed packet")
	}
	var h [maxHdrs]byte
	hdr := h[:copy(h[:], pkt[:ihl+thl])]
	g.emitTCP(g.now(), hdr, ihl, pkt[ihl+thl:], g.segSize(f, thl))
	return nil
}

// clampMSS lowers the MSS option of a SYN's TCP header th to clamp
// (RFC 9293 §3.7.1; what Linux's TCPMSS --clamp-mss-to-pmtu does) and
// reports whether it changed it. The checksum is filled later (node →
// outside) or not needed (outside → node: the fabric does not check).
func clampMSS(th []byte, clamp uint16) bool {
	_, at := findMSS(th)
	if at < 0 || be.Uint16(th[at:]) <= clamp {
		return false
	}
	be.PutUint16(th[at:], clamp)
	return true
}

// findMSS returns the MSS option of the TCP header th and the offset of
// its value, or (0, -1) if it has none (RFC 9293 §3.1 option layout; a
// malformed option list ends the search).
func findMSS(th []byte) (uint16, int) {
	opts := th[wire.TCPHeaderLen:]
	for i := 0; i < len(opts); {
		switch opts[i] {
		case 0: // end of option list
			return 0, -1
		case 1: // no-operation
			i++
			continue
		}
		if i+1 >= len(opts) {
			return 0, -1
		}
		l := int(opts[i+1])
		if l < 2 || i+l > len(opts) {
			return 0, -1
		}
		if opts[i] == 2 && l == 4 {
			return be.Uint16(opts[i+2:]), wire.TCPHeaderLen + i + 2
		}
		i += l
	}
	return 0, -1
}

// resetOutside sends the outside host a RST for f, as its node would have
// (RFC 9293 §3.10.7.1), when the node can no longer: it died or broke its
// ring. Its sequence number is the highest the node sent, where the
// outside host's RCV.NXT is unless something was lost (then RFC 5961 §3
// makes it answer with a challenge ACK and the flow ends at its timeout).
func (g *Gateway) resetOutside(now time.Duration, f *Flow) {
	if g.serviceSpares(f) {
		return // the client's SYN, resent, will find another member (service.go)
	}
	if !f.keyed || !f.synNode && !f.synRemote || f.done() {
		return
	}
	if !g.limiter.allow(now) {
		return
	}
	var b [40]byte
	b[0] = 0x45
	be.PutUint16(b[2:], 40)
	be.PutUint16(b[6:], 0x4000)
	b[8] = 64
	b[9] = 6
	copy(b[12:16], f.Key.Node[:])
	copy(b[16:20], f.Key.Remote[:])
	th := b[20:]
	be.PutUint16(th[0:], f.Key.NodePort)
	be.PutUint16(th[2:], f.Key.RemotePort)
	be.PutUint32(th[4:], f.nodeNxt)
	be.PutUint32(th[8:], f.remoteNxt)
	th[12] = 5 << 4
	th[13] = flagRST | flagACK
	g.emitSoft(now, b[:])
	g.stats.RSTSent.Add(1)
}

// emitSoft writes a small packet the gateway made itself, with every
// checksum computed here (IPv4 header; TCP or ICMP).
func (g *Gateway) emitSoft(now time.Duration, pkt []byte) {
	ihl := int(pkt[0]&0x0f) * 4
	ipv4HeaderChecksum(pkt[:ihl])
	l4 := pkt[ihl:]
	switch pkt[9] {
	case 6:
		l4[16], l4[17] = 0, 0
		be.PutUint16(l4[16:], wire.TCPChecksum(wire.IPv4Addr(pkt[12:16]), wire.IPv4Addr(pkt[16:20]), l4, nil))
	case 1:
		l4[2], l4[3] = 0, 0
		be.PutUint16(l4[2:], wire.Checksum(l4))
	}
	g.emit(now, tun.Packet{Data: pkt})
}
