package ultcp

import (
	"context"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ultcp/ultcp/fabric"
	"github.com/ultcp/ultcp/internal/tcp"
	"github.com/ultcp/ultcp/internal/wire"
)

// ListenConfig mirrors net.ListenConfig: Listen(ctx, "tcp", address).
type ListenConfig struct {
	// Stack is the stack to listen on. Required.
	Stack *Stack
	// Backlog bounds the connections waiting for Accept, handshake
	// included. Default Config.Backlog. When it is full, SYN cookies
	// (RFC 4987) keep answering without keeping state, so a burst of
	// connects completes once the application accepts again.
	Backlog int
}

// Listen listens on the stack's address at the port of address
// ("host:port"; the host must be empty, the stack's address, 0.0.0.0 or
// the unspecified address).
func (lc *ListenConfig) Listen(ctx context.Context, network, address string) (net.Listener, error) {
	return lc.ListenTCP(ctx, network, address)
}

// ListenTCP is Listen returning the concrete *Listener.
func (lc *ListenConfig) ListenTCP(ctx context.Context, network, address string) (*Listener, error) {
	s := lc.Stack
	if s == nil {
		return nil, &net.OpError{Op: "listen", Net: network, Err: errNoStack}
	}
	laddr, err := s.resolveLocal(network, address)
	if err != nil {
		return nil, &net.OpError{Op: "listen", Net: "tcp", Err: err}
	}
	backlog := lc.Backlog
	if backlog <= 0 {
		backlog = s.cfg.Backlog
	}
	tl, err := tcp.NewListener(&tcp.ListenerConfig{Conn: s.tcfg, Backlog: backlog, ISN: s.isn, Cookies: s.cookies})
	if err != nil {
		return nil, &net.OpError{Op: "listen", Net: "tcp", Source: laddr, Err: err}
	}
	tlOut, err := tcp.NewListener(&tcp.ListenerConfig{Conn: s.cfg.gatewayTCPConfig(), Backlog: backlog, ISN: s.isn, Cookies: s.cookies})
	if err != nil {
		return nil, &net.OpError{Op: "listen", Net: "tcp", Source: laddr, Err: err}
	}
	l := &Listener{s: s, port: uint16(laddr.Port), addr: laddr, tl: tl, tlOut: tlOut,
		pending: map[*tcp.Conn]*Conn{}, backlog: backlog, ready: make(chan struct{}, 1), closing: make(chan struct{})}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, &net.OpError{Op: "listen", Net: "tcp", Source: laddr, Err: net.ErrClosed}
	}
	if l.port == 0 {
		for p := uint16(tcp.DefaultEphemeralMin); p != 0; p++ {
			if s.listeners[p] == nil {
				l.port = p
				break
			}
		}
		laddr.Port = int(l.port)
	}
	if s.listeners[l.port] != nil {
		return nil, &net.OpError{Op: "listen", Net: "tcp", Source: laddr, Err: os.NewSyscallError("bind", syscall.EADDRINUSE)}
	}
	s.listeners[l.port] = l
	return l.joinServiceLocked()
}

// Listen is (&ListenConfig{Stack: s}).Listen(context.Background(), ...).
func (s *Stack) Listen(network, address string) (net.Listener, error) {
	lc := ListenConfig{Stack: s}
	return lc.ListenTCP(context.Background(), network, address)
}

// ListenTCP is Listen returning the concrete *Listener.
func (s *Stack) ListenTCP(network, address string) (*Listener, error) {
	lc := ListenConfig{Stack: s}
	return lc.ListenTCP(context.Background(), network, address)
}

// resolveLocal parses a local "host:port" for this stack.
func (s *Stack) resolveLocal(network, address string) (*net.TCPAddr, error) {
	if network != "tcp" && network != "tcp4" {
		return nil, net.UnknownNetworkError(network)
	}
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return nil, err
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return nil, &net.AddrError{Err: "invalid port", Addr: address}
	}
	if host != "" {
		a, err := netip.ParseAddr(host)
		if err == nil && s.isServiceAddr(a) {
			return &net.TCPAddr{IP: a.AsSlice(), Port: int(p)}, nil
		}
		if err != nil || !(a == s.addr || a.IsUnspecified()) {
			return nil, &net.AddrError{Err: "not this stack's address", Addr: address}
		}
	}
	return &net.TCPAddr{IP: s.addr.AsSlice(), Port: int(p)}, nil
}

// Listener is a listening port of a Stack; it implements net.Listener.
// Handshakes run in the progress engine as SYNs arrive; Accept hands out
// the connections whose handshake is complete.
type Listener struct {
	s    *Stack
	port uint16
	addr *net.TCPAddr
	vip  wire.IPv4Addr // a service's address (service.go); zero: the stack's own

	mu sync.Mutex // guards tl, tlOut and every connection still in their backlogs
	// tl takes SYNs from nodes of the fabric, tlOut those from the outside
	// world through the gateway: their connections need different engine
	// settings (Config's tcpConfig and gatewayTCPConfig), which a
	// tcp.Listener fixes for all it creates. Each has the backlog.
	tl, tlOut *tcp.Listener
	outFirst  bool // Accept looks at tlOut first (alternating, so neither starves)
	pending   map[*tcp.Conn]*Conn
	backlog   int
	parked    []*embryo // cookie handshakes waiting for room in the backlog
	closed    bool
	ready     chan struct{} // a handshake completed (or the listener closed)
	closing   chan struct{}
	deadline  atomic.Int64 // unix nanoseconds, 0: none
	accepted  atomic.Uint64
}

// Addr returns the listener's address.
func (l *Listener) Addr() net.Addr { return l.addr }

// Accept waits for and returns the next connection.
func (l *Listener) Accept() (net.Conn, error) {
	c, err := l.AcceptTCP()
	if err != nil {
		return nil, err
	}
	return c, nil
}

// SetDeadline sets the deadline for Accept, as net.TCPListener's.
func (l *Listener) SetDeadline(t time.Time) error {
	l.deadline.Store(unixNano(t))
	l.signal()
	return nil
}

// AcceptTCP is Accept returning the concrete *Conn.
func (l *Listener) AcceptTCP() (*Conn, error) {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	spun := false // a spin polled rings unarmed (armPolled)
	for {
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			if spun { // other listeners' handshakes may be among what it polled
				l.s.node.ReleaseControl()
				l.armPolled(nil)
			}
			return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.addr, Err: net.ErrClosed}
		}
		tc := l.acceptLocked()
		var c *Conn
		if tc != nil {
			c = l.pending[tc]
			delete(l.pending, tc)
		}
		var unpark *embryo
		if c != nil && len(l.parked) > 0 {
			unpark = l.parked[0]
			l.parked = l.parked[1:]
		}
		l.mu.Unlock()
		if unpark != nil {
			unpark.input(l.s.now(), nil) // room now: the parked handshake goes on
		}
		if c != nil {
			c.mu.Lock()
			c.lst = nil
			c.touchLocked(l.s.now())
			c.mu.Unlock()
			l.accepted.Add(1)
			l.s.stats.accepted.Add(1)
			if spun {
				l.armPolled(c)
				// The next Accept will likely come soon (an accept
				// loop): its lease covers the time until then.
				l.s.node.HoldControl(acceptLease)
			}
			return c, nil
		}
		if spun = l.spin(); spun {
			continue
		}
		var tc2 <-chan time.Time
		if d := l.deadline.Load(); d != 0 {
			left := time.Until(time.Unix(0, d))
			if left <= 0 {
				return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.addr, Err: os.ErrDeadlineExceeded}
			}
			if timer == nil {
				timer = time.NewTimer(left)
			} else {
				timer.Reset(left)
			}
			tc2 = timer.C
		}
		select {
		case <-l.ready:
		case <-l.closing:
		case <-tc2:
		}
	}
}

// spin runs the accepting side's protocol work in the Accept goroutine
// for up to the spin budget, as Read and Write do for a connection: it
// takes new fabric connections, feeds SYNs to listeners and drives this
// listener's handshakes, so that a connection arriving while Accept waits
// is set up without waking the progress engine. It reports whether a
// handshake completed or the listener closed.
func (l *Listener) spin() bool {
	s := l.s
	budget := s.cfg.SpinBudget
	if budget <= 0 {
		return false
	}
	start := time.Now()
	var pend []*Conn
	var embs []*embryo
	// What this spin polls it leaves unarmed (no doorbell, no engine
	// wake-up per handshake segment). It arms it all before Accept
	// sleeps; after a handshake completed, Accept arms what it does not
	// return (armPolled).
	s.node.HoldControl(acceptLease)
	for i := 0; ; i++ {
		s.acceptFabric(l)
		s.mu.Lock()
		embs = embs[:0]
		for e := range s.embryos {
			embs = append(embs, e)
		}
		s.mu.Unlock()
		now := s.now()
		for _, e := range embs {
			if e.mu.TryLock() {
				e.mu.Unlock()
				e.input(now, l)
			}
		}
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			return true
		}
		pend = pend[:0]
		for _, c := range l.pending {
			pend = append(pend, c)
		}
		ready := false
		for _, c := range l.pending {
			if st := c.tc.State(); st != tcp.SynReceived {
				ready = true
				break
			}
		}
		l.mu.Unlock()
		if ready {
			return true
		}
		for _, c := range pend {
			c.pollPending(now)
		}
		if i&15 == 15 {
			if time.Since(start) > budget {
				s.node.ReleaseControl()
				l.armPolled(nil)
				return false
			}
			s.node.HoldControl(acceptLease)
			runtime.Gosched()
		}
	}
}

// acceptLease is how long a spinning Accept, and an accept loop between
// two Accepts, holds the node's control rings (fabric.Node.HoldControl):
// a peer's CONNECT then waits for the next Accept to read it, instead of
// waking the fabric's event loop and the progress engine, two futex
// wake-ups that on two CPUs preempt the spinning dialler or acceptor. A
// CONNECT that comes while the application does not return to Accept waits
// at most this long (then the event loop takes it, as without a lease).
const acceptLease = time.Millisecond

// armPolled arms the rings a spinning Accept polled and leaves: those of
// the stack's embryos (a CONNECT taken, its SYN perhaps not yet read) and
// of the connections in l's backlog, except keep, which Accept returns:
// its ring stays unarmed for the application's first Read, as after any
// Read (the grace check covers an application that does not read).
func (l *Listener) armPolled(keep *Conn) {
	s := l.s
	s.mu.Lock()
	embs := make([]*embryo, 0, len(s.embryos))
	for e := range s.embryos {
		embs = append(embs, e)
	}
	s.mu.Unlock()
	now := s.now()
	for _, e := range embs {
		e.input(now, nil)
	}
	l.mu.Lock()
	pend := make([]*Conn, 0, len(l.pending))
	for _, c := range l.pending {
		if c != keep {
			pend = append(pend, c)
		}
	}
	l.mu.Unlock()
	for _, c := range pend {
		c.engineRun(now, false)
	}
}

// acceptLocked takes a completed handshake from either engine listener,
// alternating which it asks first.
func (l *Listener) acceptLocked() *tcp.Conn {
	a, b := l.tl, l.tlOut
	if l.outFirst {
		a, b = b, a
	}
	l.outFirst = !l.outFirst
	if tc := a.Accept(); tc != nil {
		return tc
	}
	return b.Accept()
}

// engineListener is the engine listener for e's segments.
func (l *Listener) engineListener(e *embryo) *tcp.Listener {
	if e.outside {
		return l.tlOut
	}
	return l.tl
}

// signal wakes Accept.
func (l *Listener) signal() {
	select {
	case l.ready <- struct{}{}:
	default:
	}
}

// Close stops listening: Accept returns net.ErrClosed, and connections not
// yet accepted are reset.
func (l *Listener) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return &net.OpError{Op: "close", Net: "tcp", Addr: l.addr, Err: net.ErrClosed}
	}
	l.closed = true
	close(l.closing)
	pend := make([]*Conn, 0, len(l.pending))
	for _, c := range l.pending {
		pend = append(pend, c)
	}
	clear(l.pending)
	parked := l.parked
	l.parked = nil
	l.mu.Unlock()
	for _, e := range parked {
		e.mu.Lock()
		e.drop()
		e.mu.Unlock()
	}
	s := l.s
	s.mu.Lock()
	if s.listeners[l.port] == l {
		delete(s.listeners, l.port)
	}
	s.mu.Unlock()
	l.leaveService()
	for _, c := range pend {
		c.abortClose()
	}
	return nil
}

// Stats returns the listener's engine counters (connections from the
// fabric and from outside summed).
func (l *Listener) Stats() tcp.ListenerStats {
	l.mu.Lock()
	defer l.mu.Unlock()
	a, b := l.tl.Stats(), l.tlOut.Stats()
	return tcp.ListenerStats{
		Syns: a.Syns + b.Syns, Accepted: a.Accepted + b.Accepted, BacklogOverflow: a.BacklogOverflow + b.BacklogOverflow,
		CookiesSent: a.CookiesSent + b.CookiesSent, CookiesAccepted: a.CookiesAccepted + b.CookiesAccepted,
		CookiesRejected: a.CookiesRejected + b.CookiesRejected, ResetsSent: a.ResetsSent + b.ResetsSent, Dropped: a.Dropped + b.Dropped,
	}
}

// embryo is a fabric connection a peer opened whose first record (the SYN)
// has not yet found a listener. The progress engine drives it.
type embryo struct {
	mu   sync.Mutex // the progress engine, or Accept when it made room or spins
	done bool       // bound to a Conn or dropped: the fabric conn is no longer the embryo's
	s    *Stack
	fc   *fabric.Conn
	// peer is whom the segments come from: the fabric peer, or an
	// outside host when the fabric peer is the gateway (outside);
	// routed once the first record has decided it (gateway.go).
	peer            wire.IPv4Addr
	lip             wire.IPv4Addr // the service address the SYN came for (service.go), or zero
	routed, outside bool
	seg             tcp.Segment
	out             []tcp.Segment
	hdr             [maxHdrLen]byte
}

// input processes the records that wait on an embryo's ring. The progress
// engine (poller nil) reads until the ring is empty, which arms it; the
// spinning Accept of poller reads only what is there and leaves the ring
// unarmed, polling it again (Listener.spin) and arming it when it stops
// (armPolled). A connection the handshake makes for another listener is
// armed at once: nobody polls it.
func (e *embryo) input(now time.Duration, poller *Listener) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.done {
		return
	}
	s := e.s
	for {
		if poller != nil && !e.fc.Readable() {
			return
		}
		r, err := e.fc.PeekNoWait() // with a poller, Readable promised a record: no arming
		if err == fabric.ErrWouldBlock {
			return
		}
		if err != nil {
			e.drop()
			return
		}
		if s.martianSyn(r.Data) {
			// MUST-57, MUST-63: discarded silently (addrcheck.go).
			e.fc.Release()
			e.drop()
			return
		}
		if !e.routed && !s.routeEmbryo(e, r.Data) {
			// An outside source from a peer that is not the gateway:
			// dropped and counted (anti-spoofing, gateway.go).
			e.fc.Release()
			e.drop()
			return
		}
		if e.outside && e.lip == (wire.IPv4Addr{}) {
			e.lip = s.serviceDst(r.Data)
		}
		payload, perr := decodeRecord(r.Data, len(r.Data)+r.DMALen, e.peer, e.self(), &e.seg)
		if perr == errCustody && !r.DMA {
			// The gateway spoke of custody before any connection
			// exists to act on it: dropped and counted, as custody
			// advice that fits nothing (custody.go); the flow goes on.
			s.gw.drops.Add(1)
			e.fc.Release()
			continue
		}
		if perr != nil || r.DMA {
			s.stats.badRecords.Add(1)
			e.fc.Release()
			e.drop()
			return
		}
		e.seg.Payload = payload
		s.stats.segsIn.Add(1)
		if s.cfg.Capture != nil {
			s.cfg.Capture(false, r.Data[:len(r.Data)-len(payload)], payload)
		}
		s.mu.Lock()
		l := s.listeners[e.seg.Hdr.DstPort]
		s.mu.Unlock()
		if l == nil || !l.serves(e.self()) {
			// RFC 9293 §3.10.7.1: a segment for no connection is
			// answered with a reset (the dialer reports ECONNREFUSED).
			s.stats.noListener.Add(1)
			e.out = tcp.ResetFor(&e.seg, e.out[:0])
			e.fc.Release()
			e.send()
			e.drop()
			return
		}
		if e.seg.Hdr.Flags&wire.FlagSYN == 0 && l.park(e) {
			// The ACK completing a cookie handshake (or data after
			// it) while the backlog is full: dropping it would lose
			// it for good (nothing retransmits on the fabric), so it
			// stays in the ring until Accept makes room.
			return
		}
		c := l.input(now, e)
		e.fc.Release()
		e.send()
		if c != nil {
			e.done = true
			// Read c.lst while c is locked: once unlocked, an Accept
			// on another goroutine may take c and clear it.
			arm := poller == nil || c.lst != poller
			c.mu.Unlock()
			c.engineStep(now, false, arm)
			return
		}
	}
}

// send writes e.out to the ring; an embryo's ring is new and its records
// tiny, so lack of room means a peer that does not read: drop it.
func (e *embryo) send() {
	for i := range e.out {
		seg := &e.out[i]
		n, err := encodeHeaders(e.hdr[:], e.self(), e.peer, e.s.cfg.ipFields(), &seg.Hdr, 0)
		if err != nil || !fits(e.fc, n) {
			return
		}
		buf, err := e.fc.Reserve(n)
		if err != nil {
			return
		}
		copy(buf, e.hdr[:n])
		// Counted before the peer can see it, so that a peer reacting to
		// the segment finds the counters up to date.
		e.s.stats.segsOut.Add(1)
		if seg.Hdr.Flags&wire.FlagRST != 0 {
			e.s.stats.resetsOut.Add(1)
		}
		e.fc.Commit(n)
		if e.s.cfg.Capture != nil {
			e.s.cfg.Capture(true, e.hdr[:n], nil)
		}
	}
	e.out = e.out[:0]
}

// drop forgets the embryo and closes its fabric conn.
func (e *embryo) drop() {
	e.done = true
	s := e.s
	s.mu.Lock()
	if s.byFC[e.fc] == e {
		delete(s.byFC, e.fc)
	}
	delete(s.embryos, e)
	s.mu.Unlock()
	e.fc.Close()
}

// park keeps e waiting when the backlog is full and reports whether it
// did.
func (l *Listener) park(e *embryo) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed || l.engineListener(e).Pending() < l.backlog {
		return false
	}
	for _, p := range l.parked {
		if p == e {
			return true
		}
	}
	l.parked = append(l.parked, e)
	return true
}

// input hands an embryo's segment to the listener (RFC 9293 §3.10.7.2).
// A SYN admitted into the backlog becomes a Conn that takes over the
// fabric conn; it is returned locked, and the embryo unlocks it once it
// is done with the fabric conn.
func (l *Listener) input(now time.Duration, e *embryo) *Conn {
	s := l.s
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		e.out = tcp.ResetFor(&e.seg, e.out[:0])
		return nil
	}
	local := netip.AddrPortFrom(netip.AddrFrom4(e.self()), l.port)
	remote := netip.AddrPortFrom(netip.AddrFrom4(e.peer), e.seg.Hdr.SrcPort)
	var tc *tcp.Conn
	tc, e.out = l.engineListener(e).Input(now, local, remote, &e.seg, e.out[:0])
	if tc == nil {
		return nil
	}
	// The embryo set the fabric conn's watch already (armed or polled).
	c := newConn(s, e.fc, tc, l.addr, &net.TCPAddr{IP: remote.Addr().AsSlice(), Port: int(remote.Port())}, true)
	if e.outside {
		c.setRemote(e.peer) // its fabric peer is the gateway (gateway.go)
		// A service member speaks as the service (service.go).
		c.setLocal(e.self())
	}
	// Locked before anyone can see it: the embryo still releases the
	// record and sends the answer on the fabric conn (see embryo.input).
	c.mu.Lock()
	c.lst = l
	l.pending[tc] = c
	s.mu.Lock()
	s.conns[c] = struct{}{}
	s.byFC[e.fc] = c
	delete(s.embryos, e)
	s.mu.Unlock()
	return c
}
