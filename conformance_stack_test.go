package ultcp

import (
	"context"
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
func rawPacket(t *testing.T, src, dst string, h wire.TCPHeader) []byte {
	t.Helper()
	var b [maxHdrLen]byte
	s, _ := wire.AddrFromNetip(netip.MustParseAddr(src))
	d, _ := wire.AddrFromNetip(netip.MustParseAddr(dst))
	n, err := encodeHeaders(b[:], s, d, &h, 0)
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
