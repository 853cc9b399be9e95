package ultcp

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ultcp/ultcp/fabric"
	"github.com/ultcp/ultcp/internal/tcp"
	"github.com/ultcp/ultcp/internal/wire"
)

// The RFC 9293 requirements that belong to the stack rather than the
// engine (docs/conformance.md): addresses of an OPEN and of a SYN, the IP
// header fields an application sets, ICMP errors, the urgent signal and
// the keepalive switch.

// captured is a Capture that keeps copies of the headers of every packet.
type captured struct {
	mu  sync.Mutex
	out [][]byte // headers of packets sent
}

func (c *captured) capture(out bool, headers, _ []byte) {
	if !out {
		return
	}
	c.mu.Lock()
	c.out = append(c.out, append([]byte(nil), headers...))
	c.mu.Unlock()
}

func (c *captured) sent() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([][]byte(nil), c.out...)
}

// waitFor polls cond until it holds or 10 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// rawNode joins the fabric at addrC for tests that play a peer by hand.
func rawNode(t *testing.T, dir string) *fabric.Node {
	t.Helper()
	f, err := fabric.Open(fabric.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	n, err := f.Join(addrC)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// rawPacket encodes h (no payload) with arbitrary IPv4 addresses.
func rawPacket(t testing.TB, src, dst string, h wire.TCPHeader) []byte {
	t.Helper()
	var b [maxHdrLen]byte
	s, _ := wire.AddrFromNetip(netip.MustParseAddr(src))
	d, _ := wire.AddrFromNetip(netip.MustParseAddr(dst))
	n, err := encodeHeaders(b[:], s, d, makeIPFields(0, DefaultTTL), &h, 0)
	if err != nil {
		t.Fatal(err)
	}
	return b[:n]
}

// MUST-46: an active OPEN to a broadcast or multicast address (or the
// unspecified one) fails at once with a clear error; no SYN leaves.
func TestDialToBroadcastOrMulticastIsRefused(t *testing.T) {
	dir := testDir(t)
	var cap captured
	a := newStack(t, dir, addrA, func(c *Config) { c.Capture = cap.capture })
	for _, addr := range []string{"255.255.255.255:80", "10.77.255.255:80", "0.0.0.0:80", "224.0.0.1:80", "239.1.2.3:80"} {
		_, err := a.Dial("tcp", addr)
		if !errors.Is(err, syscall.ENETUNREACH) {
			t.Errorf("Dial %s: %v, want ENETUNREACH", addr, err)
		}
	}
	if st := a.Stats(); st.ActiveOpens != 0 || len(cap.sent()) != 0 {
		t.Fatalf("ActiveOpens %d, packets sent %d; want 0, 0", st.ActiveOpens, len(cap.sent()))
	}
}

// MUST-43: the application may name the local address of an active OPEN;
// the connection then has that port.
func TestDialFromNamedLocalAddress(t *testing.T) {
	dir := testDir(t)
	a, b := newStack(t, dir, addrA), newStack(t, dir, addrB)
	l, err := b.ListenTCP("tcp", ":80")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	acc := make(chan *Conn, 1)
	go func() { c, _ := l.AcceptTCP(); acc <- c }()
	d := Dialer{Stack: a, Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: net.IPv4(10, 77, 0, 1), Port: 40001}}
	c, err := d.DialTCP(context.Background(), "tcp", "10.77.0.2:80")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := c.LocalAddr().String(); got != "10.77.0.1:40001" {
		t.Fatalf("LocalAddr %s, want 10.77.0.1:40001", got)
	}
	s := <-acc
	if s == nil {
		t.FailNow()
	}
	defer s.Close()
	if got := s.RemoteAddr().String(); got != "10.77.0.1:40001" {
		t.Fatalf("server sees RemoteAddr %s, want 10.77.0.1:40001", got)
	}
	// The same 4-tuple a second time is refused.
	if _, err := d.DialTCP(context.Background(), "tcp", "10.77.0.2:80"); !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("second Dial from port 40001: %v, want EADDRINUSE", err)
	}
}

// MUST-43: a local address that is not the stack's is refused.
func TestDialFromForeignLocalAddressFails(t *testing.T) {
	a := newStack(t, testDir(t), addrA)
	d := Dialer{Stack: a, LocalAddr: &net.TCPAddr{IP: net.IPv4(10, 77, 0, 9)}}
	if _, err := d.Dial("tcp", "10.77.0.2:80"); !errors.Is(err, syscall.EADDRNOTAVAIL) {
		t.Fatalf("Dial from 10.77.0.9: %v, want EADDRNOTAVAIL", err)
	}
}

// MUST-44, MUST-45: with no local address (or the unspecified one) the
// stack picks its address, and every segment of the connection carries
// that same source address.
func TestDialWithoutLocalAddressUsesOneSourceOnEverySegment(t *testing.T) {
	for _, la := range []*net.TCPAddr{nil, {IP: net.IPv4zero}} {
		dir := testDir(t)
		var cap captured
		a, b := newStack(t, dir, addrA, func(c *Config) { c.Capture = cap.capture }), newStack(t, dir, addrB)
		l, err := b.Listen("tcp", ":7")
		if err != nil {
			t.Fatal(err)
		}
		echoServer(t, l)
		d := Dialer{Stack: a, Timeout: 10 * time.Second, LocalAddr: la}
		c, err := d.Dial("tcp", "10.77.0.2:7")
		if err != nil {
			t.Fatal(err)
		}
		if got := c.LocalAddr().(*net.TCPAddr).IP.String(); got != "10.77.0.1" {
			t.Fatalf("LocalAddr %s, want 10.77.0.1", got)
		}
		c.SetDeadline(deadline())
		c.Write([]byte("ping"))
		c.Read(make([]byte, 4))
		c.Close()
		l.Close()
		pkts := cap.sent()
		if len(pkts) < 3 {
			t.Fatalf("%d packets sent, want SYN, ACK, data at least", len(pkts))
		}
		for i, p := range pkts {
			if src := netip.AddrFrom4([4]byte(p[12:16])); src != addrA {
				t.Fatalf("LocalAddr %v: packet %d has source %v, want %v", la, i, src, addrA)
			}
		}
	}
}

// connOnPort finds s's dialled connection from local port p and returns
// its state.
func connOnPort(s *Stack, p uint16) (tcp.State, bool) {
	s.mu.Lock()
	var found *Conn
	for c := range s.conns {
		if c.active && c.tuple.lport == p {
			found = c
		}
	}
	s.mu.Unlock()
	if found == nil {
		return tcp.Closed, false
	}
	found.mu.Lock()
	defer found.mu.Unlock()
	return found.tc.State(), true
}

// MUST-42: a passive OPEN on a port succeeds while a connection from that
// port is in SYN-SENT, and then in SYN-RECEIVED (simultaneous open), and
// the listener accepts on it meanwhile.
func TestListenOnPortOfConnectionInSynSentOrSynReceived(t *testing.T) {
	dir := testDir(t)
	a, b := newStack(t, dir, addrA), newStack(t, dir, addrB)
	raw := rawNode(t, dir)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dialErr := make(chan error, 1)
	go func() {
		_, err := a.DialContext(ctx, "tcp", "10.77.0.3:80")
		dialErr <- err
	}()
	actx, acancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer acancel()
	fc, err := raw.Accept(actx)
	if err != nil {
		t.Fatal(err)
	}
	syn := rawRecv(t, fc, addrA)
	port := syn.Hdr.SrcPort

	listenAndAccept := func(want tcp.State) {
		t.Helper()
		if st, _ := connOnPort(a, port); st != want {
			t.Fatalf("dialling connection in %v, want %v", st, want)
		}
		l, err := a.ListenTCP("tcp", netip.AddrPortFrom(netip.IPv4Unspecified(), port).String())
		if err != nil {
			t.Fatalf("Listen on port %d in %v: %v", port, want, err)
		}
		defer l.Close()
		echoServer(t, l)
		echoOnce(t, b, netip.AddrPortFrom(addrA, port).String())
		if st, _ := connOnPort(a, port); st != want {
			t.Fatalf("dialling connection in %v after the listener's connection, want %v", st, want)
		}
	}
	listenAndAccept(tcp.SynSent)

	// Simultaneous open: the peer's own SYN moves the dial to SYN-RECEIVED.
	fc.Send(rawSegment(t, wire.TCPHeader{SrcPort: 80, DstPort: port, Seq: 5000, Flags: wire.FlagSYN, Window: 8192}, addrA))
	if got := rawRecv(t, fc, addrA); got.Hdr.Flags != wire.FlagSYN|wire.FlagACK {
		t.Fatalf("answer to the crossing SYN: flags %v, want SYN|ACK", got.Hdr.Flags)
	}
	listenAndAccept(tcp.SynReceived)
	cancel()
	if err := <-dialErr; err == nil {
		t.Fatal("the cancelled dial succeeded")
	}
}

// MUST-57, MUST-63: a SYN to a broadcast or multicast address, or from an
// address no host may use as its source, is discarded silently (no RST,
// no SYN-ACK) and counted; a proper SYN on the next ring is answered.
func TestSynToBroadcastOrFromInvalidSourceIsDiscarded(t *testing.T) {
	dir := testDir(t)
	b := newStack(t, dir, addrB)
	l, err := b.ListenTCP("tcp", ":80")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	raw := rawNode(t, dir)
	syn := wire.TCPHeader{SrcPort: 4000, DstPort: 80, Seq: 1000, Flags: wire.FlagSYN, Window: 8192}
	bad := [][2]string{
		{"10.77.0.3", "255.255.255.255"}, {"10.77.0.3", "10.77.255.255"}, {"10.77.0.3", "224.0.0.5"}, // MUST-57
		{"0.0.0.0", "10.77.0.2"}, {"127.0.0.1", "10.77.0.2"}, {"224.0.0.9", "10.77.0.2"},
		{"255.255.255.255", "10.77.0.2"}, {"10.77.255.255", "10.77.0.2"}, {"240.0.0.1", "10.77.0.2"}, // MUST-63
	}
	for _, sd := range bad {
		fc, err := raw.Dial(context.Background(), addrB, fabric.ConnConfig{})
		if err != nil {
			t.Fatal(err)
		}
		fc.Send(rawPacket(t, sd[0], sd[1], syn))
		fc.SetReadDeadline(deadline())
		if n, err := fc.Recv(make([]byte, 256)); err == nil {
			t.Fatalf("SYN %s → %s answered with %d bytes", sd[0], sd[1], n)
		}
	}
	st := b.Stats()
	if st.Martians != uint64(len(bad)) || st.ResetsOut != 0 || st.BadRecords != 0 || l.Stats().Syns != 0 {
		t.Fatalf("Martians %d, ResetsOut %d, BadRecords %d, listener Syns %d; want %d, 0, 0, 0",
			st.Martians, st.ResetsOut, st.BadRecords, l.Stats().Syns, len(bad))
	}
	fc, err := raw.Dial(context.Background(), addrB, fabric.ConnConfig{})
	if err != nil {
		t.Fatal(err)
	}
	fc.Send(rawPacket(t, "10.77.0.3", "10.77.0.2", syn))
	if got := rawRecv(t, fc, addrB); got.Hdr.Flags != wire.FlagSYN|wire.FlagACK {
		t.Fatalf("proper SYN answered with flags %v, want SYN|ACK", got.Hdr.Flags)
	}
}

// echoWith dials addr from a, writes and reads back one message.
func echoWith(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetDeadline(deadline())
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(make([]byte, 4)); err != nil {
		t.Fatal(err)
	}
}

// MUST-48, MUST-49: Config.DSCP and Config.TTL are in the IPv4 header of
// every packet the stack sends (TOS octet = DSCP<<2); a stack without them
// sends TOS 0 and TTL 64.
func TestConfigDSCPAndTTLAreInEveryPacket(t *testing.T) {
	dir := testDir(t)
	var capA, capB captured
	a := newStack(t, dir, addrA, func(c *Config) { c.Capture = capA.capture; c.DSCP = 46; c.TTL = 9 })
	b := newStack(t, dir, addrB, func(c *Config) { c.Capture = capB.capture })
	l, err := b.Listen("tcp", ":7")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	echoServer(t, l)
	c, err := a.Dial("tcp", "10.77.0.2:7")
	if err != nil {
		t.Fatal(err)
	}
	echoWith(t, c)
	c.Close()
	for _, side := range []struct {
		name     string
		pkts     [][]byte
		tos, ttl byte
	}{{"A (DSCP 46, TTL 9)", capA.sent(), 0xb8, 9}, {"B (defaults)", capB.sent(), 0, 64}} {
		if len(side.pkts) < 3 {
			t.Fatalf("%s sent %d packets, want 3 or more", side.name, len(side.pkts))
		}
		for i, p := range side.pkts {
			if p[1] != side.tos || p[8] != side.ttl {
				t.Fatalf("%s packet %d: TOS %#x TTL %d, want %#x %d", side.name, i, p[1], p[8], side.tos, side.ttl)
			}
		}
	}
}

// MUST-48, MUST-49: Conn.SetDSCP and Conn.SetTTL change the packets the
// connection sends next; out-of-range values are refused.
func TestConnSetDSCPAndTTLChangeLaterPackets(t *testing.T) {
	var cap captured
	c, _ := pair(t, func(cfg *Config) {
		if cfg.Addr == addrA {
			cfg.Capture = cap.capture
		}
	})
	if err := c.SetDSCP(10); err != nil {
		t.Fatal(err)
	}
	if err := c.SetTTL(200); err != nil {
		t.Fatal(err)
	}
	before := len(cap.sent())
	c.SetWriteDeadline(deadline())
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	pkts := cap.sent()[before:]
	if len(pkts) == 0 {
		t.Fatal("no packet captured after the setters")
	}
	for i, p := range pkts {
		if p[1] != 10<<2 || p[8] != 200 {
			t.Fatalf("packet %d after SetDSCP(10), SetTTL(200): TOS %#x TTL %d, want 0x28 200", i, p[1], p[8])
		}
	}
	for _, err := range []error{c.SetDSCP(64), c.SetDSCP(-1), c.SetTTL(0), c.SetTTL(256)} {
		if err == nil {
			t.Fatal("an out-of-range DSCP or TTL was accepted")
		}
	}
}

// NewStack refuses a DSCP or TTL that does not fit its header field.
func TestNewStackRejectsBadDSCPOrTTL(t *testing.T) {
	dir := testDir(t)
	for _, cfg := range []Config{{DSCP: 64}, {DSCP: -1}, {TTL: 256}, {TTL: -3}} {
		cfg.Addr, cfg.FabricDir = addrA, dir
		if s, err := NewStack(cfg); err == nil {
			s.Close()
			t.Fatalf("NewStack with DSCP %d, TTL %d succeeded", cfg.DSCP, cfg.TTL)
		}
	}
}

// MUST-28: SetKeepAlive(true) on a connection with no keepalive period
// uses two hours; a period already set (per connection or by Config) is
// kept.
func TestSetKeepAliveOnDefaultsToTwoHours(t *testing.T) {
	idle := func(c *Conn) time.Duration {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.tc.KeepAlive()
	}
	c, _ := pair(t)
	c.SetKeepAlive(true)
	if got := idle(c); got != 2*time.Hour {
		t.Fatalf("SetKeepAlive(true) with no period: idle %v, want 2h", got)
	}
	c.SetKeepAlivePeriod(45 * time.Second)
	c.SetKeepAlive(true)
	if got := idle(c); got != 45*time.Second {
		t.Fatalf("SetKeepAlive(true) after SetKeepAlivePeriod(45s): idle %v, want 45s", got)
	}
	c.SetKeepAlive(false)
	if got := idle(c); got != 0 {
		t.Fatalf("SetKeepAlive(false): idle %v, want 0 (off)", got)
	}
	c2, _ := pair(t, func(cfg *Config) { cfg.KeepAlive = 30 * time.Second })
	c2.SetKeepAlive(true)
	if got := idle(c2); got != 30*time.Second {
		t.Fatalf("SetKeepAlive(true) with Config.KeepAlive 30s: idle %v, want 30s", got)
	}
}

// rawPeer is a hand-played peer at addrC that stack a dialled on port 80:
// fc is its end of the ring pair, syn the SYN it received.
type rawPeer struct {
	fc  *fabric.Conn
	syn tcp.Segment
}

// dialRaw dials 10.77.0.3:80 from a in the background and returns the
// raw peer with the SYN read, and the channel the dial's result comes on.
func dialRaw(t *testing.T, dir string, a *Stack) (*rawPeer, chan dialResult) {
	t.Helper()
	raw := rawNode(t, dir)
	res := make(chan dialResult, 1)
	go func() {
		d := Dialer{Stack: a, Timeout: 10 * time.Second}
		c, err := d.DialTCP(context.Background(), "tcp", "10.77.0.3:80")
		res <- dialResult{c, err}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fc, err := raw.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return &rawPeer{fc: fc, syn: rawRecv(t, fc, addrA)}, res
}

type dialResult struct {
	c   *Conn
	err error
}

// icmpRecord builds the ICMP error record a gateway would put on the ring:
// from router to dst, type/code/rest, quoting an IPv4+TCP header (the
// first 28 bytes: IP header and 8 bytes of TCP) sent from qsrc to qdst
// with the given ports and sequence number.
func icmpRecord(t testing.TB, router, dst string, typ, code uint8, rest uint32, qsrc, qdst string, sport, dport uint16, seq uint32) []byte {
	t.Helper()
	quote := rawPacket(t, qsrc, qdst, wire.TCPHeader{SrcPort: sport, DstPort: dport, Seq: seq, Ack: 1, Flags: wire.FlagACK, Window: 100})[:28]
	b := make([]byte, 20+8+len(quote))
	b[0], b[9] = 0x45, 1
	b[8] = 64
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	r, d := netip.MustParseAddr(router).As4(), netip.MustParseAddr(dst).As4()
	copy(b[12:], r[:])
	copy(b[16:], d[:])
	h := wire.ICMPv4Header{Type: typ, Code: code, Rest: rest}
	h.Encode(b[20:])
	copy(b[28:], quote)
	wire.SetICMPv4Checksum(b[20:28], b[28:])
	return b
}

// MUST-54: port unreachable quoting our SYN, put on the connection's
// ring, aborts the dial in SYN-SENT with ECONNREFUSED.
func TestICMPPortUnreachableOnRingAbortsDial(t *testing.T) {
	dir := testDir(t)
	a := newStack(t, dir, addrA)
	p, res := dialRaw(t, dir, a)
	p.fc.Send(icmpRecord(t, "10.77.0.3", "10.77.0.1", 3, 3, 0, "10.77.0.1", "10.77.0.3", p.syn.Hdr.SrcPort, 80, p.syn.Hdr.Seq))
	r := <-res
	if !errors.Is(r.err, syscall.ECONNREFUSED) {
		t.Fatalf("Dial after port unreachable: %v, want ECONNREFUSED", r.err)
	}
	if st := a.Stats(); st.ICMPErrors != 1 || st.ICMPDrops != 0 || st.BadRecords != 0 {
		t.Fatalf("ICMPErrors %d, ICMPDrops %d, BadRecords %d; want 1, 0, 0", st.ICMPErrors, st.ICMPDrops, st.BadRecords)
	}
}

// established completes p's handshake by hand (MSS 65495, no options
// beyond it) and returns the dialled Conn.
func (p *rawPeer) establish(t *testing.T, res chan dialResult) *Conn {
	t.Helper()
	var b [maxHdrLen]byte
	h := wire.TCPHeader{SrcPort: 80, DstPort: p.syn.Hdr.SrcPort, Seq: 5000, Ack: p.syn.Hdr.Seq + 1,
		Flags: wire.FlagSYN | wire.FlagACK, Window: 65535}
	h.Options.MSS = fabricMSS
	src, _ := wire.AddrFromNetip(addrC)
	dst, _ := wire.AddrFromNetip(addrA)
	n, _ := encodeHeaders(b[:], src, dst, makeIPFields(0, DefaultTTL), &h, 0)
	p.fc.Send(b[:n])
	r := <-res
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Cleanup(func() { r.c.Close() })
	rawRecv(t, p.fc, addrA) // the ACK
	return r.c
}

// MUST-54: "fragmentation needed" with a next-hop MTU of 1280, quoting
// data in flight, lowers the connection's send MSS to 1240; the same
// message quoting a sequence number not in flight, or not this
// connection's, is dropped and counted, and the connection is unharmed.
func TestICMPFragNeededOnRingLowersMSS(t *testing.T) {
	dir := testDir(t)
	a := newStack(t, dir, addrA)
	p, res := dialRaw(t, dir, a)
	c := p.establish(t, res)
	if got := c.Info().SndMSS; got != fabricMSS {
		t.Fatalf("SndMSS %d before, want %d", got, fabricMSS)
	}
	c.SetWriteDeadline(deadline())
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	data := rawRecv(t, p.fc, addrA) // not acknowledged: 5 octets in flight
	lport, seq := p.syn.Hdr.SrcPort, data.Hdr.Seq
	frag := func(router, dst, qsrc, qdst string, sport, dport uint16, seq uint32) []byte {
		return icmpRecord(t, router, dst, 3, 4, 1280, qsrc, qdst, sport, dport, seq)
	}
	bad := [][]byte{
		frag("10.77.0.3", "10.77.0.1", "10.77.0.1", "10.77.0.3", lport, 80, seq+5),                 // SEQ = SND.NXT
		frag("10.77.0.3", "10.77.0.1", "10.77.0.1", "10.77.0.3", lport, 80, seq-1),                 // SEQ below SND.UNA
		frag("10.77.0.3", "10.77.0.1", "10.77.0.1", "10.77.0.3", lport+1, 80, seq),                 // other local port
		frag("10.77.0.3", "10.77.0.1", "10.77.0.1", "10.77.0.3", lport, 81, seq),                   // other remote port
		frag("10.77.0.3", "10.77.0.1", "10.77.0.1", "10.77.0.9", lport, 80, seq),                   // quoted to another host
		frag("10.77.0.3", "10.77.0.1", "10.77.0.5", "10.77.0.3", lport, 80, seq),                   // quoted from another host
		frag("10.77.0.3", "10.77.0.8", "10.77.0.1", "10.77.0.3", lport, 80, seq),                   // not to us
		frag("224.0.0.1", "10.77.0.1", "10.77.0.1", "10.77.0.3", lport, 80, seq),                   // from a multicast "router"
		icmpRecord(t, "10.77.0.3", "10.77.0.1", 4, 0, 0, "10.77.0.1", "10.77.0.3", lport, 80, seq), // Source Quench
	}
	badSum := frag("10.77.0.3", "10.77.0.1", "10.77.0.1", "10.77.0.3", lport, 80, seq)
	badSum[22] ^= 0xff
	short := frag("10.77.0.3", "10.77.0.1", "10.77.0.1", "10.77.0.3", lport, 80, seq)[:20+8+20+4]
	binary.BigEndian.PutUint16(short[2:], uint16(len(short)))
	bad = append(bad, badSum, short)
	for _, rec := range bad {
		p.fc.Send(rec)
	}
	waitFor(t, "the ICMP drops", func() bool { return a.Stats().ICMPDrops == uint64(len(bad)) })
	if got := c.Info().SndMSS; got != fabricMSS {
		t.Fatalf("SndMSS %d after unmatched ICMP errors, want %d", got, fabricMSS)
	}
	p.fc.Send(frag("10.77.0.3", "10.77.0.1", "10.77.0.1", "10.77.0.3", lport, 80, seq))
	waitFor(t, "SndMSS 1240", func() bool { return c.Info().SndMSS == 1240 })
	st := a.Stats()
	if st.ICMPErrors != 1 || st.BadRecords != 0 || st.ResetsOut != 0 {
		t.Fatalf("ICMPErrors %d, BadRecords %d, ResetsOut %d; want 1, 0, 0", st.ICMPErrors, st.BadRecords, st.ResetsOut)
	}
	if c.Info().State != "ESTABLISHED" {
		t.Fatalf("state %s after ICMP errors, want ESTABLISHED", c.Info().State)
	}
}

// MUST-32, MUST-33: urgent data is signalled asynchronously: the
// UrgentNotify channel fires while no goroutine reads (the progress engine
// takes the segment in), UrgentPending holds until the reader has passed
// the mark, and the same mark is not signalled twice.
func TestUrgentDataIsSignalledWithoutReading(t *testing.T) {
	dir := testDir(t)
	a := newStack(t, dir, addrA)
	p, res := dialRaw(t, dir, a)
	c := p.establish(t, res)
	ch := c.UrgentNotify()
	send := func(seq uint32, flags wire.TCPFlags, up uint16, text string) {
		var b [maxHdrLen]byte
		h := wire.TCPHeader{SrcPort: 80, DstPort: p.syn.Hdr.SrcPort, Seq: seq, Ack: p.syn.Hdr.Seq + 1,
			Flags: flags, Window: 65535, Urgent: up}
		src, _ := wire.AddrFromNetip(addrC)
		dst, _ := wire.AddrFromNetip(addrA)
		n, _ := encodeHeaders(b[:], src, dst, makeIPFields(0, DefaultTTL), &h, len(text))
		p.fc.Send(append(b[:n:n], text...))
	}
	send(5001, wire.FlagACK|wire.FlagPSH, 0, "abc") // ordinary data: no signal
	send(5004, wire.FlagACK|wire.FlagPSH|wire.FlagURG, 3, "def")
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("no urgent signal while nobody reads")
	}
	if !c.UrgentPending() {
		t.Fatal("UrgentPending false before reading the urgent data")
	}
	c.SetReadDeadline(deadline())
	buf := make([]byte, 6)
	for got := 0; got < 6; {
		n, err := c.Read(buf[got:])
		if err != nil {
			t.Fatal(err)
		}
		got += n
	}
	if string(buf) != "abcdef" || c.UrgentPending() {
		t.Fatalf("read %q, UrgentPending %v; want \"abcdef\", false", buf, c.UrgentPending())
	}
	select {
	case <-ch:
		t.Fatal("the same urgent mark was signalled twice")
	default:
	}
}

// MUST-43: two dials that chose the same local port to the same peer
// cannot both register it (the check before the SYN can race with another
// dial; the registration cannot).
func TestRegisterRefusesA4TupleInUse(t *testing.T) {
	a := &Stack{conns: map[*Conn]struct{}{}, byFC: map[*fabric.Conn]any{}, inUse: map[fourTuple]struct{}{}}
	rip, _ := wire.AddrFromNetip(addrB)
	tuple := fourTuple{lport: 40002, rip: rip, rport: 80}
	if err := a.register(&Conn{tuple: tuple}); err != nil {
		t.Fatal(err)
	}
	if err := a.register(&Conn{tuple: tuple}); !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("second registration of %v: %v, want EADDRINUSE", tuple, err)
	}
}
