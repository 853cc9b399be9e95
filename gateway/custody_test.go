package gateway

import (
	"bytes"
	"testing"
	"time"

	"github.com/ultcp/ultcp/internal/custody"
	"github.com/ultcp/ultcp/internal/wire"
)

// Custody tests drive the keeper through its hooks with fake flows and a
// fake IO (no device, no fabric), on a fake clock.

var (
	custGW     = wire.IPv4Addr{10, 77, 0, 1}
	custNode   = wire.IPv4Addr{10, 77, 0, 2}
	custRemote = wire.IPv4Addr{192, 168, 77, 2}
)

// fakeCustodyIO records what the keeper sends.
type fakeCustodyIO struct {
	outside [][]byte // packets to the outside
	node    [][]byte // records to the node
	full    int      // refuse this many ToNode calls with errCtlQueueFull
}

func (f *fakeCustodyIO) ToOutside(_ *Flow, pkt []byte) error {
	f.outside = append(f.outside, append([]byte(nil), pkt...))
	return nil
}

func (f *fakeCustodyIO) ToNode(_ *Flow, rec []byte) error {
	if f.full > 0 {
		f.full--
		return errCtlQueueFull
	}
	f.node = append(f.node, append([]byte(nil), rec...))
	return nil
}

// nodeMsgs parses and clears the records sent to the node.
func (f *fakeCustodyIO) nodeMsgs(t testing.TB) []custody.Message {
	t.Helper()
	var ms []custody.Message
	for _, r := range f.node {
		src, dst, m, err := custody.ParsePacket(r)
		if err != nil || src != custGW || dst != custNode {
			t.Fatalf("record to the node % x: %v, %v -> %v", r, err, src, dst)
		}
		ms = append(ms, m)
	}
	f.node = nil
	return ms
}

type custodyHarness struct {
	t   testing.TB
	k   *keeper
	io  *fakeCustodyIO
	now time.Duration
}

func newCustodyHarness(t *testing.T, limit int64) *custodyHarness {
	t.Helper()
	io := &fakeCustodyIO{}
	c, err := newCustodian(CustodyConfig{Limit: limit, Gateway: custGW, IO: io})
	if err != nil {
		t.Fatal(err)
	}
	return &custodyHarness{t: t, k: c.(*keeper), io: io}
}

func custFlow(port uint16) *Flow {
	return &Flow{Key: FlowKey{Node: custNode, NodePort: port, Remote: custRemote, RemotePort: 80}, mssOut: 1460}
}

const (
	custNodeISS = 1000
	custPeerISS = 5000
	custSeg     = 1448 // MSS 1460 less the timestamp option
)

// custSYNOpts are the options both SYNs carry: MSS, window scale 7, SACK,
// timestamps (what Linux and a gateway flow's node offer).
func custSYNOpts() wire.TCPOptions {
	return wire.TCPOptions{MSS: 1460, HasWScale: true, WScale: 7, SACKPermitted: true, HasTimestamp: true, TSVal: 1}
}

// custNodeHdr builds the IPv4 and TCP headers of a node's segment as the
// Outbound hook gets them (checksums not filled).
func custNodeHdr(f *Flow, seq, ack uint32, flags wire.TCPFlags, o wire.TCPOptions, plen int) []byte {
	th := wire.TCPHeader{SrcPort: f.Key.NodePort, DstPort: f.Key.RemotePort, Seq: seq, Ack: ack,
		Flags: flags, Window: 512, Options: o}
	b := make([]byte, 20+60)
	n, err := th.Encode(b[20:])
	if err != nil {
		panic(err)
	}
	ip := wire.IPv4Header{TTL: 63, Protocol: wire.ProtoTCP, DontFrag: true, Src: f.Key.Node, Dst: f.Key.Remote,
		PayloadLen: uint16(n + plen)}
	ip.Encode(b)
	return b[:20+n]
}

// custPeerPkt builds a whole packet from the outside host.
func custPeerPkt(f *Flow, seq, ack uint32, flags wire.TCPFlags, o wire.TCPOptions, sack ...uint32) []byte {
	for i := 0; i+1 < len(sack); i += 2 {
		o.SACK[o.NumSACK] = wire.SACKBlock{Left: sack[i], Right: sack[i+1]}
		o.NumSACK++
	}
	th := wire.TCPHeader{SrcPort: f.Key.RemotePort, DstPort: f.Key.NodePort, Seq: seq, Ack: ack,
		Flags: flags, Window: 1000, Options: o}
	b := make([]byte, 20+60)
	n, err := th.Encode(b[20:])
	if err != nil {
		panic(err)
	}
	ip := wire.IPv4Header{TTL: 64, Protocol: wire.ProtoTCP, Src: f.Key.Remote, Dst: f.Key.Node, PayloadLen: uint16(n)}
	ip.Encode(b)
	return b[:20+n]
}

func custPayload(seq uint32, n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(seq+uint32(i)) ^ 0x5a
	}
	return p
}

// handshake runs a node-opened flow's three-way handshake through the
// hooks, taking 20 ms, and returns the messages the node got. They go
// with the outside's SYN-ACK (on the ring before it: the keeper's Inbound
// runs before the segment is forwarded), none before it, none after.
func (h *custodyHarness) handshake(f *Flow) []custody.Message {
	h.t.Helper()
	k := h.k
	k.FlowOpened(f, h.now)
	k.Outbound(f, h.now, custNodeHdr(f, custNodeISS, 0, wire.FlagSYN, custSYNOpts(), 0), nil)
	if ms := h.io.nodeMsgs(h.t); len(ms) != 0 {
		h.t.Fatalf("custody messages with the node's SYN: %v", ms)
	}
	h.now += 20 * time.Millisecond // the outside path's RTT
	k.Inbound(f, h.now, custPeerPkt(f, custPeerISS, custNodeISS+1, wire.FlagSYN|wire.FlagACK, custSYNOpts()))
	ms := h.io.nodeMsgs(h.t)
	k.Outbound(f, h.now, custNodeHdr(f, custNodeISS+1, custPeerISS+1, wire.FlagACK, custTS(), 0), nil)
	if more := h.io.nodeMsgs(h.t); len(more) != 0 {
		h.t.Fatalf("custody messages with the node's ACK: %v", more)
	}
	return ms
}

func custTS() wire.TCPOptions { return wire.TCPOptions{HasTimestamp: true, TSVal: 2, TSEcr: 1} }

// send has the node send segment i (0-based) of custSeg octets.
func (h *custodyHarness) send(f *Flow, i int) {
	seq := uint32(custNodeISS + 1 + i*custSeg)
	h.k.Outbound(f, h.now, custNodeHdr(f, seq, custPeerISS+1, wire.FlagACK, custTS(), custSeg), custPayload(seq, custSeg))
}

func custSeq(i int) uint32 { return uint32(custNodeISS + 1 + i*custSeg) }

// ack has the peer acknowledge up to segment i, with SACK blocks given as
// segment index pairs [from, to).
func (h *custodyHarness) ack(f *Flow, i int, sack ...int) {
	var s []uint32
	for _, x := range sack {
		s = append(s, custSeq(x))
	}
	h.k.Inbound(f, h.now, custPeerPkt(f, custPeerISS+1, custSeq(i), wire.FlagACK, custTS(), s...))
}

// A node's dial: GRANT goes with the outside's SYN-ACK, so the node is
// in custody before its handshake completes and before its first byte.
func TestCustodyGrantsWithTheOutsideSYNACK(t *testing.T) {
	h := newCustodyHarness(t, 1<<20)
	f := custFlow(40000)
	ms := h.handshake(f)
	if len(ms) != 1 || ms[0].Type != custody.Grant {
		t.Fatalf("after the handshake the node got %v, want GRANT", ms)
	}
	if s := h.k.Stats(); s.Flows != 1 {
		t.Fatalf("flows in custody %d, want 1", s.Flows)
	}
}

// An outside host's dial: GRANT goes with the outside's ACK of the node's
// SYN-ACK (the segment that moves the node to ESTABLISHED), before the
// node can send a byte; nothing goes with the SYN or the SYN-ACK.
func TestCustodyGrantsWithTheOutsideACKOfAnInboundFlow(t *testing.T) {
	h := newCustodyHarness(t, 1<<20)
	f := custFlow(80)
	k := h.k
	k.Inbound(f, h.now, custPeerPkt(f, custPeerISS, 0, wire.FlagSYN, custSYNOpts()))
	k.FlowOpened(f, h.now)
	k.Outbound(f, h.now, custNodeHdr(f, custNodeISS, custPeerISS+1, wire.FlagSYN|wire.FlagACK, custSYNOpts(), 0), nil)
	if ms := h.io.nodeMsgs(t); len(ms) != 0 {
		t.Fatalf("custody messages with the SYN and SYN-ACK: %v", ms)
	}
	h.now += 20 * time.Millisecond
	k.Inbound(f, h.now, custPeerPkt(f, custPeerISS+1, custNodeISS+1, wire.FlagACK, custTS()))
	if ms := h.io.nodeMsgs(t); len(ms) != 1 || ms[0].Type != custody.Grant {
		t.Fatalf("with the outside's ACK the node got %v, want GRANT", ms)
	}
	h.send(f, 0)
	if s := h.k.Stats(); s.Flows != 1 || s.HeldBytes != custSeg {
		t.Fatalf("flows in custody %d holding %d octets, want 1 holding %d (the first segment)", s.Flows, s.HeldBytes, custSeg)
	}
}

// The handshake, timed at the gateway, is the custodian's first RTT
// (RFC 6298 §2.2): RTO = SRTT + 4·RTTVAR = 3·RTT, at least 200 ms.
func TestCustodyTimesTheHandshake(t *testing.T) {
	h := newCustodyHarness(t, 1<<20)
	f := custFlow(40000)
	k := h.k
	k.Outbound(f, 0, custNodeHdr(f, custNodeISS, 0, wire.FlagSYN, custSYNOpts(), 0), nil)
	h.now = 100 * time.Millisecond
	k.Inbound(f, h.now, custPeerPkt(f, custPeerISS, custNodeISS+1, wire.FlagSYN|wire.FlagACK, custSYNOpts()))
	k.Outbound(f, h.now, custNodeHdr(f, custNodeISS+1, custPeerISS+1, wire.FlagACK, custTS(), 0), nil)
	h.send(f, 0)
	if d := k.Next(); d != h.now+300*time.Millisecond {
		t.Fatalf("first deadline %v, want %v (the RTO from a 100 ms handshake)", d, h.now+300*time.Millisecond)
	}
}

func TestCustodyHoldsWhatTheNodeSends(t *testing.T) {
	h := newCustodyHarness(t, 1<<20)
	f := custFlow(40000)
	h.handshake(f)
	h.send(f, 0)
	h.send(f, 1)
	if s := h.k.Stats(); s.HeldBytes != 2*custSeg {
		t.Fatalf("held %d, want %d", s.HeldBytes, 2*custSeg)
	}
	h.now = 50 * time.Millisecond
	h.ack(f, 2)
	if s := h.k.Stats(); s.HeldBytes != 0 {
		t.Fatalf("held %d after everything was acknowledged", s.HeldBytes)
	}
}

// A hole under three SACKed segments (RFC 8985): the gateway resends it
// from its copy, with the node's latest ACK, window and timestamps and
// both checksums, and tells the node LOSS once the resend is acknowledged.
func TestCustodyResendsLostSegmentAndReportsLoss(t *testing.T) {
	h := newCustodyHarness(t, 1<<20)
	f := custFlow(40000)
	h.handshake(f)
	for i := range 5 {
		h.send(f, i)
	}
	h.now = 50 * time.Millisecond
	h.ack(f, 1)
	h.ack(f, 1, 2, 3)
	h.ack(f, 1, 2, 4)
	if len(h.io.outside) != 0 {
		t.Fatalf("resent before RACK deemed the hole lost: %d packets", len(h.io.outside))
	}
	h.ack(f, 1, 2, 5)
	if len(h.io.outside) != 1 {
		t.Fatalf("%d packets resent, want 1", len(h.io.outside))
	}
	pkt := h.io.outside[0]
	var ip wire.IPv4Header
	seg, err := ip.Parse(pkt)
	if err != nil {
		t.Fatalf("resent packet: %v", err)
	}
	if ip.Src != custNode || ip.Dst != custRemote || ip.Protocol != wire.ProtoTCP || ip.TOS&3 != 0 {
		t.Fatalf("resent IPv4 header %+v", ip)
	}
	if err := wire.VerifyTCPChecksum(ip.Src, ip.Dst, seg); err != nil {
		t.Fatalf("resent TCP checksum: %v", err)
	}
	th, payload, err := wire.ParseTCP(seg)
	if err != nil {
		t.Fatal(err)
	}
	if th.Seq != custSeq(1) || th.Ack != custPeerISS+1 || th.Window != 512 || th.Flags != wire.FlagACK|wire.FlagPSH ||
		!th.Options.HasTimestamp || th.Options.TSVal != 2 || th.Options.NumSACK != 0 {
		t.Fatalf("resent TCP header %+v", th)
	}
	if !bytes.Equal(payload, custPayload(custSeq(1), custSeg)) {
		t.Fatal("resent payload differs from what the node sent")
	}
	if ms := h.io.nodeMsgs(t); len(ms) != 0 {
		t.Fatalf("node got %v before the resend was acknowledged", ms)
	}
	// An RTT later the ACK covers the resend: it filled the hole.
	h.now += 30 * time.Millisecond
	h.ack(f, 5)
	ms := h.io.nodeMsgs(t)
	if len(ms) != 1 || ms[0] != (custody.Message{Type: custody.Loss, Start: custSeq(1), End: custSeq(2)}) {
		t.Fatalf("node got %v, want LOSS{%d,%d}", ms, custSeq(1), custSeq(2))
	}
	if s := h.k.Stats(); s.Retransmits != 1 || s.LossReports != 1 {
		t.Fatalf("stats %+v: want 1 retransmit, 1 loss report", s)
	}
}

// No answer at all: timeouts back off (RFC 6298 §5.5) until the engine's
// retry limit, then FAIL{ETIMEDOUT} and the copies are freed.
func TestCustodyFailsFlowAfterRetryLimit(t *testing.T) {
	h := newCustodyHarness(t, 1<<20)
	f := custFlow(40000)
	h.handshake(f)
	h.send(f, 0)
	var last time.Duration
	for range 40 {
		d := h.k.Next()
		if d == 0 {
			break
		}
		if d <= last {
			t.Fatalf("deadline %v does not back off from %v", d, last)
		}
		last, h.now = d, d
		h.k.Tick(h.now)
	}
	ms := h.io.nodeMsgs(t)
	if n := len(ms); n == 0 || ms[n-1] != (custody.Message{Type: custody.Fail, Errno: 110}) {
		t.Fatalf("last message to the node %v, want FAIL{110}", ms[max(n-1, 0):])
	}
	if s := h.k.Stats(); s.Failures != 1 || s.HeldBytes != 0 || s.Flows != 0 || s.Retransmits != 15 {
		t.Fatalf("stats %+v: want 1 failure, nothing held, 15 retransmits", s)
	}
	if h.k.Next() != 0 {
		t.Fatal("a failed flow still has a deadline")
	}
}

// Over the limit, the biggest holder gets REVOKE and its copies continue
// until REVOKED; below half the limit it gets GRANT again.
func TestCustodyRevokesBiggestHolderAndGrantsAgain(t *testing.T) {
	h := newCustodyHarness(t, 4000)
	a, b := custFlow(40000), custFlow(40001)
	h.handshake(a)
	h.handshake(b)
	h.send(b, 0)
	h.send(a, 0)
	if ms := h.io.nodeMsgs(t); len(ms) != 0 {
		t.Fatalf("messages under the limit: %v", ms)
	}
	h.send(a, 1) // 3 × 1448 > 4000: a holds the most
	if ms := h.io.nodeMsgs(t); len(ms) != 1 || ms[0].Type != custody.Revoke {
		t.Fatalf("over the limit the node got %v, want one REVOKE", ms)
	}
	h.send(a, 2) // sent before the node saw REVOKE: still held
	if s := h.k.Stats(); s.HeldBytes != 4*custSeg || s.Revokes != 1 {
		t.Fatalf("stats %+v: want 4 segments held, 1 revoke", s)
	}
	rec, _ := custody.AppendPacket(nil, custNode, custGW, custody.Message{Type: custody.Revoked, Seq: custSeq(3)})
	h.k.Control(a, h.now, rec)
	h.send(a, 3) // after REVOKED: the node retains it
	if s := h.k.Stats(); s.HeldBytes != 4*custSeg {
		t.Fatalf("held %d after REVOKED, want %d", s.HeldBytes, 4*custSeg)
	}
	h.now = 50 * time.Millisecond
	h.ack(a, 4)
	if ms := h.io.nodeMsgs(t); len(ms) != 1 || ms[0].Type != custody.Grant {
		t.Fatalf("below half the limit the node got %v, want GRANT", ms)
	}
	h.send(a, 4)
	if s := h.k.Stats(); s.HeldBytes != 2*custSeg {
		t.Fatalf("held %d after GRANT again, want %d", s.HeldBytes, 2*custSeg)
	}
}

// A segment whose options the parser refuses is still held: the node
// keeps nothing.
func TestCustodyHoldsSegmentWithMalformedOptions(t *testing.T) {
	h := newCustodyHarness(t, 1<<20)
	f := custFlow(40000)
	h.handshake(f)
	hdr := custNodeHdr(f, custSeq(0), custPeerISS+1, wire.FlagACK, custTS(), custSeg)
	hdr[20+20+3] = 0 // NOP NOP TS: the timestamp option's length 0 is malformed (RFC 9293 §3.1)
	var th wire.TCPHeader
	if _, err := th.Parse(hdr[20:]); err == nil {
		t.Fatal("test setup: the options still parse")
	}
	h.k.Outbound(f, h.now, hdr, custPayload(custSeq(0), custSeg))
	if s := h.k.Stats(); s.HeldBytes != custSeg {
		t.Fatalf("held %d, want %d", s.HeldBytes, custSeg)
	}
}

func TestCustodyIgnoresREVOKEDWithoutREVOKE(t *testing.T) {
	h := newCustodyHarness(t, 1<<20)
	f := custFlow(40000)
	h.handshake(f)
	h.send(f, 0)
	rec, _ := custody.AppendPacket(nil, custNode, custGW, custody.Message{Type: custody.Revoked, Seq: custSeq(0)})
	h.k.Control(f, h.now, rec)
	h.k.Control(f, h.now, []byte{0x45, 0, 0})
	h.send(f, 1)
	if s := h.k.Stats(); s.HeldBytes != 2*custSeg {
		t.Fatalf("held %d: an unsolicited REVOKED changed custody", s.HeldBytes)
	}
}

func TestCustodyFlowClosedFreesItsCopies(t *testing.T) {
	h := newCustodyHarness(t, 1<<20)
	f := custFlow(40000)
	h.handshake(f)
	h.send(f, 0)
	h.k.FlowClosed(f)
	if s := h.k.Stats(); s.HeldBytes != 0 || s.Flows != 0 || h.k.Next() != 0 || len(h.k.flows) != 0 {
		t.Fatalf("after close: stats %+v, next %v, %d flows", s, h.k.Next(), len(h.k.flows))
	}
}

// A full control queue delays GRANT; it goes out a millisecond later.
func TestCustodyRetriesGrantWhenQueueIsFull(t *testing.T) {
	h := newCustodyHarness(t, 1<<20)
	f := custFlow(40000)
	h.io.full = 1
	if ms := h.handshake(f); len(ms) != 0 {
		t.Fatalf("messages with the queue full: %v", ms)
	}
	if d := h.k.Next(); d != h.now+ctlRetry {
		t.Fatalf("next %v, want the retry at %v", d, h.now+ctlRetry)
	}
	h.now += ctlRetry
	h.k.Tick(h.now)
	if ms := h.io.nodeMsgs(t); len(ms) != 1 || ms[0].Type != custody.Grant {
		t.Fatalf("after the retry the node got %v, want GRANT", ms)
	}
}

// A LOSS that finds the queue full goes out a millisecond later: the
// node's congestion control must hear of every repaired window.
func TestCustodyRetriesLossWhenQueueIsFull(t *testing.T) {
	h := newCustodyHarness(t, 1<<20)
	f := custFlow(40000)
	h.handshake(f)
	for i := range 5 {
		h.send(f, i)
	}
	h.now = 50 * time.Millisecond
	h.ack(f, 1)
	h.ack(f, 1, 2, 3)
	h.ack(f, 1, 2, 4)
	h.ack(f, 1, 2, 5)
	h.now += 30 * time.Millisecond
	h.io.full = 1
	h.ack(f, 5)
	if len(h.io.outside) != 1 || len(h.io.nodeMsgs(t)) != 0 {
		t.Fatalf("%d resends, LOSS sent into a full queue", len(h.io.outside))
	}
	if d := h.k.Next(); d != h.now+ctlRetry {
		t.Fatalf("next %v, want the retry at %v", d, h.now+ctlRetry)
	}
	h.now += ctlRetry
	h.k.Tick(h.now)
	ms := h.io.nodeMsgs(t)
	if len(ms) != 1 || ms[0] != (custody.Message{Type: custody.Loss, Start: custSeq(1), End: custSeq(2)}) {
		t.Fatalf("after the retry the node got %v, want LOSS{%d,%d}", ms, custSeq(1), custSeq(2))
	}
}

// The hooks' steady state (a segment out, its ACK in) allocates nothing.
func TestCustodyHooksAllocateNothing(t *testing.T) {
	h := newCustodyHarness(t, 1<<30)
	f := custFlow(40000)
	h.handshake(f)
	out, in, p := custSteady(f)
	step := func() {
		h.now += 10 * time.Microsecond
		h.k.Outbound(f, h.now, out.next(), p)
		h.k.Inbound(f, h.now, in.next())
	}
	for range 1000 {
		step()
	}
	if n := testing.AllocsPerRun(1000, step); n != 0 {
		t.Fatalf("%v allocations per segment", n)
	}
}

// custSeqPkts hands out copies of one packet with the sequence (or ACK)
// number advanced by custSeg each time, without allocating.
type custSeqPkts struct {
	b   []byte
	off int // where the number sits
	v   uint32
}

func (s *custSeqPkts) next() []byte {
	s.v += custSeg
	be.PutUint32(s.b[s.off:], s.v)
	return s.b
}

func custSteady(f *Flow) (out, in *custSeqPkts, p []byte) {
	first := uint32(custNodeISS + 1) // a variable: the numbers below wrap
	out = &custSeqPkts{b: custNodeHdr(f, 0, custPeerISS+1, wire.FlagACK, custTS(), custSeg), off: 24, v: first - custSeg}
	in = &custSeqPkts{b: custPeerPkt(f, custPeerISS+1, 0, wire.FlagACK, custTS()), off: 28, v: first - 64*custSeg}
	return out, in, make([]byte, custSeg)
}

// BenchmarkCustodyHooks is the gateway's per-segment custody cost in the
// steady state: Outbound (parse, copy) plus Inbound (parse, ACK), 64
// segments in flight.
func BenchmarkCustodyHooks(b *testing.B) {
	io := &fakeCustodyIO{}
	c, _ := newCustodian(CustodyConfig{Limit: 1 << 30, Gateway: custGW, IO: io})
	k := c.(*keeper)
	h := &custodyHarness{t: b, k: k, io: io}
	f := custFlow(40000)
	h.handshake(f)
	out, in, p := custSteady(f)
	var now time.Duration
	b.ReportAllocs()
	b.SetBytes(custSeg)
	for b.Loop() {
		now += 10 * time.Microsecond
		k.Outbound(f, now, out.next(), p)
		k.Inbound(f, now, in.next())
	}
}
