package fabric

import (
	"context"
	"errors"
	"testing"
	"time"
)

// The ways a process reads its rings without doorbells: a ring polled by
// a spinning goroutine (SetWatchPolled), a ring it no longer watches
// (SetWatch(false)), and control rings held by a spinning Accept
// (HoldControl). In each, a record must ring no doorbell until the ring is
// armed again, and must never be lost.

// waitNothing asserts that Wait reports nothing within 30 ms.
func waitNothing(t *testing.T, n *Node, what string) {
	t.Helper()
	short, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if got, err := n.Wait(short, nil); !errors.Is(err, context.DeadlineExceeded) || len(got) != 0 {
		t.Fatalf("%s: Wait = %d conns, %v; want nothing (DeadlineExceeded)", what, len(got), err)
	}
}

func TestSetWatchPolledRingsNoDoorbellUntilArmedByPeekNoWait(t *testing.T) {
	ca, cb := pair(t)
	cb.SetWatchPolled()
	ca.Send([]byte("one"))
	waitNothing(t, cb.peer.n, "a record on a polled ring")
	if !cb.Readable() {
		t.Fatal("the polled ring is not Readable with a record in it")
	}
	if r, err := cb.PeekNoWait(); err != nil || string(r.Data) != "one" {
		t.Fatalf("PeekNoWait = %q, %v; want one", r.Data, err)
	}
	cb.Release()
	if _, err := cb.PeekNoWait(); !errors.Is(err, ErrWouldBlock) {
		t.Fatalf("PeekNoWait on the empty ring = %v, want ErrWouldBlock (and armed)", err)
	}
	ca.Send([]byte("two"))
	got, err := cb.peer.n.Wait(ctx10s(t), nil)
	if err != nil || len(got) != 1 || got[0] != cb {
		t.Fatalf("Wait after arming = %d conns, %v; want the connection", len(got), err)
	}
}

func TestSetWatchFalseDisarmsTheRing(t *testing.T) {
	ca, cb := pair(t)
	cb.SetWatch(true) // armed: the empty ring asks for a doorbell
	cb.SetWatch(false)
	ca.Send([]byte("one"))
	waitNothing(t, cb.peer.n, "a record on an unwatched ring")
	cb.SetWatch(true) // watched again with a record waiting: reported at once
	got, err := cb.peer.n.Wait(ctx10s(t), nil)
	if err != nil || len(got) == 0 || got[0] != cb {
		t.Fatalf("Wait after SetWatch(true) = %d conns, %v; want the connection", len(got), err)
	}
	if r, err := cb.PeekNoWait(); err != nil || string(r.Data) != "one" {
		t.Fatalf("PeekNoWait = %q, %v; want one", r.Data, err)
	}
}

// acceptWithin polls Accept (as a spinning caller does) for up to d.
func acceptWithin(n *Node, d time.Duration) (*Conn, error) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	end := time.Now().Add(d)
	for {
		c, err := n.Accept(ctx)
		if err == nil || time.Now().After(end) {
			return c, err
		}
		time.Sleep(time.Millisecond)
	}
}

// peers returns two nodes that have made first contact (b has a's
// control ring), so that a CONNECT from a to b goes over that ring.
func peers(t *testing.T) (a, b *Node) {
	t.Helper()
	f := openFabric(t, testDir(t))
	a, b = join(t, f, addrA), join(t, f, addrB)
	connect(t, a, b, ConnConfig{})
	return a, b
}

func TestHoldControlLeavesTheConnectToThePoller(t *testing.T) {
	a, b := peers(t)
	b.HoldControl(10 * time.Second)
	if _, err := a.Dial(ctx10s(t), addrB, ConnConfig{}); err != nil {
		t.Fatal(err)
	}
	// The event loop leaves the CONNECT in the ring: nothing is queued
	// or announced to Wait.
	waitNothing(t, b, "a CONNECT under a lease")
	if b.queued() {
		t.Fatal("the event loop queued a CONNECT during the lease")
	}
	if c, err := acceptWithin(b, 5*time.Second); err != nil || c == nil {
		t.Fatalf("polling Accept = %v, %v; want the connection", c, err)
	}
}

func TestControlLeaseEndsAndTheEventLoopTakesOver(t *testing.T) {
	a, b := peers(t)
	b.HoldControl(50 * time.Millisecond) // the holder never comes back
	if _, err := a.Dial(ctx10s(t), addrB, ConnConfig{}); err != nil {
		t.Fatal(err)
	}
	// Nobody polls: the event loop takes the CONNECT when the lease ends.
	if !queuedWithin(b, 5*time.Second) {
		t.Fatal("the CONNECT was not queued after the lease ended")
	}
}

// queuedWithin reports whether n's accept queue holds a connection within
// d, without polling the control rings itself (Accept would).
func queuedWithin(n *Node, d time.Duration) bool {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(time.Millisecond) {
		if n.queued() {
			return true
		}
	}
	return false
}

func TestReleaseControlArmsTheRingsAgain(t *testing.T) {
	a, b := peers(t)
	b.HoldControl(time.Hour)
	b.ReleaseControl()
	if _, err := a.Dial(ctx10s(t), addrB, ConnConfig{}); err != nil {
		t.Fatal(err)
	}
	// The lease would last an hour: only armed rings bring the CONNECT
	// to the event loop.
	if !queuedWithin(b, 5*time.Second) {
		t.Fatal("the CONNECT was not queued after ReleaseControl")
	}
}

func TestReleaseControlAnnouncesWhatItTook(t *testing.T) {
	a, b := peers(t)
	b.HoldControl(time.Hour)
	if _, err := a.Dial(ctx10s(t), addrB, ConnConfig{}); err != nil {
		t.Fatal(err)
	}
	b.ReleaseControl() // reads the CONNECT the lease left in the ring
	got, err := b.Wait(ctx10s(t), nil)
	if err != nil || len(got) != 0 {
		t.Fatalf("Wait = %d conns, %v; want an empty result (call Accept)", len(got), err)
	}
	if !b.queued() {
		t.Fatal("ReleaseControl did not queue the CONNECT")
	}
}
