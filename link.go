package ultcp

import (
	"encoding/binary"
	"errors"

	"github.com/ultcp/ultcp/internal/custody"
	"github.com/ultcp/ultcp/internal/tcp"
	"github.com/ultcp/ultcp/internal/wire"
)

// The wire format on the fabric. Every ring record is one IPv4 packet
// holding one TCP segment, with real headers, so that a gateway can forward
// records to the outside world unchanged:
//
//   - PIO record: IPv4 header (20 bytes, no options), TCP header with
//     options, payload.
//   - DMA record: the same headers as the inline prefix; the payload is
//     the DMA part, which the receiver pulls from the sender's buffer.
//
// Checksums are not computed inside the fabric (it is memory, and both
// ends are ultcp): the IPv4 header checksum and the TCP checksum are
// written as zero and never verified here. A gateway forwarding a record
// out of the fabric computes both while it copies (DESIGN.md §3).
//
// Large segments (BIG TCP). The fabric has no MTU, and a DMA record may
// carry far more than 64 KiB: the sender coalesces the MSS-sized segments
// the engine emits for one write into one record. An IPv4 total length
// cannot express more than 65535 bytes, so, as Linux's BIG TCP does for
// IPv4, such a record has a total length of 0 and the record length is
// authoritative; a gateway must re-segment it (TSO) before it leaves the
// fabric. A receiver accepts tot_len 0 only for packets that really are
// longer than 65535 bytes.
//
// TSO records (tso.go). On a connection through the gateway a PIO record
// may likewise carry several MSS segments' worth behind the first
// segment's headers (up to one IPv4 packet); the gateway cuts it at the
// flow's MSS as the kernel's GSO does.

const (
	ipHdrLen = 20
	// maxHdrLen bounds the headers of one record: IPv4 (no options) plus
	// TCP with the largest option space.
	maxHdrLen = ipHdrLen + 60
)

// Capture sees every packet the stack sends (out) and receives: headers is
// the IPv4 and TCP header, payload the TCP payload (for a DMA record the
// bytes as pulled or as they sit in the writer's buffer). It is called on
// the data path, synchronously; it must not keep either slice. It is the
// seam for packet capture (pcap) and for tracing.
type Capture func(out bool, headers, payload []byte)

var (
	errShortPacket = errors.New("ultcp: record shorter than an IPv4 header")
	errNotIPv4TCP  = errors.New("ultcp: record is not an IPv4 TCP packet")
	errBadLength   = errors.New("ultcp: IPv4 total length disagrees with the record")
	errBadAddress  = errors.New("ultcp: packet addresses do not match the connection")
	errDMAInline   = errors.New("ultcp: DMA record with inline payload")
	errFragment    = errors.New("ultcp: IPv4 fragment on the fabric")
)

// encodeHeaders writes the IPv4 and TCP headers of seg, whose payload is
// payloadLen bytes, into b and returns their length; ipf gives the TOS
// and TTL (ipfields.go). b must hold maxHdrLen bytes.
func encodeHeaders(b []byte, src, dst wire.IPv4Addr, ipf ipFields, h *wire.TCPHeader, payloadLen int) (int, error) {
	n, err := h.Encode(b[ipHdrLen:])
	if err != nil {
		return 0, err
	}
	total := ipHdrLen + n + payloadLen
	if total > 0xffff {
		total = 0 // BIG TCP: the record length is authoritative
	}
	b[0] = 0x45 // version 4, header length 5 words
	b[1] = ipf.tos()
	binary.BigEndian.PutUint16(b[2:], uint16(total))
	binary.BigEndian.PutUint32(b[4:], 0x4000) // ID 0, DF (RFC 6864: ID unused on atomic datagrams)
	b[8] = ipf.ttl()
	b[9] = 6 // TCP
	b[10], b[11] = 0, 0
	copy(b[12:16], src[:])
	copy(b[16:20], dst[:])
	return ipHdrLen + n, nil
}

// decodeRecord parses the headers of a record of recLen bytes in total
// (inline bytes plus the DMA length) whose inline part is b, checks that it
// travels from peer to self, and fills seg.Hdr. It returns the inline
// payload (after the TCP header). b points into shared memory, which the
// peer can still write: every field is read once into seg or a local.
func decodeRecord(b []byte, recLen int, peer, self wire.IPv4Addr, seg *tcp.Segment) ([]byte, error) {
	if len(b) < ipHdrLen {
		return nil, errShortPacket
	}
	vihl := b[0]
	ihl := int(vihl&0xf) * 4
	if vihl>>4 != 4 || ihl < ipHdrLen || ihl > len(b) || b[9] != 6 {
		if b[9] == 1 && vihl>>4 == 4 {
			return nil, errICMP // an ICMP error for the connection (icmp.go)
		}
		if b[9] == custody.Proto && vihl>>4 == 4 {
			return nil, errCustody // a message from the gateway (custody.go)
		}
		return nil, errNotIPv4TCP
	}
	total := int(binary.BigEndian.Uint16(b[2:]))
	if total != recLen && !(total == 0 && recLen > 0xffff) {
		return nil, errBadLength
	}
	if frag := binary.BigEndian.Uint16(b[6:]); frag&0x3fff != 0 {
		return nil, errFragment
	}
	var src, dst wire.IPv4Addr
	copy(src[:], b[12:16])
	copy(dst[:], b[16:20])
	if src != peer || dst != self {
		return nil, errBadAddress
	}
	return seg.Hdr.Parse(b[ihl:])
}

// The common case, fast. A segment without TCP options (every data
// segment and ACK of an established fabric connection, which negotiates
// neither timestamps nor, on an in-order ring, ever needs SACK blocks)
// has 40 bytes of headers of which only the sequence and acknowledgment
// numbers, the flags, the window, the urgent pointer and the IPv4 total
// length change from one segment to the next (and the ports, for a RST
// answering a foreign segment). The connection keeps those 40 bytes
// prebuilt (hdrTemplate) and patches these fields; a record whose
// headers have that shape is parsed by reading the same fields
// (decodeFast). Anything else goes through encodeHeaders and
// decodeRecord.

// tmplLen is the length of the headers of a segment without options.
const tmplLen = ipHdrLen + wire.TCPHeaderLen

// hdrTemplate is a connection's prebuilt headers (see above).
type hdrTemplate struct {
	b   [tmplLen]byte
	ipf uint32 // the IP fields it was built with; tmplNone before the first
	// ports is the TCP header's first word as a record for this
	// connection carries it (the peer's port, then ours), and src and
	// dst the IPv4 header's address words, for decodeFast's checks.
	ports, src, dst uint32
}

const tmplNone = 1 << 31 // never a value of ipFields (16 bits)

// build fills the template for segments from local port lp at src to
// remote port rp at dst.
func (t *hdrTemplate) build(src, dst wire.IPv4Addr, lp, rp uint16, ipf ipFields) {
	var h wire.TCPHeader
	h.SrcPort, h.DstPort = lp, rp
	encodeHeaders(t.b[:], src, dst, ipf, &h, 0) // cannot fail: no options
	t.ipf = uint32(ipf)
	be := binary.BigEndian
	t.ports = uint32(rp)<<16 | uint32(lp)
	t.src, t.dst = be.Uint32(dst[:]), be.Uint32(src[:])
}

// noOptions reports whether a header carries no TCP option, which
// EncodedLen would say more slowly.
func noOptions(o *wire.TCPOptions) bool {
	return o.MSS == 0 && !o.HasWScale && !o.SACKPermitted && o.NumSACK == 0 && !o.HasTimestamp
}

// encodeFast writes the headers of h (which has no options) for a
// payload of n bytes into b, at least tmplLen bytes, from the template.
func (t *hdrTemplate) encodeFast(b []byte, h *wire.TCPHeader, n int) {
	b = b[:tmplLen]
	*(*[tmplLen]byte)(b) = t.b
	be := binary.BigEndian
	if total := tmplLen + n; total <= 0xffff {
		be.PutUint16(b[2:], uint16(total))
	} else {
		be.PutUint16(b[2:], 0) // BIG TCP, as encodeHeaders
	}
	be.PutUint16(b[20:], h.SrcPort) // a RST for a foreign segment has other ports
	be.PutUint16(b[22:], h.DstPort)
	be.PutUint32(b[24:], h.Seq)
	be.PutUint32(b[28:], h.Ack)
	b[33] = uint8(h.Flags)
	be.PutUint16(b[34:], h.Window)
	be.PutUint16(b[36:], h.Checksum)
	be.PutUint16(b[38:], h.Urgent)
}

// encodeData writes the headers of a data segment of this connection
// (its own ports, no options, no urgent pointer) carrying n bytes, from
// the engine's fast path (tcp.FastHdr), into b.
func (t *hdrTemplate) encodeData(b []byte, h *tcp.FastHdr, n int) {
	b = b[:tmplLen]
	*(*[tmplLen]byte)(b) = t.b
	be := binary.BigEndian
	be.PutUint16(b[2:], uint16(tmplLen+n)) // n <= the MSS: below 64 KiB
	be.PutUint32(b[24:], h.Seq)
	be.PutUint32(b[28:], h.Ack)
	b[33] = uint8(h.Flags)
	be.PutUint16(b[34:], h.Window)
}

// decodeFast parses a PIO record b whose headers have the template's
// shape — IPv4 without options, not a fragment, from the peer to us, a
// TCP header without options between this connection's ports — into
// seg.Hdr, and returns the payload. ok is false for any other record,
// which decodeRecord then parses and checks in full. Like decodeRecord,
// it reads every field of the shared memory once.
func (t *hdrTemplate) decodeFast(b []byte, seg *tcp.Segment) (payload []byte, ok bool) {
	if len(b) < tmplLen {
		return nil, false
	}
	h := (*[tmplLen]byte)(b)
	be := binary.BigEndian
	if h[0] != 0x45 || h[9] != 6 || int(be.Uint16(h[2:])) != len(b) || be.Uint16(h[6:])&0x3fff != 0 ||
		be.Uint32(h[12:]) != t.src || be.Uint32(h[16:]) != t.dst || h[32]>>4 != 5 ||
		be.Uint32(h[20:]) != t.ports {
		return nil, false
	}
	hd := &seg.Hdr
	hd.SrcPort, hd.DstPort = uint16(t.ports>>16), uint16(t.ports)
	hd.Seq = be.Uint32(h[24:])
	hd.Ack = be.Uint32(h[28:])
	hd.Flags = wire.TCPFlags(h[33])
	hd.Window = be.Uint16(h[34:])
	hd.Checksum = be.Uint16(h[36:])
	hd.Urgent = be.Uint16(h[38:])
	if !noOptions(&hd.Options) {
		hd.Options = wire.TCPOptions{}
	}
	return b[tmplLen:], true
}
