package floor

import (
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ultcp/ultcp/internal/proc"
)

const rolePingPong = "floor-pingpong"

// Layout of the ping-pong page: the parent writes ping, the child writes
// pong, each on its own cache line so that each message moves exactly one
// line from one core to the other.
const (
	offPing     = 0
	offPong     = line
	pingPongMem = 4096
)

func init() {
	proc.Register(rolePingPong, servePingPong)
}

// PingPong is a running cache-line (or futex) ping-pong floor.
type PingPong struct {
	s    *session
	next uint32 // last value both sides agree on
}

// StartPingPong starts the child and maps the shared page.
func StartPingPong(cfg Config) (*PingPong, error) {
	s, err := startSession(rolePingPong, pingPongMem, cfg)
	if err != nil {
		return nil, err
	}
	return &PingPong{s: s}, nil
}

// Close stops the child and unmaps the page.
func (p *PingPong) Close() error { return p.s.Close() }

// Run does batches × perBatch round trips and returns the half round trip,
// minimum and median over batches. With futex set, each side sleeps in
// FUTEX_WAIT instead of spinning and every message costs a FUTEX_WAKE: the
// floor of a sleeping hand-off.
func (p *PingPong) Run(batches, perBatch int, futex bool) (Latency, error) {
	if batches <= 0 || perBatch <= 0 {
		return Latency{}, fmt.Errorf("floor: ping-pong needs batches and rounds per batch > 0, got %d, %d", batches, perBatch)
	}
	rounds := batches * perBatch
	from := p.next
	if err := p.s.send(command{Op: "pingpong", From: from, Rounds: rounds, Futex: futex}); err != nil {
		return Latency{}, err
	}
	half := make([]float64, batches)
	ping, pong := p.s.mem.u32(offPing), p.s.mem.u32(offPong)
	w := waiter{stall: p.s.cfg.stall()}
	err := RunPinned(p.s.cfg.Pin, 0, func() error {
		v := from
		for b := range batches {
			t0 := time.Now()
			for range perBatch {
				v++
				if futex {
					atomic.StoreUint32(ping, v)
					if err := futexWake(ping); err != nil {
						return err
					}
					if err := futexWaitFor(pong, v, &w); err != nil {
						return err
					}
					continue
				}
				atomic.StoreUint32(ping, v)
				w.reset()
				for atomic.LoadUint32(pong) != v {
					if err := w.pause(); err != nil {
						return err
					}
				}
			}
			half[b] = float64(time.Since(t0).Nanoseconds()) / float64(2*perBatch)
		}
		return nil
	})
	if err != nil {
		p.s.child.Kill() // its stream position is lost; the session is over
		return Latency{}, err
	}
	var r reply
	if err := p.s.recv(&r, replyTimeout); err != nil {
		return Latency{}, err
	}
	p.next = from + uint32(rounds)
	slices.Sort(half)
	return Latency{MinNs: half[0], MedianNs: half[len(half)/2], Batches: batches, PerBatch: perBatch}, nil
}

func servePingPong(args []string) error {
	return serveChild(args, func(env *childEnv, c command) (reply, error) {
		if c.Op != "pingpong" {
			return reply{}, fmt.Errorf("unknown op %q", c.Op)
		}
		ping, pong := env.mem.u32(offPing), env.mem.u32(offPong)
		w := waiter{stall: env.stall}
		v := c.From
		for range c.Rounds {
			v++
			if c.Futex {
				if err := futexWaitFor(ping, v, &w); err != nil {
					return reply{}, err
				}
				atomic.StoreUint32(pong, v)
				if err := futexWake(pong); err != nil {
					return reply{}, err
				}
				continue
			}
			w.reset()
			for atomic.LoadUint32(ping) != v {
				if err := w.pause(); err != nil {
					return reply{}, err
				}
			}
			atomic.StoreUint32(pong, v)
		}
		return reply{}, nil
	})
}

// Futex operations on a word in shared memory. Not the _PRIVATE variants:
// the two waiters are in different processes, so the kernel must key the
// futex on the shared page, not on one address space.
const (
	futexWaitOp = 0 // FUTEX_WAIT
	futexWakeOp = 1 // FUTEX_WAKE
)

// futexTick bounds one FUTEX_WAIT so that a lost wake or a dead peer is
// noticed by the stall check.
const futexTick = 50 * time.Millisecond

func futexWake(p *uint32) error {
	_, _, e := unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(p)), futexWakeOp, 1, 0, 0, 0)
	if e != 0 {
		return fmt.Errorf("floor: futex wake: %w", e)
	}
	return nil
}

// futexWaitFor sleeps until *p == want. The word only ever moves forward
// by one, so while it holds want-1 it is safe to sleep on that value.
func futexWaitFor(p *uint32, want uint32, w *waiter) error {
	ts := unix.NsecToTimespec(futexTick.Nanoseconds())
	var since time.Time
	for {
		cur := atomic.LoadUint32(p)
		if cur == want {
			return nil
		}
		_, _, e := unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(p)), futexWaitOp, uintptr(cur), uintptr(unsafe.Pointer(&ts)), 0, 0)
		switch {
		case e == 0, errors.Is(e, syscall.EAGAIN), errors.Is(e, syscall.EINTR):
			// Woken, or the value had already changed: look again.
		case errors.Is(e, syscall.ETIMEDOUT):
			now := time.Now()
			if since.IsZero() {
				since = now
			} else if now.Sub(since) > w.stall {
				return ErrStalled
			}
		default:
			return fmt.Errorf("floor: futex wait: %w", e)
		}
	}
}
