package tcp

import (
	"testing"
	"time"
)

// inDirect feeds spec through InputDirect with placed octets already
// "delivered" and checks how many the engine took and what it sent.
func (h *harness) inDirect(spec string, placed, wantTaken int, want ...string) {
	h.t.Helper()
	s := parseSeg(h.t, spec)
	var n int
	n, h.out = h.c.InputDirect(h.now, &s, placed, h.out[:0])
	if n != wantTaken {
		h.t.Fatalf("InputDirect(%s, placed %d) took %d octets, want %d", spec, placed, n, wantTaken)
	}
	h.check("after direct "+spec, h.out, want)
}

// In order, nothing readable: the placed octets are delivered, nothing is
// stored, and the window the next ACK advertises has not shrunk (RFC 9293
// §3.8.6: the window is the free receive buffer, and the reader took the
// octets at once).
func TestDirectInOrderSegmentIsDeliveredWithoutStoring(t *testing.T) {
	h := established(t)
	h.inDirect("<SEQ=301><ACK=101><CTL=ACK><WND=10000><DATA=1000>", 1000, 1000)
	if h.c.Readable() != 0 {
		t.Fatalf("%d octets stored; want 0", h.c.Readable())
	}
	h.inDirect("<SEQ=1301><ACK=101><CTL=ACK><WND=10000><DATA=1000>", 1000, 1000,
		"<SEQ=101><ACK=2301><CTL=ACK><WND=8000>")
}

// A reader buffer smaller than the segment: the front is delivered, the
// rest is stored and read next, in sequence.
func TestDirectPartialPlacementStoresTheRest(t *testing.T) {
	h := established(t)
	h.inDirect("<SEQ=301><ACK=101><CTL=ACK><WND=10000><DATA=1000>", 400, 400)
	if h.c.Readable() != 600 {
		t.Fatalf("%d octets stored; want 600", h.c.Readable())
	}
	h.readAll(301+400, 600)
}

// Octets already readable come first: a direct delivery would overtake
// them, so the segment is stored as by Input.
func TestDirectRefusedWhileBytesAreReadable(t *testing.T) {
	h := established(t)
	h.in("<SEQ=301><ACK=101><CTL=ACK><WND=10000><DATA=1000>")
	h.inDirect("<SEQ=1301><ACK=101><CTL=ACK><WND=10000><DATA=1000>", 1000, 0,
		"<SEQ=101><ACK=2301><CTL=ACK><WND=6000>")
	h.readAll(301, 2000)
}

// A segment ahead of RCV.NXT is queued out of order and acknowledged at
// once (RFC 5681 §4.2), never delivered.
func TestDirectRefusedOutOfOrder(t *testing.T) {
	h := established(t)
	h.inDirect("<SEQ=1301><ACK=101><CTL=ACK><WND=10000><DATA=1000>", 1000, 0,
		"<SEQ=101><ACK=301><CTL=ACK><WND=8000>")
	h.in("<SEQ=301><ACK=101><CTL=ACK><WND=10000><DATA=1000>",
		"<SEQ=101><ACK=2301><CTL=ACK><WND=6000>")
	h.readAll(301, 2000)
}

// A segment whose front was received already is trimmed (RFC 9293
// §3.10.7.4): the caller's placed octets are the duplicate front, so
// nothing may be taken as delivered.
func TestDirectRefusedWhenFrontIsDuplicate(t *testing.T) {
	h := established(t)
	h.inDirect("<SEQ=301><ACK=101><CTL=ACK><WND=10000><DATA=500>", 500, 500)
	h.inDirect("<SEQ=301><ACK=101><CTL=ACK><WND=10000><DATA=1000>", 1000, 0,
		"<SEQ=101><ACK=1301><CTL=ACK><WND=7000>") // receiver SWS: the edge moves by a full MSS or not at all
	h.readAll(801, 500)
}

// An unacceptable segment is dropped whatever the caller placed.
func TestDirectRefusedOutOfWindow(t *testing.T) {
	h := established(t)
	h.inDirect("<SEQ=9301><ACK=101><CTL=ACK><WND=10000><DATA=1000>", 1000, 0,
		"<SEQ=101><ACK=301><CTL=ACK><WND=8000>")
	if h.c.Readable() != 0 {
		t.Fatalf("%d octets stored from an out-of-window segment", h.c.Readable())
	}
}

// A FIN on a directly delivered segment is accepted as usual.
func TestDirectSegmentWithFINClosesReceiveSide(t *testing.T) {
	h := established(t)
	h.inDirect("<SEQ=301><ACK=101><CTL=FIN,ACK><WND=10000><DATA=100>", 100, 100,
		"<SEQ=101><ACK=402><CTL=ACK><WND=8000>")
	h.state(CloseWait)
}

// SetKeepAlive on an established connection arms the keepalive timer
// from now; zero disarms it (RFC 1122 §4.2.3.6: off unless asked for).
func TestSetKeepAliveArmsAndDisarmsTheTimer(t *testing.T) {
	h := established(t)
	h.c.SetKeepAlive(h.now, 5*time.Second)
	if d := h.c.Deadline(); d != h.now+5*time.Second {
		t.Fatalf("deadline %v, want %v", d, h.now+5*time.Second)
	}
	h.at(h.now+5*time.Second, "<SEQ=100><ACK=301><CTL=ACK><WND=8000>")
	h.c.SetKeepAlive(h.now, 0)
	if d := h.c.Deadline(); d != 0 {
		t.Fatalf("deadline %v after switching keepalive off", d)
	}
}

// SetNoDelay lets a short segment go while data is in flight, which
// Nagle's algorithm (RFC 9293 §3.7.4) would hold.
func TestSetNoDelayOverridesNagle(t *testing.T) {
	h := established(t)
	h.write(10, "<SEQ=101><ACK=301><CTL=PSH,ACK><WND=8000><DATA=10>")
	h.write(10) // Nagle: held while 10 octets are unacknowledged
	h.c.SetNoDelay(true)
	h.output("<SEQ=111><ACK=301><CTL=PSH,ACK><WND=8000><DATA=10>")
}
