package ultcp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/ultcp/ultcp/fabric"
	"github.com/ultcp/ultcp/internal/tcp"
	"github.com/ultcp/ultcp/internal/wire"
)

var addrC = netip.MustParseAddr("10.77.0.3")

// rawDial opens a bare fabric connection from a node at addrC to the
// stack at to: the tests write records by hand on it.
func rawDial(t *testing.T, dir string, to netip.Addr) *fabric.Conn {
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
	fc, err := n.Dial(context.Background(), to, fabric.ConnConfig{})
	if err != nil {
		t.Fatal(err)
	}
	return fc
}

// rawSegment encodes h (no payload) from addrC to dst.
func rawSegment(t *testing.T, h wire.TCPHeader, dst netip.Addr) []byte {
	t.Helper()
	var b [maxHdrLen]byte
	src, _ := wire.AddrFromNetip(addrC)
	d, _ := wire.AddrFromNetip(dst)
	n, err := encodeHeaders(b[:], src, d, makeIPFields(0, DefaultTTL), &h, 0)
	if err != nil {
		t.Fatal(err)
	}
	return b[:n]
}

// rawRecv reads the next record from fc as a segment.
func rawRecv(t *testing.T, fc *fabric.Conn, from netip.Addr) tcp.Segment {
	t.Helper()
	fc.SetReadDeadline(deadline())
	buf := make([]byte, 1<<16)
	n, err := fc.Recv(buf)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	var seg tcp.Segment
	src, _ := wire.AddrFromNetip(from)
	self, _ := wire.AddrFromNetip(addrC)
	p, err := decodeRecord(buf[:n], n, src, self, &seg)
	if err != nil {
		t.Fatalf("answer is not a valid packet: %v", err)
	}
	seg.Payload = p
	return seg
}

// RFC 9293 §3.10.7.1: an ACK for a port nobody listens on gets
// <SEQ=SEG.ACK><CTL=RST>.
func TestSegmentForNoConnectionIsAnsweredWithRST(t *testing.T) {
	dir := testDir(t)
	b := newStack(t, dir, addrB)
	fc := rawDial(t, dir, addrB)
	fc.Send(rawSegment(t, wire.TCPHeader{SrcPort: 4000, DstPort: 99, Seq: 1000, Ack: 5000, Flags: wire.FlagACK, Window: 100}, addrB))
	got := rawRecv(t, fc, addrB)
	if s := got.String(); s != "<SEQ=5000><CTL=RST><WND=0>" || got.Hdr.SrcPort != 99 || got.Hdr.DstPort != 4000 {
		t.Fatalf("answer %s %d→%d, want <SEQ=5000><CTL=RST><WND=0> 99→4000", s, got.Hdr.SrcPort, got.Hdr.DstPort)
	}
	if st := b.Stats(); st.NoListener != 1 || st.ResetsOut != 1 {
		t.Fatalf("NoListener %d, ResetsOut %d; want 1, 1", st.NoListener, st.ResetsOut)
	}
}

// A record that is not an IPv4 TCP packet, as the first record of a
// fabric connection: that ring is dropped, the stack keeps serving.
func TestGarbageFirstRecordDropsOnlyItsRing(t *testing.T) {
	dir := testDir(t)
	b := newStack(t, dir, addrB)
	l, _ := b.Listen("tcp", ":7")
	defer l.Close()
	echoServer(t, l)
	fc := rawDial(t, dir, addrB)
	fc.Send([]byte("this is not an IPv4 packet"))
	fc.SetReadDeadline(deadline())
	if _, err := fc.Peek(); err != io.EOF {
		t.Fatalf("the stack did not close the ring after garbage: %v", err)
	}
	if st := b.Stats(); st.BadRecords != 1 {
		t.Fatalf("BadRecords %d, want 1", st.BadRecords)
	}
	echoOnce(t, newStack(t, dir, addrA), "10.77.0.2:7")
}

// echoOnce dials addr from s and checks one echo.
func echoOnce(t *testing.T, s *Stack, addr string) {
	t.Helper()
	c, err := s.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(deadline())
	c.Write([]byte("ping"))
	got, err := io.ReadAll(io.LimitReader(c, 4))
	if err != nil || string(got) != "ping" {
		t.Fatalf("echo: %q, %v", got, err)
	}
}

// injectRecord writes a raw record on c's ring, as a broken peer would.
func injectRecord(c *Conn, rec []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.fc.Send(rec)
}

// Garbage on an established connection's ring resets that connection
// (both ends see ECONNRESET) and nothing else.
func TestGarbageOnEstablishedRingResetsTheConnection(t *testing.T) {
	c, s := pair(t)
	if err := injectRecord(c, []byte{0x45, 0, 0, 3, 1, 2}); err != nil {
		t.Fatal(err)
	}
	s.SetDeadline(deadline())
	if _, err := s.Read(make([]byte, 10)); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("server read after garbage: %v, want ECONNRESET", err)
	}
	c.SetDeadline(deadline())
	if _, err := c.Read(make([]byte, 10)); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("client read: %v, want ECONNRESET (the server's RST)", err)
	}
	if st := s.s.Stats(); st.BadRecords != 1 {
		t.Fatalf("BadRecords %d, want 1", st.BadRecords)
	}
	l, _ := s.s.Listen("tcp", ":7")
	defer l.Close()
	echoServer(t, l)
	echoOnce(t, c.s, "10.77.0.2:7")
}

// A well-formed segment on a connection's ring whose ports are not the
// connection's is a segment for no connection: it is answered with a RST
// and the connection itself is unharmed.
func TestSegmentWithForeignPortsOnARingGetsRSTAndConnectionSurvives(t *testing.T) {
	c, s := pair(t)
	var b [maxHdrLen]byte
	h := wire.TCPHeader{SrcPort: 1, DstPort: 2, Seq: 7, Ack: 9, Flags: wire.FlagACK}
	n, _ := encodeHeaders(b[:], c.s.ip, c.rip, makeIPFields(0, DefaultTTL), &h, 0)
	if err := injectRecord(c, b[:n]); err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(deadline())
	s.SetDeadline(deadline())
	go s.Write([]byte("fine"))
	got, err := io.ReadAll(io.LimitReader(c, 4))
	if err != nil || string(got) != "fine" {
		t.Fatalf("data after a foreign segment: %q, %v", got, err)
	}
	if st := s.s.Stats(); st.NoConn != 1 {
		t.Fatalf("server NoConn %d, want 1", st.NoConn)
	}
	if st := c.s.Stats(); st.NoConn != 1 || st.ResetsOut != 0 {
		t.Fatalf("client NoConn %d, ResetsOut %d; want 1 (the RST, not answered), 0", st.NoConn, st.ResetsOut)
	}
}

// A full listen backlog: further handshakes complete with SYN cookies
// (RFC 4987) and become connections as the application accepts.
func TestFullBacklogAnswersWithCookiesAndKeepsServing(t *testing.T) {
	dir := testDir(t)
	a, b := newStack(t, dir, addrA), newStack(t, dir, addrB)
	lc := ListenConfig{Stack: b, Backlog: 2}
	l, err := lc.ListenTCP(context.Background(), "tcp", ":80")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	const n = 5
	var conns []*Conn
	for i := range n {
		d := Dialer{Stack: a, Timeout: 5 * time.Second}
		c, err := d.DialTCP(context.Background(), "tcp", "10.77.0.2:80")
		if err != nil {
			t.Fatalf("dial %d with a full backlog: %v", i, err)
		}
		defer c.Close()
		c.SetDeadline(deadline())
		fmt.Fprintf(c, "client %d\n", i)
		conns = append(conns, c)
	}
	l.SetDeadline(deadline())
	seen := map[string]bool{}
	for range n {
		s, err := l.AcceptTCP()
		if err != nil {
			t.Fatal(err)
		}
		s.SetDeadline(deadline())
		line := make([]byte, 9)
		if _, err := io.ReadFull(s, line); err != nil {
			t.Fatal(err)
		}
		seen[string(line)] = true
		s.Write(line)
		s.Close()
	}
	if len(seen) != n {
		t.Fatalf("accepted %d distinct clients, want %d", len(seen), n)
	}
	for i, c := range conns {
		got, err := io.ReadAll(c)
		if err != nil || string(got) != fmt.Sprintf("client %d\n", i) {
			t.Fatalf("client %d got %q, %v", i, got, err)
		}
	}
	if st := l.Stats(); st.CookiesSent < n-2 || st.CookiesAccepted < 1 {
		t.Fatalf("listener stats %+v: want SYN cookies sent for the overflow", st)
	}
}
