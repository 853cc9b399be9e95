package floor

import (
	"encoding/binary"
	"fmt"
	"os"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ultcp/ultcp/internal/proc"
)

const roleCMA = "floor-cma"

// Layout of the CMA hand-shake page: posted counts transfers the sender
// has offered, done counts transfers the receiver has pulled; both are
// free-running and each on its own cache line.
const (
	offPosted = 0
	offDone   = line
	cmaMem    = 4096
	// offReady and offStart are shared with the ring's layout.
)

func init() {
	proc.Register(roleCMA, serveCMA)
}

// CMA is a running process_vm_readv floor: the child owns a buffer, the
// parent pulls from it.
type CMA struct {
	s     *session
	seq   uint64
	block int     // size of the child's current buffer
	addr  uintptr // its address in the child
	pid   int
	dst   []byte
	local [1]unix.Iovec
	rem   [1]unix.RemoteIovec
}

// StartCMA starts the child that owns the source buffer.
func StartCMA(cfg Config) (*CMA, error) {
	s, err := startSession(roleCMA, cmaMem, cfg)
	if err != nil {
		return nil, err
	}
	return &CMA{s: s}, nil
}

// Close stops the child.
func (c *CMA) Close() error { return c.s.Close() }

// Run pulls total bytes from the child's buffer, block bytes per
// process_vm_readv call. Plain (handshake false), the child sits idle and
// the parent loops on the system call: the floor of the mechanism. With
// handshake, every transfer is offered by the child through a shared
// counter and acknowledged by the parent through another, and the child
// spins until its transfer is done before offering the next: the shape of
// the fabric's DMA path, where a Write returns only once its bytes have
// been taken. With verify, the parent checks every byte (tests only).
func (c *CMA) Run(block int, total int64, handshake, verify bool) (Stream, error) {
	if err := checkBlock(block, total, verify); err != nil {
		return Stream{}, err
	}
	if block != c.block {
		var r reply
		if err := c.s.call(command{Op: "buffer", Block: block}, &r); err != nil {
			return Stream{}, err
		}
		c.block, c.addr, c.pid = block, uintptr(r.Addr), r.Pid
		c.dst = make([]byte, block)
	}
	var want []byte
	if verify {
		want = make([]byte, block)
		fillPattern(want)
	}
	if handshake {
		return c.runHandshake(block, total, want)
	}
	return c.runPlain(block, total, want)
}

// pull reads n bytes of the child's buffer into c.dst.
func (c *CMA) pull(n int) error {
	c.local[0] = unix.Iovec{Base: &c.dst[0], Len: uint64(n)}
	c.rem[0] = unix.RemoteIovec{Base: c.addr, Len: n}
	got, err := unix.ProcessVMReadv(c.pid, c.local[:], c.rem[:], 0)
	if err != nil {
		return fmt.Errorf("floor: process_vm_readv from pid %d: %w", c.pid, err)
	}
	if got != n {
		return fmt.Errorf("floor: process_vm_readv moved %d of %d bytes", got, n)
	}
	return nil
}

func (c *CMA) runPlain(block int, total int64, want []byte) (Stream, error) {
	sender0, err := c.s.childCPU()
	if err != nil {
		return Stream{}, err
	}
	var res Stream
	err = RunPinned(c.s.cfg.Pin, 0, func() error {
		cpu0, err := ProcessCPU()
		if err != nil {
			return err
		}
		t0 := time.Now()
		for left := total; left > 0; {
			n := int64(block)
			if left < n {
				n = left
			}
			if err := c.pull(int(n)); err != nil {
				return err
			}
			left -= n
			if want != nil {
				for i := range n {
					if c.dst[i] != want[i] {
						return fmt.Errorf("floor: byte %d = %#x, want %#x", i, c.dst[i], want[i])
					}
				}
			}
		}
		res.Elapsed = time.Since(t0)
		cpu1, err := ProcessCPU()
		res.ReceiverCPU = cpu1 - cpu0
		return err
	})
	if err != nil {
		return Stream{}, err
	}
	sender1, err := c.s.childCPU()
	if err != nil {
		return Stream{}, err
	}
	res.Block, res.Bytes, res.SenderCPU = block, total, sender1-sender0
	return res, nil
}

func (c *CMA) runHandshake(block int, total int64, want []byte) (Stream, error) {
	c.seq++
	if err := c.s.send(command{Op: "handshake", Block: block, Total: total, Seq: c.seq, Verify: want != nil}); err != nil {
		return Stream{}, err
	}
	m := c.s.mem
	posted, done := m.u64(offPosted), m.u64(offDone)
	w := waiter{stall: c.s.cfg.stall()}
	return c.s.timedStream(c.seq, block, total, func() error {
		d := atomic.LoadUint64(done)
		var idx uint64
		for left := total; left > 0; idx++ {
			n := int64(block)
			if left < n {
				n = left
			}
			d++
			if err := w.waitU64(posted, d); err != nil {
				return err
			}
			if err := c.pull(int(n)); err != nil {
				return err
			}
			atomic.StoreUint64(done, d)
			left -= n
			if want != nil {
				if err := checkBlock8(c.dst[:n], want[:n], idx); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

func serveCMA(args []string) error {
	// buf stays referenced for the child's life, so its address (which the
	// parent reads from) stays valid: Go's collector does not move objects.
	var buf []byte
	return serveChild(args, func(env *childEnv, c command) (reply, error) {
		switch c.Op {
		case "buffer":
			if c.Block <= 0 || c.Block > 1<<30 {
				return reply{}, fmt.Errorf("bad buffer size %d", c.Block)
			}
			buf = make([]byte, c.Block)
			fillPattern(buf)
			return reply{Addr: uint64(uintptr(unsafe.Pointer(&buf[0]))), Pid: os.Getpid()}, nil
		case "handshake":
			if c.Block != len(buf) {
				return reply{}, fmt.Errorf("handshake with block %d but buffer of %d", c.Block, len(buf))
			}
			m := env.mem
			posted, done := m.u64(offPosted), m.u64(offDone)
			w := waiter{stall: env.stall}
			p := atomic.LoadUint64(posted)
			return timedServe(env, c.Seq, func() error {
				var idx uint64
				for left := c.Total; left > 0; idx++ {
					n := int64(c.Block)
					if left < n {
						n = left
					}
					if c.Verify {
						binary.LittleEndian.PutUint64(buf, idx)
					}
					p++
					atomic.StoreUint64(posted, p)
					if err := w.waitU64(done, p); err != nil {
						return err
					}
					left -= n
				}
				if c.Verify {
					fillPattern(buf[:8]) // the plain loop expects the pattern
				}
				return nil
			})
		}
		return reply{}, fmt.Errorf("unknown op %q", c.Op)
	})
}
