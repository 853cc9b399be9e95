package fabric

import (
	"bytes"
	"errors"
	"testing"
	"unsafe"
)

// testRing maps a fresh ring of size bytes in a memfd, as a peer segment
// would hold it.
func testRing(t testing.TB, size int) ringMem {
	t.Helper()
	total := ctlBlockSize + size
	fd, err := newSealedMemfd("ring-test", int64(total))
	if err != nil {
		t.Fatal(err)
	}
	p, err := mapShared(fd, uintptr(total))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unmap(p, uintptr(total)); closeFd(fd) })
	return ringMem{ctl: p, data: unsafe.Add(p, ctlBlockSize), size: uint64(size)}
}

// fill writes a pattern that depends on the record's sequence number.
func fill(b []byte, seq int) {
	for i := range b {
		b[i] = byte(seq*7 + i)
	}
}

func TestRingWrapsAtEveryRecordSize(t *testing.T) {
	const size = 4096
	m := testRing(t, size)
	p, c := newProducer(m), newConsumer(m)
	want := make([]byte, size)
	seq, got := 0, 0
	for n := 1; n <= MaxRecord(size); n++ {
		// Three records of each size, so that every size lands at many
		// offsets and crosses the end of the lap.
		for k := 0; k < 3; k++ {
			for {
				buf, ok, err := p.tryReserve(n)
				if err != nil {
					t.Fatalf("reserve %d: %v", n, err)
				}
				if ok {
					fill(buf, seq)
					p.commit(n, kindData)
					seq++
					break
				}
				// Full: drain everything, checking order and contents.
				got = drain(t, &c, got, want)
			}
		}
	}
	got = drain(t, &c, got, want)
	if got != seq {
		t.Fatalf("received %d records, sent %d", got, seq)
	}
	if p.head < 100*size {
		t.Fatalf("only %d bytes went through; the test did not wrap enough", p.head)
	}
}

func drain(t *testing.T, c *consumer, got int, want []byte) int {
	t.Helper()
	for {
		kind, body, err := c.peek()
		if err != nil {
			t.Fatalf("record %d: %v", got, err)
		}
		if kind == 0 {
			c.idle(true)
			return got
		}
		w := want[:len(body)]
		fill(w, got)
		if kind != kindData || !bytes.Equal(body, w) {
			t.Fatalf("record %d: kind %d, %d bytes, contents differ", got, kind, len(body))
		}
		c.release()
		got++
	}
}

func TestRingRefusesRecordLargerThanMaxRecord(t *testing.T) {
	m := testRing(t, 4096)
	p := newProducer(m)
	for _, n := range []int{MaxRecord(4096) + 1, 4096, 1 << 20} {
		if _, _, err := p.tryReserve(n); !errors.Is(err, ErrRecordTooLarge) {
			t.Errorf("reserve(%d) = %v, want ErrRecordTooLarge", n, err)
		}
	}
}

func TestRingMaxRecordFitsFromAnyOffset(t *testing.T) {
	const size = 4096
	m := testRing(t, size)
	want := make([]byte, size)
	for off := uint64(0); off < size; off += 8 {
		// Start both halves at off, as if earlier records had brought them there.
		clear(m.bytes(0, size))
		m.reset()
		p, c := newProducer(m), newConsumer(m)
		p.head, p.tailSeen, c.tail, c.pubTail = size+off, size+off, size+off, size+off
		*m.ctl64(offTail) = size + off
		buf, ok, err := p.tryReserve(MaxRecord(size))
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			drain(t, &c, 0, want) // consumes the skip record, publishes the tail
			if buf, ok, err = p.tryReserve(MaxRecord(size)); !ok || err != nil {
				t.Fatalf("offset %d: max record after the skip: ok=%v err=%v", off, ok, err)
			}
		}
		fill(buf, 0)
		p.commit(MaxRecord(size), kindData)
		if got := drain(t, &c, 0, want); got != 1 {
			t.Fatalf("offset %d: received %d records, want 1", off, got)
		}
	}
}

func TestRingRejectsCorruptHeaders(t *testing.T) {
	cases := []struct {
		name string
		hdr  uint64
	}{
		{"unknown kind", 5<<32 | 8},
		{"high bits set", 1<<40 | kindData<<32 | 8},
		{"length past the end", kindData<<32 | 4096},
		{"skip of wrong length", kindSkip<<32 | 16},
		{"skip covering a whole lap", kindSkip<<32 | (4096 - 8)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := testRing(t, 4096)
			c := newConsumer(m)
			*m.u64(0) = tc.hdr
			if _, _, err := c.peek(); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("peek = %v, want ErrCorrupt", err)
			}
		})
	}
}

func TestRingRejectsTailOutsideProducedRange(t *testing.T) {
	m := testRing(t, 4096)
	p := newProducer(m)
	for i := 0; i < 10; i++ {
		if _, ok, _ := p.tryReserve(100); ok {
			p.commit(100, kindData)
		}
	}
	*m.ctl64(offTail) = p.head + 8 // the consumer claims more than was produced
	if err := p.refreshTail(); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("refreshTail = %v, want ErrCorrupt", err)
	}
}

// FuzzConsumerOnGarbage fills a ring with whatever the fuzzer gives (as a
// hostile producer could) and consumes it: every record returned must lie
// inside the ring, and the consumer must stop with a record, an empty ring
// or ErrCorrupt, never panic or loop.
func FuzzConsumerOnGarbage(f *testing.F) {
	f.Add([]byte{8, 0, 0, 0, 1, 0, 0, 0, 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'}, uint16(0))
	f.Add([]byte{0xf0, 0x0f, 0, 0, 2, 0, 0, 0}, uint16(8))
	f.Fuzz(func(t *testing.T, garbage []byte, start uint16) {
		const size = MinRingSize
		m := testRing(t, size)
		data := m.bytes(0, size)
		for i := range data {
			if len(garbage) > 0 {
				data[i] = garbage[i%len(garbage)]
			}
		}
		c := newConsumer(m)
		c.tail = uint64(start) &^ 7 % size
		c.pubTail = c.tail
		for range 2 * size / recHdr {
			kind, body, err := c.peek()
			if err != nil {
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("peek error %v, want ErrCorrupt", err)
				}
				return
			}
			if kind == 0 {
				return
			}
			lo := uintptr(unsafe.Pointer(unsafe.SliceData(body))) - uintptr(m.data)
			if len(body) > 0 && (lo >= size || lo+uintptr(len(body)) > size) {
				t.Fatalf("record [%d, +%d) outside the %d-byte ring", lo, len(body), size)
			}
			c.release()
		}
	})
}
