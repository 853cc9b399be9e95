// Package ultcp is a user-level TCP/IP stack for Go over the fabric, the
// emulated CLAN network of shared-memory rings (package fabric). A program
// swaps net.Dial and net.Listen for a Stack's Dial and Listen and runs
// unchanged: Conn is a net.Conn and Listener a net.Listener.
//
// How it works (DESIGN.md §1–§3, §7):
//
//   - Each TCP connection owns one fabric connection (a ring pair): the ring
//     is the demultiplexer. Every record is an IPv4 packet with a TCP
//     segment (link.go). The handshake runs as segments on the ring pair:
//     Dial opens a fabric connection and sends a SYN; on the accepting node
//     the first record of a new fabric connection is a SYN for a port, which
//     a listener takes, or which is answered with a RST (ECONNREFUSED).
//   - The fabric is lossless and in order, so every connection inside it
//     runs the engine (internal/tcp) in custody mode: nothing is kept for
//     retransmission and no retransmission timer runs.
//   - A connection to an address outside the fabric's subnet goes through
//     the fabric's gateway (gateway.go): its fabric connection leads to the
//     gateway, its records carry the outside address, and its engine runs
//     as on a real network (retransmission, CUBIC, SACK, timestamps, an
//     Ethernet MSS) until the gateway takes custody of its bytes
//     (custody.go).
//   - Protocol processing happens in the caller: Read, Write, Accept and Dial
//     poll the ring, run TCP input and output and emit segments in the
//     calling goroutine. A blocked call spins for Config.SpinBudget, then
//     sleeps; the progress engine wakes it from the fabric doorbell.
//   - One progress engine per stack (progress.go), a goroutine that sleeps
//     until something is due — a timer on the stack's timing wheel (one
//     entry per connection), a record on a ring no goroutine is reading, a
//     new fabric connection — and does that work. It never runs a
//     connection an application goroutine holds.
//   - Small writes are copied once, straight into the peer's ring (PIO);
//     large ones go by DMA: the peer pulls the bytes from the writer's
//     buffer, and Write returns once they have been taken. Reads deliver
//     in-order data straight from the ring into the reader's buffer when
//     nothing is queued (one copy), and Peek/Discard and WriteTo lend the
//     application the received bytes without a copy.
//
// Choices worth knowing (each is explained where it is made):
//
//   - Handshakes on the accepting side run in the progress engine: a SYN
//     arrives on a fresh ring that no application goroutine owns yet.
//     Accept hands out what the engine completed; Dial runs its side of
//     the handshake in the caller.
//   - No congestion control inside the fabric (fabriccc.go) and no
//     TIME-WAIT (a ring pair dies with its connection).
//   - A connection that arrives while nobody reads is taken in and
//     acknowledged by the engine after Config.Grace (progress.go); a busy
//     connection costs the engine one wake-up per grace period.
//   - Large writes travel as one DMA record carrying many segments' worth
//     (BIG TCP, link.go); the receiver pulls them straight into the
//     reader's buffer or, for a small reader, once into a scratch buffer
//     it lends from.
//   - Through the gateway, whose flows have an Ethernet MSS, the
//     consecutive segments one engine call emits go as one record of up to
//     64 KiB, as a NIC's TSO (tso.go); the gateway writes it to its device
//     as one GSO packet, and the engine still counts per segment.
//
// The package must never trust the fabric: a record that is not a valid
// packet for its connection resets that connection only, never the
// process; and it must never block the progress engine on an application
// or on a peer.
package ultcp

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/ultcp/ultcp/fabric"
	"github.com/ultcp/ultcp/internal/procs"
	"github.com/ultcp/ultcp/internal/tcp"
	"github.com/ultcp/ultcp/internal/timerwheel"
	"github.com/ultcp/ultcp/internal/wire"
)

// Stack is one node of the fabric: an address, its connections and
// listeners, and the progress engine that serves them. A process normally
// has one. Its methods are safe for concurrent use.
type Stack struct {
	cfg   Config
	tcfg  tcp.Config
	fab   *fabric.Fabric
	node  *fabric.Node
	ip    wire.IPv4Addr
	addr  netip.Addr
	epoch time.Time
	clock *stackClock

	isn     *tcp.ISNGenerator
	cookies *tcp.SYNCookies
	ports   *tcp.PortAllocator

	mu        sync.Mutex
	closed    bool
	wheel     *timerwheel.Wheel
	conns     map[*Conn]struct{}
	byFC      map[*fabric.Conn]any // *Conn or *embryo: who owns a watched fabric conn
	embryos   map[*embryo]struct{} // fabric conns whose SYN has not found a listener yet
	inUse     map[fourTuple]struct{}
	listeners map[uint16]*Listener
	fired     []*Conn
	fireFn    func(*timerwheel.Entry)
	// sleepUntil is when the sleeping progress engine will wake by
	// itself (0 while it is awake); kick cancels its wait.
	sleepUntil time.Duration
	kick       context.CancelFunc

	stats stackCounters
	gw    gatewayState // traffic through the fabric's gateway (gateway.go)
	done  chan struct{}
}

type fourTuple struct {
	lport uint16
	rip   wire.IPv4Addr
	rport uint16
}

// NewStack opens the fabric, joins it with cfg.Addr and starts the
// stack's progress engine.
func NewStack(cfg Config) (*Stack, error) {
	if !cfg.Addr.Is4() {
		return nil, fmt.Errorf("ultcp: Config.Addr %v is not an IPv4 address", cfg.Addr)
	}
	if err := cfg.checkIP(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	procs.Reserve(cfg.KeepGOMAXPROCS)
	f, err := fabric.Open(cfg.fabricConfig())
	if err != nil {
		return nil, err
	}
	n, err := f.Join(cfg.Addr)
	if err != nil {
		return nil, err
	}
	var keys [3][16]byte
	for i := range keys {
		rand.Read(keys[i][:])
	}
	ports, err := tcp.NewPortAllocator(keys[2], tcp.DefaultEphemeralMin, tcp.DefaultEphemeralMax)
	if err != nil {
		n.Close()
		return nil, err
	}
	clk := newStackClock()
	s := &Stack{
		cfg: cfg, tcfg: cfg.tcpConfig(), fab: f, node: n, addr: cfg.Addr, epoch: clk.epoch, clock: clk,
		isn: tcp.NewISNGenerator(keys[0]), cookies: tcp.NewSYNCookies(keys[1]), ports: ports,
		conns: map[*Conn]struct{}{}, byFC: map[*fabric.Conn]any{}, embryos: map[*embryo]struct{}{},
		inUse: map[fourTuple]struct{}{}, listeners: map[uint16]*Listener{},
		done: make(chan struct{}),
	}
	s.ip, _ = wire.AddrFromNetip(cfg.Addr)
	s.wheel, err = timerwheel.New(timerwheel.DefaultTick, 0)
	if err != nil {
		n.Close()
		return nil, err
	}
	s.fireFn = s.onFire
	go s.run()
	return s, nil
}

// Addr returns the stack's address.
func (s *Stack) Addr() netip.Addr { return s.addr }

// Node returns the stack's fabric node (for tools that look at rings).
func (s *Stack) Node() *fabric.Node { return s.node }

// now is the stack's clock: monotonic time since the stack started, the
// time base of the engine and the wheel (clock.go).
func (s *Stack) now() time.Duration { return s.clock.now() }

// Close closes every listener and resets every connection of the stack,
// leaves the fabric and stops the progress engine.
func (s *Stack) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return net.ErrClosed
	}
	s.closed = true
	ls := make([]*Listener, 0, len(s.listeners))
	for _, l := range s.listeners {
		ls = append(ls, l)
	}
	cs := make([]*Conn, 0, len(s.conns))
	for c := range s.conns {
		cs = append(cs, c)
	}
	if s.kick != nil {
		s.kick()
	}
	s.mu.Unlock()
	for _, l := range ls {
		l.Close()
	}
	for _, c := range cs {
		c.abortClose()
	}
	err := s.node.Close()
	<-s.done
	return err
}

// register records a new connection of the stack under its fabric conn.
// Its 4-tuple must be free: two dials that chose the same local port
// (Dialer.LocalAddr, or a race between picks) cannot both have it.
func (s *Stack) register(c *Conn) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return net.ErrClosed
	}
	if _, used := s.inUse[c.tuple]; used {
		return os.NewSyscallError("bind", syscall.EADDRINUSE)
	}
	s.conns[c] = struct{}{}
	s.byFC[c.fc] = c
	s.inUse[c.tuple] = struct{}{}
	return nil
}

// unregister forgets a finished connection.
func (s *Stack) unregister(c *Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	c.unregistered = true
	if s.byFC[c.fc] == c {
		delete(s.byFC, c.fc)
	}
	delete(s.inUse, c.tuple)
	s.wheel.Cancel(&c.entry)
	c.entryAt.Store(0)
	s.mu.Unlock()
}

// arm makes sure the progress engine runs c no later than when (lazy
// re-arm: a later time than the entry's costs no wheel operation), and
// wakes the engine if it sleeps past when.
func (s *Stack) arm(c *Conn, when time.Duration) {
	if when <= 0 {
		return
	}
	s.mu.Lock()
	if s.closed || c.unregistered {
		s.mu.Unlock()
		return
	}
	s.wheel.Arm(&c.entry, when)
	c.entryAt.Store(int64(c.entry.Deadline()))
	if s.sleepUntil != 0 && when < s.sleepUntil && s.kick != nil {
		s.kick()
		s.sleepUntil = 0
	}
	s.mu.Unlock()
}

// minTimer is a lower bound on how far ahead of now any timer the engine
// sets lies: the delayed ACK, the keepalive period (keepAlive, 0: off,
// or the stack's default), and RFC 6298's minimum RTO, which also bounds
// the persist timer. touchLocked relies on it.
func (s *Stack) minTimer(keepAlive time.Duration) time.Duration {
	m := tcp.DefaultRTOMin
	if d := s.cfg.DelayedAck; d >= 0 {
		if d == 0 {
			d = tcp.DefaultDelayedAck
		}
		m = min(m, d)
	}
	for _, ka := range [2]time.Duration{keepAlive, s.cfg.KeepAlive} {
		if ka > 0 {
			m = min(m, ka)
		}
	}
	return m
}

var errNoStack = errors.New("ultcp: no Stack given")
