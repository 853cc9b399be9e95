package ultcp

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"github.com/ultcp/ultcp/fabric"
	"github.com/ultcp/ultcp/internal/wire"
)

// Address rules of RFC 9293 §3.9.1.1 and §3.10.7.2 (with RFC 1122
// §3.2.1.3 for which addresses are special), applied where a connection is
// opened or a SYN arrives:
//
//   - an active OPEN may name the local address (MUST-43); when it does
//     not, the "IP layer" picks one (MUST-44), and every segment of the
//     connection then carries that same address (MUST-45): a stack has
//     one address, which each Conn records as its local address;
//   - no OPEN to a broadcast or multicast address (MUST-46), nor to the
//     unspecified address;
//   - a SYN addressed to a broadcast or multicast address is discarded
//     silently (MUST-57), and so is one whose source is not a unicast
//     address a host may use (MUST-63): broadcast, multicast, "this
//     network" (0/8), loopback (127/8) or reserved (240/4).
//
// Inside the fabric a record's addresses must also be those of its ring's
// two nodes (decodeRecord), which the fabric's own subnet check confines;
// the checks here come first because a gateway will bring packets whose
// addresses are the outside world's.

// subnet is the network the stack's address belongs to: the fabric's
// subnet (the stack opens the fabric with its default). Its last address is
// the subnet-directed broadcast address.
func (s *Stack) subnet() netip.Prefix { return fabric.DefaultSubnet }

// broadcastOf returns the directed broadcast address of an IPv4 prefix.
func broadcastOf(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	v := binary.BigEndian.Uint32(a[:]) | (1<<(32-p.Bits()) - 1)
	binary.BigEndian.PutUint32(a[:], v)
	return netip.AddrFrom4(a)
}

// addrClass is what is special about an IPv4 address for TCP.
type addrClass uint8

const (
	unicast addrClass = iota
	unspecified
	limitedBroadcast
	subnetBroadcast
	multicast
	thisNetwork
	loopback
	reserved
)

var addrClassNames = [...]string{"a unicast address", "the unspecified address", "the limited broadcast address",
	"the subnet's broadcast address", "a multicast address", `a "this network" address`, "a loopback address",
	"a reserved address"}

func (k addrClass) String() string { return addrClassNames[k] }

// classify sorts an IPv4 address (RFC 1122 §3.2.1.3, RFC 5735).
func (s *Stack) classify(a netip.Addr) addrClass {
	b := a.As4()
	switch {
	case a == netip.IPv4Unspecified():
		return unspecified
	case b == [4]byte{255, 255, 255, 255}:
		return limitedBroadcast
	case s.subnet().Bits() < 31 && a == broadcastOf(s.subnet()):
		return subnetBroadcast
	case a.IsMulticast():
		return multicast
	case b[0] == 0:
		return thisNetwork
	case a.IsLoopback():
		return loopback
	case b[0] >= 240:
		return reserved
	}
	return unicast
}

// checkRemote refuses an active OPEN to an address no connection can have
// (MUST-46): the error names the address and wraps ENETUNREACH, as Linux's
// connect(2) to a broadcast or multicast route.
func (s *Stack) checkRemote(a netip.Addr) error {
	if k := s.classify(a); k != unicast {
		return fmt.Errorf("ultcp: cannot connect to %v, %s: %w", a, k, syscall.ENETUNREACH)
	}
	return nil
}

// sourceFor is the "IP layer" choosing the source address of a new
// connection to dst when the application named none (MUST-44): the
// stack's only address.
func (s *Stack) sourceFor(dst netip.Addr) netip.Addr { return s.addr }

// localFor resolves the local address an active OPEN asked for (MUST-43):
// nil or an unspecified IP lets sourceFor choose; any other IP must be the
// stack's own (EADDRNOTAVAIL otherwise, as bind(2)). A port of 0 means an
// ephemeral port.
func (s *Stack) localFor(la *net.TCPAddr, dst netip.Addr) (netip.Addr, uint16, error) {
	if la == nil {
		return s.sourceFor(dst), 0, nil
	}
	if la.Port < 0 || la.Port > 0xffff {
		return netip.Addr{}, 0, &net.AddrError{Err: "invalid port", Addr: la.String()}
	}
	if len(la.IP) == 0 || la.IP.IsUnspecified() {
		return s.sourceFor(dst), uint16(la.Port), nil
	}
	a, ok := netip.AddrFromSlice(la.IP)
	if ok {
		a = a.Unmap()
	}
	if !ok || a != s.addr {
		return netip.Addr{}, 0, fmt.Errorf("ultcp: local address %v is not this stack's (%v): %w",
			la.IP, s.addr, syscall.EADDRNOTAVAIL)
	}
	return a, uint16(la.Port), nil
}

// martianSyn reports whether record b is a SYN that must be discarded for
// its addresses (MUST-57, MUST-63), and counts it. It reads only what it
// needs and leaves every other check to decodeRecord.
func (s *Stack) martianSyn(b []byte) bool {
	if len(b) < ipHdrLen || b[0]>>4 != 4 || b[9] != 6 {
		return false
	}
	ihl := int(b[0]&0xf) * 4
	if ihl < ipHdrLen || len(b) < ihl+14 {
		return false
	}
	if wire.TCPFlags(b[ihl+13])&wire.FlagSYN == 0 {
		return false
	}
	src := netip.AddrFrom4([4]byte(b[12:16]))
	dst := netip.AddrFrom4([4]byte(b[16:20]))
	switch s.classify(dst) {
	case unspecified, limitedBroadcast, subnetBroadcast, multicast: // MUST-57
		s.stats.martians.Add(1)
		return true
	}
	if s.classify(src) != unicast { // MUST-63
		s.stats.martians.Add(1)
		return true
	}
	return false
}
