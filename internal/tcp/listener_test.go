package tcp

import (
	"net/netip"
	"strconv"
	"testing"
	"time"
)

var (
	lAddr = netip.MustParseAddrPort("10.77.0.1:1234")
	rAddr = netip.MustParseAddrPort("10.77.0.2:80")
)

type lharness struct {
	t   *testing.T
	l   *Listener
	now time.Duration
	out []Segment
}

func newListenerHarness(t *testing.T, backlog int, cookies bool) *lharness {
	t.Helper()
	cfg := ListenerConfig{Conn: testConfig(), Backlog: backlog, ISN: NewISNGenerator([16]byte{1})}
	if cookies {
		cfg.Cookies = NewSYNCookies([16]byte{2})
	}
	l, err := NewListener(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &lharness{t: t, l: l, now: time.Second}
}

// in feeds spec from rAddr with source port sport and checks the answer.
func (h *lharness) in(sport uint16, spec string, want ...string) *Conn {
	h.t.Helper()
	s := parseSeg(h.t, spec)
	s.Hdr.SrcPort = sport
	from := netip.AddrPortFrom(rAddr.Addr(), sport)
	var c *Conn
	c, h.out = h.l.Input(h.now, lAddr, from, &s, h.out[:0])
	if g := format(h.out); !equalStrings(g, want) {
		h.t.Fatalf("after %s:\n got: %q\nwant: %q", spec, g, want)
	}
	return c
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func (h *lharness) isn(sport uint16) uint32 {
	return h.l.cfg.ISN.ISN(h.now, lAddr, netip.AddrPortFrom(rAddr.Addr(), sport))
}

func u(x uint32) string { return strconv.FormatUint(uint64(x), 10) }

// RFC 9293 §3.10.7.2: a SYN in LISTEN creates a connection in SYN-RECEIVED
// with an RFC 6528 ISS; once the handshake completes Accept returns it.
func TestListenerAdmitsSynAndAcceptsAfterHandshake(t *testing.T) {
	h := newListenerHarness(t, 2, false)
	iss := h.isn(80)
	c := h.in(80, "<SEQ=300><CTL=SYN><WND=10000><MSS=1000>",
		"<SEQ="+u(iss)+"><ACK=301><CTL=SYN,ACK><WND=8000><MSS=1000>")
	if c == nil || c.State() != SynReceived {
		t.Fatalf("no SYN-RECEIVED connection: %v", c)
	}
	if h.l.Accept() != nil {
		t.Fatal("Accept returned a connection still in SYN-RECEIVED")
	}
	s := parseSeg(t, "<SEQ=301><ACK="+u(iss+1)+"><CTL=ACK><WND=10000>")
	c.Input(h.now, &s, nil)
	if got := h.l.Accept(); got != c {
		t.Fatalf("Accept = %v, want the established connection", got)
	}
	if h.l.Pending() != 0 {
		t.Fatalf("Pending = %d after Accept", h.l.Pending())
	}
}

// The backlog bounds embryonic plus unaccepted connections; without
// cookies a SYN beyond it is dropped and counted.
func TestListenerBacklogFullDropsSynWithoutCookies(t *testing.T) {
	h := newListenerHarness(t, 1, false)
	h.in(80, "<SEQ=300><CTL=SYN><WND=10000><MSS=1000>",
		"<SEQ="+u(h.isn(80))+"><ACK=301><CTL=SYN,ACK><WND=8000><MSS=1000>")
	if c := h.in(81, "<SEQ=500><CTL=SYN><WND=10000><MSS=1000>"); c != nil {
		t.Fatal("a connection was created beyond the backlog")
	}
	if h.l.Stats().BacklogOverflow != 1 {
		t.Fatalf("BacklogOverflow = %d, want 1", h.l.Stats().BacklogOverflow)
	}
}

// A connection that dies in SYN-RECEIVED frees its backlog slot.
func TestListenerDeadEmbryoFreesBacklog(t *testing.T) {
	h := newListenerHarness(t, 1, false)
	c := h.in(80, "<SEQ=300><CTL=SYN><WND=10000><MSS=1000>",
		"<SEQ="+u(h.isn(80))+"><ACK=301><CTL=SYN,ACK><WND=8000><MSS=1000>")
	rst := parseSeg(t, "<SEQ=301><CTL=RST><WND=0>")
	c.Input(h.now, &rst, nil)
	if c2 := h.in(81, "<SEQ=500><CTL=SYN><WND=10000><MSS=1000>",
		"<SEQ="+u(h.isn(81))+"><ACK=501><CTL=SYN,ACK><WND=8000><MSS=1000>"); c2 == nil {
		t.Fatal("SYN refused after the embryo died")
	}
}

// RFC 4987 §3.6: with the backlog full, a SYN gets a stateless SYN-ACK
// whose ISS is a cookie; the ACK that returns it creates the connection.
func TestListenerSynCookieWhenBacklogFull(t *testing.T) {
	h := newListenerHarness(t, 1, true)
	h.in(80, "<SEQ=300><CTL=SYN><WND=10000><MSS=1000>",
		"<SEQ="+u(h.isn(80))+"><ACK=301><CTL=SYN,ACK><WND=8000><MSS=1000>")
	h.l.Accept() // nothing yet; the backlog stays full
	cookie := h.l.cfg.Cookies.Make(h.now, lAddr, netip.AddrPortFrom(rAddr.Addr(), 81), 500, 1000)
	if c := h.in(81, "<SEQ=500><CTL=SYN><WND=10000><MSS=1000>",
		"<SEQ="+u(cookie)+"><ACK=501><CTL=SYN,ACK><WND=8000><MSS=1000>"); c != nil {
		t.Fatal("a cookie SYN created state")
	}
	// The application accepts nothing, but the first embryo dies: room.
	h.l.pending[0].state = Closed
	c := h.in(81, "<SEQ=501><ACK="+u(cookie+1)+"><CTL=ACK><WND=10000><TEXT=hello>") // ACK delayed
	if c == nil || c.State() != Established || c.SndMSS() != 536 {
		t.Fatalf("cookie ACK gave %v", c)
	}
	if h.l.Accept() != c {
		t.Fatal("Accept did not return the cookie connection")
	}
	p := make([]byte, 10)
	if n, _ := c.Read(p); string(p[:n]) != "hello" {
		t.Fatalf("read %q, want hello", p[:n])
	}
	if s := h.l.Stats(); s.CookiesSent != 1 || s.CookiesAccepted != 1 {
		t.Fatalf("stats %+v", s)
	}
}

// A forged or stale cookie is an ACK for no connection: RST.
func TestListenerBadCookieGetsReset(t *testing.T) {
	h := newListenerHarness(t, 1, true)
	h.in(81, "<SEQ=501><ACK=12345><CTL=ACK><WND=10000>", "<SEQ=12345><CTL=RST><WND=0>")
	if h.l.Stats().CookiesRejected != 1 {
		t.Fatalf("CookiesRejected = %d", h.l.Stats().CookiesRejected)
	}
}

// With timestamps, the cookie SYN-ACK offers window scaling and keeps the
// peer's shift in its TSval; the connection recovers it.
func TestListenerSynCookieKeepsWindowScaleInTimestamp(t *testing.T) {
	cfg := ListenerConfig{Conn: optConfig(), Backlog: 1, ISN: NewISNGenerator([16]byte{1}), Cookies: NewSYNCookies([16]byte{2})}
	l, _ := NewListener(&cfg)
	h := &lharness{t: t, l: l, now: time.Second}
	h.l.pending = append(h.l.pending, &Conn{state: SynReceived}) // backlog full
	s := parseSeg(t, "<SEQ=500><CTL=SYN><WND=10000><MSS=1000><WS=3><TS=777,0>")
	_, h.out = l.Input(h.now, lAddr, rAddr, &s, nil)
	if len(h.out) != 1 || !h.out[0].Hdr.Options.HasWScale || !h.out[0].Hdr.Options.HasTimestamp {
		t.Fatalf("cookie SYN-ACK %v lacks WS or TS", format(h.out))
	}
	synack := h.out[0].Hdr
	h.l.pending = h.l.pending[:0]
	ack := parseSeg(t, "<SEQ=501><ACK="+u(synack.Seq+1)+"><CTL=ACK><WND=100><TS=778,"+u(synack.Options.TSVal)+">")
	c, _ := l.Input(h.now, lAddr, rAddr, &ack, nil)
	if c == nil || !c.wsOK || c.sndShift != 3 || c.sndWnd != 800 || !c.tsOK {
		t.Fatalf("cookie connection: %+v", c)
	}
}

// RFC 9293 §3.10.7.2: RST ignored; ACK answered with RST.
func TestListenerRSTIgnoredAndACKReset(t *testing.T) {
	h := newListenerHarness(t, 1, false)
	h.in(80, "<SEQ=300><CTL=RST><WND=0>")
	h.in(80, "<SEQ=300><ACK=42><CTL=ACK><WND=0>", "<SEQ=42><CTL=RST><WND=0>")
	h.in(80, "<SEQ=300><CTL=FIN,SYN><WND=0>")
}

// MUST-15: without an MSS option the send MSS is 536 over IPv4 and 1220
// over IPv6; the listener knows which from the addresses.
func TestListenerDefaultSendMSSByAddressFamily(t *testing.T) {
	h := newListenerHarness(t, 4, false)
	h.l.cfg.Conn.MSS, h.l.cfg6.MSS = 1460, 1460
	s := parseSeg(t, "<SEQ=300><CTL=SYN><WND=10000>")
	c4, _ := h.l.Input(h.now, lAddr, rAddr, &s, nil)
	l6 := netip.MustParseAddrPort("[fd00::1]:1234")
	r6 := netip.MustParseAddrPort("[fd00::2]:80")
	c6, _ := h.l.Input(h.now, l6, r6, &s, nil)
	if c4.SndMSS() != 536 || c6.SndMSS() != 1220 {
		t.Fatalf("default send MSS: IPv4 %d, IPv6 %d; want 536, 1220", c4.SndMSS(), c6.SndMSS())
	}
}

// RFC 4987: a flood of spoofed SYNs fills the backlog, yet a genuine
// client still connects (through a cookie) and exchanges data, and the
// flood costs the listener no state beyond its backlog.
func TestListenerUnderSynFloodStillAcceptsGenuineClient(t *testing.T) {
	h := newListenerHarness(t, 4, true)
	for i := 0; i < 1000; i++ {
		s := parseSeg(t, "<SEQ="+u(uint32(i*7919))+"><CTL=SYN><WND=1000><MSS=1460>")
		s.Hdr.SrcPort = uint16(2000 + i)
		h.l.Input(h.now, lAddr, netip.AddrPortFrom(rAddr.Addr(), s.Hdr.SrcPort), &s, nil)
	}
	if h.l.Pending() != 4 || h.l.Stats().CookiesSent != 996 {
		t.Fatalf("pending %d, cookies %d; want 4, 996", h.l.Pending(), h.l.Stats().CookiesSent)
	}
	cfg := testConfig()
	client, syn := Dial(h.now, &cfg, 80, localPort, 5000, nil)
	c, synack := h.l.Input(h.now, lAddr, rAddr, &syn[0], nil)
	if c != nil || len(synack) != 1 {
		t.Fatalf("SYN under flood: conn %v, %d segments; want a cookie SYN-ACK only", c, len(synack))
	}
	ack := client.Input(h.now, &synack[0], nil)
	client.Write([]byte("hello"))
	data := client.Output(h.now, nil)
	server, _ := h.l.Input(h.now, lAddr, rAddr, &ack[0], nil)
	if server != nil {
		server.Input(h.now, &data[0], nil)
	}
	if server == nil || server.State() != Established || h.l.Accept() != server {
		t.Fatalf("genuine client not accepted under the flood (server %v)", server)
	}
	p := make([]byte, 8)
	if n, _ := server.Read(p); string(p[:n]) != "hello" {
		t.Fatalf("server read %q, want hello", p[:n])
	}
}

// Closing the listener resets the connections nobody accepted.
func TestListenerCloseResetsUnacceptedConnections(t *testing.T) {
	h := newListenerHarness(t, 4, false)
	iss := h.isn(80)
	c := h.in(80, "<SEQ=300><CTL=SYN><WND=10000><MSS=1000>",
		"<SEQ="+u(iss)+"><ACK=301><CTL=SYN,ACK><WND=8000><MSS=1000>")
	out := h.l.Close(h.now, nil)
	if g := format(out); len(g) != 1 || g[0] != "<SEQ="+u(iss+1)+"><CTL=RST><WND=0>" {
		t.Fatalf("Close sent %q", g)
	}
	if c.State() != Closed || h.l.Pending() != 0 {
		t.Fatalf("state %v, pending %d", c.State(), h.l.Pending())
	}
}
