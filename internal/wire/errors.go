package wire

import "errors"

// Errors returned by the parsers and encoders. They are sentinels returned
// as they are (never wrapped) so that the parse path allocates nothing and
// callers can count drops by reason with a plain comparison or errors.Is.
var (
	// ErrTruncated: the bytes end before a fixed-size header or a length
	// the header itself declares (IHL, data offset) is complete.
	ErrTruncated = errors.New("wire: truncated header")
	// ErrBadVersion: the IP version nibble is not 4.
	ErrBadVersion = errors.New("wire: IP version is not 4")
	// ErrBadHeaderLen: the IPv4 IHL is below 5 or larger than the total length.
	ErrBadHeaderLen = errors.New("wire: bad IPv4 header length")
	// ErrBadTotalLen: the IPv4 total length is below the header length or
	// larger than the packet that carried it.
	ErrBadTotalLen = errors.New("wire: IPv4 total length disagrees with the packet")
	// ErrFragment: the IPv4 packet is a fragment (MF set or offset not 0).
	// Reassembly is not supported yet, so fragments are rejected cleanly.
	ErrFragment = errors.New("wire: IPv4 fragment (reassembly not supported)")
	// ErrBadChecksum: a header or segment checksum does not verify.
	ErrBadChecksum = errors.New("wire: bad checksum")
	// ErrBadDataOffset: the TCP data offset is below 5 words or beyond the segment.
	ErrBadDataOffset = errors.New("wire: bad TCP data offset")
	// ErrBadOption: a TCP option has length 0 or 1, runs past the option
	// area, or has the wrong length for its kind.
	ErrBadOption = errors.New("wire: bad TCP option")
	// ErrOptionsTooLong: the options to encode need more than 40 bytes.
	ErrOptionsTooLong = errors.New("wire: TCP options exceed 40 bytes")
	// ErrBadLength: a UDP length field is below 8 or beyond the datagram.
	ErrBadLength = errors.New("wire: bad UDP length")
	// ErrTooLong: a header's length field cannot express the payload length.
	ErrTooLong = errors.New("wire: payload too long for the length field")
	// ErrUnsupported: a well-formed header this package does not handle
	// (an 802.3 length in place of an EtherType, ARP for a hardware or
	// protocol other than Ethernet and IPv4).
	ErrUnsupported = errors.New("wire: unsupported format")
	// ErrBufferTooSmall: the buffer given to an encoder is too short.
	ErrBufferTooSmall = errors.New("wire: buffer too small")
)
