package fabric

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Node is one member of a fabric, with one address. Its methods are safe
// for concurrent use.
type Node struct {
	f    *Fabric
	addr netip.Addr
	gen  uint64
	// probe is a word the peers read with process_vm_readv at first
	// contact to learn whether the kernel lets them pull from us.
	probe uint64
	ln    *net.UnixListener

	// The doorbell page: its first word (bell) is the futex Node.Wait
	// sleeps on, rung for data rings armed with armNode and for local
	// events; the word at ctlBellOff (ctlBell) is the event loop's, rung
	// for control rings only. Two words, so that a record on a data ring
	// does not wake the event loop and a control message does not wake
	// Node.Wait: on a two-CPU machine every needless wake-up preempts a
	// spinning reader (docs/fabric.md §4).
	//
	// Peers get the page's memfd at first contact.
	bellFd  int
	bellMem unsafe.Pointer
	bell    *uint32
	ctlBell *uint32

	mu       sync.Mutex
	peers    map[netip.Addr]*peer
	peerList []*peer        // copy-on-write snapshot for the event loop
	held     map[*peer]bool // peers whose segment is still mapped, dead or alive
	pending  map[netip.Addr]bool
	incoming map[netip.Addr]bool
	acceptQ  []*Conn
	acceptCh chan struct{}
	events   []*Conn // watched connections whose state changed, for Wait

	dmaWarn sync.Once
	woken   atomic.Bool // Wake was called: the next Wait returns at once
	// bellSleepers counts the Waits in (or about to enter) their futex
	// sleep on bell: a local event rings the futex only for them.
	bellSleepers atomic.Int32
	// ctlLease: until this time (nanoseconds on born's monotonic clock) a
	// caller polls the control rings itself (HoldControl), so the event
	// loop leaves them unarmed.
	ctlLease  atomic.Int64
	born      time.Time
	closed    atomic.Bool
	done      chan struct{}
	serveDone chan struct{}
}

func newNode(f *Fabric, addr netip.Addr, ln *net.UnixListener) (*Node, error) {
	fd, err := newSealedMemfd("ultcp-doorbell", pageSize)
	if err != nil {
		return nil, fmt.Errorf("fabric: doorbell: %w", err)
	}
	mem, err := mapShared(fd, pageSize)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("fabric: doorbell: %w", err)
	}
	n := &Node{
		f: f, addr: addr, gen: rand.Uint64() | 1, ln: ln,
		bellFd: fd, bellMem: mem, bell: (*uint32)(mem), ctlBell: (*uint32)(unsafe.Add(mem, ctlBellOff)),
		peers: map[netip.Addr]*peer{}, held: map[*peer]bool{}, pending: map[netip.Addr]bool{}, incoming: map[netip.Addr]bool{},
		acceptCh: make(chan struct{}, 1), done: make(chan struct{}), serveDone: make(chan struct{}), born: time.Now(),
	}
	n.probe = n.gen
	go n.listen()
	go n.serve()
	return n, nil
}

// Addr is the node's address.
func (n *Node) Addr() netip.Addr { return n.addr }

// Fabric returns the fabric the node belongs to.
func (n *Node) Fabric() *Fabric { return n.f }

// ---- first contact -------------------------------------------------------

// The hello exchange over the node's Unix socket (all little-endian):
//
//	dialler → listener: hello  {magic, version, addr, gen, probe, ctlRing, maxConns, slab}
//	                    + SCM_RIGHTS [segment memfd, dialler's doorbell memfd]
//	listener → dialler: reply  {magic, status, addr, gen, probe, canRead}
//	                    + SCM_RIGHTS [listener's doorbell memfd]
//	dialler → listener: ack    {magic, status, canRead}
//
// canRead says whether the sender of the message could read the other's
// probe word with process_vm_readv, i.e. whether the other may use DMA
// towards it.
const (
	helloLen = 64
	replyLen = 48
	ackLen   = 16

	statusOK    = 0
	statusRetry = 1 // simultaneous first contact: the lower address's segment wins
	statusError = 2
)

var errRetry = errors.New("fabric: simultaneous first contact, retry")

// peerFor returns the live peer at addr, making first contact if needed.
func (n *Node) peerFor(ctx context.Context, addr netip.Addr) (*peer, error) {
	for {
		if n.closed.Load() {
			return nil, net.ErrClosed
		}
		n.mu.Lock()
		p := n.peers[addr]
		if p != nil && !p.dead.Load() {
			n.mu.Unlock()
			return p, nil
		}
		if n.pending[addr] || n.incoming[addr] {
			n.mu.Unlock()
			if err := sleepCtx(ctx, time.Millisecond); err != nil {
				return nil, err
			}
			continue
		}
		n.pending[addr] = true
		n.mu.Unlock()
		p, err := n.contact(ctx, addr)
		n.mu.Lock()
		delete(n.pending, addr)
		if err == nil {
			n.installLocked(p)
		}
		n.mu.Unlock()
		if err == nil {
			p.start()
			return p, nil
		}
		if !errors.Is(err, errRetry) {
			return nil, err
		}
		if err := sleepCtx(ctx, time.Millisecond); err != nil {
			return nil, err
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func (n *Node) params() params {
	c := &n.f.cfg
	return params{uint64(c.ControlRingSize), uint64(c.MaxConns), uint64(c.SlabSize)}
}

// contact makes first contact with addr: creates and offers the segment.
func (n *Node) contact(ctx context.Context, addr netip.Addr) (*peer, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "unix", n.f.sockPath(addr))
	if err != nil {
		if isNoNode(err) {
			return nil, errf(ErrNoNode, "%v", addr)
		}
		return nil, fmt.Errorf("fabric: contacting %v: %w", addr, err)
	}
	uc := nc.(*net.UnixConn)
	defer uc.Close()
	setHandshakeDeadline(ctx, uc)
	pid, err := peerPid(uc)
	if err != nil {
		return nil, fmt.Errorf("fabric: contacting %v: %w", addr, err)
	}
	l, err := makeLayout(n.params())
	if err != nil {
		return nil, err
	}
	fd, err := newSealedMemfd("ultcp-segment", int64(l.size))
	if err != nil {
		return nil, fmt.Errorf("fabric: creating segment: %w", err)
	}
	mem, err := mapShared(fd, uintptr(l.size))
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("fabric: mapping segment: %w", err)
	}
	ok := false
	var peerBell int = -1
	defer func() {
		if !ok {
			unmap(mem, uintptr(l.size))
			unix.Close(fd)
			if peerBell >= 0 {
				unix.Close(peerBell)
			}
		}
	}()
	l.writeHeader(mem)
	writeSide(mem, 0, os.Getpid(), n.gen, n.addr.As4())

	le := binary.LittleEndian
	var hello [helloLen]byte
	le.PutUint64(hello[0:], segMagic)
	le.PutUint32(hello[8:], segVersion)
	a4 := n.addr.As4()
	copy(hello[12:16], a4[:])
	le.PutUint64(hello[16:], n.gen)
	le.PutUint64(hello[24:], uint64(uintptr(unsafe.Pointer(&n.probe))))
	le.PutUint64(hello[32:], l.ctlRingSize)
	le.PutUint64(hello[40:], l.maxConns)
	le.PutUint64(hello[48:], l.slabSize)
	if _, _, err := uc.WriteMsgUnix(hello[:], unix.UnixRights(fd, n.bellFd), nil); err != nil {
		return nil, fmt.Errorf("fabric: hello to %v: %w", addr, err)
	}
	var reply [replyLen]byte
	fds, m, err := readMsg(uc, reply[:], 1)
	if err != nil {
		return nil, fmt.Errorf("fabric: reply from %v: %w", addr, err)
	}
	if len(fds) == 1 {
		peerBell = fds[0]
	}
	if m != replyLen || le.Uint64(reply[0:]) != segMagic {
		return nil, fmt.Errorf("fabric: bad reply from %v", addr)
	}
	switch le.Uint32(reply[8:]) {
	case statusOK:
	case statusRetry:
		return nil, errRetry
	default:
		return nil, fmt.Errorf("fabric: %v refused the segment", addr)
	}
	if got := netip.AddrFrom4([4]byte(reply[12:16])); got != addr {
		return nil, fmt.Errorf("fabric: node at %v's socket says it is %v", addr, got)
	}
	if peerBell < 0 {
		return nil, fmt.Errorf("fabric: reply from %v carries no doorbell", addr)
	}
	if err := checkSealedMemfd(peerBell, pageSize); err != nil {
		return nil, fmt.Errorf("fabric: doorbell of %v: %w", addr, err)
	}
	peerGen := le.Uint64(reply[16:])
	theyReadUs := le.Uint32(reply[32:]) == 1
	weReadThem := !n.f.cfg.NoDMA && canPull(pid, uintptr(le.Uint64(reply[24:])), peerGen)
	var ack [ackLen]byte
	le.PutUint64(ack[0:], segMagic)
	le.PutUint32(ack[8:], statusOK)
	le.PutUint32(ack[12:], b2u(weReadThem))
	if _, err := uc.Write(ack[:]); err != nil {
		return nil, fmt.Errorf("fabric: ack to %v: %w", addr, err)
	}
	p, err := n.newPeer(addr, pid, 0, mem, fd, l, peerBell, theyReadUs, weReadThem)
	if err != nil {
		return nil, err
	}
	unix.Close(peerBell)
	peerBell = -1
	ok = true
	return p, nil
}

func b2u(b bool) uint32 {
	if b {
		return 1
	}
	return 0
}

func setHandshakeDeadline(ctx context.Context, c net.Conn) {
	dl := time.Now().Add(5 * time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(dl) {
		dl = d
	}
	c.SetDeadline(dl)
}

// readMsg reads one message and the descriptors passed with it. Any
// descriptor beyond want is closed at once, so a peer cannot make us leak
// them.
func readMsg(uc *net.UnixConn, buf []byte, want int) (fds []int, n int, err error) {
	oob := make([]byte, unix.CmsgSpace(4*8))
	n, oobn, _, _, err := uc.ReadMsgUnix(buf, oob)
	if err != nil {
		return nil, 0, err
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return nil, 0, err
	}
	for _, m := range msgs {
		got, err := unix.ParseUnixRights(&m)
		if err != nil {
			continue
		}
		for _, fd := range got {
			if len(fds) < want {
				fds = append(fds, fd)
			} else {
				unix.Close(fd)
			}
		}
	}
	return fds, n, nil
}

// canPull reports whether process_vm_readv may read the 8-byte probe word
// at addr in process pid, and whether it holds want.
func canPull(pid int, addr uintptr, want uint64) bool {
	var got uint64
	local := unix.Iovec{Base: (*byte)(unsafe.Pointer(&got)), Len: 8}
	remote := unix.RemoteIovec{Base: addr, Len: 8}
	n, err := unix.ProcessVMReadv(pid, []unix.Iovec{local}, []unix.RemoteIovec{remote}, 0)
	return err == nil && n == 8 && got == want
}

// listen accepts first contacts (and liveness probes) on the node socket.
func (n *Node) listen() {
	for {
		uc, err := n.ln.AcceptUnix()
		if err != nil {
			if n.closed.Load() {
				return
			}
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		go n.handleHello(uc)
	}
}

func (n *Node) handleHello(uc *net.UnixConn) {
	defer uc.Close()
	uc.SetDeadline(time.Now().Add(5 * time.Second))
	le := binary.LittleEndian
	var hello [helloLen]byte
	fds, m, err := readMsg(uc, hello[:], 2)
	closeAll := func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}
	if err != nil || m == 0 {
		closeAll() // a liveness probe, or a dialler that gave up
		return
	}
	reply := func(status uint32) {
		var r [replyLen]byte
		le.PutUint64(r[0:], segMagic)
		le.PutUint32(r[8:], status)
		uc.Write(r[:])
	}
	if m != helloLen || len(fds) != 2 || le.Uint64(hello[0:]) != segMagic || le.Uint32(hello[8:]) != segVersion {
		closeAll()
		reply(statusError)
		return
	}
	from := netip.AddrFrom4([4]byte(hello[12:16]))
	if !n.f.cfg.Subnet.Contains(from) || from == n.addr {
		closeAll()
		reply(statusError)
		return
	}
	l, err := makeLayout(params{le.Uint64(hello[32:]), le.Uint64(hello[40:]), le.Uint64(hello[48:])})
	if err != nil {
		closeAll()
		reply(statusError)
		return
	}
	segFd, peerBell := fds[0], fds[1]
	if checkSealedMemfd(segFd, int64(l.size)) != nil || checkSealedMemfd(peerBell, pageSize) != nil {
		closeAll()
		reply(statusError)
		return
	}
	pid, err := peerPid(uc)
	if err != nil {
		closeAll()
		return
	}
	mem, err := mapShared(segFd, uintptr(l.size))
	if err != nil {
		closeAll()
		reply(statusError)
		return
	}
	installed := false
	defer func() {
		if !installed {
			unmap(mem, uintptr(l.size))
			closeAll()
		}
	}()
	if l.checkHeader(mem) != nil {
		reply(statusError)
		return
	}

	n.mu.Lock()
	if n.incoming[from] || (n.pending[from] && n.addr.Less(from)) {
		// Our own segment to them is on its way and wins.
		n.mu.Unlock()
		reply(statusRetry)
		return
	}
	old := n.peers[from]
	n.incoming[from] = true
	n.mu.Unlock()
	defer func() {
		n.mu.Lock()
		delete(n.incoming, from)
		n.mu.Unlock()
	}()
	if old != nil {
		// A new process holds the address: the old one is gone, or left
		// without saying so.
		old.fail(ErrPeerDead, false)
	}

	peerGen := le.Uint64(hello[16:])
	weReadThem := !n.f.cfg.NoDMA && canPull(pid, uintptr(le.Uint64(hello[24:])), peerGen)
	writeSide(mem, 1, os.Getpid(), n.gen, n.addr.As4())
	var r [replyLen]byte
	le.PutUint64(r[0:], segMagic)
	le.PutUint32(r[8:], statusOK)
	a4 := n.addr.As4()
	copy(r[12:16], a4[:])
	le.PutUint64(r[16:], n.gen)
	le.PutUint64(r[24:], uint64(uintptr(unsafe.Pointer(&n.probe))))
	le.PutUint32(r[32:], b2u(weReadThem))
	if _, _, err := uc.WriteMsgUnix(r[:], unix.UnixRights(n.bellFd), nil); err != nil {
		return
	}
	var ack [ackLen]byte
	if k, err := io_ReadFull(uc, ack[:]); err != nil || k != ackLen || le.Uint64(ack[0:]) != segMagic || le.Uint32(ack[8:]) != statusOK {
		return
	}
	p, err := n.newPeer(from, pid, 1, mem, segFd, l, peerBell, le.Uint32(ack[12:]) == 1, weReadThem)
	if err != nil {
		return
	}
	unix.Close(peerBell)
	installed = true
	n.mu.Lock()
	n.installLocked(p)
	n.mu.Unlock()
	p.start()
}

func io_ReadFull(c net.Conn, b []byte) (int, error) {
	got := 0
	for got < len(b) {
		k, err := c.Read(b[got:])
		got += k
		if err != nil {
			return got, err
		}
	}
	return got, nil
}

func (n *Node) installLocked(p *peer) {
	n.peers[p.addr] = p
	n.held[p] = true
	n.peerList = append(n.peerList[:len(n.peerList):len(n.peerList)], p)
	if n.closed.Load() {
		go p.fail(net.ErrClosed, true)
	}
	ringBell(n.ctlBell) // the event loop must arm the new control ring
}

func (n *Node) removePeer(p *peer) {
	n.mu.Lock()
	if n.peers[p.addr] == p {
		delete(n.peers, p.addr)
	}
	list := make([]*peer, 0, len(n.peerList))
	for _, q := range n.peerList {
		if q != p {
			list = append(list, q)
		}
	}
	n.peerList = list
	n.mu.Unlock()
}

// ---- connections ---------------------------------------------------------

// ConnConfig chooses a connection's properties at Dial.
type ConnConfig struct {
	// RingSize is the size of each of the two rings, rounded up to a power
	// of two in [MinRingSize, MaxRingSize]. Default DefaultRingSize. The
	// largest record is MaxRecord(RingSize).
	RingSize int
}

// Dial opens a connection to the node at remote. The first Dial to a node
// makes first contact (a few system calls); later ones take a ring pair
// from the segment's slab and post a CONNECT on the control ring, without
// waiting for the peer: the connection can carry data at once, and the
// peer's Accept returns it. The peer's accept queue is bounded only by the
// number of connections a side may open (Config.MaxConns), so there is no
// refusal.
func (n *Node) Dial(ctx context.Context, remote netip.Addr, cc ConnConfig) (*Conn, error) {
	size, err := ringSizeFor(cc.RingSize)
	if err != nil {
		return nil, err
	}
	p, err := n.peerFor(ctx, remote.Unmap())
	if err != nil {
		return nil, err
	}
	if uint64(2*size) > p.l.slabSize {
		return nil, fmt.Errorf("fabric: ring size %d does not fit the %d-byte slab", size, p.l.slabSize)
	}
	p.mu.Lock()
	id, ok := p.alloc.allocID()
	if !ok {
		p.mu.Unlock()
		return nil, &Error{fmt.Sprintf("fabric: %d connections to %v already open", p.l.maxConns, remote), syscall.ENOBUFS}
	}
	block, ok := p.alloc.allocBlock(uint64(2 * size))
	if !ok {
		p.alloc.ids = append(p.alloc.ids, id)
		p.mu.Unlock()
		return nil, &Error{fmt.Sprintf("fabric: slab to %v is full", remote), syscall.ENOBUFS}
	}
	fwd, back := p.l.connRings(p.mem, p.side, id, block, uint64(size))
	// The control blocks live outside the slab and are cleared; the data
	// areas are zero (fresh, or punched out at release), and stay
	// untouched until data flows.
	clear(unsafe.Slice((*byte)(fwd.ctl), 2*ctlBlockSize))
	atomic.StoreUint64(fwd.ctl64(offConnBlock), block)
	atomic.StoreUint64(fwd.ctl64(offConnInfo), uint64(size)|infoOpen)
	c := newConn(p, connKey{uint8(p.side), id}, block, fwd, back)
	p.conns[c.key] = c
	p.mu.Unlock()
	if err := p.sendCtl(ctx, msgConnect, id, uint64(size), block); err != nil {
		// The CONNECT was not posted: the peer never heard of the pair,
		// so it goes straight back to the allocator.
		c.fail(err)
		c.state.Or(stClosed)
		p.mu.Lock()
		c.closeSent, c.closePosted = true, true
		p.forgetLocked(c)
		p.freeLocked(c)
		p.mu.Unlock()
		return nil, err
	}
	return c, nil
}

func ringSizeFor(n int) (int, error) {
	if n == 0 {
		n = DefaultRingSize
	}
	if n < 0 || n > MaxRingSize {
		return 0, fmt.Errorf("fabric: ring size %d not in [%d, %d]", n, MinRingSize, MaxRingSize)
	}
	if n < MinRingSize {
		n = MinRingSize
	}
	return 1 << bits.Len(uint(n-1)), nil
}

// Accept returns the next connection a peer opened to this node. While
// none is queued it reads the peers' control rings itself, spinning for
// the spin budget, so that a CONNECT posted while Accept waits is taken
// at once instead of through the event loop's futex wake-up (tens of
// microseconds, more when both CPUs are busy spinning); then it sleeps
// until the event loop queues one. A ctx that is already done makes
// Accept a poll: the control rings are read once, nothing waits.
func (n *Node) Accept(ctx context.Context) (*Conn, error) {
	s := spinner{budget: n.f.cfg.SpinBudget}
	for {
		if n.closed.Load() {
			return nil, net.ErrClosed
		}
		if c := n.dequeue(); c != nil {
			return c, nil
		}
		n.pollControl()
		if c := n.dequeue(); c != nil {
			// The CONNECTs this poll queued were not announced (we take
			// them): announce those left for other callers.
			if n.queued() {
				n.announceAccept()
			}
			return c, nil
		}
		if err := ctx.Err(); err != nil {
			return nil, err // a poll: the queue and the rings were read
		}
		if s.more() {
			continue
		}
		select {
		case <-n.acceptCh:
		case <-n.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// dequeue takes the first connection of the accept queue, or nil.
func (n *Node) dequeue() *Conn {
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.acceptQ) == 0 {
		return nil
	}
	c := n.acceptQ[0]
	n.acceptQ[0] = nil
	n.acceptQ = n.acceptQ[1:]
	return c
}

func (n *Node) queued() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.acceptQ) > 0
}

// announceAccept tells Accept callers asleep and Node.Wait that the
// accept queue holds a connection.
func (n *Node) announceAccept() {
	select {
	case n.acceptCh <- struct{}{}:
	default:
	}
	n.localEvent()
}

// pollControl handles the control messages waiting on every peer's
// control ring, as the event loop does, from Accept's goroutine. A ring
// the event loop (or another caller) is reading is skipped: it is being
// served. The connections it queues are not announced (no doorbell, which
// would wake Node.Wait's sleeper for a connection Accept takes at once):
// Accept announces what it leaves in the queue.
func (n *Node) pollControl() {
	n.mu.Lock()
	peers := n.peerList
	n.mu.Unlock()
	for _, p := range peers {
		if p.ctlRxMu.TryLock() {
			p.quietConnect = true
			p.drainLocked()
			p.quietConnect = false
			p.ctlRxMu.Unlock()
		}
	}
}

// Wake makes the Wait in progress, or else the next one, return at once
// (with whatever is ready, possibly nothing). It is safe from any goroutine
// and allocates nothing: the way for a program to kick its own event loop.
func (n *Node) Wake() {
	n.woken.Store(true)
	n.localEvent()
}

// Wait blocks until a watched connection (Conn.SetWatch) may have a
// record or changed state, or a connection waits in Accept, or ctx is
// done. It appends the connections concerned to buf and returns it; a
// connection may appear more than once or turn out to have nothing (the
// peer sets the hints; they are never trusted, only checked). An empty
// result with a nil error means: call Accept, or Wake was called. Wait
// does not spin: it is meant for an event loop that sleeps when there is
// nothing to do.
func (n *Node) Wait(ctx context.Context, buf []*Conn) ([]*Conn, error) {
	var stop func() bool
	defer func() {
		if stop != nil {
			stop()
		}
	}()
	for {
		seq := atomic.LoadUint32(n.bell)
		n.mu.Lock()
		buf = append(buf, n.events...)
		clear(n.events)
		n.events = n.events[:0]
		accept := len(n.acceptQ) > 0
		peers := n.peerList
		n.mu.Unlock()
		for _, p := range peers {
			if !p.dead.Load() {
				buf = p.hints(buf)
			}
		}
		if len(buf) > 0 || accept || n.woken.Swap(false) {
			return buf, nil
		}
		if n.closed.Load() {
			return buf, net.ErrClosed
		}
		if err := ctx.Err(); err != nil {
			return buf, err
		}
		timeout := time.Duration(-1)
		if dl, ok := ctx.Deadline(); ok {
			timeout = time.Until(dl)
			if timeout <= 0 {
				return buf, context.DeadlineExceeded
			}
		}
		if stop == nil && ctx.Done() != nil {
			// Only a cancellable context costs this registration; an
			// event loop that wants no allocation per sleep passes a
			// context without Done (deadline-free) and uses Wake.
			stop = context.AfterFunc(ctx, n.localEvent)
		}
		n.bellSleepers.Add(1)
		futexWait(n.bell, seq, timeout)
		n.bellSleepers.Add(-1)
	}
}

// ---- the event loop ------------------------------------------------------

// serve is the node's one background goroutine: it reads the control rings
// of all peers and sleeps on the doorbell when they are empty (armNode on
// each control ring, re-check, futex wait): no periodic wake-ups. While a
// caller holds the control rings (HoldControl) it leaves them unarmed and
// sleeps until the lease ends, then looks again.
func (n *Node) serve() {
	defer close(n.serveDone)
	for {
		seq := atomic.LoadUint32(n.ctlBell)
		if n.closed.Load() {
			return
		}
		if left := n.ctlLease.Load() - n.clock(); left > 0 {
			// The holder reads the rings: a message that rang anyway
			// (armed before the lease) is left to it, rather than
			// announced from here to the event loop of the stack.
			futexWait(n.ctlBell, seq, time.Duration(left))
			continue
		}
		if n.drainAllControl() {
			continue
		}
		n.armControl()
		if n.drainAllControl() {
			continue
		}
		futexWait(n.ctlBell, seq, -1)
	}
}

// drainAllControl handles what waits on every peer's control ring and
// reports whether there was anything.
func (n *Node) drainAllControl() bool {
	n.mu.Lock()
	peers := n.peerList
	n.mu.Unlock()
	busy := false
	for _, p := range peers {
		if p.drainControl() {
			busy = true
		}
	}
	return busy
}

// armControl asks every live peer to ring the event loop's doorbell with
// its next control message.
func (n *Node) armControl() {
	n.mu.Lock()
	peers := n.peerList
	n.mu.Unlock()
	for _, p := range peers {
		if !p.dead.Load() {
			atomic.OrUint32(p.ctlRx.ctl32(offConsArmed), armNode)
		}
	}
}

// clock is the node's monotonic clock for the control lease.
func (n *Node) clock() int64 { return int64(time.Since(n.born)) }

// HoldControl tells the node that the caller will read the control rings
// itself (Accept with a context that is done: a poll) at least every d
// from now, until it calls HoldControl again or ReleaseControl. Meanwhile
// the event loop leaves the rings unarmed: a peer's CONNECT or CLOSE then
// costs the peer no system call and this process no wake-up of the event
// loop, which on a small machine preempts the very goroutine that would
// have read the message anyway. If the holder does not come back, the
// event loop arms the rings when the lease ends, so a message waits at
// most d. A spinning Accept is the intended holder.
func (n *Node) HoldControl(d time.Duration) {
	n.ctlLease.Store(n.clock() + int64(d))
}

// ReleaseControl ends a HoldControl lease: the control rings are armed
// again (by the caller, so the event loop need not wake to do it) and read
// once more for what came before they were armed; a connection that leaves
// in the accept queue is announced.
func (n *Node) ReleaseControl() {
	if n.ctlLease.Swap(0) == 0 {
		return
	}
	n.armControl()
	n.pollControl()
	if n.queued() {
		n.announceAccept()
	}
}

// localEvent wakes Node.Wait callers and Accept.
//
// The bell's count always moves, but the futex system call is made only
// when a Wait sleeps: Wait loads the count before it looks for work and
// counts itself a sleeper before it sleeps on that value, so a Wait that
// we do not count here finds either the work or a count that moved.
// (Peers ring the same word from their processes unconditionally: they
// cannot see this count, and their rings are armed only by a sleeper.)
func (n *Node) localEvent() {
	atomic.AddUint32(n.bell, 1)
	if n.bellSleepers.Load() > 0 {
		futexWake(n.bell, allWaiters)
	}
}

// Close leaves the fabric: every connection fails (net.ErrClosed here,
// ErrPeerDead at the peers), the registration is removed, and the shared
// memory is released.
func (n *Node) Close() error {
	if !n.closed.CompareAndSwap(false, true) {
		return net.ErrClosed
	}
	close(n.done)
	n.ln.Close()
	n.f.removeEntry(n.addr)
	n.mu.Lock()
	peers := make([]*peer, 0, len(n.held))
	for p := range n.held {
		peers = append(peers, p)
	}
	n.mu.Unlock()
	for _, p := range peers {
		p.sendBye()
		p.fail(net.ErrClosed, true)
		p.mu.Lock()
		p.releaseLocked() // a peer that died earlier kept its segment for its open connections
		p.mu.Unlock()
	}
	ringBell(n.bell)
	ringBell(n.ctlBell)
	<-n.serveDone
	// Peers may still ring the doorbell through their own mapping; ours
	// becomes private zero pages (never unmapped, like a peer segment).
	// A Wait that loaded the bell before we set closed may reach its
	// FUTEX_WAIT only now (its goroutine was descheduled): the words of
	// the new page must differ from any value it can have loaded, or it
	// sleeps for good on a page nobody rings (seen: a stack's Close
	// hung in TestDialContextCancelledFails, its engine asleep on a bell
	// read as 0 before and after). Half the counter's range away from
	// the last value is out of reach of the rings of the last moments.
	far := atomic.LoadUint32(n.bell) + 1<<31
	replaceWithAnon(n.bellMem, pageSize)
	atomic.StoreUint32(n.bell, far)
	atomic.StoreUint32(n.ctlBell, far)
	unix.Close(n.bellFd)
	return nil
}
