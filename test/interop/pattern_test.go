package interop

import (
	"bytes"
	"encoding/hex"
	"io"
	"testing"
)

// SplitMix64 seeded with 0 starts e220a8397b1dcdaf, 6e789e6aa1b965f4:
// examples/httpd's /bytes test pins the same bytes.
func TestPatternIsSplitMix64LittleEndian(t *testing.T) {
	got, _ := io.ReadAll(&Pattern{N: 13})
	want, _ := hex.DecodeString("afcd1d7b39a820e2f465b9a16a")
	if !bytes.Equal(got, want) {
		t.Fatalf("first 13 bytes %x, want %x", got, want)
	}
}

func TestPatternSameBytesWhateverTheReadSizes(t *testing.T) {
	const n = 100003
	whole, _ := io.ReadAll(&Pattern{N: n})
	p := &Pattern{N: n}
	var pieces []byte
	for i := 1; ; i = i%13 + 1 { // reads of 1..13 bytes: every alignment
		b := make([]byte, i)
		k, err := p.Read(b)
		pieces = append(pieces, b[:k]...)
		if err == io.EOF {
			break
		}
	}
	if len(whole) != n || !bytes.Equal(pieces, whole) {
		t.Fatalf("read in pieces: %d bytes, equal %v; want the %d bytes of one read", len(pieces), bytes.Equal(pieces, whole), n)
	}
}

func TestSinkMatchesOnlyTheExactStream(t *testing.T) {
	s := NewSink()
	io.Copy(s, &Pattern{N: 1 << 20})
	if !s.Matches(1 << 20) {
		t.Fatal("sink of the first MiB does not match PatternSum(1 MiB)")
	}
	if s.Matches(1<<20 - 1) {
		t.Fatal("sink of 1 MiB matches 1 MiB - 1")
	}
	moved := NewSink()
	b, _ := io.ReadAll(&Pattern{N: 1 << 20})
	copy(b[8:16], b[0:8]) // one word repeated
	moved.Write(b)
	if moved.Matches(1 << 20) {
		t.Fatal("a repeated word went unnoticed")
	}
}
