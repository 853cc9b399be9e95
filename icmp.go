package ultcp

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"time"

	"github.com/ultcp/ultcp/internal/tcp"
	"github.com/ultcp/ultcp/internal/wire"
)

// ICMP errors on a connection's ring (RFC 9293 §3.9.2.2, MUST-54). Inside
// the fabric nobody sends ICMP; a gateway that receives an ICMP error from
// the outside world about one of our connections puts it on that
// connection's ring, as one IPv4 record. The link recognises it
// (decodeRecord returns errICMP), and icmpLocked checks it before the
// engine acts on it (internal/tcp/icmp.go):
//
//   - the record is a whole, unfragmented IPv4 packet to this stack from a
//     unicast address (the router's), at most 576 bytes (RFC 1812
//     §4.3.2.3), carrying an ICMP error message whose checksum is right:
//     ICMP comes from outside the fabric, where routers compute it, so
//     unlike the fabric's own TCP records it is verified;
//   - the quoted datagram is a TCP segment this connection sent: from the
//     stack's address to the peer's, with the connection's ports, the
//     first fragment (RFC 5927 §4.1);
//   - the engine then checks that the quoted sequence number is in flight
//     (SND.UNA =< SEQ < SND.NXT) and acts, or ignores it.
//
// Whatever fails a check is dropped and counted (StackStats.ICMPDrops),
// never answered and never a reason to reset the connection: an ICMP
// error is advice, and forged advice must cost nothing.

var errICMP = errors.New("ultcp: ICMP packet on the ring")

// maxICMPRecord bounds an ICMP error record (RFC 1812 §4.3.2.3: an ICMP
// error is at most 576 bytes); icmpLocked copies it out of shared memory.
const maxICMPRecord = 576

// icmpLocked handles an ICMP record rec on c's ring.
func (c *Conn) icmpLocked(now time.Duration, rec []byte) {
	typ, code, mtu, seq, ok := c.parseICMP(rec)
	if !ok {
		c.s.stats.icmpDrops.Add(1)
		return
	}
	if c.tc.ICMPError(now, typ, code, mtu, seq) == tcp.ICMPIgnored {
		c.s.stats.icmpDrops.Add(1) // SEQ not in flight, Source Quench, nothing to act on
		return
	}
	c.s.stats.icmpErrors.Add(1)
}

// parseICMP checks an ICMP error record against c and returns the ICMP
// type and code, the next-hop MTU and the quoted sequence number.
func (c *Conn) parseICMP(rec []byte) (typ, code uint8, mtu int, seq uint32, ok bool) {
	if len(rec) > maxICMPRecord {
		return
	}
	// One copy out of the ring: the peer can still write what we read.
	var buf [maxICMPRecord]byte
	b := buf[:copy(buf[:], rec)]
	p, err := wire.NewIPv4Packet(b)
	if err != nil || p.TotalLen() != len(b) || p.IsFragment() || p.Protocol() != 1 || p.Dst() != c.local() {
		return
	}
	if c.s.classify(netip.AddrFrom4([4]byte(p.Src()))) != unicast {
		return
	}
	h, quote, err := wire.ParseICMPv4(p.Payload())
	if err != nil || !h.IsError() {
		return
	}
	q, data, err := wire.QuotedIPv4(quote)
	if err != nil || q.Protocol != 6 || q.FragOffset != 0 || q.Src != c.local() || q.Dst != c.rip {
		return
	}
	// QuotedIPv4 guarantees 8 bytes: the ports and the sequence number.
	if binary.BigEndian.Uint16(data[0:]) != c.tuple.lport || binary.BigEndian.Uint16(data[2:]) != c.tuple.rport {
		return
	}
	return h.Type, h.Code, int(h.NextHopMTU()), binary.BigEndian.Uint32(data[4:]), true
}
