package tcp

import (
	"errors"
	"syscall"
	"testing"
	"time"
)

// RFC 9293 §3.7.1: data goes out in segments of at most the send MSS, and
// RFC 9293 §3.7.4 (Nagle): the short tail waits while data is in flight.
func TestSendSplitsByMSSAndNagleHoldsShortTail(t *testing.T) {
	h := established(t)
	h.write(2500,
		"<SEQ=101><ACK=301><CTL=ACK><WND=8000><DATA=1000>",
		"<SEQ=1101><ACK=301><CTL=ACK><WND=8000><DATA=1000>")
	h.in("<SEQ=301><ACK=2101><CTL=ACK><WND=10000>",
		"<SEQ=2101><ACK=301><CTL=PSH,ACK><WND=8000><DATA=500>")
}

// RFC 9293 §3.7.4, MUST-17: NoDelay turns Nagle off.
func TestNoDelaySendsShortTailAtOnce(t *testing.T) {
	cfg := testConfig()
	cfg.NoDelay = true
	h := dialed(t, cfg)
	h.in("<SEQ=300><ACK=101><CTL=SYN,ACK><WND=10000><MSS=1000>", "<SEQ=101><ACK=301><CTL=ACK><WND=8000>")
	h.write(1500,
		"<SEQ=101><ACK=301><CTL=ACK><WND=8000><DATA=1000>",
		"<SEQ=1101><ACK=301><CTL=PSH,ACK><WND=8000><DATA=500>")
	h.write(10, "<SEQ=1601><ACK=301><CTL=PSH,ACK><WND=8000><DATA=10>")
}

// The send window limits what is in flight (RFC 9293 §3.8.6).
func TestSendStopsAtPeerWindow(t *testing.T) {
	h := established(t)
	h.in("<SEQ=301><ACK=101><CTL=ACK><WND=2000>")
	h.write(3000,
		"<SEQ=101><ACK=301><CTL=ACK><WND=8000><DATA=1000>",
		"<SEQ=1101><ACK=301><CTL=ACK><WND=8000><DATA=1000>")
	h.in("<SEQ=301><ACK=1101><CTL=ACK><WND=2000>",
		"<SEQ=2101><ACK=301><CTL=PSH,ACK><WND=8000><DATA=1000>")
}

// RFC 9293 §3.8.6.2.1: sender SWS avoidance; a window too small for a
// full segment and under half the largest window seen sends nothing.
func TestSenderSWSAvoidanceWaitsForUsefulWindow(t *testing.T) {
	h := established(t)
	h.write(3000,
		"<SEQ=101><ACK=301><CTL=ACK><WND=8000><DATA=1000>",
		"<SEQ=1101><ACK=301><CTL=ACK><WND=8000><DATA=1000>",
		"<SEQ=2101><ACK=301><CTL=PSH,ACK><WND=8000><DATA=1000>")
	// Everything acknowledged, but the window is 300 octets: below the MSS
	// and below half of the largest window (10000). Hold.
	h.in("<SEQ=301><ACK=3101><CTL=ACK><WND=300>")
	h.write(2000)
	// Half the largest window may go even though short of the MSS.
	h.in("<SEQ=301><ACK=3101><CTL=ACK><WND=5000>",
		"<SEQ=3101><ACK=301><CTL=ACK><WND=8000><DATA=1000>",
		"<SEQ=4101><ACK=301><CTL=PSH,ACK><WND=8000><DATA=1000>")
}

// RFC 9293 §3.8.6.3 / MUST-58: every second full-sized segment is ACKed
// at once; a single one waits for the delayed-ACK timer (MUST-40: < 0.5 s).
func TestDelayedAckEverySecondFullSegment(t *testing.T) {
	h := established(t)
	h.in("<SEQ=301><ACK=101><CTL=ACK><WND=10000><DATA=1000>")
	h.in("<SEQ=1301><ACK=101><CTL=ACK><WND=10000><DATA=1000>",
		"<SEQ=101><ACK=2301><CTL=ACK><WND=6000>")
}

func TestDelayedAckTimerFires(t *testing.T) {
	h := established(t)
	h.in("<SEQ=301><ACK=101><CTL=ACK><WND=10000><DATA=100>")
	if h.c.Deadline() != h.now+40*time.Millisecond {
		t.Fatalf("deadline %v, want %v", h.c.Deadline(), h.now+40*time.Millisecond)
	}
	h.at(h.now + 39*time.Millisecond)
	h.at(h.now+time.Millisecond, "<SEQ=101><ACK=401><CTL=ACK><WND=7900>")
	if h.c.Deadline() != 0 {
		t.Fatalf("deadline %v after the ACK, want none", h.c.Deadline())
	}
}

// RFC 5681 §4.2: out-of-order data is acknowledged at once, and so is the
// segment that fills the hole; the reader gets the bytes in order.
func TestOutOfOrderSegmentIsAckedAtOnceAndReassembled(t *testing.T) {
	h := established(t)
	h.in("<SEQ=1301><ACK=101><CTL=ACK><WND=10000><DATA=1000>",
		"<SEQ=101><ACK=301><CTL=ACK><WND=8000>")
	if h.c.Readable() != 0 {
		t.Fatalf("Readable = %d before the hole fills", h.c.Readable())
	}
	h.in("<SEQ=301><ACK=101><CTL=ACK><WND=10000><DATA=1000>",
		"<SEQ=101><ACK=2301><CTL=ACK><WND=6000>")
	h.readAll(301, 2000)
}

// Data beyond the window is trimmed to it (RFC 9293 §3.10.7.4) and the ACK
// goes out at once; a segment wholly beyond is dropped and ACKed.
func TestDataBeyondWindowIsTrimmed(t *testing.T) {
	h := established(t)
	h.in("<SEQ=301><ACK=101><CTL=ACK><WND=10000><DATA=9000>",
		"<SEQ=101><ACK=8301><CTL=ACK><WND=0>")
	h.in("<SEQ=8301><ACK=101><CTL=ACK><WND=10000><DATA=10>",
		"<SEQ=101><ACK=8301><CTL=ACK><WND=0>")
	h.in("<SEQ=20000><ACK=101><CTL=ACK><WND=10000><DATA=10>",
		"<SEQ=101><ACK=8301><CTL=ACK><WND=0>")
	if s := h.c.Stats(); s.DropOutOfWindow != 1 || s.BytesIn != 8000 {
		t.Fatalf("DropOutOfWindow = %d, BytesIn = %d; want 1, 8000", s.DropOutOfWindow, s.BytesIn)
	}
	h.readAll(301, 8000)
}

// Old duplicate data (our ACK was lost) is answered with an ACK.
func TestDuplicateDataIsReAcked(t *testing.T) {
	h := established(t)
	h.in("<SEQ=301><ACK=101><CTL=ACK><WND=10000><DATA=1000>")
	h.in("<SEQ=301><ACK=101><CTL=ACK><WND=10000><DATA=1000>",
		"<SEQ=101><ACK=1301><CTL=ACK><WND=7000>")
}

// Reading opens the window; Output then sends a window update when the
// window at least doubled (receiver SWS avoidance, RFC 9293 §3.8.6.2.2).
func TestReadOpensWindowAndSendsUpdate(t *testing.T) {
	h := established(t)
	h.in("<SEQ=301><ACK=101><CTL=ACK><WND=10000><DATA=8000>",
		"<SEQ=101><ACK=8301><CTL=ACK><WND=0>")
	p := make([]byte, 1000)
	h.c.Read(p)
	h.output() // 1000 octets: less than half the buffer, no update yet
	h.c.Read(make([]byte, 3000))
	h.output("<SEQ=101><ACK=8301><CTL=ACK><WND=4000>")
}

// With the window closed, a one-octet probe at RCV.NXT is answered with an
// ACK that still says zero (RFC 9293 §3.10.7.4: valid ACKs still count).
func TestZeroWindowProbeIsAnsweredWithZeroWindow(t *testing.T) {
	h := established(t)
	h.in("<SEQ=301><ACK=101><CTL=ACK><WND=10000><DATA=8000>",
		"<SEQ=101><ACK=8301><CTL=ACK><WND=0>")
	h.in("<SEQ=8301><ACK=101><CTL=ACK><WND=10000><DATA=1>",
		"<SEQ=101><ACK=8301><CTL=ACK><WND=0>")
}

// RFC 9293 §3.8.6.1: with the peer's window closed, the persist timer
// sends one octet and keeps probing with backoff; the connection never
// times out while the peer answers.
func TestZeroWindowPersistProbesWithBackoff(t *testing.T) {
	h := established(t)
	h.in("<SEQ=301><ACK=101><CTL=ACK><WND=0>")
	h.write(100)
	if h.c.Deadline() != h.now+200*time.Millisecond {
		t.Fatalf("persist deadline %v, want %v", h.c.Deadline(), h.now+200*time.Millisecond)
	}
	h.at(h.now+200*time.Millisecond, "<SEQ=101><ACK=301><CTL=ACK><WND=8000><DATA=1>")
	for i := 0; i < 40; i++ {
		h.in("<SEQ=301><ACK=101><CTL=ACK><WND=0>")
		h.at(h.c.Deadline(), "<SEQ=101><ACK=301><CTL=ACK><WND=8000><DATA=1>")
	}
	h.state(Established)
	h.in("<SEQ=301><ACK=102><CTL=ACK><WND=5000>",
		"<SEQ=102><ACK=301><CTL=PSH,ACK><WND=8000><DATA=99>")
	if s := h.c.Stats(); s.WindowProbes != 41 || s.Timeouts != 40 {
		t.Fatalf("WindowProbes = %d, Timeouts = %d; want 41, 40", s.WindowProbes, s.Timeouts)
	}
}

// RFC 6298 §5: retransmit on timeout, doubling the RTO; RFC 9293 §3.8.3:
// give up with ETIMEDOUT after MaxRetries.
func TestRetransmissionTimeoutBacksOffAndGivesUp(t *testing.T) {
	cfg := testConfig()
	cfg.MaxRetries = 3
	h := dialed(t, cfg)
	h.now = 10 * time.Millisecond
	h.in("<SEQ=300><ACK=101><CTL=SYN,ACK><WND=10000><MSS=1000>", "<SEQ=101><ACK=301><CTL=ACK><WND=8000>")
	h.write(100, "<SEQ=101><ACK=301><CTL=PSH,ACK><WND=8000><DATA=100>")
	// SRTT 10ms, RTTVAR 5ms: RTO = 30ms, raised to RTOMin 200ms.
	h.at(h.now + 199*time.Millisecond)
	h.at(h.now+time.Millisecond, "<SEQ=101><ACK=301><CTL=PSH,ACK><WND=8000><DATA=100>")
	h.at(h.now+400*time.Millisecond, "<SEQ=101><ACK=301><CTL=PSH,ACK><WND=8000><DATA=100>")
	h.at(h.now+800*time.Millisecond, "<SEQ=101><ACK=301><CTL=PSH,ACK><WND=8000><DATA=100>")
	h.at(h.now + 1600*time.Millisecond)
	h.state(Closed)
	if !errors.Is(h.c.Err(), syscall.ETIMEDOUT) {
		t.Fatalf("Err = %v, want ETIMEDOUT", h.c.Err())
	}
	if _, err := h.c.Read(make([]byte, 1)); !errors.Is(err, syscall.ETIMEDOUT) {
		t.Fatalf("Read error = %v, want ETIMEDOUT", err)
	}
}

// An ACK of new data restarts the timer and resets the retry count.
func TestAckOfNewDataStopsTimer(t *testing.T) {
	h := established(t)
	h.write(100, "<SEQ=101><ACK=301><CTL=PSH,ACK><WND=8000><DATA=100>")
	if h.c.Deadline() == 0 {
		t.Fatal("no retransmission timer after sending data")
	}
	h.in("<SEQ=301><ACK=201><CTL=ACK><WND=10000>")
	if h.c.Deadline() != 0 {
		t.Fatalf("deadline %v after everything was acknowledged", h.c.Deadline())
	}
}

// RFC 5681 §3.2: the third duplicate ACK retransmits the first
// unacknowledged segment at once.
func TestThreeDuplicateAcksTriggerFastRetransmit(t *testing.T) {
	h := established(t)
	h.write(5000,
		"<SEQ=101><ACK=301><CTL=ACK><WND=8000><DATA=1000>",
		"<SEQ=1101><ACK=301><CTL=ACK><WND=8000><DATA=1000>",
		"<SEQ=2101><ACK=301><CTL=ACK><WND=8000><DATA=1000>",
		"<SEQ=3101><ACK=301><CTL=ACK><WND=8000><DATA=1000>",
		"<SEQ=4101><ACK=301><CTL=PSH,ACK><WND=8000><DATA=1000>")
	h.in("<SEQ=301><ACK=1101><CTL=ACK><WND=10000>")
	h.in("<SEQ=301><ACK=1101><CTL=ACK><WND=10000>")
	h.in("<SEQ=301><ACK=1101><CTL=ACK><WND=10000>")
	h.in("<SEQ=301><ACK=1101><CTL=ACK><WND=10000>",
		"<SEQ=1101><ACK=301><CTL=ACK><WND=8000><DATA=1000>")
	// RFC 6582: a partial ACK retransmits the next hole.
	h.in("<SEQ=301><ACK=2101><CTL=ACK><WND=10000>",
		"<SEQ=2101><ACK=301><CTL=ACK><WND=8000><DATA=1000>")
	if s := h.c.Stats(); s.FastRetransmits != 1 || s.DupAcks != 3 {
		t.Fatalf("FastRetransmits %d, DupAcks %d; want 1, 3", s.FastRetransmits, s.DupAcks)
	}
}

// RFC 6093: the urgent pointer never indexes anything. A pointer of 0, or
// far past the data, leaves the data delivered in line and intact.
func TestUrgentPointerZeroOrPastDataIsHarmless(t *testing.T) {
	h := established(t)
	h.in("<SEQ=301><ACK=101><CTL=URG,ACK><WND=10000><UP=0><DATA=10>")
	h.in("<SEQ=311><ACK=101><CTL=URG,ACK><WND=10000><UP=65535><DATA=10>")
	h.readAll(301, 20)
	if !h.c.UrgentPending() {
		t.Fatal("UrgentPending false after a pointer past the data")
	}
}

func TestUrgentMarkIsReportedUntilReadPast(t *testing.T) {
	h := established(t)
	h.in("<SEQ=301><ACK=101><CTL=URG,ACK><WND=10000><UP=5><DATA=10>")
	if !h.c.UrgentPending() {
		t.Fatal("UrgentPending false with the mark unread (MUST-31)")
	}
	h.c.Read(make([]byte, 5))
	if h.c.UrgentPending() {
		t.Fatal("UrgentPending true after reading past the mark")
	}
	h.readAll(306, 5)
}

// Peek lends the readable bytes without copying; Discard consumes them.
func TestPeekAndDiscard(t *testing.T) {
	h := established(t)
	h.in("<SEQ=301><ACK=101><CTL=ACK><WND=10000><DATA=300>")
	p, err := h.c.Peek()
	if err != nil || len(p) != 300 || p[0] != 301&0xff {
		t.Fatalf("Peek = %d octets, first %d, %v", len(p), p[0], err)
	}
	if h.c.Discard(1000) != 300 || h.c.Readable() != 0 {
		t.Fatalf("Discard did not consume the 300 octets")
	}
	if p, err := h.c.Peek(); p != nil || err != nil {
		t.Fatalf("Peek on an empty buffer = %v, %v", p, err)
	}
}

// After a timeout rewinds the resend point, a pure ACK still carries the
// highest sequence number sent (RFC 9293's SND.NXT): the peer may hold
// octets beyond the resend point and would find a lower number
// unacceptable.
func TestPureAckAfterTimeoutUsesHighestSequenceSent(t *testing.T) {
	h := established(t)
	h.write(3000,
		"<SEQ=101><ACK=301><CTL=ACK><WND=8000><DATA=1000>",
		"<SEQ=1101><ACK=301><CTL=ACK><WND=8000><DATA=1000>",
		"<SEQ=2101><ACK=301><CTL=PSH,ACK><WND=8000><DATA=1000>")
	h.at(h.now+200*time.Millisecond, "<SEQ=101><ACK=301><CTL=ACK><WND=8000><DATA=1000>")
	h.in("<SEQ=301><ACK=101><CTL=ACK><WND=10000><DATA=10>")
	h.at(h.now+40*time.Millisecond, "<SEQ=3101><ACK=311><CTL=ACK><WND=7990>")
}

// RFC 9293 §3.8.6.2.1: data held back by sender SWS avoidance goes out
// when the override (persist) timer fires, as much as the window allows.
func TestSWSOverrideTimerSendsWhatTheWindowAllows(t *testing.T) {
	h := established(t)
	h.in("<SEQ=301><ACK=101><CTL=ACK><WND=300>")
	h.write(2000)
	h.at(h.now+200*time.Millisecond, "<SEQ=101><ACK=301><CTL=ACK><WND=8000><DATA=300>")
}

func TestInFlightAndUnsentFollowTheStream(t *testing.T) {
	h := established(t)
	h.in("<SEQ=301><ACK=101><CTL=ACK><WND=2000>")
	h.write(3000,
		"<SEQ=101><ACK=301><CTL=ACK><WND=8000><DATA=1000>",
		"<SEQ=1101><ACK=301><CTL=ACK><WND=8000><DATA=1000>")
	if h.c.InFlight() != 2000 || h.c.Unsent() != 1000 {
		t.Fatalf("InFlight %d, Unsent %d; want 2000, 1000", h.c.InFlight(), h.c.Unsent())
	}
}

// A peer that scatters data into more holes than the reassembly table
// holds gets the excess dropped and counted, and the stream is still
// delivered whole once the holes are filled and the dropped part resent.
func TestReassemblyTableFullDropsExcessButStreamCompletes(t *testing.T) {
	// A window wide enough for maxOOO+1 scattered segments: ten octets
	// every twelve, leaving two-octet holes.
	cfg := testConfig()
	cfg.RecvBuf, cfg.MaxRecvBuf = 60000, 60000
	h := dialed(t, cfg)
	h.now = 10 * time.Millisecond
	h.in("<SEQ=300><ACK=101><CTL=SYN,ACK><WND=10000><MSS=1000>", "<SEQ=101><ACK=301><CTL=ACK><WND=60000>")
	for k := 1; k <= maxOOO+1; k++ {
		h.in("<SEQ="+u(301+uint32(12*k))+"><ACK=101><CTL=ACK><WND=10000><DATA=10>",
			"<SEQ=101><ACK=301><CTL=ACK><WND=60000>")
	}
	if s := h.c.Stats(); s.DropOOOFull != 1 || s.OutOfOrder != maxOOO {
		t.Fatalf("DropOOOFull %d, OutOfOrder %d; want 1, %d", s.DropOOOFull, s.OutOfOrder, maxOOO)
	}
	// Fill every hole: the stream runs up to the dropped segment.
	for k := 0; k <= maxOOO; k++ {
		s := parseSeg(t, "<SEQ="+u(301+uint32(12*k)+10)+"><ACK=101><CTL=ACK><WND=10000><DATA=2>")
		if k == 0 {
			s = parseSeg(t, "<SEQ=301><ACK=101><CTL=ACK><WND=10000><DATA=12>")
		}
		h.c.Input(h.now, &s, nil)
	}
	want := uint32(301 + 12*(maxOOO+1)) // the range past maxOOO was dropped
	if h.c.rcvNxt != want {
		t.Fatalf("RCV.NXT = %d, want %d", h.c.rcvNxt, want)
	}
	h.in("<SEQ=" + u(want) + "><ACK=101><CTL=ACK><WND=10000><DATA=10>")
	h.readAll(301, int(want+10-301))
}

// RFC 9293 §3.10.7.4: the SND.WL1/SND.WL2 rule keeps an old, reordered
// segment from shrinking the send window.
func TestOldSegmentDoesNotUpdateSendWindow(t *testing.T) {
	h := established(t)
	h.write(1000, "<SEQ=101><ACK=301><CTL=PSH,ACK><WND=8000><DATA=1000>")
	h.in("<SEQ=301><ACK=1101><CTL=ACK><WND=9000>")
	h.in("<SEQ=301><ACK=101><CTL=ACK><WND=0>") // sent before the one above
	if h.c.sndWnd != 9000 {
		t.Fatalf("SND.WND = %d, want 9000", h.c.sndWnd)
	}
}

// Our ACK of the SYN-ACK was lost: the repeated SYN-ACK in ESTABLISHED is
// answered with the ACK the peer needs (RFC 5961 §4's challenge ACK).
func TestEstablishedRetransmittedSynAckIsAnsweredWithAck(t *testing.T) {
	h := established(t)
	h.in("<SEQ=300><ACK=101><CTL=SYN,ACK><WND=10000><MSS=1000>",
		"<SEQ=101><ACK=301><CTL=ACK><WND=8000>")
	h.state(Established)
}

// An idle connection can give its buffers back and work on as before.
func TestReleaseBuffersOnIdleConnection(t *testing.T) {
	h := established(t)
	h.in("<SEQ=301><ACK=101><CTL=ACK><WND=10000><DATA=100>")
	h.write(100, "<SEQ=101><ACK=401><CTL=PSH,ACK><WND=7900><DATA=100>")
	h.in("<SEQ=401><ACK=201><CTL=ACK><WND=10000>")
	h.readAll(301, 100)
	h.c.ReleaseBuffers()
	if h.c.sb.allocated() || h.c.rb.buf != nil {
		t.Fatal("buffers still held by an idle connection")
	}
	h.in("<SEQ=401><ACK=201><CTL=ACK><WND=10000><DATA=10>")
	h.readAll(401, 10)
	h.write(10, "<SEQ=201><ACK=411><CTL=PSH,ACK><WND=7890><DATA=10>") // SWS: the edge stays at 8301
}
