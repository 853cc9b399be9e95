package ultcp

import (
	"github.com/ultcp/ultcp/internal/tcp"
	"github.com/ultcp/ultcp/internal/wire"
)

// TSO towards the gateway. A connection through the gateway runs with an
// Ethernet MSS (1448 bytes of payload per segment with timestamps), so a
// bulk sender emits one segment per 1448 bytes, and a record per segment
// would cost the node a ring record, the gateway a record to parse and
// gather into a GSO batch, and both of them a cache line of headers, per
// 1448 bytes. Instead the link does what a NIC's TCP segmentation offload
// does for Linux: the consecutive segments that one engine call emitted
// go into the ring as ONE record, the headers of the first segment in
// front of all their payload, up to one IPv4 packet (64 KiB). The gateway
// writes such a record to its device straight from the ring as one GSO
// packet whose segment size is the flow's outside MSS (gateway/outbound.go,
// sendRecord), and the kernel cuts it back into the segments the engine
// emitted. The engine knows nothing of it: it counts, times, and
// retransmits per MSS segment as before (its scoreboard, cwnd and RTT
// samples are those of the segments it emitted).
//
// Segments are merged only where the result is exactly what the kernel's
// GSO will cut back into the same segments (Linux's tcp_gso_segment: every
// piece gets the first's headers, its own sequence number, and PSH and FIN
// only on the last; the IPv4 ID and lengths are per piece):
//
//   - the run is contiguous in sequence space and every payload but the
//     last has the first's length (a full MSS), the last no more;
//   - every header is the first's but for the sequence number and, on the
//     last segment only, PSH or FIN: the same ACK, window, urgent pointer
//     (none), and options — the same timestamps (so replicating the first's
//     TSval and TSecr, as TSO does, changes nothing) and SACK blocks; no
//     SYN, RST, URG, ECE or CWR anywhere;
//   - the same IP ECN codepoint;
//   - the payloads lie one after the other in memory (the engine's send
//     ring, or the writer's buffer in custody): the merged segment is a
//     longer slice of the same memory, so the link sends it as it sends
//     any segment (PIO: one copy into the ring; DMA: the peer pulls it), and
//     a pcap capture on the node shows the record as it went on the ring.
//     Segments either side of the send ring's wrap are not merged.
//
// Retransmissions merge like new data: the engine resends whole records
// of its scoreboard, and contiguous ones with equal headers are one TSO
// record as they were the first time; a retransmission is never merged
// with a segment it is not contiguous with (the new data after a hole).
//
// The segment size the gateway cuts at is its own view of the flow's MSS
// (what the outside host announced, clamped to the gateway's MTU, lowered
// by ICMP "fragmentation needed"), which is also what the node's engine
// learnt from the same SYN and ICMP: the two agree, and if they ever did
// not, the wire would still carry valid segments no larger than the
// outside host accepts — only not the engine's boundaries.
//
// Connections inside the fabric are left alone: their MSS is already the
// largest IPv4 packet (fabricMSS), and large writes go by DMA records of
// many segments (sendOutside).

// tsoMaxPacket bounds a coalesced record: one IPv4 packet, whose total
// length field must stay valid (a longer PIO record would be BIG TCP,
// which the gateway cuts, but gains nothing over 64 KiB GSO writes).
const tsoMaxPacket = 0xffff

// tsoLocked merges c.out in place for TSO on a connection through the
// gateway (see above). It leaves other connections, and a lone segment,
// as they are.
func (c *Conn) tsoLocked() {
	if len(c.out) < 2 || !c.viaGateway() {
		return
	}
	c.out = coalesceSegments(c.out, min(tsoMaxPacket, c.fc.MaxRecord()))
}

// coalesceSegments merges, in place, each run of segs that TSO may carry
// as one segment (the rules above), and returns the shortened slice. A
// merged record, headers included, is at most maxRecord bytes. The
// segments left past the end drop their payload references.
func coalesceSegments(segs []tcp.Segment, maxRecord int) []tcp.Segment {
	w := 0
	for r := 0; r < len(segs); {
		run := segs[r]
		k := r + 1
		if tsoLead(&run) {
			hl := ipHdrLen + run.Hdr.EncodedLen()
			full := len(run.Payload)
			last := full // the length of the run's last segment so far
			next := run.Hdr.Seq + uint32(full)
			for ; k < len(segs) && last == full; k++ {
				nx := &segs[k]
				n := len(nx.Payload)
				if n == 0 || n > full || nx.Hdr.Seq != next || nx.ECN != run.ECN ||
					hl+len(run.Payload)+n > maxRecord || !adjacent(run.Payload, nx.Payload) ||
					!sameHeader(&run.Hdr, &nx.Hdr) {
					break
				}
				run.Payload = run.Payload[:len(run.Payload)+n]
				run.Hdr.Flags |= nx.Hdr.Flags & (wire.FlagPSH | wire.FlagFIN)
				next += uint32(n)
				last = n
				if nx.Hdr.Flags&(wire.FlagPSH|wire.FlagFIN) != 0 {
					k++
					break // PSH and FIN end a run: they go on its last piece
				}
			}
		}
		segs[w] = run
		w++
		r = k
	}
	for i := w; i < len(segs); i++ {
		segs[i].Payload = nil
	}
	return segs[:w]
}

// tsoLead reports whether s can begin a TSO run: a plain data segment,
// ACK only (a segment with PSH or FIN ends a run, so it cannot begin one
// that goes on).
func tsoLead(s *tcp.Segment) bool {
	return len(s.Payload) > 0 && s.Hdr.Flags == wire.FlagACK && s.Hdr.Urgent == 0
}

// sameHeader reports whether nx may follow in a run led by the header h:
// the same fields but the sequence number, and flags ACK with at most PSH
// or FIN added.
func sameHeader(h, nx *wire.TCPHeader) bool {
	if nx.Flags&^(wire.FlagPSH|wire.FlagFIN) != wire.FlagACK {
		return false
	}
	x := *nx
	x.Seq, x.Flags = h.Seq, h.Flags&^(wire.FlagPSH|wire.FlagFIN)
	return x == *h
}

// adjacent reports whether b starts in memory where a ends, within a's
// capacity (so within the same allocation): a[:len(a)+len(b)] is then a
// and b.
func adjacent(a, b []byte) bool {
	return len(b) > 0 && cap(a)-len(a) >= len(b) && &a[:len(a)+1][len(a)] == &b[0]
}
