package fabric

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Connection state bits.
const (
	stClosed     = 1 // Close was called here
	stPeerClosed = 2 // the peer closed: Recv drains, then io.EOF
	stReset      = 4 // failed: peer dead, protocol broken, node closed (Conn.err says which)
)

// DMA records: the body starts with a descriptor, then the inline prefix.
//
//	pid u32 | 0 u32 | address u64 | length u64 | wake-at u64
//
// wake-at is the sender's request: "wake me when this many bytes are left
// to copy" (see waitDMA).
const (
	dmaDescLen = 32
	// MaxDMA bounds the length a DMA descriptor may announce.
	MaxDMA = 1 << 40
	// pullChunk is the most one process_vm_readv call copies (~0.1 ms
	// here): short enough to run as a raw system call, long enough that
	// the kernel's per-call page pinning stays cheap. A chunk also ends at
	// the wake-at point, so that the early wake-up goes out there.
	pullChunk = 1 << 20
	// A receiver pulling a DMA record wakes a sleeping sender when
	// wake-at bytes are left to copy, so that the sender's futex wake-up
	// latency overlaps the end of the copy instead of following it. The
	// sender adapts wake-at per connection from what it sees when it
	// wakes: completion already there → wake-up too late → ask earlier;
	// still spinning for a while → too early → ask later. It starts at
	// initialEarlyWake and stays in [minEarlyWake, maxEarlyWake].
	initialEarlyWake = 256 << 10
	minEarlyWake     = 16 << 10
	maxEarlyWake     = 4 << 20
	lateWakeStep     = 64 << 10
	// targetWakeSpin is how long a woken sender aims to spin before the
	// completion: a little margin against a slow wake-up is cheaper than
	// a receiver idling for the next record.
	targetWakeSpin = 2 * time.Microsecond
	// A DMA sender predicts how long the receiver's copy takes from the
	// length (dmaNsPerKiB, measured: process_vm_readv moves ~12 GB/s
	// here). A copy predicted shorter than dmaSleepAbove is cheaper to spin
	// through than to sleep through (a futex wake-up costs about that
	// much); a longer one is slept through: the sender spins dmaSpin, then
	// sleeps until the receiver's early wake-up, then spins at most
	// maxWakeSpin for the completion before it sleeps again. dmaSpin is 0
	// (only the spinner's first 64 polls, ~0.1 µs): a completion cannot
	// come that early, and 0.5 µs of spin cost 0.002–0.008 ns/B at 1 MiB
	// for nothing (alternating runs, 14:44 UTC).
	dmaNsPerKiB   = 85
	dmaSleepAbove = 30 * time.Microsecond
	dmaSpin       = 0
	maxWakeSpin   = 4 * targetWakeSpin
)

var selfPid = os.Getpid()

// Record is a view of the next record in a connection's receive ring.
type Record struct {
	// Data is the record's bytes for a PIO record, the inline prefix for a
	// DMA record. It points into shared memory, valid until Release; the
	// peer can still write it, so copy what you must validate.
	Data []byte
	// DMALen is, for a DMA record, the number of bytes to Pull from the
	// sender's buffer; 0 for a PIO record.
	DMALen int
	// DMA tells a DMA record (even of length 0) from a PIO one.
	DMA bool
}

// Conn is one connection: a ring pair between two nodes. At most one
// goroutine sends (Reserve, Commit, Send, SendDMA) and one receives (Peek,
// Pull, Release, Recv) at a time; Close, SetReadDeadline and
// SetWriteDeadline may be called from anywhere.
type Conn struct {
	state atomic.Uint32
	tx    producer
	rx    consumer
	spin  time.Duration

	// The DMA descriptor of the current record (the one rx.peek returned,
	// until Release), read once: dmaOK says it was.
	dmaOK  bool
	dmaLen int
	dmaPid int
	dmaAt  uint64
	dmaOff int
	// dmaEarly: the early wake-up of the current record was given.
	dmaEarly bool
	iovL     unix.Iovec
	iovR     unix.RemoteIovec
	pin      runtime.Pinner

	rdDeadline atomic.Int64 // unix nanoseconds, 0: none
	wrDeadline atomic.Int64

	peer  *peer
	key   connKey
	block uint64
	// Under peer.mu: Close began (closeSent), its CLOSE is in the control
	// ring (closePosted), the peer's CLOSE came (peerClosed), the pair was
	// removed from the peer's table (forgotten).
	closeSent   bool
	closePosted bool
	peerClosed  bool
	forgotten   bool
	err         atomic.Pointer[error]
	watch       atomic.Bool
	wakeAt      int    // sender: the wake-at it asks for
	dmaWakeAt   int    // receiver: the current record's wake-at
	assistTag   uint32 // receiver: tag of its last assist offer (assist.go)
	// assistOffers and assistPushed count the receiver's assist offers
	// and the units the sender pushed for them (receiving goroutine).
	assistOffers, assistPushed uint64
}

func newConn(p *peer, key connKey, block uint64, tx, rx ringMem) *Conn {
	// Both rings notify the peer's node: tx when it has a record for the
	// peer, rx (through our consumer's tail) when the peer waits for room.
	tx.bell = p.bell
	tx.hint, tx.hintBit, tx.hintSum, tx.hintSumBit = p.l.readyHint(p.mem, 1-p.side, key)
	rx.bell, rx.hint, rx.hintBit, rx.hintSum, rx.hintSumBit = tx.bell, tx.hint, tx.hintBit, tx.hintSum, tx.hintSumBit
	c := &Conn{
		tx: newProducer(tx), rx: newConsumer(rx), spin: p.n.f.cfg.SpinBudget,
		peer: p, key: key, block: block, wakeAt: initialEarlyWake,
	}
	if c.spin < 0 {
		c.spin = 0
	}
	return c
}

// LocalAddr is this node's address.
func (c *Conn) LocalAddr() netip.Addr { return c.peer.n.addr }

// RemoteAddr is the peer node's address.
func (c *Conn) RemoteAddr() netip.Addr { return c.peer.addr }

// RingSize is the size of each of the connection's rings.
func (c *Conn) RingSize() int { return int(c.tx.size) }

// MaxRecord is the largest record body the connection carries.
func (c *Conn) MaxRecord() int { return MaxRecord(int(c.tx.size)) }

// DMA reports whether SendDMA really uses DMA towards this peer (false:
// the kernel refused cross-memory access at first contact and SendDMA
// copies through the ring).
func (c *Conn) DMA() bool { return c.peer.dmaOK }

// RingOccupancy is the number of bytes sent and not yet consumed by the
// peer, as far as the peer has published its progress (it publishes in
// batches, so this can lag by a quarter of the ring). It is safe from any
// goroutine (a load balancer reading many connections, say): it loads the
// peer's published tail, then the position of the sender's last Commit
// (an atomic this process keeps); a record being reserved or committed
// at that moment may or may not be counted. A hostile peer's tail yields
// a value in [0, RingSize], never a panic. Zero after Close or a failure.
func (c *Conn) RingOccupancy() int {
	if c.state.Load()&(stClosed|stReset) != 0 {
		return 0
	}
	return c.tx.occupancySnapshot()
}

// Err returns why the connection failed, or nil.
func (c *Conn) Err() error {
	if e := c.err.Load(); e != nil {
		return *e
	}
	return nil
}

// fail records the first failure and wakes the connection's sleepers.
func (c *Conn) fail(err error) {
	c.err.CompareAndSwap(nil, &err)
	c.state.Or(stReset)
	c.breakLocal()
	c.notifyWatcher()
}

// notifyWatcher hands a watched connection whose state changed to
// Node.Wait.
func (c *Conn) notifyWatcher() {
	if !c.watch.Load() {
		return
	}
	n := c.peer.n
	n.mu.Lock()
	n.events = append(n.events, c)
	n.mu.Unlock()
	n.localEvent()
}

func (c *Conn) failed(err error) error {
	c.fail(err)
	return c.Err()
}

// breakLocal wakes the goroutines of this process sleeping on the
// connection (receiver on rx, sender on tx) so that they see a new state.
func (c *Conn) breakLocal() {
	nudge(c.rx.ctl32(offConsArmed))
	nudge(c.tx.ctl32(offProdArmed))
}

func (c *Conn) sendErr(st uint32) error {
	switch {
	case st&stClosed != 0:
		return net.ErrClosed
	case st&stReset != 0:
		return c.Err()
	case st&stPeerClosed != 0:
		return ErrPeerClosed
	}
	return nil
}

func (c *Conn) recvErr(st uint32) error {
	switch {
	case st&stClosed != 0:
		return net.ErrClosed
	case st&stReset != 0:
		return c.Err()
	}
	return nil
}

// timeout converts a deadline into a futex timeout (-1: none).
func timeout(dl *atomic.Int64) (time.Duration, bool) {
	d := dl.Load()
	if d == 0 {
		return -1, false
	}
	left := time.Until(time.Unix(0, d))
	return left, left <= 0
}

// SetReadDeadline bounds Peek and Recv (zero time: no bound). A blocked
// call sees the new deadline at once. Expiry returns an error that wraps
// os.ErrDeadlineExceeded.
func (c *Conn) SetReadDeadline(t time.Time) error {
	c.rdDeadline.Store(unixNano(t))
	if c.state.Load()&stReset == 0 {
		nudge(c.rx.ctl32(offConsArmed))
	}
	return nil
}

// SetWriteDeadline bounds Reserve, Send and SendDMA, like SetReadDeadline.
func (c *Conn) SetWriteDeadline(t time.Time) error {
	c.wrDeadline.Store(unixNano(t))
	if c.state.Load()&stReset == 0 {
		nudge(c.tx.ctl32(offProdArmed))
	}
	return nil
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

var errDeadline = fmt.Errorf("fabric: %w", os.ErrDeadlineExceeded)

// ---- sending -------------------------------------------------------------

// Reserve returns room for a record body of n bytes in the send ring,
// waiting for the peer to make room if needed. Write the body there (for
// the TCP stack: the headers, then the payload straight from the
// application's buffer), then Commit. n must be at most MaxRecord.
func (c *Conn) Reserve(n int) ([]byte, error) {
	if st := c.state.Load(); st != 0 {
		if err := c.sendErr(st); err != nil {
			return nil, err
		}
	}
	buf, ok, err := c.tx.tryReserve(n)
	if ok {
		return buf, nil
	}
	if err != nil {
		if errors.Is(err, ErrRecordTooLarge) {
			return nil, err
		}
		return nil, c.failed(err)
	}
	return c.waitSpace(n)
}

func (c *Conn) waitSpace(n int) ([]byte, error) {
	w := c.tx.ctl32(offProdArmed)
	atomic.OrUint32(w, armWant)
	s := spinner{budget: c.spin}
	for {
		if st := c.state.Load(); st != 0 {
			if err := c.sendErr(st); err != nil {
				return nil, err
			}
		}
		buf, ok, err := c.tx.tryReserve(n)
		if err != nil {
			return nil, c.failed(err)
		}
		if ok {
			atomic.AndUint32(w, ^uint32(armWant))
			return buf, nil
		}
		if atomic.LoadUint32(w)&armWant == 0 {
			// The consumer answered with a tail that was not enough
			// (and cleared the flag): ask again for the next one.
			atomic.OrUint32(w, armWant)
		}
		if s.more() {
			continue
		}
		old := atomic.OrUint32(w, armSleeper|armWant)
		if buf, ok, _ := c.tx.tryReserve(n); ok {
			atomic.AndUint32(w, ^uint32(armWant))
			return buf, nil
		}
		if c.state.Load() != 0 {
			continue
		}
		d, expired := timeout(&c.wrDeadline)
		if expired {
			return nil, errDeadline
		}
		futexWait(w, old|armSleeper|armWant, d)
		s = spinner{budget: c.spin}
	}
}

// Room reports whether a record body of n bytes can be reserved now
// without waiting. For a watched connection (SetWatch) that has no room,
// it also asks the consumer to report its progress: Node.Wait then returns
// the connection when room was made, so an event loop can wait for room
// and records alike. Call it from the sending goroutine; an error shows at
// the next Reserve.
func (c *Conn) Room(n int) bool {
	if c.state.Load() != 0 {
		return true
	}
	if _, ok, err := c.tx.tryReserve(n); ok || err != nil {
		c.tx.resvLen = -1
		return true
	}
	if !c.watch.Load() {
		return false
	}
	atomic.OrUint32(c.tx.ctl32(offProdArmed), armWant|armNode)
	_, ok, err := c.tx.tryReserve(n) // re-check after arming
	c.tx.resvLen = -1
	return ok || err != nil
}

// Commit publishes the reserved record with a body of n bytes (n at most
// what was reserved).
func (c *Conn) Commit(n int) error {
	if st := c.state.Load(); st != 0 {
		if err := c.sendErr(st); err != nil {
			return err
		}
	}
	if c.tx.resvLen < 0 || n < 0 || n > c.tx.resvLen {
		return fmt.Errorf("fabric: commit of %d bytes, %d reserved", n, c.tx.resvLen)
	}
	c.tx.commit(n, kindData)
	return nil
}

// Send sends p as one record (PIO: one copy, from p into the ring).
func (c *Conn) Send(p []byte) error {
	buf, err := c.Reserve(len(p))
	if err != nil {
		return err
	}
	copy(buf, p)
	c.tx.commit(len(p), kindData)
	return nil
}

// SendDMA sends one record made of prefix (copied inline into the ring)
// and p, which the receiver pulls straight from p's memory with
// process_vm_readv. It returns when the receiver is done with p (the
// zero-copy blocking semantics of the seed): it spins briefly, then sleeps
// on a futex until the receiver's completion (which wakes it a little
// before the copy ends).
//
// p must not move while the receiver reads it. Go moves goroutine stacks,
// never heap objects, and p escapes here (it is pinned with
// runtime.Pinner), so the compiler allocates every buffer passed to
// SendDMA on the heap; the pin and a KeepAlive keep it alive until the
// completion.
//
// If SendDMA fails before the completion (a write deadline), the record
// stays in the ring and the receiver may still pull p later: overwriting p
// then changes what it receives. (Unsafe memory it cannot be: a peer
// allowed to use process_vm_readv on us could read any of our memory
// anyway.)
//
// If the peer cannot read our memory (process_vm_readv refused at first
// contact), SendDMA copies prefix and p through the ring instead; it logs
// that once per node.
func (c *Conn) SendDMA(prefix, p []byte) error {
	if !c.peer.dmaOK {
		c.peer.n.warnNoDMA(c.peer.addr)
		buf, err := c.Reserve(len(prefix) + len(p))
		if err != nil {
			return err
		}
		copy(buf[copy(buf, prefix):], p)
		c.tx.commit(len(prefix)+len(p), kindData)
		return nil
	}
	buf, err := c.Reserve(dmaDescLen + len(prefix))
	if err != nil {
		return err
	}
	le := binary.LittleEndian
	le.PutUint32(buf[0:], uint32(selfPid))
	le.PutUint32(buf[4:], 0)
	le.PutUint64(buf[8:], uint64(uintptr(unsafe.Pointer(unsafe.SliceData(p)))))
	le.PutUint64(buf[16:], uint64(len(p)))
	le.PutUint64(buf[24:], uint64(c.wakeAt))
	copy(buf[dmaDescLen:], prefix)
	if len(p) > 0 {
		c.pin.Pin(unsafe.SliceData(p))
	}
	var helps []byte
	if len(p) >= assistMin && c.peer.weAccess {
		// We push part of the record while we wait (assist.go).
		// Announced before the record, so that a receiver spinning for
		// it sees the announcement with it.
		helps = p
		atomic.StoreUint64(c.tx.ctl64(offAssistWant), c.tx.dmaSent+1)
	}
	c.tx.commit(dmaDescLen+len(prefix), kindDMA)
	c.tx.dmaSent++
	err = c.waitDMA(c.tx.dmaSent, len(p), helps)
	if helps != nil {
		atomic.StoreUint64(c.tx.ctl64(offAssistWant), 0)
	}
	c.pin.Unpin()
	runtime.KeepAlive(p)
	return err
}

// waitDMA waits until the receiver has completed DMA record seq. With
// helps (the record's buffer) it pushes the units of the receiver's
// assist offers it claims (assist.go) whenever it is awake.
func (c *Conn) waitDMA(seq uint64, n int, helps []byte) error {
	d := c.tx.ctl64(offDMADone)
	w := c.tx.ctl32(offProdArmed)
	// A short copy is spun through with the full budget: sleeping would
	// cost a wake-up longer than the copy, and a receiver that finds no
	// next record within its own budget falls asleep too.
	spin := c.spin
	predicted := time.Duration(n>>10) * dmaNsPerKiB
	if predicted >= dmaSleepAbove {
		spin = min(c.spin, dmaSpin)
		if helps != nil {
			spin = c.spin // time for the offer to come (assist.go)
		}
	}
	s := spinner{budget: spin}
	woken := false
	raws := 0
	for {
		if int64(atomic.LoadUint64(d)-seq) >= 0 {
			return nil
		}
		if st := c.state.Load(); st != 0 {
			if err := c.sendErr(st); err != nil {
				return err
			}
		}
		if helps != nil && c.assist(helps, seq) {
			// The offer is all claimed: the completion follows within
			// about a unit's copy. Spin for it.
			s = spinner{budget: c.spin}
			continue
		}
		if s.more() {
			continue
		}
		old := atomic.OrUint32(w, armSleeper)
		if int64(atomic.LoadUint64(d)-seq) >= 0 {
			return nil
		}
		if c.state.Load() != 0 {
			continue
		}
		t, expired := timeout(&c.wrDeadline)
		if expired {
			return errDeadline
		}
		if raws < 2 && predicted < rawSleepBelow && t < 0 {
			raws++
			// The copy ends soon: the first two sleeps of a record (to
			// the early wake-up, then to the completion) are raw ones,
			// with no scheduler bookkeeping. Their P is held until the
			// receiver's wake-up, or 2 × rawSleepTimeout in all should
			// the receiver stall; any later sleep of the record goes
			// through the scheduler.
			futexWaitShort(w, old|armSleeper)
		} else {
			futexWait(w, old|armSleeper, t)
		}
		woke := time.Now()
		if helps != nil && c.assist(helps, seq) {
			// Woken by an offer (not the early wake-up): helped; the
			// wake-at steering below does not apply.
			s = spinner{budget: c.spin}
			continue
		}
		first := !woken
		woken = true
		if int64(atomic.LoadUint64(d)-seq) >= 0 {
			if first {
				// The completion was there at the first wake-up: the
				// early wake-up came too late, and the receiver may have
				// waited for our next record. Ask for it earlier.
				c.wakeAt = min(c.wakeAt+lateWakeStep, maxEarlyWake)
			}
			return nil
		}
		if !first {
			s = spinner{}
			continue // a second sleep ends with the completion
		}
		// Woken before the end (the early wake-up, or a nudge): spin a
		// little for the rest of the copy, then sleep again (the
		// completion wakes us), so that a copy slower than predicted (a
		// loaded machine) does not turn into a long spin.
		for int64(atomic.LoadUint64(d)-seq) < 0 && c.state.Load() == 0 && time.Since(woke) < maxWakeSpin {
		}
		// Steer towards spinning about targetWakeSpin after the wake-up
		// (~12 bytes of copy a ns here; halved to damp the loop).
		spun := time.Since(woke)
		c.wakeAt += int((targetWakeSpin - spun).Nanoseconds()) * 6
		c.wakeAt = min(max(c.wakeAt, minEarlyWake), maxEarlyWake)
		if int64(atomic.LoadUint64(d)-seq) >= 0 {
			return nil
		}
		s = spinner{}
	}
}

func (n *Node) warnNoDMA(peer netip.Addr) {
	n.dmaWarn.Do(func() {
		n.f.log.Warn("fabric: the kernel refuses process_vm_readv between these processes; DMA falls back to PIO",
			"node", n.addr, "peer", peer)
	})
}

// ---- receiving -----------------------------------------------------------

// Peek returns the next record without consuming it, waiting for one if
// the ring is empty: it spins for the configured budget, then arms the
// tripwire and sleeps. After the peer closed and every record was read it
// returns io.EOF.
func (c *Conn) Peek() (Record, error) {
	if c.state.Load() == 0 {
		// rx.peek returns the current record again until Release.
		kind, body, err := c.rx.peek()
		if kind == kindData {
			return Record{Data: body}, nil
		}
		if kind != 0 {
			return c.record(kind, body)
		}
		if err != nil {
			return Record{}, c.failed(err)
		}
	}
	kind, body, err := c.waitRecord(false)
	if err != nil {
		return Record{}, err
	}
	return c.record(kind, body)
}

// PeekNoWait is Peek that returns ErrWouldBlock instead of waiting.
func (c *Conn) PeekNoWait() (Record, error) {
	kind, body, err := c.waitRecord(true)
	if err != nil {
		return Record{}, err
	}
	return c.record(kind, body)
}

// Readable reports whether Peek would return at once (a record, or an
// error). Call it from the receiving goroutine.
func (c *Conn) Readable() bool {
	if c.rx.curRec != 0 || c.state.Load() != 0 {
		return true
	}
	return atomic.LoadUint64(c.rx.u64(c.rx.tail&(c.rx.size-1))) != 0
}

// waitRecord waits for the next record (spin, arm, sleep) and returns it
// raw; with noWait it returns ErrWouldBlock instead of waiting.
func (c *Conn) waitRecord(noWait bool) (uint64, []byte, error) {
	w := c.rx.ctl32(offConsArmed)
	s := spinner{budget: c.spin}
	for {
		st := c.state.Load()
		if err := c.recvErr(st); err != nil {
			return 0, nil, err
		}
		kind, body, err := c.rx.peek()
		if kind != 0 {
			return kind, body, nil
		}
		if err != nil {
			return 0, nil, c.failed(err)
		}
		if st&stPeerClosed != 0 {
			// The peer's CLOSE came after its last record, so the empty
			// ring we just read is final.
			return 0, nil, io.EOF
		}
		c.rx.idle(noWait)
		if noWait {
			if !c.watch.Load() {
				return 0, nil, ErrWouldBlock
			}
			// Watched and empty: ask the producer for a hint and a
			// doorbell with the next record (arm, then re-check).
			atomic.OrUint32(w, armNode)
			if kind, body, err := c.rx.peek(); kind != 0 || err != nil {
				if err != nil {
					return 0, nil, c.failed(err)
				}
				return kind, body, nil
			}
			c.rx.idle(true) // the re-check may have stepped over a skip record
			return 0, nil, ErrWouldBlock
		}
		if s.more() {
			continue
		}
		c.rx.idle(true)
		old := atomic.OrUint32(w, armSleeper)
		if kind, body, err := c.rx.peek(); kind != 0 || err != nil {
			if err != nil {
				return 0, nil, c.failed(err)
			}
			return kind, body, nil
		}
		// The re-check may have stepped over a skip record: a producer
		// waiting for that room must see it before we sleep.
		c.rx.idle(true)
		if c.state.Load() != st {
			continue
		}
		d, expired := timeout(&c.rdDeadline)
		if expired {
			return 0, nil, errDeadline
		}
		futexWait(w, old|armSleeper, d)
		s = spinner{budget: c.spin}
	}
}

// record turns a ring record into a Record, reading and checking a DMA
// descriptor exactly once per record.
func (c *Conn) record(kind uint64, body []byte) (Record, error) {
	if kind == kindData {
		return Record{Data: body}, nil
	}
	if c.dmaOK {
		return Record{Data: body[dmaDescLen:], DMALen: c.dmaLen, DMA: true}, nil
	}
	if len(body) < dmaDescLen {
		return Record{}, c.failed(errf(ErrCorrupt, "DMA record of %d bytes", len(body)))
	}
	var d [dmaDescLen]byte
	copy(d[:], body)
	le := binary.LittleEndian
	pid, at, n := int(le.Uint32(d[0:])), le.Uint64(d[8:]), le.Uint64(d[16:])
	if pid != c.peer.pid {
		return Record{}, c.failed(errf(ErrCorrupt, "DMA descriptor names pid %d, the peer is %d", pid, c.peer.pid))
	}
	if n > MaxDMA || at+n < at {
		return Record{}, c.failed(errf(ErrCorrupt, "DMA descriptor of %d bytes at %#x", n, at))
	}
	c.dmaWakeAt = int(min(le.Uint64(d[24:]), n))
	c.dmaPid, c.dmaAt, c.dmaOff, c.dmaEarly = pid, at, 0, false
	c.dmaOK, c.dmaLen = true, int(n)
	return Record{Data: body[dmaDescLen:], DMALen: int(n), DMA: true}, nil
}

// Pull copies the next bytes of the current DMA record from the sender's
// buffer into dst and returns how many; successive calls continue where
// the last stopped. It returns 0 once the record is fully pulled.
func (c *Conn) Pull(dst []byte) (int, error) {
	if !c.dmaOK {
		return 0, ErrNoRecord
	}
	if st := c.state.Load(); st != 0 {
		if err := c.recvErr(st); err != nil {
			return 0, err
		}
	}
	want := min(len(dst), c.dmaLen-c.dmaOff)
	if c.canOfferAssist(want) {
		// The sender spins for this record: it pushes the end while we
		// pull the beginning (assist.go).
		if err := c.pullAssisted(dst, want); err != nil {
			return 0, err
		}
		return want, nil
	}
	done := 0
	c.maybeEarlyWake()
	for done < want {
		k := min(want-done, pullChunk)
		// Stop the chunk where the sender asked to be woken.
		if left := c.dmaLen - c.dmaOff; left > c.dmaWakeAt && left-k < c.dmaWakeAt {
			k = left - c.dmaWakeAt
		}
		c.iovL = unix.Iovec{Base: &dst[done], Len: uint64(k)}
		c.iovR = unix.RemoteIovec{Base: uintptr(c.dmaAt) + uintptr(c.dmaOff), Len: k}
		// A chunk is at most 1 MiB, ~0.1 ms: short enough to skip the
		// scheduler's syscall bookkeeping (see futexWaitShort).
		r, _, errno := syscall.RawSyscall6(unix.SYS_PROCESS_VM_READV, uintptr(c.dmaPid),
			uintptr(unsafe.Pointer(&c.iovL)), 1, uintptr(unsafe.Pointer(&c.iovR)), 1, 0)
		if errno != 0 || int(r) <= 0 {
			if errno == syscall.ESRCH {
				return done, c.failed(ErrPeerDead)
			}
			return done, c.failed(errf(ErrCorrupt, "pulling %d bytes at %#x from pid %d: %v", k, c.dmaAt+uint64(c.dmaOff), c.dmaPid, errno))
		}
		done += int(r)
		c.dmaOff += int(r)
		c.maybeEarlyWake()
	}
	return done, nil
}

// maybeEarlyWake wakes a sender asleep on the current DMA record once
// wake-at bytes or fewer are left to copy: once per record, and not when
// the copy is over (the completion, at Release, wakes it then; a wake-up
// just before the completion only made the sender sleep a second time).
func (c *Conn) maybeEarlyWake() {
	if !c.dmaEarly && c.dmaOff < c.dmaLen && c.dmaLen-c.dmaOff <= c.dmaWakeAt {
		c.dmaEarly = true
		c.rx.earlyWake()
	}
}

// Release consumes the record Peek returned. For a DMA record it posts the
// completion the sender waits for, pulled fully or not.
func (c *Conn) Release() error {
	if c.rx.curRec == 0 {
		return ErrNoRecord
	}
	dma := c.rx.curKind == kindDMA
	c.dmaOK = false
	if c.state.Load()&(stClosed|stReset) != 0 {
		c.rx.curRec = 0 // the ring is not ours to touch any more
		return nil
	}
	if dma {
		c.rx.completeDMA()
	}
	c.rx.release()
	return nil
}

// Recv receives the next record into dst and returns its length: a PIO
// record's bytes, or a DMA record's prefix followed by the pulled bytes.
// If dst is too small it returns ErrShortBuffer and leaves the record.
func (c *Conn) Recv(dst []byte) (int, error) {
	var kind uint64
	var body []byte
	if c.state.Load() == 0 {
		kind, body, _ = c.rx.peek()
	}
	if kind == 0 {
		var err error
		if kind, body, err = c.waitRecord(false); err != nil {
			return 0, err
		}
	}
	if kind == kindData {
		// The common case, a PIO record, without building a Record.
		if len(dst) < len(body) {
			return 0, ErrShortBuffer
		}
		n := copy(dst, body)
		c.rx.release()
		return n, nil
	}
	r, err := c.record(kind, body)
	if err != nil {
		return 0, err
	}
	total := len(r.Data) + r.DMALen
	if len(dst) < total {
		return 0, ErrShortBuffer
	}
	copy(dst, r.Data)
	if r.DMALen > 0 {
		if _, err := c.Pull(dst[len(r.Data):total]); err != nil {
			return 0, err
		}
	}
	c.Release()
	return total, nil
}

// ---- lifecycle -----------------------------------------------------------

// SetWatch makes Node.Wait report this connection when a record arrives
// while it is empty, or when its state changes (on), or stops that (off:
// the ring is disarmed, so the peer's next record rings no doorbell).
// The goroutine calling Node.Wait should be the connection's receiver: it
// reads the connection with PeekNoWait until ErrWouldBlock, which re-arms
// the notification.
func (c *Conn) SetWatch(on bool) {
	if c.watch.Swap(on) == on {
		return
	}
	if !on {
		atomic.AndUint32(c.rx.ctl32(offConsArmed), ^uint32(armNode))
		return
	}
	if c.state.Load() == 0 {
		atomic.OrUint32(c.rx.ctl32(offConsArmed), armNode)
	}
	if c.Readable() {
		c.notifyWatcher()
	}
}

// SetWatchPolled turns the watch on without arming the ring: the caller
// polls the ring itself for now (Readable, Peek), so a record that arrives
// meanwhile rings no doorbell and wakes no sleeping event loop. Before it
// stops polling it must arm the ring, by reading it with PeekNoWait until
// ErrWouldBlock; a state change (close, reset) is reported to Node.Wait
// either way.
func (c *Conn) SetWatchPolled() { c.watch.Store(true) }

// Close closes the connection: blocked calls return net.ErrClosed, the
// peer reads what was sent and then io.EOF. The rings return to the slab
// once both sides have closed.
func (c *Conn) Close() error {
	old := c.state.Or(stClosed)
	if old&stClosed != 0 {
		return net.ErrClosed
	}
	if old&stReset == 0 {
		c.breakLocal()
	}
	p := c.peer
	// The pair's state changes before the peer can see the CLOSE: once it
	// has both CLOSEs, its side may hand the pair to a new connection at
	// once, and its CONNECT must find the pair forgotten here. So the pair
	// is marked closed (and forgotten, if the peer's CLOSE came already)
	// under p.mu first, and only then is the CLOSE posted. The pair's
	// memory and id return to our allocator only after the CLOSE is in the
	// ring (closePosted), so that a CONNECT reusing them always follows it.
	p.mu.Lock()
	c.closeSent = true
	if !c.forgotten {
		// For Inspect: this side closed (its own producer line).
		atomic.OrUint64(c.tx.ctl64(offConnInfo), infoClosed)
	}
	if c.peerClosed || p.dead.Load() {
		p.forgetLocked(c)
	}
	p.mu.Unlock()
	if !p.dead.Load() {
		var theirs uint64
		if int(c.key.side) != p.side {
			theirs = 1
		}
		// Close must not hang on a peer that stopped draining its
		// control ring; it then never learns of the close, which only
		// costs it (and us) this connection's slot.
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		p.sendCtl(ctx, msgClose, c.key.id, theirs, 0)
		cancel()
	}
	p.mu.Lock()
	c.closePosted = true
	if c.forgotten {
		p.freeLocked(c)
	}
	p.mu.Unlock()
	c.SetWatch(false)
	return nil
}
