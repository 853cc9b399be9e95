package tcp

import (
	"bytes"
	"testing"
)

func TestRecvBufOneByteAllocatesTheSmallestRing(t *testing.T) {
	b := recvBuf{size: 256 << 10}
	b.put(0, []byte{'C'})
	b.n++
	if len(b.buf) != minRecvAlloc {
		t.Fatalf("ring of %d bytes for one byte in a 256 KiB window, want %d", len(b.buf), minRecvAlloc)
	}
	got := make([]byte, 4)
	if n := b.read(got); n != 1 || got[0] != 'C' {
		t.Fatalf("read %q", got[:n])
	}
}

// Bytes placed out of order keep their offsets from the head when a later
// segment makes the ring grow, and the stream reads back whole.
func TestRecvBufGrowsAroundOutOfOrderBytesAndWrappedHead(t *testing.T) {
	b := recvBuf{size: 64 << 10}
	stream := make([]byte, 20000)
	for i := range stream {
		stream[i] = byte(i*31 + i>>8)
	}
	// Move the head to near the end of the first 4 KiB ring.
	b.put(0, stream[:4000])
	b.n += 4000
	b.discard(3990)
	rest := stream[3990:]
	// 10 readable bytes at 3990..4000 of the ring; now bytes 100..200
	// beyond them arrive early (wrapping), then 6000 more in order.
	b.put(100, rest[10+100:10+200])
	b.put(0, rest[10:10+100])
	b.n += 200
	if len(b.buf) != minRecvAlloc {
		t.Fatalf("ring of %d bytes before it needed to grow", len(b.buf))
	}
	b.put(0, rest[210:210+6000])
	b.n += 6000
	if len(b.buf) != 8<<10 {
		t.Fatalf("ring of %d bytes for 6210 held, want 8 KiB", len(b.buf))
	}
	got := make([]byte, 7000)
	n := b.read(got)
	if !bytes.Equal(got[:n], rest[:6210]) {
		t.Fatalf("read %d bytes that differ from the stream", n)
	}
}

func TestRecvBufNeverAllocatesBeyondTheWindow(t *testing.T) {
	b := recvBuf{size: 65535}
	b.put(0, make([]byte, 65535))
	if len(b.buf) != 65535 {
		t.Fatalf("ring of %d bytes for a 65535-byte window", len(b.buf))
	}
}
