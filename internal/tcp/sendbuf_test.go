package tcp

import (
	"bytes"
	"testing"
)

// The send ring's memory grows with what it holds (buffer.go).

// seqBytes returns n bytes numbered from seq: the byte of sequence s is
// byte(s).
func seqBytes(seq uint32, n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(seq + uint32(i))
	}
	return p
}

// held returns the bytes the ring holds, in order, read through slice as
// the output path reads them.
func held(b *sendBuf) []byte {
	var r []byte
	for s := b.seq; s != b.end(); {
		p := b.slice(s, b.n)
		if len(p) == 0 {
			break
		}
		r = append(r, p...)
		s += uint32(len(p))
	}
	return r
}

func TestSendBufSmallWriteTakesMinimumAllocation(t *testing.T) {
	b := sendBuf{seq: 1, size: 1 << 20}
	if n := b.write(seqBytes(1, 300)); n != 300 || len(b.buf) != minSendAlloc {
		t.Fatalf("wrote %d into a ring of %d bytes, want 300 into %d", n, len(b.buf), minSendAlloc)
	}
}

// Growing a ring whose bytes wrap around its end keeps them in order.
func TestSendBufGrowsAcrossWrappedHead(t *testing.T) {
	b := sendBuf{seq: 1, size: 1 << 20}
	b.write(seqBytes(1, 3000))
	b.release(2001) // head at 2000 of 4096
	b.write(seqBytes(3001, 3000))
	if len(b.buf) != 4096 || b.head != 2000 {
		t.Fatalf("ring of %d with head %d, want 4096 and 2000 (the write wrapped)", len(b.buf), b.head)
	}
	b.write(seqBytes(6001, 2000)) // 6000 held: grows to 8192
	if len(b.buf) != 8192 || b.n != 6000 {
		t.Fatalf("ring of %d holding %d, want 8192 holding 6000", len(b.buf), b.n)
	}
	if got := held(&b); !bytes.Equal(got, seqBytes(2001, 6000)) {
		t.Fatal("bytes out of order after growing across the wrap")
	}
}

// The ring never grows beyond the buffer's capacity, which need not be a
// power of two.
func TestSendBufNeverBeyondCapacity(t *testing.T) {
	b := sendBuf{seq: 1, size: 10000}
	if n := b.write(seqBytes(1, 20000)); n != 10000 || len(b.buf) != 10000 {
		t.Fatalf("wrote %d into a ring of %d, want 10000 into 10000", n, len(b.buf))
	}
	b.release(5001)
	if n := b.write(seqBytes(10001, 7000)); n != 5000 || len(b.buf) != 10000 {
		t.Fatalf("wrote %d into a ring of %d, want 5000 into 10000", n, len(b.buf))
	}
	if got := held(&b); !bytes.Equal(got, seqBytes(5001, 10000)) {
		t.Fatal("bytes out of order in a full ring")
	}
}
