package fabric

import (
	"context"
	"encoding/binary"
	"math/bits"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Control messages: records of ctlMsgLen bytes on the control rings.
//
//	type u32 | id u32 | a u64 | b u64 | c u64
//
// Types not listed here are reserved (custody and congestion messages will
// come later); a node ignores a type it does not know, so newer nodes can
// talk to older ones.
const (
	ctlMsgLen = 32

	msgConnect = 1 // id in the sender's table, a = ring size, b = block offset in the sender's slab
	msgClose   = 2 // a = 0: id in the sender's table, 1: in the receiver's
	msgBye     = 3 // the sender leaves the fabric: all connections are reset
)

type connKey struct {
	side uint8 // which side's table (and slab) the rings are in
	id   uint32
}

// peer is this node's view of one peer segment.
type peer struct {
	n       *Node
	addr    netip.Addr
	pid     int
	side    int // this node's side
	mem     unsafe.Pointer
	memFd   int
	l       layout
	bellMem unsafe.Pointer // the peer's doorbell page
	bell    *uint32        // the peer's data doorbell word
	ctlBell *uint32        // the peer's control doorbell word (its event loop's)
	dmaOK   bool           // the peer can pull from us with process_vm_readv
	// weAccess: we could read the peer's probe word, so the kernel also
	// lets us process_vm_writev into it (the same ptrace access check):
	// as a DMA sender we may push part of a record (assist.go).
	weAccess bool

	ctlMu sync.Mutex // serialises senders on ctlTx
	ctlTx producer
	ctlRx consumer // used by the node's event loop only

	mu    sync.Mutex
	conns map[connKey]*Conn
	alloc slabAlloc

	ctlRxMu sync.Mutex // held while reading ctlRx
	// quietConnect (under ctlRxMu): the reader is Accept's poll, which
	// takes a queued connection itself, so CONNECT does not announce it.
	quietConnect bool
	dead         atomic.Bool
	released     bool // under mu
	pidfd        *os.File
}

func (n *Node) newPeer(addr netip.Addr, pid, side int, mem unsafe.Pointer, memFd int, l layout, bellFd int, dmaOK, weAccess bool) (*peer, error) {
	bellMem, err := mapShared(bellFd, pageSize) // the caller closes bellFd
	if err != nil {
		return nil, err
	}
	pfd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		unmap(bellMem, pageSize)
		return nil, err
	}
	p := &peer{
		n: n, addr: addr, pid: pid, side: side, mem: mem, memFd: memFd, l: l,
		bellMem: bellMem, bell: (*uint32)(bellMem), ctlBell: (*uint32)(unsafe.Add(bellMem, ctlBellOff)), dmaOK: dmaOK, weAccess: weAccess,
		conns: map[connKey]*Conn{},
		alloc: slabAlloc{size: l.slabSize, maxConn: uint32(l.maxConns)},
		pidfd: os.NewFile(uintptr(pfd), "pidfd"),
	}
	tx := l.ctlRing(mem, side)
	tx.bell = p.ctlBell
	p.ctlTx = newProducer(tx)
	p.ctlRx = newConsumer(l.ctlRing(mem, 1-side))
	p.ctlRx.batch = 0 // publish at once: control senders must not wait for a batch
	return p, nil
}

// start watches the peer's process: a goroutine parks in the netpoller on
// the pidfd (no thread, no periodic wake-up) and fails the peer the moment
// the process exits.
func (p *peer) start() {
	rc, err := p.pidfd.SyscallConn()
	if err != nil {
		p.fail(ErrPeerDead, false)
		return
	}
	go func() {
		err := rc.Read(func(fd uintptr) bool {
			if p.dead.Load() {
				return true
			}
			pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			k, _ := unix.Poll(pfd, 0)
			return k > 0
		})
		if err == nil {
			p.died()
		}
	}()
}

// fail resets the connections to the peer with err and marks it dead. A
// connection whose CLOSE already arrived is left alone unless force: it
// keeps the records the peer sent before closing, readable to io.EOF (our
// mapping keeps the memory alive after the peer is gone). The segment is
// released when the last connection is closed here, or at once with force
// (Node.Close). fail is idempotent.
func (p *peer) fail(err error, force bool) {
	if !p.dead.CompareAndSwap(false, true) {
		return
	}
	p.mu.Lock()
	victims := make([]*Conn, 0, len(p.conns))
	for _, c := range p.conns {
		if force || !c.peerClosed {
			victims = append(victims, c)
		}
	}
	p.mu.Unlock()
	for _, c := range victims {
		c.fail(err)
	}
	p.ctlTx.breakRing()
	p.n.removePeer(p)
	p.n.localEvent()
	p.pidfd.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		if c.closePosted {
			// Closed here, and the peer will never answer: nothing
			// refers to the pair any more.
			p.forgetLocked(c)
		}
	}
	if force || len(p.conns) == 0 {
		p.releaseLocked()
	}
	p.mu.Unlock()
}

// died handles the peer's process exit: control messages it posted before
// dying (a CLOSE after its last records) still count, so they are read
// first.
func (p *peer) died() {
	p.ctlRxMu.Lock()
	p.drainLocked()
	p.ctlRxMu.Unlock()
	p.fail(ErrPeerDead, false)
}

// releaseLocked gives the segment's memory back: private zero pages
// replace the shared ones, so the pages are freed once the peer has let go
// too. The addresses stay mapped for good: an application may still hold
// a view from Reserve or Peek, and touching it must not fault. This costs
// address space only (see docs/fabric.md).
func (p *peer) releaseLocked() {
	if p.released {
		return
	}
	p.released = true
	p.n.mu.Lock()
	delete(p.n.held, p)
	p.n.mu.Unlock()
	replaceWithAnon(p.mem, uintptr(p.l.size))
	replaceWithAnon(p.bellMem, pageSize)
	unix.Close(p.memFd)
}

// errCtlFull: the peer left its control ring full until the caller gave up.
var errCtlFull = &Error{"fabric: peer does not read its control ring", syscall.ETIMEDOUT}

// sendCtl posts one control message, waiting for room if the ring is full,
// until ctx is done.
func (p *peer) sendCtl(ctx context.Context, typ, id uint32, a, b uint64) error {
	p.ctlMu.Lock()
	defer p.ctlMu.Unlock()
	w := p.ctlTx.ctl32(offProdArmed)
	for {
		if p.dead.Load() {
			return ErrPeerDead
		}
		buf, ok, err := p.ctlTx.tryReserve(ctlMsgLen)
		if err != nil {
			p.fail(err, false)
			return err
		}
		if ok {
			le := binary.LittleEndian
			le.PutUint32(buf[0:], typ)
			le.PutUint32(buf[4:], id)
			le.PutUint64(buf[8:], a)
			le.PutUint64(buf[16:], b)
			le.PutUint64(buf[24:], 0)
			p.ctlTx.commit(ctlMsgLen, kindData)
			return nil
		}
		// Full: the peer's event loop is behind. Sleep on its progress; the
		// timeout only bounds a peer that stopped draining without dying.
		old := atomic.OrUint32(w, armSleeper|armWant)
		if _, ok, _ := p.ctlTx.tryReserve(ctlMsgLen); ok {
			p.ctlTx.resvLen = -1
			continue
		}
		if p.dead.Load() {
			return ErrPeerDead
		}
		if ctx.Err() != nil {
			return errCtlFull
		}
		futexWait(w, old|armSleeper|armWant, 100*time.Millisecond)
	}
}

// sendBye tells the peer we leave, waiting at most 50 ms for the control
// ring (another sender, or a peer slow to drain it). It is best effort: a
// peer that does not drain its control ring does not hear of it.
func (p *peer) sendBye() {
	deadline := time.Now().Add(50 * time.Millisecond)
	for !p.ctlMu.TryLock() {
		if p.dead.Load() || time.Now().After(deadline) {
			return
		}
		time.Sleep(100 * time.Microsecond)
	}
	defer p.ctlMu.Unlock()
	for !p.dead.Load() && time.Now().Before(deadline) {
		buf, ok, err := p.ctlTx.tryReserve(ctlMsgLen)
		if err != nil {
			return
		}
		if ok {
			clear(buf)
			binary.LittleEndian.PutUint32(buf, msgBye)
			p.ctlTx.commit(ctlMsgLen, kindData)
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// drainControl handles every control message waiting from the peer and
// reports whether there was any. A malformed control ring fails the whole
// peer: it cannot be blamed on one connection.
func (p *peer) drainControl() bool {
	p.ctlRxMu.Lock()
	defer p.ctlRxMu.Unlock()
	return p.drainLocked()
}

func (p *peer) drainLocked() bool {
	did := false
	for !p.dead.Load() {
		kind, body, err := p.ctlRx.peek()
		if err != nil {
			p.fail(err, false)
			return true
		}
		if kind == 0 {
			p.ctlRx.idle(true)
			return did
		}
		did = true
		if kind != kindData || len(body) != ctlMsgLen {
			p.fail(errf(ErrCorrupt, "control record of kind %d, %d bytes", kind, len(body)), false)
			return true
		}
		// Copy the message out of shared memory before looking at it.
		var m [ctlMsgLen]byte
		copy(m[:], body)
		p.ctlRx.release()
		le := binary.LittleEndian
		p.handle(le.Uint32(m[0:]), le.Uint32(m[4:]), le.Uint64(m[8:]), le.Uint64(m[16:]))
	}
	return true
}

func (p *peer) handle(typ, id uint32, a, b uint64) {
	switch typ {
	case msgConnect:
		p.onConnect(id, a, b)
	case msgClose:
		key := connKey{uint8(1 - p.side), id}
		if a == 1 {
			key.side = uint8(p.side)
		}
		p.onClose(key)
	case msgBye:
		p.fail(ErrPeerDead, false)
	}
}

func (p *peer) onConnect(id uint32, size, block uint64) {
	if err := p.l.checkRingPair(id, block, size); err != nil {
		p.fail(errf(ErrCorrupt, "CONNECT: %v", err), false)
		return
	}
	key := connKey{uint8(1 - p.side), id}
	p.mu.Lock()
	if old := p.conns[key]; old != nil {
		// An honest peer never does this: it reuses a pair only after it
		// has our CLOSE, and we forget the pair before we post that
		// (Conn.Close). The message contradicts that one connection, so
		// it alone fails; the CONNECT is ignored and the peer's other
		// connections carry on.
		p.mu.Unlock()
		old.fail(errf(ErrCorrupt, "CONNECT for connection %d, which is open here", id))
		return
	}
	fwd, back := p.l.connRings(p.mem, 1-p.side, id, block, size)
	c := newConn(p, key, block, back, fwd)
	p.conns[key] = c
	p.mu.Unlock()
	n := p.n
	n.mu.Lock()
	n.acceptQ = append(n.acceptQ, c)
	n.mu.Unlock()
	if !p.quietConnect {
		n.announceAccept()
	}
}

func (p *peer) onClose(key connKey) {
	p.mu.Lock()
	c := p.conns[key]
	if c == nil {
		p.mu.Unlock()
		return
	}
	c.peerClosed = true
	c.state.Or(stPeerClosed)
	if c.closeSent {
		// Close is running or done: forget the pair now (the peer may
		// reuse it as soon as it has our CLOSE), free it if our CLOSE is
		// posted already (otherwise Close frees it after posting).
		p.forgetLocked(c)
		if c.closePosted {
			p.freeLocked(c)
		}
	}
	p.mu.Unlock()
	c.breakLocal()
	c.notifyWatcher()
}

// forgetLocked removes a connection both sides have closed from the
// table, so that a CONNECT reusing its pair is accepted.
func (p *peer) forgetLocked(c *Conn) {
	if p.conns[c.key] == c {
		delete(p.conns, c.key)
	}
	c.forgotten = true
	c.watch.Store(false)
}

// freeLocked hands a forgotten connection's pair back: the side that
// allocated its rings may now reuse them, and the segment of a dead peer
// goes when its last connection does. It must run after every control
// message about the connection was posted: a CONNECT reusing the pair
// must come after them in the control ring.
func (p *peer) freeLocked(c *Conn) {
	if p.dead.Load() && len(p.conns) == 0 {
		p.releaseLocked()
	}
	if int(c.key.side) == p.side && !p.released {
		atomic.StoreUint64(c.tx.ctl64(offConnInfo), 0) // for Inspect: free
		n := 2 * c.rx.size
		if c.tx.pubHead.Load() <= keepPagesBelow && atomic.LoadUint64(c.rx.ctl64(offTail)) <= keepPagesBelow {
			// A short-lived connection touched a page or a few of each
			// ring: keep them for the block's next connection, which
			// then takes no page faults (four per connection, two per
			// process), and skip the madvise. A ring needs only its
			// first header zero: every later header position is zeroed
			// by the producer (the terminator) before it publishes the
			// record before it, so old bytes elsewhere are never read
			// as records.
			atomic.StoreUint64(c.tx.u64(0), 0)
			atomic.StoreUint64(c.rx.u64(0), 0)
		} else {
			// Give the pair's pages back (they read as zeros afterwards,
			// ready for the next connection): a system call on Close,
			// none on Dial.
			unix.Madvise(unsafe.Slice((*byte)(unsafe.Add(p.mem, p.l.slab[p.side]+c.block)), n), unix.MADV_REMOVE)
		}
		p.alloc.release(c.key.id, c.block, n)
	}
}

// keepPagesBelow: a connection that moved at most this many bytes each
// way (as far as we know: our head, the tail the peer's consumer
// published) keeps its ring pages when it is freed. A peer that wrote
// more than it says only keeps more of our memory in use until the
// block's next connection, which it could do anyway.
const keepPagesBelow = 64 << 10

// hints collects the watched connections the peer flagged in our ready
// area. The bits are hints: a hostile peer can set any of them, which
// costs a lookup each, nothing more.
func (p *peer) hints(buf []*Conn) []*Conn {
	area := unsafe.Add(p.mem, p.l.ready[p.side])
	for i := uint64(0); i < p.l.readySums; i++ {
		sw := (*uint64)(unsafe.Add(area, i*8))
		if atomic.LoadUint64(sw) == 0 {
			continue
		}
		sv := atomic.SwapUint64(sw, 0)
		for sv != 0 {
			wi := i*64 + uint64(bits.TrailingZeros64(sv))
			sv &= sv - 1
			if wi >= p.l.readyWords {
				continue
			}
			w := atomic.SwapUint64((*uint64)(unsafe.Add(area, (p.l.readySums+wi)*8)), 0)
			for w != 0 {
				idx := wi*64 + uint64(bits.TrailingZeros64(w))
				w &= w - 1
				if idx >= 2*p.l.maxConns {
					continue
				}
				key := connKey{uint8(idx / p.l.maxConns), uint32(idx % p.l.maxConns)}
				p.mu.Lock()
				c := p.conns[key]
				p.mu.Unlock()
				if c != nil && c.watch.Load() {
					buf = append(buf, c)
				}
			}
		}
	}
	return buf
}
