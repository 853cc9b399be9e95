package fabric

import (
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// DMA assist: both CPUs copy a large DMA record.
//
// A DMA record is one copy, done by the receiver with process_vm_readv,
// while the sender waits in SendDMA for the completion. In a ping-pong on
// a two-CPU machine that is one CPU copying and the other idle, and a
// single process_vm_readv stream moves ~12–13 GB/s here: 4 MiB takes
// ~320 µs, about as long as kernel TCP's two copies pipelined over both
// CPUs. Two copies running at once, one per CPU, finish a 4 MiB record in
// ~155 µs (measured with a spinning helper thread, 16:00 UTC 2026-11-25).
// The waiting sender is the second CPU: it pushes the end of the record
// into the receiver's buffer with process_vm_writev while the receiver
// pulls the beginning.
//
// The protocol, per Pull call of at least assistMin bytes:
//
//  1. The sender of a record of at least assistMin bytes stores the
//     record's sequence number in assistWant (its producer line) before
//     it commits the record, and spins for its spin budget instead of
//     sleeping at once: a receiver spinning for the record offers within
//     a few microseconds. Whenever it is awake until the completion
//     (after a wake-up too) it takes part in the offer. (With 20 µs of
//     spin instead of 50, a loaded machine, one CPU free, made the
//     receiver late more often; waking the sender then cost 5–8 % of the
//     4 MiB round trip, against ~0 with 50 µs.)
//  2. A receiver that sees assistWant equal to the record it is pulling
//     (and whose peer the kernel lets write into it: peer.dmaOK, the same
//     ptrace access check as reading) writes an offer on its consumer line
//     and wakes the sender if it sleeps:
//     the address of its destination, the record offset and length it
//     covers, the record's sequence number, and then the claim word
//     tag<<40 | front<<20 | back: the offer is cut into units of
//     assistUnit bytes, [front, back) not yet claimed.
//  3. Both claim units with compare-and-swap on that word: the receiver
//     from the front (and pulls), the sender from the back (and pushes).
//     Each side claims one unit at a time, so they meet wherever their
//     speeds put the middle; a sender that never comes leaves every unit
//     to the receiver, which then costs nothing more than before.
//  4. After each unit the sender stores tag<<40 | units done (assistDone,
//     its producer line); on a failed push it sets assistFailed and stops.
//     The receiver, once the units are all claimed, waits until the
//     sender has done the ones it claimed (it claims from the back one at
//     a time and finishes each before the next, so the done count says
//     which), pulls any the sender failed, and returns. The completion
//     follows at Release as before.
//
// Hostile peers: the sender checks the offer against its own buffer
// (offset and length inside p, units in range) and only ever reads p;
// where it writes in the receiver is the receiver's business, and the
// kernel confines process_vm_writev to the receiver's own memory (a peer
// allowed that access could write anywhere in us anyway). The receiver
// treats a claim word that is not its own tag, or out of range, as a
// peer that broke the protocol and pulls everything left itself; a done
// word is only ever a reason to stop waiting. A sender that claims units
// and never reports them stalls that Pull (deadline, Close and peer death
// end it), as a sender that never sends would.
const (
	// assistMin is the smallest pull offered to the sender. Below it the
	// sender sleeps through the copy as before: DMA's point there is the
	// sender's CPU (docs/fabric.md §5), and at 1 MiB a split saves ~40 µs
	// of ~85.
	assistMin = 2 << 20
	// assistUnit is what one claim covers: ~20 µs of copy, so that the
	// two sides finish within about that of each other, and few enough
	// system calls (16 for 4 MiB) that their fixed cost stays small.
	assistUnit     = 256 << 10
	assistTagMask  = 1<<24 - 1
	assistUnitMask = 1<<20 - 1
	assistFailed   = 1 << 39

	// Consumer line (line 3) of a ring's control block: the offer. The
	// claim word is written by both sides, always by compare-and-swap.
	offAssistW    = 200 // tag<<40 | front<<20 | back
	offAssistAddr = 208 // receiver's destination address of offset 0 of the offer
	offAssistOff  = 216 // offset of the offer in the record's payload
	offAssistLen  = 224 // bytes in the offer
	offAssistSeq  = 232 // the DMA record the offer is for (1, 2, ...)
	// Producer line (line 2): the sender's side.
	offAssistWant = 152 // sequence number of the record whose sender spins for an offer; 0: none
	offAssistDone = 160 // tag<<40 | assistFailed? | units pushed
)

// canOfferAssist reports whether the current pull of want bytes is worth
// splitting and the sender is waiting to help.
func (c *Conn) canOfferAssist(want int) bool {
	return want >= assistMin && want/assistUnit < assistUnitMask && c.peer.dmaOK &&
		atomic.LoadUint64(c.rx.ctl64(offAssistWant)) == c.rx.dmaDone+1
}

// pullAssisted pulls want bytes of the current DMA record into dst (at
// least want long) together with the sender (see the protocol above).
func (c *Conn) pullAssisted(dst []byte, want int) error {
	units := (want + assistUnit - 1) / assistUnit
	c.assistTag = (c.assistTag + 1) & assistTagMask
	if c.assistTag == 0 {
		c.assistTag = 1
	}
	tag := uint64(c.assistTag)
	base := c.dmaOff
	// dst is heap memory: Pull stores its address in c.iovL, so every
	// caller's buffer escapes, and the Go heap does not move.
	atomic.StoreUint64(c.rx.ctl64(offAssistAddr), uint64(uintptr(unsafe.Pointer(unsafe.SliceData(dst)))))
	atomic.StoreUint64(c.rx.ctl64(offAssistOff), uint64(base))
	atomic.StoreUint64(c.rx.ctl64(offAssistLen), uint64(want))
	atomic.StoreUint64(c.rx.ctl64(offAssistSeq), c.rx.dmaDone+1)
	wp := c.rx.ctl64(offAssistW)
	atomic.StoreUint64(wp, tag<<40|uint64(units))
	c.assistOffers++
	// A sender asleep in SendDMA (it gave up waiting for the offer) still
	// has most of the copy ahead to help with: wake it.
	c.rx.earlyWake()
	unit := func(u int) error {
		lo := u * assistUnit
		return c.pullRange(dst[lo:min(lo+assistUnit, want)], base+lo)
	}
	next := 0 // our front
	back := units
	for {
		w := atomic.LoadUint64(wp)
		f, b := int(w>>20&assistUnitMask), int(w&assistUnitMask)
		if w>>40 != tag || f != next || b > units || b < f {
			// Not what we or an honest sender wrote: take the rest.
			for ; next < units; next++ {
				if err := unit(next); err != nil {
					return err
				}
			}
			c.dmaOff = base + want
			return nil
		}
		if f == b {
			back = b
			break
		}
		if !atomic.CompareAndSwapUint64(wp, w, w+1<<20) {
			continue
		}
		if err := unit(next); err != nil {
			return err
		}
		next++
		if b == units {
			// The sender has not started (it may have given up and
			// slept): keep the early wake-up going.
			c.dmaOff = base + min(next*assistUnit, want)
			c.maybeEarlyWake()
		}
	}
	if theirs := units - back; theirs > 0 {
		pushed, failed, err := c.waitAssist(tag, theirs)
		if err != nil {
			return err
		}
		c.assistPushed += uint64(pushed)
		if failed {
			for u := back; u < units-pushed; u++ {
				if err := unit(u); err != nil {
					return err
				}
			}
		}
	}
	c.dmaOff = base + want
	return nil
}

// waitAssist waits until the sender reports the units it claimed for the
// offer tag (theirs of them) pushed, or a failure.
func (c *Conn) waitAssist(tag uint64, theirs int) (pushed int, failed bool, err error) {
	dw := c.rx.ctl64(offAssistDone)
	w := c.rx.ctl32(offConsArmed)
	s := spinner{budget: c.spin}
	for {
		d := atomic.LoadUint64(dw)
		if d>>40 == tag {
			k := int(d & assistUnitMask)
			if d&assistFailed != 0 {
				return min(k, theirs), true, nil
			}
			if k >= theirs {
				return theirs, false, nil
			}
		}
		if st := c.state.Load(); st != 0 {
			if err := c.recvErr(st); err != nil {
				return 0, false, err
			}
		}
		if s.more() {
			continue
		}
		// The sender still pushes (it may have started late, or been
		// descheduled): sleep until it reports (it wakes us after each
		// unit when we are armed), as waitRecord sleeps for a record.
		old := atomic.OrUint32(w, armSleeper)
		if d := atomic.LoadUint64(dw); d>>40 == tag && (d&assistFailed != 0 || int(d&assistUnitMask) >= theirs) {
			continue // re-check after arming
		}
		if c.state.Load() != 0 {
			continue
		}
		t, expired := timeout(&c.rdDeadline)
		if expired {
			return 0, false, errDeadline
		}
		futexWait(w, old|armSleeper, t)
		s = spinner{budget: c.spin}
	}
}

// pullRange copies len(dst) bytes at offset off of the current DMA
// record's payload into dst, in calls of at most pullChunk bytes.
func (c *Conn) pullRange(dst []byte, off int) error {
	for done := 0; done < len(dst); {
		k := min(len(dst)-done, pullChunk)
		c.iovL = unix.Iovec{Base: &dst[done], Len: uint64(k)}
		c.iovR = unix.RemoteIovec{Base: uintptr(c.dmaAt) + uintptr(off+done), Len: k}
		r, _, errno := syscall.RawSyscall6(unix.SYS_PROCESS_VM_READV, uintptr(c.dmaPid),
			uintptr(unsafe.Pointer(&c.iovL)), 1, uintptr(unsafe.Pointer(&c.iovR)), 1, 0)
		if errno != 0 || int(r) <= 0 {
			if errno == syscall.ESRCH {
				return c.failed(ErrPeerDead)
			}
			return c.failed(errf(ErrCorrupt, "pulling %d bytes at %#x from pid %d: %v", k, c.dmaAt+uint64(off+done), c.dmaPid, errno))
		}
		done += int(r)
	}
	return nil
}

// assist is the sender's side, called from waitDMA while record seq of
// p is outstanding: it claims units from the back of the receiver's
// current offer for seq and pushes them, until none is left, and reports
// whether it pushed any. An offer that does not fit p is left to the
// receiver, and so is the rest of one whose push failed.
func (c *Conn) assist(p []byte, seq uint64) bool {
	wp := c.tx.ctl64(offAssistW)
	doneW := c.tx.ctl64(offAssistDone)
	var tag, pushed uint64
	for {
		w := atomic.LoadUint64(wp)
		f, b := w>>20&assistUnitMask, w&assistUnitMask
		if f >= b || atomic.LoadUint64(c.tx.ctl64(offAssistSeq)) != seq {
			return pushed > 0
		}
		addr := atomic.LoadUint64(c.tx.ctl64(offAssistAddr))
		off := atomic.LoadUint64(c.tx.ctl64(offAssistOff))
		n := atomic.LoadUint64(c.tx.ctl64(offAssistLen))
		if n == 0 || off > uint64(len(p)) || n > uint64(len(p))-off || addr+n < addr ||
			b > (n+assistUnit-1)/assistUnit {
			return pushed > 0 // not an offer for this buffer: the receiver copies
		}
		if !atomic.CompareAndSwapUint64(wp, w, w-1) {
			continue
		}
		if t := w >> 40; t != tag {
			tag, pushed = t, 0
		}
		lo := (b - 1) * assistUnit
		hi := min(lo+assistUnit, n)
		if !c.push(p[off+lo:off+hi], addr+lo) {
			atomic.StoreUint64(doneW, tag<<40|assistFailed|pushed)
			c.wakeReceiver()
			return true
		}
		pushed++
		atomic.StoreUint64(doneW, tag<<40|pushed)
		c.wakeReceiver()
	}
}

// wakeReceiver wakes the receiver if it sleeps waiting for our pushes
// (the done word was stored before, sequentially consistent: the Dekker
// pattern of producer.notify).
func (c *Conn) wakeReceiver() {
	w := c.tx.ctl32(offConsArmed)
	if atomic.LoadUint32(w)&armSleeper != 0 {
		c.tx.wakeArmed(w)
	}
}

// push writes src into the receiver's memory at addr (at most one unit,
// ~20 µs: a raw system call, like the receiver's pulls).
func (c *Conn) push(src []byte, addr uint64) bool {
	local := unix.Iovec{Base: &src[0], Len: uint64(len(src))}
	remote := unix.RemoteIovec{Base: uintptr(addr), Len: len(src)}
	r, _, errno := syscall.RawSyscall6(unix.SYS_PROCESS_VM_WRITEV, uintptr(c.peer.pid),
		uintptr(unsafe.Pointer(&local)), 1, uintptr(unsafe.Pointer(&remote)), 1, 0)
	return errno == 0 && int(r) == len(src)
}
