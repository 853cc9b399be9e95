package fabric

import (
	"runtime"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// A ring is a single-producer single-consumer circular queue of
// variable-length records in shared memory. It is made of a control block
// (four cache lines, each written by one side only) and a data area whose
// size is a power of two.
//
// Records are 8-byte aligned: an 8-byte header (bits 0–31 body length,
// bits 32–39 kind, bits 40–63 zero) followed by the body padded to 8. A
// record never straddles the end of the data area: when it would not fit,
// the producer first writes a skip record that covers the rest of the lap.
//
// Publication: the header word at the producer's position is always zero
// (the "terminator") until a record is published there. To publish, the
// producer writes the body, then a zero terminator after it, then the
// header with a sequentially consistent store. A consumer that reads a
// non-zero header therefore sees the body and the next terminator, and it
// never needs to read the producer's index: polling one word at its own
// position is enough, and for small records that word shares a cache line
// with the body, so one line transfer carries both.
//
// The consumer publishes its tail (bytes consumed) in batches: every
// ring-size/4 bytes, when it finds the ring empty, or at once when the
// producer has said it is short of space. The producer keeps a private copy
// of the tail and reads the shared one only when its copy says the ring is
// full.
const (
	ctlBlockSize = 256
	offTail      = 0   // consumer-written: bytes consumed, published in batches
	offConsArmed = 64  // consumer-written: the consumer's tripwire and futex word
	offProdArmed = 128 // producer-written: the producer's tripwire and futex word
	offDMADone   = 192 // consumer-written: count of DMA records completed

	// Informative words in a connection ring's producer line, for tools
	// (Inspect); the nodes write them and never read them back. In the
	// ring from the dialler (fwd): offConnBlock holds the pair's block,
	// offConnInfo the ring size | infoOpen; in both rings infoClosed in
	// offConnInfo says the ring's producer side closed the connection.
	// The dialler zeroes offConnInfo of fwd when it frees the pair.
	offConnBlock = 136
	offConnInfo  = 144
	infoOpen     = 1 << 32
	infoClosed   = 1 << 33
)

// Tripwire bits, in offConsArmed and offProdArmed.
const (
	armSleeper = 1 << 0 // a goroutine sleeps on this word's futex: wake it
	armNode    = 1 << 1 // the node's event loop sleeps: ring its doorbell
	armWant    = 1 << 2 // (producer word) short of space: publish the tail soon
	// armNudge is added (bits 16–31 count, wrapping) by this process when a
	// local sleeper must re-check its state (close, peer death, a new
	// deadline): it makes the sleeper's expected futex value stale.
	armNudge = 1 << 16
)

// Record kinds.
const (
	kindData = 1 // body is the payload (PIO)
	kindSkip = 2 // padding to the end of the lap
	kindDMA  = 3 // body is a DMA descriptor followed by the inline prefix
)

const (
	recHdr      = 8
	MinRingSize = 4 << 10  // smallest ring data area
	MaxRingSize = 64 << 20 // largest ring data area
)

// MaxRecord returns the largest record body a ring of size bytes carries:
// the header, and the next record's terminator, must fit too. A record
// that does not fit before the end of the lap waits behind a skip record
// until the consumer has emptied the ring, so any size up to this works.
func MaxRecord(size int) int { return size - 2*recHdr }

func align8(n uint64) uint64 { return (n + 7) &^ 7 }

// ringMem locates one ring in a mapping. bell is the futex word of the
// consumer's node doorbell (rung when the consumer armed armNode); hint
// and hintSum, if set, are the consumer's ready bits for this ring, set
// before the bell rings so that its event loop finds the ring without
// scanning all of them.
type ringMem struct {
	ctl        unsafe.Pointer
	data       unsafe.Pointer
	size       uint64
	bell       *uint32
	hint       *uint64
	hintBit    uint64
	hintSum    *uint64
	hintSumBit uint64
}

func (r *ringMem) u64(off uint64) *uint64 { return (*uint64)(unsafe.Add(r.data, off)) }
func (r *ringMem) ctl64(off uintptr) *uint64 {
	return (*uint64)(unsafe.Add(r.ctl, off))
}
func (r *ringMem) ctl32(off uintptr) *uint32 {
	return (*uint32)(unsafe.Add(r.ctl, off))
}
func (r *ringMem) bytes(off, n uint64) []byte {
	return unsafe.Slice((*byte)(unsafe.Add(r.data, off)), n)
}

// wakeArmed clears the wake-up bits of a tripwire word and does the wake-ups
// they asked for. Callers load the word first and come here only when a bit
// is set, so the common case costs one load.
func (r *ringMem) wakeArmed(w *uint32) {
	old := atomic.AndUint32(w, ^uint32(armSleeper|armNode|armWant))
	if old&armSleeper != 0 {
		futexWake(w, allWaiters)
	}
	if old&armNode != 0 {
		if r.hint != nil {
			atomic.OrUint64(r.hint, r.hintBit)
			atomic.OrUint64(r.hintSum, r.hintSumBit)
		}
		if r.bell != nil {
			ringBell(r.bell)
		}
	}
}

// ringBell bumps a node doorbell and wakes everything sleeping on it.
func ringBell(bell *uint32) {
	atomic.AddUint32(bell, 1)
	futexWake(bell, allWaiters)
}

// nudge makes every sleeper on a tripwire word return and re-check its
// state (which the caller changed before).
//
// The futex wake-up is a system call (about a microsecond, and a
// connection's close does four of them), so it is made only when a
// sleeper has said it sleeps: every sleeper sets armSleeper before its
// last check of the state and the deadlines, so one that set it after our
// add sees the new state, and one that set it before is woken.
func nudge(w *uint32) {
	if atomic.AddUint32(w, armNudge)&armSleeper != 0 {
		futexWake(w, allWaiters)
	}
}

// breakRing nudges the sleepers on both tripwires of a ring.
func (r *ringMem) breakRing() {
	nudge(r.ctl32(offConsArmed))
	nudge(r.ctl32(offProdArmed))
}

// init zeroes the control block and the first header of a ring that is
// about to be handed out again (a fresh ring is zero already).
func (r *ringMem) reset() {
	clear(unsafe.Slice((*byte)(r.ctl), ctlBlockSize))
	atomic.StoreUint64(r.u64(0), 0)
}

// producer is the sending half of a ring. Only one goroutine uses it at a
// time.
type producer struct {
	ringMem
	head     uint64 // next record position (monotonic byte count)
	tailSeen uint64 // consumer's tail as last read
	resvPos  uint64 // position of the reserved record, when resvLen >= 0
	resvLen  int    // capacity of the reserved record; -1: none
	dmaSent  uint64 // DMA records sent
	// pubHead is head as of the last commit, for readers in other
	// goroutines (occupancySnapshot); process-local memory, never shared.
	pubHead atomic.Uint64
}

func newProducer(m ringMem) producer { return producer{ringMem: m, resvLen: -1} }

// refreshTail reads the consumer's tail and checks that it lies between the
// last one seen and our head; anything else is a corrupted or hostile
// consumer.
func (p *producer) refreshTail() error {
	t := atomic.LoadUint64(p.ctl64(offTail))
	if t-p.tailSeen > p.head-p.tailSeen {
		return errf(ErrCorrupt, "consumer tail %d outside [%d, %d]", t, p.tailSeen, p.head)
	}
	p.tailSeen = t
	return nil
}

// fits reports whether n bytes at head plus the terminator after them are
// free, reading the shared tail only if the private copy says no.
func (p *producer) fits(n uint64) (bool, error) {
	if p.head+n+recHdr-p.tailSeen <= p.size {
		return true, nil
	}
	if err := p.refreshTail(); err != nil {
		return false, err
	}
	return p.head+n+recHdr-p.tailSeen <= p.size, nil
}

// tryReserve reserves room for a record body of n bytes and returns it, or
// ok == false if the ring is too full right now. n must be at most
// MaxRecord(size).
func (p *producer) tryReserve(n int) (buf []byte, ok bool, err error) {
	if n < 0 || n > MaxRecord(int(p.size)) {
		return nil, false, ErrRecordTooLarge
	}
	rec := recHdr + align8(uint64(n))
	x := p.head & (p.size - 1)
	if x+rec > p.size {
		skip := p.size - x
		if ok, err := p.fits(skip); !ok {
			return nil, false, err
		}
		atomic.StoreUint64(p.u64(0), 0) // terminator of the skip record
		atomic.StoreUint64(p.u64(x), uint64(skip-recHdr)|kindSkip<<32)
		p.head += skip
		p.notify() // a sleeping consumer must step over the skip so that we get room at 0
		x = 0
	}
	if ok, err := p.fits(rec); !ok {
		return nil, false, err
	}
	p.resvPos, p.resvLen = p.head, n
	return p.bytes(x+recHdr, uint64(n)), true, nil
}

// commit publishes the reserved record with a body of n bytes.
func (p *producer) commit(n int, kind uint64) {
	x := p.resvPos & (p.size - 1)
	rec := recHdr + align8(uint64(n))
	*p.u64((x + rec) & (p.size - 1)) = 0 // terminator: ordered before the header by the store below
	atomic.StoreUint64(p.u64(x), uint64(n)|kind<<32)
	p.head += rec
	p.pubHead.Store(p.head)
	p.resvLen = -1
	p.notify()
}

// notify rings the consumer's tripwire if it is armed. The store that
// published the record is sequentially consistent, so this load cannot be
// satisfied before it: either the consumer sees our record after arming or
// we see its arming here (the arm, re-check, sleep protocol).
func (p *producer) notify() {
	w := p.ctl32(offConsArmed)
	if atomic.LoadUint32(w)&(armSleeper|armNode) != 0 {
		p.wakeArmed(w)
	}
}

// occupancySnapshot is occupancy for any goroutine: the consumer's
// published tail, loaded first, then the head of the last commit, which
// cannot be behind that tail (the consumer only consumes committed
// records). A tail outside [head-size, head] (a hostile peer, or memory
// given back after the peer died) counts as an empty ring or a full one,
// never more; the sending goroutine's own checks report the corruption.
func (p *producer) occupancySnapshot() int {
	t := atomic.LoadUint64(p.ctl64(offTail))
	h := p.pubHead.Load()
	switch {
	case int64(h-t) < 0:
		return 0
	case h-t > p.size:
		return int(p.size)
	}
	return int(h - t)
}

// consumer is the receiving half of a ring. Only one goroutine uses it at
// a time.
type consumer struct {
	ringMem
	tail    uint64 // next record position (monotonic)
	pubTail uint64 // tail as last published
	batch   uint64 // publish after this many bytes
	dmaDone uint64 // DMA records completed
	// The record returned by the last peek, until release.
	curRec  uint64 // its size in the ring (header + padded body); 0: none
	curKind uint64
	curBody []byte
}

func newConsumer(m ringMem) consumer {
	return consumer{ringMem: m, batch: m.size / 4}
}

// peek returns the next record's kind and body without consuming it, or
// kind 0 when the ring is empty. It steps over skip records. Every header
// is loaded once and checked against the ring's bounds before use.
func (c *consumer) peek() (kind uint64, body []byte, err error) {
	if c.curRec != 0 {
		return c.curKind, c.curBody, nil
	}
	for {
		x := c.tail & (c.size - 1)
		h := atomic.LoadUint64(c.u64(x))
		if h == 0 {
			return 0, nil, nil
		}
		n, kind := h&0xffffffff, h>>32
		switch kind {
		case kindSkip:
			// A skip never starts a lap (any record fits from offset
			// 0), so at most one is stepped over per call: a hostile
			// producer cannot keep us looping here.
			if x == 0 || n+recHdr != c.size-x {
				return 0, nil, errf(ErrCorrupt, "skip record of %d bytes at offset %d of a %d-byte ring", n, x, c.size)
			}
			c.tail += c.size - x
			continue
		case kindData, kindDMA:
			rec := recHdr + align8(n)
			if rec > c.size-x {
				return 0, nil, errf(ErrCorrupt, "record of %d bytes at offset %d overruns a %d-byte ring", n, x, c.size)
			}
			c.curRec, c.curKind = rec, kind
			c.curBody = c.bytes(x+recHdr, n)
			return kind, c.curBody, nil
		default:
			return 0, nil, errf(ErrCorrupt, "bad record header %#016x at offset %d", h, x)
		}
	}
}

// release consumes the record returned by peek.
func (c *consumer) release() {
	c.tail += c.curRec
	c.curRec, c.curBody = 0, nil
	if c.tail-c.pubTail >= c.batch || atomic.LoadUint32(c.ctl32(offProdArmed))&armWant != 0 {
		c.publish()
	}
}

// publish makes the tail visible to the producer and wakes it if it is
// waiting for room (armWant, which a producer short of room always sets
// with armSleeper). A producer asleep for a DMA completion (armSleeper
// alone) is left asleep: more room does not concern it, and waking it
// would make it spin for nothing.
func (c *consumer) publish() {
	atomic.StoreUint64(c.ctl64(offTail), c.tail)
	c.pubTail = c.tail
	w := c.ctl32(offProdArmed)
	if atomic.LoadUint32(w)&armWant != 0 {
		c.wakeArmed(w)
	}
}

// idle is called when peek found the ring empty: a producer short of
// room must not wait for our batch to fill. While we keep polling, the
// tail is published only if the producer said it wants it (armWant, set
// before it spins), which saves a store per record in a ping-pong; with
// sleeping set (we are about to sleep or to hand the ring to an event
// loop), it is published in any case. publish stores, then loads the
// producer's tripwire, so a producer that armed after our store sees the
// new tail, and one that armed before is woken.
func (c *consumer) idle(sleeping bool) {
	if c.tail == c.pubTail {
		return
	}
	if sleeping || atomic.LoadUint32(c.ctl32(offProdArmed))&armWant != 0 {
		c.publish()
	}
}

// completeDMA posts one DMA completion and wakes a sleeping sender.
func (c *consumer) completeDMA() {
	c.dmaDone++
	atomic.StoreUint64(c.ctl64(offDMADone), c.dmaDone)
	w := c.ctl32(offProdArmed)
	if atomic.LoadUint32(w)&armSleeper != 0 {
		c.wakeArmed(w)
	}
}

// earlyWake wakes a sender sleeping on its DMA completion before the copy
// is over, so that its wake-up latency overlaps the rest of the copy.
func (c *consumer) earlyWake() {
	w := c.ctl32(offProdArmed)
	if atomic.LoadUint32(w)&armSleeper != 0 {
		c.wakeArmed(w)
	}
}

// spinner bounds a busy-wait loop in time. It reads the clock only every
// 64 rounds (a poll is a few nanoseconds; the clock costs more), and every
// 4096 rounds it gives the CPU away with sched_yield: runtime.Gosched
// never gives up the thread, and on a two-core machine with a third
// runnable thread a spinner whose peer was preempted onto its own CPU
// would otherwise burn its whole time slice waiting for it.
type spinner struct {
	budget time.Duration
	start  time.Time
	n      uint32
}

func (s *spinner) more() bool {
	s.n++
	if s.n&63 != 0 {
		return true
	}
	if s.n == 64 {
		s.start = time.Now()
		return s.budget > 0
	}
	if time.Since(s.start) > s.budget {
		return false
	}
	if s.n&4095 == 0 {
		syscall.RawSyscall(syscall.SYS_SCHED_YIELD, 0, 0, 0)
		if s.n&(1<<14-1) == 0 {
			runtime.Gosched()
		}
	}
	return true
}
