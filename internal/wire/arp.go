package wire

import "encoding/binary"

// ARPLen is the length of an ARP packet for IPv4 over Ethernet.
const ARPLen = 28

// ARP operation codes (RFC 826).
const (
	ARPRequest uint16 = 1
	ARPReply   uint16 = 2
)

// arpHTypeEthernet is the ARP hardware type for Ethernet (RFC 826).
const arpHTypeEthernet = 1

// ARPPacket is a view over an ARP packet checked by NewARPPacket: IPv4
// over Ethernet, 28 bytes.
type ARPPacket []byte

// NewARPPacket checks that b holds an ARP packet for IPv4 over Ethernet
// (RFC 826: hardware type 1, protocol 0x0800, address lengths 6 and 4) and
// returns it trimmed to 28 bytes (the rest is link padding). Other
// hardware or protocol types are ErrUnsupported.
func NewARPPacket(b []byte) (ARPPacket, error) {
	if len(b) < 8 {
		return nil, ErrTruncated
	}
	if binary.BigEndian.Uint16(b[0:2]) != arpHTypeEthernet ||
		binary.BigEndian.Uint16(b[2:4]) != EtherTypeIPv4 ||
		b[4] != 6 || b[5] != 4 {
		return nil, ErrUnsupported
	}
	if len(b) < ARPLen {
		return nil, ErrTruncated
	}
	return ARPPacket(b[:ARPLen]), nil
}

// Op returns the operation code.
func (p ARPPacket) Op() uint16 { return binary.BigEndian.Uint16(p[6:8]) }

// SenderMAC returns the sender hardware address.
func (p ARPPacket) SenderMAC() MAC { return MAC(p[8:14]) }

// SenderIP returns the sender protocol address.
func (p ARPPacket) SenderIP() IPv4Addr { return IPv4Addr(p[14:18]) }

// TargetMAC returns the target hardware address.
func (p ARPPacket) TargetMAC() MAC { return MAC(p[18:24]) }

// TargetIP returns the target protocol address.
func (p ARPPacket) TargetIP() IPv4Addr { return IPv4Addr(p[24:28]) }

// ARP is the parsed form of an ARP packet for IPv4 over Ethernet.
type ARP struct {
	Op        uint16
	SenderMAC MAC
	SenderIP  IPv4Addr
	TargetMAC MAC
	TargetIP  IPv4Addr
}

// ParseARP parses an ARP packet for IPv4 over Ethernet. Any operation code
// is accepted; the caller decides what to answer.
func ParseARP(b []byte) (ARP, error) {
	p, err := NewARPPacket(b)
	if err != nil {
		return ARP{}, err
	}
	return ARP{
		Op:        p.Op(),
		SenderMAC: p.SenderMAC(),
		SenderIP:  p.SenderIP(),
		TargetMAC: p.TargetMAC(),
		TargetIP:  p.TargetIP(),
	}, nil
}

// EncodedLen returns the length Encode writes: always ARPLen.
func (a *ARP) EncodedLen() int { return ARPLen }

// Encode writes the packet into b and returns ARPLen.
func (a *ARP) Encode(b []byte) (int, error) {
	if len(b) < ARPLen {
		return 0, ErrBufferTooSmall
	}
	binary.BigEndian.PutUint16(b[0:2], arpHTypeEthernet)
	binary.BigEndian.PutUint16(b[2:4], EtherTypeIPv4)
	b[4], b[5] = 6, 4
	binary.BigEndian.PutUint16(b[6:8], a.Op)
	copy(b[8:14], a.SenderMAC[:])
	copy(b[14:18], a.SenderIP[:])
	copy(b[18:24], a.TargetMAC[:])
	copy(b[24:28], a.TargetIP[:])
	return ARPLen, nil
}
