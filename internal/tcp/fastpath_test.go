package tcp

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ultcp/ultcp/internal/wire"
)

// Header prediction (fastpath.go). The literal tests show which segments
// the fast paths take and that everything unusual falls back to the full
// path; the twin test shows that taking a fast path changes nothing: two
// copies of a connection pair, one with the fast paths off, fed the same
// random traffic, stay equal field for field.

// fabricEstablished is established() as the fabric stack runs every connection:
// custody mode (WriteDirect sends from the caller's buffer), no Nagle.
func fabricEstablished(t *testing.T) *harness {
	t.Helper()
	cfg := testConfig()
	cfg.Custody = true
	cfg.NoDelay = true
	h := dialed(t, cfg)
	h.now = 10 * time.Millisecond
	h.in("<SEQ=300><ACK=101><CTL=SYN,ACK><WND=10000><MSS=1000>",
		"<SEQ=101><ACK=301><CTL=ACK><WND=8000>")
	return h
}

// writeDirect sends n octets numbered by their sequence numbers through
// WriteDirect and checks what goes out.
func (h *harness) writeDirect(n int, want ...string) {
	h.t.Helper()
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(h.c.sndNxt + uint32(i))
	}
	k, out, err := h.c.WriteDirect(h.now, p, h.out[:0])
	h.out = out
	if err != nil || k != n {
		h.t.Fatalf("WriteDirect(%d) = %d, %v", n, k, err)
	}
	h.check("WriteDirect", h.out, want)
}

// fast checks how many segments the fast paths have taken so far.
func (h *harness) fast(in, out uint64) {
	h.t.Helper()
	if h.c.fastIn != in || h.c.fastOut != out {
		h.t.Fatalf("fast paths took %d segments in and %d out; want %d and %d", h.c.fastIn, h.c.fastOut, in, out)
	}
}

// A request/response exchange: the request goes out by the send fast path,
// the answer (in-order data acknowledging the request, same window) comes
// in by the receive fast path, its ACK is delayed (RFC 9293 §3.8.6.3) and
// rides on the next request.
func TestFastPathRequestResponse(t *testing.T) {
	h := fabricEstablished(t)
	h.writeDirect(10, "<SEQ=101><ACK=301><CTL=PSH,ACK><WND=8000><DATA=10>")
	h.fast(0, 1)
	h.in("<SEQ=301><ACK=111><CTL=PSH,ACK><WND=10000><DATA=20>")
	h.fast(1, 1)
	if h.c.sndUna != 111 || h.c.rcvNxt != 321 || h.c.Readable() != 20 || h.c.delackAt != h.now+DefaultDelayedAck {
		t.Fatalf("una %d nxt %d readable %d delack %v", h.c.sndUna, h.c.rcvNxt, h.c.Readable(), h.c.delackAt)
	}
	h.readAll(301, 20)
	h.writeDirect(10, "<SEQ=111><ACK=321><CTL=PSH,ACK><WND=7980><DATA=10>")
	h.fast(1, 2)
	// A pure ACK of new data, same window: the fast path, nothing out.
	h.in("<SEQ=321><ACK=121><CTL=ACK><WND=10000>")
	h.fast(2, 2)
}

// A window that slides (new data acknowledged, the right edge where it
// was, or further right) is the common case: the fast path applies the
// SND.WL rule and takes the new window.
func TestFastPathTakesSlidingWindow(t *testing.T) {
	h := fabricEstablished(t)
	h.writeDirect(100, "<SEQ=101><ACK=301><CTL=PSH,ACK><WND=8000><DATA=100>")
	h.in("<SEQ=301><ACK=201><CTL=ACK><WND=9900>") // edge 201+9900 = 101+10000
	h.fast(1, 1)
	if h.c.sndWnd != 9900 || h.c.sndWl1 != 301 || h.c.sndWl2 != 201 {
		t.Fatalf("SND.WND %d WL1 %d WL2 %d, want 9900 301 201", h.c.sndWnd, h.c.sndWl1, h.c.sndWl2)
	}
	h.in("<SEQ=301><ACK=201><CTL=ACK><WND=9950><DATA=5>") // the edge moves right
	h.fast(2, 1)
	if h.c.sndWnd != 9950 {
		t.Fatalf("SND.WND %d, want 9950", h.c.sndWnd)
	}
}

// A second full-sized segment calls for an ACK at once (RFC 9293
// §3.8.6.3): the fast path sends it.
func TestFastPathAcksEverySecondFullSegment(t *testing.T) {
	h := fabricEstablished(t)
	h.inDirect("<SEQ=301><ACK=101><CTL=ACK><WND=10000><DATA=1000>", 1000, 1000)
	h.inDirect("<SEQ=1301><ACK=101><CTL=ACK><WND=10000><DATA=1000>", 1000, 1000,
		"<SEQ=101><ACK=2301><CTL=ACK><WND=8000>")
	h.fast(2, 0)
}

// Each of these segments is unusual in one way and must take the full
// path; the answer is the full path's, as the RFC prescribes it.
func TestFastPathFallsBack(t *testing.T) {
	for _, tc := range []struct {
		name, seg string
		want      []string
	}{
		// Out of order: held, and acknowledged at once (RFC 5681 §4.2).
		{"out of order", "<SEQ=311><ACK=101><CTL=ACK><WND=10000><DATA=10>",
			[]string{"<SEQ=101><ACK=301><CTL=ACK><WND=8000>"}},
		// Old data: a duplicate, acknowledged at once.
		{"old data", "<SEQ=291><ACK=101><CTL=ACK><WND=10000><DATA=10>",
			[]string{"<SEQ=101><ACK=301><CTL=ACK><WND=8000>"}},
		// The right edge moves left (SND.UNA 101 + 9000 < 101 + 10000):
		// a shrunk window (RFC 9293 §3.8.6).
		{"shrunk window", "<SEQ=301><ACK=101><CTL=ACK><WND=9000><DATA=10>", nil},
		// A zero window: the persist timer's business.
		{"zero window", "<SEQ=301><ACK=101><CTL=ACK><WND=0><DATA=10>", nil},
		{"FIN", "<SEQ=301><ACK=101><CTL=FIN,ACK><WND=10000><DATA=10>",
			[]string{"<SEQ=101><ACK=312><CTL=ACK><WND=7990>"}},
		{"URG", "<SEQ=301><ACK=101><CTL=URG,ACK><WND=10000><UP=5><DATA=10>", nil},
		{"no ACK", "<SEQ=301><CTL=PSH><WND=10000><DATA=10>", nil},
		{"RST", "<SEQ=301><ACK=101><CTL=RST,ACK><WND=10000>", nil},
		{"SYN", "<SEQ=301><ACK=101><CTL=SYN,ACK><WND=10000>",
			[]string{"<SEQ=101><ACK=301><CTL=ACK><WND=8000>"}},
		{"ECE", "<SEQ=301><ACK=101><CTL=ECE,ACK><WND=10000><DATA=10>", nil},
		{"timestamp option", "<SEQ=301><ACK=101><CTL=ACK><WND=10000><TS=5,0><DATA=10>", nil},
		{"SACK option", "<SEQ=301><ACK=101><CTL=ACK><WND=10000><SACK=50-60><DATA=10>", nil},
		// Acknowledges what was never sent: a challenge ACK (RFC 5961 §5.2).
		{"future ACK", "<SEQ=301><ACK=500><CTL=ACK><WND=10000><DATA=10>",
			[]string{"<SEQ=101><ACK=301><CTL=ACK><WND=8000>"}},
		// Nothing in flight and nothing new: not a duplicate ACK either.
		{"pure old ACK", "<SEQ=301><ACK=101><CTL=ACK><WND=10000>", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := fabricEstablished(t)
			h.in(tc.seg, tc.want...)
			h.fast(0, 0)
		})
	}
}

// Data beyond the window and data behind a hole take the full path.
func TestFastPathFallsBackForWindowAndHole(t *testing.T) {
	h := fabricEstablished(t)
	h.in("<SEQ=301><ACK=101><CTL=ACK><WND=10000><DATA=1000>")
	h.in("<SEQ=2301><ACK=101><CTL=ACK><WND=10000><DATA=1000>", "<SEQ=101><ACK=1301><CTL=ACK><WND=7000>")
	h.fast(1, 0)
	// In order now, but a segment is held out of order: reassembly.
	h.in("<SEQ=1301><ACK=101><CTL=ACK><WND=10000><DATA=1000>", "<SEQ=101><ACK=3301><CTL=ACK><WND=5000>")
	h.fast(1, 0)
	// More than the free buffer: trimmed to the window by the full path.
	h.in("<SEQ=3301><ACK=101><CTL=ACK><WND=10000><TEXT="+strings.Repeat("x", 5001)+">",
		"<SEQ=101><ACK=8301><CTL=ACK><WND=0>")
	h.fast(1, 0)
}

// A duplicate ACK (data in flight, nothing new acknowledged) is counted
// by the full path (RFC 5681 §2).
func TestFastPathFallsBackForDuplicateACK(t *testing.T) {
	h := fabricEstablished(t)
	h.writeDirect(10, "<SEQ=101><ACK=301><CTL=PSH,ACK><WND=8000><DATA=10>")
	h.in("<SEQ=301><ACK=101><CTL=ACK><WND=10000>")
	h.fast(0, 1)
	if h.c.stats.DupAcks != 1 {
		t.Fatalf("%d duplicate ACKs counted, want 1", h.c.stats.DupAcks)
	}
}

// The send fast path stands aside for urgent data (the URG flag and
// pointer, RFC 9293 §3.8.5), for a write larger than a segment, for an
// ACK owed first, and in retaining mode.
func TestFastWriteFallsBack(t *testing.T) {
	h := fabricEstablished(t)
	h.writeDirect(1500, "<SEQ=101><ACK=301><CTL=ACK><WND=8000><DATA=1000>",
		"<SEQ=1101><ACK=301><CTL=PSH,ACK><WND=8000><DATA=500>")
	h.fast(0, 0)
	h.in("<SEQ=301><ACK=1601><CTL=ACK><WND=10000>")
	h.fast(1, 0)
	// An ACK is due (out-of-order data arrived): output sends it first.
	h.in("<SEQ=401><ACK=1601><CTL=ACK><WND=10000><DATA=10>", "<SEQ=1601><ACK=301><CTL=ACK><WND=8000>")
	h.c.ackNow = true
	h.writeDirect(10, "<SEQ=1601><ACK=301><CTL=ACK><WND=8000>",
		"<SEQ=1601><ACK=301><CTL=PSH,ACK><WND=8000><DATA=10>")
	h.fast(1, 0)

	u := fabricEstablished(t)
	u.writeDirect(10, "<SEQ=101><ACK=301><CTL=PSH,ACK><WND=8000><DATA=10>")
	u.c.SetUrgent() // the urgent pointer is pending until acknowledged
	u.writeDirect(10, "<SEQ=111><ACK=301><CTL=PSH,ACK><WND=8000><DATA=10>")
	u.fast(0, 1)

	r := established(t) // retaining mode: Write and Output, never the fast path
	r.write(10, "<SEQ=101><ACK=301><CTL=PSH,ACK><WND=8000><DATA=10>")
	r.in("<SEQ=301><ACK=111><CTL=PSH,ACK><WND=10000><DATA=10>")
	r.fast(0, 0)
}

// The twin test. Each world is a connection pair over an in-memory link;
// the slow world has the fast paths off. Both run the same random script
// (writes, reads, deliveries in random order, drops, duplicates, segments
// altered in window, flags, options and sequence number, timers, closes)
// and must stay equal after every step: the same segments out, the same
// connection state.

type twinWorld struct {
	conns [2]*Conn
	q     []Segment // in flight, each to the other side of its sender
	to    []int
	out   []Segment
	rbuf  []byte
}

func (w *twinWorld) send(from int, segs []Segment) {
	for i := range segs {
		s := segs[i]
		s.Payload = slices.Clone(s.Payload)
		w.q = append(w.q, s)
		w.to = append(w.to, 1-from)
	}
}

type twin struct {
	t     *testing.T
	rng   *rand.Rand
	now   time.Duration
	w     [2]*twinWorld // fast, slow
	step  int
	trace []string
}

// do runs f in both worlds and compares what they sent and what they
// became.
func (tw *twin) do(what string, f func(w *twinWorld) []string) {
	tw.t.Helper()
	tw.trace = append(tw.trace, what)
	if len(tw.trace) > 12 {
		tw.trace = tw.trace[1:]
	}
	a, b := f(tw.w[0]), f(tw.w[1])
	if !slices.Equal(a, b) {
		tw.fail(fmt.Sprintf("different results:\nfast: %v\nslow: %v", a, b))
	}
	for i := range 2 {
		x, y := *tw.w[0].conns[i], *tw.w[1].conns[i]
		x.noFast, y.noFast = false, false
		x.fastIn, x.fastOut, y.fastIn, y.fastOut = 0, 0, 0, 0
		x.cfg.CC, y.cfg.CC = nil, nil
		if !reflect.DeepEqual(x, y) {
			tw.fail(fmt.Sprintf("side %d differs:\nfast: %+v\nslow: %+v", i, x, y))
		}
	}
	if !slices.EqualFunc(tw.w[0].q, tw.w[1].q, func(p, q Segment) bool {
		return p.String() == q.String() && string(p.Payload) == string(q.Payload)
	}) {
		tw.fail("different segments in flight")
	}
}

func (tw *twin) fail(msg string) {
	tw.t.Helper()
	tw.t.Fatalf("step %d at %v: %s\nlast steps:\n  %s", tw.step, tw.now, msg, strings.Join(tw.trace, "\n  "))
}

func newTwin(t *testing.T, cfg Config, seed uint64) *twin {
	tw := &twin{t: t, rng: rand.New(rand.NewPCG(seed, 7))}
	for i := range tw.w {
		w := &twinWorld{rbuf: make([]byte, 4096)}
		w.conns[1] = NewListening(&cfg, 80, 0, 5000)
		var out []Segment
		w.conns[0], out = Dial(0, &cfg, 1234, 80, 0xffffff00, nil)
		w.send(0, out)
		if i == 1 {
			w.conns[0].noFast, w.conns[1].noFast = true, true
		}
		tw.w[i] = w
	}
	return tw
}

// script runs steps random steps.
func (tw *twin) script(steps int) {
	payload := make([]byte, 3000)
	for i := range payload {
		payload[i] = byte(i*7 + 3)
	}
	for tw.step = 0; tw.step < steps; tw.step++ {
		r := tw.rng
		side := r.IntN(2)
		fw := tw.w[0]
		switch op := r.IntN(20); {
		case op < 5: // write
			n := 1 + r.IntN(40)
			if r.IntN(8) == 0 {
				n = 1 + r.IntN(len(payload))
			}
			direct := fw.conns[side].Custody()
			tw.do(fmt.Sprintf("side %d writes %d (direct %v)", side, n, direct), func(w *twinWorld) []string {
				c := w.conns[side]
				var k int
				var err error
				if direct && !c.noFast {
					// The fast world tries the link's header-only fast
					// path first, then WriteDirect as a stack does.
					if h, ok := c.WriteFastHdr(payload[:n]); ok {
						c.SentAt(tw.now)
						var seg Segment
						seg.Hdr.SrcPort, seg.Hdr.DstPort = c.Ports()
						seg.Hdr.Seq, seg.Hdr.Ack, seg.Hdr.Flags, seg.Hdr.Window = h.Seq, h.Ack, h.Flags, h.Window
						seg.Payload = payload[:n]
						k, w.out = n, append(w.out[:0], seg)
					} else {
						k, w.out, err = c.WriteDirect(tw.now, payload[:n], w.out[:0])
					}
				} else if direct {
					k, w.out, err = c.WriteDirect(tw.now, payload[:n], w.out[:0])
				} else {
					k, err = c.Write(payload[:n])
					w.out = c.Output(tw.now, w.out[:0])
				}
				w.send(side, w.out)
				return []string{fmt.Sprint(k, err), strings.Join(format(w.out), " ")}
			})
		case op < 8: // read
			n := 1 + r.IntN(len(fw.rbuf))
			tw.do(fmt.Sprintf("side %d reads %d", side, n), func(w *twinWorld) []string {
				c := w.conns[side]
				k, err := c.Read(w.rbuf[:n])
				w.out = c.Output(tw.now, w.out[:0])
				w.send(side, w.out)
				return []string{fmt.Sprint(k, err), string(w.rbuf[:k]), strings.Join(format(w.out), " ")}
			})
		case op < 16 && len(fw.q) > 0: // deliver, maybe out of order, maybe altered
			j := 0
			if r.IntN(10) == 0 {
				j = r.IntN(len(fw.q))
			}
			alter := 0
			if r.IntN(10) == 0 {
				alter = 1 + r.IntN(8)
			}
			// An altered segment is an extra copy: the original still
			// arrives, as on the fabric, which loses nothing.
			dup := r.IntN(20) == 0 || alter != 0
			direct := r.IntN(2) == 0
			tw.do(fmt.Sprintf("deliver %d of %d, alter %d, dup %v, direct %v: %s", j, len(fw.q), alter, dup, direct,
				fw.q[j].String()), func(w *twinWorld) []string {
				s, to := w.q[j], w.to[j]
				if !dup {
					w.q = slices.Delete(w.q, j, j+1)
					w.to = slices.Delete(w.to, j, j+1)
				}
				h := &s.Hdr
				switch alter {
				case 1:
					h.Window -= 100
				case 2:
					h.Window += 7
				case 3:
					h.Flags |= wire.FlagURG
					h.Urgent = 3
				case 4:
					h.Options.NumSACK, h.Options.SACK[0] = 1, wire.SACKBlock{Left: h.Ack + 10, Right: h.Ack + 20}
				case 5:
					h.Options.HasTimestamp, h.Options.TSVal = true, 77
				case 6:
					h.Seq += 100
				case 7:
					h.Seq -= 5
				case 8:
					h.Flags &^= wire.FlagACK
				}
				c := w.conns[to]
				var k int
				if direct && len(s.Payload) > 0 && c.Readable() == 0 {
					k, w.out = c.InputDirect(tw.now, &s, len(s.Payload), w.out[:0])
				} else {
					w.out = c.Input(tw.now, &s, w.out[:0])
				}
				w.send(to, w.out)
				return []string{fmt.Sprint(k), strings.Join(format(w.out), " ")}
			})
		case op < 17: // drop a segment (only where the engine retransmits)
			if len(fw.q) > 0 && r.IntN(4) == 0 && !fw.conns[0].Custody() {
				j := r.IntN(len(fw.q))
				tw.do("drop", func(w *twinWorld) []string {
					w.q = slices.Delete(w.q, j, j+1)
					w.to = slices.Delete(w.to, j, j+1)
					return nil
				})
			}
		case op < 19: // time passes; due timers fire
			tw.now += time.Duration(r.IntN(3000)) * time.Microsecond
			if r.IntN(4) == 0 {
				if d := fw.conns[side].Deadline(); d != 0 && d > tw.now {
					tw.now = d
				}
			}
			tw.do(fmt.Sprintf("timers of side %d", side), func(w *twinWorld) []string {
				c := w.conns[side]
				if d := c.Deadline(); d == 0 || d > tw.now {
					return nil
				}
				w.out = c.OnTimer(tw.now, w.out[:0])
				w.send(side, w.out)
				return format(w.out)
			})
		default: // near the end, close
			if tw.step > steps*9/10 && r.IntN(10) == 0 {
				tw.do(fmt.Sprintf("side %d closes", side), func(w *twinWorld) []string {
					w.out = w.conns[side].Close(tw.now, w.out[:0])
					w.send(side, w.out)
					return format(w.out)
				})
			}
		}
	}
}

func TestFastPathTwinsStayEqual(t *testing.T) {
	configs := map[string]func(*Config){
		"custody":           func(c *Config) { c.Custody = true },
		"custody nagle":     func(c *Config) { c.Custody, c.NoDelay = true, false },
		"custody sack ws":   func(c *Config) { c.Custody, c.NoSACK, c.NoWindowScale = true, false, false },
		"custody no delack": func(c *Config) { c.Custody, c.DelayedAck = true, -1 },
		"custody ts":        func(c *Config) { c.Custody, c.NoTimestamps = true, false },
		"retaining":         func(c *Config) {},
		"retaining sack":    func(c *Config) { c.NoSACK, c.NoWindowScale = false, false },
	}
	var fastIn, fastOut uint64
	for name, tweak := range configs {
		for seed := range uint64(8) {
			t.Run(fmt.Sprintf("%s/%d", name, seed), func(t *testing.T) {
				cfg := Config{MSS: 1000, RecvBuf: 6000, MaxRecvBuf: 6000, NoTimestamps: true, NoWindowScale: true,
					NoSACK: true, NoDelay: true}
				tweak(&cfg)
				tw := newTwin(t, cfg, seed)
				tw.script(2000)
				var in, out uint64
				for _, c := range tw.w[0].conns {
					in += c.fastIn
					out += c.fastOut
				}
				t.Logf("fast paths took %d segments in, %d out", in, out)
				fastIn += in
				fastOut += out
			})
		}
	}
	// The scripts must exercise the fast paths, or they show nothing.
	if fastIn < 1000 || fastOut < 1000 {
		t.Fatalf("the fast paths took only %d segments in and %d out", fastIn, fastOut)
	}
	t.Logf("fast paths took %d segments in, %d out", fastIn, fastOut)
}

// WriteFast then SentAt(t) is WriteDirect at t: the same segment out and
// the same connection after (the RTT measurement starts at t).
func TestWriteFastThenSentAtIsWriteDirect(t *testing.T) {
	a, b := fabricEstablished(t), fabricEstablished(t)
	a.writeDirect(10, "<SEQ=101><ACK=301><CTL=PSH,ACK><WND=8000><DATA=10>")
	p := make([]byte, 10)
	for i := range p {
		p[i] = byte(101 + i)
	}
	out, ok := b.c.WriteFast(p, nil)
	if !ok {
		t.Fatal("WriteFast declined a 10-octet write on an idle connection")
	}
	b.check("WriteFast", out, []string{"<SEQ=101><ACK=301><CTL=PSH,ACK><WND=8000><DATA=10>"})
	if !b.c.stampPending {
		t.Fatal("no RTT stamp pending after WriteFast began a measurement")
	}
	b.c.SentAt(a.now)
	x, y := *a.c, *b.c
	x.cfg.CC, y.cfg.CC = nil, nil
	if !reflect.DeepEqual(x, y) {
		t.Fatalf("WriteFast+SentAt left\n%+v\nWriteDirect left\n%+v", y, x)
	}
	// Declined (a write larger than the MSS): nothing changed.
	before := *b.c
	if _, ok := b.c.WriteFast(make([]byte, 1001), nil); ok {
		t.Fatal("WriteFast took a write larger than the MSS")
	}
	x, y = before, *b.c
	x.cfg.CC, y.cfg.CC = nil, nil
	if !reflect.DeepEqual(x, y) {
		t.Fatal("a declined WriteFast changed the connection")
	}
}
