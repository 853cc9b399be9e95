package tcp

import (
	"time"

	"github.com/ultcp/ultcp/internal/tcp/cc"
	"github.com/ultcp/ultcp/internal/wire"
)

// A Custodian retransmits on behalf of a sender that keeps nothing: the
// gateway's side of gateway-assisted retransmission (issue #7). The
// node's engine runs in custody mode (SetCustody): it frees each byte as
// it emits it. The gateway sees every segment the node sends to the
// outside and every segment the outside sends back; a Custodian per flow
// copies the node's bytes as they pass (Sent), learns from the peer's
// ACKs and SACKs what arrived (Ack), detects losses, and asks its caller
// to resend what it holds and to tell the node of each loss
// (ReportLoss), so the node's congestion control reacts as if it had
// seen the loss itself.
//
// Loss detection is the engine's own, run on a Conn that never sends
// (the field e): the scoreboard of records (scoreboard.go), RACK-TLP or
// RFC 6675's DupThresh rule or three duplicate ACKs (rack.go, by what
// the flow negotiated), D-SACK handling with undo, and the RFC 6298
// timer with backoff and the engine's retry limit (timer.go). What
// differs is what is sent: a Custodian never originates data, so
//
//   - in fast recovery it resends the first record marked lost at once
//     (RFC 5681 §3.2's fast retransmit), and the others as the peer's
//     ACKs deliver octets, one octet resent for each octet newly
//     acknowledged or SACKed (conservation of packets, RFC 6675 §5 and
//     RFC 6937's spirit: the node's window already counts the lost
//     octets as in flight, so the copies must not go out as one burst
//     on top of what the node sends), or at once when nothing else of
//     the flow is in flight to bring an ACK;
//   - it reports a loss to the node once the ACK that covers the resend
//     shows that the resend filled the hole (an ACK sooner than an RTT
//     after the resend is for the original, which was only reordered):
//     a resend the receiver reports as a duplicate (D-SACK) before
//     that is never reported either, and the node undoes its response
//     to reported losses whose resends all come back D-SACKed;
//   - after a timeout every record not SACKed is lost, and it resends
//     them in slow start: the first at once (RFC 6298 §5.4), then two
//     bytes for each byte the peer newly acknowledges or SACKs (RFC 5681
//     §3.1), so a collapsed path is not flooded with a whole window;
//   - a tail loss probe (RFC 8985 §7.3) can only resend the last record
//     held, never new data;
//   - it gives up after Config.MaxRetries consecutive timeouts of the same
//     data (RFC 9293 §3.8.3, R2), as the engine would: the caller sends
//     FAIL and the node's connection fails with ETIMEDOUT.
//
// It holds only what it saw and resends only what it holds: bytes the
// node sent before custody began, bytes above a revocation point
// (Revoked) and octets it never saw (a gap) have no record, so their
// losses stay the node's to repair (the node retains them). A segment
// the node sends again (a retransmission of bytes it still retained)
// refreshes the records it covers, as the engine's own retransmission
// would. Memory is a chunked store indexed by sequence number; chunks are
// freed as the cumulative ACK passes them and reused, so the steady
// state allocates nothing.
//
// A Custodian is sans-I/O like the engine: time is passed in, nothing is
// read or written, and it is not safe for concurrent use.
type Custodian struct {
	e       Conn // the sender-side loss machinery; it never emits a segment
	cfg     CustodianConfig
	store   custodyStore
	started bool   // a first byte was held: e.sndUna and e.sndMax are valid
	revoked bool   // custody was handed back: hold nothing at or above limit
	limit   uint32 // see revoked
	failed  bool
	held    int // data octets held (records' octets, less FINs)

	// Slow start after a timeout: octets that may still be resent, and
	// whether the first (RFC 6298 §5.4) is still due.
	rtoBudget int
	rtoFirst  bool
	// Fast recovery: octets that may still be resent, earned by octets
	// delivered (sendLost); when the last ACK came, and when lost records
	// held back for want of budget go anyway if no ACK has come since
	// (the ACK clock stopped: what is in flight was lost too).
	frBudget  int
	lastAckAt time.Duration
	paceAt    time.Duration

	pending  []pendingLoss
	sackIn   [wire.MaxSACKBlocks]wire.SACKBlock
	stats    CustodianStats
	heldPeak int
}

// pendingLoss is a range resent as lost, whose loss is reported once an
// ACK shows that the resend, not the original, filled the hole.
type pendingLoss struct {
	start, end uint32
	at         time.Duration // when it was last resent
}

// CustodianConfig is what a Custodian knows of its flow. The zero value of
// each field means the default beside it.
type CustodianConfig struct {
	// MSS is the payload of one record and of one resent segment: the
	// outside path's MSS (the gateway clamps SYNs to it). Larger
	// segments the node sends (GSO, BIG TCP) are split into records of
	// this size, so that a peer's SACKs, which follow the segments it
	// received, cover records whole. Default 1460.
	MSS int
	// SACK and Timestamps say what the flow negotiated. Loss detection
	// follows the engine: RACK-TLP with both (unless NoRACK), RFC 6675's
	// DupThresh with SACK only, three duplicate ACKs without SACK.
	SACK, Timestamps, NoRACK bool
	// WindowShift is the peer's window-scale shift (RFC 7323 §2.3), from
	// its SYN: the ACKs' window fields are scaled by it.
	WindowShift uint8
	// RTOMin, RTOMax, RTOInitial and MaxRetries are the engine's (Config):
	// defaults 200 ms, 60 s, 1 s and 15.
	RTOMin, RTOMax, RTOInitial time.Duration
	MaxRetries                 int
	// InitialRTT, when not zero, is a first RTT measurement (RFC 6298
	// §2.2) of the path beyond the Custodian: the gateway times the
	// handshake (a SYN out to the SYN-ACK back, or a SYN-ACK out to the
	// ACK back). Without it the first loss is judged with no RTT known:
	// RACK's reordering window is zero and the RTO is RTOInitial.
	InitialRTT time.Duration
	// Pool, when not nil, supplies the store's chunks and takes them
	// back (shared by the flows of one gateway); else the Custodian
	// keeps a few of its own for reuse.
	Pool *ChunkPool
}

// Resend is one segment a Custodian asks its caller to send again: Len
// data octets from Seq (Custodian.Payload copies them) and, when FIN is
// set, the FIN after them. The caller builds the headers (addresses,
// ports, the flow's latest ACK, window and timestamps).
type Resend struct {
	Seq uint32
	Len int
	FIN bool
}

// LossRange is a range [Start, End) of sequence space that was lost and
// resent, for the node (a custody LOSS message, Conn.ReportLoss).
type LossRange struct{ Start, End uint32 }

// CustodianOutput collects what one call asks of the caller. The caller
// keeps one and calls Reset before each call, so nothing is allocated in
// the steady state.
type CustodianOutput struct {
	Resend []Resend    // in sequence order within a call
	Loss   []LossRange // contiguous resent ranges coalesced
	// Failed is set by the call that gave up (too many timeouts): the
	// caller sends FAIL (ETIMEDOUT) to the node and stops resending.
	Failed bool
}

// Reset empties o, keeping its capacity.
func (o *CustodianOutput) Reset() {
	o.Resend, o.Loss, o.Failed = o.Resend[:0], o.Loss[:0], false
}

// CustodianStats are a Custodian's counters.
type CustodianStats struct {
	Held, HeldPeak  int    // data octets held now and at most
	Footprint       int    // bytes of store memory in use now, with chunks kept for reuse (not a Pool's)
	Copied          uint64 // data octets copied in
	NotHeld         uint64 // data octets seen but not held (revoked, gap, out of range)
	NodeResends     uint64 // segments the node sent again over held records
	Retransmits     uint64 // segments resent
	SpuriousResends uint64 // resends the original beat (acknowledged sooner than an RTT): not reported
	RetransmitBytes uint64 // data octets resent
	LossReports     uint64 // loss ranges reported
	Timeouts        uint64 // retransmission-timer expirations
	RACKLosses      uint64 // records RACK marked lost
	TLPProbes       uint64 // tail loss probes sent
	DSACKs          uint64 // D-SACK blocks received
	BadAcks         uint64 // ACKs beyond what was sent, or too old, ignored
}

// maxCustodyGap bounds how far beyond the highest octet seen a segment may
// start (and how far a flow's held range may span): the largest window
// RFC 7323 allows is 2^30.
const maxCustodyGap = 1 << 30

// NewCustodian returns a Custodian for one flow, holding nothing.
func NewCustodian(cfg CustodianConfig) *Custodian {
	if cfg.MSS <= 0 {
		cfg.MSS = DefaultMSS
	}
	if cfg.MSS > 65535-40 {
		cfg.MSS = 65535 - 40
	}
	if cfg.WindowShift > 14 {
		cfg.WindowShift = 14 // RFC 7323 §2.3
	}
	u := &Custodian{cfg: cfg}
	u.store.pool = cfg.Pool
	e := &u.e
	e.cfg = Config{RTOMin: cfg.RTOMin, RTOMax: cfg.RTOMax, RTOInitial: cfg.RTOInitial,
		MaxRetries: cfg.MaxRetries, NoRACK: cfg.NoRACK}.withDefaults()
	u.cfg.RTOMin, u.cfg.RTOMax, u.cfg.RTOInitial = e.cfg.RTOMin, e.cfg.RTOMax, e.cfg.RTOInitial
	u.cfg.MaxRetries = e.cfg.MaxRetries
	e.sndMSS = cfg.MSS
	e.sackOK, e.tsOK = cfg.SACK, cfg.Timestamps
	e.sndShift = cfg.WindowShift
	e.rto = e.cfg.RTOInitial
	e.state = Established
	e.cc = noCongestion{}
	if cfg.InitialRTT > 0 {
		e.rttSample(cfg.InitialRTT)
	}
	return u
}

// noCongestion is the loss machinery's controller: a Custodian has no
// window of its own (the node's controller, told of losses, governs the
// flow), so the engine's calls into its controller do nothing.
type noCongestion struct{}

func (noCongestion) Name() string                          { return "custodian" }
func (noCongestion) Init(time.Duration, int)               {}
func (noCongestion) SetMSS(int)                            {}
func (noCongestion) CWnd() int                             { return -1 }
func (noCongestion) SSThresh() int                         { return -1 }
func (noCongestion) OnAck(*cc.AckEvent)                    {}
func (noCongestion) OnCongestion(time.Duration, int, bool) {}
func (noCongestion) OnRecoveryEnd(time.Duration)           {}
func (noCongestion) OnRTO(time.Duration, int)              {}
func (noCongestion) Undo(time.Duration)                    {}
func (noCongestion) PacingRate() int64                     { return 0 }

// Config returns the configuration with defaults filled in.
func (u *Custodian) Config() CustodianConfig { return u.cfg }

// Failed reports whether the Custodian gave up on the flow.
func (u *Custodian) Failed() bool { return u.failed }

// Held returns the data octets held.
func (u *Custodian) Held() int { return u.held }

// Stats returns the counters.
func (u *Custodian) Stats() CustodianStats {
	s := u.stats
	s.Held, s.HeldPeak, s.Footprint = u.held, u.heldPeak, u.store.footprint()
	s.Timeouts = u.e.stats.Timeouts
	s.RACKLosses = u.e.stats.RACKLosses
	s.DSACKs = u.e.stats.DSACKsRcvd
	return s
}

// Deadline returns the earliest instant at which the Custodian needs
// OnTimer, or 0 when no timer is armed: the retransmission timer, RACK's
// reordering timer or the tail-loss-probe timer.
func (u *Custodian) Deadline() time.Duration {
	e := &u.e
	d := e.rtoAt
	for _, t := range [...]time.Duration{e.rackAt, e.tlpAt, u.paceAt} {
		if t != 0 && (d == 0 || t < d) {
			d = t
		}
	}
	return d
}

// Sent tells the Custodian of a data segment the node sent: seq, its
// payload and whether it carries the FIN. New octets are copied into the
// store (payload may be reused once Sent returns); octets already seen
// are the node resending what it retained, and refresh the records they
// cover; octets already acknowledged, above a revocation point, or wildly
// out of range are not held.
func (u *Custodian) Sent(now time.Duration, seq uint32, payload []byte, fin bool) {
	end := seq + uint32(len(payload))
	if fin {
		end++
	}
	if u.failed || end == seq {
		return
	}
	e := &u.e
	if !u.started {
		if u.revoked && !seqLT(seq, u.limit) {
			u.stats.NotHeld += uint64(len(payload))
			return
		}
		u.started = true
		e.sndUna, e.sndMax = seq, seq
		e.recover = seq
	}
	if seqLEQ(end, e.sndUna) || seqGT(seq, e.sndMax+maxCustodyGap) || seqLT(seq, e.sndUna-maxCustodyGap) {
		u.stats.NotHeld += uint64(len(payload))
		return
	}
	if seqLT(seq, e.sndMax) {
		u.nodeResent(now, seqMax(seq, e.sndUna), min32(end, e.sndMax))
	}
	if !seqGT(end, e.sndMax) {
		return
	}
	start := seqMax(seq, e.sndMax) // octets below were seen before; a gap above e.sndMax is not held
	e.sndMax = end
	dataEnd := end
	if fin {
		dataEnd--
	}
	// What is held: up to the revocation point, and only within the span
	// the store indexes.
	holdEnd := end
	if u.revoked && seqGT(holdEnd, u.limit) {
		holdEnd = seqMax(u.limit, start)
	}
	if !u.store.fits(start, holdEnd) {
		holdEnd = start
	}
	dataHoldEnd := min32(holdEnd, dataEnd)
	if seqLT(start, dataEnd) {
		u.stats.NotHeld += uint64(dataEnd - seqMax(dataHoldEnd, start))
	}
	if !seqLT(start, holdEnd) {
		return
	}
	if seqLT(start, dataHoldEnd) {
		off := int(start - seq)
		u.store.write(start, payload[off:off+int(dataHoldEnd-start)])
		u.stats.Copied += uint64(dataHoldEnd - start)
		u.held += int(dataHoldEnd - start)
		u.heldPeak = max(u.heldPeak, u.held)
	}
	// Cut the held octets into records of at most MSS octets; the FIN
	// (one octet of sequence space) rides on the last, or stands alone.
	finHeld := fin && holdEnd == end
	b := &e.board
	for pos := start; seqLT(pos, dataHoldEnd); {
		recEnd := pos + uint32(min(int(dataHoldEnd-pos), u.cfg.MSS))
		isFIN := finHeld && recEnd == dataEnd
		next := recEnd
		if isFIN {
			recEnd++
		}
		b.add(pos, recEnd, now, isFIN)
		pos = next
	}
	if finHeld && start == dataEnd {
		b.add(dataEnd, end, now, true)
	}
	if !e.rttTiming {
		e.rttTiming, e.rttSeq, e.rttAt = true, start, now
	}
	if e.rtoAt == 0 {
		e.rtoAt = now + e.rto // RFC 6298 §5.1
	}
	e.armTLP(now) // RFC 8985 §7.2: after new data is sent
}

// nodeResent handles the node sending [lo, hi) again: the records wholly
// inside count as retransmitted now (Karn, RACK's send times), and a
// record deemed lost is no longer awaiting a resend.
func (u *Custodian) nodeResent(now time.Duration, lo, hi uint32) {
	e := &u.e
	b := &e.board
	u.stats.NodeResends++
	e.rttTiming = false // Karn's algorithm (RFC 6298 §3)
	for i := b.find(lo); i < b.n(); i++ {
		s := b.at(i)
		if seqGT(s.end, hi) {
			break
		}
		if seqLT(s.start, lo) || s.flags&segSACKed != 0 {
			continue
		}
		b.retransmitted(s, now)
	}
}

// Ack tells the Custodian of a segment from the outside peer on the flow:
// its header, and payloadLen, the octets of data it carried (a segment
// with data is not a duplicate ACK, RFC 5681 §2). Resends and loss
// reports are appended to out; o.Failed is never set here.
func (u *Custodian) Ack(now time.Duration, h *wire.TCPHeader, payloadLen int, out *CustodianOutput) {
	e := &u.e
	if u.failed || h.Flags&wire.FlagACK == 0 || h.Flags&(wire.FlagRST|wire.FlagSYN) != 0 {
		return
	}
	ack := h.Ack
	wnd := uint32(h.Window) << e.sndShift
	if !u.started {
		e.sndWnd, e.maxSndWnd = wnd, max(e.maxSndWnd, wnd)
		return
	}
	// RFC 5961 §5.2's acceptable range; an ACK below SND.UNA is old
	// (reordered) and says nothing new.
	if seqGT(ack, e.sndMax) || seqLT(ack, e.sndUna-e.maxSndWnd) {
		u.stats.BadAcks++
		return
	}
	if seqLT(ack, e.sndUna) {
		return
	}
	blocks := u.sackBlocks(&h.Options)
	if isDSACK(blocks, ack) {
		e.onDSACK(now, blocks[0]) // RFC 2883; RFC 8985 §6.2 step 4; undo
		u.duplicated(blocks[0])
		blocks = blocks[1:]
	}
	e.rack.haveSample, e.rack.advanced = false, false
	delivered := 0
	advanced := seqGT(ack, e.sndUna)
	e.ackSinceTimeout = true
	u.lastAckAt = now
	if advanced {
		sackedBefore := e.board.sacked
		acked := int(ack - e.sndUna)
		u.release(now, ack)
		delivered += acked - (sackedBefore - e.board.sacked)
		e.sndUna = ack
		if e.rttTiming && seqGT(ack, e.rttSeq) {
			e.rttSample(now - e.rttAt) // RFC 6298 §2
			e.rttTiming = false
		}
		e.retries, e.dupAcks = 0, 0
		u.tlpAcked(ack)
		if e.inRecovery {
			if seqGEQ(ack, e.recover) {
				e.inRecovery = false
			} else if !e.sackOK && e.board.n() > 0 && e.board.at(0).start == ack {
				// RFC 6582 §3.2: a partial ACK means the next
				// segment was lost too.
				e.board.markLost(e.board.at(0))
			}
		}
		if e.rtoRecovery && seqGEQ(ack, e.recover) {
			e.rtoRecovery = false
		}
	} else if payloadLen == 0 && h.Flags&wire.FlagFIN == 0 && wnd == e.sndWnd && wnd != 0 && seqLT(e.sndUna, e.sndMax) {
		e.dupAcks++ // RFC 5681 §2
		if !e.sackOK && e.dupAcks == 3 && !e.inRecovery && !e.rtoRecovery && seqGEQ(e.sndUna, e.recover) &&
			e.board.n() > 0 && e.board.at(0).start == e.sndUna {
			e.board.markLost(e.board.at(0)) // RFC 5681 §3.2
			e.enterRecovery(now)
		}
	}
	for _, blk := range blocks {
		delivered += e.board.sack(blk.Left, blk.Right, e, now)
	}
	if e.rack.haveSample {
		// RACK's per-ACK sample (RFC 8985 §6.2) keeps the minimum RTT
		// its reordering window is built from, before it is used: the
		// first loss may come before any cumulative ACK.
		if r := max(now-e.rack.sampleAt, 1); e.minRTT == 0 || r < e.minRTT {
			e.minRTT = r
		}
	}
	if e.sackOK && e.board.n() > 0 {
		e.detectLoss(now, nil)
	}
	if e.rtoRecovery {
		u.rtoBudget += 2 * delivered // slow start (RFC 5681 §3.1)
	} else if e.board.lost > 0 {
		u.frBudget += delivered // conservation of packets
	}
	if len(u.pending) > 0 {
		u.confirmLosses(now, out)
	}
	e.sndWnd = wnd
	e.maxSndWnd = max(e.maxSndWnd, wnd)
	if advanced {
		// RFC 6298 §5.2–5.3.
		if e.board.n() > 0 {
			e.rtoAt = now + e.rto
		} else {
			e.rtoAt, e.tlpAt, e.rackAt = 0, 0, 0
		}
		e.armTLP(now)
	}
	u.sendLost(now, out)
}

// sackBlocks returns the SACK blocks of h that an honest receiver could
// send (as Conn.sackBlocksOf): non-empty and within [SND.UNA -
// MAX.SND.WND, SND.MAX].
func (u *Custodian) sackBlocks(o *wire.TCPOptions) []wire.SACKBlock {
	e := &u.e
	if !e.sackOK || o.NumSACK == 0 {
		return nil
	}
	n := min(int(o.NumSACK), wire.MaxSACKBlocks)
	k := 0
	lo := e.sndUna - e.maxSndWnd
	for _, blk := range o.SACK[:n] {
		if !seqLT(blk.Left, blk.Right) || seqLT(blk.Left, lo) || seqGT(blk.Right, e.sndMax) {
			continue
		}
		u.sackIn[k] = blk
		k++
	}
	return u.sackIn[:k]
}

// release frees what the cumulative ACK covers: the records (telling RACK
// of those newly delivered), their octets in the held count, and the
// store's chunks wholly below the first record still held.
func (u *Custodian) release(now time.Duration, ack uint32) {
	b := &u.e.board
	for i := 0; i < b.n(); i++ {
		s := b.at(i)
		if seqLEQ(s.end, ack) {
			u.held -= dataLen(s)
			continue
		}
		if seqLT(s.start, ack) {
			u.held -= int(ack - s.start)
		}
		break
	}
	b.ackTo(ack, &u.e, now)
	if b.n() == 0 {
		u.store.reset()
	} else {
		u.store.releaseBelow(b.at(0).start)
	}
}

// dataLen is the data octets of a record (its length less a FIN).
func dataLen(s *txSeg) int {
	if s.flags&segFIN != 0 {
		return s.len() - 1
	}
	return s.len()
}

// OnTimer runs the timers due at now (retransmission, RACK reordering,
// tail loss probe) and appends what they resend; o.Failed is set when the
// retry limit is passed. Calling it early is harmless.
func (u *Custodian) OnTimer(now time.Duration, out *CustodianOutput) {
	e := &u.e
	if u.failed {
		return
	}
	if e.rtoAt != 0 && now >= e.rtoAt {
		u.onRTO(now, out)
		if u.failed {
			return
		}
	}
	if e.rackAt != 0 && now >= e.rackAt {
		// RFC 8985 §6.3: the reordering window of a record ran out.
		if e.rackDetect(now) > 0 && !e.inRecovery && !e.rtoRecovery && seqGEQ(e.sndUna, e.recover) {
			e.enterRecovery(now)
		}
	}
	if e.tlpAt != 0 && now >= e.tlpAt {
		u.onTLP(now, out)
	}
	u.sendLost(now, out)
}

// onRTO is the retransmission timer's expiry (RFC 6298 §5.4–5.7, RFC 8985
// §6.3): back off, mark every record not SACKed lost, resend the first.
func (u *Custodian) onRTO(now time.Duration, out *CustodianOutput) {
	e := &u.e
	e.rtoAt = 0
	if e.board.n() == e.board.nSACKed {
		// Every record held has arrived: what the peer lacks is not
		// ours (octets the node retains), so the node's timer, not
		// ours, watches it, and no retry counts against the flow.
		return
	}
	e.stats.Timeouts++
	if e.ackSinceTimeout && e.sndWnd == 0 {
		// The peer answers with a closed window: it is alive, and the
		// resends are window probes (RFC 9293 §3.8.6.1, MUST-37).
		e.retries = 0
	}
	e.ackSinceTimeout = false
	e.retries++
	if e.retries > e.cfg.MaxRetries {
		u.fail(out)
		return
	}
	e.rto = min(2*e.rto, e.cfg.RTOMax) // §5.5
	e.rttTiming = false                // Karn
	e.inRecovery, e.recover, e.dupAcks = false, e.sndMax, 0
	e.tlp, e.tlpAt, e.rackAt = tlpState{}, 0, 0
	e.startEpisode()
	b := &e.board
	for i := 0; i < b.n(); i++ {
		b.markLost(b.at(i))
	}
	e.rtoRecovery = true
	u.rtoBudget, u.rtoFirst = 0, true
	u.sendLost(now, out)
	if e.rtoAt == 0 {
		e.rtoAt = now + e.rto
	}
}

// onTLP sends a tail loss probe (RFC 8985 §7.3): the highest record not
// SACKed again (a Custodian has no new data to probe with).
func (u *Custodian) onTLP(now time.Duration, out *CustodianOutput) {
	e := &u.e
	e.tlpAt = 0
	b := &e.board
	for i := b.n() - 1; i >= 0; i-- {
		s := b.at(i)
		if s.flags&segSACKed != 0 {
			continue
		}
		e.stats.TLPProbes++
		u.stats.TLPProbes++
		u.resend(now, s, out)
		s.flags |= segTLP
		e.tlp = tlpState{endSeq: e.sndMax, active: true, isRetrans: true}
		e.rtoAt = now + e.rto
		return
	}
}

// tlpAcked ends a probe episode once the ACK covers it (RFC 8985 §7.4).
// Whether the probe repaired a loss the node must hear of is judged as
// for every resend (confirmLosses): by when the ACK covering it comes.
func (u *Custodian) tlpAcked(ack uint32) {
	e := &u.e
	if e.tlp.active && !seqLT(ack, e.tlp.endSeq) {
		e.tlp = tlpState{}
	}
}

// sendLost resends the records marked lost, in order: in fast recovery
// the first at once and the rest as delivered octets allow, in slow start
// after a timeout.
func (u *Custodian) sendLost(now time.Duration, out *CustodianOutput) {
	e := &u.e
	b := &e.board
	u.paceAt = 0
	if b.lost == 0 {
		u.frBudget = 0 // no credit is banked for a later loss
		return
	}
	for i := b.firstLost(); i >= 0 && i < b.n() && b.lost > 0; i++ {
		s := b.at(i)
		if s.flags&segLost == 0 {
			continue
		}
		if e.rtoRecovery {
			if !u.rtoFirst && u.rtoBudget < s.len() {
				break
			}
			u.rtoFirst = false
			u.rtoBudget = max(u.rtoBudget-s.len(), 0)
		} else {
			// The first resend of a loss goes at once, as does one
			// when nothing else is in flight to bring the ACK that
			// earns the next (pipe counts resends not yet
			// acknowledged; the lost records are out of it), or when
			// no ACK came for an RTT: what pipe counts was lost too.
			if u.resending() && e.pipe() > 0 && u.frBudget < dataLen(s) {
				if clock := max(e.srtt, time.Millisecond); now-u.lastAckAt < clock {
					u.paceAt = u.lastAckAt + clock
					break
				}
			}
			u.frBudget = max(u.frBudget-dataLen(s), 0)
		}
		u.resend(now, s, out)
	}
	if e.rtoAt == 0 && b.n() > 0 {
		e.rtoAt = now + e.rto
	}
}

// resending reports whether a resend made in fast recovery is still
// unacknowledged: a record resent and neither SACKed nor lost again.
func (u *Custodian) resending() bool {
	for _, p := range u.pending {
		if !u.arrived(p) {
			return true
		}
	}
	return false
}

// resend appends a resend of record s and awaits the ACK that tells
// whether it repaired a loss (confirmLosses).
func (u *Custodian) resend(now time.Duration, s *txSeg, out *CustodianOutput) {
	e := &u.e
	n := dataLen(s)
	out.Resend = append(out.Resend, Resend{Seq: s.start, Len: n, FIN: s.flags&segFIN != 0})
	u.awaitLoss(s.start, s.end, now)
	e.board.retransmitted(s, now)
	e.noteUndoRetx(s)
	e.rttTiming = false // Karn
	e.stats.Retransmits++
	u.stats.Retransmits++
	u.stats.RetransmitBytes += uint64(n)
}

// awaitLoss notes that [start, end) was resent as lost at now.
func (u *Custodian) awaitLoss(start, end uint32, now time.Duration) {
	for i := range u.pending {
		if p := &u.pending[i]; p.start == start {
			p.end, p.at = end, now
			return
		}
	}
	u.pending = append(u.pending, pendingLoss{start, end, now})
}

// confirmLosses reports the resent ranges that have now arrived, if the
// resend is what arrived: an ACK covering a range sooner than the minimum
// RTT after its resend acknowledges the original, which was only late
// (the test of RFC 8985 §6.2 step 2; the Eifel idea of RFC 3522), and a
// resend already reported as a duplicate is dropped (duplicated). The
// node undoes a LOSS only when every resend of the window comes back
// D-SACKed, so a report that looks spurious is not sent at all. A real
// loss is reported about an RTT after
// its resend, when the node could not have sent much more anyway: its
// SND.UNA waits at the hole until then.
func (u *Custodian) confirmLosses(now time.Duration, out *CustodianOutput) {
	e := &u.e
	k := 0
	for _, p := range u.pending {
		if !u.arrived(p) {
			u.pending[k] = p
			k++
			continue
		}
		if e.minRTT == 0 || now-p.at >= e.minRTT {
			u.reportLoss(p.start, p.end, out)
		} else {
			u.stats.SpuriousResends++
		}
	}
	u.pending = u.pending[:k]
}

// duplicated drops the resends awaiting judgment that the D-SACK block
// blk reports received twice (RFC 2883): the original arrived too, so
// there was no loss to report, however late the ACK that covered it.
func (u *Custodian) duplicated(blk wire.SACKBlock) {
	k := 0
	for _, p := range u.pending {
		if seqLEQ(blk.Left, p.start) && seqLEQ(p.end, blk.Right) {
			u.stats.SpuriousResends++
			continue
		}
		u.pending[k] = p
		k++
	}
	u.pending = u.pending[:k]
}

// arrived reports whether the peer holds all of p: cumulatively
// acknowledged, or every record of it still held SACKed.
func (u *Custodian) arrived(p pendingLoss) bool {
	e := &u.e
	if seqLEQ(p.end, e.sndUna) {
		return true
	}
	b := &e.board
	for i := b.find(p.start); i < b.n(); i++ {
		s := b.at(i)
		if !seqLT(s.start, p.end) {
			break
		}
		if s.flags&segSACKed == 0 {
			return false
		}
	}
	return true
}

// reportLoss appends [start, end) to the loss reports, extending the last
// one when they touch.
func (u *Custodian) reportLoss(start, end uint32, out *CustodianOutput) {
	if k := len(out.Loss); k > 0 && out.Loss[k-1].End == start {
		out.Loss[k-1].End = end
		return
	}
	out.Loss = append(out.Loss, LossRange{start, end})
	u.stats.LossReports++
}

// fail gives up on the flow: everything held is freed.
func (u *Custodian) fail(out *CustodianOutput) {
	u.failed = true
	out.Failed = true
	u.Release()
}

// Revoked tells the Custodian that custody ended at seq (the node's
// REVOKED{seq}): it keeps the octets below seq, and holds none at or
// above it, now or later, until Grant.
func (u *Custodian) Revoked(seq uint32) {
	u.revoked, u.limit = true, seq
	if !u.started {
		return
	}
	b := &u.e.board
	// Drop the records at or above seq, and trim one that straddles it.
	// The node retains those octets and retransmits them itself.
	for b.n() > 0 {
		s := b.at(b.n() - 1)
		if !seqLT(seq, s.end) {
			break
		}
		if seqLT(s.start, seq) {
			b.drop(s)
			u.held -= dataLen(s) - int(seq-s.start)
			s.end, s.flags = seq, s.flags&^segFIN
			switch {
			case s.flags&segSACKed != 0:
				b.sacked += s.len()
				b.nSACKed++
			case s.flags&segLost != 0:
				b.lost += s.len()
			}
			break
		}
		b.drop(s)
		u.held -= dataLen(s)
		b.segs = b.segs[:len(b.segs)-1]
	}
	if b.n() == 0 {
		b.reset()
		u.store.reset()
		u.e.rtoAt, u.e.rackAt, u.e.tlpAt = 0, 0, 0
	}
}

// Release frees everything held and stops the timers: the flow is gone.
func (u *Custodian) Release() {
	u.pending = u.pending[:0]
	u.e.board.reset()
	u.store.release()
	u.held = 0
	u.e.rtoAt, u.e.rackAt, u.e.tlpAt = 0, 0, 0
}

// Grant tells the Custodian that custody is on again (a new GRANT): it
// holds new octets from now on.
func (u *Custodian) Grant() { u.revoked = false }

// Payload appends to dst the n data octets from seq that the Custodian
// holds (a Resend's bytes); ok is false, and dst unchanged, if it does not
// hold them all.
func (u *Custodian) Payload(dst []byte, seq uint32, n int) (_ []byte, ok bool) {
	// The records must cover [seq, seq+n) without a gap: a chunk may
	// hold stale octets where nothing was held.
	b := &u.e.board
	end := seq + uint32(n)
	pos := seq
	for i := b.find(seq); i < b.n() && seqLT(pos, end); i++ {
		s := b.at(i)
		if seqGT(s.start, pos) {
			break
		}
		pos = s.end
	}
	if n < 0 || seqLT(pos, end) {
		return dst, false
	}
	return u.store.appendTo(dst, seq, n)
}

func min32(a, b uint32) uint32 {
	if seqLT(a, b) {
		return a
	}
	return b
}
