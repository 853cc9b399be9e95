package tcp

import (
	"errors"
	"syscall"
	"testing"
	"time"
)

// ICMP errors (icmp.go; RFC 9293 §3.9.2.2, RFC 1122 §4.2.3.9, RFC 5461,
// RFC 5927, RFC 1191), fed with the quoted sequence number as the stack
// hands them over.

// icmp feeds one ICMP error and checks what the connection did.
func (h *harness) icmp(typ, code uint8, mtu int, seq uint32, want ICMPAction) {
	h.t.Helper()
	if got := h.c.ICMPError(h.now, typ, code, mtu, seq); got != want {
		h.t.Fatalf("ICMP type %d code %d (MTU %d) quoting SEQ=%d in %v: %v, want %v", typ, code, mtu, seq, h.c.state, got, want)
	}
}

// RFC 1191 §6.1: "fragmentation needed" with a next-hop MTU of 576 lowers
// the send MSS to 576 − 40 = 536, and new data is cut to it.
func TestICMPFragNeededLowersSendMSS(t *testing.T) {
	h := established(t)
	h.write(1000, "<SEQ=101><ACK=301><CTL=PSH,ACK><WND=8000><DATA=1000>")
	h.icmp(ICMPTypeDestUnreachable, ICMPCodeFragNeeded, 576, 101, ICMPMSSLowered)
	if got := h.c.SndMSS(); got != 536 {
		t.Fatalf("SndMSS %d after MTU 576, want 536", got)
	}
	h.in("<SEQ=301><ACK=1101><CTL=ACK><WND=10000>")
	h.write(1072, "<SEQ=1101><ACK=301><CTL=ACK><WND=8000><DATA=536>",
		"<SEQ=1637><ACK=301><CTL=PSH,ACK><WND=8000><DATA=536>")
}

// RFC 5927 §7.2: a next-hop MTU that would take the MSS below MinMSS
// stops at MinMSS; one that would raise it, or none at all, changes
// nothing.
func TestICMPFragNeededNeverBelowMinMSSNorUpwards(t *testing.T) {
	h := established(t)
	h.write(100, "<SEQ=101><ACK=301><CTL=PSH,ACK><WND=8000><DATA=100>")
	h.icmp(ICMPTypeDestUnreachable, ICMPCodeFragNeeded, 68, 101, ICMPMSSLowered)
	if got := h.c.SndMSS(); got != DefaultMinMSS {
		t.Fatalf("SndMSS %d after MTU 68, want MinMSS %d", got, DefaultMinMSS)
	}
	h.icmp(ICMPTypeDestUnreachable, ICMPCodeFragNeeded, 1500, 101, ICMPIgnored)
	h.icmp(ICMPTypeDestUnreachable, ICMPCodeFragNeeded, 0, 101, ICMPIgnored)
	if got := h.c.SndMSS(); got != DefaultMinMSS {
		t.Fatalf("SndMSS %d, want it to stay %d", got, DefaultMinMSS)
	}
}

// RFC 5927 §4.1: an ICMP error quoting a sequence number outside
// SND.UNA =< SEQ < SND.NXT is not about a segment in flight and is
// ignored, whatever it says.
func TestICMPQuotingSequenceOutsideFlightIsIgnored(t *testing.T) {
	h := established(t)
	// Nothing in flight: SND.UNA = SND.NXT = 101.
	h.icmp(ICMPTypeDestUnreachable, ICMPCodeFragNeeded, 576, 101, ICMPIgnored)
	h.write(100, "<SEQ=101><ACK=301><CTL=PSH,ACK><WND=8000><DATA=100>")
	for _, seq := range []uint32{100, 201, 5000, 101 + 1<<31} {
		h.icmp(ICMPTypeDestUnreachable, ICMPCodeFragNeeded, 576, seq, ICMPIgnored)
		h.icmp(ICMPTypeDestUnreachable, ICMPCodeHostUnreachable, 0, seq, ICMPIgnored)
	}
	if h.c.SndMSS() != 1000 || h.c.SoftError() != nil {
		t.Fatalf("SndMSS %d, SoftError %v after ignored errors; want 1000, nil", h.c.SndMSS(), h.c.SoftError())
	}
	h.icmp(ICMPTypeDestUnreachable, ICMPCodeHostUnreachable, 0, 200, ICMPRecorded)
}

// RFC 1122 §4.2.3.9: port unreachable (a hard error) in SYN-SENT aborts
// the connection attempt with ECONNREFUSED; nothing is sent.
func TestICMPPortUnreachableInSynSentAborts(t *testing.T) {
	h := dialed(t, testConfig())
	h.icmp(ICMPTypeDestUnreachable, ICMPCodePortUnreachable, 0, 100, ICMPAborted)
	h.state(Closed)
	if !errors.Is(h.c.Err(), syscall.ECONNREFUSED) {
		t.Fatalf("Err %v, want ECONNREFUSED", h.c.Err())
	}
	h.at(time.Second) // no SYN retransmission
}

// MUST-56: host unreachable (a soft error) in SYN-SENT does not abort;
// the SYN is retransmitted, and when the attempt times out the error
// reported is the ICMP one, not a bare ETIMEDOUT.
func TestICMPHostUnreachableInSynSentIsReportedOnTimeout(t *testing.T) {
	cfg := testConfig()
	cfg.SynRetries = 2
	h := dialed(t, cfg)
	h.icmp(ICMPTypeDestUnreachable, ICMPCodeHostUnreachable, 0, 100, ICMPRecorded)
	h.state(SynSent)
	h.at(time.Second, "<SEQ=100><CTL=SYN><WND=8000><MSS=1000>")
	h.at(3*time.Second, "<SEQ=100><CTL=SYN><WND=8000><MSS=1000>")
	h.at(7 * time.Second)
	h.state(Closed)
	if !errors.Is(h.c.Err(), syscall.EHOSTUNREACH) {
		t.Fatalf("Err %v, want EHOSTUNREACH", h.c.Err())
	}
}

// RFC 5461 §4, RFC 5927 §5.2: in a synchronized state even a hard error
// is soft: the connection stays ESTABLISHED and keeps its data flowing.
func TestICMPHardErrorInEstablishedDoesNotAbort(t *testing.T) {
	h := established(t)
	h.write(100, "<SEQ=101><ACK=301><CTL=PSH,ACK><WND=8000><DATA=100>")
	h.icmp(ICMPTypeDestUnreachable, ICMPCodePortUnreachable, 0, 101, ICMPRecorded)
	h.icmp(ICMPTypeDestUnreachable, ICMPCodeProtoUnreachable, 0, 150, ICMPRecorded)
	h.state(Established)
	h.in("<SEQ=301><ACK=201><CTL=ACK><WND=10000>")
	h.write(10, "<SEQ=201><ACK=301><CTL=PSH,ACK><WND=8000><DATA=10>")
}

// retransmitUntilGiveUp runs the retransmission timer of one 100-octet
// segment at SEQ=seq to the end (MaxRetries 2, RTO 200 ms doubling).
func retransmitUntilGiveUp(h *harness, seq string) {
	h.t.Helper()
	seg := "<SEQ=" + seq + "><ACK=301><CTL=PSH,ACK><WND=8000><DATA=100>"
	h.at(h.now+200*time.Millisecond, seg)
	h.at(h.now+400*time.Millisecond, seg)
	h.at(h.now + 800*time.Millisecond)
	h.state(Closed)
}

// A soft error recorded while a segment goes unanswered is what the
// retransmission timeout reports (RFC 1122 §4.2.3.9).
func TestICMPSoftErrorReportedWhenRetransmissionGivesUp(t *testing.T) {
	cfg := testConfig()
	cfg.MaxRetries = 2
	h := dialed(t, cfg)
	h.now = 10 * time.Millisecond
	h.in("<SEQ=300><ACK=101><CTL=SYN,ACK><WND=10000><MSS=1000>", "<SEQ=101><ACK=301><CTL=ACK><WND=8000>")
	h.write(100, "<SEQ=101><ACK=301><CTL=PSH,ACK><WND=8000><DATA=100>")
	h.icmp(ICMPTypeDestUnreachable, ICMPCodeNetUnreachable, 0, 101, ICMPRecorded)
	retransmitUntilGiveUp(h, "101")
	if !errors.Is(h.c.Err(), syscall.ENETUNREACH) {
		t.Fatalf("Err %v, want ENETUNREACH", h.c.Err())
	}
}

// A soft error followed by progress (an ACK of new data) is stale: a
// later timeout reports ETIMEDOUT.
func TestICMPSoftErrorForgottenAfterProgress(t *testing.T) {
	cfg := testConfig()
	cfg.MaxRetries = 2
	h := dialed(t, cfg)
	h.now = 10 * time.Millisecond
	h.in("<SEQ=300><ACK=101><CTL=SYN,ACK><WND=10000><MSS=1000>", "<SEQ=101><ACK=301><CTL=ACK><WND=8000>")
	h.write(100, "<SEQ=101><ACK=301><CTL=PSH,ACK><WND=8000><DATA=100>")
	h.icmp(ICMPTypeTimeExceeded, 0, 0, 101, ICMPRecorded)
	h.in("<SEQ=301><ACK=201><CTL=ACK><WND=10000>")
	h.write(100, "<SEQ=201><ACK=301><CTL=PSH,ACK><WND=8000><DATA=100>")
	retransmitUntilGiveUp(h, "201")
	if !errors.Is(h.c.Err(), syscall.ETIMEDOUT) {
		t.Fatalf("Err %v, want ETIMEDOUT (the ICMP error predates the progress)", h.c.Err())
	}
}

// MUST-55 (RFC 6633): Source Quench is ignored: no soft error, no change
// of the congestion window.
func TestICMPSourceQuenchIsIgnored(t *testing.T) {
	h := established(t)
	h.write(100, "<SEQ=101><ACK=301><CTL=PSH,ACK><WND=8000><DATA=100>")
	cwnd := h.c.CongestionWindow()
	h.icmp(ICMPTypeSourceQuench, 0, 0, 101, ICMPIgnored)
	if h.c.SoftError() != nil || h.c.CongestionWindow() != cwnd {
		t.Fatalf("after Source Quench: SoftError %v, cwnd %d (was %d)", h.c.SoftError(), h.c.CongestionWindow(), cwnd)
	}
}

// RFC 1191 §6.3: after the MSS was lowered, a retransmission of data sent
// at the old size is cut to the new one, not resent whole for the path to
// drop again (or a gateway to cut).
func TestRetransmissionAfterMSSLoweredIsCutToTheNewMSS(t *testing.T) {
	h := established(t)
	h.write(1000, "<SEQ=101><ACK=301><CTL=PSH,ACK><WND=8000><DATA=1000>")
	h.icmp(ICMPTypeDestUnreachable, ICMPCodeFragNeeded, 576, 101, ICMPMSSLowered)
	h.at(h.c.Deadline(),
		"<SEQ=101><ACK=301><CTL=ACK><WND=8000><DATA=536>",
		"<SEQ=637><ACK=301><CTL=PSH,ACK><WND=8000><DATA=464>")
}
