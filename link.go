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
