package wire

import (
	"net/netip"
	"strconv"
)

// IPv4Addr is an IPv4 address in network byte order. A plain array keeps
// headers comparable with == and free of pointers.
type IPv4Addr [4]byte

// AddrFromNetip converts a netip.Addr; ok is false if a is not IPv4 (an
// IPv4-mapped IPv6 address is unmapped first).
func AddrFromNetip(a netip.Addr) (IPv4Addr, bool) {
	a = a.Unmap()
	if !a.Is4() {
		return IPv4Addr{}, false
	}
	return a.As4(), true
}

// Netip returns the address as a netip.Addr.
func (a IPv4Addr) Netip() netip.Addr { return netip.AddrFrom4(a) }

// String formats the address in dotted-quad form.
func (a IPv4Addr) String() string {
	b := make([]byte, 0, 15)
	for i, x := range a {
		if i > 0 {
			b = append(b, '.')
		}
		b = strconv.AppendUint(b, uint64(x), 10)
	}
	return string(b)
}

// MAC is an IEEE 802 48-bit hardware address.
type MAC [6]byte

// BroadcastMAC is the Ethernet broadcast address.
var BroadcastMAC = MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// String formats the address as six colon-separated hex octets.
func (m MAC) String() string {
	const hex = "0123456789abcdef"
	b := make([]byte, 0, 17)
	for i, x := range m {
		if i > 0 {
			b = append(b, ':')
		}
		b = append(b, hex[x>>4], hex[x&0xf])
	}
	return string(b)
}
