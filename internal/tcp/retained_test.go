package tcp

import "testing"

// A retaining connection holds what it sent until it is acknowledged:
// the peak is the largest flight.
func TestRetainedPeakIsLargestRetainedFlight(t *testing.T) {
	h := established(t)
	h.write(3000,
		"<SEQ=101><ACK=301><CTL=ACK><WND=8000><DATA=1000>",
		"<SEQ=1101><ACK=301><CTL=ACK><WND=8000><DATA=1000>",
		"<SEQ=2101><ACK=301><CTL=PSH,ACK><WND=8000><DATA=1000>")
	if n, p := h.c.RetainedInFlight(), h.c.RetainedPeak(); n != 3000 || p != 3000 {
		t.Fatalf("in flight %d, peak %d; want 3000, 3000", n, p)
	}
	h.in("<SEQ=301><ACK=2101><CTL=ACK><WND=10000>")
	if n, p := h.c.RetainedInFlight(), h.c.RetainedPeak(); n != 1000 || p != 3000 {
		t.Fatalf("after ACK 2101: in flight %d, peak %d; want 1000, 3000", n, p)
	}
	h.write(1000, "<SEQ=3101><ACK=301><CTL=PSH,ACK><WND=8000><DATA=1000>")
	if p := h.c.RetainedPeak(); p != 3000 {
		t.Fatalf("peak %d after a flight of 2000, want 3000 still", p)
	}
}

// In custody mode the engine keeps nothing it sent.
func TestRetainedPeakIsZeroInCustody(t *testing.T) {
	h := custodyEstablished(t)
	h.write(2000,
		"<SEQ=101><ACK=301><CTL=ACK><WND=8000><DATA=1000>",
		"<SEQ=1101><ACK=301><CTL=PSH,ACK><WND=8000><DATA=1000>")
	if n, p := h.c.RetainedInFlight(), h.c.RetainedPeak(); n != 0 || p != 0 {
		t.Fatalf("custody: in flight %d, peak %d; want 0, 0", n, p)
	}
}
