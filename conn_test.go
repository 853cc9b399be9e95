package ultcp

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"
)

// pair returns a connected client and server Conn between two stacks of
// one process.
func pair(t testing.TB, tweak ...func(*Config)) (client, server *Conn) {
	t.Helper()
	dir := testDir(t)
	a, b := newStack(t, dir, addrA, tweak...), newStack(t, dir, addrB, tweak...)
	l, err := b.ListenTCP("tcp", ":80")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	acc := make(chan *Conn, 1)
	go func() {
		c, err := l.AcceptTCP()
		if err != nil {
			t.Error(err)
		}
		acc <- c
	}()
	d := Dialer{Stack: a, Timeout: 10 * time.Second}
	client, err = d.DialTCP(context.Background(), "tcp", "10.77.0.2:80")
	if err != nil {
		t.Fatal(err)
	}
	server = <-acc
	if server == nil {
		t.FailNow()
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

func TestDialWithoutListenerIsRefused(t *testing.T) {
	dir := testDir(t)
	a := newStack(t, dir, addrA)
	b := newStack(t, dir, addrB)
	_, err := a.Dial("tcp", "10.77.0.2:81")
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial: %v, want ECONNREFUSED", err)
	}
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "dial" || oe.Net != "tcp" || oe.Addr.String() != "10.77.0.2:81" {
		t.Fatalf("error %#v is not the *net.OpError package net gives", err)
	}
	if st := b.Stats(); st.NoListener != 1 || st.ResetsOut != 1 {
		t.Fatalf("server counted %d SYNs for no listener and %d resets, want 1 and 1", st.NoListener, st.ResetsOut)
	}
	if st := a.Stats(); st.AttemptFails != 1 || st.Established != 0 {
		t.Fatalf("client counted %d failed attempts and %d open conns, want 1 and 0", st.AttemptFails, st.Established)
	}
}

func TestDialToAbsentNodeIsUnreachable(t *testing.T) {
	a := newStack(t, testDir(t), addrA)
	_, err := a.Dial("tcp", "10.77.0.9:80")
	if !errors.Is(err, syscall.EHOSTUNREACH) {
		t.Fatalf("dial: %v, want EHOSTUNREACH", err)
	}
}

func TestReadDeadlineTimesOut(t *testing.T) {
	c, _ := pair(t)
	c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	start := time.Now()
	_, err := c.Read(make([]byte, 10))
	var ne net.Error
	if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read: %v, want a timeout wrapping os.ErrDeadlineExceeded", err)
	}
	if el := time.Since(start); el < 20*time.Millisecond || el > 2*time.Second {
		t.Fatalf("timed out after %v, want about 20ms", el)
	}
	// The connection survives a timeout.
	c.SetReadDeadline(time.Time{})
}

func TestDeadlineMovedWhileReadIsBlocked(t *testing.T) {
	c, _ := pair(t)
	done := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 10))
		done <- err
	}()
	time.Sleep(30 * time.Millisecond)
	c.SetReadDeadline(time.Now())
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("read: %v, want a timeout", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a deadline set in the past did not unblock Read")
	}
}

func TestWriteDeadlineTimesOutWhenPeerDoesNotRead(t *testing.T) {
	c, _ := pair(t, func(cfg *Config) { cfg.RecvBuf, cfg.MaxRecvBuf = 64<<10, 64<<10 })
	c.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
	buf := make([]byte, 32<<10)
	var err error
	total := 0
	for i := 0; i < 100 && err == nil; i++ {
		var n int
		n, err = c.Write(buf)
		total += n
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("write after %d bytes: %v, want a timeout (the peer's window is full)", total, err)
	}
}

func TestCloseUnblocksReadAndWrite(t *testing.T) {
	c, _ := pair(t, func(cfg *Config) { cfg.RecvBuf, cfg.MaxRecvBuf = 64<<10, 64<<10 })
	rd, wr := make(chan error, 1), make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 10))
		rd <- err
	}()
	go func() {
		buf := make([]byte, 32<<10)
		for {
			if _, err := c.Write(buf); err != nil {
				wr <- err
				return
			}
		}
	}()
	time.Sleep(50 * time.Millisecond)
	c.Close()
	for name, ch := range map[string]chan error{"Read": rd, "Write": wr} {
		select {
		case err := <-ch:
			if !errors.Is(err, net.ErrClosed) {
				t.Fatalf("%s after Close: %v, want net.ErrClosed", name, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("Close did not unblock %s", name)
		}
	}
	if err := c.Close(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("second Close: %v, want net.ErrClosed", err)
	}
}

func TestCloseWriteHalfClosesTheConnection(t *testing.T) {
	c, s := pair(t)
	if _, err := c.Write([]byte("request")); err != nil {
		t.Fatal(err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("x")); !errors.Is(err, syscall.EPIPE) {
		t.Fatalf("write after CloseWrite: %v, want EPIPE", err)
	}
	s.SetDeadline(deadline())
	got, err := io.ReadAll(s)
	if err != nil || string(got) != "request" {
		t.Fatalf("server read %q, %v; want the request then EOF", got, err)
	}
	// The other direction still works.
	if _, err := s.Write([]byte("response")); err != nil {
		t.Fatal(err)
	}
	s.Close()
	c.SetDeadline(deadline())
	got, err = io.ReadAll(c)
	if err != nil || string(got) != "response" {
		t.Fatalf("client read %q, %v; want the response then EOF", got, err)
	}
}

func TestPeerCloseGivesEOFAfterData(t *testing.T) {
	c, s := pair(t)
	s.Write([]byte("bye"))
	s.Close()
	c.SetDeadline(deadline())
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "bye" {
		t.Fatalf("read %q, %v; want \"bye\" then EOF", got, err)
	}
}

func TestCloseWithUnreadDataResetsThePeer(t *testing.T) {
	c, s := pair(t)
	c.Write([]byte("unread"))
	s.SetDeadline(deadline())
	// The server never reads: the progress engine takes the bytes into
	// the receive buffer once the connection has been idle for a grace
	// period. Then close without reading them.
	for end := time.Now().Add(5 * time.Second); s.Info().Readable == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("the progress engine never processed the data of an idle connection")
		}
	}
	s.Close()
	c.SetDeadline(deadline())
	_, err := c.Read(make([]byte, 10))
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read: %v, want ECONNRESET", err)
	}
}

// bulk sends n bytes of pattern from c to s in writes of size w and checks
// the SHA-256 of what arrives.
func bulk(t *testing.T, c, s *Conn, n, w int) {
	t.Helper()
	src := make([]byte, w)
	for i := range src {
		src[i] = byte(i*7 + i>>8)
	}
	want := sha256.New()
	errc := make(chan error, 1)
	go func() {
		c.SetWriteDeadline(time.Now().Add(60 * time.Second))
		for sent := 0; sent < n; {
			k := min(w, n-sent)
			if _, err := c.Write(src[:k]); err != nil {
				errc <- err
				return
			}
			sent += k
		}
		errc <- c.CloseWrite()
	}()
	for sent := 0; sent < n; {
		k := min(w, n-sent)
		want.Write(src[:k])
		sent += k
	}
	got := sha256.New()
	s.SetReadDeadline(time.Now().Add(60 * time.Second))
	m, err := io.Copy(got, s)
	if err != nil || m != int64(n) {
		t.Fatalf("received %d bytes, %v; want %d", m, err, n)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if string(got.Sum(nil)) != string(want.Sum(nil)) {
		t.Fatal("SHA-256 of the received stream differs")
	}
}

func TestBulkPIO(t *testing.T) {
	c, s := pair(t, func(cfg *Config) { cfg.DMAThreshold = -1 })
	bulk(t, c, s, 64<<20, 100_000)
	if st := c.s.Stats(); st.DMARecords != 0 {
		t.Fatalf("%d DMA records with DMA off", st.DMARecords)
	}
}

func TestBulkDMA(t *testing.T) {
	c, s := pair(t, func(cfg *Config) { cfg.DMAThreshold = 64 << 10 })
	bulk(t, c, s, 64<<20, 1<<20)
	if st := c.s.Stats(); st.DMARecords == 0 {
		t.Fatal("no DMA records sent for 1 MiB writes")
	}
}

// CloseRead ends reading locally; writing goes on.
func TestCloseReadEndsReadingOnly(t *testing.T) {
	c, s := pair(t)
	if err := c.CloseRead(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("read after CloseRead: %v, want io.EOF", err)
	}
	if _, err := c.Write([]byte("still")); err != nil {
		t.Fatalf("write after CloseRead: %v", err)
	}
	s.SetDeadline(deadline())
	got := make([]byte, 5)
	if _, err := io.ReadFull(s, got); err != nil || string(got) != "still" {
		t.Fatalf("peer read %q, %v", got, err)
	}
}

// A Read served straight from the ring (InputDirect) leaves the engine
// nothing to send: the segment's own input sent what was due, and the
// bytes counted as read then. readLocked relies on it to skip an Output.
func TestDirectReadLeavesNothingToOutput(t *testing.T) {
	c, s := pair(t, func(cfg *Config) { cfg.SpinBudget = 5 * time.Second })
	c.SetDeadline(deadline())
	s.SetDeadline(deadline())
	buf := make([]byte, 100)
	for i := range 50 {
		msg := bytes.Repeat([]byte{byte(i)}, 1+i*37)
		go s.Write(msg)
		got := 0
		for got < len(msg) {
			n, err := c.Read(buf[:min(len(buf), len(msg)-got)])
			if err != nil {
				t.Fatal(err)
			}
			got += n
			c.mu.Lock()
			out := c.tc.Output(c.s.now(), nil)
			c.mu.Unlock()
			if len(out) != 0 {
				t.Fatalf("message %d: after a read, Output has %d segments to send (first %+v)", i, len(out), out[0].Hdr)
			}
		}
	}
}

// Segments on the fabric carry no RFC 7323 timestamps (tcpConfig): a data
// segment's headers are the bare 20-byte IPv4 and 20-byte TCP headers.
func TestFabricDataSegmentsCarryNoOptions(t *testing.T) {
	var mu sync.Mutex
	var hdrLens []int
	c, s := pair(t, func(cfg *Config) {
		cfg.Capture = func(out bool, headers, payload []byte) {
			if out && len(payload) > 0 {
				mu.Lock()
				hdrLens = append(hdrLens, len(headers))
				mu.Unlock()
			}
		}
	})
	c.SetDeadline(deadline())
	s.SetDeadline(deadline())
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(s, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(hdrLens) == 0 || hdrLens[0] != 40 {
		t.Fatalf("data segment header lengths %v, want [40]", hdrLens)
	}
}
