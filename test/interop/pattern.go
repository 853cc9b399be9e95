package interop

import (
	"crypto/sha256"
	"encoding/binary"
	"io"
	"sync/atomic"
)

// Pattern is the deterministic payload of the interop transfers: word k
// (bytes 8k..8k+7) is splitmix64(k), little endian, cut at N bytes.
// examples/httpd's /bytes route serves the same bytes. Each word depends on
// its position, so a lost, repeated or misplaced block of any size changes
// the SHA-256 of the stream (a short-period pattern would hide a block
// moved by a multiple of its period).
type Pattern struct {
	N   int64 // bytes in all
	off int64
}

// splitmix64 is Steele, Lea and Flood's SplitMix64 output function.
func splitmix64(k uint64) uint64 {
	z := k*0x9e3779b97f4a7c15 + 0x9e3779b97f4a7c15
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// Read implements io.Reader.
func (p *Pattern) Read(b []byte) (int, error) {
	if p.off >= p.N {
		return 0, io.EOF
	}
	if r := p.N - p.off; int64(len(b)) > r {
		b = b[:r]
	}
	n := 0
	// Unaligned start: finish the current word byte by byte.
	for ; n < len(b) && (p.off+int64(n))%8 != 0; n++ {
		b[n] = patternByte(p.off + int64(n))
	}
	for ; n+8 <= len(b); n += 8 {
		binary.LittleEndian.PutUint64(b[n:], splitmix64(uint64(p.off+int64(n))/8))
	}
	for ; n < len(b); n++ {
		b[n] = patternByte(p.off + int64(n))
	}
	p.off += int64(n)
	return n, nil
}

func patternByte(i int64) byte { return byte(splitmix64(uint64(i)/8) >> (8 * (uint64(i) % 8))) }

// PatternSum is the SHA-256 of the first n bytes of the pattern.
func PatternSum(n int64) [32]byte {
	h := sha256.New()
	io.CopyBuffer(h, &Pattern{N: n}, make([]byte, 256<<10))
	var s [32]byte
	h.Sum(s[:0])
	return s
}

// Sink counts and hashes what is written to it. Its count may be read
// (Count) while a process writes to it.
type Sink struct {
	N int64 // bytes written; read it only after the writer is done
	n atomic.Int64
	h interface {
		io.Writer
		Sum([]byte) []byte
	}
}

// Count is the bytes written so far, safe while a writer runs.
func (s *Sink) Count() int64 { return s.n.Load() }

// NewSink returns an empty sink.
func NewSink() *Sink { return &Sink{h: sha256.New()} }

// Write implements io.Writer.
func (s *Sink) Write(b []byte) (int, error) {
	s.N += int64(len(b))
	s.n.Add(int64(len(b)))
	return s.h.Write(b)
}

// Sum is the SHA-256 of what was written.
func (s *Sink) Sum() [32]byte {
	var r [32]byte
	s.h.Sum(r[:0])
	return r
}

// Matches says whether the sink received exactly the first n pattern bytes.
func (s *Sink) Matches(n int64) bool { return s.N == n && s.Sum() == PatternSum(n) }
