package tcp

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/ultcp/ultcp/internal/wire"
)

// connInState builds a connection in state st by a scripted exchange
// (our ISS 100, the peer's 300, as in the unit tests). opts turns the
// RFC 7323 options on; custody selects the retransmission policy.
func connInState(t testing.TB, st State, opts, custody bool) *Conn {
	cfg := testConfig()
	if opts {
		cfg = optConfig()
	}
	cfg.Custody = custody
	cfg.NoDelay = true // the script's 3000 octets all go out whatever the MSS
	in := func(c *Conn, spec string) {
		s := parseSeg(t, spec)
		if opts && s.Hdr.Flags&wire.FlagRST == 0 {
			s.Hdr.Options.HasTimestamp, s.Hdr.Options.TSVal, s.Hdr.Options.TSEcr = true, 5000, c.tsNow(0)
			if s.Hdr.Flags&wire.FlagSYN != 0 {
				s.Hdr.Options.HasWScale, s.Hdr.Options.WScale = true, 2
			}
		}
		c.Input(0, &s, nil)
	}
	if st == Listen {
		return NewListening(&cfg, localPort, 0, 100)
	}
	if st == SynReceived {
		c := NewListening(&cfg, localPort, 0, 100)
		in(c, "<SEQ=300><CTL=SYN><WND=10000><MSS=1000>")
		return c
	}
	c, _ := Dial(0, &cfg, localPort, peerPort, 100, nil)
	if st == SynSent {
		return c
	}
	in(c, "<SEQ=300><ACK=101><CTL=SYN,ACK><WND=10000><MSS=1000>")
	c.Write(make([]byte, 3000))
	c.Output(0, nil)
	in(c, "<SEQ=301><ACK=3101><CTL=ACK><WND=10000>")
	switch st {
	case FinWait1, FinWait2, Closing, TimeWait:
		c.Close(0, nil)
		switch st {
		case FinWait2:
			in(c, "<SEQ=301><ACK=3102><CTL=ACK><WND=10000>")
		case Closing:
			in(c, "<SEQ=301><ACK=3101><CTL=FIN,ACK><WND=10000>")
		case TimeWait:
			in(c, "<SEQ=301><ACK=3102><CTL=FIN,ACK><WND=10000>")
		}
	case CloseWait, LastAck:
		in(c, "<SEQ=301><ACK=3101><CTL=FIN,ACK><WND=10000>")
		if st == LastAck {
			c.Close(0, nil)
		}
	case Closed:
		in(c, "<SEQ=301><CTL=RST><WND=0>")
	}
	if c.state != st {
		t.Fatalf("script for %v ended in %v", st, c.state)
	}
	return c
}

// checkInvariants verifies what must hold after every call, whatever
// arrived.
func checkInvariants(t *testing.T, c *Conn, out []Segment, what string) {
	t.Helper()
	fail := func(msg string) {
		t.Fatalf("%s: %s (state %v una %d nxt %d max %d)", what, msg, c.state, c.sndUna, c.sndNxt, c.sndMax)
	}
	if !seqLEQ(c.sndUna, c.sndNxt) || !seqLEQ(c.sndNxt, c.sndMax) {
		fail("SND.UNA <= SND.NXT <= highest sent violated")
	}
	if c.rb.n < 0 || c.rb.n > c.rb.size || c.rb.nooo < 0 || c.rb.nooo > maxOOO {
		fail("receive buffer out of bounds")
	}
	if c.sb.n < 0 || c.sb.n > c.sb.size {
		fail("send buffer out of bounds")
	}
	if c.rb.size > c.cfg.MaxRecvBuf && c.rb.size > c.cfg.RecvBuf {
		fail("receive buffer beyond its ceiling")
	}
	for i := 0; i < c.rb.nooo; i++ {
		r := c.rb.ooo[i]
		if !seqLT(c.rcvNxt, r.start) || !seqLT(r.start, r.end) || int(r.end-c.rcvNxt) > c.rb.size-c.rb.n {
			fail("out-of-order range outside the window")
		}
	}
	if c.state != Closed && c.state != Listen && c.state != SynSent && c.state != SynReceived {
		if int(c.sndMax-c.sndUna) > c.sb.size+2 {
			fail("more in flight than the send buffer holds")
		}
	}
	for i := range out {
		s := &out[i]
		if len(s.Payload) > c.cfg.MSS {
			fail("segment larger than the MSS")
		}
		if s.Hdr.Flags&wire.FlagRST != 0 && s.Hdr.Flags&wire.FlagSYN != 0 {
			fail("RST with SYN emitted")
		}
	}
}

var fuzzStates = [...]State{Closed, Listen, SynSent, SynReceived, Established, FinWait1,
	FinWait2, CloseWait, Closing, LastAck, TimeWait}

// FuzzConnInput throws arbitrary segments, timer runs and application calls
// at a connection in every state. The input is a state selector and a
// list of 16-byte records; it must never panic and the invariants of
// checkInvariants must hold after every step.
//
// Record layout: op, flags, seq offset (int16, relative to RCV.NXT unless
// op bit 0x10 makes it absolute from the record), ack offset (int16,
// relative to SND.UNA), window, urgent, payload length, time step (ms),
// option byte.
func FuzzConnInput(f *testing.F) {
	rec := func(op, flags byte, seq, ack int16, wnd, up, n, dt uint16, opt byte) []byte {
		b := make([]byte, 16)
		b[0], b[1] = op, flags
		binary.BigEndian.PutUint16(b[2:], uint16(seq))
		binary.BigEndian.PutUint16(b[4:], uint16(ack))
		binary.BigEndian.PutUint16(b[6:], wnd)
		binary.BigEndian.PutUint16(b[8:], up)
		binary.BigEndian.PutUint16(b[10:], n)
		binary.BigEndian.PutUint16(b[12:], dt)
		b[14] = opt
		return b
	}
	for i := range fuzzStates {
		f.Add(byte(i), append(rec(0, byte(wire.FlagACK), 0, 0, 1000, 0, 100, 1, 0),
			rec(0, byte(wire.FlagACK|wire.FlagFIN), 100, 0, 1000, 0, 0, 300, 0)...))
		f.Add(byte(i)|0x80, append(rec(0, byte(wire.FlagRST), 1, 0, 0, 0, 0, 0, 0),
			rec(0, byte(wire.FlagSYN), -1, 0, 0, 0, 0, 2000, 0)...))
	}
	f.Fuzz(func(t *testing.T, sel byte, data []byte) {
		st := fuzzStates[int(sel&0x7f)%len(fuzzStates)]
		c := connInState(t, st, sel&0x80 != 0, sel&0x40 != 0)
		now := time.Duration(0)
		var out []Segment
		buf := make([]byte, 4096)
		for len(data) >= 16 {
			r := data[:16]
			data = data[16:]
			now += time.Duration(binary.BigEndian.Uint16(r[12:])) * time.Millisecond
			switch op := r[0] & 0x0f; op {
			case 1:
				out = c.OnTimer(now, out[:0])
			case 2:
				k, _ := c.Write(buf[:int(binary.BigEndian.Uint16(r[10:]))%len(buf)])
				_ = k
				out = c.Output(now, out[:0])
			case 3:
				c.Read(buf[:int(binary.BigEndian.Uint16(r[10:]))%len(buf)])
				out = c.Output(now, out[:0])
			case 4:
				out = c.Close(now, out[:0])
			case 5:
				out = c.Abort(now, out[:0])
			case 6:
				c.SetCustody(!c.custody)
				_, out, _ = c.WriteDirect(now, buf[:int(binary.BigEndian.Uint16(r[10:]))%len(buf)], out[:0])
			case 7:
				c.ReportLoss(now, c.sndUna, c.sndUna+uint32(binary.BigEndian.Uint16(r[10:])))
			default:
				var s Segment
				h := &s.Hdr
				h.SrcPort, h.DstPort = peerPort, localPort
				h.Flags = wire.TCPFlags(r[1])
				off := uint32(int32(int16(binary.BigEndian.Uint16(r[2:]))))
				if r[0]&0x10 != 0 {
					h.Seq = off << 16
				} else {
					h.Seq = c.rcvNxt + off
				}
				h.Ack = c.sndUna + uint32(int32(int16(binary.BigEndian.Uint16(r[4:]))))
				h.Window = binary.BigEndian.Uint16(r[6:])
				h.Urgent = binary.BigEndian.Uint16(r[8:])
				s.Payload = buf[:int(binary.BigEndian.Uint16(r[10:]))%2048]
				o := r[14]
				if o&1 != 0 {
					h.Options.HasTimestamp = true
					h.Options.TSVal = 5000 + uint32(int8(r[15]))
					h.Options.TSEcr = c.tsNow(now)
				}
				if o&2 != 0 {
					h.Options.MSS = uint16(r[15])
				}
				if o&4 != 0 {
					h.Options.HasWScale, h.Options.WScale = true, r[15]
				}
				out = c.Input(now, &s, out[:0])
			}
			checkInvariants(t, c, out, "step")
		}
		_ = c.Deadline()
	})
}

// TestFuzzSeedsEveryStateBuilds checks the state scripts the fuzz target
// relies on (each fails the test if it ends in the wrong state).
func TestFuzzSeedsEveryStateBuilds(t *testing.T) {
	for _, st := range fuzzStates {
		for _, opts := range []bool{false, true} {
			connInState(t, st, opts, false)
		}
	}
}

// FuzzListenerInput feeds arbitrary segments from a few source ports to a
// listener with a tiny backlog and SYN cookies: it must never panic, never
// hold more than its bounds (see ListenerConfig.Backlog), and every connection it returns must be in
// SYN-RECEIVED or ESTABLISHED. Records are 12 bytes: source port (low
// byte), flags, seq (4), ack (4), window (2).
func FuzzListenerInput(f *testing.F) {
	f.Add([]byte{1, byte(wire.FlagSYN), 0, 0, 1, 44, 0, 0, 0, 0, 39, 16})
	f.Add([]byte{1, byte(wire.FlagACK), 0, 0, 1, 45, 0, 0, 0, 1, 39, 16})
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg := ListenerConfig{Conn: testConfig(), Backlog: 2, ISN: NewISNGenerator([16]byte{1}), Cookies: NewSYNCookies([16]byte{2})}
		l, err := NewListener(&cfg)
		if err != nil {
			t.Fatal(err)
		}
		now := time.Second
		var out []Segment
		for len(data) >= 12 {
			r := data[:12]
			data = data[12:]
			var s Segment
			s.Hdr.SrcPort, s.Hdr.DstPort = 1000+uint16(r[0]&7), localPort
			s.Hdr.Flags = wire.TCPFlags(r[1])
			s.Hdr.Seq = binary.BigEndian.Uint32(r[2:])
			s.Hdr.Ack = binary.BigEndian.Uint32(r[6:])
			s.Hdr.Window = binary.BigEndian.Uint16(r[10:])
			if r[0]&0x80 != 0 {
				s.Payload = r
			}
			var c *Conn
			c, out = l.Input(now, lAddr, netip.AddrPortFrom(rAddr.Addr(), s.Hdr.SrcPort), &s, out[:0])
			if c != nil && c.state != SynReceived && c.state != Established && c.state != CloseWait {
				t.Fatalf("listener returned a connection in %v", c.state)
			}
			if l.Pending() > 4 || l.acceptQueue() > 2 {
				t.Fatalf("listener holds %d (%d established) with backlog 2", l.Pending(), l.acceptQueue())
			}
			if r[0]&0x40 != 0 {
				l.Accept()
			}
			now += time.Millisecond
		}
	})
}
