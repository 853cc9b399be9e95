package gateway

// The impairment stage (issue #7 §6): this machine's kernel has no netem,
// so delay, jitter, reordering and duplication of the gateway's outside
// path are made here, on the way out to the device, after the custody point
// (the custodian then sees the losses a real path would give it). Random
// loss can be made here too, or by the kernel (nftables) on the veth.
//
// Model, per packet offered at time now, in this order:
//
//  1. loss: dropped with probability Loss (counted Lost);
//  2. due = now + Delay + j, j uniform in [-Jitter, +Jitter]; packets that
//     are not held back leave in the order they came (due is raised to the
//     previous one's): jitter alone varies the spacing, it does not reorder,
//     like a real link's queue;
//  3. reorder: with probability Reorder the packet is held back by an extra
//     ReorderDelay and leaves when due, after packets that came behind it
//     (counted Reordered);
//  4. duplication: with probability Dup a second copy leaves right after
//     the first (counted Duplicated).
//
// The stage models a path of wire packets: a GSO super-packet (the
// gateway coalesces a node's segments into one device write) is cut into
// its MSS-sized segments here, as the kernel would cut it, and each
// segment is lost, delayed, held back and duplicated on its own; otherwise
// "reorder=10%" would move bursts of forty segments at a time. Segments
// keep a partial checksum (the kernel completes it) or get a complete one,
// as the super-packet had.
//
// Every random draw comes from one PCG generator seeded by Seed, so a spec
// gives the same decisions for the same packet sequence on every run.
//
// Memory: a packet is copied into a buffer of the stage's own pool (size
// classes of 2 KiB to 256 KiB, allocated on first need and reused after),
// whose total is bounded by Limit bytes; a packet that does not fit is
// dropped and counted Full. In steady state a packet costs no allocation.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/ultcp/ultcp/internal/wire"
	"github.com/ultcp/ultcp/link/tun"
)

func init() {
	newImpairer = func(spec string) (impairer, error) {
		im, err := ParseImpairment(spec)
		if err != nil {
			return nil, err
		}
		return NewImpairStage(im), nil
	}
}

// Impairment is a parsed impairment spec.
type Impairment struct {
	Delay        time.Duration // one-way delay added to every packet
	Jitter       time.Duration // ± uniform variation of the delay
	Loss         float64       // probability a packet is dropped
	Reorder      float64       // probability a packet is held back by ReorderDelay
	ReorderDelay time.Duration // extra delay of a held-back packet
	Dup          float64       // probability a packet is sent twice
	Seed         uint64        // seed of the random decisions
	Limit        int64         // bytes of buffers the stage may hold
}

// Defaults and bounds of a spec.
const (
	DefaultReorderDelay = time.Millisecond
	DefaultImpairLimit  = 64 << 20
	DefaultImpairSeed   = 1
	maxImpairDelay      = 10 * time.Second // a path of more than 10 s is a mistake, not a test
	minImpairLimit      = maxHeldPacket    // room for at least one largest packet
	maxImpairLimit      = 1 << 30
)

// ErrImpairSpec is wrapped by every error of ParseImpairment.
var ErrImpairSpec = errors.New("gateway: bad impairment spec")

// impairKeys lists the keys of a spec, for error messages.
const impairKeys = "delay, jitter, loss, reorder, reorderdelay, dup, seed, limit"

// ParseImpairment parses a spec of comma-separated key=value items:
//
//	delay=20ms,jitter=1ms,loss=0.01,reorder=10%,reorderdelay=2ms,dup=0.05,seed=1,limit=64MiB
//
// Durations are Go durations (0 ≤ d ≤ 10s); probabilities are fractions
// (0.1) or percentages (10%) in [0, 1]; limit is bytes, with an optional
// KiB, MiB or GiB suffix. Absent keys are zero, except reorderdelay (1ms),
// seed (1) and limit (64 MiB). The empty spec impairs nothing.
func ParseImpairment(spec string) (Impairment, error) {
	im := Impairment{ReorderDelay: DefaultReorderDelay, Seed: DefaultImpairSeed, Limit: DefaultImpairLimit}
	if strings.TrimSpace(spec) == "" {
		return im, nil
	}
	seen := map[string]bool{}
	for item := range strings.SplitSeq(spec, ",") {
		key, val, ok := strings.Cut(strings.TrimSpace(item), "=")
		key, val = strings.TrimSpace(key), strings.TrimSpace(val)
		if !ok || key == "" || val == "" {
			return Impairment{}, fmt.Errorf("%w: item %q: want key=value (keys: %s)", ErrImpairSpec, item, impairKeys)
		}
		if seen[key] {
			return Impairment{}, fmt.Errorf("%w: %s given twice", ErrImpairSpec, key)
		}
		seen[key] = true
		var err error
		switch key {
		case "delay":
			im.Delay, err = parseImpairDuration(val)
		case "jitter":
			im.Jitter, err = parseImpairDuration(val)
		case "loss":
			im.Loss, err = parseProbability(val)
		case "reorder":
			im.Reorder, err = parseProbability(val)
		case "reorderdelay":
			im.ReorderDelay, err = parseImpairDuration(val)
		case "dup":
			im.Dup, err = parseProbability(val)
		case "seed":
			im.Seed, err = strconv.ParseUint(val, 10, 64)
		case "limit":
			im.Limit, err = parseImpairLimit(val)
		default:
			return Impairment{}, fmt.Errorf("%w: unknown key %q (keys: %s)", ErrImpairSpec, key, impairKeys)
		}
		if err != nil {
			return Impairment{}, fmt.Errorf("%w: %s=%s: %v", ErrImpairSpec, key, val, err)
		}
	}
	return im, nil
}

func parseImpairDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, err
	}
	if d < 0 || d > maxImpairDelay {
		return 0, fmt.Errorf("want 0 to %v", maxImpairDelay)
	}
	return d, nil
}

func parseProbability(s string) (float64, error) {
	scale := 1.0
	if t, ok := strings.CutSuffix(s, "%"); ok {
		s, scale = t, 100
	}
	p, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, errors.New("want a fraction (0.1) or a percentage (10%)")
	}
	p /= scale
	if math.IsNaN(p) || p < 0 || p > 1 {
		return 0, errors.New("want a probability in [0, 1]")
	}
	return p, nil
}

func parseImpairLimit(s string) (int64, error) {
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}} {
		if t, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = t, u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > maxImpairLimit/mult {
		return 0, fmt.Errorf("want bytes (optionally KiB, MiB, GiB) from %d to %d", minImpairLimit, maxImpairLimit)
	}
	if n *= mult; n < minImpairLimit {
		return 0, fmt.Errorf("want at least %d bytes (one largest packet)", minImpairLimit)
	}
	return n, nil
}

// String is the spec in canonical form; ParseImpairment(im.String())
// returns im.
func (im Impairment) String() string {
	return fmt.Sprintf("delay=%v,jitter=%v,loss=%s,reorder=%s,reorderdelay=%v,dup=%s,seed=%d,limit=%d",
		im.Delay, im.Jitter, fmtProb(im.Loss), fmtProb(im.Reorder), im.ReorderDelay, fmtProb(im.Dup), im.Seed, im.Limit)
}

func fmtProb(p float64) string { return strconv.FormatFloat(p, 'g', -1, 64) }

// Size classes of held buffers: 2 KiB << c for c in [0, numClasses).
const (
	minClassShift = 11
	numClasses    = 8
	maxHeldPacket = 1 << (minClassShift + numClasses - 1) // 256 KiB
)

func sizeClass(n int) int {
	if n <= 1<<minClassShift {
		return 0
	}
	return bits.Len(uint(n-1)) - minClassShift
}

// heldPacket is a packet the stage holds: its metadata, with Data pointing
// into buf.
type heldPacket struct {
	pkt   tun.Packet
	buf   []byte
	class int
}

// heldRef orders held packets in the heap: by due time, then by arrival.
type heldRef struct {
	due  time.Duration
	seq  uint64
	slot int32
}

func (a heldRef) before(b heldRef) bool {
	return a.due < b.due || a.due == b.due && a.seq < b.seq
}

// ImpairStage is the impairment stage: it implements the gateway's
// impairer (Push, Pop, Next, Stats). It is not safe for concurrent use: the
// gateway's event loop is its only caller.
type ImpairStage struct {
	im  Impairment
	rnd func() uint64 // PCG's Uint64; tests script it

	// Thresholds: a draw u (uniform in [0, 2^64)) hits when u < threshold.
	lossT, reorderT, dupT uint64

	slots    []heldPacket
	freeSlot []int32
	free     [numClasses][][]byte // reusable buffers per size class
	heap     []heldRef
	seq      uint64
	lastDue  time.Duration // due time of the last packet not held back (FIFO floor)
	poolSize int64         // bytes of all buffers, held or free
	popped   int32         // slot returned by the last Pop, released at the next call (-1: none)

	stats ImpairStats
}

// NewImpairStage builds a stage for im (as returned by ParseImpairment).
func NewImpairStage(im Impairment) *ImpairStage {
	if im.Limit < minImpairLimit {
		im.Limit = minImpairLimit
	}
	pcg := rand.NewPCG(im.Seed, im.Seed^0x9e3779b97f4a7c15)
	return &ImpairStage{
		im:       im,
		rnd:      pcg.Uint64,
		lossT:    threshold(im.Loss),
		reorderT: threshold(im.Reorder),
		dupT:     threshold(im.Dup),
		popped:   -1,
	}
}

// threshold maps a probability to a bound on a uniform 64-bit draw; 1 maps
// to the maximum (a draw of exactly 2^64-1, one in 2^64, escapes it).
func threshold(p float64) uint64 {
	if p >= 1 {
		return math.MaxUint64
	}
	return uint64(p * (1 << 64))
}

// hit draws once and says whether an event of threshold t happens; it draws
// nothing when t is 0, so a spec without the event consumes no randomness.
func (s *ImpairStage) hit(t uint64) bool {
	return t != 0 && s.rnd() < t
}

// Impairment returns the stage's parameters.
func (s *ImpairStage) Impairment() Impairment { return s.im }

// Push offers a packet at now. The stage copies it (p's slices are only
// read during the call), a GSO packet as its segments. false: the packet
// (every segment of it) was dropped, by loss or because the stage's
// buffers are full.
func (s *ImpairStage) Push(now time.Duration, p tun.Packet) bool {
	s.releasePopped()
	g, ok := parseGSO(p)
	if !ok {
		return s.push(now, p, nil, 0)
	}
	kept := false
	for i := range g.segs {
		if s.push(now, p, &g, i) {
			kept = true
		}
	}
	return kept
}

// push impairs one packet: p itself (g nil) or segment i of GSO packet p.
func (s *ImpairStage) push(now time.Duration, p tun.Packet, g *gsoPacket, i int) bool {
	if s.hit(s.lossT) {
		s.stats.Lost++
		return false
	}
	due := now + s.im.Delay
	if s.im.Jitter > 0 {
		span := uint64(2*s.im.Jitter + 1)
		due += time.Duration(s.rnd()%span) - s.im.Jitter
		if due < now {
			due = now
		}
	}
	if s.hit(s.reorderT) {
		due += s.im.ReorderDelay
		s.stats.Reordered++
	} else {
		if due < s.lastDue {
			due = s.lastDue
		}
		s.lastDue = due
	}
	if !s.hold(due, p, g, i) {
		s.stats.Full++
		return false
	}
	if s.hit(s.dupT) {
		if s.hold(due, p, g, i) {
			s.stats.Duplicated++
		} else {
			s.stats.Full++
		}
	}
	return true
}

// hold copies p (or segment i of it) into a buffer of the pool and queues
// it for due.
func (s *ImpairStage) hold(due time.Duration, p tun.Packet, g *gsoPacket, i int) bool {
	n := p.Len()
	if g != nil {
		n = g.hl + g.segLen(i)
	}
	if n > maxHeldPacket {
		return false
	}
	c := sizeClass(n)
	buf, ok := s.buffer(c)
	if !ok {
		return false
	}
	var h tun.Packet
	if g != nil {
		h = g.segment(buf, p, i)
	} else {
		copy(buf[copy(buf, p.Data):], p.Payload)
		h = p
		h.Data = buf[:n]
		h.Payload = nil
	}

	var slot int32
	if k := len(s.freeSlot); k > 0 {
		slot = s.freeSlot[k-1]
		s.freeSlot = s.freeSlot[:k-1]
	} else {
		slot = int32(len(s.slots))
		s.slots = append(s.slots, heldPacket{})
	}
	s.slots[slot] = heldPacket{pkt: h, buf: buf, class: c}
	s.seq++
	s.heapPush(heldRef{due: due, seq: s.seq, slot: slot})
	s.stats.Held++
	return true
}

// buffer returns a buffer of class c: a reused one, or a new one if the
// pool stays within Limit (after giving free buffers of other classes back
// to the garbage collector if need be).
func (s *ImpairStage) buffer(c int) ([]byte, bool) {
	if k := len(s.free[c]); k > 0 {
		b := s.free[c][k-1]
		s.free[c] = s.free[c][:k-1]
		return b, true
	}
	size := int64(1) << (minClassShift + c)
	for other := numClasses - 1; other >= 0 && s.poolSize+size > s.im.Limit; other-- {
		for len(s.free[other]) > 0 && s.poolSize+size > s.im.Limit {
			k := len(s.free[other])
			s.free[other][k-1] = nil
			s.free[other] = s.free[other][:k-1]
			s.poolSize -= int64(1) << (minClassShift + other)
		}
	}
	if s.poolSize+size > s.im.Limit {
		return nil, false
	}
	s.poolSize += size
	return make([]byte, size), true
}

// Pop returns the next packet due at or before now. Its slices are valid
// until the next Push or Pop.
func (s *ImpairStage) Pop(now time.Duration) (tun.Packet, bool) {
	s.releasePopped()
	if len(s.heap) == 0 || s.heap[0].due > now {
		return tun.Packet{}, false
	}
	r := s.heapPop()
	s.popped = r.slot
	s.stats.Passed++
	return s.slots[r.slot].pkt, true
}

func (s *ImpairStage) releasePopped() {
	if s.popped < 0 {
		return
	}
	h := &s.slots[s.popped]
	s.free[h.class] = append(s.free[h.class], h.buf)
	*h = heldPacket{}
	s.freeSlot = append(s.freeSlot, s.popped)
	s.popped = -1
	s.stats.Held--
}

// Next returns the due time of the earliest packet held, or 0 when none is
// held. A packet due at time 0 reports 1ns, so that 0 always means empty.
func (s *ImpairStage) Next() time.Duration {
	if len(s.heap) == 0 {
		return 0
	}
	return max(s.heap[0].due, 1)
}

// Stats returns the stage's counters. Held counts the packet last returned
// by Pop until the next call.
func (s *ImpairStage) Stats() ImpairStats { return s.stats }

// The heap: a binary min-heap by (due, seq), written out so that pushing
// and popping a value type allocates nothing (container/heap boxes).

func (s *ImpairStage) heapPush(r heldRef) {
	s.heap = append(s.heap, r)
	i := len(s.heap) - 1
	for i > 0 {
		parent := (i - 1) / 2
		if !s.heap[i].before(s.heap[parent]) {
			break
		}
		s.heap[i], s.heap[parent] = s.heap[parent], s.heap[i]
		i = parent
	}
}

func (s *ImpairStage) heapPop() heldRef {
	top := s.heap[0]
	last := len(s.heap) - 1
	s.heap[0] = s.heap[last]
	s.heap = s.heap[:last]
	i := 0
	for {
		l, r, m := 2*i+1, 2*i+2, i
		if l < last && s.heap[l].before(s.heap[m]) {
			m = l
		}
		if r < last && s.heap[r].before(s.heap[m]) {
			m = r
		}
		if m == i {
			return top
		}
		s.heap[i], s.heap[m] = s.heap[m], s.heap[i]
		i = m
	}
}

// gsoPacket is what cutting a TCP/IPv4 GSO packet needs from its headers.
type gsoPacket struct {
	ihl, hl  int // IPv4 header length; IPv4 and TCP header length
	payload  int // TCP payload bytes
	mss      int // GSOSize
	segs     int
	id       uint16
	seq      uint32
	src, dst wire.IPv4Addr
}

// TCP flags that only the first (CWR) or the last (FIN, PSH) segment of a
// super-packet carries, as the kernel's tcp_gso_segment leaves them.
const (
	tcpFlagFIN = 0x01
	tcpFlagPSH = 0x08
	tcpFlagCWR = 0x80
)

// parseGSO reads a GSO packet's headers; ok is false for a packet that is
// not GSO, or whose headers (all in Data) do not describe a TCP/IPv4
// packet of its length: such a packet is held whole, as it came.
func parseGSO(p tun.Packet) (g gsoPacket, ok bool) {
	d := p.Data
	if p.GSOSize == 0 || len(d) < 20 || d[0]>>4 != 4 || d[9] != 6 {
		return g, false
	}
	g.ihl = int(d[0]&0xf) * 4
	if g.ihl < 20 || len(d) < g.ihl+20 {
		return g, false
	}
	g.hl = g.ihl + int(d[g.ihl+12]>>4)*4
	if g.hl < g.ihl+20 || len(d) < g.hl || int(binary.BigEndian.Uint16(d[2:])) != p.Len() {
		return g, false
	}
	g.payload, g.mss = p.Len()-g.hl, int(p.GSOSize)
	if g.payload <= g.mss {
		return g, false // one segment: nothing to cut
	}
	g.segs = (g.payload + g.mss - 1) / g.mss
	g.id = binary.BigEndian.Uint16(d[4:])
	g.seq = binary.BigEndian.Uint32(d[g.ihl+4:])
	copy(g.src[:], d[12:16])
	copy(g.dst[:], d[16:20])
	return g, true
}

func (g *gsoPacket) segLen(i int) int { return min(g.mss, g.payload-i*g.mss) }

// segment writes segment i of p into buf: the headers with the segment's
// IPv4 total length, ID (+i, as TSO numbers them), header checksum, TCP
// sequence number and flags, and the payload slice; the TCP checksum is
// the pseudo-header's sum if p's was partial, else complete.
func (g *gsoPacket) segment(buf []byte, p tun.Packet, i int) tun.Packet {
	n := g.segLen(i)
	off := g.hl + i*g.mss // the payload's offset in p (Data then Payload)
	copy(buf, p.Data[:g.hl])
	seg := buf[g.hl : g.hl+n]
	if off < len(p.Data) {
		k := copy(seg, p.Data[off:])
		copy(seg[k:], p.Payload)
	} else {
		copy(seg, p.Payload[off-len(p.Data):])
	}
	ip, tcp := buf[:g.ihl], buf[g.ihl:g.hl+n]
	binary.BigEndian.PutUint16(ip[2:], uint16(g.hl+n))
	binary.BigEndian.PutUint16(ip[4:], g.id+uint16(i))
	ip[10], ip[11] = 0, 0
	binary.BigEndian.PutUint16(ip[10:], wire.Checksum(ip))
	binary.BigEndian.PutUint32(tcp[4:], g.seq+uint32(i*g.mss))
	if i > 0 {
		tcp[13] &^= tcpFlagCWR
	}
	if i < g.segs-1 {
		tcp[13] &^= tcpFlagFIN | tcpFlagPSH
	}
	pseudo := wire.PseudoHeaderSum(g.src, g.dst, 6, len(tcp))
	tcp[16], tcp[17] = 0, 0
	if p.NeedsCsum {
		binary.BigEndian.PutUint16(tcp[16:], pseudo)
	} else {
		binary.BigEndian.PutUint16(tcp[16:], ^wire.Combine(pseudo, wire.Sum(tcp), 0))
	}
	return tun.Packet{Data: buf[:g.hl+n], NeedsCsum: p.NeedsCsum, CsumStart: uint16(g.ihl), CsumOffset: 16}
}
