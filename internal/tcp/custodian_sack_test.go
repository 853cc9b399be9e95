package tcp

import (
	"testing"
	"time"
)

// The node's side of custody with SACK (custodian_sack.go), and the
// writer that waits in WriteDirect.

// custodySACKEstablished is a custody-mode connection that negotiated
// SACK, with a 20000-octet peer window and the initial window of 10
// segments.
func custodySACKEstablished(t *testing.T) *harness {
	t.Helper()
	cfg := testConfig()
	cfg.Custody, cfg.NoSACK = true, false
	h := &harness{t: t}
	h.c, h.out = Dial(0, &cfg, localPort, peerPort, 100, nil)
	h.check("SYN", h.out, []string{"<SEQ=100><CTL=SYN><WND=8000><MSS=1000><SACKOK>"})
	h.now = 10 * time.Millisecond
	h.in("<SEQ=300><ACK=101><CTL=SYN,ACK><WND=20000><MSS=1000><SACKOK>", "<SEQ=101><ACK=301><CTL=ACK><WND=8000>")
	return h
}

// sendTen has the connection emit its initial window: ten segments,
// octets 101 to 10101, with queued octets in all (more than ten segments'
// worth: cwnd, not the application, limits it).
func sendTen(h *harness, queued int) {
	h.t.Helper()
	h.c.Write(make([]byte, queued))
	if out := h.c.Output(h.now, nil); len(out) != 10 || h.c.sndMax != 10101 {
		h.t.Fatalf("%d segments up to %d, want 10 up to 10101", len(out), h.c.sndMax)
	}
}

// inAny has the connection take spec, whatever it sends.
func inAny(h *harness, spec string) {
	h.t.Helper()
	s := parseSeg(h.t, spec)
	h.out = h.c.Input(h.now, &s, h.out[:0])
}

// RFC 6675 §4: octets the receiver SACKed are not in the network. In
// custody mode there are no records, but the SACK blocks still take them
// out of pipe, so the hole the custodian repairs does not stop new data:
// 3000 SACKed octets grow cwnd to 13000 (slow start) and leave pipe at
// 7000, so six new segments go.
func TestCustodySACKedOctetsLeavePipe(t *testing.T) {
	h := custodySACKEstablished(t)
	sendTen(h, 20000)
	if p := h.c.pipe(); p != 10000 {
		t.Fatalf("pipe %d with ten segments out, want 10000", p)
	}
	h.in("<SEQ=301><ACK=101><CTL=ACK><WND=20000><SACK=1101-4101>",
		"<SEQ=10101><ACK=301><CTL=ACK><WND=8000><DATA=1000>",
		"<SEQ=11101><ACK=301><CTL=ACK><WND=8000><DATA=1000>",
		"<SEQ=12101><ACK=301><CTL=ACK><WND=8000><DATA=1000>",
		"<SEQ=13101><ACK=301><CTL=ACK><WND=8000><DATA=1000>",
		"<SEQ=14101><ACK=301><CTL=ACK><WND=8000><DATA=1000>",
		"<SEQ=15101><ACK=301><CTL=ACK><WND=8000><DATA=1000>")
	if p := h.c.pipe(); p != 13000 {
		t.Fatalf("pipe %d, want 13000 (16000 outstanding, 3000 SACKed)", p)
	}
	inAny(h, "<SEQ=301><ACK=101><CTL=ACK><WND=20000><SACK=5101-6101,1101-4101>")
	if s, n := h.c.cs.sacked, h.c.cs.n; s != 4000 || n != 2 {
		t.Fatalf("%d octets SACKed in %d ranges, want 4000 in 2", s, n)
	}
	// The custodian's resend fills the first hole: the cumulative ACK
	// passes the first range and cuts into nothing else.
	inAny(h, "<SEQ=301><ACK=4101><CTL=ACK><WND=20000><SACK=5101-6101>")
	if s, n, p := h.c.cs.sacked, h.c.cs.n, h.c.pipe(); s != 1000 || n != 1 || p != int(h.c.sndMax-4101)-1000 {
		t.Fatalf("%d octets SACKed in %d ranges, pipe %d after ACK 4101; want 1000 in 1, pipe %d",
			s, n, p, int(h.c.sndMax-4101)-1000)
	}
	inAny(h, "<SEQ=301><ACK=20101><CTL=ACK><WND=20000>")
	if p, n := h.c.pipe(), h.c.cs.n; p != 0 || n != 0 {
		t.Fatalf("pipe %d in %d SACKed ranges with everything acknowledged, want 0 in 0", p, n)
	}
}

// Octets count as delivered once (RFC 6675 §5, RFC 3465): when first
// SACKed, not again when the cumulative ACK covers them. The window after
// SACK then ACK equals the window after the ACK alone.
func TestCustodySACKedOctetsCountAsDeliveredOnce(t *testing.T) {
	a, b := custodySACKEstablished(t), custodySACKEstablished(t)
	sendTen(a, 20000)
	sendTen(b, 20000)
	inAny(a, "<SEQ=301><ACK=101><CTL=ACK><WND=20000><SACK=1101-4101>")
	inAny(a, "<SEQ=301><ACK=4101><CTL=ACK><WND=20000>")
	inAny(b, "<SEQ=301><ACK=4101><CTL=ACK><WND=20000>")
	if wa, wb := a.c.CongestionWindow(), b.c.CongestionWindow(); wa != wb {
		t.Fatalf("cwnd %d after SACK then ACK, %d after the ACK alone: SACKed octets counted twice", wa, wb)
	}
}

// A custodian's LOSS comes an RTT after the loss; octets SACKed since are
// not part of the FlightSize the decrease starts from (RFC 5681 §3.2,
// RFC 9438 §4.6: ssthresh = 0.7 · 4000 with 6000 of 10000 SACKed).
func TestCustodyReportLossDecreasesFromFlightLessSACKed(t *testing.T) {
	h := custodySACKEstablished(t)
	sendTen(h, 10000)
	h.in("<SEQ=301><ACK=101><CTL=ACK><WND=20000><SACK=1101-7101>")
	cwnd := h.c.CongestionWindow()
	h.c.ReportLoss(h.now, 101, 1101)
	if got := h.c.CongestionWindow(); got != 2800 {
		t.Fatalf("cwnd %d -> %d after LOSS, want 2800 (0.7 of the 4000 not SACKed)", cwnd, got)
	}
}

// The octets a custodian SACKs are kept in at most maxCustodySACK ranges;
// more holes forget the highest range, which only overstates pipe.
func TestCustodySACKRangesAreBounded(t *testing.T) {
	h := custodySACKEstablished(t)
	h.c.Write(make([]byte, 20000))
	h.c.cc.Init(h.now, 20000)
	h.c.Output(h.now, nil)
	if h.c.sndMax != 20101 {
		t.Fatalf("SND.MAX %d, want 20101", h.c.sndMax)
	}
	// Every other segment SACKed, from the top down: ten ranges.
	for i := 9; i >= 0; i-- {
		l := 1101 + uint32(2*i)*1000
		h.c.csack(l, l+1000)
	}
	if h.c.cs.n != maxCustodySACK || h.c.cs.sacked != maxCustodySACK*1000 || h.c.cs.r[0].start != 1101 {
		t.Fatalf("%d ranges holding %d from %d, want %d holding %d from 1101",
			h.c.cs.n, h.c.cs.sacked, h.c.cs.r[0].start, maxCustodySACK, maxCustodySACK*1000)
	}
	// A block that bridges all of them merges them into one.
	if n := h.c.csack(1101, 20101); n != 19000-maxCustodySACK*1000 || h.c.cs.n != 1 {
		t.Fatalf("bridging block newly SACKed %d into %d ranges, want %d into 1", n, h.c.cs.n, 19000-maxCustodySACK*1000)
	}
}

// RFC 7661: a WriteDirect writer stopped by the windows is not
// application-limited while it waits, though the engine holds none of its
// bytes: the ACKs that arrive before it comes back grow cwnd, each one
// (slow start, RFC 5681 §3.1), and cwnd is not held at the write size.
func TestCustodyWriteDirectWaitingWriterIsNotAppLimited(t *testing.T) {
	h := custodySACKEstablished(t)
	h.c.noFast = true // the full path (a gateway flow, with timestamps, takes no other)
	p := make([]byte, 30000)
	n, _, err := h.c.WriteDirect(h.now, p, nil)
	if err != nil || n != 10000 {
		t.Fatalf("WriteDirect took %d, %v; want 10000 (the initial window)", n, err)
	}
	inAny(h, "<SEQ=301><ACK=2101><CTL=ACK><WND=20000>")
	inAny(h, "<SEQ=301><ACK=4101><CTL=ACK><WND=20000>")
	if w := h.c.CongestionWindow(); w != 14000 {
		t.Fatalf("cwnd %d after two ACKs of 2000 with the writer waiting, want 14000", w)
	}
	// The writer takes what opened and still waits; once it has
	// written everything, it is the application that limits.
	n, _, _ = h.c.WriteDirect(h.now, p[10000:], nil)
	if n != 8000 || !h.c.directWait {
		t.Fatalf("WriteDirect took %d (waiting %v), want 8000 and still waiting", n, h.c.directWait)
	}
	inAny(h, "<SEQ=301><ACK=18101><CTL=ACK><WND=20000>")
	n, _, _ = h.c.WriteDirect(h.now, p[18000:20000], nil)
	if n != 2000 || h.c.directWait {
		t.Fatalf("WriteDirect took %d (waiting %v), want 2000 and done", n, h.c.directWait)
	}
	w := h.c.CongestionWindow()
	inAny(h, "<SEQ=301><ACK=20101><CTL=ACK><WND=20000>")
	if got := h.c.CongestionWindow(); got != w {
		t.Fatalf("cwnd %d -> %d on an ACK with the application out of data", w, got)
	}
}

// While custody waits for retained octets to be acknowledged (a GRANT
// after the writer started), nothing new is sent or taken to retain, so
// the wait ends with the next ACK instead of lasting as long as a writer
// keeps the buffer full; then the writer's bytes go out in custody.
func TestCustodyPendingTakesNothingNewToRetain(t *testing.T) {
	h := established(t)
	h.write(1000, "<SEQ=101><ACK=301><CTL=PSH,ACK><WND=8000><DATA=1000>")
	h.c.SetCustody(true)
	p := make([]byte, 2000)
	n, out, err := h.c.WriteDirect(h.now, p, nil)
	if err != nil || n != 0 || len(out) != 0 || h.c.Retained() != 1000 {
		t.Fatalf("WriteDirect with custody pending took %d, sent %d segments, retains %d (%v); want 0, 0, 1000",
			n, len(out), h.c.Retained(), err)
	}
	h.in("<SEQ=301><ACK=1101><CTL=ACK><WND=10000>")
	if !h.c.Custody() {
		t.Fatal("custody still off after the retained octets were acknowledged")
	}
	n, out, _ = h.c.WriteDirect(h.now, p, nil)
	if n != 2000 || len(out) != 2 || &out[0].Payload[0] != &p[0] || h.c.RetainedInFlight() != 0 {
		t.Fatalf("WriteDirect in custody took %d in %d segments, retains %d; want 2000 from the caller's buffer, none",
			n, len(out), h.c.RetainedInFlight())
	}
}

// A LOSS whose resend comes back as a duplicate (the receiver's D-SACK,
// RFC 2883 §4.2) was no loss: once every range reported in the window is
// D-SACKed the congestion response is undone, as for the engine's own
// retransmissions.
func TestCustodyReportedLossUndoneByDSACKs(t *testing.T) {
	h := custodySACKEstablished(t)
	sendTen(h, 10000)
	inAny(h, "<SEQ=301><ACK=3101><CTL=ACK><WND=20000>")
	before := h.c.CongestionWindow()
	h.c.ReportLoss(h.now, 3101, 4101)
	h.c.ReportLoss(h.now, 5101, 6101)
	reduced := h.c.CongestionWindow()
	if reduced >= before {
		t.Fatalf("cwnd %d -> %d: no reaction to the LOSS", before, reduced)
	}
	inAny(h, "<SEQ=301><ACK=7101><CTL=ACK><WND=20000>")
	inAny(h, "<SEQ=301><ACK=7101><CTL=ACK><WND=20000><SACK=3101-4101>")
	if h.c.Stats().SpuriousUndos != 0 {
		t.Fatal("undone after one of the two reported ranges came back D-SACKed")
	}
	inAny(h, "<SEQ=301><ACK=7101><CTL=ACK><WND=20000><SACK=5101-6101>")
	if got, st := h.c.CongestionWindow(), h.c.Stats(); st.SpuriousUndos != 1 || got < before {
		t.Fatalf("after both D-SACKs: %d undos, cwnd %d; want 1 and at least %d (before the LOSS)", st.SpuriousUndos, got, before)
	}
}
