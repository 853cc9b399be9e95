package tcp

import (
	"testing"
	"time"

	"github.com/ultcp/ultcp/internal/tcp/cc"
	"github.com/ultcp/ultcp/internal/wire"
)

// SACK tests: the harness's literal segments with SACK-permitted on both
// sides (RFC 2018 §2) and no timestamps, so losses are found by RFC
// 6675's DupThresh rule.

// establishedSACK completes an active open in which both SYNs carry
// SACK-permitted: ISS 100, the peer's ISS 300 and window 10000, MSS 1000.
func establishedSACK(t *testing.T) *harness {
	t.Helper()
	cfg := testConfig()
	cfg.NoSACK = false
	h := &harness{t: t}
	h.c, h.out = Dial(0, &cfg, localPort, peerPort, 100, nil)
	h.check("SYN", h.out, []string{"<SEQ=100><CTL=SYN><WND=8000><MSS=1000><SACKOK>"})
	h.now = 10 * time.Millisecond
	h.in("<SEQ=300><ACK=101><CTL=SYN,ACK><WND=10000><MSS=1000><SACKOK>",
		"<SEQ=101><ACK=301><CTL=ACK><WND=8000>")
	if !h.c.sackOK {
		t.Fatal("SACK not agreed although both SYNs offered it")
	}
	return h
}

// RFC 2018 §2: SACK only when both SYNs carry SACK-permitted.
func TestSACKNeedsBothSYNs(t *testing.T) {
	cfg := testConfig()
	cfg.NoSACK = false
	h := &harness{t: t}
	h.c, h.out = Dial(0, &cfg, localPort, peerPort, 100, nil)
	h.in("<SEQ=300><ACK=101><CTL=SYN,ACK><WND=10000><MSS=1000>", "<SEQ=101><ACK=301><CTL=ACK><WND=8000>")
	if h.c.sackOK {
		t.Fatal("SACK agreed with a peer whose SYN-ACK did not offer it")
	}
	// A passive open answers SACK-permitted with SACK-permitted.
	p := &harness{t: t, c: NewListening(&cfg, localPort, 0, 100)}
	p.in("<SEQ=300><CTL=SYN><WND=10000><MSS=1000><SACKOK>",
		"<SEQ=100><ACK=301><CTL=SYN,ACK><WND=8000><MSS=1000><SACKOK>")
}

// RFC 2018 §4: every ACK while data is held out of order carries SACK
// blocks; the first covers the segment that arrived last, the others
// repeat the most recently reported blocks.
func TestReceiverSACKBlocksMostRecentFirst(t *testing.T) {
	h := establishedSACK(t)
	h.in("<SEQ=301><ACK=101><CTL=ACK><WND=10000><DATA=100>") // in order: ACK delayed
	h.in("<SEQ=501><ACK=101><CTL=ACK><WND=10000><DATA=100>",
		"<SEQ=101><ACK=401><CTL=ACK><WND=7900><SACK=501-601>")
	h.in("<SEQ=701><ACK=101><CTL=ACK><WND=10000><DATA=100>",
		"<SEQ=101><ACK=401><CTL=ACK><WND=7900><SACK=701-801,501-601>")
	// Filling 601-701 joins both blocks into one.
	h.in("<SEQ=601><ACK=101><CTL=ACK><WND=10000><DATA=100>",
		"<SEQ=101><ACK=401><CTL=ACK><WND=7900><SACK=501-801>")
	h.in("<SEQ=901><ACK=101><CTL=ACK><WND=10000><DATA=100>",
		"<SEQ=101><ACK=401><CTL=ACK><WND=7900><SACK=901-1001,501-801>")
	// The hole at 401 fills: the cumulative ACK jumps, one block is left.
	h.in("<SEQ=401><ACK=101><CTL=ACK><WND=10000><DATA=100>",
		"<SEQ=101><ACK=801><CTL=ACK><WND=7500><SACK=901-1001>")
	h.in("<SEQ=801><ACK=101><CTL=ACK><WND=10000><DATA=100>",
		"<SEQ=101><ACK=1001><CTL=ACK><WND=7300>")
	h.readAll(301, 700)
}

// RFC 2018 §3: with timestamps a SACK option has room for three blocks;
// the oldest are left out.
func TestReceiverSACKBlocksLimitedByOptionSpace(t *testing.T) {
	h := establishedSACK(t)
	for i, want := range []string{
		"<SEQ=101><ACK=301><CTL=ACK><WND=8000><SACK=401-501>",
		"<SEQ=101><ACK=301><CTL=ACK><WND=8000><SACK=601-701,401-501>",
		"<SEQ=101><ACK=301><CTL=ACK><WND=8000><SACK=801-901,601-701,401-501>",
		"<SEQ=101><ACK=301><CTL=ACK><WND=8000><SACK=1001-1101,801-901,601-701,401-501>",
		"<SEQ=101><ACK=301><CTL=ACK><WND=8000><SACK=1201-1301,1001-1101,801-901,601-701>",
	} {
		h.in("<SEQ="+u(uint32(401+200*i))+"><ACK=101><CTL=ACK><WND=10000><DATA=100>", want)
	}
	h.c.tsOK = true // as if timestamps had been agreed: 12 option bytes less
	h.out = h.c.Output(h.now, h.out[:0])
	h.out = h.c.emitACK(h.now, h.out[:0])
	if n := h.out[0].Hdr.Options.NumSACK; n != 3 {
		t.Fatalf("%d SACK blocks beside timestamps, want 3", n)
	}
}

// RFC 2883 §4: a duplicate segment is reported in a D-SACK block first:
// below the cumulative ACK (the peer lost our ACK), or inside an
// out-of-order block, which then follows it.
func TestReceiverReportsDuplicatesWithDSACK(t *testing.T) {
	h := establishedSACK(t)
	h.in("<SEQ=301><ACK=101><CTL=ACK><WND=10000><DATA=100>")
	h.in("<SEQ=601><ACK=101><CTL=ACK><WND=10000><DATA=100>",
		"<SEQ=101><ACK=401><CTL=ACK><WND=7900><SACK=601-701>")
	h.in("<SEQ=301><ACK=101><CTL=ACK><WND=10000><DATA=100>",
		"<SEQ=101><ACK=401><CTL=ACK><WND=7900><SACK=301-401,601-701>")
	h.in("<SEQ=601><ACK=101><CTL=ACK><WND=10000><DATA=100>",
		"<SEQ=101><ACK=401><CTL=ACK><WND=7900><SACK=601-701,601-701>")
	// Partly old, partly new: the old part is the duplicate.
	h.in("<SEQ=351><ACK=101><CTL=ACK><WND=10000><DATA=100>",
		"<SEQ=101><ACK=451><CTL=ACK><WND=7850><SACK=351-401,601-701>")
	if s := h.c.Stats(); s.DSACKsSent != 3 {
		t.Fatalf("DSACKsSent %d, want 3", s.DSACKsSent)
	}
}

// sendFive writes 5000 octets, sent as five segments (cwnd 10 segments).
func sendFive(h *harness) {
	h.t.Helper()
	h.write(5000,
		"<SEQ=101><ACK=301><CTL=ACK><WND=8000><DATA=1000>",
		"<SEQ=1101><ACK=301><CTL=ACK><WND=8000><DATA=1000>",
		"<SEQ=2101><ACK=301><CTL=ACK><WND=8000><DATA=1000>",
		"<SEQ=3101><ACK=301><CTL=ACK><WND=8000><DATA=1000>",
		"<SEQ=4101><ACK=301><CTL=PSH,ACK><WND=8000><DATA=1000>")
}

// RFC 6675 §5: once DupThresh (3) segments above the first are SACKed it
// is lost: fast recovery retransmits it, and only it; the ACK covering
// everything ends recovery.
func TestSACKRecoveryRetransmitsOnlyTheHole(t *testing.T) {
	h := establishedSACK(t)
	sendFive(h)
	h.in("<SEQ=301><ACK=101><CTL=ACK><WND=10000><SACK=1101-2101>")
	h.in("<SEQ=301><ACK=101><CTL=ACK><WND=10000><SACK=1101-3101>")
	h.in("<SEQ=301><ACK=101><CTL=ACK><WND=10000><SACK=1101-4101>",
		"<SEQ=101><ACK=301><CTL=ACK><WND=8000><DATA=1000>")
	if !h.c.inRecovery || h.c.board.sacked != 3000 || h.c.pipe() != 2000 {
		t.Fatalf("in recovery %v, SACKed %d, pipe %d; want true, 3000, 2000 (4101-5101 and the retransmission)",
			h.c.inRecovery, h.c.board.sacked, h.c.pipe())
	}
	h.in("<SEQ=301><ACK=101><CTL=ACK><WND=10000><SACK=1101-5101>") // nothing more is lost
	h.in("<SEQ=301><ACK=5101><CTL=ACK><WND=10000>")
	if s := h.c.Stats(); s.FastRetransmits != 1 || s.Retransmits != 1 || h.c.inRecovery || h.c.board.n() != 0 {
		t.Fatalf("fast retransmits %d, retransmits %d, in recovery %v, records %d; want 1, 1, false, 0",
			s.FastRetransmits, s.Retransmits, h.c.inRecovery, h.c.board.n())
	}
}

// Two holes: the first is lost by DupThresh; the second has only two
// SACKed segments above it, so after the partial ACK it is repaired by
// RFC 6675's rescue retransmission (NextSeg rule 4: nothing lost, no new
// data, room in cwnd), not left to the RTO. Each is resent once.
func TestSACKRecoveryRepairsTwoHoles(t *testing.T) {
	h := establishedSACK(t)
	sendFive(h)
	h.in("<SEQ=301><ACK=101><CTL=ACK><WND=10000><SACK=1101-2101>")
	h.in("<SEQ=301><ACK=101><CTL=ACK><WND=10000><SACK=3101-4101,1101-2101>")
	h.in("<SEQ=301><ACK=101><CTL=ACK><WND=10000><SACK=3101-5101,1101-2101>",
		"<SEQ=101><ACK=301><CTL=ACK><WND=8000><DATA=1000>")
	h.in("<SEQ=301><ACK=2101><CTL=ACK><WND=10000><SACK=3101-5101>",
		"<SEQ=2101><ACK=301><CTL=ACK><WND=8000><DATA=1000>")
	h.in("<SEQ=301><ACK=5101><CTL=ACK><WND=10000>")
	if s := h.c.Stats(); s.Retransmits != 2 || s.FastRetransmits != 1 || s.Rescues != 1 {
		t.Fatalf("retransmits %d, fast retransmits %d, rescues %d; want 2 in one recovery, one a rescue",
			s.Retransmits, s.FastRetransmits, s.Rescues)
	}
}

// The requirement: a retransmission caused by reordering is
// undone. The first segment is only late: three segments above it are
// SACKed, so it is retransmitted and the window cut; then the original
// arrives, the retransmission arrives as a duplicate, and the receiver
// reports it in a D-SACK (RFC 2883). Every retransmission of the episode
// having been a duplicate, the congestion response is undone: cwnd and
// ssthresh come back.
func TestReorderingSpuriousRetransmissionIsUndoneByDSACK(t *testing.T) {
	h := establishedSACK(t)
	sendFive(h)
	h.in("<SEQ=301><ACK=101><CTL=ACK><WND=10000><SACK=1101-2101>")
	h.in("<SEQ=301><ACK=101><CTL=ACK><WND=10000><SACK=1101-3101>")
	before := h.c.CongestionWindow()
	h.in("<SEQ=301><ACK=101><CTL=ACK><WND=10000><SACK=1101-4101>",
		"<SEQ=101><ACK=301><CTL=ACK><WND=8000><DATA=1000>")
	if cut := h.c.CongestionWindow(); cut >= before {
		t.Fatalf("cwnd %d after the fast retransmit, want below %d", cut, before)
	}
	// The late original fills the hole: everything is acknowledged.
	h.in("<SEQ=301><ACK=5101><CTL=ACK><WND=10000>")
	// The retransmission arrives as a duplicate: D-SACK 101-1101.
	h.in("<SEQ=301><ACK=5101><CTL=ACK><WND=10000><SACK=101-1101>")
	s := h.c.Stats()
	if s.DSACKsRcvd != 1 || s.SpuriousUndos != 1 {
		t.Fatalf("D-SACKs received %d, undos %d; want 1 and 1", s.DSACKsRcvd, s.SpuriousUndos)
	}
	if h.c.CongestionWindow() != before || h.c.cc.SSThresh() != cc.InfiniteSSThresh {
		t.Fatalf("after undo: cwnd %d ssthresh %d, want %d and infinite (the window before the episode)",
			h.c.CongestionWindow(), h.c.cc.SSThresh(), before)
	}
}

// A duplicate the network made (no retransmission behind it) proves
// nothing about our loss detection: no undo (RFC 3708 §3).
func TestDSACKOfNetworkDuplicateDoesNotUndo(t *testing.T) {
	h := establishedSACK(t)
	sendFive(h)
	h.in("<SEQ=301><ACK=101><CTL=ACK><WND=10000><SACK=1101-2101>")
	h.in("<SEQ=301><ACK=101><CTL=ACK><WND=10000><SACK=1101-3101>")
	h.in("<SEQ=301><ACK=101><CTL=ACK><WND=10000><SACK=1101-4101>",
		"<SEQ=101><ACK=301><CTL=ACK><WND=8000><DATA=1000>")
	cut := h.c.CongestionWindow()
	// 2101-3101 arrived twice (the link duplicated it): a D-SACK inside
	// the SACKed block, not for the retransmitted segment.
	h.in("<SEQ=301><ACK=101><CTL=ACK><WND=10000><SACK=2101-3101,1101-5101>")
	if s := h.c.Stats(); s.DSACKsRcvd != 1 || s.SpuriousUndos != 0 || h.c.CongestionWindow() != cut {
		t.Fatalf("D-SACKs %d, undos %d, cwnd %d; want 1, 0, %d", s.DSACKsRcvd, s.SpuriousUndos, h.c.CongestionWindow(), cut)
	}
}

// SACK blocks outside what was sent are ignored (and counted), so a
// forged SACK cannot mark data delivered.
func TestBogusSACKBlocksIgnored(t *testing.T) {
	h := establishedSACK(t)
	sendFive(h)
	h.in("<SEQ=301><ACK=101><CTL=ACK><WND=10000><SACK=6101-7101,2101-1101>")
	if s := h.c.Stats(); s.DropBadSACK != 2 || h.c.board.sacked != 0 {
		t.Fatalf("bad SACK blocks counted %d, SACKed %d; want 2 and 0", s.DropBadSACK, h.c.board.sacked)
	}
}

// RFC 8985 §6.3 / RFC 6675 §5.1: a timeout marks every segment not SACKed
// lost; they are resent as the window reopens, skipping what the receiver
// holds.
func TestTimeoutResendsOnlyWhatIsNotSACKed(t *testing.T) {
	h := establishedSACK(t)
	sendFive(h)
	h.in("<SEQ=301><ACK=101><CTL=ACK><WND=10000><SACK=2101-3101>")
	rto := h.c.rtoAt
	h.at(rto, "<SEQ=101><ACK=301><CTL=ACK><WND=8000><DATA=1000>")
	if h.c.board.lost != 3000 { // 1101, 3101, 4101 still to resend
		t.Fatalf("lost octets %d after the timeout's first retransmission, want 3000", h.c.board.lost)
	}
	// Slow start from one segment: the ACK lets two more go, skipping
	// the SACKed 2101-3101.
	h.in("<SEQ=301><ACK=1101><CTL=ACK><WND=10000><SACK=2101-3101>",
		"<SEQ=1101><ACK=301><CTL=ACK><WND=8000><DATA=1000>",
		"<SEQ=3101><ACK=301><CTL=ACK><WND=8000><DATA=1000>")
}

// BenchmarkSenderSACKProcessing is the send path while the receiver
// reports a hole in every ACK: each ACK fills the previous hole and SACKs
// the segment beyond the next one, so every ACK runs SACK marking, the
// scoreboard and RACK. One op is one ACK (two segments acknowledged, two
// sent).
func BenchmarkSenderSACKProcessing(b *testing.B) {
	c := benchConn(b, Config{NoDelay: true, SendBuf: 4 << 20})
	if !c.sackOK {
		// benchConn's SYN-ACK has no SACK-permitted: agree here.
		c.sackOK = true
	}
	mss := c.SndMSS()
	chunk := make([]byte, mss)
	out := make([]Segment, 0, 64)
	now := 2 * time.Millisecond
	for c.Writable() >= mss {
		c.Write(chunk)
	}
	out = c.Output(now, out[:0])
	ack := Segment{Hdr: wire.TCPHeader{SrcPort: peerPort, DstPort: localPort, Seq: 301, Ack: 101,
		Flags: wire.FlagACK, Window: 65535,
		Options: wire.TCPOptions{HasTimestamp: true, TSVal: 2, TSEcr: c.tsNow(0), NumSACK: 1}}}
	sent, sacks := 0, 0
	b.ReportAllocs()
	b.SetBytes(int64(2 * mss))
	for b.Loop() {
		// Acknowledge two more segments (no further than sent), and
		// SACK the one beyond the next if it has been sent.
		ack.Hdr.Ack = c.sndUna + uint32(2*mss)
		if seqGT(ack.Hdr.Ack, c.sndMax) {
			ack.Hdr.Ack = c.sndMax
		}
		l := ack.Hdr.Ack + uint32(mss)
		ack.Hdr.Options.NumSACK = 0
		if seqLEQ(l+uint32(mss), c.sndMax) {
			ack.Hdr.Options.NumSACK = 1
			ack.Hdr.Options.SACK[0] = wire.SACKBlock{Left: l, Right: l + uint32(mss)}
			sacks++
		}
		out = c.Input(now, &ack, out[:0])
		sent += len(out)
		c.Write(chunk)
		c.Write(chunk)
		now += 10 * time.Microsecond
	}
	if sent == 0 || sacks == 0 || c.Stats().DropBadSACK != 0 {
		b.Fatalf("sent %d segments, %d ACKs with SACK, %d bad SACK blocks", sent, sacks, c.Stats().DropBadSACK)
	}
}
