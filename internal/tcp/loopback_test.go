package tcp

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/ultcp/ultcp/internal/wire"
)

// A two-engine loopback over an in-memory link with a fake clock: each
// segment is delayed, some are dropped, and jitter reorders them. Both
// applications stream a pattern and check every octet they read.

type pkt struct {
	at  time.Duration
	to  int
	seg Segment
}

type loop struct {
	t       *testing.T
	rng     *rand.Rand
	now     time.Duration
	conns   [2]*Conn
	q       []pkt
	delay   time.Duration
	jitter  time.Duration
	drop    float64
	sent    [2]int // octets written by each side's application
	rcvd    [2]int // octets read and verified by each side
	total   int    // octets each side sends
	out     []Segment
	buf     []byte
	direct  bool // use WriteDirect instead of Write
	drops   int
	closing bool
	dup     float64 // probability that a delivered segment is delivered twice
	blind   float64 // probability per delivery of also injecting a blind forged segment
}

// octet is the pattern: side s's n-th octet.
func octet(s, n int) byte { return byte(n*7 + n>>9 + s*101) }

func (l *loop) enqueue(from int, segs []Segment) {
	for i := range segs {
		if l.rng.Float64() < l.drop {
			l.drops++
			continue
		}
		s := segs[i]
		s.Payload = append([]byte(nil), s.Payload...) // valid only until the next call
		at := l.now + l.delay
		if l.jitter > 0 {
			at += time.Duration(l.rng.Int64N(int64(l.jitter)))
		}
		l.q = append(l.q, pkt{at: at, to: 1 - from, seg: s})
		if l.rng.Float64() < l.dup {
			l.q = append(l.q, pkt{at: at + l.delay/2, to: 1 - from, seg: s})
		}
		if l.rng.Float64() < l.blind {
			l.q = append(l.q, pkt{at: at, to: 1 - from, seg: l.forge(s.Hdr.SrcPort, s.Hdr.DstPort)})
		}
	}
}

// forge makes the segment an off-path attacker would send (RFC 5961 §1):
// right ports, random sequence and acknowledgment numbers, random
// control bits, sometimes data.
func (l *loop) forge(sport, dport uint16) Segment {
	var s Segment
	h := &s.Hdr
	h.SrcPort, h.DstPort = sport, dport
	h.Seq, h.Ack = l.rng.Uint32(), l.rng.Uint32()
	h.Flags = []wire.TCPFlags{wire.FlagRST, wire.FlagSYN, wire.FlagACK, wire.FlagACK | wire.FlagFIN,
		wire.FlagRST | wire.FlagACK}[l.rng.IntN(5)]
	h.Window = uint16(l.rng.Uint32())
	if h.Flags&wire.FlagACK != 0 && l.rng.IntN(2) == 0 {
		s.Payload = []byte("forged data, must never be delivered")
	}
	return s
}

// app lets side i's application write and read as much as it can.
func (l *loop) app(i int) {
	c := l.conns[i]
	for l.sent[i] < l.total && c.state != Listen {
		n := min(len(l.buf), l.total-l.sent[i])
		p := l.buf[:n]
		for k := range p {
			p[k] = octet(i, l.sent[i]+k)
		}
		var k int
		var err error
		if l.direct {
			k, l.out, err = c.WriteDirect(l.now, p, l.out[:0])
			l.enqueue(i, l.out)
		} else {
			k, err = c.Write(p)
		}
		if err != nil {
			l.t.Fatalf("side %d Write: %v", i, err)
		}
		l.sent[i] += k
		if k == 0 {
			break
		}
	}
	if l.sent[i] == l.total && c.canSend() && l.closing {
		l.enqueue(i, c.Close(l.now, l.out[:0]))
	}
	for {
		p, err := c.Peek()
		if len(p) == 0 {
			if err != nil && c.finRcvd && l.rcvd[i] != l.total {
				l.t.Fatalf("side %d: EOF after %d of %d octets", i, l.rcvd[i], l.total)
			}
			break
		}
		for k, b := range p {
			if want := octet(1-i, l.rcvd[i]+k); b != want {
				l.t.Fatalf("side %d: octet %d is %d, want %d", i, l.rcvd[i]+k, b, want)
			}
		}
		l.rcvd[i] += c.Discard(len(p))
	}
	l.enqueue(i, c.Output(l.now, l.out[:0]))
}

func (l *loop) run(limit time.Duration) {
	for step := 0; ; step++ {
		if step > 5_000_000 {
			l.t.Fatalf("no progress after %d steps: sent %v rcvd %v", step, l.sent, l.rcvd)
		}
		done := l.rcvd[0] == l.total && l.rcvd[1] == l.total
		if done && (!l.closing || (l.conns[0].state == Closed || l.conns[0].state == TimeWait) &&
			(l.conns[1].state == Closed || l.conns[1].state == TimeWait)) {
			return
		}
		for i := range l.conns {
			l.app(i)
		}
		// Next event: the earliest packet or timer.
		next := time.Duration(-1)
		qi := -1
		for j, p := range l.q {
			if next < 0 || p.at < next {
				next, qi = p.at, j
			}
		}
		for i, c := range l.conns {
			if d := c.Deadline(); d != 0 && (next < 0 || d < next) {
				next, qi = d, -1-i
			}
		}
		if next < 0 {
			l.t.Fatalf("stalled: nothing queued, no timer; sent %v rcvd %v states %v %v",
				l.sent, l.rcvd, l.conns[0].state, l.conns[1].state)
		}
		if next > l.now {
			l.now = next
		}
		if l.now > limit {
			l.t.Fatalf("not done by %v: sent %v rcvd %v", limit, l.sent, l.rcvd)
		}
		if qi >= 0 {
			p := l.q[qi]
			l.q[qi] = l.q[len(l.q)-1]
			l.q = l.q[:len(l.q)-1]
			l.enqueue(p.to, l.conns[p.to].Input(l.now, &p.seg, l.out[:0]))
		} else {
			i := -1 - qi
			l.enqueue(i, l.conns[i].OnTimer(l.now, l.out[:0]))
		}
	}
}

func newLoop(t *testing.T, cfg Config, seed uint64, isnA, isnB uint32) *loop {
	l := &loop{t: t, rng: rand.New(rand.NewPCG(seed, seed)), delay: time.Millisecond, buf: make([]byte, 64<<10)}
	var out []Segment
	l.conns[1] = NewListening(&cfg, 80, 0, isnB)
	l.conns[0], out = Dial(0, &cfg, 1234, 80, isnA, nil)
	l.enqueue(0, out)
	return l
}

// Megabytes both ways through a lossy, reordering link, with ISNs just
// below 2^32 so both sequence spaces wrap, verified octet by octet, then
// a clean close.
func TestLoopbackLossyBothWaysByteExact(t *testing.T) {
	cfg := Config{}
	l := newLoop(t, cfg, 1, 4294967000, 4294960000)
	l.total = 2 << 20
	l.drop = 0.02
	l.jitter = 300 * time.Microsecond
	l.closing = true
	l.run(30 * time.Minute)
	for i, c := range l.conns {
		s := c.Stats()
		if s.Retransmits == 0 {
			t.Errorf("side %d: no retransmissions with %d drops", i, l.drops)
		}
		t.Logf("side %d: %+v", i, s)
	}
	t.Logf("drops %d, fake time %v", l.drops, l.now)
}

// Same without loss but with timestamps and scaling off and a tiny MSS:
// many small segments.
func TestLoopbackNoOptionsSmallMSS(t *testing.T) {
	cfg := Config{MSS: 536, NoTimestamps: true, NoWindowScale: true}
	l := newLoop(t, cfg, 2, 1, 4294967295)
	l.total = 1 << 20
	l.jitter = 100 * time.Microsecond
	l.closing = true
	l.run(10 * time.Minute)
}

// Custody mode on a lossless link, sending with WriteDirect: nothing is
// retained, nothing retransmitted, every octet arrives.
func TestLoopbackCustodyWriteDirect(t *testing.T) {
	cfg := Config{Custody: true}
	l := newLoop(t, cfg, 3, 100, 200)
	l.total = 1 << 20
	l.direct = true
	l.closing = true
	l.run(10 * time.Minute)
	for i, c := range l.conns {
		if c.Stats().Retransmits != 0 || c.sb.allocated() {
			t.Errorf("side %d: retransmits %d, send buffer allocated %v", i, c.Stats().Retransmits, c.sb.allocated())
		}
	}
}

// Receive-window auto-tuning: a reader that keeps up lets the buffer
// grow toward MaxRecvBuf.
func TestLoopbackAutotuneGrowsReceiveBuffer(t *testing.T) {
	cfg := Config{RecvBuf: 16 << 10, MaxRecvBuf: 1 << 20}
	l := newLoop(t, cfg, 4, 100, 200)
	l.total = 2 << 20
	l.delay = 5 * time.Millisecond
	l.run(10 * time.Minute)
	for i, c := range l.conns {
		if c.rb.size <= 16<<10 || c.Stats().RecvBufGrowths == 0 {
			t.Errorf("side %d: receive buffer still %d", i, c.rb.size)
		}
		t.Logf("side %d: receive buffer %d after %d growths", i, c.rb.size, c.Stats().RecvBufGrowths)
	}
}

// Fifty short connections through a link that loses one segment in ten
// and reorders heavily, with and without timestamps, with a tiny window:
// every one must finish byte-exact and close cleanly. (Seed 14 once
// deadlocked both ends when pure ACKs were numbered at the go-back-N
// resend point; see emitACK.)
func TestLoopbackManySeedsHeavyLoss(t *testing.T) {
	for seed := uint64(10); seed < 60; seed++ {
		cfg := Config{}
		if seed%3 == 0 {
			cfg.NoTimestamps = true
		}
		if seed%4 == 0 {
			cfg.NoDelay = true
			cfg.RecvBuf, cfg.MaxRecvBuf = 4000, 4000
		}
		l := newLoop(t, cfg, seed, uint32(seed*977)-3000, 4294967295-uint32(seed))
		l.total = 200 << 10
		l.drop = 0.10
		l.jitter = 2 * time.Millisecond
		l.closing = true
		l.run(60 * time.Minute)
	}
}

// RFC 5961's purpose: an off-path attacker who knows the ports but not the
// sequence numbers injects thousands of forged RSTs, SYNs and data
// segments, while the link also drops and duplicates; the transfer still
// completes byte-exact (octet checks would catch forged data) and
// neither side is reset.
func TestLoopbackSurvivesBlindInjection(t *testing.T) {
	// Without timestamps the RFC 5961 checks do all the work; with them,
	// the forgeries also lack a timestamp and PAWS drops them first.
	for _, cfg := range []Config{{NoTimestamps: true}, {}} {
		l := newLoop(t, cfg, 5, 77, 4294967000)
		l.total = 1 << 20
		l.drop = 0.01
		l.dup = 0.05
		l.blind = 1
		l.jitter = 200 * time.Microsecond
		l.closing = true
		l.run(30 * time.Minute)
		for i, c := range l.conns {
			if c.Err() != nil {
				t.Fatalf("side %d ended with %v", i, c.Err())
			}
			s := c.Stats()
			t.Logf("timestamps %v side %d: challenge ACKs %d (limited %d), bad ACK %d, out of window %d, RST ignored %d, no timestamp %d",
				!cfg.NoTimestamps, i, s.ChallengeACKs, s.ChallengeLimit, s.DropBadAck, s.DropOutOfWindow, s.DropRST, s.DropNoTimestamp)
		}
	}
}
