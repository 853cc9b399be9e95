package ultcp

import (
	"io"
	"net"
	"testing"
	"time"
)

// The paths where the stack reads a ring without arming it (a spinning
// Dial or Accept, a closed connection left to the grace check) must never
// strand a segment: each test here ends only if every byte and every
// close arrives, with no doorbell to help.

func TestClosedConnectionsFinishAtTheGraceChecks(t *testing.T) {
	dir := testDir(t)
	grace := func(c *Config) { c.Grace = 2 * time.Millisecond }
	a, b := newStack(t, dir, addrA, grace), newStack(t, dir, addrB, grace)
	l, err := b.Listen("tcp", ":80")
	if err != nil {
		t.Fatal(err)
	}
	const n = 50
	go func() {
		for range n {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("x"))
			c.Close()
		}
	}()
	for i := range n {
		c, err := a.Dial("tcp", "10.77.0.2:80")
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		c.SetDeadline(deadline())
		if b, err := io.ReadAll(c); err != nil || string(b) != "x" {
			t.Fatalf("conn %d read %q, %v; want x then EOF", i, b, err)
		}
		c.Close()
	}
	// Both sides closed every connection without arming its ring: the
	// grace checks alone must take each to its end.
	waitFor(t, "every connection of both stacks to finish", func() bool {
		sa, sb := a.Stats(), b.Stats()
		return sa.Closing == 0 && sb.Closing == 0 && sa.Established == 0 && sb.Established == 0
	})
}

func TestHandshakeForAnotherListenerCompletesWhileAcceptSpins(t *testing.T) {
	dir := testDir(t)
	a, b := newStack(t, dir, addrA), newStack(t, dir, addrB)
	l80, err := b.Listen("tcp", ":80")
	if err != nil {
		t.Fatal(err)
	}
	l81, err := b.Listen("tcp", ":81")
	if err != nil {
		t.Fatal(err)
	}
	// An Accept on :80 spins (and sleeps, and spins again) the whole
	// time: the CONNECT and SYN for :81 are read by it, unarmed, and the
	// handshake it makes for :81 must be armed for the engine.
	go l80.Accept()
	got := make(chan net.Conn, 1)
	go func() {
		time.Sleep(20 * time.Millisecond) // let the spin on :80 start first
		c, err := l81.Accept()
		if err == nil {
			got <- c
		}
	}()
	c, err := a.Dial("tcp", "10.77.0.2:81")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(deadline())
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-got:
		defer s.Close()
		s.SetDeadline(deadline())
		buf := make([]byte, 4)
		if _, err := io.ReadFull(s, buf); err != nil || string(buf) != "ping" {
			t.Fatalf("the :81 side read %q, %v", buf, err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Accept on :81 never returned")
	}
}

func TestDialAfterAcceptSleptIsTakenByTheEngine(t *testing.T) {
	dir := testDir(t)
	a, b := newStack(t, dir, addrA), newStack(t, dir, addrB)
	l, err := b.Listen("tcp", ":80")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			got <- c
		}
	}()
	// Well past the spin budget: Accept has released the control rings
	// and sleeps; the CONNECT must ring the doorbell.
	time.Sleep(50 * time.Millisecond)
	c, err := a.Dial("tcp", "10.77.0.2:80")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case s := <-got:
		s.Close()
	case <-time.After(10 * time.Second):
		t.Fatal("Accept never returned the connection")
	}
}

// Several goroutines accepting on one listener (a server's workers)
// while several dial: the handshake one Accept completes while it spins
// may be taken from the backlog by another. Every connection must arrive
// exactly once and carry its byte. (The race this once had, a spinning
// Accept reading a connection after handing it over, showed in
// bench/lb's TestBackendServesOverUltcp under -race, in about one run of
// five; this test has not reproduced it.)
func TestConcurrentAcceptsTakeEveryConnectionOnce(t *testing.T) {
	dir := testDir(t)
	a, b := newStack(t, dir, addrA), newStack(t, dir, addrB)
	l, err := b.Listen("tcp", ":80")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	const workers, dialers, each = 4, 4, 64
	got := make(chan byte, dialers*each)
	// Each worker hands a connection to a goroutine and goes straight
	// back to Accept: the workers spend their time there, racing each
	// other for the backlog.
	for range workers {
		go serveEach(l, func(c net.Conn) {
			c.SetDeadline(deadline())
			var p [1]byte
			if _, err := io.ReadFull(c, p[:]); err == nil {
				got <- p[0]
			}
			c.Close()
		})
	}
	errs := make(chan error, dialers)
	for d := range dialers {
		go func() {
			for i := range each {
				c, err := a.Dial("tcp", "10.77.0.2:80")
				if err != nil {
					errs <- err
					return
				}
				_, err = c.Write([]byte{byte(d*each + i)})
				c.Close()
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range dialers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	seen := make(map[byte]int)
	for range dialers * each {
		select {
		case v := <-got:
			seen[v]++
		case <-time.After(10 * time.Second):
			t.Fatalf("%d of %d connections read in 10 s", len(seen), dialers*each)
		}
	}
	for i := range dialers * each {
		if seen[byte(i)] != 1 {
			t.Fatalf("byte %d arrived %d times, want once", i, seen[byte(i)])
		}
	}
}
