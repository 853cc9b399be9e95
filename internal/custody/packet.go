package custody

import (
	"encoding/binary"
	"errors"

	"github.com/ultcp/ultcp/internal/wire"
)

// A custody record on the fabric is one IPv4 packet: a 20-byte header
// without options, protocol 253, then one message. As for every record
// inside the fabric (link.go), the header checksum is written as zero and
// never verified: the fabric is memory.

// IPHeaderLen is the length of the IPv4 header AppendPacket writes.
const IPHeaderLen = wire.IPv4HeaderLen

// MaxPacketLen is the length of the longest custody record.
const MaxPacketLen = IPHeaderLen + MaxLen

// ttl is the TTL of custody records: they never leave the fabric, but a
// conventional value keeps captures unsurprising.
const ttl = 64

// Errors of the packet layer, besides the message errors and the wire
// package's IPv4 structure errors (wire.ErrTruncated, wire.ErrBadVersion,
// wire.ErrBadHeaderLen, wire.ErrBadTotalLen).
var (
	// ErrNotCustody: an IPv4 packet of another protocol.
	ErrNotCustody = errors.New("custody: not an IPv4 protocol 253 packet")
	// ErrBadLength: the IPv4 total length is not the record's length
	// (records on the fabric are exact; nothing pads them).
	ErrBadLength = errors.New("custody: IPv4 total length disagrees with the record")
	// ErrFragment: an IPv4 fragment, which the fabric never carries.
	ErrFragment = errors.New("custody: IPv4 fragment")
)

// AppendPacket appends the IPv4 packet carrying m from src to dst to b.
// It refuses (returning b unchanged) the messages Append refuses.
func AppendPacket(b []byte, src, dst wire.IPv4Addr, m Message) ([]byte, error) {
	n := m.Len()
	if n == 0 {
		return b, ErrUnknownType
	}
	if err := m.check(); err != nil {
		return b, err
	}
	b = append(b, 0x45, 0) // version 4, header length 5 words; TOS 0
	b = binary.BigEndian.AppendUint16(b, uint16(IPHeaderLen+n))
	b = binary.BigEndian.AppendUint32(b, 0x4000) // ID 0, DF (RFC 6864: ID unused on atomic datagrams)
	b = append(b, ttl, Proto, 0, 0)              // checksum zero inside the fabric
	b = append(b, src[:]...)
	b = append(b, dst[:]...)
	return m.Append(b)
}

// IsPacket reports whether the record b looks like a custody record: an
// IPv4 header of protocol 253. A receiver uses it to route records before
// parsing them fully with ParsePacket.
func IsPacket(b []byte) bool {
	return len(b) >= IPHeaderLen && b[0]>>4 == 4 && b[9] == Proto
}

// ParsePacket parses a custody record: the IPv4 header (structure,
// protocol, length, no fragment; the checksum is not checked) and the
// message it carries. It returns the addresses for the caller to check
// against the flow the record arrived on.
func ParsePacket(b []byte) (src, dst wire.IPv4Addr, m Message, err error) {
	p, err := wire.NewIPv4Packet(b)
	if err != nil {
		return src, dst, m, err
	}
	if p.Protocol() != Proto {
		return src, dst, m, ErrNotCustody
	}
	if len(p) != len(b) {
		return src, dst, m, ErrBadLength
	}
	if p.IsFragment() {
		return src, dst, m, ErrFragment
	}
	m, err = Parse(p.Payload())
	if err != nil {
		return src, dst, m, err
	}
	return p.Src(), p.Dst(), m, nil
}
