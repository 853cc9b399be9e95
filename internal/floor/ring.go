package floor

import (
	"encoding/binary"
	"fmt"
	"sync/atomic"

	"github.com/ultcp/ultcp/internal/proc"
)

const roleRing = "floor-ring"

// RingSize is the data size of the bare ring: the fabric's largest
// per-connection ring, so both pipeline the same amount of data.
const RingSize = 4 << 20

// Layout of the ring mapping: one control page, then the data. Head (bytes
// ever produced) and tail (bytes ever consumed) are free-running 64-bit
// counts on their own cache lines; ready and start are the per-run
// hand-shake that opens the measured interval.
const (
	offHead    = 0
	offTail    = line
	offReady   = 2 * line
	offStart   = 3 * line
	ringCtl    = 4096
	ringMemLen = ringCtl + RingSize
)

func init() {
	proc.Register(roleRing, serveRing)
}

// Ring is a running bare ring-copy floor: the child produces, the parent
// consumes.
type Ring struct {
	s    *session
	seq  uint64
	tail uint64 // the parent's own count; head catches up to it every run
	dst  []byte
}

// StartRing starts the child producer and maps the ring.
func StartRing(cfg Config) (*Ring, error) {
	s, err := startSession(roleRing, ringMemLen, cfg)
	if err != nil {
		return nil, err
	}
	return &Ring{s: s}, nil
}

// Close stops the child and unmaps the ring.
func (r *Ring) Close() error { return r.s.Close() }

// Run streams total bytes through the ring in blocks of block bytes: the
// child copies each block in from a private buffer, the parent copies it
// out to a private buffer. With verify set, the child stamps each block
// with its index and the parent checks every byte (for tests; it costs a
// compare per byte, so never for measurements).
func (r *Ring) Run(block int, total int64, verify bool) (Stream, error) {
	if err := checkBlock(block, total, verify); err != nil {
		return Stream{}, err
	}
	if block > RingSize {
		return Stream{}, fmt.Errorf("floor: block of %d bytes does not fit the %d-byte ring", block, RingSize)
	}
	if len(r.dst) < block {
		r.dst = make([]byte, block)
	}
	var want []byte
	if verify {
		want = make([]byte, block)
		fillPattern(want)
	}
	r.seq++
	if err := r.s.send(command{Op: "ring", Block: block, Total: total, Seq: r.seq, Verify: verify}); err != nil {
		return Stream{}, err
	}
	m := r.s.mem
	head, tail := m.u64(offHead), m.u64(offTail)
	data := m.mem[ringCtl:]
	w := waiter{stall: r.s.cfg.stall()}
	return r.s.timedStream(r.seq, block, total, func() error {
		t := r.tail
		seen := atomic.LoadUint64(head)
		var idx uint64
		for left := total; left > 0; idx++ {
			n := int64(block)
			if left < n {
				n = left
			}
			if seen-t < uint64(n) {
				w.reset()
				for seen = atomic.LoadUint64(head); seen-t < uint64(n); seen = atomic.LoadUint64(head) {
					if err := w.pause(); err != nil {
						return err
					}
				}
			}
			off := int(t % RingSize)
			c := copy(r.dst[:n], data[off:])
			if int64(c) < n {
				copy(r.dst[c:n], data)
			}
			t += uint64(n)
			atomic.StoreUint64(tail, t)
			left -= n
			if verify {
				if err := checkBlock8(r.dst[:n], want[:n], idx); err != nil {
					return err
				}
			}
		}
		r.tail = t
		return nil
	})
}

func serveRing(args []string) error {
	var src []byte
	return serveChild(args, func(env *childEnv, c command) (reply, error) {
		if c.Op != "ring" {
			return reply{}, fmt.Errorf("unknown op %q", c.Op)
		}
		if c.Block <= 0 || c.Block > RingSize {
			return reply{}, fmt.Errorf("bad block size %d", c.Block)
		}
		if len(src) < c.Block {
			src = make([]byte, c.Block)
			fillPattern(src)
		}
		m := env.mem
		head, tail := m.u64(offHead), m.u64(offTail)
		data := m.mem[ringCtl:]
		w := waiter{stall: env.stall}
		h := atomic.LoadUint64(head)
		return timedServe(env, c.Seq, func() error {
			seen := atomic.LoadUint64(tail)
			var idx uint64
			for left := c.Total; left > 0; idx++ {
				n := int64(c.Block)
				if left < n {
					n = left
				}
				if h+uint64(n)-seen > RingSize {
					w.reset()
					for seen = atomic.LoadUint64(tail); h+uint64(n)-seen > RingSize; seen = atomic.LoadUint64(tail) {
						if err := w.pause(); err != nil {
							return err
						}
					}
				}
				if c.Verify {
					binary.LittleEndian.PutUint64(src, idx)
				}
				off := int(h % RingSize)
				k := copy(data[off:], src[:n])
				if int64(k) < n {
					copy(data, src[k:n])
				}
				h += uint64(n)
				atomic.StoreUint64(head, h)
				left -= n
			}
			return nil
		})
	})
}

// checkBlock validates the arguments of a streaming run.
func checkBlock(block int, total int64, verify bool) error {
	if block <= 0 || total <= 0 {
		return fmt.Errorf("floor: block size and total must be > 0, got %d, %d", block, total)
	}
	if verify && (block < 8 || total%int64(block) != 0) {
		return fmt.Errorf("floor: a verified run needs blocks of at least 8 bytes and a whole number of them, got %d, %d", block, total)
	}
	return nil
}

// checkBlock8 checks a received block: its first 8 bytes carry its index,
// the rest the fill pattern.
func checkBlock8(got, want []byte, idx uint64) error {
	if g := binary.LittleEndian.Uint64(got); g != idx {
		return fmt.Errorf("floor: block %d arrived as block %d (lost or reordered)", idx, g)
	}
	for i := 8; i < len(got); i++ {
		if got[i] != want[i] {
			return fmt.Errorf("floor: block %d byte %d = %#x, want %#x", idx, i, got[i], want[i])
		}
	}
	return nil
}
