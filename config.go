package ultcp

import (
	"log/slog"
	"net/netip"
	"time"

	"github.com/ultcp/ultcp/fabric"
	"github.com/ultcp/ultcp/internal/tcp"
)

// Config describes one stack: which fabric, which address, and the
// defaults of its connections. The zero value of every field but Addr
// means "use the default" listed beside it.
type Config struct {
	// Addr is the node's IPv4 address on the cluster subnet. Required.
	Addr netip.Addr
	// Fabric names the fabric (directory fabric.DefaultRoot/Fabric).
	// Default fabric.DefaultName. FabricDir, if set, is the fabric
	// directory itself and Fabric is ignored.
	Fabric    string
	FabricDir string
	// NoDMA makes this process's peers fall back to PIO for DMA records
	// (see fabric.Config.NoDMA); for tests and measurements.
	NoDMA bool

	// SpinBudget is how long a blocked Read, Write or Dial polls its ring
	// before it sleeps and lets the progress engine wake it from the
	// fabric doorbell. Default DefaultSpinBudget; negative: never spin.
	SpinBudget time.Duration

	// KeepGOMAXPROCS stops NewStack from raising GOMAXPROCS by two, a P
	// for each of the stack's goroutines that sleep in futex system calls
	// (internal/procs): set it when the program manages GOMAXPROCS itself.
	// With it, a GOMAXPROCS of 2 or less can leave runnable goroutines
	// waiting up to 10 ms for a P.
	KeepGOMAXPROCS bool

	// RingSize is the size of each of a connection's two fabric rings.
	// Default DefaultRingSize.
	RingSize int
	// DMAThreshold is the smallest Write that goes by DMA (the peer pulls
	// the bytes from the writer's buffer) rather than PIO (the writer
	// copies them into the ring). Default DefaultDMAThreshold; negative:
	// never DMA.
	DMAThreshold int

	// RecvBuf and MaxRecvBuf size each connection's receive window
	// (initial, and ceiling of auto-tuning). Defaults DefaultRecvBuf and
	// DefaultMaxRecvBuf.
	RecvBuf, MaxRecvBuf int
	// Nagle enables Nagle's algorithm on new connections. Off by default,
	// as in Go's net package (Conn.SetNoDelay changes it per connection).
	Nagle bool
	// DelayedAck bounds how long an ACK may wait. Default 40 ms.
	DelayedAck time.Duration
	// KeepAlive is the idle time before keepalive probes on new
	// connections; 0 means off (Conn.SetKeepAlive switches it on).
	KeepAlive time.Duration
	// Backlog is the default listen backlog. Default 128.
	Backlog int
	// Grace is how long a connection may go untouched by the
	// application before the progress engine takes over its ring
	// (processes what arrives and sends the ACKs). Default DefaultGrace.
	Grace time.Duration
	// OrphanTimeout bounds how long a connection the application closed
	// may wait for its peer to finish. Default DefaultOrphanTimeout (as
	// Linux's tcp_fin_timeout).
	OrphanTimeout time.Duration

	// DSCP is the DiffServ codepoint (0–63) of every packet the stack
	// sends, TTL their time to live (1–255; 0: DefaultTTL); Conn.SetDSCP
	// and Conn.SetTTL change them per connection (RFC 9293 MUST-48,
	// MUST-49; ipfields.go).
	DSCP, TTL int

	// GatewayMSS is the MSS advertised on connections through the
	// fabric's gateway (gateway.go): the largest TCP payload of a 1500-byte
	// Ethernet frame, as the outside world expects. The gateway also
	// clamps what it forwards to its outside MTU. Default DefaultGatewayMSS.
	GatewayMSS int
	// SendBuf bounds what a connection through the gateway keeps for
	// retransmission while the gateway does not hold custody of its bytes
	// (custody.go): it is the most such a connection has in flight. The
	// engine's ring grows to it as writes fill it (4 KiB, doubling) and
	// keeps what it grew to (no send-buffer auto-tuning yet), so it is
	// also the most memory each such connection costs. Connections inside
	// the fabric, and connections in the gateway's custody, keep nothing.
	// Default DefaultSendBuf.
	SendBuf int

	// Capture, if set, sees every IPv4 packet the stack sends and
	// receives on its connections (see Capture).
	Capture Capture
	// Logger receives the few events worth logging. Default slog.Default().
	Logger *slog.Logger
}

// Defaults for Config fields left zero.
//
// DefaultDMAThreshold follows BenchmarkBulk (two processes, a reader
// copying into a 1 MiB buffer, this 2-core machine). Loaded by other
// work: at 64 KiB writes PIO 2.5 GB/s, DMA 1.5 (a DMA record costs a
// process_vm_readv and a completion round trip); at 256 KiB DMA 3.1
// against PIO 2.6; at 1 MiB 3.1 against 1.2. Quiet: at 64 KiB PIO 12.7
// GB/s, DMA 6.1; at 256 KiB PIO 12.9, DMA 11.2; at 1 MiB PIO 8.6, DMA
// 7.0. From 256 KiB on DMA is within 15 % of PIO on a quiet machine and
// ahead on a busy one, and it spends a fraction of the writer's CPU
// (docs/fabric.md: about 0.3 of PIO's) and no ring memory: so 256 KiB.
// DefaultSpinBudget matches the fabric's own (fabric.DefaultSpinBudget):
// long enough to cover a peer's answer without a futex round trip
// (25–40 µs here).
const (
	DefaultSpinBudget    = 50 * time.Microsecond
	DefaultRingSize      = 1 << 20
	DefaultDMAThreshold  = 256 << 10
	DefaultRecvBuf       = 256 << 10
	DefaultMaxRecvBuf    = 4 << 20
	DefaultGrace         = 5 * time.Millisecond
	DefaultOrphanTimeout = 60 * time.Second
	// DefaultGatewayMSS is 1500 − 20 − 20 (RFC 9293 §3.7.1, RFC 894).
	DefaultGatewayMSS = 1460
	// DefaultSendBuf is 4 MiB, the most a gateway connection's send ring
	// grows to, as Linux's tcp_wmem maximum: a window of 4 MiB keeps a
	// 1 Gbit/s path of 32 ms busy without custody (1 MiB left the
	// 20 ms-delay interop path window-limited, and node → Linux through
	// the gateway measured 6.8 against 5.8 Gbit/s in 3 of 4 alternating
	// pairs); the ring grows only as writes fill it, so a connection that
	// sends little costs little. With custody the gateway holds the bytes
	// and the buffer is not used.
	DefaultSendBuf = 4 << 20
	// fabricMSS is the MSS announced on the fabric: the largest payload an
	// IPv4 packet with a bare TCP header can carry (65535 − 20 − 20). The
	// fabric has no link MTU below that.
	fabricMSS = 65535 - 40
)

func (c Config) withDefaults() Config {
	if c.SpinBudget == 0 {
		c.SpinBudget = DefaultSpinBudget
	}
	if c.SpinBudget < 0 {
		c.SpinBudget = 0
	}
	if c.RingSize <= 0 {
		c.RingSize = DefaultRingSize
	}
	if c.DMAThreshold == 0 {
		c.DMAThreshold = DefaultDMAThreshold
	}
	if c.RecvBuf <= 0 {
		c.RecvBuf = DefaultRecvBuf
	}
	if c.MaxRecvBuf <= 0 {
		c.MaxRecvBuf = DefaultMaxRecvBuf
	}
	if c.MaxRecvBuf < c.RecvBuf {
		c.MaxRecvBuf = c.RecvBuf
	}
	if c.Backlog <= 0 {
		c.Backlog = tcp.DefaultBacklog
	}
	if c.Grace <= 0 {
		c.Grace = DefaultGrace
	}
	if c.OrphanTimeout <= 0 {
		c.OrphanTimeout = DefaultOrphanTimeout
	}
	if c.GatewayMSS <= 0 {
		c.GatewayMSS = DefaultGatewayMSS
	}
	if c.SendBuf <= 0 {
		c.SendBuf = DefaultSendBuf
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// tcpConfig is the engine configuration of the stack's connections:
// custody mode, because the fabric neither loses nor reorders, so nothing
// is kept for retransmission (DESIGN.md §2).
func (c *Config) tcpConfig() tcp.Config {
	return tcp.Config{
		MSS:        fabricMSS,
		RecvBuf:    c.RecvBuf,
		MaxRecvBuf: c.MaxRecvBuf,
		NoDelay:    !c.Nagle,
		DelayedAck: c.DelayedAck,
		KeepAlive:  c.KeepAlive,
		Custody:    true,
		CC:         newFabricCC,
		// RFC 7323 timestamps protect against old duplicates (PAWS) and
		// time round trips on a lossy path; a ring pair has neither
		// old duplicates nor losses, so the 12 bytes and the work they
		// cost on every segment buy nothing here.
		NoTimestamps: true,
	}
}

// gatewayTCPConfig is the engine configuration of connections through the
// fabric's gateway to the outside world, a real network that loses,
// reorders and queues: the opposite choices to tcpConfig's. The engine
// retains what it sends and runs its retransmission timer (until the
// gateway takes custody, custody.go); congestion control is the engine's
// default, CUBIC (RFC 9438) with HyStart++; SACK (RFC 2018), window
// scaling and timestamps (RFC 7323, which RACK-TLP needs to tell a
// retransmission's ACK from the original's, RFC 8985 §6.2) are on; the
// MSS is an Ethernet one. Nagle and delayed ACKs follow the stack's
// settings, which default to what a Go net user expects (TCP_NODELAY,
// 40 ms delayed ACK).
//
// The receive side takes segments longer than the MSS whole: the gateway
// hands over the kernel's GRO super-segments (up to 64 KiB) unsplit, and
// the engine's only bound on an arriving segment is the receive window
// (internal/tcp's inputText trims at the window's right edge).
func (c *Config) gatewayTCPConfig() tcp.Config {
	return tcp.Config{
		MSS:        c.GatewayMSS,
		SendBuf:    c.SendBuf,
		RecvBuf:    c.RecvBuf,
		MaxRecvBuf: c.MaxRecvBuf,
		NoDelay:    !c.Nagle,
		DelayedAck: c.DelayedAck,
		KeepAlive:  c.KeepAlive,
	}
}

func (c *Config) fabricConfig() fabric.Config {
	return fabric.Config{Name: c.Fabric, Dir: c.FabricDir, NoDMA: c.NoDMA, Logger: c.Logger}
}
