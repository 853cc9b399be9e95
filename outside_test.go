package ultcp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/ultcp/ultcp/fabric"
	"github.com/ultcp/ultcp/internal/custody"
	"github.com/ultcp/ultcp/internal/proc"
	"github.com/ultcp/ultcp/internal/tcp"
	"github.com/ultcp/ultcp/internal/wire"
)

// Tests of the node's side of the gateway (gateway.go, custody.go). A
// fake gateway joins the fabric at 10.77.0.254, claims the role, and plays
// literal packets of an outside host on the flow's fabric conn, as the
// real gateway forwards them.

var (
	addrGW   = netip.MustParseAddr("10.77.0.254")
	extHost  = netip.MustParseAddrPort("192.0.2.10:80")
	extPeer  = netip.MustParseAddrPort("203.0.113.5:5555")
	extSYNTS = uint32(1000) // the outside host's first TSval
)

// joinGateway joins the fabric in dir at addrGW and claims the gateway
// role.
func joinGateway(t testing.TB, dir string) *fabric.Node {
	t.Helper()
	f, err := fabric.Open(fabric.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	n, err := f.Join(addrGW)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	if err := n.ClaimGateway(); err != nil {
		t.Fatal(err)
	}
	return n
}

// flow is the fake gateway's end of one flow: the fabric conn to the node
// and the outside host it speaks for, with that host's sequence and
// timestamp state.
type flow struct {
	fc         *fabric.Conn
	node, ext  netip.AddrPort
	snd, rcv   uint32 // the outside host's SND.NXT, and RCV.NXT (what it acknowledges)
	tsVal, ecr uint32
	scratch    []byte // sendHdr's buffer, reused so that benchmarks count the node's allocations only
}

// send writes a segment from the outside host with the given flags and
// payload, carrying the current SEQ, ACK and a timestamp (RFC 7323 §3.2:
// every segment once they are agreed).
func (f *flow) send(t testing.TB, flags wire.TCPFlags, payload []byte) {
	t.Helper()
	h := wire.TCPHeader{SrcPort: f.ext.Port(), DstPort: f.node.Port(), Seq: f.snd, Ack: f.rcv, Flags: flags, Window: 65535}
	h.Options.HasTimestamp, h.Options.TSVal, h.Options.TSEcr = true, f.tsVal, f.ecr
	f.tsVal++
	f.sendHdr(t, h, payload)
	f.snd += uint32(len(payload))
}

// sendHdr writes h and payload from the outside host to the node.
func (f *flow) sendHdr(t testing.TB, h wire.TCPHeader, payload []byte) {
	t.Helper()
	if cap(f.scratch) < maxHdrLen+len(payload) {
		f.scratch = make([]byte, maxHdrLen+len(payload))
	}
	b := f.scratch[:maxHdrLen+len(payload)]
	n, err := encodeHeaders(b, f.ext.Addr().As4(), f.node.Addr().As4(), makeIPFields(0, DefaultTTL), &h, len(payload))
	if err != nil {
		t.Fatal(err)
	}
	n += copy(b[n:], payload)
	if err := f.fc.Send(b[:n]); err != nil {
		t.Fatal(err)
	}
}

// record reads the next record the node sent on the flow.
func (f *flow) record(t testing.TB) []byte {
	t.Helper()
	f.fc.SetReadDeadline(deadline())
	buf := make([]byte, 1<<17)
	n, err := f.fc.Recv(buf)
	if err != nil {
		t.Fatalf("nothing from the node: %v", err)
	}
	return buf[:n]
}

// recv reads the next segment the node sent to the outside host; it must
// be addressed from the node to that host (not to the gateway).
func (f *flow) recv(t testing.TB) tcp.Segment {
	t.Helper()
	rec := f.record(t)
	var seg tcp.Segment
	p, err := decodeRecord(rec, len(rec), f.node.Addr().As4(), f.ext.Addr().As4(), &seg)
	if err != nil {
		t.Fatalf("record from the node is not a packet %v → %v: %v", f.node.Addr(), f.ext.Addr(), err)
	}
	seg.Payload = p
	if seg.Hdr.Options.HasTimestamp {
		f.ecr = seg.Hdr.Options.TSVal
	}
	return seg
}

// custody writes a custody message record from src (the gateway, unless a
// test forges it) to the node.
func (f *flow) custody(t testing.TB, src netip.Addr, m custody.Message) {
	t.Helper()
	var b [ipHdrLen + custody.MaxLen]byte
	msg, err := m.Append(b[ipHdrLen:ipHdrLen])
	if err != nil {
		t.Fatal(err)
	}
	n := ipHdrLen + len(msg)
	encodeIPv4(b[:], src.As4(), f.node.Addr().As4(), makeIPFields(0, DefaultTTL), custody.Proto, n)
	if err := f.fc.Send(b[:n]); err != nil {
		t.Fatal(err)
	}
}

// synAck answers the node's SYN as the outside host: MSS 1460, SACK
// permitted, window scale 7, timestamps (what Linux offers).
func (f *flow) synAck(t testing.TB, syn *tcp.Segment) {
	t.Helper()
	f.snd, f.rcv, f.ecr = 7000, syn.Hdr.Seq+1, syn.Hdr.Options.TSVal
	h := wire.TCPHeader{SrcPort: f.ext.Port(), DstPort: f.node.Port(), Seq: f.snd, Ack: f.rcv,
		Flags: wire.FlagSYN | wire.FlagACK, Window: 65535}
	h.Options = wire.TCPOptions{MSS: 1460, SACKPermitted: true, HasWScale: true, WScale: 7,
		HasTimestamp: true, TSVal: f.tsVal, TSEcr: f.ecr}
	f.tsVal++
	f.sendHdr(t, h, nil)
	f.snd++
}

// dialOutside dials extHost from s in the background, takes the flow's
// fabric conn at the gateway gw and returns it with the SYN it carried,
// and the channel of the dial's result.
func dialOutside(t *testing.T, s *Stack, gw *fabric.Node) (*flow, tcp.Segment, chan dialResult) {
	t.Helper()
	res := make(chan dialResult, 1)
	go func() {
		d := Dialer{Stack: s, Timeout: 10 * time.Second}
		c, err := d.DialTCP(context.Background(), "tcp", extHost.String())
		res <- dialResult{c, err}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fc, err := gw.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	f := &flow{fc: fc, ext: extHost, tsVal: extSYNTS}
	rec := f.record(t)
	// The node's port is in the SYN itself: parse it before decodeRecord.
	if len(rec) < 40 {
		t.Fatalf("SYN record of %d bytes", len(rec))
	}
	f.node = netip.AddrPortFrom(fc.RemoteAddr(), uint16(rec[20])<<8|uint16(rec[21]))
	var syn tcp.Segment
	if _, err := decodeRecord(rec, len(rec), f.node.Addr().As4(), extHost.Addr().As4(), &syn); err != nil {
		t.Fatalf("SYN record is not a packet %v → %v: %v", f.node.Addr(), extHost, err)
	}
	f.ecr = syn.Hdr.Options.TSVal
	return f, syn, res
}

// establishOutside dials extHost through gw and completes the handshake.
func establishOutside(t *testing.T, s *Stack, gw *fabric.Node) (*flow, *Conn) {
	t.Helper()
	f, syn, res := dialOutside(t, s, gw)
	f.synAck(t, &syn)
	r := <-res
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Cleanup(func() { r.c.Close() })
	if ack := f.recv(t); ack.Hdr.Flags != wire.FlagACK || ack.Hdr.Ack != f.snd {
		t.Fatalf("handshake's last segment %v, want <ACK=%d>", ack.String(), f.snd)
	}
	r.c.SetDeadline(deadline())
	return f, r.c
}

// A Dial to an address outside the subnet with no gateway registered
// fails at once with ENETUNREACH, as connect(2) without a route.
func TestDialOutsideWithoutGatewayIsNetworkUnreachable(t *testing.T) {
	dir := testDir(t)
	a := newStack(t, dir, addrA)
	_, err := a.Dial("tcp", extHost.String())
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "dial" || !errors.Is(err, syscall.ENETUNREACH) {
		t.Fatalf("Dial %v without a gateway: %v, want a dial *net.OpError wrapping ENETUNREACH", extHost, err)
	}
	if g := a.GatewayStats(); g.NoGateway != 1 || g.Dials != 0 {
		t.Fatalf("NoGateway %d, Dials %d; want 1, 0", g.NoGateway, g.Dials)
	}
}

// A Dial to 192.0.2.10:80 opens its fabric conn to the gateway; the SYN
// on it goes from the node to 192.0.2.10 and offers what a TCP on the
// Internet offers: MSS 1460, SACK permitted, window scaling, timestamps.
// After the handshake data flows both ways and the Conn reports the
// outside address and a real congestion window.
func TestDialOutsideGoesThroughGateway(t *testing.T) {
	dir := testDir(t)
	a := newStack(t, dir, addrA)
	gw := joinGateway(t, dir)
	f, syn, res := dialOutside(t, a, gw)
	if f.fc.RemoteAddr() != addrA {
		t.Fatalf("the gateway's fabric conn comes from %v, want %v", f.fc.RemoteAddr(), addrA)
	}
	o := syn.Hdr.Options
	if syn.Hdr.Flags != wire.FlagSYN || syn.Hdr.DstPort != 80 || o.MSS != 1460 || !o.SACKPermitted || !o.HasWScale || !o.HasTimestamp {
		t.Fatalf("SYN %v to port %d, options %+v; want <CTL=SYN> to 80 with MSS 1460, SACK permitted, window scale, timestamps",
			syn.String(), syn.Hdr.DstPort, o)
	}
	f.synAck(t, &syn)
	r := <-res
	if r.err != nil {
		t.Fatal(r.err)
	}
	c := r.c
	defer c.Close()
	c.SetDeadline(deadline())
	if ack := f.recv(t); ack.Hdr.Flags != wire.FlagACK || ack.Hdr.Ack != f.snd {
		t.Fatalf("third segment %v, want <ACK=%d>", ack.String(), f.snd)
	}
	if got := c.RemoteAddr().String(); got != extHost.String() {
		t.Fatalf("RemoteAddr %s, want %s", got, extHost)
	}
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	d := f.recv(t)
	if string(d.Payload) != "hello" || d.Hdr.Seq != syn.Hdr.Seq+1 || !d.Hdr.Options.HasTimestamp {
		t.Fatalf("data segment %v %q, want SEQ=%d \"hello\" with a timestamp", d.String(), d.Payload, syn.Hdr.Seq+1)
	}
	f.rcv += 5
	f.send(t, wire.FlagACK|wire.FlagPSH, []byte("world"))
	buf := make([]byte, 16)
	n, err := c.Read(buf)
	if err != nil || string(buf[:n]) != "world" {
		t.Fatalf("Read = %q, %v; want \"world\"", buf[:n], err)
	}
	i := c.Info()
	// 1460 less the 12 bytes of the timestamp option (RFC 6691).
	if !i.Gateway || i.Custody || i.SndMSS != 1448 || i.CongestionWnd <= 0 {
		t.Fatalf("Info: Gateway %v, Custody %v, SndMSS %d, CongestionWnd %d; want true, false, 1448, > 0 (CUBIC)",
			i.Gateway, i.Custody, i.SndMSS, i.CongestionWnd)
	}
	if g := a.GatewayStats(); g.Dials != 1 {
		t.Fatalf("GatewayStats.Dials %d, want 1", g.Dials)
	}
}

// Through the gateway the node retains what it sends: a segment the
// outside never acknowledges (the fake gateway "loses" it) comes again,
// the same bytes at the same sequence number (RFC 6298 §5, or RACK-TLP's
// probe, RFC 8985 §7).
func TestSegmentLostOutsideIsRetransmittedByTheNode(t *testing.T) {
	dir := testDir(t)
	a := newStack(t, dir, addrA)
	f, c := establishOutside(t, a, joinGateway(t, dir))
	if _, err := c.Write([]byte("abc")); err != nil {
		t.Fatal(err)
	}
	first := f.recv(t)
	if i := c.Info(); i.Retained != 3 {
		t.Fatalf("Retained %d with 3 unacknowledged bytes, want 3", i.Retained)
	}
	again := f.recv(t)
	if again.Hdr.Seq != first.Hdr.Seq || string(again.Payload) != "abc" {
		t.Fatalf("after a loss the node sent %v %q, want SEQ=%d \"abc\" again", again.String(), again.Payload, first.Hdr.Seq)
	}
	if st := c.Info().Stats; st.Retransmits == 0 {
		t.Fatal("Stats.Retransmits 0 after a retransmission")
	}
}

// GRANT: the gateway keeps the copies from now on, so the node retains
// nothing it sends afterwards, and does not retransmit what is lost.
func TestCustodyGrantStopsRetention(t *testing.T) {
	dir := testDir(t)
	a := newStack(t, dir, addrA)
	f, c := establishOutside(t, a, joinGateway(t, dir))
	f.custody(t, addrGW, custody.Message{Type: custody.Grant})
	// Write takes in what waits on the ring (the GRANT) before it sends.
	if _, err := c.Write(make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	d := f.recv(t)
	if len(d.Payload) != 1000 {
		t.Fatalf("data segment of %d bytes, want 1000", len(d.Payload))
	}
	if i := c.Info(); !i.Custody || i.Retained != 0 {
		t.Fatalf("after GRANT: Custody %v, Retained %d with 1000 bytes unacknowledged; want true, 0", i.Custody, i.Retained)
	}
	if g := a.GatewayStats(); g.Grants != 1 || g.CustodyDrops != 0 {
		t.Fatalf("Grants %d, CustodyDrops %d; want 1, 0", g.Grants, g.CustodyDrops)
	}
	// Nothing comes again: the gateway, not the node, resends. Three
	// minimum RTOs (RFC 6298 §2.4's 200 ms floor here) are long enough
	// for a retaining node to have resent.
	f.fc.SetReadDeadline(time.Now().Add(3 * tcp.DefaultRTOMin))
	if rec, err := f.fc.Peek(); err == nil {
		t.Fatalf("the node sent a %d-byte record after GRANT with nothing acknowledged", len(rec.Data))
	}
	if st := c.Info().Stats; st.Retransmits != 0 {
		t.Fatalf("Stats.Retransmits %d in custody, want 0", st.Retransmits)
	}
}

// LOSS: the gateway lost and resent [start, end); the node's congestion
// controller reacts as to a loss of its own (CUBIC: cwnd × 0.7, RFC 9438
// §4.6).
func TestCustodyLossReducesCongestionWindow(t *testing.T) {
	dir := testDir(t)
	a := newStack(t, dir, addrA)
	f, c := establishOutside(t, a, joinGateway(t, dir))
	f.custody(t, addrGW, custody.Message{Type: custody.Grant})
	if _, err := c.Write(make([]byte, 4000)); err != nil {
		t.Fatal(err)
	}
	first := f.recv(t)
	before := c.Info().CongestionWnd
	f.custody(t, addrGW, custody.Message{Type: custody.Loss, Start: first.Hdr.Seq, End: first.Hdr.Seq + uint32(len(first.Payload))})
	waitFor(t, "the LOSS to be taken in", func() bool { return a.GatewayStats().Losses == 1 })
	i := c.Info()
	if i.CongestionWnd >= before || i.Stats.CustodyLosses != 1 {
		t.Fatalf("after LOSS: cwnd %d (was %d), CustodyLosses %d; want a smaller cwnd, 1", i.CongestionWnd, before, i.Stats.CustodyLosses)
	}
}

// FAIL: the gateway gave up; Read returns its errno (ETIMEDOUT) as a
// *net.OpError, as a kernel socket whose retransmissions ran out.
func TestCustodyFailEndsConnectionWithErrno(t *testing.T) {
	dir := testDir(t)
	a := newStack(t, dir, addrA)
	f, c := establishOutside(t, a, joinGateway(t, dir))
	f.custody(t, addrGW, custody.Message{Type: custody.Fail, Errno: uint32(syscall.ETIMEDOUT)})
	_, err := c.Read(make([]byte, 10))
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "read" || !errors.Is(err, syscall.ETIMEDOUT) {
		t.Fatalf("Read after FAIL: %v, want a read *net.OpError wrapping ETIMEDOUT", err)
	}
	if _, err := c.Write([]byte("x")); !errors.Is(err, syscall.ETIMEDOUT) {
		t.Fatalf("Write after FAIL: %v, want ETIMEDOUT", err)
	}
}

// REVOKE: custody ends; the node answers REVOKED carrying the end of what
// it sent (the gateway keeps custody below it), then retains again.
func TestCustodyRevokeIsAnsweredWithRevokedAndRetentionResumes(t *testing.T) {
	dir := testDir(t)
	a := newStack(t, dir, addrA)
	f, c := establishOutside(t, a, joinGateway(t, dir))
	f.custody(t, addrGW, custody.Message{Type: custody.Grant})
	if _, err := c.Write(make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	d := f.recv(t)
	end := d.Hdr.Seq + 100
	f.custody(t, addrGW, custody.Message{Type: custody.Revoke})
	if _, err := c.Write(make([]byte, 200)); err != nil {
		t.Fatal(err)
	}
	rec := f.record(t)
	p, err := wire.NewIPv4Packet(rec)
	if err != nil || p.Protocol() != custody.Proto || p.Src() != addrA.As4() || p.Dst() != addrGW.As4() {
		t.Fatalf("record after REVOKE (% x) is not a custody message %v → %v", rec, addrA, addrGW)
	}
	m, err := custody.Parse(p.Payload())
	if err != nil || m.Type != custody.Revoked || m.Seq != end {
		t.Fatalf("answer to REVOKE %v (%v), want REVOKED{%d}", m, err, end)
	}
	if d2 := f.recv(t); d2.Hdr.Seq != end || len(d2.Payload) != 200 {
		t.Fatalf("data after REVOKED %v with %d bytes, want SEQ=%d with 200", d2.String(), len(d2.Payload), end)
	}
	if i := c.Info(); i.Custody || i.Retained != 200 {
		t.Fatalf("after REVOKE: Custody %v, Retained %d; want false, 200", i.Custody, i.Retained)
	}
}

// Custody messages are believed only from the gateway, on a connection
// through it, and well formed: a GRANT whose source is the outside host,
// one with a bad magic, a REVOKED (which only nodes send), and a GRANT on
// a connection inside the fabric are dropped and counted; none resets
// its connection.
func TestCustodyMessagesNotFromTheGatewayAreDropped(t *testing.T) {
	dir := testDir(t)
	a := newStack(t, dir, addrA)
	f, c := establishOutside(t, a, joinGateway(t, dir))
	f.custody(t, extHost.Addr(), custody.Message{Type: custody.Grant})
	f.custody(t, addrGW, custody.Message{Type: custody.Revoked, Seq: 1})
	var b [ipHdrLen + custody.HeaderLen]byte
	copy(b[ipHdrLen:], "XC\x01\x01\x00\x00\x00\x00")
	encodeIPv4(b[:], addrGW.As4(), addrA.As4(), makeIPFields(0, DefaultTTL), custody.Proto, len(b))
	f.fc.Send(b[:])
	p, res := dialRaw(t, dir, a) // a connection inside the fabric, to 10.77.0.3
	ic := p.establish(t, res)
	var g [ipHdrLen + custody.HeaderLen]byte
	msg, _ := custody.Message{Type: custody.Grant}.Append(g[ipHdrLen:ipHdrLen])
	encodeIPv4(g[:], addrC.As4(), addrA.As4(), makeIPFields(0, DefaultTTL), custody.Proto, ipHdrLen+len(msg))
	p.fc.Send(g[:])
	waitFor(t, "4 custody drops", func() bool { return a.GatewayStats().CustodyDrops == 4 })
	if g := a.GatewayStats(); g.Grants != 0 {
		t.Fatalf("Grants %d after forged messages, want 0", g.Grants)
	}
	for _, cc := range []*Conn{c, ic} {
		if i := cc.Info(); i.State != "ESTABLISHED" || i.Custody != !i.Gateway {
			t.Fatalf("conn to %v after forged custody messages: %s, Custody %v", cc.RemoteAddr(), i.State, i.Custody)
		}
	}
	if st := a.Stats(); st.BadRecords != 0 || st.ResetsOut != 0 {
		t.Fatalf("BadRecords %d, ResetsOut %d; want 0, 0", st.BadRecords, st.ResetsOut)
	}
}

// acceptOutside plays an outside host connecting to the node at node:80
// through the gateway gw: the gateway opens a fabric conn to the node and
// writes the host's SYN on it. It returns the flow with the node's
// SYN-ACK read.
func acceptOutside(t *testing.T, gw *fabric.Node, node netip.Addr) (*flow, tcp.Segment) {
	t.Helper()
	fc, err := gw.Dial(context.Background(), node, fabric.ConnConfig{})
	if err != nil {
		t.Fatal(err)
	}
	f := &flow{fc: fc, node: netip.AddrPortFrom(node, 80), ext: extPeer, snd: 3000, tsVal: extSYNTS}
	h := wire.TCPHeader{SrcPort: extPeer.Port(), DstPort: 80, Seq: f.snd, Flags: wire.FlagSYN, Window: 65535}
	h.Options = wire.TCPOptions{MSS: 1460, SACKPermitted: true, HasWScale: true, WScale: 7, HasTimestamp: true, TSVal: f.tsVal}
	f.tsVal++
	f.sendHdr(t, h, nil)
	f.snd++
	sa := f.recv(t)
	f.rcv = sa.Hdr.Seq + 1
	return f, sa
}

// A SYN from outside, brought by the gateway on a fabric conn of its own,
// reaches the listener: the SYN-ACK goes back to the outside address with
// the outside options, Accept hands out a Conn whose RemoteAddr is the
// outside host, and a 60000-byte segment (a GRO super-segment, far above
// the MSS) is taken whole.
func TestSynFromOutsideThroughGatewayIsAccepted(t *testing.T) {
	dir := testDir(t)
	a := newStack(t, dir, addrA)
	l, err := a.ListenTCP("tcp", ":80")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	f, sa := acceptOutside(t, joinGateway(t, dir), addrA)
	o := sa.Hdr.Options
	if sa.Hdr.Flags != wire.FlagSYN|wire.FlagACK || sa.Hdr.Ack != 3001 || sa.Hdr.DstPort != extPeer.Port() ||
		o.MSS != 1460 || !o.SACKPermitted || !o.HasWScale || !o.HasTimestamp || o.TSEcr != extSYNTS {
		t.Fatalf("SYN-ACK %v to port %d, options %+v; want <CTL=SYN,ACK><ACK=3001> to %d with MSS 1460, SACK, window scale, TSecr %d",
			sa.String(), sa.Hdr.DstPort, o, extPeer.Port(), extSYNTS)
	}
	f.ecr = o.TSVal
	f.send(t, wire.FlagACK, nil)
	l.SetDeadline(deadline())
	c, err := l.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := c.RemoteAddr().String(); got != extPeer.String() {
		t.Fatalf("RemoteAddr %s, want %s", got, extPeer)
	}
	big := make([]byte, 60000)
	for i := range big {
		big[i] = byte(i * 7)
	}
	f.send(t, wire.FlagACK|wire.FlagPSH, big)
	c.SetDeadline(deadline())
	got := make([]byte, len(big))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	for i := range got {
		if got[i] != big[i] {
			t.Fatalf("byte %d is %d, want %d", i, got[i], big[i])
		}
	}
	if st := c.Info().Stats; st.DropOutOfWindow != 0 || st.BytesIn != uint64(len(big)) {
		t.Fatalf("DropOutOfWindow %d, BytesIn %d; want 0, %d", st.DropOutOfWindow, st.BytesIn, len(big))
	}
	if g := a.GatewayStats(); g.Inbound != 1 || g.Spoofed != 0 {
		t.Fatalf("Inbound %d, Spoofed %d; want 1, 0", g.Inbound, g.Spoofed)
	}
}

// A SYN with an outside source from a node that is not the gateway is
// dropped and counted (anti-spoofing): no answer, the ring is closed,
// nothing reaches the listener. From the gateway, a SYN from an address
// no host may use is still a martian (MUST-63).
func TestSpoofedOutsideSynFromNonGatewayIsDropped(t *testing.T) {
	dir := testDir(t)
	b := newStack(t, dir, addrB)
	l, err := b.ListenTCP("tcp", ":80")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	gw := joinGateway(t, dir)
	fc := rawDial(t, dir, addrB) // from 10.77.0.3, which is not the gateway
	syn := wire.TCPHeader{SrcPort: 5555, DstPort: 80, Seq: 1000, Flags: wire.FlagSYN, Window: 8192}
	fc.Send(rawPacket(t, "192.0.2.10", "10.77.0.2", syn))
	fc.SetReadDeadline(deadline())
	if _, err := fc.Peek(); err != io.EOF {
		t.Fatalf("the stack did not close the spoofer's ring: %v", err)
	}
	gfc, err := gw.Dial(context.Background(), addrB, fabric.ConnConfig{})
	if err != nil {
		t.Fatal(err)
	}
	gfc.Send(rawPacket(t, "224.0.0.9", "10.77.0.2", syn))
	gfc.SetReadDeadline(deadline())
	if _, err := gfc.Peek(); err != io.EOF {
		t.Fatalf("the stack did not close the ring of a martian SYN: %v", err)
	}
	g, st := b.GatewayStats(), b.Stats()
	if g.Spoofed != 1 || g.Inbound != 0 || st.Martians != 1 || st.ResetsOut != 0 || l.Stats().Syns != 0 {
		t.Fatalf("Spoofed %d, Inbound %d, Martians %d, ResetsOut %d, listener Syns %d; want 1, 0, 1, 0, 0",
			g.Spoofed, g.Inbound, st.Martians, st.ResetsOut, l.Stats().Syns)
	}
}

// ---- gateway death ------------------------------------------------------

func init() { proc.Register("fakegw", roleFakeGateway) }

// roleFakeGateway is a gateway in a process of its own: it joins the
// fabric (args[0]) at addrGW, claims the role, says {"ready":true},
// completes the handshake of the first flow a node opens, says
// {"established":true}, and waits to be killed.
func roleFakeGateway(args []string) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("fake gateway: %v", r)
		}
	}()
	if len(args) < 1 {
		return errors.New("need the fabric dir")
	}
	f, err := fabric.Open(fabric.Config{Dir: args[0]})
	if err != nil {
		return err
	}
	n, err := f.Join(addrGW)
	if err != nil {
		return err
	}
	defer n.Close()
	if err := n.ClaimGateway(); err != nil {
		return err
	}
	if err := proc.Send(ready{true}); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	fc, err := n.Accept(ctx)
	if err != nil {
		return err
	}
	var t childTB
	fl := &flow{fc: fc, ext: extHost, tsVal: extSYNTS}
	rec := fl.record(t)
	if len(rec) < 40 {
		return errors.New("short SYN")
	}
	fl.node = netip.AddrPortFrom(fc.RemoteAddr(), uint16(rec[20])<<8|uint16(rec[21]))
	var syn tcp.Segment
	if _, err := decodeRecord(rec, len(rec), fl.node.Addr().As4(), extHost.Addr().As4(), &syn); err != nil {
		return err
	}
	fl.synAck(t, &syn)
	fl.recv(t)
	if err := proc.Send(struct{ Established bool }{true}); err != nil {
		return err
	}
	untilStdinCloses()
	return nil
}

// childTB lets the flow helpers run in a child role, where there is no
// *testing.T: a failure panics, and the role recovers it as its error.
// Only Helper, Fatal and Fatalf are used.
type childTB struct{ testing.TB }

func (childTB) Helper()                           {}
func (childTB) Fatal(args ...any)                 { panic(fmt.Sprint(args...)) }
func (childTB) Fatalf(format string, args ...any) { panic(fmt.Sprintf(format, args...)) }

// Killing the gateway process mid-transfer fails every connection
// through it with ECONNRESET, a blocked Read and a blocked Write alike (the
// fabric notices the death); connections inside the fabric keep working,
// old and new.
func TestGatewayDeathResetsOnlyConnectionsThroughIt(t *testing.T) {
	dir := testDir(t)
	a := newStack(t, dir, addrA)
	b := newStack(t, dir, addrB)
	l, err := b.Listen("tcp", ":7")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	echoServer(t, l)
	inside, err := a.Dial("tcp", "10.77.0.2:7")
	if err != nil {
		t.Fatal(err)
	}
	defer inside.Close()
	inside.SetDeadline(deadline())

	ch, err := proc.Start("fakegw", dir)
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Kill()
	var r ready
	if err := ch.Recv(&r, 20*time.Second); err != nil || !r.Ready {
		t.Fatalf("fake gateway not ready: %v", err)
	}
	c, err := a.Dial("tcp", extHost.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var est struct{ Established bool }
	if err := ch.Recv(&est, 20*time.Second); err != nil || !est.Established {
		t.Fatalf("fake gateway did not establish: %v", err)
	}
	c.SetDeadline(deadline())
	readErr := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 10))
		readErr <- err
	}()
	writeErr := make(chan error, 1)
	go func() {
		// More than the send buffer: the fake gateway acknowledges
		// nothing, so Write blocks mid-transfer.
		_, err := c.Write(make([]byte, 4*DefaultSendBuf))
		writeErr <- err
	}()
	time.Sleep(20 * time.Millisecond) // let Read and Write block (and sleep)
	killed := time.Now()
	ch.Kill()
	err = <-readErr
	t.Logf("Read returned %v after the gateway was killed", time.Since(killed))
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("Read through a dead gateway: %v, want ECONNRESET", err)
	}
	err = <-writeErr
	t.Logf("Write returned %v after the gateway was killed", time.Since(killed))
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("Write through a dead gateway: %v, want ECONNRESET", err)
	}
	echoWith(t, inside)
	echoOnce(t, a, "10.77.0.2:7")
	// Reaped, the dead gateway's registration is no longer live (a zombie
	// still answers kill(pid, 0)), and the outside is unreachable again:
	// at once if the stack's remembered answer has expired, else after one
	// dial that fails with the fabric's error for a dead node.
	ch.Wait(10 * time.Second)
	if _, ok := a.fab.Gateway(); ok {
		t.Fatal("a dead gateway is still registered as live")
	}
	_, err = a.Dial("tcp", extHost.String())
	if !errors.Is(err, syscall.ENETUNREACH) {
		t.Logf("first Dial outside after the gateway died: %v", err)
		if _, err = a.Dial("tcp", extHost.String()); !errors.Is(err, syscall.ENETUNREACH) {
			t.Fatalf("second Dial outside after the gateway died: %v, want ENETUNREACH", err)
		}
	}
}

// REVOKE while a writer owns the send side (blocked in the fabric for
// ring room): the answer waits for the send side and still arrives,
// carrying the end of every byte the node sent in custody.
func TestCustodyRevokedWaitsForABusySendSide(t *testing.T) {
	dir := testDir(t)
	a := newStack(t, dir, addrA, func(c *Config) { c.RingSize = 8 << 10 })
	f, c := establishOutside(t, a, joinGateway(t, dir))
	f.custody(t, addrGW, custody.Message{Type: custody.Grant})
	waitFor(t, "the GRANT to be taken in", func() bool { return a.GatewayStats().Grants == 1 })
	done := make(chan error, 1)
	go func() {
		// More than the initial window (10 segments, RFC 6928), which is
		// more than the 8 KiB ring: the writer blocks for room.
		_, err := c.Write(make([]byte, 20000))
		done <- err
	}()
	// The engine emitted the initial window: the writer, which holds the
	// Conn's lock from then until it owns the send side, now owns it.
	waitFor(t, "the initial window to be emitted", func() bool { return c.Info().Stats.BytesOut >= 10*1448 })
	f.custody(t, addrGW, custody.Message{Type: custody.Revoke})
	waitFor(t, "the REVOKE to be taken in", func() bool { return a.GatewayStats().Revokes == 1 })
	var end uint32
	for i := 0; ; i++ {
		if i == 100 {
			t.Fatal("no REVOKED among 100 records")
		}
		rec := f.record(t)
		if rec[9] != custody.Proto {
			var seg tcp.Segment
			p, err := decodeRecord(rec, len(rec), addrA.As4(), extHost.Addr().As4(), &seg)
			if err != nil {
				t.Fatal(err)
			}
			end = seg.Hdr.Seq + uint32(len(p))
			continue
		}
		m, err := custody.Parse(rec[ipHdrLen:])
		if err != nil || m.Type != custody.Revoked || m.Seq != end {
			t.Fatalf("custody answer %v (%v), want REVOKED{%d} (the end of the data sent)", m, err, end)
		}
		break
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// An ICMP "fragmentation needed" from a router outside, which the gateway
// puts on the flow's ring, lowers the send MSS (RFC 1191): the quoted
// packet is the node's, to the outside host.
func TestICMPFragNeededFromOutsideLowersMSS(t *testing.T) {
	dir := testDir(t)
	a := newStack(t, dir, addrA)
	f, c := establishOutside(t, a, joinGateway(t, dir))
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	d := f.recv(t)
	f.fc.Send(icmpRecord(t, "198.51.100.1", "10.77.0.1", 3, 4, 1280, "10.77.0.1", extHost.Addr().String(),
		f.node.Port(), extHost.Port(), d.Hdr.Seq))
	// 1280 − 40 − 12 (timestamps).
	waitFor(t, "SndMSS 1228", func() bool { return c.Info().SndMSS == 1228 })
	if st := a.Stats(); st.ICMPErrors != 1 || st.ICMPDrops != 0 {
		t.Fatalf("ICMPErrors %d, ICMPDrops %d; want 1, 0", st.ICMPErrors, st.ICMPDrops)
	}
}

// BenchmarkRouteOutside is what a Dial to the outside pays to find the
// gateway (fabric.Gateway: the registration file, the node's pid file and
// kill(pid, 0)).
func BenchmarkRouteOutside(b *testing.B) {
	dir := testDir(b)
	a := newStack(b, dir, addrA)
	joinGateway(b, dir)
	b.ReportAllocs()
	for b.Loop() {
		if hop, err := a.routeFor(extHost.Addr()); err != nil || hop != addrGW {
			b.Fatalf("routeFor = %v, %v", hop, err)
		}
	}
}

// custodyRecord is a custody record from src to dst carrying m's
// encoding.
func custodyRecord(t testing.TB, src, dst netip.Addr, m custody.Message) []byte {
	t.Helper()
	b := make([]byte, ipHdrLen, ipHdrLen+custody.MaxLen)
	b, err := m.Append(b)
	if err != nil {
		t.Fatal(err)
	}
	encodeIPv4(b, src.As4(), dst.As4(), makeIPFields(0, DefaultTTL), custody.Proto, len(b))
	return b
}

// A LOSS record from the gateway parses into its range; every cut of it,
// and the same bytes from another source, to another node, as another
// protocol or as a fragment, are refused.
func TestParseCustodyRecordLiteralLoss(t *testing.T) {
	gw, self := addrGW.As4(), addrA.As4()
	rec := custodyRecord(t, addrGW, addrA, custody.Message{Type: custody.Loss, Start: 1000, End: 2448})
	want := "45 00 00 24 00 00 40 00 40 fd 00 00 0a 4d 00 fe 0a 4d 00 01 55 43 01 04 00 00 00 00 00 00 03 e8 00 00 09 90"
	if got := fmt.Sprintf("% x", rec); got != want {
		t.Fatalf("LOSS{1000,2448} record\n %s, want\n %s", got, want)
	}
	if m, ok := parseCustodyRecord(rec, gw, self); !ok || m.Type != custody.Loss || m.Start != 1000 || m.End != 2448 {
		t.Fatalf("parseCustodyRecord = %v, %v; want LOSS{1000,2448}, true", m, ok)
	}
	for n := 0; n < len(rec); n++ {
		if _, ok := parseCustodyRecord(rec[:n], gw, self); ok {
			t.Fatalf("a record cut to %d of %d bytes was accepted", n, len(rec))
		}
	}
	for name, mutate := range map[string]func(b []byte){
		"from another node": func(b []byte) { b[15] = 3 },
		"to another node":   func(b []byte) { b[19] = 2 },
		"of protocol 254":   func(b []byte) { b[9] = 254 },
		"a fragment":        func(b []byte) { b[6] |= 0x20 },
		"bad magic":         func(b []byte) { b[20] = 'X' },
	} {
		b := append([]byte(nil), rec...)
		mutate(b)
		if m, ok := parseCustodyRecord(b, gw, self); ok {
			t.Fatalf("a record %s was accepted as %v", name, m)
		}
	}
}

// FuzzParseCustodyRecord: whatever lies on the ring, parseCustodyRecord
// returns without panicking, and what it accepts is protocol 253 from the
// gateway to us.
func FuzzParseCustodyRecord(f *testing.F) {
	f.Add(custodyRecord(f, addrGW, addrA, custody.Message{Type: custody.Grant}))
	f.Add(custodyRecord(f, addrGW, addrA, custody.Message{Type: custody.Fail, Errno: 110}))
	f.Add(custodyRecord(f, addrGW, addrA, custody.Message{Type: custody.Loss, Start: 1, End: 2}))
	gw, self := addrGW.As4(), addrA.As4()
	f.Fuzz(func(t *testing.T, rec []byte) {
		if _, ok := parseCustodyRecord(rec, gw, self); ok &&
			(len(rec) < ipHdrLen+custody.HeaderLen || rec[9] != custody.Proto || [4]byte(rec[12:16]) != gw) {
			t.Fatalf("accepted % x", rec)
		}
	})
}

// RFC 9293 §3.10.7.1 for the outside world: a SYN brought by the gateway
// for a port nobody listens on is answered with a RST to the outside
// host, on the gateway's fabric conn.
func TestOutsideSynForNoListenerIsAnsweredWithRST(t *testing.T) {
	dir := testDir(t)
	a := newStack(t, dir, addrA)
	_, rst := acceptOutside(t, joinGateway(t, dir), addrA)
	if rst.String() != "<SEQ=0><ACK=3001><CTL=RST,ACK><WND=0>" || rst.Hdr.DstPort != extPeer.Port() {
		t.Fatalf("answer %s to port %d, want <SEQ=0><ACK=3001><CTL=RST,ACK><WND=0> to %d", rst.String(), rst.Hdr.DstPort, extPeer.Port())
	}
	if st := a.Stats(); st.NoListener != 1 {
		t.Fatalf("NoListener %d, want 1", st.NoListener)
	}
}

// Two flows to two outside hosts through the gateway at once: each has
// its own fabric conn, its own addresses, and its own bytes.
func TestTwoOutsideFlowsAreSeparate(t *testing.T) {
	dir := testDir(t)
	a := newStack(t, dir, addrA)
	gw := joinGateway(t, dir)
	f1, c1 := establishOutside(t, a, gw)
	f2, c2 := establishOutside(t, a, gw)
	if f1.fc == f2.fc || f1.node == f2.node {
		t.Fatalf("two flows share a fabric conn or a local port (%v, %v)", f1.node, f2.node)
	}
	c1.Write([]byte("one"))
	c2.Write([]byte("two"))
	if d := f2.recv(t); string(d.Payload) != "two" {
		t.Fatalf("flow 2 carried %q, want \"two\"", d.Payload)
	}
	if d := f1.recv(t); string(d.Payload) != "one" {
		t.Fatalf("flow 1 carried %q, want \"one\"", d.Payload)
	}
	f1.send(t, wire.FlagACK|wire.FlagPSH, []byte("to one"))
	buf := make([]byte, 16)
	if n, err := c1.Read(buf); err != nil || string(buf[:n]) != "to one" {
		t.Fatalf("flow 1 Read %q, %v; want \"to one\"", buf[:n], err)
	}
	if g := a.GatewayStats(); g.Dials != 2 {
		t.Fatalf("Dials %d, want 2", g.Dials)
	}
}

// A custody message the gateway sends before the SYN it forwards finds
// no connection: it is dropped and counted, and the SYN that follows on
// the same fabric conn is still routed from outside and answered.
func TestCustodyMessageBeforeSynDoesNotHarmTheFlow(t *testing.T) {
	dir := testDir(t)
	a := newStack(t, dir, addrA)
	l, err := a.ListenTCP("tcp", ":80")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	gw := joinGateway(t, dir)
	fc, err := gw.Dial(context.Background(), addrA, fabric.ConnConfig{})
	if err != nil {
		t.Fatal(err)
	}
	fc.Send(custodyRecord(t, addrGW, addrA, custody.Message{Type: custody.Grant}))
	f := &flow{fc: fc, node: netip.AddrPortFrom(addrA, 80), ext: extPeer, snd: 3000, tsVal: extSYNTS}
	h := wire.TCPHeader{SrcPort: extPeer.Port(), DstPort: 80, Seq: f.snd, Flags: wire.FlagSYN, Window: 65535}
	h.Options = wire.TCPOptions{MSS: 1460, HasTimestamp: true, TSVal: f.tsVal}
	f.sendHdr(t, h, nil)
	if sa := f.recv(t); sa.Hdr.Flags != wire.FlagSYN|wire.FlagACK || sa.Hdr.Ack != 3001 {
		t.Fatalf("answer to the SYN %v, want <CTL=SYN,ACK><ACK=3001>", sa.String())
	}
	if g, st := a.GatewayStats(), a.Stats(); g.CustodyDrops != 1 || g.Inbound != 1 || st.BadRecords != 0 {
		t.Fatalf("CustodyDrops %d, Inbound %d, BadRecords %d; want 1, 1, 0", g.CustodyDrops, g.Inbound, st.BadRecords)
	}
}

// BenchmarkOutsideSend measures a node sending to the outside through a
// fake gateway that acknowledges every 8th segment at once (a fast, clean
// path): the node's cost per byte in retaining mode (one copy into the
// send buffer, one into the ring per 1448-byte segment) and, with custody
// granted, without the send buffer (a Write of 1 MiB goes by DMA: the
// gateway pulls it). cwnd is the congestion window at the end.
func BenchmarkOutsideSend(b *testing.B) {
	for _, bc := range []struct {
		name    string
		size    int
		custody bool
	}{{"retain/64KiB", 64 << 10, false}, {"custody/64KiB", 64 << 10, true}, {"custody/1MiB", 1 << 20, true}} {
		b.Run(bc.name, func(b *testing.B) {
			dir := testDir(b)
			a := newStack(b, dir, addrA)
			gw := joinGateway(b, dir)
			res := make(chan dialResult, 1)
			go func() {
				d := Dialer{Stack: a, Timeout: 10 * time.Second}
				c, err := d.DialTCP(context.Background(), "tcp", extHost.String())
				res <- dialResult{c, err}
			}()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			fc, err := gw.Accept(ctx)
			if err != nil {
				b.Fatal(err)
			}
			f := &flow{fc: fc, ext: extHost, tsVal: extSYNTS}
			rec := f.record(b)
			f.node = netip.AddrPortFrom(fc.RemoteAddr(), uint16(rec[20])<<8|uint16(rec[21]))
			var syn tcp.Segment
			if _, err := decodeRecord(rec, len(rec), addrA.As4(), extHost.Addr().As4(), &syn); err != nil {
				b.Fatal(err)
			}
			f.synAck(b, &syn)
			r := <-res
			if r.err != nil {
				b.Fatal(r.err)
			}
			c := r.c
			defer c.Close()
			f.recv(b) // the ACK
			if bc.custody {
				f.custody(b, addrGW, custody.Message{Type: custody.Grant})
			}
			stop := make(chan struct{})
			acked := make(chan struct{})
			go func() {
				defer close(acked)
				buf := make([]byte, 8<<20) // a DMA record carries up to 4 MiB
				var seg tcp.Segment
				for k := 0; ; k++ {
					fc.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
					n, err := fc.Recv(buf)
					if err != nil {
						select {
						case <-stop:
							return
						default:
							continue
						}
					}
					p, err := decodeRecord(buf[:n], n, addrA.As4(), extHost.Addr().As4(), &seg)
					if err != nil {
						continue // a custody answer
					}
					f.ecr = seg.Hdr.Options.TSVal
					f.rcv = seg.Hdr.Seq + uint32(len(p))
					if k%8 == 7 || !fc.Readable() {
						f.send(b, wire.FlagACK, nil)
					}
				}
			}()
			msg := make([]byte, bc.size)
			c.SetDeadline(time.Now().Add(time.Minute))
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Write(msg); err != nil {
					b.Fatal(err)
				}
			}
			i := c.Info()
			b.ReportMetric(float64(i.Stats.Retransmits), "retx")
			b.ReportMetric(float64(i.CongestionWnd), "cwnd")
			close(stop)
			<-acked
		})
	}
}

// GRANT put on the ring before the SYN-ACK reaches the node takes effect
// at once (nothing is retained in SYN-SENT): the first bytes the node
// sends are already in the gateway's custody.
func TestCustodyGrantBeforeSynAckHoldsFromTheFirstByte(t *testing.T) {
	dir := testDir(t)
	a := newStack(t, dir, addrA)
	f, syn, res := dialOutside(t, a, joinGateway(t, dir))
	f.custody(t, addrGW, custody.Message{Type: custody.Grant})
	f.synAck(t, &syn)
	r := <-res
	if r.err != nil {
		t.Fatal(r.err)
	}
	c := r.c
	defer c.Close()
	c.SetDeadline(deadline())
	f.recv(t) // the ACK
	if _, err := c.Write(make([]byte, 3000)); err != nil {
		t.Fatal(err)
	}
	f.recv(t)
	if i := c.Info(); !i.Custody || i.Retained != 0 {
		t.Fatalf("GRANT before the SYN-ACK: Custody %v, Retained %d with 3000 bytes unacknowledged; want true, 0", i.Custody, i.Retained)
	}
}

// A segment without options takes the prebuilt headers (link.go), which
// must name the outside host, not the gateway the fabric conn goes to: an
// abortive close (SO_LINGER 0) sends <RST> with no options, to extHost
// (it went to the gateway's address and the gateway closed the flow as a
// bad record: the path MTU interop test's failure).
func TestOptionlessSegmentThroughGatewayIsAddressedToTheOutsideHost(t *testing.T) {
	for _, dir := range []string{"dialled", "accepted"} {
		t.Run(dir, func(t *testing.T) {
			d := testDir(t)
			a := newStack(t, d, addrA)
			var f *flow
			var c *Conn
			if dir == "dialled" {
				f, c = establishOutside(t, a, joinGateway(t, d))
			} else {
				l, err := a.ListenTCP("tcp", ":80")
				if err != nil {
					t.Fatal(err)
				}
				defer l.Close()
				var sa tcp.Segment
				f, sa = acceptOutside(t, joinGateway(t, d), addrA)
				f.ecr = sa.Hdr.Options.TSVal
				f.send(t, wire.FlagACK, nil)
				l.SetDeadline(deadline())
				if c, err = l.AcceptTCP(); err != nil {
					t.Fatal(err)
				}
			}
			if err := c.SetLinger(0); err != nil {
				t.Fatal(err)
			}
			c.Close()
			// recv fails unless each record goes from the node to extHost.
			// An ACK the node still owed may come first.
			for i := 0; ; i++ {
				seg := f.recv(t)
				if seg.Hdr.Flags&wire.FlagRST != 0 {
					break
				}
				if i == 3 {
					t.Fatalf("abortive close sent %v and no <RST>", seg.String())
				}
			}
		})
	}
}

// A SYN lost outside is sent again after the initial RTO (RFC 6298 §2.1,
// 1 s; RFC 9293 §3.8.1): the dialling goroutine waits for the SYN-ACK,
// but the retransmission timer must run while it sleeps. The answer to
// the second SYN completes the handshake.
func TestSynLostOutsideIsRetransmitted(t *testing.T) {
	dir := testDir(t)
	a := newStack(t, dir, addrA)
	f, syn, res := dialOutside(t, a, joinGateway(t, dir))
	again := f.recv(t) // the first SYN is "lost": no answer
	if again.Hdr.Flags != wire.FlagSYN || again.Hdr.Seq != syn.Hdr.Seq {
		t.Fatalf("after the first SYN went unanswered the node sent %v, want <SEQ=%d><CTL=SYN> again", again.String(), syn.Hdr.Seq)
	}
	f.synAck(t, &again)
	if r := <-res; r.err != nil {
		t.Fatalf("dial after a retransmitted SYN: %v", r.err)
	} else {
		r.c.Close()
	}
}
