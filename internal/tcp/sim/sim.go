// Package sim is a deterministic, seeded network simulator for ultcp's TCP
// engine: it connects two internal/tcp connections through a model of a
// path (bottleneck rate, propagation delay, drop-tail queue, random and
// burst loss, reordering, duplication and corruption, see Link), runs one
// bulk transfer in simulated time, and reports what a person studying
// TCP wants to see: whether every byte arrived (SHA-256 at the
// receiver), how long it took, goodput, retransmissions and how many of
// them were spurious, RTT samples, and time series of the congestion
// window, bytes in flight and goodput.
//
// Segments cross the simulated wire as real IPv4 packets built and parsed
// by internal/wire with real checksums, so a corrupted packet is dropped
// because the receiver's checksum verification fails, not because the
// simulator knows it was corrupted.
//
// A run is a pure function of its Config: the simulator must never sleep,
// read the wall clock, start goroutines or draw randomness from anything
// but Config.Seed. Time advances from one event to the next (a packet
// arrival or an engine's Deadline), so a run over a 300 ms path costs no
// more wall time than one over a 0.1 ms path carrying the same packets.
package sim

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/ultcp/ultcp/internal/tcp"
	"github.com/ultcp/ultcp/internal/tcp/cc"
	"github.com/ultcp/ultcp/internal/wire"
)

// Config describes one simulated transfer. Only Bytes is required.
type Config struct {
	// Bytes is how much the sender's application writes before closing.
	Bytes int64
	// CC names the sender's congestion controller (cc.New; "" is
	// cc.DefaultName) and CCConfig configures it.
	CC       string
	CCConfig cc.Config
	// ECN turns on ECN (RFC 3168) in both engines; give the links an
	// ECNMark so that the queue marks instead of only dropping.
	ECN bool
	// NoPacing leaves CCConfig.Pacing as given; by default the
	// simulator turns it on, so CUBIC paces its slow start (see
	// cc.Cubic.PacingRate for why that matters on a path like this).
	NoPacing bool
	// Seed selects the run: the link's random draws, the initial
	// sequence numbers and the data sent all derive from it.
	Seed uint64
	// Forward carries data from sender to receiver, Reverse carries
	// the ACKs back (see Path for a symmetric pair).
	Forward, Reverse Link
	// MSS is both engines' MSS (default 1460, a 1500-byte IPv4 MTU).
	MSS int
	// SendBuf and RecvBuf size the sender's send buffer and the
	// receiver's receive buffer; 0 sizes them from the path, at least
	// twice the bandwidth-delay product plus the queues, so that neither
	// limits the window. The receive buffer is fixed at that size
	// (auto-tuning off, as with a configured SO_RCVBUF): auto-tuning
	// doubles the window at most once per round trip, one step behind
	// slow start, which would then spend half its rounds waiting for
	// the window instead of probing the path.
	SendBuf, RecvBuf int
	// Tune, if set, adjusts both engines' configuration last.
	Tune func(*tcp.Config)
	// TimeLimit bounds the simulated time; a transfer not finished by
	// then is reported with Completed false. 0 selects ten times the
	// ideal transfer time plus ten minutes.
	TimeLimit time.Duration
	// SampleEvery is the initial spacing of the time series (default
	// 1 ms); it doubles whenever the series reaches MaxSamples, so long
	// runs keep a bounded series.
	SampleEvery time.Duration
	// Progress, if set, is called about once per simulated second.
	Progress func(Progress)
	// Trace, if set, is called for every segment an endpoint emits
	// (from is 0 for the sender, 1 for the receiver), with whether the
	// link dropped it.
	Trace func(now time.Duration, from int, seg *tcp.Segment, dropped bool)
}

// MaxSamples bounds the time series of a run.
const MaxSamples = 4096

// Progress reports how far a run has come.
type Progress struct {
	Now       time.Duration // simulated time
	Delivered int64         // bytes read by the receiving application
	Bytes     int64         // bytes to deliver in all
}

// BDP returns the bandwidth-delay product in bytes of a path of rate
// bits per second and round-trip time rtt.
func BDP(rate int64, rtt time.Duration) int {
	return int(float64(rate) / 8 * rtt.Seconds())
}

// Path returns the two directions of a symmetric path: rate each way,
// half the RTT of propagation delay each way, and a drop-tail queue of
// queueBytes in front of each bottleneck (0: one bandwidth-delay product,
// the classic rule for a single flow, but at least ten 1500-byte packets
// so that an initial window fits on a very short path). No faults; set
// them on the returned links.
func Path(rate int64, rtt time.Duration, queueBytes int) (fwd, rev Link) {
	if queueBytes == 0 {
		queueBytes = max(BDP(rate, rtt), 10*1500)
	}
	l := Link{Rate: rate, Delay: rtt / 2, QueueBytes: queueBytes}
	return l, l
}

// Sample is one point of a run's time series, taken at T.
type Sample struct {
	T         time.Duration `json:"t_ns"`
	CWnd      int           `json:"cwnd"`      // sender's congestion window, bytes
	InFlight  int64         `json:"in_flight"` // sent and not yet cumulatively acknowledged, bytes
	Delivered int64         `json:"delivered"` // bytes read by the receiving application
	SRTT      time.Duration `json:"srtt_ns"`   // sender's smoothed RTT
}

// RTTStats summarises the RTT samples the simulator measured: the time
// from a segment's first transmission to the arrival at the sender of
// the first ACK covering it, for segments never retransmitted (Karn).
type RTTStats struct {
	Samples int     `json:"samples"`
	MinMs   float64 `json:"min_ms"`
	MeanMs  float64 `json:"mean_ms"`
	P50Ms   float64 `json:"p50_ms"`
	P90Ms   float64 `json:"p90_ms"`
	P99Ms   float64 `json:"p99_ms"`
	MaxMs   float64 `json:"max_ms"`
}

// Result is the outcome of Run.
type Result struct {
	// Completed is true when the receiving application read exactly
	// Bytes bytes and then end of stream within the time limit.
	Completed bool `json:"completed"`
	// SHA256OK is true when the SHA-256 of what the receiver read
	// equals that of what the sender wrote.
	SHA256OK bool `json:"sha256_ok"`
	// Bytes is what the receiving application read.
	Bytes int64 `json:"bytes"`
	// SimSeconds is the simulated time from the first SYN to the
	// receiver's end of stream (or to the time limit).
	SimSeconds float64 `json:"sim_seconds"`
	// GoodputBps is Bytes*8/SimSeconds: application bytes, not headers
	// nor retransmissions.
	GoodputBps float64 `json:"goodput_bps"`
	// Retransmits counts the sender's data segments carrying bytes it
	// had sent before.
	Retransmits int64 `json:"retransmits"`
	// SpuriousRetransmits counts those whose every byte had already
	// been sent in a copy that the link delivered (or was going to
	// deliver) intact: the retransmission was not needed.
	SpuriousRetransmits int64 `json:"spurious_retransmits"`
	// Timeouts and FastRetransmits are the sender engine's counts.
	Timeouts        uint64 `json:"timeouts"`
	FastRetransmits uint64 `json:"fast_retransmits"`
	// ChecksumDrops counts packets the receiving side dropped because
	// the IPv4 header or TCP checksum failed; CorruptArrived counts the
	// corrupted packets that reached an endpoint before the run ended
	// (the links' Corrupted counts those still on the wire too), which
	// every check must have caught.
	ChecksumDrops  int64 `json:"checksum_drops"`
	CorruptArrived int64 `json:"corrupt_arrived"`
	// RTT summarises the RTT samples.
	RTT RTTStats `json:"rtt"`
	// Forward and Reverse are the links' counters.
	Forward LinkStats `json:"forward"`
	Reverse LinkStats `json:"reverse"`
	// CC is the sender's congestion controller.
	CC string `json:"cc"`
	// Error says why a run did not complete ("" when it did).
	Error string `json:"error,omitempty"`

	// Series is the time series (see Sample), at most MaxSamples long.
	Series []Sample `json:"-"`
	// RTTs are the RTT samples in the order they were taken.
	RTTs []time.Duration `json:"-"`
	// Sender and Receiver are the engines' counters.
	Sender, Receiver tcp.Stats `json:"-"`
}

// Validate reports the first unusable setting.
func (c *Config) Validate() error {
	if c.Bytes < 0 {
		return errors.New("sim: negative byte count")
	}
	if c.MSS < 0 || c.SendBuf < 0 || c.RecvBuf < 0 || c.TimeLimit < 0 || c.SampleEvery < 0 {
		return errors.New("sim: negative size or time")
	}
	if err := c.Forward.Validate(); err != nil {
		return fmt.Errorf("forward link: %w", err)
	}
	if err := c.Reverse.Validate(); err != nil {
		return fmt.Errorf("reverse link: %w", err)
	}
	if _, err := cc.New(c.CC, c.CCConfig); err != nil {
		return err
	}
	return nil
}

// The endpoints: the sender dials, the receiver listens.
const (
	sender   = 0
	receiver = 1
)

var addrs = [2]wire.IPv4Addr{{10, 0, 0, 1}, {10, 0, 0, 2}}

const (
	senderPort   = 40000
	receiverPort = 5001
)

// flight is a stretch of new data on its first transmission, for RTT
// samples.
type flight struct {
	end    int64         // stream offset just past it
	at     time.Duration // when it was sent
	retx   bool          // some of it was retransmitted (Karn: no sample)
	offset int64         // stream offset of its first byte
}

type sim struct {
	cfg   Config
	rng   *rand.Rand
	links [2]*linkState // links[i] carries what endpoint i sends
	conns [2]*tcp.Conn
	sched scheduler
	now   time.Duration
	out   []tcp.Segment
	err   error

	// The sending application.
	data    *rand.ChaCha8
	scratch []byte
	sent    int64
	closed  bool
	hashS   hash.Hash

	// The receiving application.
	hashR  hash.Hash
	recvd  int64
	eof    bool
	doneAt time.Duration

	// Stream accounting, in offsets from the first data byte.
	base      uint32 // sequence number of offset 0
	sndMax    int64  // highest offset sent, plus one
	acked     int64  // highest offset cumulatively acknowledged to the sender
	delivered rangeSet
	flights   []flight
	fHead     int
	retx      int64
	spurious  int64
	rtts      []time.Duration
	ckDrops   int64
	corruptIn int64

	series     []Sample
	every      time.Duration
	nextSample time.Duration
	nextReport time.Duration
}

// Run simulates the transfer described by cfg. It returns an error only
// for an invalid Config; a transfer that fails is a Result with Completed
// false and Error saying why.
func Run(cfg Config) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := newSim(cfg)
	s.run()
	return s.result(), nil
}

func newSim(cfg Config) *sim {
	if cfg.MSS == 0 {
		cfg.MSS = tcp.DefaultMSS
	}
	if cfg.SampleEvery == 0 {
		cfg.SampleEvery = time.Millisecond
	}
	if !cfg.NoPacing {
		cfg.CCConfig.Pacing = true
	}
	rtt := cfg.Forward.Delay + cfg.Reverse.Delay
	rate := cfg.Forward.Rate
	if cfg.TimeLimit == 0 {
		ideal := time.Duration(0)
		if rate > 0 {
			ideal = time.Duration(float64(cfg.Bytes) * 8 / float64(rate) * float64(time.Second))
		}
		cfg.TimeLimit = 10*ideal + 100*rtt + 10*time.Minute
	}
	// Buffers: at least twice what the path can hold (its BDP plus
	// both queues), so the engines' buffers never limit the window.
	need := 64 << 10
	if rate > 0 {
		need = 2*(BDP(rate, rtt)+cfg.Forward.QueueBytes+cfg.Reverse.QueueBytes) + 64<<10
	} else {
		need = 16 << 20
	}
	if cfg.SendBuf == 0 {
		cfg.SendBuf = max(tcp.DefaultSendBuf, need)
	}
	if cfg.RecvBuf == 0 {
		cfg.RecvBuf = max(tcp.DefaultMaxRecvBuf, need)
	}
	seed := cfg.Seed
	s := &sim{cfg: cfg, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
	var key [32]byte
	for i := range key {
		key[i] = byte(s.rng.Uint32())
	}
	s.data = rand.NewChaCha8(key)
	// Each link draws from its own stream, so a change on one side
	// (one more ACK, say) does not shift the other side's fate.
	s.links[sender] = newLinkState(cfg.Forward, rand.New(rand.NewPCG(s.rng.Uint64(), s.rng.Uint64())))
	s.links[receiver] = newLinkState(cfg.Reverse, rand.New(rand.NewPCG(s.rng.Uint64(), s.rng.Uint64())))
	s.scratch = make([]byte, 64<<10)
	s.hashS, s.hashR = sha256.New(), sha256.New()
	s.every = cfg.SampleEvery
	s.nextReport = time.Second
	return s
}

// engineConfig is the tcp.Config both ends use.
func (s *sim) engineConfig() *tcp.Config {
	name, ccCfg := s.cfg.CC, s.cfg.CCConfig
	c := &tcp.Config{
		MSS:        s.cfg.MSS,
		SendBuf:    s.cfg.SendBuf,
		RecvBuf:    s.cfg.RecvBuf,
		MaxRecvBuf: s.cfg.RecvBuf,
		ECN:        s.cfg.ECN,
		CC: func() cc.Controller {
			ctl, err := cc.New(name, ccCfg)
			if err != nil {
				panic("sim: controller validated in Run failed: " + err.Error())
			}
			return ctl
		},
	}
	if s.cfg.Tune != nil {
		s.cfg.Tune(c)
	}
	return c
}

func (s *sim) fail(err error) {
	if s.err == nil {
		s.err = err
	}
}

func (s *sim) run() {
	cfg := s.engineConfig()
	issS, issR := s.rng.Uint32(), s.rng.Uint32()
	s.base = issS + 1
	s.conns[receiver] = tcp.NewListening(cfg, receiverPort, 0, issR)
	s.conns[sender], s.out = tcp.Dial(0, cfg, senderPort, receiverPort, issS, s.out[:0])
	s.transmit(sender)
	s.app(sender)

	maxEvents := 100*(s.cfg.Bytes/int64(max(s.cfg.MSS-52, 1))) + 10_000_000
	stuck := 0
	for events := int64(0); !s.eof && s.err == nil; events++ {
		if events > maxEvents {
			s.fail(fmt.Errorf("sim: %d events without finishing", events))
			break
		}
		next, timer := s.sched.peek(), -1
		for i, c := range s.conns {
			if d := c.Deadline(); d != 0 && (next < 0 || d < next) {
				next, timer = d, i
			}
		}
		if next < 0 {
			s.fail(fmt.Errorf("sim: stalled at %v: no packet in flight and no timer armed (sender %v, receiver %v)",
				s.now, s.conns[sender].State(), s.conns[receiver].State()))
			break
		}
		if next > s.cfg.TimeLimit {
			s.now = s.cfg.TimeLimit
			s.sample()
			s.fail(fmt.Errorf("sim: not finished within the time limit %v", s.cfg.TimeLimit))
			break
		}
		if next > s.now {
			s.now = next
			stuck = 0
		} else if stuck++; stuck > 100_000 {
			s.fail(fmt.Errorf("sim: time does not advance at %v", s.now))
			break
		}
		s.sample()
		if timer < 0 {
			s.deliver(s.sched.pop())
		} else {
			s.out = s.conns[timer].OnTimer(s.now, s.out[:0])
			s.transmit(timer)
			s.app(timer)
		}
		for i, c := range s.conns {
			if c.State() == tcp.Closed && c.Err() != nil && !s.eof {
				s.fail(fmt.Errorf("sim: %s connection failed: %w", [2]string{"sender", "receiver"}[i], c.Err()))
			}
		}
	}
	s.sample()
}

// transmit encodes the segments in s.out, which endpoint from emitted,
// as IPv4 packets and offers them to its link.
func (s *sim) transmit(from int) {
	to := 1 - from
	for i := range s.out {
		seg := &s.out[i]
		if from == sender {
			s.account(seg)
		}
		hl := seg.Hdr.EncodedLen()
		n := wire.IPv4HeaderLen + hl + len(seg.Payload)
		buf := s.sched.buffer(n)
		f := s.links[from].send(s.now, n, seg.ECN != tcp.ECNNotECT)
		tos := seg.ECN
		if f.CE {
			tos = tcp.ECNCE
		}
		ip := wire.IPv4Header{TOS: tos, TTL: 64, Protocol: wire.ProtoTCP, DontFrag: true,
			Src: addrs[from], Dst: addrs[to], PayloadLen: uint16(hl + len(seg.Payload))}
		if _, err := ip.Encode(buf); err != nil {
			s.fail(fmt.Errorf("sim: encoding IPv4: %w", err))
			return
		}
		seg.Hdr.Checksum = 0
		if _, err := seg.Hdr.Encode(buf[wire.IPv4HeaderLen:]); err != nil {
			s.fail(fmt.Errorf("sim: encoding %v: %w", seg, err))
			return
		}
		tcpb := buf[wire.IPv4HeaderLen:]
		copy(tcpb[hl:], seg.Payload)
		if err := wire.SetTCPChecksum(addrs[from], addrs[to], tcpb[:hl], tcpb[hl:]); err != nil {
			s.fail(err)
			return
		}
		if from == sender && len(seg.Payload) > 0 && f.Intact() {
			off := s.offset(seg.Hdr.Seq)
			s.delivered.add(off, off+int64(len(seg.Payload)))
		}
		if s.cfg.Trace != nil {
			s.cfg.Trace(s.now, from, seg, f.Dropped)
		}
		if f.Dropped {
			s.sched.release(buf)
			continue
		}
		if f.Dup {
			d := s.sched.buffer(n)
			copy(d, buf)
			s.sched.push(f.DupAt, to, d, false)
		}
		if f.Corrupt >= 0 {
			buf[f.Corrupt] ^= f.XOR
		}
		s.sched.push(f.Arrive, to, buf, f.Corrupt >= 0)
	}
}

// offset maps a sequence number of the sender's stream to its offset,
// unwrapping around the highest offset sent so far.
func (s *sim) offset(seq uint32) int64 {
	ref := s.sndMax
	return ref + int64(int32(seq-(s.base+uint32(ref))))
}

// account classifies one data segment of the sender before it leaves:
// new data (remembered for an RTT sample) or a retransmission, spurious
// when the link is already delivering every byte of it intact.
func (s *sim) account(seg *tcp.Segment) {
	n := int64(len(seg.Payload))
	if n == 0 {
		return
	}
	start := s.offset(seg.Hdr.Seq)
	end := start + n
	if start < s.sndMax {
		s.retx++
		if s.delivered.covers(start, end) {
			s.spurious++
		}
		// Karn: the flights overlapping a retransmission give no sample.
		for i := s.fHead; i < len(s.flights); i++ {
			f := &s.flights[i]
			if f.offset >= end {
				break
			}
			if f.end > start {
				f.retx = true
			}
		}
	}
	if end > s.sndMax {
		s.flights = append(s.flights, flight{offset: max(start, s.sndMax), end: end, at: s.now})
		s.sndMax = end
	}
}

// ackArrived takes an RTT sample when an ACK reaching the sender covers
// new data: from the newest flight it completes, unless retransmitted.
func (s *sim) ackArrived(h *wire.TCPHeader) {
	if h.Flags&wire.FlagACK == 0 {
		return
	}
	a := min(s.offset(h.Ack), s.sndMax) // the FIN's octet is not data
	if a <= s.acked {
		return
	}
	s.acked = a
	var last *flight
	for s.fHead < len(s.flights) && s.flights[s.fHead].end <= a {
		last = &s.flights[s.fHead]
		s.fHead++
	}
	if last != nil && !last.retx {
		s.rtts = append(s.rtts, s.now-last.at)
	}
	if s.fHead == len(s.flights) {
		s.flights, s.fHead = s.flights[:0], 0
	} else if s.fHead > 4096 && 2*s.fHead > len(s.flights) {
		k := copy(s.flights, s.flights[s.fHead:])
		s.flights, s.fHead = s.flights[:k], 0
	}
}

// deliver hands an arriving packet to its endpoint, as a link would:
// checksums first, then TCP.
func (s *sim) deliver(e event) {
	defer s.sched.release(e.buf)
	if e.corrupt {
		s.corruptIn++
	}
	var ip wire.IPv4Header
	p, err := ip.Parse(e.buf)
	if err != nil || ip.Protocol != wire.ProtoTCP || ip.Dst != addrs[e.to] {
		s.ckDrops++ // the IPv4 header checksum caught a corrupted header
		return
	}
	if wire.VerifyTCPChecksum(ip.Src, ip.Dst, p) != nil {
		s.ckDrops++
		return
	}
	var seg tcp.Segment
	payload, err := seg.Hdr.Parse(p)
	if err != nil {
		s.fail(fmt.Errorf("sim: a packet with a valid checksum does not parse: %w", err))
		return
	}
	seg.Payload = payload
	seg.ECN = ip.TOS & 3 // the IP header's ECN field (RFC 3168 §5)
	if e.to == sender {
		s.ackArrived(&seg.Hdr)
	}
	s.out = s.conns[e.to].Input(s.now, &seg, s.out[:0])
	s.transmit(e.to)
	s.app(e.to)
}

// app runs endpoint i's application after the engine did something.
func (s *sim) app(i int) {
	if i == sender {
		s.sendApp()
	} else {
		s.recvApp()
	}
}

// sendApp writes the stream as fast as the send buffer takes it, then
// closes.
func (s *sim) sendApp() {
	c := s.conns[sender]
	wrote := false
	for s.sent < s.cfg.Bytes {
		n := min(int64(c.Writable()), s.cfg.Bytes-s.sent, int64(len(s.scratch)))
		if n <= 0 {
			break
		}
		p := s.scratch[:n]
		_, _ = s.data.Read(p) // ChaCha8.Read never fails
		k, err := c.Write(p)
		if err != nil || int64(k) != n {
			s.fail(fmt.Errorf("sim: sender Write took %d of %d bytes: %v", k, n, err))
			return
		}
		s.hashS.Write(p)
		s.sent += n
		wrote = true
	}
	// Close once everything is written; not in SYN-SENT, where closing
	// with nothing queued would abandon the connection (RFC 9293
	// §3.10.4) rather than send an empty stream.
	if s.sent == s.cfg.Bytes && !s.closed && c.State() != tcp.SynSent {
		s.closed = true
		s.out = c.Close(s.now, s.out[:0])
		s.transmit(sender)
		wrote = false
	}
	if wrote {
		s.out = c.Output(s.now, s.out[:0])
		s.transmit(sender)
	}
}

// recvApp reads everything readable (without copying: Peek and Discard)
// and notices the end of the stream.
func (s *sim) recvApp() {
	c := s.conns[receiver]
	read := false
	for {
		p, err := c.Peek()
		if len(p) == 0 {
			if err == io.EOF && !s.eof {
				s.eof, s.doneAt = true, s.now
				s.out = c.Close(s.now, s.out[:0])
				s.transmit(receiver)
			} else if err != nil && err != io.EOF {
				s.fail(fmt.Errorf("sim: receiver: %w", err))
			}
			break
		}
		s.hashR.Write(p)
		s.recvd += int64(len(p))
		c.Discard(len(p))
		read = true
	}
	if read {
		s.out = c.Output(s.now, s.out[:0])
		s.transmit(receiver)
	}
}

// sample records the time series up to now, and reports progress.
func (s *sim) sample() {
	for s.nextSample <= s.now {
		if len(s.series) == MaxSamples {
			// Keep every other point and halve the resolution.
			k := 0
			for i := 0; i < len(s.series); i += 2 {
				s.series[k] = s.series[i]
				k++
			}
			s.series = s.series[:k]
			s.every *= 2
			s.nextSample = s.series[k-1].T + s.every
			continue
		}
		c := s.conns[sender]
		s.series = append(s.series, Sample{T: s.nextSample, CWnd: c.CongestionWindow(),
			InFlight: s.sndMax - s.acked, Delivered: s.recvd, SRTT: c.RTT()})
		s.nextSample += s.every
	}
	if s.cfg.Progress != nil && s.now >= s.nextReport {
		s.cfg.Progress(Progress{Now: s.now, Delivered: s.recvd, Bytes: s.cfg.Bytes})
		for s.nextReport <= s.now {
			s.nextReport += time.Second
		}
	}
}

func (s *sim) result() *Result {
	r := &Result{
		Bytes:               s.recvd,
		Retransmits:         s.retx,
		SpuriousRetransmits: s.spurious,
		ChecksumDrops:       s.ckDrops,
		CorruptArrived:      s.corruptIn,
		Forward:             s.links[sender].stats,
		Reverse:             s.links[receiver].stats,
		Series:              s.series,
		RTTs:                s.rtts,
		CC:                  s.cfg.CC,
	}
	if r.CC == "" {
		r.CC = cc.DefaultName
	}
	if s.conns[sender] != nil {
		r.Sender = s.conns[sender].Stats()
		r.Timeouts, r.FastRetransmits = r.Sender.Timeouts, r.Sender.FastRetransmits
	}
	if s.conns[receiver] != nil {
		r.Receiver = s.conns[receiver].Stats()
	}
	end := s.now
	if s.eof {
		end = s.doneAt
	}
	r.SimSeconds = end.Seconds()
	if end > 0 {
		r.GoodputBps = float64(s.recvd) * 8 / end.Seconds()
	}
	r.Completed = s.eof && s.err == nil && s.recvd == s.cfg.Bytes
	r.SHA256OK = r.Completed && string(s.hashS.Sum(nil)) == string(s.hashR.Sum(nil))
	switch {
	case s.err != nil:
		r.Error = s.err.Error()
	case s.eof && s.recvd != s.cfg.Bytes:
		r.Error = fmt.Sprintf("sim: end of stream after %d of %d bytes", s.recvd, s.cfg.Bytes)
	case r.Completed && !r.SHA256OK:
		r.Error = "sim: the receiver's SHA-256 differs from the sender's"
	}
	r.RTT = rttStats(s.rtts)
	return r
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func rttStats(samples []time.Duration) RTTStats {
	if len(samples) == 0 {
		return RTTStats{}
	}
	sorted := slices.Clone(samples)
	slices.Sort(sorted)
	var sum float64
	for _, d := range sorted {
		sum += float64(d)
	}
	q := func(p float64) float64 {
		i := int(math.Ceil(p*float64(len(sorted)))) - 1
		return ms(sorted[min(max(i, 0), len(sorted)-1)])
	}
	return RTTStats{Samples: len(sorted), MinMs: ms(sorted[0]), MaxMs: ms(sorted[len(sorted)-1]),
		MeanMs: sum / float64(len(sorted)) / float64(time.Millisecond),
		P50Ms:  q(0.5), P90Ms: q(0.9), P99Ms: q(0.99)}
}
