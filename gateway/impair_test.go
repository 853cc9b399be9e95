package gateway

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ultcp/ultcp/internal/wire"
	"github.com/ultcp/ultcp/link/tun"
)

const ms = time.Millisecond

func pk(s string) tun.Packet { return tun.Packet{Data: []byte(s)} }

// script makes a stage draw the given values, in order, instead of PCG's.
func script(t *testing.T, s *ImpairStage, draws ...uint64) {
	t.Helper()
	s.rnd = func() uint64 {
		if len(draws) == 0 {
			t.Fatal("stage drew more random numbers than scripted")
		}
		u := draws[0]
		draws = draws[1:]
		return u
	}
}

func mustStage(t *testing.T, spec string) *ImpairStage {
	t.Helper()
	im, err := ParseImpairment(spec)
	if err != nil {
		t.Fatal(err)
	}
	return NewImpairStage(im)
}

// pop pops at now and returns the packet's bytes, or "" if none is due.
func pop(s *ImpairStage, now time.Duration) string {
	p, ok := s.Pop(now)
	if !ok {
		return ""
	}
	return string(p.Data)
}

func TestParseImpairmentContractExample(t *testing.T) {
	got, err := ParseImpairment("delay=20ms,jitter=1ms,loss=0.01,reorder=0.1,dup=0.05,seed=1")
	want := Impairment{Delay: 20 * ms, Jitter: ms, Loss: 0.01, Reorder: 0.1, ReorderDelay: ms, Dup: 0.05, Seed: 1, Limit: 64 << 20}
	if err != nil || got != want {
		t.Fatalf("got %+v, %v\nwant %+v", got, err, want)
	}
}

func TestParseImpairmentPercentagesSpacesAndSuffixes(t *testing.T) {
	got, err := ParseImpairment(" reorder=10% , delay=20ms,reorderdelay=3ms,limit=1MiB,seed=42 ")
	want := Impairment{Delay: 20 * ms, Reorder: 0.1, ReorderDelay: 3 * ms, Seed: 42, Limit: 1 << 20}
	if err != nil || got != want {
		t.Fatalf("got %+v, %v\nwant %+v", got, err, want)
	}
}

func TestParseImpairmentEmptyImpairsNothing(t *testing.T) {
	got, err := ParseImpairment("")
	want := Impairment{ReorderDelay: ms, Seed: 1, Limit: 64 << 20}
	if err != nil || got != want {
		t.Fatalf("got %+v, %v; want %+v", got, err, want)
	}
}

func TestParseImpairmentErrorsSayWhatIsWrong(t *testing.T) {
	for _, c := range []struct{ spec, want string }{
		{"delay", `item "delay": want key=value`},
		{"delay=", `item "delay=": want key=value`},
		{"=5ms", `item "=5ms": want key=value`},
		{"delay=20ms,", `item "": want key=value`},
		{"latency=20ms", `unknown key "latency" (keys: delay, jitter, loss, reorder, reorderdelay, dup, seed, limit)`},
		{"delay=20", `delay=20: time: missing unit in duration "20"`},
		{"delay=-1ms", `delay=-1ms: want 0 to 10s`},
		{"jitter=11s", `jitter=11s: want 0 to 10s`},
		{"loss=1.5", `loss=1.5: want a probability in [0, 1]`},
		{"loss=101%", `loss=101%: want a probability in [0, 1]`},
		{"loss=NaN", `loss=NaN: want a probability in [0, 1]`},
		{"dup=-0.1", `dup=-0.1: want a probability in [0, 1]`},
		{"reorder=ten", `reorder=ten: want a fraction (0.1) or a percentage (10%)`},
		{"seed=-1", `seed=-1: strconv.ParseUint`},
		{"limit=1KiB", `limit=1KiB: want at least 262144 bytes (one largest packet)`},
		{"limit=2GiB", `limit=2GiB: want bytes (optionally KiB, MiB, GiB) from 262144 to 1073741824`},
		{"delay=1ms,delay=2ms", `delay given twice`},
	} {
		_, err := ParseImpairment(c.spec)
		if err == nil || !errors.Is(err, ErrImpairSpec) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseImpairment(%q) = %v; want ErrImpairSpec saying %q", c.spec, err, c.want)
		}
	}
}

func TestImpairmentStringParsesBack(t *testing.T) {
	im := Impairment{Delay: 20 * ms, Jitter: 250 * time.Microsecond, Loss: 0.01, Reorder: 0.1, ReorderDelay: 2 * ms, Dup: 0.05, Seed: 7, Limit: 1 << 20}
	const want = "delay=20ms,jitter=250µs,loss=0.01,reorder=0.1,reorderdelay=2ms,dup=0.05,seed=7,limit=1048576"
	if im.String() != want {
		t.Fatalf("String() = %q, want %q", im.String(), want)
	}
	if back, err := ParseImpairment(want); err != nil || back != im {
		t.Fatalf("ParseImpairment(String()) = %+v, %v; want %+v", back, err, im)
	}
}

func TestNewImpairerRejectsBadSpec(t *testing.T) {
	if _, err := newImpairer("loss=2"); !errors.Is(err, ErrImpairSpec) {
		t.Fatalf("newImpairer(loss=2) = %v, want ErrImpairSpec", err)
	}
}

func TestDelayReleasesEachPacketAtItsDueTime(t *testing.T) {
	s := mustStage(t, "delay=20ms")
	s.Push(0, pk("a"))
	s.Push(1*ms, pk("b"))
	s.Push(2*ms, pk("c"))
	if s.Next() != 20*ms {
		t.Fatalf("Next() = %v, want 20ms", s.Next())
	}
	steps := []struct {
		now  time.Duration
		want string
	}{{20*ms - 1, ""}, {20 * ms, "a"}, {20 * ms, ""}, {22 * ms, "b"}, {22 * ms, "c"}, {22 * ms, ""}}
	for _, st := range steps {
		if got := pop(s, st.now); got != st.want {
			t.Fatalf("Pop(%v) = %q, want %q", st.now, got, st.want)
		}
	}
	if s.Next() != 0 {
		t.Fatalf("Next() when empty = %v, want 0", s.Next())
	}
	if st := s.Stats(); st != (ImpairStats{Held: 0, Passed: 3}) {
		t.Fatalf("Stats() = %+v, want Passed 3", st)
	}
}

func TestZeroDelayPacketDueAtTimeZeroReportsOneNanosecond(t *testing.T) {
	s := mustStage(t, "")
	s.Push(0, pk("a"))
	if s.Next() != 1 {
		t.Fatalf("Next() = %v, want 1ns (0 means empty)", s.Next())
	}
	if got := pop(s, 0); got != "a" {
		t.Fatalf("Pop(0) = %q, want a", got)
	}
}

// Jitter varies the delay but not the order: a packet drawn 2 ms earlier
// than the one before it waits for that one.
func TestJitterDoesNotReorder(t *testing.T) {
	s := mustStage(t, "delay=10ms,jitter=1ms")
	// span 2_000_001 ns: draw 2_000_000 is +1ms, draw 0 is -1ms.
	script(t, s, 2_000_000, 0, 1_000_000)
	s.Push(0, pk("a"))    // due 11ms
	s.Push(100, pk("b"))  // drawn 9ms+100ns, raised to 11ms
	s.Push(5*ms, pk("c")) // due 15ms
	for _, st := range []struct {
		now  time.Duration
		want string
	}{{11*ms - 1, ""}, {11 * ms, "a"}, {11 * ms, "b"}, {11 * ms, ""}, {15 * ms, "c"}} {
		if got := pop(s, st.now); got != st.want {
			t.Fatalf("Pop(%v) = %q, want %q", st.now, got, st.want)
		}
	}
}

func TestReorderedPacketIsPassedByLaterOnes(t *testing.T) {
	s := mustStage(t, "delay=10ms,reorder=0.5,reorderdelay=5ms")
	script(t, s, 0, ^uint64(0), ^uint64(0)) // a held back; b, c not
	s.Push(0, pk("a"))
	s.Push(1*ms, pk("b"))
	s.Push(2*ms, pk("c"))
	for _, st := range []struct {
		now  time.Duration
		want string
	}{{11 * ms, "b"}, {12 * ms, "c"}, {14 * ms, ""}, {15 * ms, "a"}} {
		if got := pop(s, st.now); got != st.want {
			t.Fatalf("Pop(%v) = %q, want %q", st.now, got, st.want)
		}
	}
	if st := s.Stats(); st.Reordered != 1 || st.Passed != 3 {
		t.Fatalf("Stats() = %+v, want Reordered 1, Passed 3", st)
	}
}

func TestLossDropsAndCounts(t *testing.T) {
	s := mustStage(t, "loss=0.5")
	script(t, s, 0, ^uint64(0)) // a lost, b kept
	if s.Push(0, pk("a")) {
		t.Fatal("Push(a) = true, want dropped")
	}
	if !s.Push(0, pk("b")) {
		t.Fatal("Push(b) = false, want kept")
	}
	if got := pop(s, 0); got != "b" {
		t.Fatalf("Pop = %q, want b", got)
	}
	if st := s.Stats(); st.Lost != 1 || st.Passed != 1 {
		t.Fatalf("Stats() = %+v, want Lost 1, Passed 1", st)
	}
}

func TestDupSendsSecondCopyRightAfterFirst(t *testing.T) {
	s := mustStage(t, "delay=1ms,dup=1")
	s.Push(0, pk("a"))
	s.Push(0, pk("b"))
	var got []string
	for p := pop(s, ms); p != ""; p = pop(s, ms) {
		got = append(got, p)
	}
	if strings.Join(got, ",") != "a,a,b,b" {
		t.Fatalf("popped %v, want [a a b b]", got)
	}
	if st := s.Stats(); st.Duplicated != 2 {
		t.Fatalf("Duplicated = %d, want 2", st.Duplicated)
	}
}

func TestFullStageDropsAndCountsThenReusesBuffers(t *testing.T) {
	s := mustStage(t, "delay=1ms,limit=256KiB")
	p := tun.Packet{Data: make([]byte, 2048)} // one 2 KiB buffer each: 128 fit
	for i := range 128 {
		if !s.Push(0, p) {
			t.Fatalf("Push %d = false, want held", i)
		}
	}
	if s.Push(0, p) {
		t.Fatal("Push 129 = true, want dropped: full")
	}
	if st := s.Stats(); st.Full != 1 || st.Held != 128 {
		t.Fatalf("Stats() = %+v, want Full 1, Held 128", st)
	}
	pop(s, ms)
	if !s.Push(ms, p) {
		t.Fatal("Push after a Pop = false, want held in the freed buffer")
	}
}

func TestOversizedPacketIsDroppedAsFull(t *testing.T) {
	s := mustStage(t, "")
	if s.Push(0, tun.Packet{Data: make([]byte, 256<<10+1)}) {
		t.Fatal("Push(256 KiB + 1) = true, want dropped")
	}
	if s.Stats().Full != 1 {
		t.Fatalf("Full = %d, want 1", s.Stats().Full)
	}
}

func TestStageCopiesPacketAndKeepsMetadata(t *testing.T) {
	s := mustStage(t, "delay=1ms")
	hdr, payload := []byte("HEADER"), []byte("payload")
	in := tun.Packet{Data: hdr, Payload: payload, GSOSize: 1448, ECN: true, HdrLen: 6, NeedsCsum: true, CsumStart: 20, CsumOffset: 16}
	s.Push(0, in)
	copy(hdr, "XXXXXX")
	copy(payload, "XXXXXXX")
	out, ok := s.Pop(ms)
	if !ok {
		t.Fatal("nothing popped")
	}
	want := in
	want.Data, want.Payload = []byte("HEADERpayload"), nil
	if !bytes.Equal(out.Data, want.Data) || out.Payload != nil {
		t.Fatalf("popped Data %q Payload %q, want %q and nil", out.Data, out.Payload, want.Data)
	}
	meta := func(p tun.Packet) tun.Packet { p.Data, p.Payload = nil, nil; return p }
	if !reflect.DeepEqual(meta(out), meta(want)) {
		t.Fatalf("popped metadata %+v, want %+v", out, want)
	}
}

// trace pushes n packets, one every 10 µs, and records what comes out when.
func trace(s *ImpairStage, n int) string {
	var b strings.Builder
	var now time.Duration
	for i := range n {
		s.Push(now, pk(string(rune('A'+i%26))))
		for p, ok := s.Pop(now); ok; p, ok = s.Pop(now) {
			b.Write(p.Data)
		}
		now += 10 * time.Microsecond
	}
	for p, ok := s.Pop(time.Hour); ok; p, ok = s.Pop(time.Hour) {
		b.Write(p.Data)
	}
	return b.String()
}

func TestSameSeedSameDecisions(t *testing.T) {
	const spec = "delay=1ms,jitter=100us,loss=0.2,reorder=0.2,reorderdelay=50us,dup=0.2,seed="
	a := trace(mustStage(t, spec+"5"), 200)
	b := trace(mustStage(t, spec+"5"), 200)
	c := trace(mustStage(t, spec+"6"), 200)
	if a != b {
		t.Fatalf("seed 5 twice gave different traces:\n%s\n%s", a, b)
	}
	if a == c {
		t.Fatalf("seeds 5 and 6 gave the same trace %s", a)
	}
}

func TestLossFractionMatchesSpec(t *testing.T) {
	s := mustStage(t, "loss=0.1,seed=3")
	for i := range 10000 {
		s.Push(time.Duration(i), pk("x"))
		s.Pop(time.Duration(i))
	}
	// 10 000 draws at p = 0.1: 1000 ± 30 (one standard deviation).
	if l := s.Stats().Lost; l < 850 || l > 1150 {
		t.Fatalf("lost %d of 10000 at loss=0.1, want 850..1150", l)
	}
}

func TestSteadyStateAllocatesNothing(t *testing.T) {
	s := mustStage(t, "delay=1ms,jitter=100us,reorder=0.1,dup=0.05,loss=0.01")
	p := tun.Packet{Data: make([]byte, 1500)}
	var now time.Duration
	step := func() {
		now += 10 * time.Microsecond
		s.Push(now, p)
		for _, ok := s.Pop(now); ok; _, ok = s.Pop(now) {
		}
	}
	for range 2000 { // fill the pool, the heap and the slot table
		step()
	}
	if a := testing.AllocsPerRun(1000, step); a != 0 {
		t.Fatalf("%v allocations per packet in steady state, want 0", a)
	}
}

func TestSteadyStateCuttingGSOAllocatesNothing(t *testing.T) {
	s := mustStage(t, "delay=1ms,reorder=0.1")
	p := gsoPkt(64000, 0x10, true)
	var now time.Duration
	step := func() {
		now += 50 * time.Microsecond
		s.Push(now, p)
		for _, ok := s.Pop(now); ok; _, ok = s.Pop(now) {
		}
	}
	for range 200 {
		step()
	}
	if a := testing.AllocsPerRun(200, step); a != 0 {
		t.Fatalf("%v allocations per 64 KB GSO packet in steady state, want 0", a)
	}
}

func BenchmarkImpairStage(b *testing.B) {
	s := NewImpairStage(Impairment{Delay: 20 * ms, Jitter: ms, Reorder: 0.1, ReorderDelay: ms, Dup: 0.01, Seed: 1, Limit: 64 << 20})
	p := tun.Packet{Data: make([]byte, 1500)}
	b.ReportAllocs()
	b.SetBytes(1500)
	var now time.Duration
	for b.Loop() {
		now += time.Microsecond
		s.Push(now, p)
		for _, ok := s.Pop(now); ok; _, ok = s.Pop(now) {
		}
	}
}

func FuzzParseImpairment(f *testing.F) {
	for _, s := range []string{"", "delay=20ms,jitter=1ms,loss=0.01,reorder=0.1,dup=0.05,seed=1", "reorder=10%,delay=20ms", "limit=1GiB", "loss=1e-3", "delay=1ms,delay=2ms", "=,", "loss=NaN%"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		im, err := ParseImpairment(spec)
		if err != nil {
			if !errors.Is(err, ErrImpairSpec) {
				t.Fatalf("error %v does not wrap ErrImpairSpec", err)
			}
			return
		}
		back, err := ParseImpairment(im.String())
		if err != nil || back != im {
			t.Fatalf("%q parsed to %+v; its String %q parsed to %+v, %v", spec, im, im.String(), back, err)
		}
		// A parsed spec makes a working stage.
		s := NewImpairStage(im)
		s.Push(0, pk("x"))
		s.Pop(time.Hour)
	})
}

// gsoPkt is a TCP/IPv4 super-packet 10.77.0.2:80 → 192.168.77.2:40000,
// IPv4 ID 0x0100, seq 1000, flags (e.g. ACK|PSH|FIN|CWR), payload bytes
// i%251, MSS 1448; headers in Data, payload in Payload (the gateway's
// writev form), TCP checksum partial when partial is set.
func gsoPkt(payload int, flags byte, partial bool) tun.Packet {
	h := []byte{
		0x45, 0, 0, 0, 0x01, 0x00, 0x40, 0, 64, 6, 0, 0, 10, 77, 0, 2, 192, 168, 77, 2,
		0x00, 80, 0x9c, 0x40, 0, 0, 0x03, 0xe8, 0, 0, 0, 1, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0,
	}
	h[2], h[3] = byte((40+payload)>>8), byte(40+payload)
	pl := make([]byte, payload)
	for i := range pl {
		pl[i] = byte(i % 251)
	}
	return tun.Packet{Data: h, Payload: pl, GSOSize: 1448, NeedsCsum: partial, CsumStart: 20, CsumOffset: 16}
}

func be16(b []byte) int { return int(b[0])<<8 | int(b[1]) }
func be32(b []byte) uint32 {
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func TestGSOPacketIsCutIntoWireSegments(t *testing.T) {
	s := mustStage(t, "delay=1ms")
	const ack, psh, fin, cwr = 0x10, 0x08, 0x01, 0x80
	if !s.Push(0, gsoPkt(3000, ack|psh|fin|cwr, true)) {
		t.Fatal("Push = false")
	}
	want := []struct {
		totalLen, id int
		seq          uint32
		flags        byte
		payloadStart int
	}{
		{1488, 0x100, 1000, ack | cwr, 0},
		{1488, 0x101, 2448, ack, 1448},
		{144, 0x102, 3896, ack | psh | fin, 2896},
	}
	for i, w := range want {
		p, ok := s.Pop(ms)
		if !ok {
			t.Fatalf("segment %d missing", i)
		}
		d := p.Data
		if len(d) != w.totalLen || be16(d[2:]) != w.totalLen || be16(d[4:]) != w.id || be32(d[24:]) != w.seq || d[33] != w.flags {
			t.Fatalf("segment %d: len %d total %d id %#x seq %d flags %#x; want %d, %#x, %d, %#x",
				i, len(d), be16(d[2:]), be16(d[4:]), be32(d[24:]), d[33], w.totalLen, w.id, w.seq, w.flags)
		}
		if d[40] != byte(w.payloadStart%251) {
			t.Fatalf("segment %d payload starts with %d, want %d", i, d[40], w.payloadStart%251)
		}
		if wire.Checksum(d[:20]) != 0 {
			t.Fatalf("segment %d: IPv4 header checksum does not verify", i)
		}
		pseudo := wire.PseudoHeaderSum(wire.IPv4Addr{10, 77, 0, 2}, wire.IPv4Addr{192, 168, 77, 2}, 6, len(d)-20)
		if got := uint16(be16(d[36:])); got != pseudo {
			t.Fatalf("segment %d: partial TCP checksum %#04x, want the pseudo-header sum %#04x", i, got, pseudo)
		}
		if p.GSOSize != 0 || !p.NeedsCsum || p.CsumStart != 20 || p.CsumOffset != 16 {
			t.Fatalf("segment %d metadata %+v, want plain packet with partial checksum at 20+16", i, p)
		}
	}
	if _, ok := s.Pop(ms); ok {
		t.Fatal("a fourth segment")
	}
	if st := s.Stats(); st.Passed != 3 {
		t.Fatalf("Passed = %d, want 3 (segments)", st.Passed)
	}
}

func TestGSOSegmentsGetCompleteChecksumWhenPacketHadOne(t *testing.T) {
	s := mustStage(t, "")
	s.Push(0, gsoPkt(2000, 0x10, false))
	for i := range 2 {
		p, _ := s.Pop(0)
		d := p.Data
		pseudo := wire.PseudoHeaderSum(wire.IPv4Addr{10, 77, 0, 2}, wire.IPv4Addr{192, 168, 77, 2}, 6, len(d)-20)
		// RFC 1071: the sum over pseudo-header and segment, checksum
		// included, is all ones.
		if sum := wire.Combine(pseudo, wire.Sum(d[20:]), 0); sum != 0xffff || p.NeedsCsum {
			t.Fatalf("segment %d: checksum sum %#04x NeedsCsum %v; want 0xffff, false", i, sum, p.NeedsCsum)
		}
	}
}

func TestGSOSegmentsAreLostOneByOne(t *testing.T) {
	s := mustStage(t, "loss=0.5")
	script(t, s, ^uint64(0), 0, ^uint64(0)) // keep, lose, keep
	if !s.Push(0, gsoPkt(3000, 0x10, true)) {
		t.Fatal("Push = false, want true (two of three segments kept)")
	}
	var seqs []uint32
	for p, ok := s.Pop(0); ok; p, ok = s.Pop(0) {
		seqs = append(seqs, be32(p.Data[24:]))
	}
	if len(seqs) != 2 || seqs[0] != 1000 || seqs[1] != 3896 || s.Stats().Lost != 1 {
		t.Fatalf("segments out %v, lost %d; want [1000 3896], 1", seqs, s.Stats().Lost)
	}
}

func TestMalformedGSOPacketIsHeldWhole(t *testing.T) {
	s := mustStage(t, "")
	p := gsoPkt(3000, 0x10, true)
	p.Data[3]++ // total length disagrees with the packet
	s.Push(0, p)
	out, _ := s.Pop(0)
	if out.GSOSize != 1448 || len(out.Data) != 3040 {
		t.Fatalf("popped GSOSize %d, %d bytes; want the packet whole (1448, 3040)", out.GSOSize, len(out.Data))
	}
}

// Whatever the gateway hands the stage, a GSO packet or not, well formed
// or not, Push and Pop never panic, and every segment cut from a packet is
// a whole IPv4 packet whose total length is its length.
func FuzzImpairStagePush(f *testing.F) {
	good := gsoPkt(3000, 0x19, true)
	f.Add(append(append([]byte(nil), good.Data...), good.Payload...), uint16(1448), 40)
	f.Add([]byte{0x45, 0, 0, 40}, uint16(1), 4)
	f.Add([]byte{}, uint16(0), 0)
	f.Fuzz(func(t *testing.T, pkt []byte, gso uint16, split int) {
		if split < 0 || split > len(pkt) {
			split = len(pkt)
		}
		s := mustStage(t, "dup=0.5,reorder=0.5,loss=0.1")
		in := tun.Packet{Data: pkt[:split], Payload: pkt[split:], GSOSize: gso, NeedsCsum: true}
		_, cut := parseGSO(in)
		s.Push(0, in)
		for p, ok := s.Pop(time.Hour); ok; p, ok = s.Pop(time.Hour) {
			if cut && (p.GSOSize != 0 || be16(p.Data[2:]) != len(p.Data)) {
				t.Fatalf("segment of %d bytes says total length %d, GSOSize %d", len(p.Data), be16(p.Data[2:]), p.GSOSize)
			}
		}
	})
}
