package gateway

import (
	"encoding/binary"
	"math/bits"

	"github.com/ultcp/ultcp/internal/wire"
)

// Checksums of packets leaving the fabric. Records from nodes carry zero
// checksums (the fabric is memory); the device side needs real ones. Two
// ways, both implemented and measured (BenchmarkOutbound*, 2 vCPU VM):
//
//   - soft: copy headers and payload into one buffer and compute the TCP
//     checksum in the same pass (copySum), then write the buffer;
//   - offload: write the headers and a view of the ring (writev, no copy
//     here), with the checksum field holding the pseudo-header sum and
//     virtio-net NEEDS_CSUM (csum_start = the TCP header, csum_offset 16):
//     the kernel finishes it if and where it must (a veth peer in the same
//     machine takes CHECKSUM_PARTIAL as verified, so nobody computes it).
//
// GSO writes must use offload (virtio 1.2 §5.1.6.2). Offload is the
// default for single segments too; Config.SoftChecksum selects soft.

// copySum copies src into dst (len(dst) >= len(src)) and returns the one's
// complement sum of src (RFC 1071), folded and not complemented, as
// wire.Sum would: one pass over the bytes instead of two.
func copySum(dst, src []byte) uint16 {
	dst = dst[:len(src)]
	var acc, c uint64
	for len(src) >= 32 {
		a := binary.LittleEndian.Uint64(src[0:])
		b := binary.LittleEndian.Uint64(src[8:])
		d := binary.LittleEndian.Uint64(src[16:])
		e := binary.LittleEndian.Uint64(src[24:])
		binary.LittleEndian.PutUint64(dst[0:], a)
		binary.LittleEndian.PutUint64(dst[8:], b)
		binary.LittleEndian.PutUint64(dst[16:], d)
		binary.LittleEndian.PutUint64(dst[24:], e)
		acc, c = bits.Add64(acc, a, c)
		acc, c = bits.Add64(acc, b, c)
		acc, c = bits.Add64(acc, d, c)
		acc, c = bits.Add64(acc, e, c)
		src, dst = src[32:], dst[32:]
	}
	for len(src) >= 8 {
		a := binary.LittleEndian.Uint64(src)
		binary.LittleEndian.PutUint64(dst, a)
		acc, c = bits.Add64(acc, a, c)
		src, dst = src[8:], dst[8:]
	}
	// The tail, fewer than 8 bytes: copy it and sum it as wire.Sum does
	// (little-endian words; an odd last byte is the high byte of a
	// big-endian word padded with zero, RFC 1071 §4.1).
	copy(dst, src)
	var t uint64
	for i := len(src) - 1; i >= 0; i-- {
		t = t<<8 | uint64(src[i])
	}
	acc, c = bits.Add64(acc, t, c)
	acc, c = bits.Add64(acc, c, 0)
	acc += c
	// Fold and swap to big-endian as wire.Sum does.
	s := (acc >> 32) + (acc & 0xffffffff)
	s = (s >> 32) + (s & 0xffffffff)
	s32 := uint32(s)
	s32 = (s32 >> 16) + (s32 & 0xffff)
	s32 = (s32 >> 16) + (s32 & 0xffff)
	return bits.ReverseBytes16(uint16(s32))
}

// ipv4HeaderChecksum fills the header checksum of the IPv4 header h
// (RFC 791 §3.1).
func ipv4HeaderChecksum(h []byte) {
	h[10], h[11] = 0, 0
	binary.BigEndian.PutUint16(h[10:], wire.Checksum(h))
}

// tcpPseudoSum is the sum of the IPv4 pseudo-header of a TCP segment of
// tcpLen bytes (header and payload) in the IPv4 header ip (RFC 9293
// §3.1). tcpLen may exceed 65535 only for a GSO packet, which never does.
func tcpPseudoSum(ip []byte, tcpLen int) uint16 {
	return wire.PseudoHeaderSum(wire.IPv4Addr(ip[12:16]), wire.IPv4Addr(ip[16:20]), 6, tcpLen)
}

// tcpChecksumFinish returns the TCP checksum from the pseudo-header sum,
// the TCP header (checksum field zero) and the payload's sum; the header
// length is a multiple of 4, so the payload starts at an even offset.
func tcpChecksumFinish(pseudo uint16, th []byte, payloadSum uint16) uint16 {
	s := wire.Combine(pseudo, wire.Sum(th), 0)
	s = wire.Combine(s, payloadSum, 0)
	return ^s
}
