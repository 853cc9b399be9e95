package ultcp

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"hash"
	"io"
	"testing"
	"time"
)

// A view lent to a reader running without the connection's lock (WriteTo
// handing it to w.Write, or Peek until Discard) must not be given back to
// the ring under it. A Write on the same connection that waits for the
// peer's window is where that could happen: the ACK it waits for is
// queued behind the lent record. These tests run a zero-copy reader and a
// bulk PIO writer on both connections at once and compare SHA-256 digests
// of what was sent and received.

// lendRaceSize is the volume each way: a few hundred windows, so the
// writers wait for window (the dangerous moment) hundreds of times.
const lendRaceSize = 16 << 20

func lendRacePair(t *testing.T) (*Conn, *Conn) {
	return pair(t, func(cfg *Config) {
		cfg.DMAThreshold = -1 // PIO only: views of the ring itself
		// A window larger than the ring: the peer refills released ring
		// space at once, as a bulk transfer with an auto-tuned window does.
		cfg.RingSize = 128 << 10
		cfg.RecvBuf, cfg.MaxRecvBuf = 256<<10, 256<<10
	})
}

// pattern is a deterministic, non-repeating-looking byte stream.
func pattern(seed byte, n int) []byte {
	b := make([]byte, n)
	x := uint32(seed) + 1
	for i := range b {
		x = x*1664525 + 1013904223
		b[i] = byte(x >> 24)
	}
	return b
}

// slowHash hashes what it is given and, now and then, lingers over the
// view (as a slow destination would), so that a view released under it
// shows in the digest.
type slowHash struct {
	h hash.Hash
	n int
}

func (s *slowHash) Write(p []byte) (int, error) {
	s.n++
	if s.n%8 == 0 {
		time.Sleep(50 * time.Microsecond)
	}
	return s.h.Write(p)
}

// runLendRace sends pattern(seed) both ways with Write while recv drains
// each connection into a hash, and fails if a digest differs.
func runLendRace(t *testing.T, recv func(c *Conn, dst io.Writer) error) {
	c, s := lendRacePair(t)
	c.SetDeadline(time.Now().Add(20 * time.Second))
	s.SetDeadline(time.Now().Add(20 * time.Second))
	type result struct {
		sum [32]byte
		err error
	}
	data := [2][]byte{pattern(1, lendRaceSize), pattern(2, lendRaceSize)}
	conns := [2]*Conn{c, s}
	got := make(chan result, 2)
	werr := make(chan error, 2)
	for i, conn := range conns {
		go func() {
			src := data[i]
			for len(src) > 0 {
				k := min(len(src), 32<<10)
				if _, err := conn.Write(src[:k]); err != nil {
					werr <- err
					return
				}
				src = src[k:]
			}
			werr <- conn.CloseWrite()
		}()
		go func() {
			h := &slowHash{h: sha256.New()}
			err := recv(conn, h)
			var r result
			copy(r.sum[:], h.h.Sum(nil))
			r.err = err
			if err != nil {
				conn.Close() // unblocks the writers
			}
			got <- r
		}()
	}
	want := [2][32]byte{sha256.Sum256(data[0]), sha256.Sum256(data[1])}
	for range 2 {
		r := <-got
		if r.err != nil {
			t.Fatalf("receive: %v", r.err)
		}
		if r.sum != want[0] && r.sum != want[1] {
			t.Fatalf("received stream's SHA-256 %x matches neither sent stream: a lent view was overwritten", r.sum[:8])
		}
	}
	for range 2 {
		if err := <-werr; err != nil {
			t.Fatalf("write: %v", err)
		}
	}
}

func TestWriteToViewSurvivesConcurrentWriteWaitingForWindow(t *testing.T) {
	runLendRace(t, func(c *Conn, dst io.Writer) error {
		_, err := c.WriteTo(dst)
		return err
	})
}

func TestPeekViewSurvivesConcurrentWriteWaitingForWindow(t *testing.T) {
	runLendRace(t, func(c *Conn, dst io.Writer) error {
		for {
			b, err := c.Peek()
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return err
			}
			// Look at the view twice, with a pause, as a parser would.
			sum := bytes.Clone(b[:min(len(b), 16)])
			dst.Write(b)
			if !bytes.Equal(sum, b[:len(sum)]) {
				return errors.New("the Peek view changed before Discard")
			}
			if _, err := c.Discard(len(b)); err != nil {
				return err
			}
		}
	})
}

// io.Copy(b, a) and io.Copy(a, b) at once between two connections of
// ours, with bulk data both ways through them: each WriteTo hands its view
// to the other connection's Write, which must not wait for a view the
// other copy holds (writeView copies it away first), or the two would
// wait for each other forever.
func TestCrossedIOCopiesBetweenConnsDoNotDeadlock(t *testing.T) {
	c1, p1 := lendRacePair(t)
	p2, c2 := lendRacePair(t)
	for _, c := range []*Conn{c1, p1, p2, c2} {
		c.SetDeadline(time.Now().Add(20 * time.Second))
	}
	go func() { io.Copy(p2, p1); p2.CloseWrite() }()
	go func() { io.Copy(p1, p2); p1.CloseWrite() }()
	data := [2][]byte{pattern(3, lendRaceSize), pattern(4, lendRaceSize)}
	ends := [2][2]*Conn{{c1, c2}, {c2, c1}}
	errs := make(chan error, 4)
	for i, e := range ends {
		go func() {
			_, err := e[0].Write(data[i])
			if err == nil {
				err = e[0].CloseWrite()
			}
			errs <- err
		}()
		go func() {
			h := sha256.New()
			_, err := io.Copy(h, e[1])
			if err == nil && !bytes.Equal(h.Sum(nil), sha256Of(data[i])) {
				err = errors.New("the stream through the crossed copies differs")
			}
			errs <- err
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

func sha256Of(b []byte) []byte { s := sha256.Sum256(b); return s[:] }
