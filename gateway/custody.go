package gateway

import (
	"errors"
	"log/slog"
	"syscall"
	"time"

	"github.com/ultcp/ultcp/internal/custody"
	"github.com/ultcp/ultcp/internal/tcp"
	"github.com/ultcp/ultcp/internal/wire"
)

// Gateway-assisted retransmission (issue #7 §4; the protocol is in
// internal/custody and the helpers' gateway contract).
//
// For each flow the gateway sends the node GRANT before the segment that
// completes the node's handshake reaches it: before the outside's SYN-ACK
// when the node dialled, before the outside's ACK of the node's SYN-ACK
// when the outside did. The node enters custody in SYN-SENT or
// SYN-RECEIVED, with nothing retained, so custody covers its first byte
// (a GRANT that came once a writer was sending would wait for everything
// the node retained to be acknowledged). From then on it copies
// every data segment the node sends out into the flow's tcp.Custodian,
// feeds it every segment the outside sends back, and acts on what it
// decides: a lost segment is sent again, from the copy, with headers
// built from the node's latest segment on the flow (its ACK, window and
// timestamps; SACK blocks, CWR and ECT left out, RFC 3168 §6.1.5), and
// once the ACK covering the resend shows it filled the hole (it comes at
// least an RTT after the resend; sooner, the original was only late) the
// node is told with LOSS so that its congestion control reacts.
// When the custodian gives up (the engine's retry limit), the node gets
// FAIL{ETIMEDOUT} and its connection fails as a kernel socket's would.
//
// Memory is bounded by CustodyConfig.Limit, counted in octets held. When
// what the flows still in custody hold passes it, the biggest holders get
// REVOKE until the others fit; a revoked flow's copies continue until the
// node's REVOKED{seq} arrives (the node may have sent more in custody
// meanwhile: that is never a loss), after which the custodian keeps what
// lies below seq and nothing above, and the node retains the rest. Once
// the total is below half the limit the revoked flows get GRANT again.
// So the gateway holds at most the limit plus what the revoked flows
// sent before their REVOKED arrived (at most a window each).
//
// Everything runs on the event loop (hooks.go); nothing here takes a lock,
// and the steady state (a data segment out, an ACK in, no loss)
// allocates nothing.

func init() { newCustodian = newKeeper }

// keeper is the gateway's custodian (hooks.go).
type keeper struct {
	limit int64
	gw    wire.IPv4Addr
	io    custodyIO
	log   *slog.Logger

	flows []*flowCustody // every flow seen, in no order (flowCustody.idx)
	timed timerHeap      // flows with a deadline

	held        int64 // octets held by all custodians
	revokedHeld int64 // of which by flows revoking or revoked
	nRevoked    int   // flows whose REVOKED arrived, awaiting a new GRANT
	nCustody    int   // flows with a custodian

	stats CustodyStats
	pool  *tcp.ChunkPool // the custodians' chunks, shared

	out tcp.CustodianOutput // reused for every call
	pkt []byte              // a resend being built
	rec []byte              // a custody record being built
}

// Phases of a flow's custody.
const (
	phaseHandshake = iota // waiting for both SYNs and the segment after them
	phaseGranted          // GRANT sent: copies taken
	phaseRevoking         // REVOKE sent, REVOKED not yet in: copies still taken
	phaseRevoked          // REVOKED in: nothing new held
	phaseFailed           // FAIL sent: the flow is given up
)

// Control records that could not be queued (the flow's control queue was
// full) and are tried again.
const (
	dueGrant uint8 = 1 << iota
	dueRevoke
	dueFail
	dueLoss
)

// ctlRetry is how soon a control record that found the flow's queue full
// is tried again.
const ctlRetry = time.Millisecond

// flowCustody is one flow's custody state (Flow.Custody).
type flowCustody struct {
	f     *Flow
	idx   int // in keeper.flows
	phase uint8
	due   uint8 // control records to try again at retryAt
	// loss is the LOSS to try again (dueLoss): only the first range
	// waiting, since the node reacts once per window anyway.
	loss tcp.LossRange
	cu   *tcp.Custodian
	held int // cu.Held() as last accounted

	// What the SYNs said (RFC 9293 §3.7.1, RFC 7323, RFC 2018).
	nodeSYN, peerSYN   bool
	nodeWS, peerWS     int // window-scale shift offered, -1 for none
	nodeSACK, peerSACK bool
	nodeTS, peerTS     bool
	// The handshake timed as the gateway sees it (RFC 6298 §2.2's first
	// measurement for the custodian): when the node's SYN (or SYN-ACK)
	// passed, and the RTT once the outside acknowledged it. A SYN sent
	// twice is not timed (Karn).
	nodeISS  uint32
	synAt    time.Duration
	synTimed bool
	rtt      time.Duration

	// The node's latest segment on the flow: resends copy its IPv4
	// fields and TCP header.
	hdr     wire.TCPHeader
	tos     uint8
	ttl     uint8
	src     wire.IPv4Addr
	dst     wire.IPv4Addr
	haveHdr bool

	retryAt  time.Duration
	deadline time.Duration // the earliest of cu.Deadline() and retryAt, 0 for none
	heapIdx  int           // in keeper.timed, -1 when not there
}

func newKeeper(cfg CustodyConfig) (custodian, error) {
	if cfg.Limit <= 0 {
		return nil, errors.New("custody limit must be positive")
	}
	if cfg.IO == nil {
		return nil, errors.New("custody needs the gateway's IO")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &keeper{
		limit: cfg.Limit, gw: cfg.Gateway, io: cfg.IO, log: log,
		// Free chunks are kept up to a quarter of the limit (at least
		// 1 MiB), so flows starting and stopping allocate little and
		// idle flows hold nothing.
		pool: tcp.NewChunkPool(int(max(cfg.Limit/4, 1<<20))),
		pkt:  make([]byte, 0, wire.IPv4HeaderLen+wire.TCPHeaderLen+wire.TCPMaxOptionsLen+0xffff),
		rec:  make([]byte, 0, custody.MaxPacketLen),
	}, nil
}

// state returns f's custody state, making it on first sight.
func (k *keeper) state(f *Flow) *flowCustody {
	if fc, ok := f.Custody.(*flowCustody); ok {
		return fc
	}
	fc := &flowCustody{f: f, idx: len(k.flows), nodeWS: -1, peerWS: -1, heapIdx: -1}
	k.flows = append(k.flows, fc)
	f.Custody = fc
	return fc
}

func (k *keeper) FlowOpened(f *Flow, now time.Duration) { k.state(f) }

// Outbound: a segment the node sent on f.
func (k *keeper) Outbound(f *Flow, now time.Duration, hdr, payload []byte) {
	fc := k.state(f)
	if fc.phase == phaseFailed || len(hdr) < wire.IPv4HeaderLen {
		return
	}
	ihl := int(hdr[0]&0x0f) * 4
	if ihl < wire.IPv4HeaderLen || ihl > len(hdr) {
		return
	}
	var th wire.TCPHeader
	if _, err := th.Parse(hdr[ihl:]); err != nil {
		// Options the parser refuses: the node's engine never writes
		// them, but its bytes must still be held (it keeps none), so
		// take the sequence number and flags as they are.
		if fc.cu == nil || len(hdr) < ihl+wire.TCPHeaderLen {
			return
		}
		if fl := wire.TCPFlags(hdr[ihl+13]); fl&(wire.FlagSYN|wire.FlagRST) == 0 && (len(payload) > 0 || fl&wire.FlagFIN != 0) {
			fc.cu.Sent(now, be.Uint32(hdr[ihl+4:]), payload, fl&wire.FlagFIN != 0)
			k.account(fc)
			k.schedule(fc)
		}
		return
	}
	if th.Flags&wire.FlagSYN != 0 {
		fc.synTimed = !fc.nodeSYN
		fc.nodeSYN, fc.nodeISS, fc.synAt = true, th.Seq, now
		fc.nodeWS = shiftOf(&th.Options)
		fc.nodeSACK, fc.nodeTS = th.Options.SACKPermitted, th.Options.HasTimestamp
		return
	}
	if th.Flags&wire.FlagRST != 0 {
		return
	}
	fc.hdr, fc.haveHdr = th, true
	fc.tos, fc.ttl = hdr[1], hdr[8]
	fc.src, fc.dst = wire.IPv4Addr(hdr[12:16]), wire.IPv4Addr(hdr[16:20])
	if fc.phase == phaseHandshake {
		k.maybeGrant(fc, now)
	}
	if fc.cu != nil && (len(payload) > 0 || th.Flags&wire.FlagFIN != 0) {
		fc.cu.Sent(now, th.Seq, payload, th.Flags&wire.FlagFIN != 0)
		k.account(fc)
		if k.held-k.revokedHeld > k.limit {
			k.shed(now)
		}
		k.schedule(fc)
	}
}

// Inbound: a segment from outside for f.
func (k *keeper) Inbound(f *Flow, now time.Duration, pkt []byte) {
	fc := k.state(f)
	if fc.phase == phaseFailed || len(pkt) < wire.IPv4HeaderLen {
		return
	}
	ihl := int(pkt[0]&0x0f) * 4
	if ihl < wire.IPv4HeaderLen || ihl > len(pkt) {
		return
	}
	var th wire.TCPHeader
	payload, err := th.Parse(pkt[ihl:])
	if err != nil {
		return
	}
	if fc.synTimed && fc.rtt == 0 && th.Flags&wire.FlagACK != 0 && th.Ack == fc.nodeISS+1 {
		fc.rtt = max(now-fc.synAt, 1)
	}
	if th.Flags&wire.FlagSYN != 0 {
		fc.peerSYN = true
		fc.peerWS = shiftOf(&th.Options)
		fc.peerSACK, fc.peerTS = th.Options.SACKPermitted, th.Options.HasTimestamp
		if fc.phase == phaseHandshake && th.Flags&wire.FlagACK != 0 {
			// The outside's SYN-ACK to the node's SYN: GRANT goes on
			// the ring before it, so the node, still in SYN-SENT,
			// enters custody with nothing retained and its first
			// byte is already the gateway's.
			k.maybeGrant(fc, now)
		}
		return
	}
	if fc.phase == phaseHandshake {
		k.maybeGrant(fc, now)
	}
	if fc.cu == nil {
		return
	}
	k.out.Reset()
	fc.cu.Ack(now, &th, len(payload), &k.out)
	k.act(fc, now)
}

// shiftOf returns the window-scale shift a SYN offers, -1 for none.
func shiftOf(o *wire.TCPOptions) int {
	if !o.HasWScale {
		return -1
	}
	return int(min(o.WScale, 14)) // RFC 7323 §2.3
}

// maybeGrant takes custody once both SYNs have passed, from the segment
// that completes the node's handshake (the outside's SYN-ACK or its ACK,
// before it is forwarded) or any later one: a custodian set up with what
// the SYNs negotiated, and GRANT to the node, on its ring ahead of that
// segment.
func (k *keeper) maybeGrant(fc *flowCustody, now time.Duration) {
	if !fc.nodeSYN || !fc.peerSYN {
		return
	}
	ts := fc.nodeTS && fc.peerTS
	mss := int(fc.f.mssOut)
	if mss == 0 {
		mss = tcp.DefaultMSS
	}
	if ts {
		mss -= 12 // RFC 6691: the timestamp option's room in every segment
	}
	shift := 0
	if fc.nodeWS >= 0 && fc.peerWS >= 0 {
		shift = fc.peerWS
	}
	fc.cu = tcp.NewCustodian(tcp.CustodianConfig{
		MSS: mss, SACK: fc.nodeSACK && fc.peerSACK, Timestamps: ts, WindowShift: uint8(shift),
		InitialRTT: fc.rtt, Pool: k.pool,
	})
	k.nCustody++
	fc.phase = phaseGranted
	k.sendCtl(fc, now, dueGrant)
}

// act carries out what the custodian decided: resends out, loss reports
// and failure to the node.
func (k *keeper) act(fc *flowCustody, now time.Duration) {
	o := &k.out
	for _, r := range o.Resend {
		if err := k.resend(fc, r); err != nil {
			k.log.Debug("gateway: custody resend failed", "flow", fc.f.Key, "seq", r.Seq, "err", err)
			continue
		}
		k.stats.Retransmits++
	}
	for _, l := range o.Loss {
		if fc.due&dueLoss == 0 {
			fc.loss = l
		}
		k.sendCtl(fc, now, dueLoss)
	}
	if o.Failed {
		k.fail(fc, now)
		return
	}
	k.account(fc)
	k.schedule(fc)
}

// resend sends r again from the custodian's copy: IPv4 and TCP headers
// from the node's latest segment, with both checksums.
func (k *keeper) resend(fc *flowCustody, r tcp.Resend) error {
	if !fc.haveHdr {
		return errors.New("no segment of the node to copy headers from")
	}
	th := fc.hdr
	th.Seq = r.Seq
	// RFC 3168 §6.1.5: no CWR on a retransmission; ECE is the node's
	// receiver feedback and stays. No URG (the node's urgent pointer
	// was relative to its own segment) and no stale SACK blocks.
	th.Flags = th.Flags&wire.FlagECE | wire.FlagACK
	if r.Len > 0 {
		th.Flags |= wire.FlagPSH
	}
	if r.FIN {
		th.Flags |= wire.FlagFIN
	}
	th.Urgent, th.Checksum = 0, 0
	th.Options.NumSACK = 0
	th.Options.MSS, th.Options.HasWScale, th.Options.SACKPermitted = 0, false, false
	b := k.pkt[:wire.IPv4HeaderLen+wire.TCPHeaderLen+wire.TCPMaxOptionsLen]
	thl, err := th.Encode(b[wire.IPv4HeaderLen:])
	if err != nil {
		return err
	}
	hl := wire.IPv4HeaderLen + thl
	b, ok := fc.cu.Payload(b[:hl], r.Seq, r.Len)
	if !ok {
		return errors.New("custodian does not hold the octets")
	}
	ip := wire.IPv4Header{TOS: fc.tos &^ 3, DontFrag: true, TTL: fc.ttl, Protocol: wire.ProtoTCP,
		Src: fc.src, Dst: fc.dst, PayloadLen: uint16(thl + r.Len)}
	if _, err := ip.Encode(b); err != nil {
		return err
	}
	if err := wire.SetTCPChecksum(fc.src, fc.dst, b[wire.IPv4HeaderLen:hl], b[hl:]); err != nil {
		return err
	}
	k.pkt = b[:0]
	return k.io.ToOutside(fc.f, b)
}

// account brings the totals up to date with fc's custodian, and grants
// custody again once the total is below half the limit.
func (k *keeper) account(fc *flowCustody) {
	n := 0
	if fc.cu != nil {
		n = fc.cu.Held()
	}
	d := int64(n - fc.held)
	fc.held = n
	k.held += d
	if fc.phase == phaseRevoking || fc.phase == phaseRevoked {
		k.revokedHeld += d
	}
	k.stats.HeldBytes = k.held
	if k.nRevoked > 0 && 2*k.held < k.limit {
		k.regrant()
	}
}

// shed sends REVOKE to the biggest holders still in custody until what
// the rest hold fits the limit (what revoked flows hold drains as it is
// acknowledged).
func (k *keeper) shed(now time.Duration) {
	for k.held-k.revokedHeld > k.limit {
		var big *flowCustody
		for _, fc := range k.flows {
			if fc.phase == phaseGranted && fc.held > 0 && (big == nil || fc.held > big.held) {
				big = fc
			}
		}
		if big == nil {
			return
		}
		big.phase = phaseRevoking
		k.revokedHeld += int64(big.held)
		k.stats.Revokes++
		k.log.Debug("gateway: custody revoked", "flow", big.f.Key, "held", big.held, "total", k.held)
		k.sendCtl(big, now, dueRevoke)
	}
}

// regrant sends GRANT to every flow whose REVOKED arrived.
func (k *keeper) regrant() {
	for _, fc := range k.flows {
		if fc.phase != phaseRevoked {
			continue
		}
		fc.phase = phaseGranted
		k.revokedHeld -= int64(fc.held)
		k.nRevoked--
		fc.cu.Grant()
		k.sendCtl(fc, 0, dueGrant)
	}
}

// Control: a custody record from f's node. The node sends only REVOKED,
// and only after a REVOKE.
func (k *keeper) Control(f *Flow, now time.Duration, pkt []byte) {
	fc := k.state(f)
	src, dst, m, err := custody.ParsePacket(pkt)
	if err != nil || src != f.Key.Node || dst != k.gw || m.Type != custody.Revoked || fc.phase != phaseRevoking {
		k.log.Debug("gateway: custody record ignored", "flow", f.Key, "msg", m.String(), "err", err)
		return
	}
	fc.cu.Revoked(m.Seq)
	fc.phase = phaseRevoked
	fc.due &^= dueRevoke
	k.nRevoked++
	k.account(fc)
	k.schedule(fc)
}

// fail gives the flow up: FAIL{ETIMEDOUT} to the node (RFC 9293 §3.8.3:
// the connection times out), its copies freed.
func (k *keeper) fail(fc *flowCustody, now time.Duration) {
	k.release(fc)
	fc.phase = phaseFailed
	k.stats.Failures++
	k.log.Info("gateway: custody gave up on a flow", "flow", fc.f.Key)
	k.sendCtl(fc, now, dueFail)
}

// release frees fc's custodian and takes what it held out of the totals.
// The caller then moves fc out of its phase.
func (k *keeper) release(fc *flowCustody) {
	if fc.cu != nil {
		fc.cu.Release()
		fc.cu = nil
		k.nCustody--
	}
	k.held -= int64(fc.held)
	if fc.phase == phaseRevoking || fc.phase == phaseRevoked {
		k.revokedHeld -= int64(fc.held)
	}
	if fc.phase == phaseRevoked {
		k.nRevoked--
	}
	fc.held = 0
	k.stats.HeldBytes = k.held
}

// sendCtl sends GRANT, REVOKE, LOSS (fc.loss) or FAIL; one that finds the
// flow's control queue full is tried again after ctlRetry.
func (k *keeper) sendCtl(fc *flowCustody, now time.Duration, what uint8) {
	var m custody.Message
	switch what {
	case dueGrant:
		m.Type = custody.Grant
	case dueRevoke:
		m.Type = custody.Revoke
	case dueFail:
		m = custody.Message{Type: custody.Fail, Errno: uint32(syscall.ETIMEDOUT)}
	case dueLoss:
		if fc.due&dueLoss != 0 && what == dueLoss && fc.retryAt > now {
			// An earlier LOSS waits for the queue: the node will
			// react to that one; this window needs no second.
			return
		}
		m = custody.Message{Type: custody.Loss, Start: fc.loss.Start, End: fc.loss.End}
	}
	fc.due &^= what
	k.rec = k.rec[:0]
	rec, err := custody.AppendPacket(k.rec, k.gw, fc.f.Key.Node, m)
	if err == nil {
		err = k.io.ToNode(fc.f, rec)
	}
	if err == nil {
		if what == dueLoss {
			k.stats.LossReports++
		}
		return
	}
	if errors.Is(err, errFlowClosed) {
		return
	}
	fc.due |= what
	fc.retryAt = now + ctlRetry
	k.schedule(fc)
}

// FlowClosed: f is gone; so is its custody.
func (k *keeper) FlowClosed(f *Flow) {
	fc, ok := f.Custody.(*flowCustody)
	if !ok {
		return
	}
	k.release(fc)
	fc.phase = phaseFailed
	fc.due = 0
	k.timed.remove(fc)
	last := k.flows[len(k.flows)-1]
	k.flows[fc.idx], last.idx = last, fc.idx
	k.flows[len(k.flows)-1] = nil
	k.flows = k.flows[:len(k.flows)-1]
	f.Custody = nil
}

// schedule puts fc in the timer heap at its next deadline.
func (k *keeper) schedule(fc *flowCustody) {
	var d time.Duration
	if fc.cu != nil {
		d = fc.cu.Deadline()
	}
	if fc.due != 0 && (d == 0 || fc.retryAt < d) {
		d = fc.retryAt
	}
	fc.deadline = d
	if d == 0 {
		k.timed.remove(fc)
	} else {
		k.timed.set(fc)
	}
}

func (k *keeper) Next() time.Duration {
	if len(k.timed) == 0 {
		return 0
	}
	return k.timed[0].deadline
}

// Tick runs every flow whose deadline has come.
func (k *keeper) Tick(now time.Duration) {
	for len(k.timed) > 0 && k.timed[0].deadline <= now {
		fc := k.timed[0]
		if fc.due != 0 && fc.retryAt <= now {
			for _, what := range [...]uint8{dueGrant, dueRevoke, dueLoss, dueFail} {
				if fc.due&what != 0 {
					k.sendCtl(fc, now, what)
				}
			}
		}
		if fc.cu != nil {
			k.out.Reset()
			fc.cu.OnTimer(now, &k.out)
			k.act(fc, now)
		}
		k.schedule(fc)
		if fc.heapIdx >= 0 && fc.deadline <= now {
			// A deadline that did not move would spin this loop;
			// the timers re-arm in the future, but never trust it.
			fc.deadline = now + ctlRetry
			k.timed.set(fc)
		}
	}
}

func (k *keeper) Stats() CustodyStats {
	s := k.stats
	s.HeldBytes = k.held
	s.Flows = k.nCustody
	return s
}

// timerHeap is a binary min-heap of flows by deadline; each flow knows its
// index, so moving one is O(log n) and nothing is allocated once the heap
// has grown.
type timerHeap []*flowCustody

func (h *timerHeap) set(fc *flowCustody) {
	if fc.heapIdx < 0 {
		fc.heapIdx = len(*h)
		*h = append(*h, fc)
	}
	h.up(fc.heapIdx)
	h.down(fc.heapIdx)
}

func (h *timerHeap) remove(fc *flowCustody) {
	i := fc.heapIdx
	if i < 0 {
		return
	}
	s := *h
	last := len(s) - 1
	s.swap(i, last)
	s[last] = nil
	*h = s[:last]
	fc.heapIdx = -1
	if i < last {
		h.up(i)
		h.down(i)
	}
}

func (h timerHeap) swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIdx, h[j].heapIdx = i, j
}

func (h timerHeap) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if h[p].deadline <= h[i].deadline {
			return
		}
		h.swap(i, p)
		i = p
	}
}

func (h timerHeap) down(i int) {
	for {
		l, m := 2*i+1, i
		if l < len(h) && h[l].deadline < h[m].deadline {
			m = l
		}
		if r := l + 1; r < len(h) && h[r].deadline < h[m].deadline {
			m = r
		}
		if m == i {
			return
		}
		h.swap(i, m)
		i = m
	}
}
