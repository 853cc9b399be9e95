package fabric

import (
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

func inspectOne(t *testing.T, dir string) SegmentInfo {
	t.Helper()
	s, err := Inspect(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Nodes) != 2 || len(s.Segments) != 1 {
		t.Fatalf("Inspect saw %d nodes and %d segments, want 2 and 1", len(s.Nodes), len(s.Segments))
	}
	for _, n := range s.Nodes {
		if n.Err != nil || !n.Running {
			t.Fatalf("node %v: running %v, %v", n.Addr, n.Running, n.Err)
		}
	}
	if err := s.Segments[0].Err; err != nil {
		t.Fatal(err)
	}
	return s.Segments[0]
}

func TestInspectShowsConnectionsAndUnreadBytes(t *testing.T) {
	dir := testDir(t)
	f := openFabric(t, dir)
	a, b := join(t, f, addrA), join(t, f, addrB)
	var ca, cb [3]*Conn
	for i := range ca {
		var err error
		if ca[i], err = a.Dial(ctx10s(t), addrB, ConnConfig{RingSize: MinRingSize}); err != nil {
			t.Fatal(err)
		}
		if cb[i], err = b.Accept(ctx10s(t)); err != nil {
			t.Fatal(err)
		}
	}
	// Connection 0: three 5-byte records A→B (16 bytes each in the ring:
	// header and body padded to 8), one 20-byte record B→A (8 + 24).
	for range 3 {
		if err := ca[0].Send([]byte("hello")); err != nil {
			t.Fatal(err)
		}
	}
	if err := cb[0].Send([]byte("twenty bytes exactly")); err != nil {
		t.Fatal(err)
	}
	// Connection 1: closed by its dialler only. Connection 2: by both,
	// so its pair is freed and it is not listed.
	ca[1].Close()
	ca[2].Close()
	cb[2].Close()
	waitFreed(t, ca[2])

	seg := inspectOne(t, dir)
	if seg.Addr != [2]netip.Addr{addrA, addrB} {
		t.Fatalf("segment sides %v, want [%v %v]", seg.Addr, addrA, addrB)
	}
	if len(seg.Conns) != 2 {
		t.Fatalf("Inspect lists %d connections, want 2: %+v", len(seg.Conns), seg.Conns)
	}
	c0, c1 := seg.Conns[0], seg.Conns[1]
	if c0.Dialer != 0 || c0.ID != ca[0].key.id || c0.RingSize != MinRingSize || c0.State() != "open" {
		t.Fatalf("connection 0: %+v, state %q", c0, c0.State())
	}
	if c0.Occupancy != [2]int{48, 32} || c0.Records != [2]int{3, 1} || c0.DMA != [2]bool{} {
		t.Fatalf("connection 0: occupancy %v in %v records, DMA %v; want [48 32] in [3 1], no DMA", c0.Occupancy, c0.Records, c0.DMA)
	}
	if c1.ID != ca[1].key.id || c1.State() != "closing (side 0 closed)" || c1.Occupancy != [2]int{0, 0} {
		t.Fatalf("connection 1: %+v, state %q", c1, c1.State())
	}
	if seg.SlabUsed != [2]int64{4 * MinRingSize, 0} {
		t.Fatalf("slab used %v, want [%d 0]", seg.SlabUsed, 4*MinRingSize)
	}
	// Reading the records makes them leave the occupancy once the
	// consumer publishes its tail (it does on finding the ring empty).
	buf := make([]byte, 64)
	for range 3 {
		if _, err := cb[0].Recv(buf); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cb[0].PeekNoWait(); err != ErrWouldBlock {
		t.Fatalf("PeekNoWait on a drained ring: %v", err)
	}
	if got := inspectOne(t, dir).Conns[0].Occupancy; got != [2]int{0, 32} {
		t.Fatalf("occupancy after reading A's records: %v, want [0 32]", got)
	}
}

// waitFreed waits until the dialler of c has freed its pair.
func waitFreed(t *testing.T, c *Conn) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Microsecond) {
		c.peer.mu.Lock()
		freed := c.forgotten && c.closePosted
		c.peer.mu.Unlock()
		if freed {
			return
		}
		if time.Now().After(end) {
			t.Fatal("the pair was not freed after both sides closed")
		}
	}
}

// TestInspectSurvivesGarbage reads segments whose header is valid and
// everything else random bytes: errors and -1s are fine, a panic, a hang
// or a write is not (the memfd is sealed read-only to catch writes).
func TestInspectSurvivesGarbage(t *testing.T) {
	l, err := makeLayout(params{ctlRingSize: minCtlRing, maxConns: 64, slabSize: slabAlign})
	if err != nil {
		t.Fatal(err)
	}
	img := make([]byte, l.size)
	for seed := range uint64(300) {
		r := rand.New(rand.NewPCG(seed, 1))
		for i := range img {
			img[i] = byte(r.Uint32())
		}
		clear(img[:pageSize])
		l.writeHeader(unsafe.Pointer(&img[0]))
		if seed%3 == 0 {
			// Plausible connection entries: open, a small ring, a
			// block inside the slab, so that the rings get walked.
			// The slab: words that look like headers (kinds 0–3,
			// bodies under 4 KiB), so the walks go some way.
			for o := l.slab[0]; o < l.slab[0]+l.slabSize; o += 8 {
				putU64(img[o:], r.Uint64()&0x3_0000_0fff)
			}
			for id := range uint64(l.maxConns) {
				pair := img[l.conns[0]+id*2*ctlBlockSize:]
				size := uint64(MinRingSize) << (id % 3)
				putU64(pair[offConnBlock:], (id%4)*2*size)
				putU64(pair[offConnInfo:], size|infoOpen)
			}
		}
		fd, err := unix.MemfdCreate("inspect-garbage", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := unix.Pwrite(fd, img, 0); err != nil {
			t.Fatal(err)
		}
		unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_WRITE|unix.F_SEAL_SHRINK|unix.F_SEAL_GROW)
		si := inspectSegment(fd, int64(l.size))
		unix.Close(fd)
		for _, c := range si.Conns {
			if l.checkRingPair(c.ID, c.Block, uint64(c.RingSize)) != nil {
				t.Fatalf("seed %d: listed a pair outside the layout: %+v", seed, c)
			}
			for s := range 2 {
				if c.Occupancy[s] < -1 || c.Occupancy[s] > c.RingSize {
					t.Fatalf("seed %d: occupancy %d of a %d-byte ring", seed, c.Occupancy[s], c.RingSize)
				}
			}
		}
	}
}

func putU64(b []byte, v uint64) {
	for i := range 8 {
		b[i] = byte(v >> (8 * i))
	}
}
