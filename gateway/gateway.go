package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ultcp/ultcp/capture"
	"github.com/ultcp/ultcp/fabric"
	"github.com/ultcp/ultcp/internal/procs"
	"github.com/ultcp/ultcp/internal/wire"
	"github.com/ultcp/ultcp/link/tun"
)

// Device is the gateway's packet device: link/tun's Device, or an
// in-memory one in tests. Read is called from one goroutine, Write from
// another (the event loop); Close makes a blocked Read return.
type Device interface {
	// Read reads one packet (possibly a GRO super-packet) into buf.
	Read(buf []byte) (tun.Packet, error)
	// Write writes one packet (possibly GSO: the kernel segments it).
	Write(p tun.Packet) error
	Close() error
}

// Defaults for Config fields left zero.
const (
	DefaultMTU         = 1500
	DefaultRingSize    = 1 << 20
	DefaultMaxFlows    = 1 << 16
	DefaultIdleTimeout = 5 * time.Minute
	DefaultSpinBudget  = 20 * time.Microsecond
	// handshakeTimeout ends a flow whose handshake did not complete, or a
	// connection a node opened without sending a SYN.
	handshakeTimeout = 30 * time.Second
	// closingTimeout ends a flow both of whose sides sent FIN (the nodes
	// close the fabric connection when TCP is done; this is the backstop).
	closingTimeout = 60 * time.Second
	// resetTimeout ends a flow whose outside host sent a RST (the node
	// decides whether it was acceptable; if it closes, the flow ends
	// sooner).
	resetTimeout = 2 * time.Second
	// sweepEvery is how often idle flows are looked for and the per-node
	// ring occupancy is refreshed.
	sweepEvery = time.Second
	// dialTimeout bounds opening a fabric connection, in the event loop,
	// to a node contacted before (no system call, unless the node died and
	// the fabric makes first contact again with its successor).
	dialTimeout = 50 * time.Millisecond
	// bufCount is the number of device read buffers between the reader
	// and the event loop.
	bufCount = 64
	// recordBudget bounds the records one connection is served per turn,
	// so that one busy flow cannot starve the others.
	recordBudget = 64
	// deviceBudget bounds the device packets handled per turn.
	deviceBudget = 64
)

// Config configures a gateway.
type Config struct {
	// Fabric names the fabric (fabric.Config.Name); FabricDir, if set, is
	// its directory instead (tests).
	Fabric    string
	FabricDir string
	// Addr is the gateway's own address on the cluster subnet.
	Addr netip.Addr
	// Subnet is the cluster subnet. Default fabric.DefaultSubnet.
	Subnet netip.Prefix
	// Device is the packet device (link/tun, configured by the caller).
	Device Device
	// MTU of the device: the MSS of SYNs is clamped to MTU-40. Default
	// DefaultMTU.
	MTU int
	// Custody is the memory in bytes for gateway-assisted retransmission;
	// 0 turns it off.
	Custody int64
	// Impair is an impairment spec for the way out ("delay=20ms,..."), ""
	// for none.
	Impair string
	// Capture, if set, is a pcap writer for the device side (what crosses
	// the device) and CaptureFabric one for the fabric side (the records).
	Capture       *capture.Writer
	CaptureFabric *capture.Writer
	// SoftChecksum computes TCP checksums of single segments while
	// copying instead of leaving them to the kernel (checksum.go).
	SoftChecksum bool
	// SpinBudget is how long the event loop polls the device hand-off
	// and the connections that were just busy before it sleeps in
	// Node.Wait (a sleep costs a futex wake-up to end, tens of
	// microseconds on a loaded machine). Default DefaultSpinBudget;
	// negative: sleep at once.
	SpinBudget time.Duration
	// RingSize of the fabric connections the gateway opens to nodes.
	// Default DefaultRingSize.
	RingSize int
	// MaxFlows bounds the conntrack. Default DefaultMaxFlows.
	MaxFlows int
	// IdleTimeout ends an established flow with no packet either way for
	// that long. Default DefaultIdleTimeout.
	IdleTimeout time.Duration
	// Logger; default slog.Default().
	Logger *slog.Logger
	// KeepGOMAXPROCS stops New from raising GOMAXPROCS by two, a P for
	// the event loop and for the fabric's control loop, which sleep in
	// futex system calls (internal/procs).
	KeepGOMAXPROCS bool
}

// Gateway forwards between a fabric and a packet device.
type Gateway struct {
	cfg     Config
	log     *slog.Logger
	fab     *fabric.Fabric
	node    *fabric.Node
	dev     Device
	addr    wire.IPv4Addr
	subnet  netip.Prefix
	clamp   uint16 // MSS clamp: MTU - 40
	start   time.Time
	clock   func() time.Duration // tests: a skewable clock
	flows   *table
	cust    custodian
	custOn  bool
	imp     impairer
	bg      context.Context // never done: Node.Wait without allocation
	stats   Stats
	ready   []*fabric.Conn
	againQ  []*Flow
	hot     []*Flow // flows that had records this turn: polled before sleeping
	sweepAt time.Duration
	timer   *time.Timer
	timerAt time.Duration

	// The device reader hands buffers to the event loop through full and
	// gets them back through free; sleeping tells it to Wake the loop.
	free     chan *inBuf
	full     chan *inBuf
	sleeping atomic.Bool
	readErr  atomic.Pointer[error]

	// Outbound scratch (event loop only).
	hdr    [maxHdrs]byte
	out    []byte // soft-checksum and coalescing buffer
	batch  batch
	dmaBuf []byte
	icmp   [576 + 64]byte
	queued int // bytes queued for nodes, all flows

	live map[wire.IPv4Addr]liveEntry // NodeLive answers, cached

	// First contacts with nodes (inbound.go): nodes dialled before, the
	// SYNs waiting per node, the results, and the connection a finished
	// contact made for the first waiting SYN.
	contacted  map[wire.IPv4Addr]bool
	contacting map[wire.IPv4Addr][][]byte
	contacts   chan contactResult
	preDialed  *fabric.Conn
	replaying  bool
	limiter    tokenBucket // ICMP errors and RSTs the gateway makes

	svc services // load-balanced services (service.go)

	occMu sync.Mutex
	occ   map[wire.IPv4Addr]int // ring occupancy per node, refreshed each sweep
	snap  snapshot

	started   atomic.Bool
	closeOnce sync.Once
	closed    chan struct{}
	runDone   chan struct{}
}

type inBuf struct {
	buf []byte
	p   tun.Packet
}

type liveEntry struct {
	ok    bool
	until time.Duration
}

// maxHdrs is the longest IPv4 header plus the longest TCP header.
const maxHdrs = 60 + 60

// New joins the fabric with cfg.Addr, claims the gateway role and returns
// a gateway ready to Run. It fails if another live gateway is registered
// (fabric.ErrGatewayExists) or a live node holds the address
// (fabric.ErrAddrInUse).
func New(cfg Config) (*Gateway, error) {
	if cfg.Device == nil {
		return nil, errors.New("gateway: no device")
	}
	procs.Reserve(cfg.KeepGOMAXPROCS)
	if !cfg.Subnet.IsValid() {
		cfg.Subnet = fabric.DefaultSubnet
	}
	a4, ok := wire.AddrFromNetip(cfg.Addr)
	if !ok || !cfg.Subnet.Contains(cfg.Addr) {
		return nil, fmt.Errorf("gateway: address %v is not an IPv4 address in %v", cfg.Addr, cfg.Subnet)
	}
	if cfg.MTU == 0 {
		cfg.MTU = DefaultMTU
	}
	if cfg.MTU < 576 || cfg.MTU > tun.MaxPacketLen {
		return nil, fmt.Errorf("gateway: MTU %d not in [576, %d]", cfg.MTU, tun.MaxPacketLen)
	}
	if cfg.RingSize == 0 {
		cfg.RingSize = DefaultRingSize
	}
	if cfg.MaxFlows <= 0 {
		cfg.MaxFlows = DefaultMaxFlows
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.SpinBudget == 0 {
		cfg.SpinBudget = DefaultSpinBudget
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Custody < 0 {
		return nil, fmt.Errorf("gateway: custody size %d is negative", cfg.Custody)
	}
	g := &Gateway{
		cfg: cfg, log: cfg.Logger, dev: cfg.Device, addr: a4, subnet: cfg.Subnet,
		clamp: uint16(cfg.MTU - 40), start: time.Now(), flows: newTable(cfg.MaxFlows),
		cust: noCustody{}, bg: context.Background(),
		free: make(chan *inBuf, bufCount), full: make(chan *inBuf, bufCount),
		out: make([]byte, tun.MaxPacketLen), dmaBuf: make([]byte, tun.MaxPacketLen),
		live: map[wire.IPv4Addr]liveEntry{}, occ: map[wire.IPv4Addr]int{},
		contacted: map[wire.IPv4Addr]bool{}, contacting: map[wire.IPv4Addr][][]byte{}, contacts: make(chan contactResult, 16),
		limiter: tokenBucket{rate: 1000, burst: 100, tokens: 100},
		closed:  make(chan struct{}), runDone: make(chan struct{}),
	}
	g.batch.buf = make([]byte, tun.MaxPacketLen)
	if cfg.Impair != "" {
		if newImpairer == nil {
			return nil, errNoImpair
		}
		imp, err := newImpairer(cfg.Impair)
		if err != nil {
			return nil, fmt.Errorf("gateway: --impair: %w", err)
		}
		g.imp = imp
	}
	fc := fabric.Config{Name: cfg.Fabric, Dir: cfg.FabricDir, Subnet: cfg.Subnet, Logger: cfg.Logger}
	fab, err := fabric.Open(fc)
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	g.fab = fab
	node, err := fab.Join(cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("gateway: joining the fabric at %v: %w", fab.Dir(), err)
	}
	if err := node.ClaimGateway(); err != nil {
		node.Close()
		return nil, fmt.Errorf("gateway: %w", err)
	}
	g.node = node
	if cfg.Custody > 0 {
		if newCustodian == nil {
			node.Close()
			return nil, errNoCustody
		}
		c, err := newCustodian(CustodyConfig{Limit: cfg.Custody, Gateway: a4, IO: custodyIOf{g}, Logger: cfg.Logger})
		if err != nil {
			node.Close()
			return nil, fmt.Errorf("gateway: custody: %w", err)
		}
		g.cust, g.custOn = c, true
	}
	for range bufCount {
		g.free <- &inBuf{buf: make([]byte, tun.VnetHdrLen+tun.MaxPacketLen)}
	}
	g.timer = time.AfterFunc(time.Hour, node.Wake)
	return g, nil
}

// Stats returns the gateway's counters (safe from any goroutine).
func (g *Gateway) Stats() *Stats { return &g.stats }

// Node is the gateway's own fabric node.
func (g *Gateway) Node() *fabric.Node { return g.node }

// RingOccupancy returns the bytes the gateway has put on each node's
// rings and the node has not consumed yet, as of the last sweep (once a
// second): the load signal of issue #8.
func (g *Gateway) RingOccupancy() map[netip.Addr]int {
	g.occMu.Lock()
	defer g.occMu.Unlock()
	m := make(map[netip.Addr]int, len(g.occ))
	for a, n := range g.occ {
		m[a.Netip()] = n
	}
	return m
}

// now is the gateway's clock: the time since New (monotonic).
func (g *Gateway) now() time.Duration {
	if g.clock != nil {
		return g.clock()
	}
	return time.Since(g.start)
}

// Run forwards until ctx is done, Close is called, or the device or the
// fabric node fails. It returns nil after ctx or Close, else the error.
func (g *Gateway) Run(ctx context.Context) error {
	if !g.started.CompareAndSwap(false, true) {
		return errors.New("gateway: Run called twice, or after Close")
	}
	defer close(g.runDone)
	go g.readDevice()
	stop := context.AfterFunc(ctx, g.node.Wake)
	defer stop()
	defer g.shutdown()
	for {
		if ctx.Err() != nil || g.isClosed() {
			return nil
		}
		if e := g.readErr.Load(); e != nil {
			return fmt.Errorf("gateway: reading the device: %w", *e)
		}
		now := g.now()
		busy := g.drainDevice(now)
		if g.contactsDone(now) {
			busy = true
		}
		if g.acceptConns(now) {
			busy = true
		}
		if g.serveConns(now) {
			busy = true
		}
		g.timers(now)
		if g.batch.count > 0 && g.now()-g.batch.since >= max(g.cfg.SpinBudget, 0) {
			// A batch waits for more of its flow's segments at most
			// about the spin budget, busy loop or not.
			g.flushBatch(now)
		}
		if busy {
			continue
		}
		if g.spin() {
			continue
		}
		g.flushBatch(now)
		g.sleeping.Store(true)
		if len(g.full) > 0 || len(g.againQ) > 0 {
			g.sleeping.Store(false)
			continue
		}
		var err error
		g.stats.LoopSleeps.Add(1)
		g.ready, err = g.node.Wait(g.bg, g.ready[:0])
		g.sleeping.Store(false)
		if err != nil {
			if g.isClosed() || ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("gateway: fabric: %w", err)
		}
	}
}

func (g *Gateway) isClosed() bool {
	select {
	case <-g.closed:
		return true
	default:
		return false
	}
}

// Close stops Run (if running) and waits for it to end; it closes every
// flow's connection, the device and the fabric node (which removes the
// gateway registration).
func (g *Gateway) Close() error {
	g.closeOnce.Do(func() {
		close(g.closed)
		g.node.Wake()
	})
	if g.started.CompareAndSwap(false, true) {
		// Run never started: tear down here.
		g.shutdown()
		return nil
	}
	<-g.runDone
	return nil
}

// shutdown runs when Run ends (or from Close if Run never ran): the event
// loop's state is torn down from the event loop itself.
func (g *Gateway) shutdown() {
	g.closeOnce.Do(func() { close(g.closed) })
	for _, f := range g.flows.byConn {
		g.closeFlow(f, closeShutdown)
	}
	g.timer.Stop()
	g.dev.Close()
	g.node.Close()
}

// readDevice is the device reader: it fills free buffers and hands them
// to the event loop, waking it only if it sleeps.
func (g *Gateway) readDevice() {
	for {
		var b *inBuf
		select {
		case b = <-g.free:
		case <-g.closed:
			return
		}
		p, err := g.dev.Read(b.buf)
		if err != nil {
			if g.isClosed() {
				return
			}
			if errors.Is(err, tun.ErrBadVnetHdr) || errors.Is(err, tun.ErrBadGSO) || errors.Is(err, tun.ErrShortPacket) || errors.Is(err, tun.ErrTooBig) {
				g.stats.drop(dropBadPacket)
				g.free <- b
				continue
			}
			g.readErr.Store(&err)
			g.node.Wake()
			return
		}
		b.p = p
		select {
		case g.full <- b:
		case <-g.closed:
			return
		}
		if g.sleeping.Load() {
			g.node.Wake()
		}
	}
}

// drainDevice handles the packets the reader handed over.
func (g *Gateway) drainDevice(now time.Duration) bool {
	for i := 0; i < deviceBudget; i++ {
		select {
		case b := <-g.full:
			g.fromOutside(now, b.p)
			b.p = tun.Packet{}
			g.free <- b
		default:
			return i > 0
		}
	}
	return true
}

// closedCtx is a context that is already done: Accept with it does not
// block.
var closedCtx = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

// acceptConns takes the fabric connections nodes opened to reach the
// outside: each is one flow, named by its first record (the SYN).
func (g *Gateway) acceptConns(now time.Duration) bool {
	any := false
	for {
		c, err := g.node.Accept(closedCtx)
		if err != nil {
			return any
		}
		any = true
		if g.flows.full() {
			g.stats.drop(dropTableFull)
			c.Close()
			continue
		}
		f := &Flow{conn: c, fromNode: true, lastSeen: now}
		g.flows.add(f)
		c.SetWatch(true)
		g.queueAgain(f)
	}
}

func (g *Gateway) queueAgain(f *Flow) {
	if !f.again {
		f.again = true
		g.againQ = append(g.againQ, f)
	}
}

// serveConns reads the connections Wait reported and those left with
// records last turn.
func (g *Gateway) serveConns(now time.Duration) bool {
	any := len(g.ready) > 0 || len(g.againQ) > 0
	for _, c := range g.ready {
		if f := g.flows.byConn[c]; f != nil {
			g.queueAgain(f)
		}
	}
	clear(g.ready)
	g.ready = g.ready[:0]
	n := len(g.againQ)
	for i := 0; i < n; i++ {
		// Index g.againQ each time: serving may append to it (and move it).
		f := g.againQ[i]
		f.again = false
		if f.closed {
			continue
		}
		if g.serveFlow(now, f) {
			g.queueAgain(f)
		}
	}
	// Flows queued again during the loop were appended after n.
	rest := copy(g.againQ, g.againQ[n:])
	clear(g.againQ[rest:])
	g.againQ = g.againQ[:rest]
	return any
}

// markHot remembers that f had records this turn.
func (g *Gateway) markHot(f *Flow) {
	if !f.hot && len(g.hot) < maxHot {
		f.hot = true
		g.hot = append(g.hot, f)
	}
}

// maxHot bounds the connections polled while spinning.
const maxHot = 64

// spin polls, for at most the spin budget, what may bring work soon: the
// device reader's hand-off and the connections that just had records.
// True if something came (the loop runs again instead of sleeping).
func (g *Gateway) spin() bool {
	defer func() {
		for _, f := range g.hot {
			f.hot = false
		}
		clear(g.hot)
		g.hot = g.hot[:0]
	}()
	if g.cfg.SpinBudget < 0 {
		return false
	}
	deadline := time.Now().Add(g.cfg.SpinBudget)
	for i := 0; ; i++ {
		if len(g.full) > 0 || len(g.contacts) > 0 {
			return true
		}
		found := false
		for _, f := range g.hot {
			if !f.closed && f.conn.Readable() {
				g.queueAgain(f)
				found = true
			}
		}
		if found {
			return true
		}
		if i&15 == 15 {
			if time.Now().After(deadline) {
				return false
			}
			runtime.Gosched() // the device reader may need this CPU
		}
	}
}

// timers runs the custodian's and the impairment stage's timed work and
// the periodic sweep, and sets the wake-up timer for the next deadline.
func (g *Gateway) timers(now time.Duration) {
	if d := g.cust.Next(); d != 0 && now >= d {
		g.cust.Tick(now)
	}
	if g.imp != nil {
		g.releaseImpaired(now)
	}
	if now >= g.sweepAt {
		g.sweep(now)
		g.sweepAt = now + sweepEvery
	}
	next := g.sweepAt
	if d := g.serviceTimers(now); d != 0 && d < next {
		next = d
	}
	if d := g.cust.Next(); d != 0 && d < next {
		next = d
	}
	if g.imp != nil {
		if d := g.imp.Next(); d != 0 && d < next {
			next = d
		}
	}
	if next != g.timerAt {
		g.timerAt = next
		g.timer.Reset(max(next-now, 0))
	}
}

// sweep ends idle flows and refreshes the per-node ring occupancy.
func (g *Gateway) sweep(now time.Duration) {
	occ := map[wire.IPv4Addr]int{}
	for _, f := range g.flows.byConn {
		limit := g.cfg.IdleTimeout
		switch {
		case !f.keyed || !(f.synNode && f.synRemote):
			limit = handshakeTimeout
		case f.reset:
			limit = resetTimeout
		case f.done():
			limit = closingTimeout
		}
		if now-f.lastSeen > limit {
			g.closeFlow(f, closeIdle)
			continue
		}
		if f.keyed {
			occ[f.Key.Node] += f.conn.RingOccupancy()
		}
	}
	g.occMu.Lock()
	g.occ = occ
	g.occMu.Unlock()
	if len(g.live) > 4096 {
		clear(g.live)
	}
	g.publish()
}

// closeFlow ends f: its fabric connection is closed (the node sees EOF)
// and the custodian forgets it.
func (g *Gateway) closeFlow(f *Flow, why closeReason) {
	if f.closed {
		return
	}
	if g.batch.f == f {
		g.flushBatch(g.now()) // what the node sent before the end still goes out
	}
	f.closed = true
	g.flows.remove(f)
	g.cust.FlowClosed(f)
	g.serviceFlowClosed(f)
	f.conn.Close()
	g.queued -= f.queued
	f.queue, f.queued = nil, 0
	g.stats.FlowsClosed[why].Add(1)
	if f.keyed {
		g.stats.Flows.Add(-1) // Flows counts the keyed flows only
	}
	if why != closeNodeClosed && why != closeShutdown && why != closeReset {
		g.log.Debug("gateway: flow closed", "flow", f.Key, "why", why.String())
	}
}

// nodeLive tells whether a live node holds a, cached for a second.
func (g *Gateway) nodeLive(now time.Duration, a wire.IPv4Addr) bool {
	if e, ok := g.live[a]; ok && now < e.until {
		return e.ok
	}
	_, ok := g.fab.NodeLive(a.Netip())
	g.live[a] = liveEntry{ok: ok, until: now + time.Second}
	return ok
}

// dialNode opens a fabric connection to the node at a for a flow from
// outside (a node contacted before: see firstContact).
func (g *Gateway) dialNode(a wire.IPv4Addr) (*fabric.Conn, error) {
	if c := g.preDialed; c != nil && c.RemoteAddr() == a.Netip() {
		g.preDialed = nil
		return c, nil
	}
	ctx, cancel := context.WithTimeout(g.bg, dialTimeout)
	defer cancel()
	return g.node.Dial(ctx, a.Netip(), fabric.ConnConfig{RingSize: g.cfg.RingSize})
}

// tokenBucket limits the ICMP errors and RSTs the gateway originates
// (RFC 1812 §4.3.2.8: a router SHOULD rate-limit ICMP errors).
type tokenBucket struct {
	rate, burst float64
	tokens      float64
	last        time.Duration
}

func (b *tokenBucket) allow(now time.Duration) bool {
	b.tokens = min(b.burst, b.tokens+(now-b.last).Seconds()*b.rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// custodyIOf is the custodian's handle on the gateway.
type custodyIOf struct{ g *Gateway }

func (c custodyIOf) ToOutside(f *Flow, pkt []byte) error { return c.g.resend(f, pkt) }
func (c custodyIOf) ToNode(f *Flow, rec []byte) error    { return c.g.toNode(f, rec) }

var (
	errFlowClosed   = errors.New("gateway: flow closed")
	errCtlQueueFull = errors.New("gateway: the flow's queue to its node is full")
)

// toNode sends a custody record on f's ring, or queues it.
func (g *Gateway) toNode(f *Flow, rec []byte) error {
	if f.closed {
		return errFlowClosed
	}
	if len(f.queue) == 0 && f.conn.Room(len(rec)) {
		return g.put(f, rec)
	}
	if f.queued+len(rec) > maxQueuedPerFlow+maxQueuedCtl*64 {
		return errCtlQueueFull
	}
	g.enqueue(f, rec)
	return nil
}

// toRing puts packet b on f's ring as one record, after what is queued;
// if the ring has no room it is queued, within bounds, else dropped
// (ring_full: TCP resends, as after a router's queue overflowed).
func (g *Gateway) toRing(f *Flow, b []byte) bool {
	if len(f.queue) == 0 && f.conn.Room(len(b)) {
		return g.put(f, b) == nil
	}
	if f.queued+len(b) > maxQueuedPerFlow || g.queued+len(b) > maxQueuedTotal {
		g.stats.drop(dropRingFull)
		return false
	}
	g.enqueue(f, b)
	return true
}

// enqueue copies b onto f's queue. The copy allocates: this is the
// congestion path, not the data path. Room, which found no room on the
// watched connection, has asked the node to report progress, so Node.Wait
// returns f's connection when room is made.
func (g *Gateway) enqueue(f *Flow, b []byte) {
	f.queue = append(f.queue, append([]byte(nil), b...))
	f.queued += len(b)
	g.queued += len(b)
	g.stats.Queued.Add(1)
}

// put writes b as one record on f's ring (Room said it fits).
func (g *Gateway) put(f *Flow, b []byte) error {
	buf, err := f.conn.Reserve(len(b))
	if err != nil {
		g.stats.drop(dropRingFull)
		if !errors.Is(err, fabric.ErrRecordTooLarge) {
			g.closeFlow(f, closeNodeError)
		}
		return err
	}
	copy(buf, b)
	f.conn.Commit(len(b))
	if c := g.cfg.CaptureFabric; c != nil {
		captureDevice(c, tun.Packet{Data: b})
	}
	return nil
}

// flushQueue sends f's queued records while there is room; false if some
// are left.
func (g *Gateway) flushQueue(f *Flow) bool {
	for len(f.queue) > 0 {
		r := f.queue[0]
		if !f.conn.Room(len(r)) {
			return false
		}
		f.queue[0] = nil
		f.queue = f.queue[1:]
		f.queued -= len(r)
		g.queued -= len(r)
		if g.put(f, r) != nil {
			return false
		}
	}
	f.queue = nil
	return true
}
