package ultcp

import (
	"encoding/binary"
	"errors"
	"time"

	"github.com/ultcp/ultcp/internal/custody"
	"github.com/ultcp/ultcp/internal/tcp"
	"github.com/ultcp/ultcp/internal/wire"
)

// Custody, the node's side (DESIGN.md §2, the helpers' gateway contract).
// The gateway may keep a copy of every data segment a Conn sends to the
// outside and retransmit it itself; the Conn then keeps nothing for
// retransmission and its Write returns once the bytes are in the fabric.
// The gateway says so, and more, with records of IP protocol 253 (RFC
// 3692's experimental number) on the flow's own fabric connection, from
// its address to ours (package internal/custody encodes them):
//
//   - GRANT: the gateway keeps a copy of what we send from now on; the
//     engine stops retaining (tcp.Conn.SetCustody(true)). The gateway
//     puts it on the ring before the segment that completes our
//     handshake, so it normally finds the Conn in SYN-SENT or
//     SYN-RECEIVED, retaining nothing, and custody covers the first
//     byte. A GRANT that comes later (again, after a REVOKE) waits for
//     what the engine retains to be acknowledged, so no byte is ever
//     nobody's to resend, and meanwhile the engine sends nothing new.
//   - REVOKE: custody memory is short; the engine retains again, and we
//     answer REVOKED carrying SND.MAX (the end of what we ever sent): the
//     gateway keeps what lies below, we keep what we send after.
//   - LOSS [start, end): the gateway lost and resent those bytes; the
//     congestion controller reacts as to a loss of its own
//     (tcp.Conn.ReportLoss: once per window, RFC 5681 §3.2).
//   - FAIL errno: the gateway gave up (too many retransmissions); the
//     Conn fails with that errno, as a kernel socket whose retransmission
//     timer ran out (ETIMEDOUT).
//
// A custody record is believed only from the gateway itself (source and
// fabric peer), on a Conn through the gateway, addressed to this stack,
// well formed; anything else is dropped and counted (GatewayStats), never
// a reason to reset the connection: like ICMP, it is advice about the
// connection, not part of its byte stream.

var errCustody = errors.New("ultcp: custody message on the ring")

// maxCustodyRecord bounds a custody record: an IPv4 header with options
// and the longest message. custodyLocked copies it out of shared memory.
const maxCustodyRecord = 60 + custody.MaxLen

// custodyLocked handles a custody record rec on c's ring.
func (c *Conn) custodyLocked(now time.Duration, rec []byte) {
	m, ok := c.parseCustody(rec)
	if !ok {
		c.s.gw.drops.Add(1)
		return
	}
	g := &c.s.gw
	switch m.Type {
	case custody.Grant:
		c.tc.SetCustody(true)
		g.grants.Add(1)
	case custody.Revoke:
		c.tc.SetCustody(false)
		g.revokes.Add(1)
		c.sendRevokedLocked(c.tc.SndMax())
	case custody.Loss:
		c.tc.ReportLoss(now, m.Start, m.End)
		g.losses.Add(1)
	case custody.Fail:
		if c.tc.State() != tcp.Closed {
			c.tc.ReportFailure(m.Err())
		}
		g.fails.Add(1)
		c.wakeWaitersLocked()
	default: // REVOKED travels the other way
		g.drops.Add(1)
	}
}

// parseCustody checks a custody record against c and parses its message.
func (c *Conn) parseCustody(rec []byte) (custody.Message, bool) {
	if !c.viaGateway() {
		return custody.Message{}, false
	}
	gw, _ := wire.AddrFromNetip(c.fc.RemoteAddr())
	return parseCustodyRecord(rec, gw, c.lip)
}

// parseCustodyRecord parses a custody record that must travel from the
// gateway gw to self: a whole, unfragmented IPv4 packet of protocol 253
// carrying one well-formed message.
func parseCustodyRecord(rec []byte, gw, self wire.IPv4Addr) (custody.Message, bool) {
	if len(rec) > maxCustodyRecord {
		return custody.Message{}, false
	}
	// One copy out of the ring: the peer can still write what we read.
	var buf [maxCustodyRecord]byte
	b := buf[:copy(buf[:], rec)]
	p, err := wire.NewIPv4Packet(b)
	if err != nil || p.TotalLen() != len(b) || p.IsFragment() || p.Protocol() != custody.Proto || p.Dst() != self || p.Src() != gw {
		return custody.Message{}, false
	}
	m, err := custody.Parse(p.Payload())
	return m, err == nil
}

// sendRevokedLocked answers REVOKE with REVOKED{seq}. The send side may
// be busy (a writer blocked in the fabric owns it) or the ring full: then
// the answer goes out later, from a goroutine of its own that waits for
// the send side. REVOKE is rare (custody memory ran short), and until
// REVOKED arrives the gateway merely keeps taking copies, so a late answer
// costs the gateway memory, never a byte.
func (c *Conn) sendRevokedLocked(seq uint32) {
	if c.tryRevokedLocked(seq) {
		return
	}
	go c.sendRevokedLater(seq)
}

// revokedRetry spaces sendRevokedLater's attempts; the attempts end with
// the connection.
const revokedRetry = time.Millisecond

func (c *Conn) sendRevokedLater(seq uint32) {
	t := time.NewTicker(revokedRetry)
	defer t.Stop()
	for range t.C {
		c.mu.Lock()
		done := c.finished || c.rxDone || c.tryRevokedLocked(seq)
		c.mu.Unlock()
		if done {
			return
		}
	}
}

// tryRevokedLocked writes REVOKED{seq} to the ring if the send side is
// free and has room, and reports whether the answer is settled (sent, or
// pointless because the ring failed).
func (c *Conn) tryRevokedLocked(seq uint32) bool {
	var b [ipHdrLen + custody.MaxLen]byte
	msg, err := custody.Message{Type: custody.Revoked, Seq: seq}.Append(b[ipHdrLen:ipHdrLen])
	if err != nil {
		return true // cannot happen: REVOKED has no invalid field
	}
	n := ipHdrLen + len(msg)
	if c.txBusy || len(c.pending) > 0 || !fits(c.fc, n) {
		return false
	}
	gw, _ := wire.AddrFromNetip(c.fc.RemoteAddr())
	encodeIPv4(b[:], c.lip, gw, ipFields(c.ip.Load()), custody.Proto, n)
	if err := c.fc.Send(b[:n]); err != nil {
		c.txFailedLocked(err)
	}
	return true
}

// encodeIPv4 writes a 20-byte IPv4 header for a packet of total bytes
// from src to dst carrying protocol proto (checksum zero, as every header
// inside the fabric; link.go).
func encodeIPv4(b []byte, src, dst wire.IPv4Addr, ipf ipFields, proto uint8, total int) {
	b[0] = 0x45
	b[1] = ipf.tos()
	binary.BigEndian.PutUint16(b[2:], uint16(total))
	binary.BigEndian.PutUint32(b[4:], 0x4000) // ID 0, DF (RFC 6864)
	b[8] = ipf.ttl()
	b[9] = proto
	b[10], b[11] = 0, 0
	copy(b[12:16], src[:])
	copy(b[16:20], dst[:])
}
