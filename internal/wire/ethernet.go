package wire

import "encoding/binary"

// EthernetHeaderLen is the length of an Ethernet II header (no 802.1Q tag).
const EthernetHeaderLen = 14

// EthernetMinFrame is the shortest Ethernet frame without its FCS; senders
// pad shorter frames with zeros, which is why IPv4 parsing trims to the
// total length.
const EthernetMinFrame = 60

// EtherTypes this stack uses.
const (
	EtherTypeIPv4 uint16 = 0x0800
	EtherTypeARP  uint16 = 0x0806
)

// EthernetFrame is a view over an Ethernet II frame checked by
// NewEthernetFrame.
type EthernetFrame []byte

// NewEthernetFrame checks that b holds an Ethernet II header. A type field
// below 0x0600 is an IEEE 802.3 length, not an EtherType, and such frames
// are ErrUnsupported.
func NewEthernetFrame(b []byte) (EthernetFrame, error) {
	if len(b) < EthernetHeaderLen {
		return nil, ErrTruncated
	}
	if binary.BigEndian.Uint16(b[12:14]) < 0x0600 {
		return nil, ErrUnsupported
	}
	return EthernetFrame(b), nil
}

// Dst returns the destination address.
func (f EthernetFrame) Dst() MAC { return MAC(f[0:6]) }

// Src returns the source address.
func (f EthernetFrame) Src() MAC { return MAC(f[6:12]) }

// EtherType returns the type field.
func (f EthernetFrame) EtherType() uint16 { return binary.BigEndian.Uint16(f[12:14]) }

// Payload returns the bytes after the header, padding included.
func (f EthernetFrame) Payload() []byte { return f[EthernetHeaderLen:] }

// EthernetHeader is the parsed form of an Ethernet II header.
type EthernetHeader struct {
	Dst, Src  MAC
	EtherType uint16
}

// ParseEthernet parses an Ethernet II header and returns it with the
// payload, which aliases b and may end in link padding.
func ParseEthernet(b []byte) (EthernetHeader, []byte, error) {
	f, err := NewEthernetFrame(b)
	if err != nil {
		return EthernetHeader{}, nil, err
	}
	return EthernetHeader{Dst: f.Dst(), Src: f.Src(), EtherType: f.EtherType()}, f.Payload(), nil
}

// EncodedLen returns the length Encode writes: always EthernetHeaderLen.
func (h *EthernetHeader) EncodedLen() int { return EthernetHeaderLen }

// Encode writes the header into b. Padding short frames to
// EthernetMinFrame is the caller's job, since only it knows the payload.
func (h *EthernetHeader) Encode(b []byte) (int, error) {
	if len(b) < EthernetHeaderLen {
		return 0, ErrBufferTooSmall
	}
	if h.EtherType < 0x0600 {
		return 0, ErrUnsupported
	}
	copy(b[0:6], h.Dst[:])
	copy(b[6:12], h.Src[:])
	binary.BigEndian.PutUint16(b[12:14], h.EtherType)
	return EthernetHeaderLen, nil
}
