package ultcp

import (
	"context"
	"errors"
	"net"
	"time"

	"github.com/ultcp/ultcp/fabric"
	"github.com/ultcp/ultcp/internal/timerwheel"
)

// The progress engine: one goroutine per stack that sleeps in
// fabric.Node.Wait until something is due and does that work:
//
//   - a timer: the stack's timing wheel holds one entry per connection,
//     for the earliest of the engine's Deadline, the orphan timeout, the
//     grace check and a retry of a control segment the ring had no room
//     for. The entry is re-armed lazily (Stack.arm moves it only earlier),
//     so an ACK that pushes a deadline later costs no wheel operation.
//   - a record on a ring that no goroutine is reading: a connection whose
//     application goroutine sleeps, or that the application has not
//     touched for a grace period, has its ring armed (fabric watch), and
//     the peer's next record rings the node doorbell; the engine then runs
//     TCP input for it, so ACKs and window updates still go out and a
//     sleeping reader is woken.
//   - a new fabric connection: its first record is a SYN for a listener.
//
// The engine never runs a connection an application goroutine is
// processing (it only try-locks connections), and never blocks on one:
// what it cannot send for lack of ring space waits for a retry tick.
// Idle connections cost nothing: their rings are armed and no timer runs.
//
// The grace check. An application goroutine that returns from Read or
// Write leaves its ring un-armed, so that a busy request-response
// connection pays no doorbell per message. Instead the connection keeps a
// grace entry on the wheel: every Config.Grace the engine drains what
// waits on the ring (arming it), and when the application has not touched
// the connection since the last check, stops checking. So an abandoned
// ring is served within one grace period, and a busy one costs one engine
// wake-up per grace period, not one per message.

// waitCtx is the context the engine sleeps with: a deadline for the next
// timer, read by Node.Wait without starting a runtime timer, and no Done
// channel, so that Wait registers nothing either; Stack.arm and Close wake
// the engine early with Node.Wake (Stack.kick). One waitCtx serves every
// sleep: a wake-up allocates nothing.
type waitCtx struct {
	context.Context
	dl  time.Time
	has bool
}

func (w *waitCtx) Deadline() (time.Time, bool) { return w.dl, w.has }

func (s *Stack) run() {
	defer close(s.done)
	ready := make([]*fabric.Conn, 0, 64)
	var fired []*Conn
	wake := func() {
		s.node.Wake()
		if s.closed { // Close kicks under s.mu, after setting closed
			go s.wakeUntilDone()
		}
	}
	wc := &waitCtx{Context: context.Background()}
	for {
		now := s.now()
		s.mu.Lock()
		s.fired = s.fired[:0]
		s.wheel.Advance(now, s.fireFn)
		fired, s.fired = s.fired, fired[:0]
		s.mu.Unlock()
		for i, c := range fired {
			c.engineRun(now, true)
			fired[i] = nil
		}

		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return
		}
		s.sleepUntil = 1<<63 - 1
		wc.dl, wc.has = time.Time{}, false
		if next, ok := s.wheel.NextDeadline(); ok {
			s.sleepUntil = next
			wc.dl, wc.has = s.epoch.Add(next), true
		}
		s.kick = wake
		s.mu.Unlock()

		var err error
		ready, err = s.node.Wait(wc, ready[:0])
		s.mu.Lock()
		s.sleepUntil, s.kick = 0, nil
		s.mu.Unlock()
		s.stats.engineWakeups.Add(1)
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err == nil && len(ready) == 0 {
			s.acceptFabric(nil)
		}
		now = s.now()
		for i, fc := range ready {
			s.mu.Lock()
			owner := s.byFC[fc]
			s.mu.Unlock()
			switch o := owner.(type) {
			case *Conn:
				o.engineRun(now, false)
			case *embryo:
				o.input(now, nil)
			}
			ready[i] = nil
		}
	}
}

// wakeUntilDone wakes the engine every millisecond until it has stopped.
// One wake-up should do, but fabric's Node.Close replaces the doorbell's
// memory with zeroed memory after ringing it: an engine that read the
// doorbell's count as 0 (a node nobody ever rang) just before, and sleeps
// just after, would sleep on the new page forever; a Wake after the
// replacement reaches it there.
func (s *Stack) wakeUntilDone() {
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
			s.node.Wake()
		}
	}
}

// onFire is the wheel's callback (under s.mu): collect the connection.
func (s *Stack) onFire(e *timerwheel.Entry) {
	c := e.Owner.(*Conn)
	c.entryAt.Store(0)
	s.fired = append(s.fired, c)
}

// closedCtx makes fabric.Node.Accept return what is queued without waiting.
var closedCtx = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

// acceptFabric takes every fabric connection a peer opened to this node and
// watches it for its first record, the SYN: armed for the progress engine
// (poller nil), or polled by the spinning Accept of poller (embryo.input).
func (s *Stack) acceptFabric(poller *Listener) {
	for {
		fc, err := s.node.Accept(closedCtx)
		if err != nil {
			return
		}
		s.stats.fabricAccepts.Add(1)
		e := &embryo{s: s, fc: fc}
		// Watch before publishing: once published, a spinning Accept may
		// read the ring too (under e.mu).
		if poller != nil {
			fc.SetWatchPolled()
		} else {
			fc.SetWatch(true)
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			fc.Close()
			return
		}
		s.byFC[fc] = e
		s.embryos[e] = struct{}{}
		s.mu.Unlock()
		e.input(s.now(), poller)
	}
}
