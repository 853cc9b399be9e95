package tcp

import (
	"io"
	"syscall"
	"time"

	"github.com/ultcp/ultcp/internal/tcp/cc"
	"github.com/ultcp/ultcp/internal/wire"
)

// State is a connection state of RFC 9293 §3.3.2.
type State uint8

// The connection states. Closed is the zero value: a Conn that has not
// been opened or that has ended.
const (
	Closed State = iota
	Listen
	SynSent
	SynReceived
	Established
	FinWait1
	FinWait2
	CloseWait
	Closing
	LastAck
	TimeWait
)

var stateNames = [...]string{"CLOSED", "LISTEN", "SYN-SENT", "SYN-RECEIVED", "ESTABLISHED",
	"FIN-WAIT-1", "FIN-WAIT-2", "CLOSE-WAIT", "CLOSING", "LAST-ACK", "TIME-WAIT"}

func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "State(?)"
}

// synchronized reports whether the state is one of RFC 9293's synchronized
// states, where the full segment-arrival checks apply.
func (s State) synchronized() bool { return s >= SynReceived }

// Conn is one TCP connection (a TCB, RFC 9293 §3.3.1). See the package
// documentation for how it is driven.
type Conn struct {
	cfg     Config
	state   State
	err     error // why the connection failed; nil after a clean close
	passive bool  // opened by a Listener (RFC 9293: SYN-RECEIVED from LISTEN)

	localPort, remotePort uint16

	icmp icmpState // soft ICMP errors (icmp.go)

	// Send sequence space (RFC 9293 §3.3.1). sndNxt is the next octet to
	// send and moves back to sndUna when a timeout restarts
	// transmission; sndMax is the highest octet ever sent plus one (the
	// RFC's SND.NXT for acceptability checks).
	iss, sndUna, sndNxt, sndMax uint32
	sndWnd, maxSndWnd           uint32 // peer's window in octets, and its largest value
	sndWl1, sndWl2              uint32
	sndShift, rcvShift          uint8 // RFC 7323 shifts (0 unless both sides offered)
	wsOK, tsOK, sackOK          bool  // options both sides agreed on
	sndMSS                      int   // payload octets per segment, after options
	sb                          sendBuf
	finQueued                   bool // the application closed; our FIN is numbered sb.end()
	custody, custodyWanted      bool
	custodyEnd                  uint32      // octets before this are the custodian's to retransmit
	cs                          custodySACK // what the receiver SACKed of the custodian's octets (custodian_sack.go)
	// directWait: the last WriteDirect in custody mode left part of its
	// buffer unsent for want of window; the writer waits with more, so
	// the sender is not application-limited (RFC 7661) meanwhile.
	directWait bool

	// Receive sequence space.
	irs, rcvNxt uint32
	rb          recvBuf
	rcvAdvEdge  uint32 // right edge of the window last advertised
	rcvMSS      int    // largest segment payload seen (for "full-sized" in delayed ACK)
	finRcvd     bool   // the peer's FIN has been accepted (RCV.NXT counts it)
	finPending  bool   // a FIN arrived ahead of RCV.NXT at finSeq
	finSeq      uint32
	rcvUp       uint32 // RFC 6093: the urgent mark, a number only, never an index
	urgValid    bool
	sndUp       uint32 // our urgent pointer: the octet after our urgent data
	sndUpValid  bool

	// RFC 7323 timestamps.
	tsRecent    uint32
	tsRecentAt  time.Duration
	lastAckSent uint32
	tsOffset    uint32 // random-looking offset of our TSval clock (RFC 7323 §5.4)

	// RFC 6298 round-trip estimation, timing one segment at a time.
	srtt, rttvar, rto time.Duration
	minRTT            time.Duration
	rttSeq            uint32
	rttAt             time.Duration
	rttTiming         bool
	retries           int  // consecutive timeouts
	ackSinceTimeout   bool // an acceptable ACK arrived since the last timeout (peer alive)

	// Timers: absolute deadlines, 0 when not armed.
	rtoAt, delackAt, persistAt, kaAt, twAt time.Duration
	persistBackoff                         int
	kaProbes                               int
	lastRecvAt                             time.Duration

	ackNow     bool // an ACK must go out on the next output
	batching   bool // inside InputBatch: hold the ACK until the end
	rcvUnacked int  // in-order octets received since our last ACK
	quickAcks  int  // in-order segments still to ACK at once after a hole (sack.go)

	// Loss recovery (RFC 5681 §3.2, RFC 6582).
	dupAcks    int
	inRecovery bool
	recover    uint32
	cc         cc.Controller
	ackEv      cc.AckEvent
	appLimited bool // the last send was limited by the application or the peer's window, not cwnd (RFC 7661)

	// SACK, RACK-TLP and undo (scoreboard.go, sack.go, rack.go).
	board        scoreboard
	sackIn       [wire.MaxSACKBlocks]wire.SACKBlock // the checked blocks of the ACK being processed
	sackRecent   [maxRecentSACK]seqRange            // recent out-of-order arrivals, newest first
	nSackRecent  int
	dsack        seqRange // duplicate arrival to report in a D-SACK block
	dsackPending bool
	rack         rackState
	tlp          tlpState
	rackAt       time.Duration           // RACK's reordering timer (0: not armed)
	tlpAt        time.Duration           // the tail-loss-probe timer (0: not armed)
	rtoRecovery  bool                    // retransmitting after a timeout, until SND.UNA passes recover
	forceRetx    bool                    // retransmit the first lost segment regardless of pipe
	rescueDone   bool                    // this recovery's rescue retransmission went out
	undoEpisode  bool                    // a congestion response that D-SACKs may prove spurious
	undoRetx     int                     // its retransmissions not yet reported as duplicates
	undoMarker   uint32                  // SND.UNA when it began
	undoRanges   [maxUndoRanges]seqRange // its retransmissions
	nUndoRanges  int
	// ECN (RFC 3168, ecn.go).
	ecnOK      bool   // both SYNs agreed
	ecnEcho    bool   // receiver: a CE arrived; set ECE until the peer's CWR
	cwrPending bool   // sender: set CWR on the next new data segment
	ecnRecover uint32 // sender: no second response before SND.UNA passes this
	// Pacing (when the controller asks for it): the earliest time the
	// next data segment may leave, and the timer that waits for it.
	nextSendAt time.Duration
	paceAt     time.Duration

	challenge rateLimit

	// Receive-window auto-tuning.
	drained int
	tuneAt  time.Duration

	stats Stats

	direct directState // InputDirect's context (direct.go)

	// Header prediction (fastpath.go): noFast turns it off (the tests
	// compare both paths); fastIn and fastOut count the segments it took.
	noFast          bool
	fastIn, fastOut uint64
	stampPending    bool // WriteFast started an RTT measurement; SentAt gives its start
}

// rateLimit allows up to limit events per second of engine time.
type rateLimit struct {
	start time.Duration
	n     int
}

func (r *rateLimit) allow(now time.Duration, limit int) bool {
	if now-r.start >= time.Second || now < r.start {
		r.start, r.n = now, 0
	}
	if r.n >= limit {
		return false
	}
	r.n++
	return true
}

func newConn(cfg *Config, localPort, remotePort uint16, iss uint32) *Conn {
	c := &Conn{cfg: cfg.withDefaults(), localPort: localPort, remotePort: remotePort}
	c.iss, c.sndUna, c.sndNxt, c.sndMax = iss, iss, iss, iss
	c.ecnRecover = iss // no ECN response yet: any echo after the handshake counts
	c.sb = sendBuf{seq: iss + 1, size: c.cfg.SendBuf}
	c.rb = recvBuf{size: c.cfg.RecvBuf}
	c.custody = c.cfg.Custody
	c.custodyEnd = iss
	c.rto = c.cfg.RTOInitial
	c.sndMSS = DefaultMinMSS
	if c.sndMSS > c.cfg.MSS {
		c.sndMSS = c.cfg.MSS
	}
	c.rcvMSS = c.cfg.MSS
	if !c.cfg.NoWindowScale {
		c.rcvShift = c.cfg.rcvShift()
	}
	// The TSval clock's offset is derived from the ISS, itself a keyed
	// hash (RFC 6528), so it reveals no uptime (RFC 7323 §5.4).
	c.tsOffset = tsOffsetFor(iss)
	if c.cfg.CC != nil {
		c.cc = c.cfg.CC()
	} else {
		c.cc = defaultCC()
	}
	return c
}

// Dial starts an active open (RFC 9293 §3.10.1): the Conn enters SYN-SENT
// and its SYN is appended to out. iss is the initial send sequence number,
// which the caller takes from its RFC 6528 generator.
func Dial(now time.Duration, cfg *Config, localPort, remotePort uint16, iss uint32, out []Segment) (*Conn, []Segment) {
	c := newConn(cfg, localPort, remotePort, iss)
	c.state = SynSent
	c.lastRecvAt = now
	out = c.sendSYN(now, out)
	return c, out
}

// NewListening returns a Conn in the LISTEN state waiting for one SYN from
// remotePort (0: any), as RFC 9293's passive OPEN. A Listener uses it for
// every SYN it admits; it is exported for tests and for stacks that want
// RFC 9293's one-TCB passive open.
func NewListening(cfg *Config, localPort, remotePort uint16, iss uint32) *Conn {
	c := newConn(cfg, localPort, remotePort, iss)
	c.state = Listen
	c.passive = true
	return c
}

// State returns the connection state.
func (c *Conn) State() State { return c.state }

// Err returns the error that ended the connection: syscall.ECONNREFUSED,
// ECONNRESET or ETIMEDOUT (or what a custodian reported); nil while the
// connection is alive or after a clean close.
func (c *Conn) Err() error { return c.err }

// Stats returns the connection's counters.
func (c *Conn) Stats() Stats { return c.stats }

// Ports returns the local and remote ports.
func (c *Conn) Ports() (local, remote uint16) { return c.localPort, c.remotePort }

// SndMSS returns the payload octets per segment this connection sends
// (the peer's clamped MSS less option space).
func (c *Conn) SndMSS() int { return c.sndMSS }

// RTT returns the smoothed round-trip time (0 before the first sample).
func (c *Conn) RTT() time.Duration { return c.srtt }

// InFlight returns the sequence space sent and not yet acknowledged
// (SND.NXT − SND.UNA, counting SYN and FIN).
func (c *Conn) InFlight() int { return int(c.sndMax - c.sndUna) }

// Unsent returns the bytes queued by Write and not yet emitted.
func (c *Conn) Unsent() int {
	if seqLT(c.sndNxt, c.sb.end()) {
		return int(c.sb.end() - c.sndNxt)
	}
	return 0
}

// CongestionWindow returns the congestion controller's window in bytes.
func (c *Conn) CongestionWindow() int { return c.cc.CWnd() }

// canSend reports whether the application may still queue data.
func (c *Conn) canSend() bool {
	switch c.state {
	case SynSent, SynReceived, Established, CloseWait:
		return !c.finQueued
	}
	return false
}

// writeErr is the error a write gets when it may not queue data.
func (c *Conn) writeErr() error {
	if c.err != nil {
		return c.err
	}
	return syscall.EPIPE
}

// Writable returns how many bytes Write would accept now.
func (c *Conn) Writable() int {
	if !c.canSend() {
		return 0
	}
	return c.sb.space()
}

// Write queues p for sending and returns how much of it fit in the send
// buffer (RFC 9293 §3.10.2, SEND). It emits nothing: call Output next.
// It fails with EPIPE after Close, or with the connection's error.
func (c *Conn) Write(p []byte) (int, error) {
	if !c.canSend() {
		return 0, c.writeErr()
	}
	return c.sb.write(p), nil
}

// WriteDirect sends from the caller's buffer without staging it: segments
// are appended to out as far as the send and congestion windows allow
// now, and n reports how much of p was consumed. In custody mode the
// segments' payloads point into p itself (the link copies them once, and
// the engine keeps none of the bytes); the caller keeps p intact until it
// has handed out to the link. In retaining mode the engine must keep a
// copy for retransmission, so WriteDirect copies into the send buffer
// (as Write) and emits from there. Bytes queued earlier by Write always go
// first. In custody mode n is 0 until the handshake completes and whenever
// the windows are closed; the caller waits for an ACK and tries again.
func (c *Conn) WriteDirect(now time.Duration, p []byte, out []Segment) (n int, _ []Segment, err error) {
	if !c.canSend() {
		return 0, out, c.writeErr()
	}
	if !c.custody {
		if c.custodyWanted {
			// Custody waits for what the engine retains to be
			// acknowledged (SetCustody): take nothing more to retain,
			// or a writer that keeps the buffer full would keep it
			// waiting for ever.
			return 0, c.output(now, out), nil
		}
		n = c.sb.write(p)
		return n, c.output(now, out), nil
	}
	if c.state < Established {
		return 0, out, nil // nothing can be emitted before the handshake
	}
	if o, ok := c.fastWrite(now, p, out); ok {
		return len(p), o, nil
	}
	c.directWait = false // the writer is here: what it has is p
	out = c.output(now, out)
	if c.sb.n > 0 {
		return 0, out, nil // earlier bytes still wait for the window
	}
	for n < len(p) {
		k, ok := c.sendable(len(p) - n)
		if !ok {
			break
		}
		seq := c.sndNxt
		flags := wire.FlagACK
		if n+k == len(p) {
			flags |= wire.FlagPSH
		}
		out = c.emitData(now, out, seq, flags, p[n:n+k])
		n += k
		c.sb.release(c.sndNxt)
	}
	c.directWait = n < len(p)
	if n < len(p) {
		// The windows, not the writer, stop us (RFC 7661): the ACKs
		// that open them may grow cwnd (output said otherwise, seeing
		// no queued data).
		c.appLimited = false
		c.armPersist(now)
	}
	return n, out, nil
}

// ReleaseBuffers frees the send and receive rings if they hold nothing,
// so that a stack with many idle connections can return their memory
// (they are allocated again on next use). It is never needed for
// correctness and is not worth calling on a busy connection.
func (c *Conn) ReleaseBuffers() {
	if c.sb.n == 0 {
		c.sb.buf, c.sb.head = nil, 0
	}
	if c.rb.n == 0 && c.rb.nooo == 0 {
		c.rb.buf, c.rb.head = nil, 0
	}
}

// Readable returns how many in-order bytes are waiting to be read.
func (c *Conn) Readable() int { return c.rb.n }

// Read copies received in-order bytes into p (RFC 9293 §3.10.3, RECEIVE).
// It returns io.EOF once the peer's FIN has been reached and every byte
// read, the connection's error after a reset or timeout, and (0, nil) when
// nothing is available yet. Reading opens the window: call Output after a
// Read so a window update can go out when one is due.
func (c *Conn) Read(p []byte) (int, error) {
	n := c.rb.read(p)
	c.drained += n
	if n == 0 && len(p) > 0 {
		return 0, c.readErr()
	}
	return n, nil
}

func (c *Conn) readErr() error {
	if c.rb.n > 0 {
		return nil
	}
	if c.err != nil {
		return c.err
	}
	if c.finRcvd {
		return io.EOF
	}
	if c.state == Closed {
		return io.EOF
	}
	return nil
}

// Peek lends the first contiguous span of received in-order bytes without
// copying; it stays valid until the next Discard, Read or Input. Together
// with Discard it is the zero-copy receive path. When nothing is readable
// it returns the same error Read would.
func (c *Conn) Peek() ([]byte, error) {
	if c.rb.n == 0 {
		return nil, c.readErr()
	}
	return c.rb.peek(), nil
}

// Discard consumes up to n readable bytes (after Peek) and returns how many.
func (c *Conn) Discard(n int) int {
	k := c.rb.discard(n)
	c.drained += k
	return k
}

// UrgentPending reports whether the peer has signalled urgent data that
// the reader has not yet passed (RFC 9293 MUST-33). Per RFC 6093 urgent
// bytes are delivered in line like any other; the mark is only advice.
func (c *Conn) UrgentPending() bool {
	return c.urgValid && seqGT(c.rcvUp, c.rcvNxt-uint32(c.rb.n))
}

// SetUrgent marks every byte written so far as urgent (RFC 9293 §3.8.5):
// segments carry URG and a pointer to the octet that follows the urgent
// data (MUST-62) until the peer has acknowledged it. Urgent data may be
// of any length (MUST-31); a pointer farther than 65535 octets from a
// segment's sequence number is sent as 65535 and advances with the
// stream. Per RFC 6093 new applications should not use this.
func (c *Conn) SetUrgent() {
	if !c.canSend() || c.sb.n == 0 && c.sb.end() == c.sndUna {
		return
	}
	c.sndUp, c.sndUpValid = c.sb.end(), true
}

// Close says the application will send nothing more (RFC 9293 §3.10.4,
// CLOSE): a FIN follows the queued data. Receiving continues (half-close)
// until the peer's FIN. Closing in LISTEN, or in SYN-SENT with nothing
// queued, ends the connection at once; closing twice is harmless.
func (c *Conn) Close(now time.Duration, out []Segment) []Segment {
	switch c.state {
	case Listen:
		c.enterClosed(nil)
		return out
	case SynSent:
		if c.sb.n == 0 {
			c.enterClosed(nil)
			return out
		}
		// Data is queued: rather than throw it away (RFC 9293 §3.10.4
		// deletes the TCB here), let the FIN follow it once the
		// handshake completes, as in SYN-RECEIVED.
		c.finQueued = true
		return out
	case SynReceived, Established, CloseWait:
		if !c.finQueued {
			c.finQueued = true
			if c.state == CloseWait {
				c.state = LastAck
			} else if c.state == Established {
				c.state = FinWait1
			}
			// In SYN-RECEIVED the FIN waits for ESTABLISHED (§3.10.4),
			// which moves to FIN-WAIT-1 then.
		}
	}
	return c.output(now, out)
}

// Abort resets the connection (RFC 9293 §3.10.5, ABORT): in a synchronized
// state a RST <SEQ=SND.NXT> goes out; queued data is thrown away.
func (c *Conn) Abort(now time.Duration, out []Segment) []Segment {
	switch c.state {
	case SynReceived, Established, FinWait1, FinWait2, CloseWait:
		out = c.emitRST(out, c.sndMax)
	}
	if c.state != Closed {
		c.enterClosed(syscall.ECONNRESET)
		c.err = nil // we chose to end it; Read reports EOF
	}
	return out
}

// enterClosed ends the connection with err (nil: clean) and disarms
// every timer.
func (c *Conn) enterClosed(err error) {
	c.state = Closed
	if err != nil && c.err == nil {
		c.err = err
	}
	c.rtoAt, c.delackAt, c.persistAt, c.kaAt, c.twAt = 0, 0, 0, 0, 0
	c.ackNow = false
}

// SetCustody switches the retransmission policy for bytes emitted from now
// on. In custody mode the link takes each emitted segment's bytes: the
// engine frees them at once, keeps SND.UNA/SND.NXT and the windows, and
// runs no retransmission for them; the custodian reports losses with
// ReportLoss and gives up with ReportFailure. Switching custody off (a
// custodian refusing more, for example) makes the engine retain and
// retransmit what it emits afterwards; bytes already in custody stay
// the custodian's. Switching custody on while the engine still retains
// unacknowledged bytes takes effect once they are all acknowledged, so
// that no byte is ever nobody's to retransmit; meanwhile no new data is
// sent (and WriteDirect takes none), so the wait ends within a round
// trip or a repair instead of lasting as long as a writer keeps the
// send buffer full.
func (c *Conn) SetCustody(on bool) {
	c.custodyWanted = false
	if on && !c.custody && c.state >= Established && c.retainedInFlight() {
		c.custodyWanted = true
		return
	}
	c.custody = on
}

// Custody reports whether the connection is in custody mode.
func (c *Conn) Custody() bool { return c.custody }

// ReportLoss is the custodian telling the engine that the octets
// [start, end) were lost on the way and had to be resent: the congestion
// controller reacts as if the engine had detected the loss itself, once
// per window of data (RFC 5681 §3.2, RFC 6582 recovery point). If the
// receiver's D-SACKs then show that every range reported in the window
// arrived twice, the loss was not one and the response is undone, as for
// the engine's own retransmissions (RFC 2883 §4.2, custodian_sack.go).
func (c *Conn) ReportLoss(now time.Duration, start, end uint32) {
	if c.state < Established || !seqLT(start, end) || seqGT(end, c.sndMax) {
		return
	}
	c.stats.CustodyLosses++
	if c.inRecovery && seqLT(start, c.recover) {
		c.noteCustodyUndo(start, end)
		return // this window already had its congestion response
	}
	// FlightSize less what the receiver SACKed (custodian_sack.go): the
	// report comes an RTT after the loss, and the octets SACKed since
	// say nothing about what the path holds.
	c.cc.OnCongestion(now, c.flightSize(), false)
	c.inRecovery = true
	c.recover = c.sndMax
	c.startEpisode()
	c.noteCustodyUndo(start, end)
}

// ReportFailure is the custodian giving up on the connection's data; the
// connection ends with err (ETIMEDOUT when nil).
func (c *Conn) ReportFailure(err error) {
	if c.state == Closed {
		return
	}
	if err == nil {
		err = syscall.ETIMEDOUT
	}
	c.enterClosed(err)
}
