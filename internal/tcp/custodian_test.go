package tcp

import (
	"bytes"
	"reflect"
	"testing"
	"time"

	"github.com/ultcp/ultcp/internal/wire"
)

// custodyHarness drives a Custodian with a fake clock. Payload octets
// are numbered: the octet with sequence number s is byte(s), so that any
// resend can be checked against what the node sent.
type custodyHarness struct {
	t   *testing.T
	u   *Custodian
	now time.Duration
	out CustodianOutput
}

func newCustody(t *testing.T, cfg CustodianConfig) *custodyHarness {
	t.Helper()
	if cfg.MSS == 0 {
		cfg.MSS = 1000
	}
	return &custodyHarness{t: t, u: NewCustodian(cfg)}
}

// sackTS is the usual gateway flow: SACK and timestamps (RACK-TLP).
func sackTS() CustodianConfig { return CustodianConfig{SACK: true, Timestamps: true} }

func numbered(seq uint32, n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(seq + uint32(i))
	}
	return p
}

func (h *custodyHarness) at(ms int) *custodyHarness {
	h.now = time.Duration(ms) * time.Millisecond
	return h
}

// sent tells the Custodian the node sent n octets from seq.
func (h *custodyHarness) sent(seq uint32, n int) { h.u.Sent(h.now, seq, numbered(seq, n), false) }

// ack feeds a pure ACK with SACK blocks given as left, right pairs and
// returns what the Custodian asked for.
func (h *custodyHarness) ack(ack uint32, sack ...uint32) *CustodianOutput {
	h.t.Helper()
	hdr := wire.TCPHeader{Ack: ack, Flags: wire.FlagACK, Window: 65535}
	for i := 0; i+1 < len(sack); i += 2 {
		hdr.Options.SACK[hdr.Options.NumSACK] = wire.SACKBlock{Left: sack[i], Right: sack[i+1]}
		hdr.Options.NumSACK++
	}
	h.out.Reset()
	h.u.Ack(h.now, &hdr, 0, &h.out)
	h.checkInvariants()
	return &h.out
}

func (h *custodyHarness) timer() *CustodianOutput {
	h.t.Helper()
	h.out.Reset()
	h.u.OnTimer(h.now, &h.out)
	h.checkInvariants()
	return &h.out
}

// expect checks the resends and loss reports of one call, and that each
// resend's octets are the node's.
func (h *custodyHarness) expect(what string, o *CustodianOutput, resend []Resend, loss []LossRange) {
	h.t.Helper()
	if len(o.Resend) != len(resend) || (len(resend) > 0 && !reflect.DeepEqual(o.Resend, resend)) {
		h.t.Fatalf("%s: resend %v, want %v", what, o.Resend, resend)
	}
	if len(o.Loss) != len(loss) || (len(loss) > 0 && !reflect.DeepEqual(o.Loss, loss)) {
		h.t.Fatalf("%s: loss %v, want %v", what, o.Loss, loss)
	}
	for _, r := range o.Resend {
		p, ok := h.u.Payload(nil, r.Seq, r.Len)
		if !ok || !bytes.Equal(p, numbered(r.Seq, r.Len)) {
			h.t.Fatalf("%s: payload of %v: ok %v, octets differ from the node's", what, r, ok)
		}
	}
}

// checkInvariants: the held count is the records' data octets.
func (h *custodyHarness) checkInvariants() {
	h.t.Helper()
	b := &h.u.e.board
	n := 0
	for i := 0; i < b.n(); i++ {
		n += dataLen(b.at(i))
	}
	if n != h.u.held {
		h.t.Fatalf("held %d, records hold %d", h.u.held, n)
	}
}

func (h *custodyHarness) deadline(want time.Duration) {
	h.t.Helper()
	if d := h.u.Deadline(); d != want {
		h.t.Fatalf("deadline %v, want %v", d, want)
	}
}

const ms = time.Millisecond

func TestCustodianHoldsSentOctetsUntilAcknowledged(t *testing.T) {
	h := newCustody(t, sackTS())
	h.sent(1000, 1000)
	h.sent(2000, 1000)
	h.sent(3000, 1000)
	if h.u.Held() != 3000 {
		t.Fatalf("held %d, want 3000", h.u.Held())
	}
	h.at(100)
	h.expect("ACK 2000", h.ack(2000), nil, nil)
	if h.u.Held() != 2000 {
		t.Fatalf("held %d after ACK 2000, want 2000", h.u.Held())
	}
	h.expect("ACK 4000", h.ack(4000), nil, nil)
	if s := h.u.Stats(); s.Held != 0 || s.HeldPeak != 3000 || s.Copied != 3000 {
		t.Fatalf("stats %+v: want held 0, peak 3000, copied 3000", s)
	}
	h.deadline(0)
}

func TestCustodianFreesStoreChunksAsAcksPass(t *testing.T) {
	h := newCustody(t, sackTS())
	for seq := uint32(0); seq < 4*custodyChunk; seq += 1000 {
		h.sent(seq, 1000)
	}
	if fp := h.u.Stats().Footprint; fp != 4*custodyChunk+custodyChunk {
		t.Fatalf("footprint %d for %d octets, want 5 chunks", fp, 4*custodyChunk)
	}
	h.at(100).ack(2 * custodyChunk)
	if n := h.u.store.inUse; n != 3 {
		t.Fatalf("%d chunks in use after half was acknowledged, want 3", n)
	}
	h.ack(h.u.e.sndMax)
	if n := h.u.store.inUse; n != 0 {
		t.Fatalf("%d chunks in use with nothing held", n)
	}
}

// Custodians sharing a ChunkPool: what one gives back the other takes,
// and an idle flow keeps nothing.
func TestCustodianChunkPoolIsShared(t *testing.T) {
	pool := NewChunkPool(8 * custodyChunk)
	a := NewCustodian(CustodianConfig{MSS: 1000, SACK: true, Pool: pool})
	b := NewCustodian(CustodianConfig{MSS: 1000, SACK: true, Pool: pool})
	a.Sent(0, 0, numbered(0, 3*custodyChunk), false)
	hdr := wire.TCPHeader{Flags: wire.FlagACK, Window: 65535, Ack: 3 * custodyChunk}
	var out CustodianOutput
	a.Ack(time.Millisecond, &hdr, 0, &out)
	if fp, free := a.Stats().Footprint, pool.FreeBytes(); fp != 0 || free != 3*custodyChunk {
		t.Fatalf("idle custodian footprint %d, pool free %d; want 0, 3 chunks", fp, free)
	}
	b.Sent(0, 0, numbered(0, 2*custodyChunk), false)
	if fp, free := b.Stats().Footprint, pool.FreeBytes(); fp != 2*custodyChunk || free != custodyChunk {
		t.Fatalf("second custodian footprint %d, pool free %d; want 2 chunks taken from the pool's 3", fp, free)
	}
}

func TestCustodianCutsLargeSegmentsIntoMSSRecords(t *testing.T) {
	h := newCustody(t, CustodianConfig{MSS: 1000})
	h.u.Sent(0, 1000, numbered(1000, 2500), false)
	var got []seqRange
	for i := 0; i < h.u.e.board.n(); i++ {
		s := h.u.e.board.at(i)
		got = append(got, seqRange{s.start, s.end})
	}
	want := []seqRange{{1000, 2000}, {2000, 3000}, {3000, 3500}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("records %v, want %v", got, want)
	}
}

// The usual recovery (RFC 8985 §6.2): with no reordering seen, once
// three records above a hole are SACKed the reordering window is zero
// and RACK deems the hole lost. The loss is reported when the resend is
// acknowledged.
func TestCustodianRACKResendsHoleAfterThreeSACKs(t *testing.T) {
	h := newCustody(t, sackTS())
	for seq := uint32(1000); seq < 6000; seq += 1000 {
		h.sent(seq, 1000)
	}
	h.at(100)
	h.expect("ACK 2000", h.ack(2000), nil, nil)
	h.expect("SACK 3000-4000", h.ack(2000, 3000, 4000), nil, nil)
	h.expect("SACK 3000-5000", h.ack(2000, 3000, 5000), nil, nil)
	h.expect("SACK 3000-6000", h.ack(2000, 3000, 6000), []Resend{{Seq: 2000, Len: 1000}}, nil)
	// An RTT after the resend, the ACK covering it shows the resend
	// filled the hole: now the node hears of the loss.
	h.at(200)
	h.expect("ACK 6000", h.ack(6000), nil, []LossRange{{2000, 3000}})
	if h.u.Held() != 0 || h.u.e.inRecovery {
		t.Fatalf("held %d, in recovery %v after the repair", h.u.Held(), h.u.e.inRecovery)
	}
}

// One SACK above a hole: RACK waits a reordering window (a quarter of
// the minimum RTT, RFC 8985 §6.2 step 4) and its timer resends (§6.3).
func TestCustodianRACKTimerResendsHoleAfterReorderingWindow(t *testing.T) {
	h := newCustody(t, sackTS())
	h.sent(1000, 1000)
	h.sent(2000, 1000)
	h.sent(3000, 1000)
	h.at(100).ack(2000)
	h.expect("SACK 3000-4000", h.ack(2000, 3000, 4000), nil, nil)
	h.deadline(125 * ms)
	h.at(125)
	h.expect("RACK timer", h.timer(), []Resend{{Seq: 2000, Len: 1000}}, nil)
	h.at(230)
	h.expect("ACK of the resend", h.ack(4000), nil, []LossRange{{2000, 3000}})
}

// A resend the original beats (it was only reordered): the ACK covering
// it comes sooner than an RTT after the resend, the D-SACK follows, and
// the node hears of no loss (it could not undo it).
func TestCustodianSpuriousResendIsNotReported(t *testing.T) {
	h := newCustody(t, sackTS())
	h.sent(1000, 1000)
	h.sent(2000, 1000)
	h.sent(3000, 1000)
	h.at(100).ack(2000)
	h.ack(2000, 3000, 4000)
	h.at(125)
	h.expect("RACK timer", h.timer(), []Resend{{Seq: 2000, Len: 1000}}, nil)
	h.at(127)
	h.expect("the late original", h.ack(4000), nil, nil)
	h.at(225)
	h.expect("D-SACK of the resend", h.ack(4000, 2000, 3000), nil, nil)
	if s := h.u.Stats(); s.SpuriousResends != 1 || s.LossReports != 0 {
		t.Fatalf("spurious resends %d, loss reports %d; want 1, 0", s.SpuriousResends, s.LossReports)
	}
}

// Without timestamps the engine uses RFC 6675's DupThresh: a record with
// three SACKed records above it is lost.
func TestCustodianDupThreshWithoutTimestamps(t *testing.T) {
	h := newCustody(t, CustodianConfig{SACK: true})
	for seq := uint32(1000); seq < 6000; seq += 1000 {
		h.sent(seq, 1000)
	}
	h.at(100)
	h.ack(1000, 2000, 3000)
	h.expect("two SACKed above", h.ack(1000, 2000, 4000), nil, nil)
	h.expect("three SACKed above", h.ack(1000, 2000, 5000), []Resend{{Seq: 1000, Len: 1000}}, nil)
	h.at(200)
	h.expect("ACK of the resend", h.ack(6000), nil, []LossRange{{1000, 2000}})
}

// Without SACK: three duplicate ACKs (RFC 5681 §3.2), then a partial ACK
// shows the next record lost too (RFC 6582 §3.2).
func TestCustodianNewRenoDupAcksAndPartialAck(t *testing.T) {
	// The handshake's RTT, as the gateway gives it: without any RTT
	// known, the first sample would come from records that waited in
	// the peer's queue behind the hole, far longer than the path's RTT.
	h := newCustody(t, CustodianConfig{InitialRTT: 100 * time.Millisecond})
	for seq := uint32(1000); seq < 5000; seq += 1000 {
		h.sent(seq, 1000)
	}
	h.at(100)
	h.ack(1000) // the window first seen: not a duplicate yet
	h.ack(1000)
	h.ack(1000)
	h.expect("third duplicate", h.ack(1000), []Resend{{Seq: 1000, Len: 1000}}, nil)
	h.at(200)
	h.expect("partial ACK", h.ack(2000), []Resend{{Seq: 2000, Len: 1000}}, []LossRange{{1000, 2000}})
	h.at(300)
	h.expect("full ACK", h.ack(5000), nil, []LossRange{{2000, 3000}})
}

// RFC 8985 §7: two tail records lost; the probe resends the last one,
// its SACK lets RACK find the other.
func TestCustodianTailLossProbeRevealsLostTail(t *testing.T) {
	h := newCustody(t, sackTS())
	for seq := uint32(1000); seq < 5000; seq += 1000 {
		h.sent(seq, 1000)
	}
	h.at(100).ack(3000)
	// PTO = 2·SRTT (RFC 8985 §7.2); the RTO (SRTT + 4·RTTVAR = 300 ms) is later.
	h.deadline(300 * ms)
	h.at(300)
	h.expect("probe", h.timer(), []Resend{{Seq: 4000, Len: 1000}}, nil)
	h.at(400)
	// The probe arrived an RTT after it left: it repaired the last record.
	h.expect("SACK of the probe", h.ack(3000, 4000, 5000), []Resend{{Seq: 3000, Len: 1000}}, []LossRange{{4000, 5000}})
	h.at(500)
	h.expect("ACK of the resend", h.ack(5000), nil, []LossRange{{3000, 4000}})
}

// A probe that the ACK covers an RTT later repaired a loss (RFC 8985
// §7.4): the node hears of it.
func TestCustodianTailLossProbeThatRepairsIsReported(t *testing.T) {
	h := newCustody(t, sackTS())
	for seq := uint32(1000); seq < 4000; seq += 1000 {
		h.sent(seq, 1000)
	}
	h.at(100).ack(2000)
	h.at(300)
	h.expect("probe", h.timer(), []Resend{{Seq: 3000, Len: 1000}}, nil)
	h.at(400)
	h.expect("ACK covering the probe", h.ack(4000), nil, []LossRange{{3000, 4000}})
}

// An ACK covering the probe sooner than an RTT after it acknowledges the
// original, which was only late: no loss to report.
func TestCustodianTailLossProbeBeatenByOriginalIsNotReported(t *testing.T) {
	h := newCustody(t, sackTS())
	for seq := uint32(1000); seq < 4000; seq += 1000 {
		h.sent(seq, 1000)
	}
	h.at(100).ack(2000)
	h.at(300)
	h.expect("probe", h.timer(), []Resend{{Seq: 3000, Len: 1000}}, nil)
	h.at(350)
	h.expect("ACK of the original", h.ack(4000), nil, nil)
}

// RFC 6298 §5.4–5.6: on expiry, back off and resend the first record;
// the rest follow in slow start as ACKs return.
func TestCustodianRTOResendsFirstThenSlowStarts(t *testing.T) {
	h := newCustody(t, sackTS())
	h.sent(1000, 1000)
	h.sent(2000, 1000)
	h.sent(3000, 1000)
	h.deadline(time.Second) // RTOInitial, no RTT yet
	h.at(1000)
	h.expect("RTO", h.timer(), []Resend{{Seq: 1000, Len: 1000}}, nil)
	h.deadline(3 * time.Second) // backed off to 2 s
	h.at(1100)
	h.expect("ACK 2000", h.ack(2000),
		[]Resend{{Seq: 2000, Len: 1000}, {Seq: 3000, Len: 1000}}, []LossRange{{1000, 2000}})
}

func TestCustodianGivesUpAfterMaxRetries(t *testing.T) {
	h := newCustody(t, CustodianConfig{SACK: true, Timestamps: true, MaxRetries: 3})
	h.sent(1000, 1000)
	for i, at := range []int{1000, 3000, 7000} {
		h.deadline(time.Duration(at) * ms)
		h.at(at)
		o := h.timer()
		h.expect("timeout", o, []Resend{{Seq: 1000, Len: 1000}}, nil)
		if o.Failed {
			t.Fatalf("failed at timeout %d of 3 allowed", i+1)
		}
	}
	h.deadline(15 * time.Second)
	h.at(15000)
	o := h.timer()
	if !o.Failed || !h.u.Failed() {
		t.Fatal("the fourth timeout did not give up")
	}
	h.expect("give up", o, nil, nil)
	if h.u.Held() != 0 || h.u.Stats().Footprint != 0 {
		t.Fatalf("held %d, footprint %d after giving up", h.u.Held(), h.u.Stats().Footprint)
	}
	h.deadline(0)
}

// An ACK that arrives between timeouts shows the peer alive: the count
// of consecutive timeouts starts again (RFC 9293 §3.8.3).
func TestCustodianAckResetsRetryCount(t *testing.T) {
	h := newCustody(t, CustodianConfig{SACK: true, Timestamps: true, MaxRetries: 1})
	h.sent(1000, 1000)
	h.sent(2000, 1000)
	h.at(1000).timer()
	h.at(1100).ack(2000)
	h.now = h.u.Deadline()
	if o := h.timer(); o.Failed {
		t.Fatal("gave up although an ACK arrived after the last timeout")
	}
}

// A node that still retains octets (custody not yet in effect on its
// side) may resend them: nothing is held twice, and the resend counts
// as a transmission for RACK.
func TestCustodianNodeResendIsNotHeldTwice(t *testing.T) {
	h := newCustody(t, sackTS())
	h.sent(1000, 1000)
	h.sent(2000, 1000)
	h.at(50)
	h.sent(1000, 1000)
	if h.u.Held() != 2000 || h.u.Stats().NodeResends != 1 {
		t.Fatalf("held %d, node resends %d; want 2000, 1", h.u.Held(), h.u.Stats().NodeResends)
	}
	if s := h.u.e.board.at(0); s.sentAt != 50*ms || s.flags&segRetx == 0 {
		t.Fatalf("record %+v: want sent again at 50ms", *s)
	}
}

// Octets never seen (a gap) or sent before custody began are the node's:
// never held, never resent.
func TestCustodianNeverResendsWhatItDoesNotHold(t *testing.T) {
	h := newCustody(t, sackTS())
	h.sent(5000, 1000)
	h.sent(3000, 1000) // before the first octet held: the node retains it
	h.sent(8000, 1000) // [6000, 8000) was never seen
	if h.u.Held() != 2000 {
		t.Fatalf("held %d, want 2000", h.u.Held())
	}
	if _, ok := h.u.Payload(nil, 6000, 1000); ok {
		t.Fatal("Payload returned octets of the gap")
	}
	h.at(1000)
	h.expect("RTO", h.timer(), []Resend{{Seq: 5000, Len: 1000}}, nil)
	h.at(1100)
	// The peer has [5000, 6000); [6000, 8000) is the node's to repair.
	h.expect("ACK 6000", h.ack(6000), []Resend{{Seq: 8000, Len: 1000}}, []LossRange{{5000, 6000}})
}

// A timeout with every held record SACKed: what is missing is not ours,
// so no retry counts against the flow and nothing is resent.
func TestCustodianRTOIgnoresHoleItDoesNotHold(t *testing.T) {
	h := newCustody(t, CustodianConfig{SACK: true, Timestamps: true, MaxRetries: 1})
	h.sent(1000, 1000)
	h.sent(5000, 1000)
	h.at(100).ack(1000, 5000, 6000)
	h.at(100).ack(2000, 5000, 6000)
	for range 3 {
		d := h.u.Deadline()
		if d == 0 {
			return
		}
		h.now = d
		o := h.timer()
		if o.Failed || len(o.Resend) > 0 {
			t.Fatalf("timeout over a hole it does not hold: %+v", o)
		}
	}
}

// RFC 9293 §3.4: a cumulative ACK inside a record trims it.
func TestCustodianPartialAckTrimsRecord(t *testing.T) {
	h := newCustody(t, sackTS())
	h.sent(1000, 1000)
	h.at(100).ack(1500)
	if h.u.Held() != 500 {
		t.Fatalf("held %d, want 500", h.u.Held())
	}
	h.now = h.u.Deadline()
	h.expect("RTO", h.timer(), []Resend{{Seq: 1500, Len: 500}}, nil)
}

func TestCustodianResendsFINWithItsRecord(t *testing.T) {
	h := newCustody(t, sackTS())
	h.u.Sent(0, 1000, numbered(1000, 500), true)
	h.u.Sent(0, 1501, nil, false) // a bare ACK: nothing numbered
	h.at(1000)
	h.expect("RTO", h.timer(), []Resend{{Seq: 1000, Len: 500, FIN: true}}, nil)
	h.at(1100)
	h.expect("ACK of the FIN", h.ack(1501), nil, []LossRange{{1000, 1501}})
	if h.u.Held() != 0 || h.u.e.board.n() != 0 {
		t.Fatalf("held %d, %d records after the FIN was acknowledged", h.u.Held(), h.u.e.board.n())
	}
}

func TestCustodianResendsLoneFIN(t *testing.T) {
	h := newCustody(t, sackTS())
	h.sent(1000, 1000)
	h.u.Sent(0, 2000, nil, true)
	h.at(100).ack(2000)
	h.now = h.u.Deadline()
	h.expect("RTO", h.timer(), []Resend{{Seq: 2000, Len: 0, FIN: true}}, nil)
}

// Sequence numbers wrap at 2^32 (RFC 9293 §3.4): records, store and
// SACK work across the wrap.
func TestCustodianAcrossSequenceWrap(t *testing.T) {
	h := newCustody(t, sackTS())
	start := uint32(1<<32 - 1500)
	for i := uint32(0); i < 5; i++ {
		h.sent(start+i*1000, 1000)
	}
	h.at(100)
	h.ack(start + 1000)
	h.ack(start+1000, start+2000, start+3000)
	h.ack(start+1000, start+2000, start+4000)
	h.expect("SACK across the wrap", h.ack(start+1000, start+2000, start+5000),
		[]Resend{{Seq: start + 1000, Len: 1000}}, nil)
	if start+2000 != 500 {
		t.Fatalf("test arithmetic: the lost record ends at %d, not across the wrap", start+2000)
	}
	h.at(200)
	h.expect("ACK across the wrap", h.ack(start+5000), nil, []LossRange{{start + 1000, start + 2000}})
	if h.u.Held() != 0 {
		t.Fatalf("held %d after everything across the wrap was acknowledged", h.u.Held())
	}
}

// REVOKED{seq}: the octets below seq stay held; nothing at or above it
// is held, until a new GRANT.
func TestCustodianRevokedHoldsNothingAboveSeq(t *testing.T) {
	h := newCustody(t, sackTS())
	h.sent(1000, 1000)
	h.sent(2000, 1000)
	h.u.Revoked(2500)
	if h.u.Held() != 1500 {
		t.Fatalf("held %d after REVOKED{2500}, want 1500", h.u.Held())
	}
	h.sent(3000, 1000)
	if h.u.Held() != 1500 || h.u.Stats().NotHeld != 1000 {
		t.Fatalf("held %d, not held %d; want 1500, 1000", h.u.Held(), h.u.Stats().NotHeld)
	}
	h.at(1000)
	h.expect("RTO", h.timer(), []Resend{{Seq: 1000, Len: 1000}}, nil)
	h.u.Grant()
	h.sent(4000, 1000)
	if h.u.Held() != 2500 {
		t.Fatalf("held %d after GRANT and 1000 more, want 2500", h.u.Held())
	}
}

func TestCustodianIgnoresAckBeyondWhatWasSent(t *testing.T) {
	h := newCustody(t, sackTS())
	h.sent(1000, 1000)
	h.at(100).ack(9000)
	if h.u.Held() != 1000 || h.u.Stats().BadAcks != 1 {
		t.Fatalf("held %d, bad ACKs %d; want 1000, 1", h.u.Held(), h.u.Stats().BadAcks)
	}
}

// A D-SACK for a resend (RFC 2883 §4.2) shows the loss spurious: the
// reordering window widens (RFC 8985 §6.2 step 4).
func TestCustodianDSACKWidensReorderingWindow(t *testing.T) {
	h := newCustody(t, sackTS())
	h.sent(1000, 1000)
	h.sent(2000, 1000)
	h.at(100).ack(2000)
	h.at(1000).timer() // a spurious RTO resends [2000, 3000)
	h.at(1100).ack(3000, 2000, 3000)
	if s := h.u.Stats(); s.DSACKs != 1 || !h.u.e.rack.reorderingSeen {
		t.Fatalf("D-SACKs %d, reordering seen %v", s.DSACKs, h.u.e.rack.reorderingSeen)
	}
}

// The steady state: every Sent and Ack allocates nothing.
func TestCustodianSteadyStateAllocatesNothing(t *testing.T) {
	u := NewCustodian(CustodianConfig{MSS: 1448, SACK: true, Timestamps: true})
	p := make([]byte, 1448)
	var out CustodianOutput
	hdr := wire.TCPHeader{Flags: wire.FlagACK, Window: 65535}
	seq, now := uint32(1), time.Duration(0)
	step := func() {
		now += 10 * time.Microsecond
		u.Sent(now, seq, p, false)
		seq += 1448
		hdr.Ack = seq - 64*1448
		out.Reset()
		u.Ack(now, &hdr, 0, &out)
	}
	for range 1000 {
		step()
	}
	if n := testing.AllocsPerRun(1000, step); n != 0 {
		t.Fatalf("%v allocations per segment", n)
	}
}

// BenchmarkCustodianSentAck is the steady state of a flow: 64 segments
// of 1448 octets in flight, one Sent and one Ack per segment.
func BenchmarkCustodianSentAck(b *testing.B) {
	u := NewCustodian(CustodianConfig{MSS: 1448, SACK: true, Timestamps: true})
	p := make([]byte, 1448)
	var out CustodianOutput
	hdr := wire.TCPHeader{Flags: wire.FlagACK, Window: 65535}
	seq, now := uint32(1), time.Duration(0)
	b.ReportAllocs()
	b.SetBytes(1448)
	for b.Loop() {
		now += 10 * time.Microsecond
		u.Sent(now, seq, p, false)
		seq += 1448
		hdr.Ack = seq - 64*1448
		out.Reset()
		u.Ack(now, &hdr, 0, &out)
	}
}

// BenchmarkCustodianSent is mostly Sent: one cumulative ACK frees 64
// segments at a time, so its cost is amortised over them.
func BenchmarkCustodianSent(b *testing.B) {
	u := NewCustodian(CustodianConfig{MSS: 1448, SACK: true, Timestamps: true})
	p := make([]byte, 1448)
	var out CustodianOutput
	hdr := wire.TCPHeader{Flags: wire.FlagACK, Window: 65535}
	seq, now := uint32(1), time.Duration(0)
	n := 0
	b.ReportAllocs()
	b.SetBytes(1448)
	for b.Loop() {
		now += 10 * time.Microsecond
		u.Sent(now, seq, p, false)
		seq += 1448
		if n++; n%64 == 0 {
			hdr.Ack = seq - 64*1448
			out.Reset()
			u.Ack(now, &hdr, 0, &out)
		}
	}
}

// BenchmarkCustodianLoss1pct is the steady state with one segment in a
// hundred lost: SACK blocks above the hole, RACK, a resend and a loss
// report, then the hole filled.
func BenchmarkCustodianLoss1pct(b *testing.B) {
	u := NewCustodian(CustodianConfig{MSS: 1448, SACK: true, Timestamps: true})
	p := make([]byte, 1448)
	var out CustodianOutput
	hdr := wire.TCPHeader{Flags: wire.FlagACK, Window: 65535}
	seq, now := uint32(1), time.Duration(0)
	var hole uint32
	holeAt := -1
	i := 0
	b.ReportAllocs()
	b.SetBytes(1448)
	for b.Loop() {
		now += 10 * time.Microsecond
		u.Sent(now, seq, p, false)
		seq += 1448
		ack := seq - 64*1448
		hdr.Options.NumSACK = 0
		switch {
		case i%100 == 0:
			hole, holeAt = ack, i // this segment's ACK is stuck: lost
			hdr.Ack = hole
		case holeAt >= 0 && i-holeAt < 8:
			hdr.Ack = hole
			hdr.Options.NumSACK = 1
			hdr.Options.SACK[0] = wire.SACKBlock{Left: hole + 1448, Right: ack}
		default:
			holeAt = -1
			hdr.Ack = ack
		}
		i++
		out.Reset()
		u.Ack(now, &hdr, 0, &out)
	}
}

// FuzzCustodian drives a Custodian with arbitrary interleavings of new
// and repeated segments, ACKs with SACK blocks (honest or not), timers,
// revocations and grants, and checks that it never panics, that its held
// count matches its records, and that every resend is of octets it holds,
// byte for byte as the node sent them.
func FuzzCustodian(f *testing.F) {
	f.Add([]byte{0, 10, 0, 10, 2, 1, 3, 3, 2, 2, 0, 200, 3})
	f.Add([]byte{0, 255, 0, 255, 0, 255, 2, 0, 2, 3, 2, 5, 3, 4, 1, 0, 10, 5, 0, 20})
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) == 0 {
			return
		}
		h := newCustody(t, CustodianConfig{MSS: 500, SACK: ops[0]&1 == 0, Timestamps: ops[0]&2 == 0})
		base := uint32(1<<32 - 3000) // across the wrap
		next := base
		arg := func(i int) uint32 {
			if i < len(ops) {
				return uint32(ops[i])
			}
			return 0
		}
		check := func(o *CustodianOutput) {
			for _, r := range o.Resend {
				p, ok := h.u.Payload(nil, r.Seq, r.Len)
				if !ok || !bytes.Equal(p, numbered(r.Seq, r.Len)) {
					t.Fatalf("resend %v of octets not held (ok %v)", r, ok)
				}
			}
			for _, l := range o.Loss {
				if !seqLT(l.Start, l.End) {
					t.Fatalf("loss report %v is empty", l)
				}
			}
		}
		for i := 1; i < len(ops); i += 2 {
			a := arg(i + 1)
			h.now += time.Duration(a) * ms
			switch ops[i] % 6 {
			case 0: // new data, sometimes after a gap
				seq := next
				if a%7 == 0 {
					seq += a * 10
				}
				h.u.Sent(h.now, seq, numbered(seq, int(a)*20), a%11 == 0)
				next = seq + a*20
			case 1: // the node resends something older
				seq := next - a*50
				h.u.Sent(h.now, seq, numbered(seq, int(a)*10), false)
			case 2: // a cumulative ACK somewhere, with a SACK block
				ack := base + uint32(int(next-base)*int(a)/255)
				left := ack + a*7
				check(h.ack(ack, left, left+a*13))
			case 3:
				if d := h.u.Deadline(); d > h.now {
					h.now = d
				}
				check(h.timer())
			case 4:
				h.u.Revoked(next - a*30)
			case 5:
				h.u.Grant()
			}
			h.checkInvariants()
		}
	})
}

// Fast recovery resends at the rate the peer delivers: when RACK's timer
// condemns three records at once, the first goes at once and each later
// one waits for an ACK that delivers as many octets (conservation of
// packets, RFC 6675 §5; the node's window already counts them in
// flight), instead of a burst of three on top of the node's own data.
func TestCustodianPacesResendsInFastRecovery(t *testing.T) {
	h := custodyLossOfThree(t)
	h.at(130)
	h.expect("SACK 5000-7000 delivers 1000", h.ack(2000, 5000, 7000), []Resend{{Seq: 3000, Len: 1000}}, nil)
	h.deadline(230 * ms) // the pace deadline: an RTT after that ACK
	h.at(230)
	h.expect("ACK 3000 delivers 1000", h.ack(3000, 5000, 7000), []Resend{{Seq: 4000, Len: 1000}}, []LossRange{{2000, 3000}})
	h.at(330)
	h.expect("ACK 7000", h.ack(7000), nil, []LossRange{{3000, 5000}})
}

// When no ACK comes for an RTT after the last, the ACK clock has stopped
// (what was in flight was lost too): the records held back go at once,
// not at the retransmission timeout.
func TestCustodianResendsHeldBackRecordsWhenACKsStop(t *testing.T) {
	h := custodyLossOfThree(t)
	h.at(200)
	h.expect("an RTT without an ACK", h.timer(), []Resend{{Seq: 3000, Len: 1000}, {Seq: 4000, Len: 1000}}, nil)
}

// custodyLossOfThree: six records sent at 0, the first acknowledged at
// 100 ms (the RTT), the next three lost, the last two SACKed; RACK's
// timer condemns the three 25 ms later (a quarter of the RTT) and the
// first is resent at once, the others held back.
func custodyLossOfThree(t *testing.T) *custodyHarness {
	h := newCustody(t, sackTS())
	for seq := uint32(1000); seq < 7000; seq += 1000 {
		h.sent(seq, 1000)
	}
	h.at(100)
	h.expect("ACK 2000, SACK 5000-6000", h.ack(2000, 5000, 6000), nil, nil)
	h.deadline(125 * ms)
	h.at(125)
	h.expect("RACK timer: three lost", h.timer(), []Resend{{Seq: 2000, Len: 1000}}, nil)
	h.deadline(200 * ms)
	return h
}

// A resend the receiver reports as a duplicate (D-SACK, RFC 2883) was not
// a repair, however late the ACK that covers it: the original arrived.
// No LOSS goes to the node.
func TestCustodianDSACKedResendIsNotReported(t *testing.T) {
	h := newCustody(t, sackTS())
	for seq := uint32(1000); seq < 6000; seq += 1000 {
		h.sent(seq, 1000)
	}
	h.at(100)
	h.expect("ACK 2000, SACK 3000-5000", h.ack(2000, 3000, 5000), nil, nil)
	h.at(125)
	h.expect("RACK timer", h.timer(), []Resend{{Seq: 2000, Len: 1000}}, nil)
	// An RTT after the resend: the ACK covers it and reports it twice.
	h.at(230)
	h.expect("ACK 6000, D-SACK 2000-3000", h.ack(6000, 2000, 3000), nil, nil)
	if s := h.u.Stats(); s.LossReports != 0 || s.SpuriousResends != 1 {
		t.Fatalf("%d losses reported, %d spurious resends; want 0, 1", s.LossReports, s.SpuriousResends)
	}
}
