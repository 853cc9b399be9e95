package tcp

import "testing"

// ClampMSS before the handshake: the peer's larger MSS option is clamped
// to it, and segments are cut to it (RFC 9293 §3.7.1).
func TestClampMSSBeforeHandshakeBoundsThePeersOption(t *testing.T) {
	cfg := testConfig()
	cfg.MinMSS = 100
	cfg.NoDelay = true // both segments at once
	h := dialed(t, cfg)
	h.c.ClampMSS(600)
	h.in("<SEQ=300><ACK=101><CTL=SYN,ACK><WND=10000><MSS=1000>",
		"<SEQ=101><ACK=301><CTL=ACK><WND=8000>")
	h.write(1000,
		"<SEQ=101><ACK=301><CTL=ACK><WND=8000><DATA=600>",
		"<SEQ=701><ACK=301><CTL=PSH,ACK><WND=8000><DATA=400>")
}

// ClampMSS on an established connection cuts the next segments; it never
// raises the MSS, nor lowers it below MinMSS.
func TestClampMSSEstablishedOnlyLowers(t *testing.T) {
	h := established(t)
	h.c.ClampMSS(5000)
	if h.c.SndMSS() != 1000 {
		t.Fatalf("send MSS %d after a larger clamp, want 1000", h.c.SndMSS())
	}
	h.c.ClampMSS(1) // below MinMSS (536 by default)
	if got, want := h.c.SndMSS(), h.c.cfg.MinMSS; got != want {
		t.Fatalf("send MSS %d after clamping to 1, want the floor %d", got, want)
	}
}
