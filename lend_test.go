package ultcp

import (
	"bytes"
	"io"
	"testing"
	"time"
)

// Peek lends the payload of the ring record itself: nothing is copied into
// the engine's buffer, and Discard walks through it. (The data arrives
// while Peek polls the ring; data that arrives while nobody reads is taken
// into the receive buffer by the progress engine, so that it is
// acknowledged.)
func TestPeekLendsTheRingRecordAndDiscardConsumesIt(t *testing.T) {
	c, s := pair(t, func(cfg *Config) { cfg.SpinBudget = 5 * time.Second })
	go func() {
		time.Sleep(20 * time.Millisecond)
		s.Write([]byte("hello world"))
	}()
	c.SetDeadline(deadline())
	b, err := c.Peek()
	if err != nil || string(b) != "hello world" {
		t.Fatalf("Peek: %q, %v", b, err)
	}
	c.mu.Lock()
	ring, buffered := c.loan == loanRing, c.tc.Readable()
	c.mu.Unlock()
	if !ring || buffered != 0 {
		t.Fatalf("view lent from the ring: %v, %d bytes copied into the receive buffer; want true, 0", ring, buffered)
	}
	if n, _ := c.Discard(6); n != 6 {
		t.Fatalf("Discard(6) = %d", n)
	}
	if b, _ := c.Peek(); string(b) != "world" {
		t.Fatalf("Peek after Discard(6): %q", b)
	}
	got := make([]byte, 10)
	if n, err := c.Read(got); err != nil || string(got[:n]) != "world" {
		t.Fatalf("Read after Peek: %q, %v", got[:n], err)
	}
}

// A Write that must wait for the peer's window while a Peek view is out
// waits for the view to be given back (the ACKs it needs are queued
// behind the lent record, and releasing the record would let the peer
// overwrite the view): the view stays intact until Discard, and then the
// Write completes.
func TestWriteWaitingForWindowWaitsForThePeekView(t *testing.T) {
	c, s := pair(t, func(cfg *Config) {
		cfg.RecvBuf, cfg.MaxRecvBuf = 64<<10, 64<<10
		cfg.SpinBudget = 5 * time.Second // Peek polls: the engine never takes the record in
	})
	go func() {
		time.Sleep(20 * time.Millisecond)
		s.Write([]byte("lent bytes"))
	}()
	c.SetDeadline(deadline())
	b, err := c.Peek()
	if err != nil || string(b) != "lent bytes" {
		t.Fatalf("Peek: %q, %v", b, err)
	}
	c.mu.Lock()
	ring := c.loan == loanRing
	c.mu.Unlock()
	if !ring {
		t.Fatal("the view is not lent from the ring")
	}
	data := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB: 16 windows
	done := make(chan error, 1)
	go func() {
		s.SetDeadline(deadline())
		_, err := io.CopyN(io.Discard, s, int64(len(data)))
		done <- err
	}()
	wrote := make(chan error, 1)
	go func() {
		_, err := c.Write(data)
		wrote <- err
	}()
	select {
	case err := <-wrote:
		t.Fatalf("the write finished (%v) while the view was out: its window needs the ACKs behind the view", err)
	case <-time.After(100 * time.Millisecond):
	}
	if string(b) != "lent bytes" {
		t.Fatalf("the view changed under its reader: %q", b)
	}
	if n, err := c.Discard(len(b)); n != len(b) || err != nil {
		t.Fatalf("Discard: %d, %v", n, err)
	}
	if err := <-wrote; err != nil {
		t.Fatalf("the write after the view came back: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// io.Copy from a Conn goes through WriteTo, which hands the destination
// views of the ring.
func TestIOCopyUsesWriteTo(t *testing.T) {
	c, s := pair(t)
	msg := bytes.Repeat([]byte("x"), 300000)
	go func() {
		s.Write(msg)
		s.Close()
	}()
	var dst bytes.Buffer
	c.SetDeadline(time.Now().Add(10 * time.Second))
	n, err := io.Copy(&dst, c)
	if err != nil || n != int64(len(msg)) || !bytes.Equal(dst.Bytes(), msg) {
		t.Fatalf("io.Copy: %d bytes, %v", n, err)
	}
}

// A DMA record larger than the reader's buffer is pulled once into the
// connection's scratch buffer and read from there in order.
func TestSmallReadsOfALargeDMAWrite(t *testing.T) {
	c, s := pair(t, func(cfg *Config) { cfg.DMAThreshold = 64 << 10 })
	msg := make([]byte, 1<<20)
	for i := range msg {
		msg[i] = byte(i * 31 / 7)
	}
	go s.Write(msg)
	c.SetDeadline(deadline())
	got := make([]byte, 0, len(msg))
	buf := make([]byte, 1000)
	for len(got) < len(msg) {
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("after %d bytes: %v", len(got), err)
		}
		got = append(got, buf[:n]...)
	}
	if !bytes.Equal(got, msg) {
		t.Fatal("the stream read in 1000-byte pieces differs from the DMA write")
	}
	if st := s.s.Stats(); st.DMARecords == 0 {
		t.Fatal("the write did not go by DMA")
	}
}
