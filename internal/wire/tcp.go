package wire

import "encoding/binary"

// TCPHeaderLen is the length of a TCP header without options; the data
// offset can add at most TCPMaxOptionsLen bytes of options to it.
const (
	TCPHeaderLen     = 20
	TCPMaxOptionsLen = 40
)

// TCP option kinds (IANA "TCP Option Kind Numbers").
const (
	TCPOptEOL           = 0 // RFC 9293 §3.2
	TCPOptNOP           = 1 // RFC 9293 §3.2
	TCPOptMSS           = 2 // RFC 9293 §3.2, length 4
	TCPOptWScale        = 3 // RFC 7323 §2.2, length 3
	TCPOptSACKPermitted = 4 // RFC 2018 §2, length 2
	TCPOptSACK          = 5 // RFC 2018 §3, length 2+8n
	TCPOptTimestamp     = 8 // RFC 7323 §3.2, length 10
)

// TCPSegment is a view over a TCP segment whose data offset has been
// checked by NewTCPSegment: at least 5 words and inside the slice, so the
// accessors index without further checks.
type TCPSegment []byte

// NewTCPSegment checks that b holds a complete TCP header whose data
// offset (RFC 9293 §3.1) is at least 5 words and ends inside b.
func NewTCPSegment(b []byte) (TCPSegment, error) {
	if len(b) < TCPHeaderLen {
		return nil, ErrTruncated
	}
	off := int(b[12]>>4) * 4
	if off < TCPHeaderLen || off > len(b) {
		return nil, ErrBadDataOffset
	}
	return TCPSegment(b), nil
}

// SrcPort returns the source port.
func (s TCPSegment) SrcPort() uint16 { return binary.BigEndian.Uint16(s[0:2]) }

// DstPort returns the destination port.
func (s TCPSegment) DstPort() uint16 { return binary.BigEndian.Uint16(s[2:4]) }

// Seq returns the sequence number.
func (s TCPSegment) Seq() uint32 { return binary.BigEndian.Uint32(s[4:8]) }

// Ack returns the acknowledgment number.
func (s TCPSegment) Ack() uint32 { return binary.BigEndian.Uint32(s[8:12]) }

// HeaderLen returns the data offset in bytes.
func (s TCPSegment) HeaderLen() int { return int(s[12]>>4) * 4 }

// Flags returns the control bits.
func (s TCPSegment) Flags() TCPFlags { return TCPFlags(s[13]) }

// Window returns the window field, unscaled.
func (s TCPSegment) Window() uint16 { return binary.BigEndian.Uint16(s[14:16]) }

// Checksum returns the checksum field.
func (s TCPSegment) Checksum() uint16 { return binary.BigEndian.Uint16(s[16:18]) }

// Urgent returns the urgent pointer field.
func (s TCPSegment) Urgent() uint16 { return binary.BigEndian.Uint16(s[18:20]) }

// Options returns the raw option bytes.
func (s TCPSegment) Options() []byte { return s[TCPHeaderLen:s.HeaderLen()] }

// Payload returns the bytes after the header.
func (s TCPSegment) Payload() []byte { return s[s.HeaderLen():] }

// ParseTCP parses a TCP segment: the fixed header, the data offset and
// every option. It does not verify the checksum, which needs the IP
// addresses (see VerifyTCPChecksum). The payload aliases b.
func ParseTCP(b []byte) (h TCPHeader, payload []byte, err error) {
	payload, err = h.Parse(b)
	return h, payload, err
}

// Parse is ParseTCP writing into h, which avoids copying the 80-byte
// header on the receive path. On error h is left zero.
func (h *TCPHeader) Parse(b []byte) ([]byte, error) {
	s, err := NewTCPSegment(b)
	if err != nil {
		*h = TCPHeader{}
		return nil, err
	}
	_ = s[19] // one bounds check for the fixed fields
	h.SrcPort = binary.BigEndian.Uint16(s[0:2])
	h.DstPort = binary.BigEndian.Uint16(s[2:4])
	h.Seq = binary.BigEndian.Uint32(s[4:8])
	h.Ack = binary.BigEndian.Uint32(s[8:12])
	h.Flags = TCPFlags(s[13])
	h.Window = binary.BigEndian.Uint16(s[14:16])
	h.Checksum = binary.BigEndian.Uint16(s[16:18])
	h.Urgent = binary.BigEndian.Uint16(s[18:20])
	if err := h.Options.parse(s.Options()); err != nil {
		*h = TCPHeader{}
		return nil, err
	}
	return s.Payload(), nil
}

// parse fills o from raw option bytes (RFC 9293 §3.1 "Options").
//
// RFC 9293 §3.2 requires a TCP to be prepared for an illegal option
// length such as zero (MUST-7); every length is checked before it is used:
// a length of 0 or 1, or one that runs past the option area, is
// ErrBadOption, as is a known kind with the wrong length. Unknown kinds
// are skipped by their length (RFC 9293 §3.2, MUST-6). A later copy of an
// option replaces an earlier one.
func (o *TCPOptions) parse(b []byte) error {
	*o = TCPOptions{}
	for i := 0; i < len(b); {
		kind := b[i]
		switch kind {
		case TCPOptEOL:
			return nil
		case TCPOptNOP:
			i++
			continue
		}
		if i+1 >= len(b) {
			return ErrBadOption
		}
		n := int(b[i+1])
		if n < 2 || i+n > len(b) {
			return ErrBadOption
		}
		v := b[i+2 : i+n]
		switch kind {
		case TCPOptMSS:
			if n != 4 {
				return ErrBadOption
			}
			o.MSS = binary.BigEndian.Uint16(v)
		case TCPOptWScale:
			if n != 3 {
				return ErrBadOption
			}
			o.HasWScale = true
			o.WScale = v[0]
		case TCPOptSACKPermitted:
			if n != 2 {
				return ErrBadOption
			}
			o.SACKPermitted = true
		case TCPOptSACK:
			// RFC 2018 §3: 2 + 8n bytes for n blocks; the 40-byte option
			// area bounds n to 4.
			if (n-2)%8 != 0 || n == 2 || (n-2)/8 > MaxSACKBlocks {
				return ErrBadOption
			}
			o.NumSACK = uint8((n - 2) / 8)
			for j := range int(o.NumSACK) {
				o.SACK[j] = SACKBlock{
					Left:  binary.BigEndian.Uint32(v[8*j:]),
					Right: binary.BigEndian.Uint32(v[8*j+4:]),
				}
			}
			for j := int(o.NumSACK); j < MaxSACKBlocks; j++ {
				o.SACK[j] = SACKBlock{}
			}
		case TCPOptTimestamp:
			if n != 10 {
				return ErrBadOption
			}
			o.HasTimestamp = true
			o.TSVal = binary.BigEndian.Uint32(v[0:4])
			o.TSEcr = binary.BigEndian.Uint32(v[4:8])
		}
		i += n
	}
	return nil
}

// EncodedLen returns the number of option bytes encode writes, a multiple
// of 4 (it may exceed TCPMaxOptionsLen, in which case encode fails).
func (o *TCPOptions) EncodedLen() int {
	if n := o.alignedLen(); n <= TCPMaxOptionsLen {
		return n
	}
	return (o.packedLen() + 3) &^ 3
}

// alignedLen is the length of the aligned layout (see encode).
func (o *TCPOptions) alignedLen() int {
	n := 0
	if o.MSS != 0 {
		n += 4
	}
	if o.HasTimestamp {
		n += 12 // SACK-permitted rides in the timestamp's padding
	} else if o.SACKPermitted {
		n += 4
	}
	if o.HasWScale {
		n += 4
	}
	if o.NumSACK > 0 {
		n += 4 + 8*int(o.NumSACK)
	}
	return n
}

// packedLen is the length of the options with no padding between them.
func (o *TCPOptions) packedLen() int {
	n := 0
	if o.MSS != 0 {
		n += 4
	}
	if o.SACKPermitted {
		n += 2
	}
	if o.HasTimestamp {
		n += 10
	}
	if o.HasWScale {
		n += 3
	}
	if o.NumSACK > 0 {
		n += 2 + 8*int(o.NumSACK)
	}
	return n
}

// encode writes the options into b, which must hold EncodedLen bytes.
//
// The usual layout is the one Linux and most stacks send, every option
// aligned so a receiver can read 32-bit fields directly:
//
//	MSS                  kind 2, len 4, value
//	SACK-permitted + TS  4,2, 8,10, TSval, TSecr     (when both)
//	TS                   NOP, NOP, 8,10, TSval, TSecr
//	SACK-permitted       NOP, NOP, 4,2
//	window scale         NOP, 3,3, shift
//	SACK                 NOP, NOP, 5, 2+8n, blocks
//
// When that does not fit in 40 bytes but the options do (a peer may pack
// window scale, timestamps and three SACK blocks into 39 bytes), they are
// written back to back and the area is ended with EOL and zero padding
// (RFC 9293 §3.2), so anything parsed can be encoded again.
func (o *TCPOptions) encode(b []byte) {
	if o.alignedLen() > TCPMaxOptionsLen {
		o.encodePacked(b)
		return
	}
	i := 0
	if o.MSS != 0 {
		b[i], b[i+1] = TCPOptMSS, 4
		binary.BigEndian.PutUint16(b[i+2:], o.MSS)
		i += 4
	}
	switch {
	case o.HasTimestamp:
		if o.SACKPermitted {
			b[i], b[i+1] = TCPOptSACKPermitted, 2
		} else {
			b[i], b[i+1] = TCPOptNOP, TCPOptNOP
		}
		b[i+2], b[i+3] = TCPOptTimestamp, 10
		binary.BigEndian.PutUint32(b[i+4:], o.TSVal)
		binary.BigEndian.PutUint32(b[i+8:], o.TSEcr)
		i += 12
	case o.SACKPermitted:
		b[i], b[i+1], b[i+2], b[i+3] = TCPOptNOP, TCPOptNOP, TCPOptSACKPermitted, 2
		i += 4
	}
	if o.HasWScale {
		b[i], b[i+1], b[i+2], b[i+3] = TCPOptNOP, TCPOptWScale, 3, o.WScale
		i += 4
	}
	if o.NumSACK > 0 {
		b[i], b[i+1] = TCPOptNOP, TCPOptNOP
		o.encodeSACK(b[i+2:])
	}
}

// encodePacked writes the options back to back, then EOL and zeros up to
// the next multiple of 4.
func (o *TCPOptions) encodePacked(b []byte) {
	i := 0
	if o.MSS != 0 {
		b[i], b[i+1] = TCPOptMSS, 4
		binary.BigEndian.PutUint16(b[i+2:], o.MSS)
		i += 4
	}
	if o.SACKPermitted {
		b[i], b[i+1] = TCPOptSACKPermitted, 2
		i += 2
	}
	if o.HasTimestamp {
		b[i], b[i+1] = TCPOptTimestamp, 10
		binary.BigEndian.PutUint32(b[i+2:], o.TSVal)
		binary.BigEndian.PutUint32(b[i+6:], o.TSEcr)
		i += 10
	}
	if o.HasWScale {
		b[i], b[i+1], b[i+2] = TCPOptWScale, 3, o.WScale
		i += 3
	}
	if o.NumSACK > 0 {
		i += o.encodeSACK(b[i:])
	}
	for ; i&3 != 0; i++ {
		b[i] = TCPOptEOL
	}
}

// encodeSACK writes the SACK option (RFC 2018 §3) and returns its length.
func (o *TCPOptions) encodeSACK(b []byte) int {
	b[0], b[1] = TCPOptSACK, 2+8*o.NumSACK
	i := 2
	for _, blk := range o.SACK[:o.NumSACK] {
		binary.BigEndian.PutUint32(b[i:], blk.Left)
		binary.BigEndian.PutUint32(b[i+4:], blk.Right)
		i += 8
	}
	return i
}

// EncodedLen returns the header length Encode writes, options included,
// without encoding anything. It is a multiple of 4; a value above 60
// means the options do not fit and Encode fails with ErrOptionsTooLong.
func (h *TCPHeader) EncodedLen() int { return TCPHeaderLen + h.Options.EncodedLen() }

// Encode writes the header and its options into b and returns the header
// length. The checksum field is written as h.Checksum; to fill it, use
// SetTCPChecksum once the payload is known. Up to 4 SACK blocks fit alone,
// 3 alongside timestamps (check with EncodedLen before choosing how many).
func (h *TCPHeader) Encode(b []byte) (int, error) {
	if h.Options.NumSACK > MaxSACKBlocks {
		return 0, ErrBadOption
	}
	optLen := h.Options.EncodedLen()
	if optLen > TCPMaxOptionsLen {
		return 0, ErrOptionsTooLong
	}
	n := TCPHeaderLen + optLen
	if len(b) < n {
		return 0, ErrBufferTooSmall
	}
	b = b[:n]
	binary.BigEndian.PutUint16(b[0:2], h.SrcPort)
	binary.BigEndian.PutUint16(b[2:4], h.DstPort)
	binary.BigEndian.PutUint32(b[4:8], h.Seq)
	binary.BigEndian.PutUint32(b[8:12], h.Ack)
	b[12] = uint8(n/4) << 4 // reserved bits zero (RFC 9293 §3.1)
	b[13] = uint8(h.Flags)
	binary.BigEndian.PutUint16(b[14:16], h.Window)
	binary.BigEndian.PutUint16(b[16:18], h.Checksum)
	binary.BigEndian.PutUint16(b[18:20], h.Urgent)
	h.Options.encode(b[TCPHeaderLen:])
	return n, nil
}

// TCPChecksum returns the TCP checksum (RFC 9293 §3.1) of the header hdr
// followed by payload, over the IPv4 pseudo-header. The checksum field in
// hdr is ignored (taken as zero), so hdr may hold anything there. hdr and
// payload may be separate slices: the stack builds headers apart from the
// data they carry. hdr must be at least TCPHeaderLen bytes; a shorter one
// yields 0.
func TCPChecksum(src, dst IPv4Addr, hdr, payload []byte) uint16 {
	if len(hdr) < TCPHeaderLen {
		return 0
	}
	ph := PseudoHeaderSum(src, dst, ProtoTCP, len(hdr)+len(payload))
	return ^Combine(ph, sumSkipping(hdr, 16, payload), 0)
}

// SetTCPChecksum computes the checksum of hdr and payload and stores it in
// hdr's checksum field.
func SetTCPChecksum(src, dst IPv4Addr, hdr, payload []byte) error {
	if len(hdr) < TCPHeaderLen {
		return ErrBufferTooSmall
	}
	binary.BigEndian.PutUint16(hdr[16:18], TCPChecksum(src, dst, hdr, payload))
	return nil
}

// VerifyTCPChecksum checks the checksum of a whole segment (header and
// payload in one slice, as received) against the pseudo-header.
func VerifyTCPChecksum(src, dst IPv4Addr, seg []byte) error {
	if len(seg) < TCPHeaderLen {
		return ErrTruncated
	}
	if Combine(PseudoHeaderSum(src, dst, ProtoTCP, len(seg)), Sum(seg), 0) != 0xffff {
		return ErrBadChecksum
	}
	return nil
}
