package gateway

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/ultcp/ultcp/capture"
	"github.com/ultcp/ultcp/fabric"
	"github.com/ultcp/ultcp/internal/wire"
	"github.com/ultcp/ultcp/link/tun"
)

// An outside host connects to a node: SYN in, SYN-ACK out, data both ways.

func outsideSYN() seg {
	return seg{src: remote4, dst: node4, sport: 40000, dport: 80, seq: 1000, flags: flagSYN, opts: mssOpt(1460)}
}

func TestSYNFromOutsideOpensConnToNodeWithClampedMSSAndTTLDecremented(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MTU = 1400 })
	h.inject(tun.Packet{Data: outsideSYN().bytes()})
	c := h.accept()
	got := h.recv(c)
	want := outsideSYN()
	want.opts = mssOpt(1360) // 1400 - 40
	want.ttl = 63
	w := want.bytes()
	// The node does not check checksums; compare everything else.
	got[10], got[11], w[10], w[11] = 0, 0, 0, 0
	got[36], got[37], w[36], w[37] = 0, 0, 0, 0
	if !bytes.Equal(got, w) {
		t.Fatalf("node got\n% x\nwant\n% x", got, w)
	}
	h.waitFor("MSSClamped = 1", func() bool { return h.g.Stats().MSSClamped.Load() == 1 })
}

func TestNodeSYNACKLeavesWithIPChecksumAndOffloadedTCPChecksum(t *testing.T) {
	h := newHarness(t, nil)
	h.inject(tun.Packet{Data: outsideSYN().bytes()})
	c := h.accept()
	h.recv(c)
	synack := seg{src: node4, dst: remote4, sport: 80, dport: 40000, seq: 5000, ack: 1001, flags: flagSYN | flagACK, opts: mssOpt(1460), zeroChecksums: true}
	if err := c.Send(synack.bytes()); err != nil {
		t.Fatal(err)
	}
	p := h.devOut()
	if !p.NeedsCsum || p.CsumStart != 20 || p.CsumOffset != 16 || p.GSOSize != 0 {
		t.Fatalf("packet header %+v; want NEEDS_CSUM at 20+16, no GSO", p)
	}
	checkOutsideChecksums(t, p)
	want := synack
	want.zeroChecksums = false
	want.ttl = 63
	if got := finishPartial(p); !bytes.Equal(got, want.bytes()) {
		t.Fatalf("device got\n% x\nwant\n% x", got, want.bytes())
	}
}

func TestSoftChecksumIsComputedWhileCopying(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.SoftChecksum = true })
	h.inject(tun.Packet{Data: outsideSYN().bytes()})
	c := h.accept()
	h.recv(c)
	data := seg{src: node4, dst: remote4, sport: 80, dport: 40000, seq: 5001, ack: 1001, flags: flagACK | flagPSH, payload: []byte("hello, world\n"), zeroChecksums: true}
	c.Send(data.bytes())
	p := h.devOut()
	if p.NeedsCsum || p.Payload != nil {
		t.Fatalf("soft checksum packet has NEEDS_CSUM or a separate payload: %+v", p)
	}
	want := data
	want.zeroChecksums = false
	want.ttl = 63
	if !bytes.Equal(p.Data, want.bytes()) {
		t.Fatalf("device got\n% x\nwant\n% x", p.Data, want.bytes())
	}
}

func TestOutsideDataReachesNodeAndGROSuperPacketStaysWhole(t *testing.T) {
	h := newHarness(t, nil)
	h.inject(tun.Packet{Data: outsideSYN().bytes()})
	c := h.accept()
	h.recv(c)
	payload := bytes.Repeat([]byte("0123456789abcdef"), 4000) // 64000 bytes, as GRO makes
	data := seg{src: remote4, dst: node4, sport: 40000, dport: 80, seq: 1001, ack: 5001, flags: flagACK, payload: payload}
	b := data.bytes()
	// What the kernel hands over for a GRO packet: a partial checksum.
	h.inject(tun.Packet{Data: b, GSOSize: 1448, NeedsCsum: true, CsumStart: 20, CsumOffset: 16})
	got := h.recv(c)
	if len(got) != len(b) || !bytes.Equal(got[40:], payload) {
		t.Fatalf("node got a %d-byte record, want the %d-byte super-packet whole", len(got), len(b))
	}
	h.waitFor("InGRO = 1", func() bool { return h.g.Stats().InGRO.Load() == 1 })
}

func TestNodeDialsOutsideAndTheReplyComesBackOnTheSameConn(t *testing.T) {
	h := newHarness(t, nil)
	c := h.dial()
	syn := seg{src: node4, dst: remote4, sport: 50000, dport: 443, seq: 7000, flags: flagSYN, opts: mssOpt(1460), zeroChecksums: true}
	if err := c.Send(syn.bytes()); err != nil {
		t.Fatal(err)
	}
	p := h.devOut()
	checkOutsideChecksums(t, p)
	if got := binary.BigEndian.Uint32(p.Data[24:]); got != 7000 {
		t.Fatalf("SYN seq %d, want 7000", got)
	}
	synack := seg{src: remote4, dst: node4, sport: 443, dport: 50000, seq: 9000, ack: 7001, flags: flagSYN | flagACK, opts: mssOpt(1460)}
	h.inject(tun.Packet{Data: synack.bytes()})
	got := h.recv(c)
	if binary.BigEndian.Uint32(got[24:]) != 9000 || got[33] != flagSYN|flagACK {
		t.Fatalf("node got % x, want the SYN-ACK", got[:40])
	}
	h.waitFor("Flows = 1", func() bool { return h.g.Stats().Flows.Load() == 1 })
}

// establishedFromNode opens a flow from the node with the outside MSS mss
// and returns the node's connection.
func establishedFromNode(h *harness, mss uint16) *fabric.Conn {
	h.t.Helper()
	c := h.dial()
	syn := seg{src: node4, dst: remote4, sport: 50000, dport: 443, seq: 7000, flags: flagSYN, opts: mssOpt(1460), zeroChecksums: true}
	c.Send(syn.bytes())
	h.devOut()
	synack := seg{src: remote4, dst: node4, sport: 443, dport: 50000, seq: 9000, ack: 7001, flags: flagSYN | flagACK, opts: mssOpt(mss)}
	h.inject(tun.Packet{Data: synack.bytes()})
	h.recv(c)
	return c
}

func TestConsecutiveSegmentsAreCoalescedIntoOneGSOWrite(t *testing.T) {
	h := newHarness(t, nil)
	c := establishedFromNode(h, 1460)
	// Four segments with timestamps: 1460 - 12 = 1448 bytes each, the last
	// shorter. Sent while the gateway is busy elsewhere is not needed: the
	// records are all in the ring before it reads them because they are
	// written in one go below.
	var all []byte
	var recs [][]byte
	for i, n := range []int{1448, 1448, 1448, 700} {
		p := bytes.Repeat([]byte{byte('a' + i)}, n)
		all = append(all, p...)
		s := seg{src: node4, dst: remote4, sport: 50000, dport: 443, seq: 7001 + uint32(i*1448), ack: 9001, flags: flagACK, opts: tsOpt(1, 2), payload: p, zeroChecksums: true}
		recs = append(recs, s.bytes())
	}
	recs[3][20+13] |= flagPSH
	for _, r := range recs {
		// Reserve + Commit of all four before the gateway wakes is not
		// guaranteed; the test accepts one GSO packet or, if the
		// gateway raced ahead, checks the bytes all the same.
		if err := c.Send(r); err != nil {
			t.Fatal(err)
		}
	}
	var got []byte
	var packets, gsoPackets int
	for len(got) < len(all) {
		p := h.devOut()
		packets++
		if p.GSOSize != 0 {
			gsoPackets++
			if p.GSOSize != 1448 {
				t.Fatalf("GSOSize %d, want 1448", p.GSOSize)
			}
		}
		got = append(got, p.Data[52:]...)
	}
	if !bytes.Equal(got, all) {
		t.Fatal("payload bytes differ")
	}
	if packets == 1 && h.g.Stats().OutCoalesced.Load() != 4 {
		t.Fatalf("one packet but OutCoalesced = %d, want 4", h.g.Stats().OutCoalesced.Load())
	}
	t.Logf("4 records → %d packets (%d GSO)", packets, gsoPackets)
}

func TestLargeRecordLeavesAsGSOCutAt64KiB(t *testing.T) {
	h := newHarness(t, nil)
	c := establishedFromNode(h, 1460)
	payload := make([]byte, 100000)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	s := seg{src: node4, dst: remote4, sport: 50000, dport: 443, seq: 7001, ack: 9001, flags: flagACK | flagPSH, payload: payload, zeroChecksums: true}
	b := s.bytes()
	binary.BigEndian.PutUint16(b[2:], 0) // BIG TCP: longer than tot_len can say
	if err := c.Send(b); err != nil {
		t.Fatal(err)
	}
	p1, p2 := h.devOut(), h.devOut()
	per := (65535 - 40) / 1460 * 1460
	if p1.GSOSize != 1460 || len(p1.Data) != 40+per || p1.Data[33]&flagPSH != 0 {
		t.Fatalf("first piece: GSO %d, %d bytes, flags %#x; want GSO 1460, %d bytes, no PSH", p1.GSOSize, len(p1.Data), p1.Data[33], 40+per)
	}
	if got := binary.BigEndian.Uint32(p2.Data[24:]); got != 7001+uint32(per) || p2.Data[33]&flagPSH == 0 {
		t.Fatalf("second piece: seq %d flags %#x; want seq %d with PSH", got, p2.Data[33], 7001+per)
	}
	if !bytes.Equal(append(p1.Data[40:], p2.Data[40:]...), payload) {
		t.Fatal("payload differs")
	}
	for _, p := range []tun.Packet{p1, p2} {
		if wire.Checksum(p.Data[:20]) != 0 {
			t.Fatal("IPv4 header checksum wrong")
		}
		ph := wire.PseudoHeaderSum(node4, remote4, 6, len(p.Data)-20)
		if got := binary.BigEndian.Uint16(p.Data[36:]); got != ph {
			t.Fatalf("GSO partial checksum %#x, want the pseudo-header sum %#x", got, ph)
		}
	}
}

// Segments that belong to nothing.

func TestACKForNoFlowIsAnsweredWithRSTAtItsAckNumber(t *testing.T) {
	h := newHarness(t, nil)
	stray := seg{src: remote4, dst: node4, sport: 40001, dport: 80, seq: 111, ack: 222, flags: flagACK, payload: []byte("x")}
	h.inject(tun.Packet{Data: stray.bytes()})
	p := h.devOut()
	want := seg{src: node4, dst: remote4, sport: 80, dport: 40001, seq: 222, flags: flagRST, zeroWin: true}
	if !bytes.Equal(p.Data, want.bytes()) {
		t.Fatalf("got\n% x\nwant\n% x", p.Data, want.bytes())
	}
	h.waitFor("no_flow = 1", func() bool { return h.g.Stats().Drop("no_flow") == 1 })
}

func TestFINWithoutACKForNoFlowIsAnsweredWithRSTACK(t *testing.T) {
	h := newHarness(t, nil)
	stray := seg{src: remote4, dst: node4, sport: 40001, dport: 80, seq: 111, flags: flagFIN, payload: []byte("ab")}
	h.inject(tun.Packet{Data: stray.bytes()})
	p := h.devOut()
	// RFC 9293 §3.10.7.1: <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>; SEG.LEN counts the FIN.
	want := seg{src: node4, dst: remote4, sport: 80, dport: 40001, seq: 0, ack: 114, flags: flagRST | flagACK, zeroWin: true}
	if !bytes.Equal(p.Data, want.bytes()) {
		t.Fatalf("got\n% x\nwant\n% x", p.Data, want.bytes())
	}
}

func TestRSTForNoFlowIsDroppedSilently(t *testing.T) {
	h := newHarness(t, nil)
	h.inject(tun.Packet{Data: seg{src: remote4, dst: node4, sport: 1, dport: 2, seq: 5, flags: flagRST}.bytes()})
	h.noDevOut()
	h.waitFor("no_flow count", func() bool { return h.g.Stats().Drop("no_flow") == 1 })
}

func TestSYNForAddressWithoutNodeGetsHostUnreachable(t *testing.T) {
	h := newHarness(t, nil)
	syn := seg{src: remote4, dst: noNode4, sport: 40000, dport: 80, seq: 1, flags: flagSYN}
	sb := syn.bytes()
	h.inject(tun.Packet{Data: sb})
	p := h.devOut()
	checkOutsideChecksums(t, p)
	b := p.Data
	if b[9] != 1 || b[20] != 3 || b[21] != 1 {
		t.Fatalf("got proto %d ICMP %d/%d; want ICMP 3/1 (host unreachable)", b[9], b[20], b[21])
	}
	if wire.IPv4Addr(b[12:16]) != noNode4 || wire.IPv4Addr(b[16:20]) != remote4 {
		t.Fatalf("ICMP from %v to %v; want from %v to %v", wire.IPv4Addr(b[12:16]), wire.IPv4Addr(b[16:20]), noNode4, remote4)
	}
	if !bytes.Equal(b[28:], sb[:28]) {
		t.Fatalf("quote % x, want the IP header and 8 bytes % x", b[28:], sb[:28])
	}
	h.waitFor("no_node = 1", func() bool { return h.g.Stats().Drop("no_node") == 1 })
}

func echoRequest(dst wire.IPv4Addr) []byte {
	b := make([]byte, 20+8+5)
	b[0] = 0x45
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	b[8] = 64
	b[9] = 1
	copy(b[12:], remote4[:])
	copy(b[16:], dst[:])
	binary.BigEndian.PutUint16(b[10:], wire.Checksum(b[:20]))
	m := b[20:]
	m[0] = 8
	binary.BigEndian.PutUint32(m[4:], 0x12340007) // id 0x1234, seq 7
	copy(m[8:], "ping!")
	binary.BigEndian.PutUint16(m[2:], wire.Checksum(m))
	return b
}

func TestEchoRequestForLiveNodeIsAnsweredByTheGateway(t *testing.T) {
	h := newHarness(t, nil)
	h.inject(tun.Packet{Data: echoRequest(node4)})
	p := h.devOut()
	checkOutsideChecksums(t, p)
	b := p.Data
	if b[9] != 1 || b[20] != 0 || binary.BigEndian.Uint32(b[24:]) != 0x12340007 || string(b[28:]) != "ping!" {
		t.Fatalf("reply % x; want echo reply id 0x1234 seq 7 data ping!", b)
	}
	if wire.IPv4Addr(b[12:16]) != node4 || wire.IPv4Addr(b[16:20]) != remote4 {
		t.Fatal("reply addresses not swapped")
	}
}

func TestEchoRequestForAddressWithoutNodeGetsHostUnreachable(t *testing.T) {
	h := newHarness(t, nil)
	h.inject(tun.Packet{Data: echoRequest(noNode4)})
	p := h.devOut()
	if p.Data[9] != 1 || p.Data[20] != 3 || p.Data[21] != 1 {
		t.Fatalf("got ICMP %d/%d, want 3/1", p.Data[20], p.Data[21])
	}
}

func TestICMPFragmentationNeededGoesOnTheQuotedFlowsRing(t *testing.T) {
	// From a router outside, and from the gateway's own kernel, which
	// sends the errors of packets it routes out of the TUN device from
	// the TUN's address: the gateway's.
	for _, router := range []wire.IPv4Addr{{192, 168, 77, 254}, gw4} {
		t.Run(router.Netip().String(), func(t *testing.T) { testFragmentationNeededFrom(t, router) })
	}
}

func testFragmentationNeededFrom(t *testing.T, router wire.IPv4Addr) {
	h := newHarness(t, nil)
	c := establishedFromNode(h, 1460)
	// The node sends 1400 bytes; a router on the way says that was too
	// big (RFC 1191).
	c.Send(seg{src: node4, dst: remote4, sport: 50000, dport: 443, seq: 7001, ack: 9001, flags: flagACK, payload: make([]byte, 1400), zeroChecksums: true}.bytes())
	h.devOut()
	quoted := seg{src: node4, dst: remote4, sport: 50000, dport: 443, seq: 7001, ack: 9001, flags: flagACK, payload: make([]byte, 1400)}.bytes()[:28]
	b := fragNeededFrom(router, quoted, 1280)
	h.inject(tun.Packet{Data: b})
	got := h.recv(c)
	if got[9] != 1 || !bytes.Equal(got[20:], b[20:]) {
		t.Fatalf("node got % x; want the ICMP error", got)
	}
	h.waitFor("ICMPErrorsRouted = 1", func() bool { return h.g.Stats().ICMPErrorsRouted.Load() == 1 })
	// The gateway's GSO follows the smaller path MTU too: a 4000-byte
	// segment now goes out cut at 1280 - 40 - 12 (timestamps) bytes.
	big := seg{src: node4, dst: remote4, sport: 50000, dport: 443, seq: 8401, ack: 9001, flags: flagACK, opts: tsOpt(1, 2), payload: make([]byte, 4000), zeroChecksums: true}
	c.Send(big.bytes())
	if p := h.devOut(); p.GSOSize != 1228 {
		t.Fatalf("GSOSize %d after fragmentation needed at MTU 1280, want 1228", p.GSOSize)
	}
}

func TestTCPFromTheGatewaysOwnAddressIsSpoofed(t *testing.T) {
	// Only ICMP may come from the gateway's address on the device side
	// (its kernel's errors); TCP from a cluster address is spoofed.
	h := newHarness(t, nil)
	syn := outsideSYN()
	syn.src = gw4
	h.inject(tun.Packet{Data: syn.bytes()})
	h.waitFor("spoofed count", func() bool { return h.g.Stats().Drop("spoofed") == 1 })
}

func TestBadTCPChecksumFromDeviceIsDroppedUnlessTheKernelVouches(t *testing.T) {
	h := newHarness(t, nil)
	bad := outsideSYN()
	bad.corruptChecksums = true
	h.inject(tun.Packet{Data: bad.bytes()})
	h.waitFor("bad_checksum count", func() bool { return h.g.Stats().Drop("bad_checksum") == 1 })
	// DATA_VALID: the kernel checked it (here it lies; the gateway trusts it).
	h.inject(tun.Packet{Data: bad.bytes(), DataValid: true})
	h.accept()
}

func TestRecordFromAnotherAddressClosesTheFlow(t *testing.T) {
	h := newHarness(t, nil)
	c := establishedFromNode(h, 1460)
	spoof := seg{src: wire.IPv4Addr{10, 77, 0, 3}, dst: remote4, sport: 50000, dport: 443, seq: 7001, ack: 9001, flags: flagACK, zeroChecksums: true}
	c.Send(spoof.bytes())
	h.waitFor("wrong_flow drop", func() bool { return h.g.Stats().Drop("wrong_flow") == 1 })
	h.waitFor("the flow closed", func() bool { return h.g.Stats().Flows.Load() == 0 })
	h.noDevOut()
}

func TestGarbageRecordsAreCountedNeverForwarded(t *testing.T) {
	h := newHarness(t, nil)
	for i, rec := range [][]byte{
		{},                     // empty
		{0x45, 0, 0, 3},        // shorter than an IPv4 header
		make([]byte, 40),       // version 0
		{0x4f, 0, 0, 20, 0, 0}, // IHL beyond the record
	} {
		c := h.dial()
		c.Send(rec)
		h.waitFor("bad_record count", func() bool { return h.g.Stats().Drop("bad_record") == uint64(i+1) })
	}
	h.noDevOut()
	if n := h.g.Stats().Flows.Load(); n != 0 {
		t.Fatalf("Flows = %d after connections that never named a flow, want 0", n)
	}
}

func TestNodeClosingItsConnEndsTheFlow(t *testing.T) {
	h := newHarness(t, nil)
	c := establishedFromNode(h, 1460)
	c.Close()
	h.waitFor("the flow closed", func() bool { return h.g.Stats().Flows.Load() == 0 })
	if h.g.Stats().FlowsClosed[closeNodeClosed].Load() != 1 {
		t.Fatal("node_closed not counted")
	}
}

func TestIdleFlowIsClosedAfterTheTimeout(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.IdleTimeout = time.Minute })
	c := establishedFromNode(h, 1460)
	_ = c
	h.skew.Store(int64(2 * time.Minute))
	h.g.node.Wake()
	h.waitFor("the idle flow closed", func() bool { return h.g.Stats().FlowsClosed[closeIdle].Load() == 1 })
}

func TestAFlowWithMoreRecordsThanOneTurnsBudgetIsServedToTheEnd(t *testing.T) {
	h := newHarness(t, nil)
	c := establishedFromNode(h, 1460)
	// Pure ACKs with distinct ACK numbers: never coalesced, one packet
	// each, several turns' worth (recordBudget per turn).
	n := 3*recordBudget + 5
	for i := range n {
		s := seg{src: node4, dst: remote4, sport: 50000, dport: 443, seq: 7001, ack: 9001 + uint32(i), flags: flagACK, zeroChecksums: true}
		if err := c.Send(s.bytes()); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		p := h.devOut()
		if got := binary.BigEndian.Uint32(p.Data[28:]); got != 9001+uint32(i) {
			t.Fatalf("packet %d acks %d, want %d", i, got, 9001+i)
		}
	}
}

func TestSecondGatewayOnTheFabricIsAClearError(t *testing.T) {
	h := newHarness(t, nil)
	_, err := New(Config{FabricDir: h.dir, Addr: netip.MustParseAddr("10.77.0.254"), Device: newMemDevice()})
	if !errors.Is(err, fabric.ErrGatewayExists) || !strings.Contains(err.Error(), "10.77.0.1 (pid") {
		t.Fatalf("second gateway: %v; want ErrGatewayExists naming 10.77.0.1 and its pid", err)
	}
}

func TestGatewayAddressHeldByANodeIsAClearError(t *testing.T) {
	h := newHarness(t, nil)
	_, err := New(Config{FabricDir: h.dir, Addr: nodeAddr, Device: newMemDevice()})
	if !errors.Is(err, fabric.ErrAddrInUse) || !strings.Contains(err.Error(), "10.77.0.2") {
		t.Fatalf("gateway at a node's address: %v; want ErrAddrInUse naming 10.77.0.2", err)
	}
}

func TestCaptureRecordsBothSides(t *testing.T) {
	var dev, fab bytes.Buffer
	cd, _ := capture.NewWriter(&dev)
	cf, _ := capture.NewWriter(&fab)
	h := newHarness(t, func(c *Config) { c.Capture, c.CaptureFabric = cd, cf })
	h.inject(tun.Packet{Data: outsideSYN().bytes()})
	c := h.accept()
	h.recv(c)
	c.Send(seg{src: node4, dst: remote4, sport: 80, dport: 40000, seq: 5000, ack: 1001, flags: flagSYN | flagACK, zeroChecksums: true}.bytes())
	h.devOut()
	// Device side: the SYN in and the SYN-ACK out; fabric side: the SYN
	// put on the ring and the SYN-ACK read from it.
	h.waitFor("2 packets on each side", func() bool { return cd.Packets() == 2 && cf.Packets() == 2 })
}

func TestDMARecordIsPulledAndLeavesAsGSOPieces(t *testing.T) {
	h := newHarness(t, nil)
	c := establishedFromNode(h, 1460)
	payload := make([]byte, 200000)
	for i := range payload {
		payload[i] = byte(i * 13)
	}
	hdr := seg{src: node4, dst: remote4, sport: 50000, dport: 443, seq: 7001, ack: 9001, flags: flagACK | flagPSH, zeroChecksums: true}.bytes()
	binary.BigEndian.PutUint16(hdr[2:], 0) // BIG TCP: the record length is authoritative
	sent := make(chan error, 1)
	go func() { sent <- c.SendDMA(hdr, payload) }()
	var got []byte
	seq := uint32(7001)
	for len(got) < len(payload) {
		p := h.devOut()
		if s := binary.BigEndian.Uint32(p.Data[24:]); s != seq {
			t.Fatalf("piece at seq %d, want %d", s, seq)
		}
		got = append(got, p.Data[40:]...)
		seq += uint32(len(p.Data) - 40)
		if last := len(got) == len(payload); (p.Data[33]&flagPSH != 0) != last {
			t.Fatalf("PSH %v on the piece ending at %d", !last, len(got))
		}
	}
	if !bytes.Equal(got, payload) {
		t.Fatal("pulled payload differs")
	}
	if err := <-sent; err != nil {
		t.Fatalf("SendDMA: %v", err)
	}
}

func TestSYNsArrivingDuringFirstContactAllReachTheNode(t *testing.T) {
	h := newHarness(t, nil)
	for port := uint16(40000); port < 40005; port++ {
		s := outsideSYN()
		s.sport = port
		h.inject(tun.Packet{Data: s.bytes()})
	}
	seen := map[uint16]bool{}
	for range 5 {
		r := h.recv(h.accept())
		seen[binary.BigEndian.Uint16(r[20:])] = true
	}
	if len(seen) != 5 {
		t.Fatalf("the node got SYNs from ports %v, want 40000..40004", seen)
	}
	h.waitFor("5 flows", func() bool { return h.g.Stats().Flows.Load() == 5 })
}

func TestNodeDeathResetsItsOutsidePeerAtTheNodesSequence(t *testing.T) {
	h := newHarness(t, nil)
	c := establishedFromNode(h, 1460)
	data := seg{src: node4, dst: remote4, sport: 50000, dport: 443, seq: 7001, ack: 9001, flags: flagACK | flagPSH, payload: []byte("abc"), zeroChecksums: true}
	c.Send(data.bytes())
	h.devOut()
	h.node.Close() // the node leaves: its fabric conns fail at the gateway
	p := h.devOut()
	want := seg{src: node4, dst: remote4, sport: 50000, dport: 443, seq: 7004, ack: 9001, flags: flagRST | flagACK, zeroWin: true}
	if !bytes.Equal(p.Data, want.bytes()) {
		t.Fatalf("got\n% x\nwant\n% x", p.Data, want.bytes())
	}
	h.waitFor("node_error close", func() bool { return h.g.Stats().FlowsClosed[closeNodeError].Load() == 1 })
}

func TestPacketsForANodeWhoseRingIsFullWaitAndArriveInOrder(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.RingSize = 64 << 10 })
	h.inject(tun.Packet{Data: outsideSYN().bytes()})
	c := h.accept()
	h.recv(c)
	// 40 segments of 4000 bytes: 160 kB, more than the 64 KiB ring; the
	// node reads nothing until all were sent.
	const n = 40
	for i := range n {
		s := seg{src: remote4, dst: node4, sport: 40000, dport: 80, seq: 1001 + uint32(i*4000), ack: 5001, flags: flagACK, payload: bytes.Repeat([]byte{byte(i)}, 4000)}
		h.inject(tun.Packet{Data: s.bytes()})
	}
	h.waitFor("queued packets", func() bool { return h.g.Stats().Queued.Load() > 0 })
	for i := range n {
		r := h.recv(c)
		if got := binary.BigEndian.Uint32(r[24:]); got != 1001+uint32(i*4000) || r[40] != byte(i) {
			t.Fatalf("record %d: seq %d, first byte %d; want seq %d", i, got, r[40], 1001+i*4000)
		}
	}
	if d := h.g.Stats().Drop("ring_full"); d != 0 {
		t.Fatalf("ring_full drops %d, want 0", d)
	}
}

func TestFlowFromOutsideIsClosedOnceBothFINsAreAcknowledged(t *testing.T) {
	h := newHarness(t, nil)
	h.inject(tun.Packet{Data: outsideSYN().bytes()})
	c := h.accept()
	h.recv(c)
	node := func(s seg) {
		s.src, s.dst, s.sport, s.dport, s.zeroChecksums = node4, remote4, 80, 40000, true
		c.Send(s.bytes())
		h.devOut()
	}
	outside := func(s seg) {
		s.src, s.dst, s.sport, s.dport = remote4, node4, 40000, 80
		h.inject(tun.Packet{Data: s.bytes()})
		h.recv(c)
	}
	node(seg{seq: 5000, ack: 1001, flags: flagSYN | flagACK})
	outside(seg{seq: 1001, ack: 5001, flags: flagACK})
	node(seg{seq: 5001, ack: 1001, flags: flagFIN | flagACK})    // the node closes first
	outside(seg{seq: 1001, ack: 5002, flags: flagFIN | flagACK}) // ACK of its FIN, and the outside's FIN
	if n := h.g.Stats().FlowsClosed[closeFinished].Load(); n != 0 {
		t.Fatal("flow closed before the last ACK")
	}
	node(seg{seq: 5002, ack: 1002, flags: flagACK}) // the last ACK: the node enters TIME-WAIT
	h.waitFor("the flow closed as finished", func() bool { return h.g.Stats().FlowsClosed[closeFinished].Load() == 1 })
	// The node sees the end of its ring.
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Recv(make([]byte, 100)); err != io.EOF {
		t.Fatalf("node Recv after the flow finished: %v, want io.EOF", err)
	}
}

// fragNeeded builds ICMP fragmentation needed (RFC 1191) from a router for
// a quoted segment of the node's with sequence number seq.
func fragNeeded(seq uint32, mtu uint16) []byte {
	quoted := seg{src: node4, dst: remote4, sport: 50000, dport: 443, seq: seq, ack: 9001, flags: flagACK, payload: make([]byte, 1400)}.bytes()[:28]
	return fragNeededFrom(wire.IPv4Addr{192, 168, 77, 254}, quoted, mtu)
}

func TestForgedFragmentationNeededLeavesTheGSOSizeAlone(t *testing.T) {
	h := newHarness(t, nil)
	c := establishedFromNode(h, 1460)
	// Quotes a sequence number the node never sent, and a tiny MTU.
	h.inject(tun.Packet{Data: fragNeeded(123456789, 100)})
	h.recv(c) // the node gets it and judges it itself
	big := seg{src: node4, dst: remote4, sport: 50000, dport: 443, seq: 7001, ack: 9001, flags: flagACK, opts: tsOpt(1, 2), payload: make([]byte, 4000), zeroChecksums: true}
	c.Send(big.bytes())
	if p := h.devOut(); p.GSOSize != 1448 {
		t.Fatalf("GSOSize %d after a forged ICMP, want 1448", p.GSOSize)
	}
}

// On a flow the outside opened, the node's first sequence number comes
// with its SYN-ACK. An ISN in the upper half of the sequence space must
// still make the node's later segments "recent" for an ICMP error that
// quotes them (it did not: compared with a zero start, such an ISN never
// counted as ahead, and half of all path MTU discoveries failed).
func TestFragmentationNeededOnAFlowFromOutsideWithAnUpperHalfISN(t *testing.T) {
	h := newHarness(t, nil)
	h.inject(tun.Packet{Data: outsideSYN().bytes()})
	c := h.accept()
	h.recv(c)
	const isn = 0x90000000
	c.Send(seg{src: node4, dst: remote4, sport: 80, dport: 40000, seq: isn, ack: 1001, flags: flagSYN | flagACK, opts: mssOpt(1460), zeroChecksums: true}.bytes())
	h.devOut()
	data := seg{src: node4, dst: remote4, sport: 80, dport: 40000, seq: isn + 1, ack: 1001, flags: flagACK, opts: tsOpt(1, 2), payload: make([]byte, 1400), zeroChecksums: true}
	c.Send(data.bytes())
	h.devOut()
	quoted := seg{src: node4, dst: remote4, sport: 80, dport: 40000, seq: isn + 1, ack: 1001, flags: flagACK, payload: make([]byte, 1400)}.bytes()[:28]
	b := fragNeededFrom(gw4, quoted, 1280) // from the gateway's kernel, as on the interop path
	h.inject(tun.Packet{Data: b})
	h.recv(c)
	big := seg{src: node4, dst: remote4, sport: 80, dport: 40000, seq: isn + 1401, ack: 1001, flags: flagACK, opts: tsOpt(1, 2), payload: make([]byte, 4000), zeroChecksums: true}
	c.Send(big.bytes())
	if p := h.devOut(); p.GSOSize != 1228 {
		t.Fatalf("GSOSize %d after fragmentation needed at MTU 1280, want 1228", p.GSOSize)
	}
}

// fragNeededFrom builds an ICMP "fragmentation needed" (type 3, code 4,
// RFC 1191) from router to node4 with next-hop MTU mtu, quoting quoted.
func fragNeededFrom(router wire.IPv4Addr, quoted []byte, mtu uint16) []byte {
	b := make([]byte, 20+8+len(quoted))
	b[0] = 0x45
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	b[8], b[9] = 64, 1
	copy(b[12:], router[:])
	copy(b[16:], node4[:])
	binary.BigEndian.PutUint16(b[10:], wire.Checksum(b[:20]))
	m := b[20:]
	m[0], m[1] = 3, 4
	binary.BigEndian.PutUint16(m[6:], mtu)
	copy(m[8:], quoted)
	binary.BigEndian.PutUint16(m[2:], wire.Checksum(m))
	return b
}
