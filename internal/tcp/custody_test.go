package tcp

import (
	"errors"
	"syscall"
	"testing"
	"time"
)

func custodyEstablished(t *testing.T) *harness {
	t.Helper()
	cfg := testConfig()
	cfg.Custody = true
	h := dialed(t, cfg)
	h.now = 10 * time.Millisecond
	h.in("<SEQ=300><ACK=101><CTL=SYN,ACK><WND=10000><MSS=1000>", "<SEQ=101><ACK=301><CTL=ACK><WND=8000>")
	return h
}

// Custody mode: once emitted, bytes are the link's. The engine keeps the
// sequence accounting but neither the bytes nor a retransmission timer.
func TestCustodyReleasesBytesOnEmitAndRunsNoTimer(t *testing.T) {
	h := custodyEstablished(t)
	h.write(2000,
		"<SEQ=101><ACK=301><CTL=ACK><WND=8000><DATA=1000>",
		"<SEQ=1101><ACK=301><CTL=PSH,ACK><WND=8000><DATA=1000>")
	if h.c.sb.n != 0 {
		t.Fatalf("engine still holds %d sent octets", h.c.sb.n)
	}
	if h.c.Deadline() != 0 {
		t.Fatalf("deadline %v: custody mode runs no retransmission timer", h.c.Deadline())
	}
	h.in("<SEQ=301><ACK=2101><CTL=ACK><WND=10000>")
	if h.c.sndUna != 2101 {
		t.Fatalf("SND.UNA = %d, want 2101", h.c.sndUna)
	}
}

// WriteDirect in custody mode emits segments whose payloads are the
// caller's own buffer, as far as the windows allow, and copies nothing.
func TestCustodyWriteDirectEmitsFromCallerBuffer(t *testing.T) {
	h := custodyEstablished(t)
	h.in("<SEQ=301><ACK=101><CTL=ACK><WND=3000>")
	p := make([]byte, 4000)
	n, out, err := h.c.WriteDirect(h.now, p, nil)
	if err != nil || n != 3000 {
		t.Fatalf("WriteDirect consumed %d, %v; want 3000 (the window)", n, err)
	}
	h.check("WriteDirect", out, []string{
		"<SEQ=101><ACK=301><CTL=ACK><WND=8000><DATA=1000>",
		"<SEQ=1101><ACK=301><CTL=ACK><WND=8000><DATA=1000>",
		"<SEQ=2101><ACK=301><CTL=ACK><WND=8000><DATA=1000>"})
	if &out[0].Payload[0] != &p[0] || &out[2].Payload[0] != &p[2000] {
		t.Fatal("payloads do not point into the caller's buffer")
	}
	if h.c.sb.allocated() {
		t.Fatal("the send buffer was allocated: bytes were copied")
	}
}

// In retaining mode WriteDirect must keep a copy: it stages like Write.
func TestRetainingWriteDirectCopiesForRetransmission(t *testing.T) {
	h := established(t)
	p := make([]byte, 1000)
	n, out, _ := h.c.WriteDirect(h.now, p, nil)
	if n != 1000 || len(out) != 1 || &out[0].Payload[0] == &p[0] {
		t.Fatalf("n=%d, %d segments; payload must be the engine's copy", n, len(out))
	}
	h.at(h.now+200*time.Millisecond, "<SEQ=101><ACK=301><CTL=PSH,ACK><WND=8000><DATA=1000>")
}

// ReportLoss makes the congestion controller react once per window.
func TestCustodyReportLossReducesWindowOncePerWindow(t *testing.T) {
	h := custodyEstablished(t)
	h.c.Write(make([]byte, 5000))
	h.c.Output(h.now, nil)
	before := h.c.CongestionWindow()
	h.c.ReportLoss(h.now, 1101, 2101)
	after := h.c.CongestionWindow()
	if after >= before {
		t.Fatalf("cwnd %d -> %d: no reaction to a reported loss", before, after)
	}
	h.c.ReportLoss(h.now, 2101, 3101)
	if h.c.CongestionWindow() != after {
		t.Fatal("a second loss in the same window reduced cwnd again")
	}
	if h.c.Stats().CustodyLosses != 2 {
		t.Fatalf("CustodyLosses = %d", h.c.Stats().CustodyLosses)
	}
}

// ReportFailure ends the connection with the custodian's error.
func TestCustodyReportFailureEndsConnection(t *testing.T) {
	h := custodyEstablished(t)
	h.c.ReportFailure(nil)
	h.state(Closed)
	if !errors.Is(h.c.Err(), syscall.ETIMEDOUT) {
		t.Fatalf("Err = %v, want ETIMEDOUT", h.c.Err())
	}
}

// Leaving custody mid-stream: bytes already emitted stay the custodian's,
// later ones are retained and retransmitted by the engine.
func TestCustodySwitchedOffRetainsLaterBytes(t *testing.T) {
	h := custodyEstablished(t)
	h.write(1000, "<SEQ=101><ACK=301><CTL=PSH,ACK><WND=8000><DATA=1000>")
	h.c.SetCustody(false)
	h.c.Write(make([]byte, 500))
	h.in("<SEQ=301><ACK=101><CTL=ACK><WND=10000>") // Nagle holds it until the first is ACKed
	h.in("<SEQ=301><ACK=1101><CTL=ACK><WND=10000>", "<SEQ=1101><ACK=301><CTL=PSH,ACK><WND=8000><DATA=500>")
	h.at(h.now+200*time.Millisecond, "<SEQ=1101><ACK=301><CTL=PSH,ACK><WND=8000><DATA=500>")
}

// In custody mode a zero-window probe must not hand bytes to the link, so
// it is an ACK below SND.UNA, repeated with backoff.
func TestCustodyZeroWindowProbeCarriesNoData(t *testing.T) {
	h := custodyEstablished(t)
	h.in("<SEQ=301><ACK=101><CTL=ACK><WND=0>")
	h.write(100)
	h.at(h.now+200*time.Millisecond, "<SEQ=100><ACK=301><CTL=ACK><WND=8000>")
	h.at(h.now+400*time.Millisecond, "<SEQ=100><ACK=301><CTL=ACK><WND=8000>")
	h.in("<SEQ=301><ACK=101><CTL=ACK><WND=5000>", "<SEQ=101><ACK=301><CTL=PSH,ACK><WND=8000><DATA=100>")
}

// Switching custody on while retained bytes are unacknowledged waits for
// them: the engine keeps retransmitting what it retained.
func TestCustodySwitchedOnWaitsForRetainedBytes(t *testing.T) {
	h := established(t)
	h.write(1000, "<SEQ=101><ACK=301><CTL=PSH,ACK><WND=8000><DATA=1000>")
	h.c.SetCustody(true)
	if h.c.Custody() {
		t.Fatal("custody on with retained bytes in flight")
	}
	h.at(h.now+200*time.Millisecond, "<SEQ=101><ACK=301><CTL=PSH,ACK><WND=8000><DATA=1000>")
	h.in("<SEQ=301><ACK=1101><CTL=ACK><WND=10000>")
	if !h.c.Custody() {
		t.Fatal("custody still off after the retained bytes were acknowledged")
	}
}
