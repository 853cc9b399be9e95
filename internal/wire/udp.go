package wire

import "encoding/binary"

// UDPHeaderLen is the length of a UDP header.
const UDPHeaderLen = 8

// UDPDatagram is a view over a UDP datagram checked by NewUDPDatagram: the
// length field is at least 8 and within the slice, and the view is trimmed
// to it.
type UDPDatagram []byte

// NewUDPDatagram checks a UDP header (RFC 768) and returns the datagram
// trimmed to its length field.
func NewUDPDatagram(b []byte) (UDPDatagram, error) {
	if len(b) < UDPHeaderLen {
		return nil, ErrTruncated
	}
	n := int(binary.BigEndian.Uint16(b[4:6]))
	if n < UDPHeaderLen || n > len(b) {
		return nil, ErrBadLength
	}
	return UDPDatagram(b[:n]), nil
}

// SrcPort returns the source port.
func (d UDPDatagram) SrcPort() uint16 { return binary.BigEndian.Uint16(d[0:2]) }

// DstPort returns the destination port.
func (d UDPDatagram) DstPort() uint16 { return binary.BigEndian.Uint16(d[2:4]) }

// Length returns the length field (header plus payload).
func (d UDPDatagram) Length() int { return int(binary.BigEndian.Uint16(d[4:6])) }

// Checksum returns the checksum field; 0 means the sender computed none.
func (d UDPDatagram) Checksum() uint16 { return binary.BigEndian.Uint16(d[6:8]) }

// Payload returns the bytes after the header, up to the length field.
func (d UDPDatagram) Payload() []byte { return d[UDPHeaderLen:] }

// UDPHeader is the parsed form of a UDP header (RFC 768).
type UDPHeader struct {
	SrcPort, DstPort uint16
	Checksum         uint16 // 0: no checksum was computed
	PayloadLen       uint16 // length field minus 8
}

// ParseUDP parses a UDP datagram and returns its header and payload. Bytes
// beyond the length field are dropped; a length field below 8 or beyond
// b is ErrBadLength. The checksum is not verified (see VerifyUDPChecksum).
func ParseUDP(b []byte) (UDPHeader, []byte, error) {
	d, err := NewUDPDatagram(b)
	if err != nil {
		return UDPHeader{}, nil, err
	}
	return UDPHeader{
		SrcPort:    d.SrcPort(),
		DstPort:    d.DstPort(),
		Checksum:   d.Checksum(),
		PayloadLen: uint16(d.Length() - UDPHeaderLen),
	}, d.Payload(), nil
}

// EncodedLen returns the length Encode writes: always UDPHeaderLen.
func (h *UDPHeader) EncodedLen() int { return UDPHeaderLen }

// Encode writes the header into b with the length field set from
// PayloadLen and the checksum field as h.Checksum (see SetUDPChecksum).
func (h *UDPHeader) Encode(b []byte) (int, error) {
	if len(b) < UDPHeaderLen {
		return 0, ErrBufferTooSmall
	}
	if int(h.PayloadLen) > 0xffff-UDPHeaderLen {
		return 0, ErrTooLong
	}
	binary.BigEndian.PutUint16(b[0:2], h.SrcPort)
	binary.BigEndian.PutUint16(b[2:4], h.DstPort)
	binary.BigEndian.PutUint16(b[4:6], UDPHeaderLen+h.PayloadLen)
	binary.BigEndian.PutUint16(b[6:8], h.Checksum)
	return UDPHeaderLen, nil
}

// UDPChecksum returns the UDP checksum of hdr followed by payload over the
// IPv4 pseudo-header, ignoring hdr's checksum field. A computed 0 is
// returned as 0xffff, since 0 on the wire means "no checksum" (RFC 768).
func UDPChecksum(src, dst IPv4Addr, hdr, payload []byte) uint16 {
	if len(hdr) < UDPHeaderLen {
		return 0
	}
	ph := PseudoHeaderSum(src, dst, ProtoUDP, len(hdr)+len(payload))
	c := ^Combine(ph, sumSkipping(hdr, 6, payload), 0)
	if c == 0 {
		c = 0xffff
	}
	return c
}

// SetUDPChecksum computes the checksum of hdr and payload and stores it in
// hdr's checksum field.
func SetUDPChecksum(src, dst IPv4Addr, hdr, payload []byte) error {
	if len(hdr) < UDPHeaderLen {
		return ErrBufferTooSmall
	}
	binary.BigEndian.PutUint16(hdr[6:8], UDPChecksum(src, dst, hdr, payload))
	return nil
}

// VerifyUDPChecksum checks the checksum of a datagram as received (bytes
// beyond its length field are ignored). A zero checksum field means the
// sender computed none (RFC 768) and verifies.
func VerifyUDPChecksum(src, dst IPv4Addr, dgram []byte) error {
	d, err := NewUDPDatagram(dgram)
	if err != nil {
		return err
	}
	if d.Checksum() == 0 {
		return nil
	}
	if Combine(PseudoHeaderSum(src, dst, ProtoUDP, len(d)), Sum(d), 0) != 0xffff {
		return ErrBadChecksum
	}
	return nil
}
