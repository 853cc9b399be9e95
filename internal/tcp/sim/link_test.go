package sim

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/ultcp/ultcp/internal/wire"
)

func testLink(cfg Link) *linkState {
	return newLinkState(cfg, rand.New(rand.NewPCG(1, 2)))
}

// A 1500-byte packet takes 1 ms at 12 Mbit/s; packets offered together
// leave one after the other; the wire adds its delay.
func TestLinkSerialisationAndDelay(t *testing.T) {
	l := testLink(Link{Rate: 12e6, Delay: 10 * time.Millisecond})
	for i, want := range []time.Duration{11 * time.Millisecond, 12 * time.Millisecond, 13 * time.Millisecond} {
		if f := l.send(0, 1500, false); f.Dropped || f.Arrive != want {
			t.Fatalf("packet %d offered at 0: %+v, want arrival at %v", i, f, want)
		}
	}
	// Offered after the bottleneck went idle: no queueing.
	if f := l.send(50*time.Millisecond, 1500, false); f.Arrive != 61*time.Millisecond {
		t.Fatalf("packet on an idle link at 50 ms arrives %v, want 61ms", f.Arrive)
	}
}

func TestLinkInfinitelyFast(t *testing.T) {
	l := testLink(Link{Delay: time.Millisecond})
	for range 3 {
		if f := l.send(5*time.Millisecond, 65535, false); f.Dropped || f.Arrive != 6*time.Millisecond {
			t.Fatalf("ideal link: %+v, want arrival at 6ms", f)
		}
	}
}

// Drop-tail by bytes: a 3000-byte queue holds two 1500-byte packets (the
// one being serialised counts); the third is dropped; once the first
// has left there is room again.
func TestLinkDropTailBytes(t *testing.T) {
	l := testLink(Link{Rate: 12e6, QueueBytes: 3000})
	got := []bool{l.send(0, 1500, false).Dropped, l.send(0, 1500, false).Dropped, l.send(0, 1500, false).Dropped}
	if got[0] || got[1] || !got[2] {
		t.Fatalf("three packets into a 3000-byte queue: dropped %v, want [false false true]", got)
	}
	if f := l.send(time.Millisecond, 1500, false); f.Dropped || f.Arrive != 3*time.Millisecond {
		t.Fatalf("at 1 ms the first packet has left: %+v, want queued, arriving at 3ms", f)
	}
	if l.stats.QueueDrops != 1 || l.stats.MaxQueue != 3000 || l.stats.Packets != 4 {
		t.Fatalf("stats %+v, want 1 queue drop, max queue 3000, 4 packets", l.stats)
	}
}

func TestLinkDropTailPackets(t *testing.T) {
	l := testLink(Link{Rate: 12e6, QueuePackets: 2})
	got := []bool{l.send(0, 40, false).Dropped, l.send(0, 1500, false).Dropped, l.send(0, 40, false).Dropped}
	if got[0] || got[1] || !got[2] {
		t.Fatalf("three packets into a 2-packet queue: dropped %v, want [false false true]", got)
	}
}

// With probability p each packet is lost: over 100,000 packets the count
// is within five standard deviations of p*n.
func TestLinkRandomLossRate(t *testing.T) {
	const n = 100000
	for _, p := range []float64{0.001, 0.01, 0.2} {
		l := testLink(Link{Loss: p})
		for range n {
			l.send(0, 100, false)
		}
		mean, sd := p*n, math.Sqrt(n*p*(1-p))
		if got := float64(l.stats.Lost); math.Abs(got-mean) > 5*sd {
			t.Errorf("loss %v: lost %v of %d, want %v ± %.0f", p, got, n, mean, 5*sd)
		}
	}
}

// Gilbert-Elliott with LossBad = 1 and LossGood = 0: the long-run loss
// rate is the time in Bad, PGoodBad/(PGoodBad+PBadGood), and losses come
// in bursts of mean length 1/PBadGood.
func TestLinkGilbertElliottBursts(t *testing.T) {
	l := testLink(Link{Burst: GilbertElliott{PGoodBad: 0.01, PBadGood: 0.25, LossBad: 1}})
	const n = 200000
	bursts, prev := 0, false
	for range n {
		lost := l.send(0, 100, false).Dropped
		if lost && !prev {
			bursts++
		}
		prev = lost
	}
	rate := float64(l.stats.Lost) / n
	if want := 0.01 / 0.26; math.Abs(rate-want) > 0.1*want {
		t.Errorf("loss rate %.4f, want %.4f ± 10%%", rate, want)
	}
	if mean := float64(l.stats.Lost) / float64(bursts); math.Abs(mean-4) > 0.4 {
		t.Errorf("mean burst %.2f packets, want 1/PBadGood = 4 ± 0.4", mean)
	}
	if l.stats.BurstLost != l.stats.Lost {
		t.Errorf("burst losses %d of %d losses, want all", l.stats.BurstLost, l.stats.Lost)
	}
}

// A reordered packet is held back by at most ReorderDelay, so the packet
// sent after it can arrive first.
func TestLinkReorderHoldsPacketsBack(t *testing.T) {
	l := testLink(Link{Delay: time.Millisecond, Reorder: 1, ReorderDelay: 5 * time.Millisecond})
	for range 1000 {
		f := l.send(0, 100, false)
		if f.Arrive <= time.Millisecond || f.Arrive > 6*time.Millisecond {
			t.Fatalf("reordered packet arrives at %v, want in (1ms, 6ms]", f.Arrive)
		}
	}
	if l.stats.Reordered != 1000 {
		t.Fatalf("reordered %d of 1000", l.stats.Reordered)
	}
}

func TestLinkDuplicates(t *testing.T) {
	l := testLink(Link{Dup: 1, Delay: time.Millisecond})
	if f := l.send(0, 100, false); !f.Dup || f.DupAt != time.Millisecond || !f.Intact() {
		t.Fatalf("fate %+v, want a duplicate arriving at 1ms", f)
	}
}

// The corruption model changes one byte; the receiver's checks catch
// every one-byte change anywhere in the packet: a change in the IPv4
// header fails its header checksum, and anywhere in the TCP header or
// payload fails the TCP checksum over the pseudo-header (RFC 1071: a
// ones'-complement sum detects any error confined to one 16-bit word,
// except 0x0000 ↔ 0xffff, which needs both of its bytes changed).
func TestCorruptionOfAnyOneByteIsCaught(t *testing.T) {
	src, dst := wire.IPv4Addr{10, 0, 0, 1}, wire.IPv4Addr{10, 0, 0, 2}
	h := wire.TCPHeader{SrcPort: 1, DstPort: 2, Seq: 1000, Ack: 2000, Flags: wire.FlagACK, Window: 512}
	h.Options.HasTimestamp, h.Options.TSVal, h.Options.TSEcr = true, 7, 9
	payload := make([]byte, 1448)
	for i := range payload {
		payload[i] = byte(i * 31)
	}
	hl := h.EncodedLen()
	pkt := make([]byte, wire.IPv4HeaderLen+hl+len(payload))
	ip := wire.IPv4Header{TTL: 64, Protocol: wire.ProtoTCP, Src: src, Dst: dst, PayloadLen: uint16(hl + len(payload))}
	if _, err := ip.Encode(pkt); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Encode(pkt[20:]); err != nil {
		t.Fatal(err)
	}
	copy(pkt[20+hl:], payload)
	if err := wire.SetTCPChecksum(src, dst, pkt[20:20+hl], pkt[20+hl:]); err != nil {
		t.Fatal(err)
	}
	caught := func(p []byte) bool {
		var ih wire.IPv4Header
		tp, err := ih.Parse(p)
		if err != nil || ih.Src != src || ih.Dst != dst || ih.Protocol != wire.ProtoTCP {
			return true
		}
		return wire.VerifyTCPChecksum(ih.Src, ih.Dst, tp) != nil
	}
	if caught(pkt) {
		t.Fatal("the intact packet is rejected")
	}
	for i := range pkt {
		for _, x := range []byte{0x01, 0x80, 0xff, 0x5a} {
			pkt[i] ^= x
			if !caught(pkt) {
				t.Fatalf("byte %d XOR %#x passed every check", i, x)
			}
			pkt[i] ^= x
		}
	}
}

func TestLinkValidate(t *testing.T) {
	for _, tc := range []struct {
		l    Link
		want string
	}{
		{Link{Rate: -1}, "negative rate"},
		{Link{Delay: -1}, "negative delay"},
		{Link{QueueBytes: -1}, "negative queue"},
		{Link{Loss: 1.5}, "loss probability"},
		{Link{Loss: math.NaN()}, "loss probability"},
		{Link{Corrupt: -0.1}, "corruption probability"},
		{Link{Burst: GilbertElliott{PGoodBad: 0.1}}, "never leaves the Bad state"},
	} {
		err := tc.l.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want one mentioning %q", tc.l, err, tc.want)
		}
	}
	if err := (&Link{Loss: 1, Dup: 0, Reorder: 0.5}).Validate(); err != nil {
		t.Errorf("valid link rejected: %v", err)
	}
}

func TestRangeSet(t *testing.T) {
	var m rangeSet
	m.add(10, 20)
	m.add(30, 40)
	m.add(0, 5)
	if got := m.r; len(got) != 3 || got[0] != (span{0, 5}) || got[2] != (span{30, 40}) {
		t.Fatalf("spans %v, want [0,5) [10,20) [30,40)", got)
	}
	m.add(20, 30) // touches both neighbours: one run
	if got := m.r; len(got) != 2 || got[1] != (span{10, 40}) {
		t.Fatalf("spans %v, want [0,5) [10,40)", got)
	}
	for _, tc := range []struct {
		s, e int64
		want bool
	}{{0, 5, true}, {0, 6, false}, {10, 40, true}, {12, 13, true}, {4, 11, false}, {39, 41, false}, {7, 7, true}} {
		if got := m.covers(tc.s, tc.e); got != tc.want {
			t.Errorf("covers(%d, %d) = %v, want %v", tc.s, tc.e, got, tc.want)
		}
	}
	m.add(3, 100)
	if got := m.r; len(got) != 1 || got[0] != (span{0, 100}) {
		t.Fatalf("spans %v, want [0,100)", got)
	}
}
