package tcp

import (
	"testing"
	"time"
)

// RACK-TLP tests (RFC 8985): SACK and timestamps agreed, so RACK detects
// losses and tail loss probes are armed. Our TSval is milliseconds plus
// the offset derived from ISS 100 (1810039517); the peer's TSvals count
// from 5000.

const tsBase = 1810039517

// tsv is our TSval at time t.
func tsv(t time.Duration) string { return u(tsBase + uint32(t/time.Millisecond)) }

// establishedRACK completes an active open with SACK and timestamps at
// t = 10 ms: SRTT 10 ms, MSS 1000 less 12 option octets = 988.
func establishedRACK(t *testing.T) *harness {
	t.Helper()
	cfg := testConfig()
	cfg.NoSACK, cfg.NoTimestamps = false, false
	h := &harness{t: t}
	h.c, h.out = Dial(0, &cfg, localPort, peerPort, 100, nil)
	h.check("SYN", h.out, []string{"<SEQ=100><CTL=SYN><WND=8000><MSS=1000><SACKOK><TS=" + tsv(0) + ",0>"})
	h.now = 10 * time.Millisecond
	h.in("<SEQ=300><ACK=101><CTL=SYN,ACK><WND=10000><MSS=1000><SACKOK><TS=5000,"+tsv(0)+">",
		"<SEQ=101><ACK=301><CTL=ACK><WND=8000><TS="+tsv(10*time.Millisecond)+",5000>")
	if !h.c.useRACK() || h.c.sndMSS != 988 {
		t.Fatalf("RACK %v, send MSS %d; want RACK with MSS 988", h.c.useRACK(), h.c.sndMSS)
	}
	return h
}

// RFC 8985 §7: the last two segments of a flight are lost. Instead of
// waiting for the RTO (200 ms), a tail loss probe goes out after
// PTO = 2·SRTT = 20 ms: with no new data, the last segment again. Its
// SACK shows the segment before it missing, which RACK marks lost (it
// was sent before the delivered probe, more than RACK.rtt ago): it is
// repaired by fast recovery at 50 ms, long before the RTO at 220 ms.
func TestTailLossProbeRepairsTailWithoutTimeout(t *testing.T) {
	h := establishedRACK(t)
	ts := tsv(10 * time.Millisecond)
	h.write(4*988,
		"<SEQ=101><ACK=301><CTL=ACK><WND=8000><TS="+ts+",5000><DATA=988>",
		"<SEQ=1089><ACK=301><CTL=ACK><WND=8000><TS="+ts+",5000><DATA=988>",
		"<SEQ=2077><ACK=301><CTL=ACK><WND=8000><TS="+ts+",5000><DATA=988>",
		"<SEQ=3065><ACK=301><CTL=PSH,ACK><WND=8000><TS="+ts+",5000><DATA=988>")
	// The first two arrive and are acknowledged 10 ms later; the last
	// two are lost.
	h.now = 20 * time.Millisecond
	h.in("<SEQ=301><ACK=2077><CTL=ACK><WND=10000><TS=5010," + ts + ">")
	if h.c.tlpAt == 0 || h.c.tlpAt >= h.c.rtoAt {
		t.Fatalf("PTO %v, RTO %v: want a probe armed before the RTO", h.c.tlpAt, h.c.rtoAt)
	}
	pto := h.c.tlpAt
	h.at(pto, "<SEQ=3065><ACK=301><CTL=PSH,ACK><WND=8000><TS="+tsv(pto)+",5010><DATA=988>")
	// The probe's SACK arrives 10 ms later: 2077, sent at 10 ms before
	// the delivered probe, has had RACK.rtt plus the reordering window;
	// RACK marks it lost and fast recovery resends it at once.
	h.now = pto + 10*time.Millisecond
	h.in("<SEQ=301><ACK=2077><CTL=ACK><WND=10000><TS=5040,"+tsv(pto)+"><SACK=3065-4053>",
		"<SEQ=2077><ACK=301><CTL=ACK><WND=8000><TS="+tsv(h.now)+",5040><DATA=988>")
	s := h.c.Stats()
	if s.TLPProbes != 1 || s.Timeouts != 0 || s.RACKLosses != 1 || s.FastRetransmits != 1 {
		t.Fatalf("probes %d, timeouts %d, RACK losses %d, recoveries %d; want 1, 0, 1, 1",
			s.TLPProbes, s.Timeouts, s.RACKLosses, s.FastRetransmits)
	}
}

// RFC 8985 §6.2: with no reordering seen, a segment sent before one that
// has been SACKed is lost as soon as RACK.rtt has passed since it was
// sent, in recovery (reordering window 0 once DupThresh segments are
// SACKed).
func TestRACKMarksLostBySendTimeNotCount(t *testing.T) {
	h := establishedRACK(t)
	ts := tsv(10 * time.Millisecond)
	h.write(3*988,
		"<SEQ=101><ACK=301><CTL=ACK><WND=8000><TS="+ts+",5000><DATA=988>",
		"<SEQ=1089><ACK=301><CTL=ACK><WND=8000><TS="+ts+",5000><DATA=988>",
		"<SEQ=2077><ACK=301><CTL=PSH,ACK><WND=8000><TS="+ts+",5000><DATA=988>")
	// One SACKed segment above the hole: DupThresh would wait for
	// three; RACK needs only the time order. The reordering window is
	// min(RTT/4, SRTT) = 2.5 ms here, so the loss is declared then.
	h.now = 20 * time.Millisecond
	h.in("<SEQ=301><ACK=101><CTL=ACK><WND=10000><TS=5010," + ts + "><SACK=2077-3065>")
	if h.c.board.lost != 0 || h.c.rackAt == 0 {
		t.Fatalf("lost %d, reordering timer %v: want nothing lost yet and the timer armed", h.c.board.lost, h.c.rackAt)
	}
	at := h.c.rackAt
	if want := 22500 * time.Microsecond; at != want {
		t.Fatalf("reordering timer at %v, want %v (sent at 10 ms + RACK.rtt 10 ms + 2.5 ms)", at, want)
	}
	h.at(at,
		"<SEQ=101><ACK=301><CTL=ACK><WND=8000><TS="+tsv(at)+",5010><DATA=988>",
		"<SEQ=1089><ACK=301><CTL=ACK><WND=8000><TS="+tsv(at)+",5010><DATA=988>")
}

// RFC 8985 §6.2 step 3: the first segment delivered is not "below" the
// highest delivered so far, whatever half of sequence space it is in.
func TestRACKFirstDeliveryIsNotReorderingInUpperHalf(t *testing.T) {
	c := &Conn{}
	c.delivered(&txSeg{start: 3_000_000_000, end: 3_000_001_000}, time.Millisecond)
	if c.rack.reorderingSeen {
		t.Fatal("the first delivery, at 3e9, counted as reordering")
	}
	c.delivered(&txSeg{start: 2_999_999_000, end: 3_000_000_000}, time.Millisecond)
	if !c.rack.reorderingSeen {
		t.Fatal("a delivery below the first did not count as reordering")
	}
}
