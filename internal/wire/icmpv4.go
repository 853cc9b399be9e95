package wire

import "encoding/binary"

// ICMPv4HeaderLen is the length of the fixed part of every ICMPv4 message:
// type, code, checksum and 4 type-specific bytes.
const ICMPv4HeaderLen = 8

// ICMPv4 message types (RFC 792).
const (
	ICMPv4EchoReply        uint8 = 0
	ICMPv4DestUnreachable  uint8 = 3
	ICMPv4SourceQuench     uint8 = 4 // deprecated by RFC 6633
	ICMPv4Redirect         uint8 = 5
	ICMPv4Echo             uint8 = 8
	ICMPv4TimeExceeded     uint8 = 11
	ICMPv4ParameterProblem uint8 = 12
)

// Destination-unreachable codes: 0–5 from RFC 792, 6–12 from RFC 1122
// §3.2.2.1, 13–15 from RFC 1812 §5.2.7.1.
const (
	ICMPv4NetUnreachable        uint8 = 0
	ICMPv4HostUnreachable       uint8 = 1
	ICMPv4ProtocolUnreachable   uint8 = 2
	ICMPv4PortUnreachable       uint8 = 3
	ICMPv4FragmentationNeeded   uint8 = 4 // and DF set; carries the next-hop MTU (RFC 1191 §4)
	ICMPv4SourceRouteFailed     uint8 = 5
	ICMPv4NetUnknown            uint8 = 6
	ICMPv4HostUnknown           uint8 = 7
	ICMPv4SourceHostIsolated    uint8 = 8
	ICMPv4NetProhibited         uint8 = 9
	ICMPv4HostProhibited        uint8 = 10
	ICMPv4NetUnreachableForTOS  uint8 = 11
	ICMPv4HostUnreachableForTOS uint8 = 12
	ICMPv4AdminProhibited       uint8 = 13
	ICMPv4HostPrecedenceViol    uint8 = 14
	ICMPv4PrecedenceCutoff      uint8 = 15
)

// ICMPv4Message is a view over an ICMPv4 message checked by
// NewICMPv4Message: at least the 8-byte header is present.
type ICMPv4Message []byte

// NewICMPv4Message checks that b holds an ICMPv4 header. The checksum is
// not verified by the view (see VerifyChecksum).
func NewICMPv4Message(b []byte) (ICMPv4Message, error) {
	if len(b) < ICMPv4HeaderLen {
		return nil, ErrTruncated
	}
	return ICMPv4Message(b), nil
}

// Type returns the message type.
func (m ICMPv4Message) Type() uint8 { return m[0] }

// Code returns the message code.
func (m ICMPv4Message) Code() uint8 { return m[1] }

// Checksum returns the checksum field.
func (m ICMPv4Message) Checksum() uint16 { return binary.BigEndian.Uint16(m[2:4]) }

// Rest returns the 4 type-specific header bytes as a big-endian word.
func (m ICMPv4Message) Rest() uint32 { return binary.BigEndian.Uint32(m[4:8]) }

// Payload returns the bytes after the 8-byte header: echo data, or for an
// error message the quoted original datagram (see QuotedIPv4).
func (m ICMPv4Message) Payload() []byte { return m[ICMPv4HeaderLen:] }

// VerifyChecksum checks the checksum over the whole message (RFC 792).
func (m ICMPv4Message) VerifyChecksum() error {
	if Sum(m) != 0xffff {
		return ErrBadChecksum
	}
	return nil
}

// ICMPv4Header is the parsed form of an ICMPv4 header. The 4 bytes after
// the checksum depend on the type and are kept raw in Rest, so every
// message round-trips; the methods below read them for the types ultcp
// handles.
type ICMPv4Header struct {
	Type, Code uint8
	Checksum   uint16
	Rest       uint32
}

// ICMPv4EchoHeader returns the header of an echo request (reply false) or
// echo reply (RFC 792) with the given identifier and sequence number.
func ICMPv4EchoHeader(reply bool, id, seq uint16) ICMPv4Header {
	t := ICMPv4Echo
	if reply {
		t = ICMPv4EchoReply
	}
	return ICMPv4Header{Type: t, Rest: uint32(id)<<16 | uint32(seq)}
}

// ICMPv4UnreachableHeader returns the header of a destination-unreachable
// message. mtu is the next-hop MTU, meaningful only with code
// ICMPv4FragmentationNeeded (RFC 1191 §4); pass 0 otherwise.
func ICMPv4UnreachableHeader(code uint8, mtu uint16) ICMPv4Header {
	return ICMPv4Header{Type: ICMPv4DestUnreachable, Code: code, Rest: uint32(mtu)}
}

// EchoID returns the identifier of an echo request or reply.
func (h ICMPv4Header) EchoID() uint16 { return uint16(h.Rest >> 16) }

// EchoSeq returns the sequence number of an echo request or reply.
func (h ICMPv4Header) EchoSeq() uint16 { return uint16(h.Rest) }

// NextHopMTU returns the next-hop MTU of a fragmentation-needed message
// (RFC 1191 §4: the low 16 bits of the formerly unused field). It is 0
// from routers that predate RFC 1191, and for any other message.
func (h ICMPv4Header) NextHopMTU() uint16 {
	if h.Type != ICMPv4DestUnreachable || h.Code != ICMPv4FragmentationNeeded {
		return 0
	}
	return uint16(h.Rest)
}

// IsError reports whether the message is an ICMP error, which quotes the
// datagram that caused it (RFC 1122 §3.2.2).
func (h ICMPv4Header) IsError() bool {
	switch h.Type {
	case ICMPv4DestUnreachable, ICMPv4SourceQuench, ICMPv4Redirect,
		ICMPv4TimeExceeded, ICMPv4ParameterProblem:
		return true
	}
	return false
}

// ParseICMPv4 parses an ICMPv4 message and verifies its checksum, which
// needs no pseudo-header. The payload aliases b.
func ParseICMPv4(b []byte) (ICMPv4Header, []byte, error) {
	m, err := NewICMPv4Message(b)
	if err != nil {
		return ICMPv4Header{}, nil, err
	}
	if err := m.VerifyChecksum(); err != nil {
		return ICMPv4Header{}, nil, err
	}
	return ICMPv4Header{Type: m.Type(), Code: m.Code(), Checksum: m.Checksum(), Rest: m.Rest()}, m.Payload(), nil
}

// EncodedLen returns the length Encode writes: always ICMPv4HeaderLen.
func (h *ICMPv4Header) EncodedLen() int { return ICMPv4HeaderLen }

// Encode writes the header into b with the checksum field as h.Checksum;
// fill it with SetICMPv4Checksum once the payload is in place.
func (h *ICMPv4Header) Encode(b []byte) (int, error) {
	if len(b) < ICMPv4HeaderLen {
		return 0, ErrBufferTooSmall
	}
	b[0], b[1] = h.Type, h.Code
	binary.BigEndian.PutUint16(b[2:4], h.Checksum)
	binary.BigEndian.PutUint32(b[4:8], h.Rest)
	return ICMPv4HeaderLen, nil
}

// ICMPv4Checksum returns the checksum of hdr followed by payload, ignoring
// hdr's checksum field. A header shorter than 8 bytes yields 0.
func ICMPv4Checksum(hdr, payload []byte) uint16 {
	if len(hdr) < ICMPv4HeaderLen {
		return 0
	}
	return ^sumSkipping(hdr, 2, payload)
}

// SetICMPv4Checksum computes the checksum of hdr and payload and stores it
// in hdr's checksum field.
func SetICMPv4Checksum(hdr, payload []byte) error {
	if len(hdr) < ICMPv4HeaderLen {
		return ErrBufferTooSmall
	}
	binary.BigEndian.PutUint16(hdr[2:4], ICMPv4Checksum(hdr, payload))
	return nil
}

// QuotedIPv4 parses the datagram quoted in an ICMP error message: the
// original IP header and at least its first 8 data bytes (RFC 792; RFC
// 1812 §4.3.2.3 allows more), enough for the ports and, for TCP, the
// sequence number. It returns the quoted header and the quoted data after
// it.
//
// The quote is a truncated copy, so the total length describes the
// original datagram and is not checked against the quote, fragments are
// accepted (the first fragment carries the ports), and the quoted header
// checksum is not verified: the ICMP checksum already covers these bytes.
// Structure is still checked: version 4, IHL at least 5 and inside the
// quote, total length not below IHL.
func QuotedIPv4(payload []byte) (IPv4Header, []byte, error) {
	b := payload
	if len(b) < IPv4HeaderLen {
		return IPv4Header{}, nil, ErrTruncated
	}
	if b[0]>>4 != 4 {
		return IPv4Header{}, nil, ErrBadVersion
	}
	hl := int(b[0]&0x0f) * 4
	if hl < IPv4HeaderLen {
		return IPv4Header{}, nil, ErrBadHeaderLen
	}
	if len(b) < hl+8 {
		return IPv4Header{}, nil, ErrTruncated
	}
	if int(binary.BigEndian.Uint16(b[2:4])) < hl {
		return IPv4Header{}, nil, ErrBadTotalLen
	}
	// The structure is now the one NewIPv4Packet checks, except that the
	// total length may exceed the quote; the accessors read only the
	// fixed header.
	var h IPv4Header
	IPv4Packet(b).fill(&h)
	return h, b[hl:], nil
}
