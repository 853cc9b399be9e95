package tcp

import (
	"errors"
	"syscall"
	"testing"
	"time"
)

// Tests written for rows of RFC 9293's requirement summary (Appendix B)
// that the scenario tests elsewhere do not already pin down. Each names
// its MUST in a comment; docs/conformance.md maps every row to a test.

// MUST-1: the window is an unsigned number; 65535 is the largest window,
// not -1.
func TestWindowFieldIsUnsigned(t *testing.T) {
	h := established(t)
	h.in("<SEQ=301><ACK=101><CTL=ACK><WND=65535>")
	if h.c.sndWnd != 65535 {
		t.Fatalf("SND.WND = %d, want 65535", h.c.sndWnd)
	}
}

// MUST-11: SYN-RECEIVED reached by an active OPEN (simultaneous open)
// reports a RST as a refused connection; one reached from LISTEN only
// drops the embryo (TestListenerDeadEmbryoFreesBacklog).
func TestSimultaneousOpenRSTInSynReceivedRefuses(t *testing.T) {
	h := dialed(t, testConfig())
	h.in("<SEQ=300><CTL=SYN><WND=10000><MSS=1000>",
		"<SEQ=100><ACK=301><CTL=SYN,ACK><WND=8000><MSS=1000>")
	h.in("<SEQ=301><CTL=RST><WND=0>")
	h.state(Closed)
	if !errors.Is(h.c.Err(), syscall.ECONNREFUSED) || h.c.passive {
		t.Fatalf("Err = %v, passive %v; want ECONNREFUSED from an active open", h.c.Err(), h.c.passive)
	}
}

// MUST-18: Karn's algorithm: no RTT sample from a retransmitted segment.
func TestKarnNoRTTSampleFromRetransmission(t *testing.T) {
	h := established(t)
	h.write(100, "<SEQ=101><ACK=301><CTL=PSH,ACK><WND=8000><DATA=100>")
	h.at(h.now+200*time.Millisecond, "<SEQ=101><ACK=301><CTL=PSH,ACK><WND=8000><DATA=100>")
	h.now += 2 * time.Second
	h.in("<SEQ=301><ACK=201><CTL=ACK><WND=10000>")
	if h.c.RTT() != 10*time.Millisecond {
		t.Fatalf("SRTT = %v: an ambiguous ACK was sampled", h.c.RTT())
	}
}

// MUST-18 (RFC 6298 §2): the RTO follows SRTT + 4·RTTVAR above RTOMin.
func TestRTOFollowsMeasuredRTT(t *testing.T) {
	h := established(t) // SRTT 10 ms, RTTVAR 5 ms
	h.write(100, "<SEQ=101><ACK=301><CTL=PSH,ACK><WND=8000><DATA=100>")
	h.now += 800 * time.Millisecond
	h.in("<SEQ=301><ACK=201><CTL=ACK><WND=10000>")
	// SRTT = 7/8·10 + 1/8·800 = 108.75 ms; RTTVAR = 3/4·5 + 1/4·790 = 201.25 ms.
	h.write(100, "<SEQ=201><ACK=301><CTL=PSH,ACK><WND=8000><DATA=100>")
	if want := h.now + 108750*time.Microsecond + 4*201250*time.Microsecond; h.c.Deadline() != want {
		t.Fatalf("RTO deadline %v, want %v", h.c.Deadline(), want)
	}
}

// MUST-19: slow start: the first flight is the initial window (RFC 6928,
// ten segments), not the peer's whole window.
func TestSlowStartLimitsFirstFlightToInitialWindow(t *testing.T) {
	h := established(t)
	h.in("<SEQ=301><ACK=101><CTL=ACK><WND=65535>")
	h.c.Write(make([]byte, 30000))
	h.out = h.c.Output(h.now, h.out[:0])
	if len(h.out) != 10 {
		t.Fatalf("first flight %d segments, want 10", len(h.out))
	}
}

// MUST-23: SYN retransmission lasts at least three minutes by default.
func TestSynRetransmissionLastsThreeMinutesByDefault(t *testing.T) {
	cfg := testConfig()
	h := dialed(t, cfg)
	last := time.Duration(0)
	for i := 0; i < 20 && h.c.state == SynSent; i++ {
		h.now = h.c.Deadline()
		if out := h.c.OnTimer(h.now, nil); len(out) > 0 {
			last = h.now
		}
	}
	if last < 3*time.Minute {
		t.Fatalf("last SYN retransmission at %v, want >= 3m", last)
	}
}

// MUST-30/31/62: urgent data of any length; the pointer names the octet
// after the urgent data, clamped to 65535 when farther.
func TestSendUrgentPointerPointsPastUrgentData(t *testing.T) {
	cfg := testConfig()
	cfg.NoDelay = true
	h := dialed(t, cfg)
	h.in("<SEQ=300><ACK=101><CTL=SYN,ACK><WND=10000><MSS=1000>", "<SEQ=101><ACK=301><CTL=ACK><WND=8000>")
	h.c.Write(make([]byte, 1500))
	h.c.SetUrgent()
	h.output("<SEQ=101><ACK=301><CTL=ACK,URG><WND=8000><UP=1500><DATA=1000>",
		"<SEQ=1101><ACK=301><CTL=PSH,ACK,URG><WND=8000><UP=500><DATA=500>")
	h.in("<SEQ=301><ACK=1601><CTL=ACK><WND=10000>")
	h.write(10, "<SEQ=1601><ACK=301><CTL=PSH,ACK><WND=8000><DATA=10>")
}

func TestSendUrgentPointerBeyond64KIsClamped(t *testing.T) {
	h := established(t)
	h.c.Write(make([]byte, 70000))
	h.c.SetUrgent()
	h.out = h.c.Output(h.now, h.out[:0])
	if u := h.out[0].Hdr.Urgent; u != 65535 {
		t.Fatalf("urgent pointer %d, want 65535", u)
	}
}

// MUST-34: a peer that shrinks its window (usable window negative) stops
// new data without harm; data flows again when it reopens.
func TestSenderRobustAgainstShrinkingWindow(t *testing.T) {
	h := established(t)
	h.in("<SEQ=301><ACK=101><CTL=ACK><WND=3000>")
	h.write(3000,
		"<SEQ=101><ACK=301><CTL=ACK><WND=8000><DATA=1000>",
		"<SEQ=1101><ACK=301><CTL=ACK><WND=8000><DATA=1000>",
		"<SEQ=2101><ACK=301><CTL=PSH,ACK><WND=8000><DATA=1000>")
	h.write(2000)
	h.in("<SEQ=301><ACK=1101><CTL=ACK><WND=500>") // right edge moves left, from 3101 to 1601
	h.in("<SEQ=301><ACK=3101><CTL=ACK><WND=10000>",
		"<SEQ=3101><ACK=301><CTL=ACK><WND=8000><DATA=1000>",
		"<SEQ=4101><ACK=301><CTL=PSH,ACK><WND=8000><DATA=1000>")
}

// MUST-39: receiver SWS avoidance: reading a little from a full buffer
// does not re-open the window by that little.
func TestReceiverSWSAvoidanceKeepsSmallWindowClosed(t *testing.T) {
	h := established(t)
	h.in("<SEQ=301><ACK=101><CTL=ACK><WND=10000><DATA=8000>",
		"<SEQ=101><ACK=8301><CTL=ACK><WND=0>")
	h.c.Read(make([]byte, 100))
	h.output()
	// The peer's probe octet fits in the freed space and is taken, but
	// the ACK offers no 99-octet window: the edge stays put until it can
	// move by min(buffer/2, MSS).
	h.in("<SEQ=8301><ACK=101><CTL=ACK><WND=10000><DATA=1>")
	h.at(h.now+40*time.Millisecond, "<SEQ=101><ACK=8302><CTL=ACK><WND=0>")
}

// MUST-40: the delayed-ACK timer is never configured above 0.5 s.
func TestDelayedAckNeverExceedsHalfSecond(t *testing.T) {
	cfg := testConfig()
	cfg.DelayedAck = 2 * time.Second
	h := dialed(t, cfg)
	h.in("<SEQ=300><ACK=101><CTL=SYN,ACK><WND=10000><MSS=1000>", "<SEQ=101><ACK=301><CTL=ACK><WND=8000>")
	h.in("<SEQ=301><ACK=101><CTL=ACK><WND=10000><DATA=10>")
	if h.c.Deadline() != h.now+500*time.Millisecond {
		t.Fatalf("delayed-ACK deadline %v, want %v", h.c.Deadline(), h.now+500*time.Millisecond)
	}
}

// MUST-58/59: segments processed as one batch get one ACK, after all of
// them, even when some arrived out of order.
func TestInputBatchSendsOneAckAfterAllSegments(t *testing.T) {
	h := established(t)
	segs := []Segment{
		parseSeg(t, "<SEQ=1301><ACK=101><CTL=ACK><WND=10000><DATA=1000>"),
		parseSeg(t, "<SEQ=301><ACK=101><CTL=ACK><WND=10000><DATA=1000>"),
		parseSeg(t, "<SEQ=2301><ACK=101><CTL=ACK><WND=10000><DATA=1000>"),
	}
	h.out = h.c.InputBatch(h.now, segs, h.out[:0])
	h.check("batch", h.out, []string{"<SEQ=101><ACK=3301><CTL=ACK><WND=5000>"})
}

// MUST-66: RST (and URG) are processed even when the receive window is
// zero.
func TestZeroReceiveWindowStillProcessesRST(t *testing.T) {
	h := established(t)
	h.in("<SEQ=301><ACK=101><CTL=ACK><WND=10000><DATA=8000>",
		"<SEQ=101><ACK=8301><CTL=ACK><WND=0>")
	h.in("<SEQ=8301><CTL=RST><WND=0>")
	h.state(Closed)
}

func TestZeroReceiveWindowStillProcessesURG(t *testing.T) {
	h := established(t)
	h.in("<SEQ=301><ACK=101><CTL=ACK><WND=10000><DATA=8000>",
		"<SEQ=101><ACK=8301><CTL=ACK><WND=0>")
	h.in("<SEQ=8301><ACK=101><CTL=ACK,URG><WND=10000><UP=5>")
	if !h.c.UrgentPending() {
		t.Fatal("URG ignored with a zero window")
	}
}

// MUST-65: the MSS option appears on SYNs only.
func TestMSSOptionOnlyOnSYN(t *testing.T) {
	h := established(t)
	h.c.Write(make([]byte, 10))
	h.out = h.c.Output(h.now, h.out[:0])
	if h.out[0].Hdr.Options.MSS != 0 {
		t.Fatal("MSS option on a non-SYN segment")
	}
}

// RFC 7661 via the controller: ACKs of a sender that ran out of data do
// not grow the congestion window.
func TestAppLimitedAcksDoNotGrowCongestionWindow(t *testing.T) {
	h := established(t)
	before := h.c.CongestionWindow()
	for i := 0; i < 5; i++ {
		h.write(100, "<SEQ="+u(101+uint32(i*100))+"><ACK=301><CTL=PSH,ACK><WND=8000><DATA=100>")
		h.in("<SEQ=301><ACK=" + u(201+uint32(i*100)) + "><CTL=ACK><WND=10000>")
	}
	if h.c.CongestionWindow() != before {
		t.Fatalf("cwnd %d -> %d on application-limited ACKs", before, h.c.CongestionWindow())
	}
}
