package fabric

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// connected returns two nodes whose peer segment exists (one connection
// made and accepted), so that later Dials only post a CONNECT.
func connected(t *testing.T) (a, b *Node, pb *peer) {
	t.Helper()
	f := openFabric(t, testDir(t))
	a, b = join(t, f, addrA), join(t, f, addrB)
	if _, err := a.Dial(ctx10s(t), addrB, ConnConfig{RingSize: MinRingSize}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Accept(ctx10s(t)); err != nil {
		t.Fatal(err)
	}
	b.mu.Lock()
	pb = b.peers[addrA]
	b.mu.Unlock()
	return a, b, pb
}

// armedWithin reports whether the event loop has armed pb's control ring
// within d (it arms it when it goes to sleep).
func armedWithin(pb *peer, d time.Duration) bool {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(100 * time.Microsecond) {
		if atomic.LoadUint32(pb.ctlRx.ctl32(offConsArmed))&armNode != 0 {
			return true
		}
	}
	return false
}

func TestAcceptPollDisarmsControlRingsAndEndRearmsThem(t *testing.T) {
	_, b, pb := connected(t)
	if !armedWithin(pb, 5*time.Second) {
		t.Fatal("the idle event loop never armed the control ring")
	}
	b.BeginAcceptPoll()
	if atomic.LoadUint32(pb.ctlRx.ctl32(offConsArmed))&armNode != 0 {
		t.Fatal("control ring still armed during an accept poll")
	}
	b.EndAcceptPoll()
	if atomic.LoadUint32(pb.ctlRx.ctl32(offConsArmed))&armNode == 0 {
		t.Fatal("control ring not armed again after the accept poll")
	}
}

// A CONNECT posted during a poll, after the poller's last look, rings no
// doorbell; EndAcceptPoll must read it, so that Node.Wait (an event loop
// that relies on the doorbell) hears of the connection.
func TestConnectAfterTheLastPollIsAnnouncedByEndAcceptPoll(t *testing.T) {
	a, b, pb := connected(t)
	if !armedWithin(pb, 5*time.Second) {
		t.Fatal("the idle event loop never armed the control ring")
	}
	b.BeginAcceptPoll()
	if _, err := a.Dial(ctx10s(t), addrB, ConnConfig{RingSize: MinRingSize}); err != nil {
		t.Fatal(err)
	}
	b.EndAcceptPoll()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := b.Wait(ctx, nil); err != nil {
		t.Fatalf("Wait = %v, want the accept announced", err)
	}
	done, cancelDone := context.WithCancel(context.Background())
	cancelDone()
	if c, err := b.Accept(done); err != nil || c == nil {
		t.Fatalf("Accept poll = %v, %v; want the connection", c, err)
	}
}

// While a poll is on, Accept with a done context returns a connection
// dialled meanwhile.
func TestAcceptPollReturnsAConnectionDialledDuringThePoll(t *testing.T) {
	a, b, _ := connected(t)
	b.BeginAcceptPoll()
	defer b.EndAcceptPoll()
	if _, err := a.Dial(ctx10s(t), addrB, ConnConfig{RingSize: MinRingSize}); err != nil {
		t.Fatal(err)
	}
	done, cancel := context.WithCancel(context.Background())
	cancel()
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); {
		if c, err := b.Accept(done); err == nil && c != nil {
			return
		}
	}
	t.Fatal("Accept polls never returned the connection")
}
