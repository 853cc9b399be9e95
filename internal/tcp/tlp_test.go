package tcp

import (
	"testing"
	"time"
)

// Tail loss probes on paths where a flight's only ACK may be lost
// (RFC 8985 §7), and the RTT samples that size them.

// RFC 8985 §7.2: the PTO is (re)started after new data is sent, not
// only when an ACK advances SND.UNA. Here a flight goes out with nothing
// in flight before it (the ACK that emptied the pipe armed no probe);
// if the flight's ACK is lost, the probe still goes out 2·SRTT = 20 ms
// after the flight, not the RTO 200 ms after it.
func TestTailLossProbeArmedWhenNewDataIsSent(t *testing.T) {
	h := establishedRACK(t)
	ts := tsv(10 * time.Millisecond)
	h.write(3*988,
		"<SEQ=101><ACK=301><CTL=ACK><WND=8000><TS="+ts+",5000><DATA=988>",
		"<SEQ=1089><ACK=301><CTL=ACK><WND=8000><TS="+ts+",5000><DATA=988>",
		"<SEQ=2077><ACK=301><CTL=PSH,ACK><WND=8000><TS="+ts+",5000><DATA=988>")
	if want := 30 * time.Millisecond; h.c.tlpAt != want || h.c.Deadline() != want {
		t.Fatalf("PTO at %v, deadline %v; want both at %v (10 ms + 2·SRTT)", h.c.tlpAt, h.c.Deadline(), want)
	}
	// No new data: the probe is the last segment again.
	h.at(30*time.Millisecond,
		"<SEQ=2077><ACK=301><CTL=PSH,ACK><WND=8000><TS="+tsv(30*time.Millisecond)+",5000><DATA=988>")
	if s := h.c.Stats(); s.TLPProbes != 1 || s.Timeouts != 0 {
		t.Fatalf("probes %d, timeouts %d; want 1 probe and no timeout", s.TLPProbes, s.Timeouts)
	}
}

// RFC 8985 §7.2: with one segment in flight the PTO adds the worst-case
// delayed ACK (2·SRTT + 200 ms = 220 ms), which is later than the RTO
// (200 ms, RTOMin): the probe is capped at the RTO's time and goes in
// its place, so the lone segment is resent without a timeout (cwnd is
// not collapsed, the RTO not backed off).
func TestTailLossProbeTakesTheRTOsPlaceForALoneSegment(t *testing.T) {
	h := establishedRACK(t)
	ts := tsv(10 * time.Millisecond)
	h.write(500, "<SEQ=101><ACK=301><CTL=PSH,ACK><WND=8000><TS="+ts+",5000><DATA=500>")
	if want := 210 * time.Millisecond; h.c.tlpAt != want || h.c.rtoAt != want {
		t.Fatalf("PTO at %v, RTO at %v; want both at %v", h.c.tlpAt, h.c.rtoAt, want)
	}
	cwnd := h.c.CongestionWindow()
	h.at(210*time.Millisecond,
		"<SEQ=101><ACK=301><CTL=PSH,ACK><WND=8000><TS="+tsv(210*time.Millisecond)+",5000><DATA=500>")
	s := h.c.Stats()
	if s.TLPProbes != 1 || s.Timeouts != 0 || h.c.CongestionWindow() != cwnd || h.c.rto != 200*time.Millisecond {
		t.Fatalf("probes %d, timeouts %d, cwnd %d (was %d), RTO %v; want a probe, no timeout, cwnd and RTO (200ms) kept",
			s.TLPProbes, s.Timeouts, h.c.CongestionWindow(), cwnd, h.c.rto)
	}
	if want := 410 * time.Millisecond; h.c.rtoAt != want {
		t.Fatalf("RTO at %v after the probe, want %v (§7.3: re-armed)", h.c.rtoAt, want)
	}
}

// RFC 8985 §7.2: a short PTO is bounded below by tlpMinPTO (2 ms), so a
// path with a 100 µs RTT does not probe at every hiccup of a host.
func TestTailLossProbeNoSoonerThanMinPTO(t *testing.T) {
	h := establishedRACK(t)
	h.c.srtt = 100 * time.Microsecond
	ts := tsv(10 * time.Millisecond)
	h.write(2*988,
		"<SEQ=101><ACK=301><CTL=ACK><WND=8000><TS="+ts+",5000><DATA=988>",
		"<SEQ=1089><ACK=301><CTL=PSH,ACK><WND=8000><TS="+ts+",5000><DATA=988>")
	if want := 12 * time.Millisecond; h.c.tlpAt != want {
		t.Fatalf("PTO at %v, want %v (2·SRTT = 200 µs raised to 2 ms)", h.c.tlpAt, want)
	}
}

// RFC 6298 §5.5 and Karn: after a timeout no segment is timed, so the
// first ACK of new data ends the backoff through RFC 7323 §4's echoed
// timestamp. When it echoes a TSval of the current millisecond, the
// round trip is only known to be under one tick: the backoff ends
// (RTO back to 200 ms) but neither SRTT nor minRTT move — minRTT sizes
// RACK's reordering window, and a 1 ns "sample" once shrank it to
// nothing on every connection whose round trip is under a millisecond.
func TestTimestampEchoUnderOneTickEndsBackoffKeepsMinRTT(t *testing.T) {
	h := establishedRACK(t)
	ts := tsv(10 * time.Millisecond)
	h.write(500, "<SEQ=101><ACK=301><CTL=PSH,ACK><WND=8000><TS="+ts+",5000><DATA=500>")
	// The probe takes the RTO's place at 210 ms; the RTO behind it
	// fires at 410 ms and backs off.
	h.at(210*time.Millisecond,
		"<SEQ=101><ACK=301><CTL=PSH,ACK><WND=8000><TS="+tsv(210*time.Millisecond)+",5000><DATA=500>")
	h.at(410*time.Millisecond,
		"<SEQ=101><ACK=301><CTL=PSH,ACK><WND=8000><TS="+tsv(410*time.Millisecond)+",5000><DATA=500>")
	if h.c.rto != 400*time.Millisecond {
		t.Fatalf("RTO %v after the timeout, want 400ms (backed off)", h.c.rto)
	}
	h.now = 410*time.Millisecond + 500*time.Microsecond
	h.in("<SEQ=301><ACK=601><CTL=ACK><WND=10000><TS=5400," + tsv(410*time.Millisecond) + ">")
	if h.c.rto != 200*time.Millisecond || h.c.srtt != 10*time.Millisecond || h.c.minRTT != 10*time.Millisecond {
		t.Fatalf("RTO %v, SRTT %v, minRTT %v; want 200ms, 10ms, 10ms", h.c.rto, h.c.srtt, h.c.minRTT)
	}
}

// When no segment is timed, an ACK that delivers a segment sent only
// once is timed by its record (our clock, RFC 8985 §6.2), not by the
// echoed timestamp's millisecond tick: here 1.5 ms exactly.
func TestUntimedACKSampledFromRecordNotTimestamp(t *testing.T) {
	h := establishedRACK(t)
	h.c.rttTiming = false // as after a retransmission (Karn)
	ts := tsv(10 * time.Millisecond)
	h.write(500, "<SEQ=101><ACK=301><CTL=PSH,ACK><WND=8000><TS="+ts+",5000><DATA=500>")
	h.c.rttTiming = false
	h.now = 11500 * time.Microsecond
	h.in("<SEQ=301><ACK=601><CTL=ACK><WND=10000><TS=5001," + ts + ">")
	// SRTT = 7/8·10 ms + 1/8·1.5 ms.
	if want := 8937500 * time.Nanosecond; h.c.srtt != want || h.c.minRTT != 1500*time.Microsecond {
		t.Fatalf("SRTT %v, minRTT %v; want %v and 1.5ms", h.c.srtt, h.c.minRTT, want)
	}
}

// RFC 8985 §7.3 with RFC 9002 §6.2.4's two probe packets: the flight's
// ACK was lost, and the probe sends two new segments, which a receiver
// must ACK at once (every second full-sized segment, RFC 9293
// §3.8.6.3), where one would wait for its delayed ACK.
func TestTailLossProbeSendsTwoNewSegments(t *testing.T) {
	h := establishedRACK(t)
	ts := tsv(10 * time.Millisecond)
	h.c.cc.OnRTO(h.now, 0) // cwnd of one segment: the rest waits
	h.write(3*988, "<SEQ=101><ACK=301><CTL=ACK><WND=8000><TS="+ts+",5000><DATA=988>")
	if want := 210 * time.Millisecond; h.c.tlpAt != want {
		t.Fatalf("PTO at %v, want %v (one segment in flight: capped at the RTO)", h.c.tlpAt, want)
	}
	at := tsv(210 * time.Millisecond)
	h.at(210*time.Millisecond,
		"<SEQ=1089><ACK=301><CTL=ACK><WND=8000><TS="+at+",5000><DATA=988>",
		"<SEQ=2077><ACK=301><CTL=PSH,ACK><WND=8000><TS="+at+",5000><DATA=988>")
	if s := h.c.Stats(); s.TLPProbes != 1 || s.Timeouts != 0 || h.c.tlp.endSeq != 3065 {
		t.Fatalf("probes %d, timeouts %d, TLP.end_seq %d; want 1, 0, 3065", s.TLPProbes, s.Timeouts, h.c.tlp.endSeq)
	}
}

// An ACK that also delivers a retransmission may answer the
// retransmission, long after the originals it covers arrived (their own
// ACK lost): timing those from their first sending is no round trip.
// Here both segments arrived at once but their ACK was lost; the probe
// at 30 ms resends the last, and its ACK at 40 ms covers both. The
// first segment, sent once at 10 ms, would give 30 ms; the echoed
// timestamp of the probe gives the true 10 ms.
func TestUntimedACKOfARetransmissionNotTimedByOriginals(t *testing.T) {
	h := establishedRACK(t)
	ts := tsv(10 * time.Millisecond)
	h.write(2*988,
		"<SEQ=101><ACK=301><CTL=ACK><WND=8000><TS="+ts+",5000><DATA=988>",
		"<SEQ=1089><ACK=301><CTL=PSH,ACK><WND=8000><TS="+ts+",5000><DATA=988>")
	h.at(30*time.Millisecond,
		"<SEQ=1089><ACK=301><CTL=PSH,ACK><WND=8000><TS="+tsv(30*time.Millisecond)+",5000><DATA=988>")
	h.now = 40 * time.Millisecond
	h.in("<SEQ=301><ACK=2077><CTL=ACK><WND=10000><TS=5030," + tsv(30*time.Millisecond) + ">")
	if h.c.srtt != 10*time.Millisecond || h.c.minRTT != 10*time.Millisecond {
		t.Fatalf("SRTT %v, minRTT %v; want 10ms and 10ms (not a 30 ms sample)", h.c.srtt, h.c.minRTT)
	}
}

// firstOfFiveLost sends five segments at 10 ms and, at 20 ms, takes an ACK
// that SACKs the last four: RACK declares the first lost and retransmits it.
func firstOfFiveLost(t *testing.T) *harness {
	t.Helper()
	h := establishedRACK(t)
	ts := tsv(10 * time.Millisecond)
	h.write(5*988,
		"<SEQ=101><ACK=301><CTL=ACK><WND=8000><TS="+ts+",5000><DATA=988>",
		"<SEQ=1089><ACK=301><CTL=ACK><WND=8000><TS="+ts+",5000><DATA=988>",
		"<SEQ=2077><ACK=301><CTL=ACK><WND=8000><TS="+ts+",5000><DATA=988>",
		"<SEQ=3065><ACK=301><CTL=ACK><WND=8000><TS="+ts+",5000><DATA=988>",
		"<SEQ=4053><ACK=301><CTL=PSH,ACK><WND=8000><TS="+ts+",5000><DATA=988>")
	h.now = 20 * time.Millisecond
	h.in("<SEQ=301><ACK=101><CTL=ACK><WND=10000><TS=5010,"+ts+"><SACK=1089-5041>",
		"<SEQ=101><ACK=301><CTL=ACK><WND=8000><TS="+tsv(h.now)+",5010><DATA=988>")
	return h
}

// RFC 6675 §5 step 4 and RFC 9438 §4.6: the decrease on a loss RACK
// detects starts from FlightSize, the octets not yet cumulatively
// acknowledged, SACKed ones included. Five segments, the first lost:
// RACK declares it once the other four are SACKed, and cwnd becomes
// 0.7 × 4940 = 3458, not 0.7 × the one segment not SACKed (then the
// two-segment floor, 1976), which on a small window is a collapse at
// every loss.
func TestLossDecreaseStartsFromFlightIncludingSACKed(t *testing.T) {
	h := firstOfFiveLost(t)
	if got := h.c.CongestionWindow(); got != 3458 {
		t.Fatalf("cwnd %d after the loss, want 3458 (0.7 of the 4940 in flight)", got)
	}
}

// A tail loss probe in fast recovery: the retransmission is the last
// segment sent (nothing new to send after it), so RACK could only learn
// of its loss, or of the loss of the ACK answering it, from the RTO. The
// probe goes 2·SRTT after it instead: the segment again, at 40 ms rather
// than the RTO at 210 ms (armed by the first transmission).
func TestTailLossProbeInRecoveryAfterTheLastRetransmission(t *testing.T) {
	h := firstOfFiveLost(t)
	if !h.c.inRecovery || h.c.tlpAt != 40*time.Millisecond || h.c.rtoAt != 210*time.Millisecond {
		t.Fatalf("in recovery %v, PTO at %v, RTO at %v; want recovery, 40ms, 210ms", h.c.inRecovery, h.c.tlpAt, h.c.rtoAt)
	}
	h.at(40*time.Millisecond,
		"<SEQ=101><ACK=301><CTL=ACK><WND=8000><TS="+tsv(40*time.Millisecond)+",5010><DATA=988>")
	if s := h.c.Stats(); s.TLPProbes != 1 || s.Timeouts != 0 {
		t.Fatalf("probes %d, timeouts %d; want 1, 0", s.TLPProbes, s.Timeouts)
	}
}
