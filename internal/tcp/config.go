package tcp

import (
	"time"

	"github.com/ultcp/ultcp/internal/tcp/cc"
)

// Config holds the tunables of a connection. The zero value of every field
// means "use the default" listed beside it, so Config{} is a sound TCP.
type Config struct {
	// MSS is the largest payload this host can receive in one segment,
	// advertised in the SYN (RFC 9293 §3.7.1); it also caps what we send,
	// because a link's MTU is the same both ways. Default 1460.
	MSS int
	// MinMSS is the floor to which a peer's announced MSS is clamped, so
	// that an MSS of 0 or 1 cannot make us cut the stream into tiny
	// segments (a CPU and memory attack). RFC 9293 §3.7.1 requires every
	// IPv4 host to accept 576-octet datagrams, so 536 is always safe.
	// Default 536; values below 64 are raised to 64.
	MinMSS int

	// SendBuf is the send-buffer size in bytes (retaining mode keeps every
	// unacknowledged byte here). Default 256 KiB.
	SendBuf int
	// RecvBuf is the initial receive buffer, which is also the initial
	// window. Default 64 KiB.
	RecvBuf int
	// MaxRecvBuf is the ceiling for receive-window auto-tuning; it also
	// fixes the window-scale shift we offer. Default 4 MiB. Auto-tuning is
	// off when it equals RecvBuf.
	MaxRecvBuf int

	// NoDelay disables Nagle's algorithm (RFC 9293 §3.7.4, MUST-17 lets the
	// application do so).
	NoDelay bool
	// DelayedAck is the most an ACK may be delayed (RFC 9293 §3.8.6.3:
	// under 0.5 s). Default 40 ms. Negative disables delayed ACKs.
	DelayedAck time.Duration

	// RTOMin, RTOMax and RTOInitial bound the retransmission timer
	// (RFC 6298 §2). Defaults 200 ms (as Linux; RFC 6298 suggests 1 s), 60 s, 1 s.
	RTOMin, RTOMax, RTOInitial time.Duration
	// MaxRetries is how many consecutive timeouts of the same data are
	// tolerated before the connection fails with ETIMEDOUT (RFC 9293 §3.8.3,
	// threshold R2). Default 15. SynRetries is the same for SYN and
	// SYN-ACK (R2 for SYN). Default 8: with the 1 s initial RTO doubling
	// up to RTOMax the last SYN goes out 183 s after the first, meeting
	// MUST-23's "at least 3 minutes" (Linux's 6 gives up after 127 s).
	MaxRetries, SynRetries int

	// KeepAlive is the idle time before the first keepalive probe
	// (RFC 1122 §4.2.3.6, RFC 9293 §3.8.4: off by default, MUST-25). Zero
	// disables keepalive; a stack that lets the application merely switch
	// it on uses DefaultKeepAliveIdle, two hours (MUST-28).
	// KeepAliveInterval (default 75 s) spaces the probes; after
	// KeepAliveCount (default 9) unanswered ones the connection fails
	// with ETIMEDOUT.
	KeepAlive, KeepAliveInterval time.Duration
	KeepAliveCount               int

	// TimeWait is how long TIME-WAIT lasts (2×MSL, RFC 9293 §3.6).
	// Default 60 s.
	TimeWait time.Duration

	// FinWait2Timeout bounds FIN-WAIT-2 for a stack whose application has
	// closed both directions (an "orphan", which will never read again):
	// the connection ends that long after entering FIN-WAIT-2 even if the
	// peer never sends its FIN. Zero (the default) keeps RFC 9293's
	// behaviour of waiting indefinitely, which half-closed connections
	// need.
	FinWait2Timeout time.Duration

	// IPv6 says the connection runs over IPv6, whose default send MSS,
	// when a SYN carries no MSS option, is 1220 instead of IPv4's 536
	// (RFC 9293 §3.7.1, MUST-15). A Listener sets it from the addresses.
	IPv6 bool

	// NoWindowScale and NoTimestamps turn off the RFC 7323 options.
	NoWindowScale, NoTimestamps bool

	// NoSACK turns off selective acknowledgments (RFC 2018): neither
	// offered nor accepted, so losses are recovered the NewReno way
	// (RFC 6582), one per round trip.
	NoSACK bool
	// ECN asks for Explicit Congestion Notification (RFC 3168) in our
	// SYN and accepts it in the peer's: when both agree, new data is
	// sent ECT(0), a CE mark the network sets is echoed with ECE, and
	// an echo reduces cwnd once per window as a loss would. The link
	// must carry Segment.ECN to and from the IP header.
	ECN bool
	// NoRACK makes a connection with SACK and timestamps detect losses
	// by RFC 6675's DupThresh rule instead of RACK-TLP (RFC 8985), and
	// send no tail loss probes.
	NoRACK bool

	// ChallengeACKLimit is the most challenge ACKs (and ACKs answering
	// unacceptable segments) one connection sends per second (RFC 5961
	// §7). The limit is per connection so that it leaks nothing across
	// connections (CVE-2016-5696). Default 10.
	ChallengeACKLimit int

	// Custody starts the connection in custody mode (see Conn.SetCustody).
	Custody bool

	// CC builds the congestion controller; nil means cc.DefaultName
	// (CUBIC with HyStart++, unpaced).
	CC func() cc.Controller
}

// Defaults for the Config fields.
const (
	DefaultMSS               = 1460
	DefaultMinMSS            = 536
	DefaultMSSIPv6           = 1220 // RFC 9293 §3.7.1: 1280 − 40 − 20
	MinMSSFloor              = 64
	DefaultSendBuf           = 256 << 10
	DefaultRecvBuf           = 64 << 10
	DefaultMaxRecvBuf        = 4 << 20
	DefaultDelayedAck        = 40 * time.Millisecond
	DefaultRTOMin            = 200 * time.Millisecond
	DefaultRTOMax            = 60 * time.Second
	DefaultRTOInitial        = time.Second
	DefaultMaxRetries        = 15
	DefaultSynRetries        = 8
	DefaultKeepAliveIdle     = 2 * time.Hour // for stacks that switch keepalive on without an interval (MUST-28)
	DefaultKeepAliveInterval = 75 * time.Second
	DefaultKeepAliveCount    = 9
	DefaultTimeWait          = 60 * time.Second
	DefaultChallengeACKLimit = 10
)

// withDefaults returns cfg with every zero field replaced by its default
// and every out-of-range field brought into range.
func (cfg Config) withDefaults() Config {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defD := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	def(&cfg.MSS, DefaultMSS)
	if cfg.MSS > 65535-40 {
		cfg.MSS = 65535 - 40
	}
	def(&cfg.MinMSS, DefaultMinMSS)
	if cfg.MinMSS < MinMSSFloor {
		cfg.MinMSS = MinMSSFloor
	}
	if cfg.MSS < cfg.MinMSS {
		cfg.MSS = cfg.MinMSS
	}
	def(&cfg.SendBuf, DefaultSendBuf)
	def(&cfg.RecvBuf, DefaultRecvBuf)
	def(&cfg.MaxRecvBuf, DefaultMaxRecvBuf)
	if cfg.MaxRecvBuf < cfg.RecvBuf {
		cfg.MaxRecvBuf = cfg.RecvBuf
	}
	// RFC 7323 §2.3: the shift is at most 14, so no window exceeds 2^30.
	const maxWnd = 65535 << 14
	if cfg.MaxRecvBuf > maxWnd {
		cfg.MaxRecvBuf = maxWnd
	}
	if cfg.RecvBuf > cfg.MaxRecvBuf {
		cfg.RecvBuf = cfg.MaxRecvBuf
	}
	if cfg.NoWindowScale && cfg.RecvBuf > 65535 {
		cfg.RecvBuf = 65535
	}
	if cfg.NoWindowScale && cfg.MaxRecvBuf > 65535 {
		cfg.MaxRecvBuf = 65535
	}
	defD(&cfg.DelayedAck, DefaultDelayedAck)
	if cfg.DelayedAck > 500*time.Millisecond {
		cfg.DelayedAck = 500 * time.Millisecond // RFC 9293 MUST-40
	}
	defD(&cfg.RTOMin, DefaultRTOMin)
	defD(&cfg.RTOMax, DefaultRTOMax)
	defD(&cfg.RTOInitial, DefaultRTOInitial)
	if cfg.RTOMax < cfg.RTOMin {
		cfg.RTOMax = cfg.RTOMin
	}
	def(&cfg.MaxRetries, DefaultMaxRetries)
	def(&cfg.SynRetries, DefaultSynRetries)
	defD(&cfg.KeepAliveInterval, DefaultKeepAliveInterval)
	def(&cfg.KeepAliveCount, DefaultKeepAliveCount)
	defD(&cfg.TimeWait, DefaultTimeWait)
	def(&cfg.ChallengeACKLimit, DefaultChallengeACKLimit)
	return cfg
}

// rcvShift is the window-scale shift we offer: the smallest that lets the
// largest receive buffer be advertised (RFC 7323 §2.3).
func (cfg *Config) rcvShift() uint8 {
	var s uint8
	for s < 14 && cfg.MaxRecvBuf>>s > 65535 {
		s++
	}
	return s
}
