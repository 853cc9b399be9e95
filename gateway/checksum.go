package gateway

import (
	"encoding/binary"

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
// GSO writes must use offload (virtio 1.2 §5.1.6.2). For single segments
// offload is the default too, by measurement (BenchmarkOutbound, the
// gateway's work per segment up to the device write, 2 vCPU VM, 16:20 UTC):
// 1448-byte payload, offload 64 ns, soft 167 ns (copySum alone 105 ns:
// memmove then sum per 2 KiB block; copy+wire.Sum 113 ns; a word loop doing
// both 318 ns); 64-byte payload, both 73-96 ns (noise). Offload also saves
// the kernel's copy from our buffer being a second copy: the writev goes
// straight from the ring. Config.SoftChecksum selects soft, for a device
// that cannot take partial checksums.

// copySum copies src into dst (len(dst) >= len(src)) and returns the one's
// complement sum of src (RFC 1071), folded and not complemented, as
// wire.Sum would. It works in blocks small enough to stay in the L1 cache:
// each block is copied (memmove, vectorised) and then summed from the
// copy, so the source is read from memory once. A word-by-word loop that
// copies and adds in the same instruction stream was measured slower in Go
// (no vector adds: 318 ns against 113 ns for 1448 bytes).
func copySum(dst, src []byte) uint16 {
	const block = 2048 // even, so every block's sum combines without a swap
	var s uint16
	for off := 0; off < len(src); off += block {
		end := min(off+block, len(src))
		copy(dst[off:end], src[off:end])
		s = wire.Combine(s, wire.Sum(dst[off:end]), 0)
	}
	return s
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
