package wire

import (
	"encoding/binary"
	"math/bits"
)

// The Internet checksum (RFC 1071) is the 16-bit one's complement of the
// one's complement sum of the data taken as big-endian 16-bit words.
//
// Functions here deal in two kinds of value:
//
//   - a "sum": the folded one's complement sum of some bytes, not yet
//     complemented (what RFC 1071 §1 calls the sum). Sums of separate pieces
//     combine with Combine, so a checksum can be built while copying.
//   - a "checksum": the complement of a sum, the value stored in a header.

// Sum returns the one's complement sum of b, folded to 16 bits and not
// complemented, as if b started at an even offset of the checksummed data.
//
// It is on the data path, so it reads 8 bytes at a time and accumulates in
// 64 bits with end-around carry. RFC 1071 §2(B) shows the sum is byte-order
// independent: adding little-endian words and swapping the folded result
// gives the big-endian sum, so no per-word byte swap is needed.
func Sum(b []byte) uint16 {
	return bits.ReverseBytes16(fold64(sumLE(b)))
}

// Checksum returns the Internet checksum of b: the complement of Sum(b).
// Verifying data that contains its own checksum yields 0.
func Checksum(b []byte) uint16 { return ^Sum(b) }

// sumLE adds b as little-endian 64-bit words with end-around carry.
func sumLE(b []byte) uint64 {
	var acc, c uint64
	for len(b) >= 32 {
		acc, c = bits.Add64(acc, binary.LittleEndian.Uint64(b[0:8]), c)
		acc, c = bits.Add64(acc, binary.LittleEndian.Uint64(b[8:16]), c)
		acc, c = bits.Add64(acc, binary.LittleEndian.Uint64(b[16:24]), c)
		acc, c = bits.Add64(acc, binary.LittleEndian.Uint64(b[24:32]), c)
		b = b[32:]
	}
	for len(b) >= 8 {
		acc, c = bits.Add64(acc, binary.LittleEndian.Uint64(b), c)
		b = b[8:]
	}
	if len(b) >= 4 {
		acc, c = bits.Add64(acc, uint64(binary.LittleEndian.Uint32(b)), c)
		b = b[4:]
	}
	if len(b) >= 2 {
		acc, c = bits.Add64(acc, uint64(binary.LittleEndian.Uint16(b)), c)
		b = b[2:]
	}
	if len(b) == 1 {
		// An odd final byte is the high byte of a big-endian word padded
		// with zero (RFC 1071 §4.1), which is the low byte in our
		// little-endian view.
		acc, c = bits.Add64(acc, uint64(b[0]), c)
	}
	// End-around carry. If acc was all ones the add carries again, and
	// the second add cannot overflow.
	acc, c = bits.Add64(acc, c, 0)
	return acc + c
}

// fold64 folds a 64-bit one's complement accumulator to 16 bits.
func fold64(s uint64) uint16 {
	s = (s >> 32) + (s & 0xffffffff)
	s = (s >> 32) + (s & 0xffffffff)
	return fold32(uint32(s))
}

// fold32 folds a 32-bit one's complement accumulator to 16 bits.
func fold32(s uint32) uint16 {
	s = (s >> 16) + (s & 0xffff)
	s = (s >> 16) + (s & 0xffff)
	return uint16(s)
}

// Combine adds the sum b of a block that starts offset bytes into the
// checksummed data to the sum a of what precedes it. A block at an odd
// offset has its bytes in the other halves of the 16-bit words, so its sum
// is byte-swapped first (RFC 1071 §2(B)). This is what lets a checksum be
// computed piece by piece, for example while copying.
func Combine(a, b uint16, offset int) uint16 {
	if offset&1 != 0 {
		b = bits.ReverseBytes16(b)
	}
	return fold32(uint32(a) + uint32(b))
}

// Update16 returns the checksum of a header whose checksum was sum after
// one aligned 16-bit field changes from old to new, using RFC 1624 eqn. 3:
// HC' = ~(~HC + ~m + m'). Unlike eqn. 2 it never produces the -0 (0xffff)
// that a full recomputation would not.
func Update16(sum, old, new uint16) uint16 {
	return ^fold32(uint32(^sum) + uint32(^old) + uint32(new))
}

// Update32 is Update16 for an aligned 32-bit field (an address, a
// sequence number), treated as two 16-bit words (RFC 1624 §3).
func Update32(sum uint16, old, new uint32) uint16 {
	s := uint32(^sum) +
		uint32(^uint16(old>>16)) + uint32(^uint16(old)) +
		uint32(uint16(new>>16)) + uint32(uint16(new))
	return ^fold32(s)
}

// PseudoHeaderSum returns the sum of the IPv4 pseudo-header that TCP
// (RFC 9293 §3.1) and UDP (RFC 768) include in their checksums: source,
// destination, zero, protocol and the transport length. length is the
// length of the transport header plus payload; IPv4 limits it to 16 bits.
func PseudoHeaderSum(src, dst IPv4Addr, proto uint8, length int) uint16 {
	s := uint32(binary.BigEndian.Uint16(src[0:2])) + uint32(binary.BigEndian.Uint16(src[2:4])) +
		uint32(binary.BigEndian.Uint16(dst[0:2])) + uint32(binary.BigEndian.Uint16(dst[2:4])) +
		uint32(proto) + uint32(uint16(length))
	return fold32(s)
}

// sumSkipping returns the sum of hdr with the 16-bit field at off (even)
// taken as zero, followed by payload. It lets checksums be computed over a
// header whatever its checksum field currently holds, and over a payload
// that lives in a different slice.
func sumSkipping(hdr []byte, off int, payload []byte) uint16 {
	s := Combine(Sum(hdr[:off]), Sum(hdr[off+2:]), off+2)
	return Combine(s, Sum(payload), len(hdr))
}
