package tcp

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/ultcp/ultcp/internal/wire"
)

// The whole of gateway-assisted retransmission on a fake clock: a node's
// engine in custody mode (it keeps nothing it sent) sends through a
// gateway holding a Custodian, over a path that loses and delays
// segments both ways, to an ordinary engine. The node→gateway hop is the
// fabric (lossless, instant); the Custodian sees every segment the node
// sends and every segment the peer sends that reaches the gateway, resends
// what was lost with headers from the node's latest segment, and reports
// each loss to the node (ReportLoss). Every octet must arrive, the node
// must never have held anything for retransmission, and the Custodian must
// end holding nothing.

type custodySim struct {
	t          testing.TB
	rng        *rand.Rand
	now        time.Duration
	node, peer *Conn
	cu         *Custodian
	q          []pkt // to 0: arriving at the gateway from the peer; to 1: at the peer
	delay      time.Duration
	drop       float64
	total      int
	sent, rcvd int
	out        []Segment
	cuOut      CustodianOutput
	buf        []byte
	nodeHdr    wire.TCPHeader // the node's latest non-SYN header
	peerSYN    wire.TCPOptions
	drops      int
	retaining  bool // no custody: the node retains and resends itself, the gateway only forwards
	// REVOKE once revokeAt octets were written (REVOKED{SND.MAX} comes
	// back at once: the fabric is instant), GRANT again at grantAt.
	revokeAt, grantAt int
	revoked, granted  bool
	synAt, rtt        time.Duration // the node's SYN passed the gateway; the handshake's RTT as the gateway saw it
	maxCwnd           int           // the node's largest congestion window
}

// toPeer sends a segment from the gateway towards the peer, over the lossy
// half of the path.
func (s *custodySim) toPeer(seg Segment) {
	if s.rng.Float64() < s.drop {
		s.drops++
		return
	}
	seg.Payload = append([]byte(nil), seg.Payload...)
	s.q = append(s.q, pkt{at: s.now + s.delay + time.Duration(s.rng.Int64N(int64(s.delay/10)+1)), to: 1, seg: seg})
}

// fromNode is the gateway's outbound hook.
func (s *custodySim) fromNode(segs []Segment) {
	for i := range segs {
		seg := segs[i]
		h := &seg.Hdr
		if h.Flags&wire.FlagSYN != 0 {
			s.synAt = s.now
		}
		if h.Flags&wire.FlagSYN == 0 && h.Flags&wire.FlagRST == 0 {
			s.nodeHdr = *h
			if s.cu == nil && !s.retaining {
				s.cu = NewCustodian(CustodianConfig{MSS: 1000 - tsOptLen, SACK: true, Timestamps: true,
					WindowShift: s.peerSYN.WScale, InitialRTT: s.rtt})
			}
			if s.cu != nil && (len(seg.Payload) > 0 || h.Flags&wire.FlagFIN != 0) {
				s.cu.Sent(s.now, h.Seq, seg.Payload, h.Flags&wire.FlagFIN != 0)
			}
		}
		s.toPeer(seg)
	}
}

// fromPeer sends the peer's segments towards the gateway, lossily.
func (s *custodySim) fromPeer(segs []Segment) {
	for i := range segs {
		seg := segs[i]
		if seg.Hdr.Flags&wire.FlagSYN != 0 {
			s.peerSYN = seg.Hdr.Options
		}
		if s.rng.Float64() < s.drop {
			s.drops++
			continue
		}
		seg.Payload = append([]byte(nil), seg.Payload...)
		s.q = append(s.q, pkt{at: s.now + s.delay, to: 0, seg: seg})
	}
}

// atGateway is the gateway's inbound hook, then the fabric to the node.
func (s *custodySim) atGateway(seg *Segment) {
	if seg.Hdr.Flags&wire.FlagSYN != 0 && s.rtt == 0 {
		s.rtt = s.now - s.synAt
	}
	if s.cu != nil {
		s.cuOut.Reset()
		s.cu.Ack(s.now, &seg.Hdr, len(seg.Payload), &s.cuOut)
		s.act()
	}
	s.fromNode(s.node.Input(s.now, seg, s.out[:0]))
}

// act does what the Custodian asked.
func (s *custodySim) act() {
	for _, r := range s.cuOut.Resend {
		p, ok := s.cu.Payload(nil, r.Seq, r.Len)
		if !ok {
			s.t.Fatalf("custodian asked to resend %v it does not hold", r)
		}
		h := s.nodeHdr
		h.Seq, h.Flags, h.Options.NumSACK = r.Seq, wire.FlagACK, 0
		if r.FIN {
			h.Flags |= wire.FlagFIN
		}
		s.toPeer(Segment{Hdr: h, Payload: p})
	}
	for _, l := range s.cuOut.Loss {
		s.node.ReportLoss(s.now, l.Start, l.End)
	}
	if s.cuOut.Failed {
		s.t.Fatalf("custodian gave up at %v", s.now)
	}
}

func (s *custodySim) app() {
	for s.sent < s.total {
		n := min(len(s.buf), s.total-s.sent)
		p := s.buf[:n]
		for k := range p {
			p[k] = octet(0, s.sent+k)
		}
		k, err := s.node.Write(p)
		if err != nil {
			s.t.Fatalf("node Write: %v", err)
		}
		s.sent += k
		if k == 0 {
			break
		}
		if s.revokeAt > 0 && !s.revoked && s.sent >= s.revokeAt && s.cu != nil {
			s.node.SetCustody(false)
			s.cu.Revoked(s.node.SndMax())
			s.revoked = true
		}
		if s.revoked && !s.granted && s.sent >= s.grantAt {
			s.cu.Grant()
			s.node.SetCustody(true)
			s.granted = true
		}
	}
	s.fromNode(s.node.Output(s.now, s.out[:0]))
	for {
		p, _ := s.peer.Peek()
		if len(p) == 0 {
			break
		}
		for k, b := range p {
			if want := octet(0, s.rcvd+k); b != want {
				s.t.Fatalf("peer: octet %d is %d, want %d", s.rcvd+k, b, want)
			}
		}
		s.rcvd += s.peer.Discard(len(p))
	}
	s.fromPeer(s.peer.Output(s.now, s.out[:0]))
}

func (s *custodySim) run(limit time.Duration) {
	for step := 0; step < 5_000_000; step++ {
		s.app()
		s.maxCwnd = max(s.maxCwnd, s.node.CongestionWindow())
		if s.rcvd == s.total && (s.retaining || s.cu.Held() == 0) && s.node.sndUna == s.node.sndMax {
			return
		}
		next, qi := time.Duration(-1), -1
		for j, p := range s.q {
			if next < 0 || p.at < next {
				next, qi = p.at, j
			}
		}
		timers := [...]time.Duration{s.node.Deadline(), s.peer.Deadline(), 0}
		if s.cu != nil {
			timers[2] = s.cu.Deadline()
		}
		for i, d := range timers {
			if d != 0 && (next < 0 || d < next) {
				next, qi = d, -1-i
			}
		}
		if next < 0 {
			s.t.Fatalf("stalled: sent %d, received %d", s.sent, s.rcvd)
		}
		s.now = max(s.now, next)
		if s.now > limit {
			s.t.Fatalf("not done by %v: sent %d, received %d, held %d", limit, s.sent, s.rcvd, s.cu.Held())
		}
		switch {
		case qi >= 0:
			p := s.q[qi]
			s.q[qi] = s.q[len(s.q)-1]
			s.q = s.q[:len(s.q)-1]
			if p.to == 1 {
				s.fromPeer(s.peer.Input(s.now, &p.seg, s.out[:0]))
			} else {
				s.atGateway(&p.seg)
			}
		case qi == -1:
			s.fromNode(s.node.OnTimer(s.now, s.out[:0]))
		case qi == -2:
			s.fromPeer(s.peer.OnTimer(s.now, s.out[:0]))
		default:
			s.cuOut.Reset()
			s.cu.OnTimer(s.now, &s.cuOut)
			s.act()
		}
	}
	s.t.Fatalf("no end after 5e6 steps: sent %d, received %d", s.sent, s.rcvd)
}

func newCustodySim(tb testing.TB, seed uint64, drop float64, total int, retaining bool) *custodySim {
	cfg := Config{MSS: 1000}
	ncfg := cfg
	ncfg.Custody = !retaining
	s := &custodySim{t: tb, rng: rand.New(rand.NewPCG(seed, seed)), delay: 10 * time.Millisecond,
		drop: drop, total: total, buf: make([]byte, 64<<10), retaining: retaining}
	s.peer = NewListening(&cfg, 80, 0, 4294967000)
	var out []Segment
	s.node, out = Dial(0, &ncfg, 1234, 80, 4294960000, nil)
	s.fromNode(out)
	return s
}

func TestCustodyEndToEndOverLossyPath(t *testing.T) {
	for _, tc := range []struct {
		seed uint64
		drop float64
	}{{1, 0.01}, {2, 0.05}, {3, 0.10}} {
		s := newCustodySim(t, tc.seed, tc.drop, 1<<20, false)
		s.run(30 * time.Minute)
		ns, cs := s.node.Stats(), s.cu.Stats()
		if p := s.node.RetainedPeak(); p != 0 {
			t.Errorf("loss %v: the node held %d octets for retransmission", tc.drop, p)
		}
		if cs.Retransmits == 0 || ns.CustodyLosses == 0 {
			t.Errorf("loss %v: %d drops, yet %d resends and %d losses reported", tc.drop, s.drops, cs.Retransmits, ns.CustodyLosses)
		}
		if cs.Held != 0 || cs.Footprint > idleFreeChunks*custodyChunk {
			t.Errorf("loss %v: custodian ends holding %d octets in %d bytes", tc.drop, cs.Held, cs.Footprint)
		}
		t.Logf("loss %v: %d drops, %v fake time, custodian %+v, node losses %d, node retransmits %d",
			tc.drop, s.drops, s.now, cs, ns.CustodyLosses, ns.Retransmits)
	}
}

// Custody handed back mid-transfer and taken again, over a lossy path:
// the node retains and resends what it sends while revoked, the
// custodian what it held before; nothing is lost either way.
func TestCustodyEndToEndRevokeAndGrantAgain(t *testing.T) {
	s := newCustodySim(t, 4, 0.03, 1<<20, false)
	s.revokeAt, s.grantAt = 256<<10, 640<<10
	s.run(30 * time.Minute)
	ns, cs := s.node.Stats(), s.cu.Stats()
	if !s.granted || !s.node.Custody() {
		t.Fatalf("custody granted again %v, node in custody %v", s.granted, s.node.Custody())
	}
	if s.node.RetainedPeak() == 0 || cs.NotHeld == 0 || ns.Retransmits == 0 || cs.Retransmits == 0 {
		t.Errorf("node peak %d, not held %d, node resends %d, custodian resends %d: both should have worked",
			s.node.RetainedPeak(), cs.NotHeld, ns.Retransmits, cs.Retransmits)
	}
	if cs.Held != 0 {
		t.Errorf("custodian ends holding %d octets", cs.Held)
	}
	t.Logf("%d drops, %v fake time, node peak %d, node retransmits %d, custodian %+v",
		s.drops, s.now, s.node.RetainedPeak(), ns.Retransmits, cs)
}

// BenchmarkCustodySimulation reports, as fake-s, the simulated time to
// move 4 MiB over the test's path (20 ms RTT, jitter of a tenth of the
// delay, random loss both ways) with custody and with the node retaining
// and resending itself. Each run is deterministic (seed 1); ns/op is only
// the cost of simulating. max-cwnd-B is the node's largest congestion
// window: custody learns of a loss an RTT later than a retaining node
// would, so it must stay in proportion (no ballooning).
func BenchmarkCustodySimulation(b *testing.B) {
	for _, loss := range []float64{0, 0.001, 0.01, 0.05} {
		for _, retaining := range []bool{false, true} {
			b.Run(fmt.Sprintf("loss=%v/custody=%v", loss, !retaining), func(b *testing.B) {
				var fake time.Duration
				var cw int
				for b.Loop() {
					s := newCustodySim(b, 1, loss, 4<<20, retaining)
					s.run(30 * time.Minute)
					fake, cw = s.now, s.maxCwnd
				}
				b.ReportMetric(fake.Seconds(), "fake-s")
				b.ReportMetric(float64(cw), "max-cwnd-B")
			})
		}
	}
}
