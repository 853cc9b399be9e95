package fabric

import "testing"

// FuzzCheckRingPair: whatever a peer puts in a CONNECT, a pair that passes
// the check lies inside its side's connection table and slab.
func FuzzCheckRingPair(f *testing.F) {
	f.Add(uint32(0), uint64(0), uint64(MinRingSize))
	f.Add(uint32(99), uint64(1<<20), uint64(1<<19))
	f.Add(uint32(1<<31), uint64(1<<63), uint64(1<<62))
	l, err := makeLayout(params{ctlRingSize: 64 << 10, maxConns: 100, slabSize: 16 << 20})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, id uint32, block, size uint64) {
		if l.checkRingPair(id, block, size) != nil {
			return
		}
		for s := range 2 {
			ctl := l.conns[s] + uint64(id)*2*ctlBlockSize
			if ctl+2*ctlBlockSize > l.conns[s]+l.maxConns*2*ctlBlockSize {
				t.Fatalf("control blocks of id %d outside side %d's table", id, s)
			}
			if d := l.slab[s] + block; d < l.slab[s] || d+2*size > l.slab[s]+l.slabSize {
				t.Fatalf("rings of %d bytes at block %d outside side %d's slab", size, block, s)
			}
		}
	})
}

func TestLayoutRejectsOutOfBoundsParameters(t *testing.T) {
	for _, p := range []params{
		{ctlRingSize: 3000, maxConns: 10, slabSize: 1 << 20},          // not a power of two
		{ctlRingSize: 64 << 10, maxConns: 0, slabSize: 1 << 20},       // no connections
		{ctlRingSize: 64 << 10, maxConns: 1 << 21, slabSize: 1 << 20}, // too many
		{ctlRingSize: 64 << 10, maxConns: 10, slabSize: 1<<20 + 1},    // unaligned slab
		{ctlRingSize: 64 << 10, maxConns: 10, slabSize: 1 << 41},      // too large
	} {
		if _, err := makeLayout(p); err == nil {
			t.Errorf("makeLayout(%+v) accepted", p)
		}
	}
}
