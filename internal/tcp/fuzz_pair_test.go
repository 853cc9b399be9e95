package tcp

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"
	"time"
)

// FuzzPairLinkFaults drives two engines over a faulty link (loss,
// duplication, reordering, CE marks; rates, SACK, timestamps and ECN
// from the input) while
// both applications write and read in sizes the input chooses. Whatever
// happens, neither engine may panic, a reader must only ever see the
// exact bytes its peer wrote, in order, and the sender's scoreboard must
// stay consistent (its counters match its records, which lie within
// SND.UNA..SND.MAX in order). Completion is not required: a link that
// drops everything may stall the transfer.
//
// Run it: go test -run XXX -fuzz FuzzPairLinkFaults -fuzztime 60s ./internal/tcp
func FuzzPairLinkFaults(f *testing.F) {
	f.Add(uint64(1), byte(0), byte(10), byte(5), byte(20), []byte{1, 2, 3, 4, 200, 100, 50})
	f.Add(uint64(2), byte(3), byte(60), byte(60), byte(100), []byte{255, 0, 255, 0, 7})
	f.Add(uint64(3), byte(1), byte(0), byte(0), byte(0), []byte("write read write read"))
	f.Add(uint64(4), byte(2), byte(120), byte(0), byte(255), []byte{9, 9, 9, 9, 9, 9, 9, 9})
	f.Add(uint64(5), byte(4), byte(30), byte(10), byte(128), []byte{0, 64, 128, 192, 1, 65, 129, 193})
	f.Fuzz(func(t *testing.T, seed uint64, mode, loss, dup, reorder byte, ops []byte) {
		p := newFuzzPair(t, seed, mode, loss, dup, reorder)
		p.run(ops)
	})
}

type fuzzPkt struct {
	at  time.Duration
	seq uint64
	to  int
	seg Segment
}

type fuzzPair struct {
	t                  *testing.T
	rng                *rand.Rand
	now                time.Duration
	conns              [2]*Conn
	q                  []fuzzPkt
	n                  uint64
	loss, dup, reorder float64
	wrote, read        [2]int
	out                []Segment
	buf                []byte
}

func newFuzzPair(t *testing.T, seed uint64, mode, loss, dup, reorder byte) *fuzzPair {
	p := &fuzzPair{t: t, rng: rand.New(rand.NewPCG(seed, 7)),
		loss: float64(loss) / 512, dup: float64(dup) / 512, reorder: float64(reorder) / 256,
		buf: make([]byte, 4096)}
	cfg := Config{MSS: 536 + int(mode>>2)%1000, RecvBuf: 16 << 10, MaxRecvBuf: 64 << 10, SendBuf: 32 << 10,
		NoTimestamps: mode&1 != 0, NoSACK: mode&2 != 0, ECN: mode&4 != 0, NoDelay: mode&16 != 0,
		RTOMin: 50 * time.Millisecond}
	var out []Segment
	p.conns[1] = NewListening(&cfg, 80, 0, 5000)
	p.conns[0], out = Dial(0, &cfg, 1234, 80, 4294960000, out)
	p.send(0, out)
	return p
}

// octetOf is side s's n-th octet.
func octetOf(s, n int) byte { return byte(n*13 + n>>8 + s*77) }

// send puts what side from emitted on the link, copying payloads (they
// are valid only until the next call on the engine).
func (p *fuzzPair) send(from int, segs []Segment) {
	for i := range segs {
		if p.rng.Float64() < p.loss {
			continue
		}
		s := segs[i]
		s.Payload = append([]byte(nil), s.Payload...)
		if s.ECN != ECNNotECT && p.rng.Float64() < p.reorder/2 {
			s.ECN = ECNCE // a congested queue marks it (RFC 3168)
		}
		at := p.now + time.Millisecond
		if p.rng.Float64() < p.reorder {
			at += time.Duration(p.rng.Int64N(int64(5 * time.Millisecond)))
		}
		p.n++
		p.q = append(p.q, fuzzPkt{at: at, seq: p.n, to: 1 - from, seg: s})
		if p.rng.Float64() < p.dup {
			p.n++
			p.q = append(p.q, fuzzPkt{at: at + time.Microsecond, seq: p.n, to: 1 - from, seg: s})
		}
	}
}

// write lets side i's application write up to n octets of its pattern.
func (p *fuzzPair) write(i, n int) {
	c := p.conns[i]
	n = min(n, len(p.buf), 1<<20-p.wrote[i])
	b := p.buf[:n]
	for k := range b {
		b[k] = octetOf(i, p.wrote[i]+k)
	}
	k, err := c.Write(b)
	if err == nil {
		p.wrote[i] += k
	}
	p.send(i, c.Output(p.now, p.out[:0]))
}

// readUpTo lets side i's application read up to n octets and checks them.
func (p *fuzzPair) readUpTo(i, n int) {
	c := p.conns[i]
	b := p.buf[:min(n, len(p.buf))]
	k, _ := c.Read(b)
	for j := 0; j < k; j++ {
		if want := octetOf(1-i, p.read[i]+j); b[j] != want {
			p.t.Fatalf("side %d read octet %d = %d, want %d: the stream is corrupted", i, p.read[i]+j, b[j], want)
		}
	}
	p.read[i] += k
	if p.read[i] > p.wrote[1-i] {
		p.t.Fatalf("side %d read %d octets, only %d were written", i, p.read[i], p.wrote[1-i])
	}
	p.send(i, c.Output(p.now, p.out[:0]))
}

// step delivers the next packet or runs the next timer; false when
// nothing is pending.
func (p *fuzzPair) step() bool {
	next, qi := time.Duration(-1), -1
	for j := range p.q {
		if next < 0 || p.q[j].at < next || p.q[j].at == next && p.q[j].seq < p.q[qi].seq {
			next, qi = p.q[j].at, j
		}
	}
	ti := -1
	for i, c := range p.conns {
		if d := c.Deadline(); d != 0 && (next < 0 || d < next) {
			next, qi, ti = d, -1, i
		}
	}
	if next < 0 {
		return false
	}
	p.now = max(p.now, next)
	if ti >= 0 {
		p.send(ti, p.conns[ti].OnTimer(p.now, p.out[:0]))
	} else {
		k := p.q[qi]
		p.q[qi] = p.q[len(p.q)-1]
		p.q = p.q[:len(p.q)-1]
		p.send(k.to, p.conns[k.to].Input(p.now, &k.seg, p.out[:0]))
		ti = k.to
	}
	checkBoard(p.t, p.conns[ti])
	return true
}

func (p *fuzzPair) run(ops []byte) {
	for len(ops) < 8 {
		ops = append(ops, byte(len(ops)*37))
	}
	for round := 0; round < 40; round++ {
		for i := 0; i+1 < len(ops); i += 2 {
			side, n := int(ops[i]&1), 1+int(binary.LittleEndian.Uint16([]byte{ops[i+1], ops[i] >> 1}))%4096
			switch ops[i] >> 6 {
			case 0, 1:
				p.write(side, n)
			case 2:
				p.readUpTo(side, n)
			case 3:
				for range n % 64 {
					if !p.step() {
						break
					}
				}
			}
			for range 8 {
				if !p.step() {
					break
				}
			}
			p.readUpTo(0, 4096)
			p.readUpTo(1, 4096)
		}
	}
	p.t.Logf("wrote %v, read %v (states %v %v)", p.wrote, p.read, p.conns[0].State(), p.conns[1].State())
}

// checkBoard verifies the scoreboard's invariants.
func checkBoard(t *testing.T, c *Conn) {
	b := &c.board
	sacked, lost, nSACKed := 0, 0, 0
	prev := c.sndUna
	for i := 0; i < b.n(); i++ {
		s := b.at(i)
		if !seqLT(s.start, s.end) || seqLT(s.start, prev) || seqGT(s.end, c.sndMax) {
			t.Fatalf("record %d [%d, %d) out of order or outside [SND.UNA %d, SND.MAX %d]", i, s.start, s.end, c.sndUna, c.sndMax)
		}
		prev = s.end
		switch {
		case s.flags&segSACKed != 0:
			sacked += s.len()
			nSACKed++
		case s.flags&segLost != 0:
			lost += s.len()
		}
	}
	if sacked != b.sacked || lost != b.lost || nSACKed != b.nSACKed {
		t.Fatalf("scoreboard counters SACKed %d lost %d (%d records) but records say %d, %d, %d",
			b.sacked, b.lost, b.nSACKed, sacked, lost, nSACKed)
	}
	if c.pipe() < 0 {
		t.Fatalf("pipe %d < 0", c.pipe())
	}
}
