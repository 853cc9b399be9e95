package ultcp

import (
	"context"
	"errors"
	"testing"
	"time"
)

// Idle connections cost the progress engine nothing: once their grace
// period is over and their rings are armed, no timer and no doorbell
// wakes it.
func TestIdleConnectionsCauseNoEngineWakeups(t *testing.T) {
	dir := testDir(t)
	a, b := newStack(t, dir, addrA), newStack(t, dir, addrB)
	l, err := b.ListenTCP("tcp", ":80")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	const n = 200
	go func() {
		for range n {
			c, err := l.AcceptTCP()
			if err != nil {
				return
			}
			c.Write([]byte("hi"))
		}
	}()
	for range n {
		c, err := a.Dial("tcp", "10.77.0.2:80")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(deadline())
		c.Read(make([]byte, 2))
	}
	// Let the grace periods end and the rings get armed: wait for a quiet
	// 100 ms (a loaded machine can stretch the first checks).
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); {
		wa, wb := a.Stats().EngineWakeups, b.Stats().EngineWakeups
		time.Sleep(100 * time.Millisecond)
		if a.Stats().EngineWakeups == wa && b.Stats().EngineWakeups == wb {
			break
		}
	}
	wa, wb := a.Stats().EngineWakeups, b.Stats().EngineWakeups
	time.Sleep(500 * time.Millisecond)
	da, db := a.Stats().EngineWakeups-wa, b.Stats().EngineWakeups-wb
	if da > 2 || db > 2 {
		t.Fatalf("%d idle connections woke the engines %d and %d times in 0.5 s; want none", n, da, db)
	}
}

// Timers run in the progress engine: a keepalive probe (RFC 1122
// §4.2.3.6) goes out on an idle connection and is answered, with no
// application call involved.
func TestKeepaliveProbesRunFromTheWheel(t *testing.T) {
	c, s := pair(t)
	if err := c.SetKeepAlivePeriod(30 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if k := c.Info().Stats.KeepAlives; k == 0 {
		t.Fatal("no keepalive probe sent by an idle connection")
	}
	if in := s.Info().Stats.SegsIn; in < 2 {
		t.Fatalf("the peer received %d segments; want the probes", in)
	}
	if st := c.Info().State; st != "ESTABLISHED" {
		t.Fatalf("state %s after answered probes", st)
	}
}

// The progress engine answers for an application that does not read:
// data that arrives is taken into the receive buffer and acknowledged,
// with no call on the receiving side.
func TestEngineTakesInAndAcknowledgesDataNobodyReads(t *testing.T) {
	c, s := pair(t)
	c.SetWriteDeadline(deadline())
	buf := make([]byte, 64<<10)
	const sent = 3 * 64 << 10
	for range 3 {
		if _, err := c.Write(buf); err != nil {
			t.Fatal(err)
		}
	}
	outBefore := s.Info().Stats.SegsOut
	deadline := time.Now().Add(5 * time.Second)
	for s.Info().Readable < sent {
		if time.Now().After(deadline) {
			t.Fatalf("the receiver took in %d of %d bytes without being read", s.Info().Readable, sent)
		}
		time.Sleep(time.Millisecond)
	}
	for s.Info().Stats.SegsOut == outBefore {
		if time.Now().After(deadline) {
			t.Fatal("no ACK for data nobody reads")
		}
		time.Sleep(time.Millisecond)
	}
}

// Dial honours its context, as net.Dialer.DialContext does.
func TestDialContextCancelledFails(t *testing.T) {
	dir := testDir(t)
	a := newStack(t, dir, addrA)
	newStack(t, dir, addrB)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := a.DialContext(ctx, "tcp", "10.77.0.2:80"); !errors.Is(err, context.Canceled) {
		t.Fatalf("dial with a cancelled context: %v, want context.Canceled", err)
	}
}
