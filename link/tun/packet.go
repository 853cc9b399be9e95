// Package tun is the packet device through which the gateway meets Linux: a
// TUN device (layer 3, no Ethernet, no packet-information prefix) opened with
// a virtio-net header on every packet, so that large TCP segments cross the
// boundary whole (GSO/TSO one way, GRO the other) and checksums can be left
// to the kernel (checksum offload).
//
// Every packet read from or written to the device is preceded by a 10-byte
// struct virtio_net_hdr (include/uapi/linux/virtio_net.h; VIRTIO 1.2
// §5.1.6 "Device Operation"). Packet is that header parsed, plus the IPv4
// packet behind it. The header is always little endian: Open asks the kernel
// for little-endian headers (TUNSETVNETLE) so that the encoding is the same
// on every host; without that request a legacy (pre-virtio-1.0) header is in
// the host's native byte order.
//
// The package speaks only IPv4 TCP offloads (GSO type TCPV4, with or without
// the ECN bit) because that is all the cluster speaks; a header announcing any
// other GSO type is an error, never a packet silently passed on.
//
// This package must never touch a network namespace, an address or a route:
// it opens the device and moves packets. Configuring the device is
// internal/netlink's job, and where it runs (never the root namespace in
// tests) is the caller's. It must never panic or hang on a bad header: a
// header it cannot vouch for is an error naming the field.
package tun

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// VnetHdrLen is the size of struct virtio_net_hdr without num_buffers (the
// header the device uses; TUNSETVNETHDRSZ would make it longer).
const VnetHdrLen = 10

// MaxPacketLen is the largest packet (IPv4 header included) the device moves:
// what an IPv4 total length can express (RFC 791 §3.1). A GSO super-packet is
// bounded by it too; the kernel's TUN device never offers more (its GSO
// maximum is 64 KiB for IPv4 unless BIG TCP is configured, which the gateway
// never does).
const MaxPacketLen = 65535

// Field values of struct virtio_net_hdr (include/uapi/linux/virtio_net.h).
const (
	vnetFlagNeedsCsum = 1 // VIRTIO_NET_HDR_F_NEEDS_CSUM
	vnetFlagDataValid = 2 // VIRTIO_NET_HDR_F_DATA_VALID

	vnetGSONone  = 0    // VIRTIO_NET_HDR_GSO_NONE
	vnetGSOTCPv4 = 1    // VIRTIO_NET_HDR_GSO_TCPV4
	vnetGSOECN   = 0x80 // VIRTIO_NET_HDR_GSO_ECN: the segments' CWR bit is set

	// tcpCsumOffset is offsetof(struct tcphdr, check) (RFC 9293 §3.1): the
	// kernel refuses a TCP GSO packet whose checksum offset is anything
	// else (virtio_net_hdr_to_skb).
	tcpCsumOffset = 16

	// gsoByFrags is GSO_BY_FRAGS, a gso_size the kernel reserves for
	// itself and refuses from user space.
	gsoByFrags = 0xFFFF
)

// Errors a header can fail with. Each error returned wraps one of these and
// names the offending field and value.
var (
	// ErrShortPacket: fewer bytes than a virtio-net header.
	ErrShortPacket = errors.New("tun: packet shorter than its virtio-net header")
	// ErrBadVnetHdr: a header field that is invalid or that this package
	// does not speak (unknown flag, unsupported GSO type, checksum range
	// outside the packet).
	ErrBadVnetHdr = errors.New("tun: bad virtio-net header")
	// ErrBadGSO: GSO fields that cannot describe a TCP/IPv4 super-packet
	// (gso_size 0, no partial checksum, checksum not at the TCP checksum).
	ErrBadGSO = errors.New("tun: bad GSO packet")
	// ErrTooBig: a packet longer than MaxPacketLen.
	ErrTooBig = errors.New("tun: packet too big")
)

// Packet is one packet crossing the device: the parsed virtio-net header and
// the IPv4 packet behind it.
type Packet struct {
	// Data is the IPv4 packet (headers and payload). After Device.Read it
	// aliases the caller's buffer. For Device.Write it may hold only the
	// headers, with the rest in Payload.
	Data []byte

	// Payload, on Write only, is appended after Data on the wire without
	// being copied into Data (the kernel gathers both, writev): it may be a
	// view into shared memory such as a fabric ring. Read leaves it nil.
	Payload []byte

	// GSOSize is 0 for an ordinary packet; otherwise the packet is a TCP/IPv4
	// super-packet (VIRTIO_NET_HDR_GSO_TCPV4) and GSOSize is the TCP payload
	// bytes per segment the kernel cuts it into (its MSS).
	GSOSize uint16

	// ECN marks a GSO packet whose first segment carries CWR
	// (VIRTIO_NET_HDR_GSO_ECN, RFC 3168 §6.1.2): the kernel keeps CWR on the
	// first segment only. Meaningless without GSOSize.
	ECN bool

	// HdrLen is virtio's hdr_len: the bytes of headers (IP and TCP) before
	// the payload. A hint to the kernel; on Write 0 lets the kernel derive
	// it from CsumStart+CsumOffset+2.
	HdrLen uint16

	// NeedsCsum: the L4 checksum is partial (VIRTIO_NET_HDR_F_NEEDS_CSUM):
	// the checksum field, at CsumStart+CsumOffset, holds the sum of the
	// pseudo-header only (not complemented), and whoever delivers the packet
	// stores there the complement of the sum of the bytes from CsumStart to
	// the end (RFC 1071). For a GSO packet the pseudo-header's length is the
	// whole super-packet's TCP length, as Linux's own TSO writes it; the
	// kernel corrects it for each segment it cuts (tcp_gso_segment).
	NeedsCsum bool
	// CsumStart is where checksumming starts (the L4 header's offset in the
	// packet); CsumOffset is the checksum field's offset from CsumStart (16
	// for TCP, 6 for UDP).
	CsumStart, CsumOffset uint16

	// DataValid: the kernel already validated the packet's checksums
	// (VIRTIO_NET_HDR_F_DATA_VALID); exclusive with NeedsCsum.
	DataValid bool
}

// Len is the packet's length on the wire after the header: Data then Payload.
func (p *Packet) Len() int { return len(p.Data) + len(p.Payload) }

// DecodePacket parses b, a virtio-net header followed by a packet, as read
// from the device. The returned Packet's Data aliases b[VnetHdrLen:]. Every
// field is checked against the packet it describes; a header this package
// would not write itself is an error wrapping ErrBadVnetHdr or ErrBadGSO.
func DecodePacket(b []byte) (Packet, error) {
	if len(b) < VnetHdrLen {
		return Packet{}, fmt.Errorf("%w: %d bytes, want at least %d", ErrShortPacket, len(b), VnetHdrLen)
	}
	flags, gsoType := b[0], b[1]
	p := Packet{
		Data:       b[VnetHdrLen:],
		HdrLen:     binary.LittleEndian.Uint16(b[2:]),
		GSOSize:    binary.LittleEndian.Uint16(b[4:]),
		CsumStart:  binary.LittleEndian.Uint16(b[6:]),
		CsumOffset: binary.LittleEndian.Uint16(b[8:]),
		NeedsCsum:  flags&vnetFlagNeedsCsum != 0,
		DataValid:  flags&vnetFlagDataValid != 0,
		ECN:        gsoType&vnetGSOECN != 0,
	}
	if unknown := flags &^ (vnetFlagNeedsCsum | vnetFlagDataValid); unknown != 0 {
		return Packet{}, fmt.Errorf("%w: unknown flags %#02x", ErrBadVnetHdr, unknown)
	}
	switch gsoType &^ vnetGSOECN {
	case vnetGSONone:
		if p.GSOSize != 0 {
			return Packet{}, fmt.Errorf("%w: gso_size %d with GSO type NONE", ErrBadGSO, p.GSOSize)
		}
		if p.ECN {
			return Packet{}, fmt.Errorf("%w: ECN bit with GSO type NONE", ErrBadGSO)
		}
	case vnetGSOTCPv4:
		if p.GSOSize == 0 {
			return Packet{}, fmt.Errorf("%w: gso_size 0 with GSO type TCPV4", ErrBadGSO)
		}
	default:
		return Packet{}, fmt.Errorf("%w: unsupported GSO type %#02x (only NONE and TCPV4)", ErrBadVnetHdr, gsoType)
	}
	if err := p.check(); err != nil {
		return Packet{}, err
	}
	return p, nil
}

// EncodeVnetHdr checks p and writes its virtio-net header into
// b[:VnetHdrLen]. It fails, writing nothing, when the header would not
// describe the packet (the same checks as DecodePacket) or b is too short.
func (p *Packet) EncodeVnetHdr(b []byte) error {
	if len(b) < VnetHdrLen {
		return fmt.Errorf("%w: header buffer of %d bytes, want %d", ErrShortPacket, len(b), VnetHdrLen)
	}
	if p.GSOSize == 0 && p.ECN {
		return fmt.Errorf("%w: ECN bit without GSO", ErrBadGSO)
	}
	if err := p.check(); err != nil {
		return err
	}
	var flags, gsoType byte
	if p.NeedsCsum {
		flags |= vnetFlagNeedsCsum
	}
	if p.DataValid {
		flags |= vnetFlagDataValid
	}
	if p.GSOSize != 0 {
		gsoType = vnetGSOTCPv4
		if p.ECN {
			gsoType |= vnetGSOECN
		}
	}
	b[0], b[1] = flags, gsoType
	binary.LittleEndian.PutUint16(b[2:], p.HdrLen)
	binary.LittleEndian.PutUint16(b[4:], p.GSOSize)
	binary.LittleEndian.PutUint16(b[6:], p.CsumStart)
	binary.LittleEndian.PutUint16(b[8:], p.CsumOffset)
	return nil
}

// check validates the fields that both directions share against the packet's
// length. Decode and encode use the same rules so that whatever decodes
// re-encodes to the same bytes.
func (p *Packet) check() error {
	n := p.Len()
	if n > MaxPacketLen {
		return fmt.Errorf("%w: %d bytes, at most %d", ErrTooBig, n, MaxPacketLen)
	}
	if p.NeedsCsum && p.DataValid {
		return fmt.Errorf("%w: both NEEDS_CSUM and DATA_VALID", ErrBadVnetHdr)
	}
	if p.NeedsCsum {
		// The 2-byte checksum field must lie inside the packet.
		if end := int(p.CsumStart) + int(p.CsumOffset) + 2; end > n {
			return fmt.Errorf("%w: checksum field at %d+%d beyond the %d-byte packet", ErrBadVnetHdr, p.CsumStart, p.CsumOffset, n)
		}
	} else if p.CsumStart != 0 || p.CsumOffset != 0 {
		return fmt.Errorf("%w: csum_start %d, csum_offset %d without NEEDS_CSUM", ErrBadVnetHdr, p.CsumStart, p.CsumOffset)
	}
	if int(p.HdrLen) > n {
		return fmt.Errorf("%w: hdr_len %d beyond the %d-byte packet", ErrBadVnetHdr, p.HdrLen, n)
	}
	if p.GSOSize != 0 {
		// A TCP super-packet is CHECKSUM_PARTIAL in the kernel: each
		// segment's checksum is finished when it is cut (virtio 1.2
		// §5.1.6.2: a driver sending GSO MUST set NEEDS_CSUM).
		switch {
		case p.GSOSize == gsoByFrags:
			return fmt.Errorf("%w: gso_size %#x is reserved (GSO_BY_FRAGS)", ErrBadGSO, p.GSOSize)
		case !p.NeedsCsum:
			return fmt.Errorf("%w: gso_size %d without NEEDS_CSUM", ErrBadGSO, p.GSOSize)
		case p.CsumOffset != tcpCsumOffset:
			return fmt.Errorf("%w: csum_offset %d, TCP's checksum is at %d", ErrBadGSO, p.CsumOffset, tcpCsumOffset)
		}
	}
	return nil
}
