package tcp

import (
	"errors"
	"syscall"
	"testing"
	"time"
)

// RFC 9293 §3.5, Figure 6: the basic three-way handshake, both ends.
func TestActiveOpenThreeWayHandshake(t *testing.T) {
	h := established(t)
	if h.c.RTT() != 10*time.Millisecond {
		t.Fatalf("RTT from the SYN exchange = %v, want 10ms", h.c.RTT())
	}
	if h.c.Deadline() != 0 {
		t.Fatalf("an idle established connection has deadline %v, want none", h.c.Deadline())
	}
}

func TestPassiveOpenThreeWayHandshake(t *testing.T) {
	h := passive(t)
	if h.c.SndMSS() != 1000 {
		t.Fatalf("SndMSS = %d, want 1000", h.c.SndMSS())
	}
}

// RFC 9293 §3.5, Figure 8: simultaneous open.
func TestSimultaneousOpen(t *testing.T) {
	h := dialed(t, testConfig())
	h.in("<SEQ=300><CTL=SYN><WND=10000><MSS=1000>",
		"<SEQ=100><ACK=301><CTL=SYN,ACK><WND=8000><MSS=1000>")
	h.state(SynReceived)
	h.in("<SEQ=300><ACK=101><CTL=SYN,ACK><WND=10000><MSS=1000>",
		"<SEQ=101><ACK=301><CTL=ACK><WND=8000>")
	h.state(Established)
}

// RFC 9293 §3.10.7.3: an ACK that does not acknowledge our SYN is answered
// with <SEQ=SEG.ACK><CTL=RST>.
func TestSynSentBadAckGetsReset(t *testing.T) {
	h := dialed(t, testConfig())
	h.in("<SEQ=300><ACK=100><CTL=SYN,ACK><WND=10000>", "<SEQ=100><CTL=RST><WND=0>")
	h.in("<SEQ=300><ACK=102><CTL=ACK><WND=10000>", "<SEQ=102><CTL=RST><WND=0>")
	h.state(SynSent)
}

// RFC 9293 §3.10.7.3 and RFC 5961 §3.2: a RST in SYN-SENT counts only if
// it acknowledges our SYN.
func TestSynSentRSTWithBadAckIsIgnored(t *testing.T) {
	h := dialed(t, testConfig())
	h.in("<SEQ=0><ACK=5000><CTL=RST,ACK><WND=0>")
	h.in("<SEQ=0><CTL=RST><WND=0>")
	h.state(SynSent)
}

func TestSynSentRSTWithGoodAckRefusesConnection(t *testing.T) {
	h := dialed(t, testConfig())
	h.in("<SEQ=0><ACK=101><CTL=RST,ACK><WND=0>")
	h.state(Closed)
	if !errors.Is(h.c.Err(), syscall.ECONNREFUSED) {
		t.Fatalf("Err = %v, want ECONNREFUSED", h.c.Err())
	}
}

func TestSynSentSegmentWithoutSYNOrRSTIsDropped(t *testing.T) {
	h := dialed(t, testConfig())
	h.in("<SEQ=300><ACK=101><CTL=ACK><WND=10000>")
	h.in("<SEQ=300><CTL=PSH><WND=10000><DATA=10>")
	h.state(SynSent)
	if s := h.c.Stats(); s.DropBadFlags != 2 {
		t.Fatalf("DropBadFlags = %d, want 2", s.DropBadFlags)
	}
}

// RFC 6298 §5 and RFC 9293 §3.8.3: the SYN is retransmitted with backoff
// and the open fails with ETIMEDOUT after SynRetries.
func TestSynRetransmissionBacksOffThenTimesOut(t *testing.T) {
	cfg := testConfig()
	cfg.SynRetries = 2
	h := dialed(t, cfg)
	if h.c.Deadline() != time.Second {
		t.Fatalf("first SYN deadline %v, want 1s", h.c.Deadline())
	}
	h.at(time.Second, "<SEQ=100><CTL=SYN><WND=8000><MSS=1000>")
	h.at(3*time.Second, "<SEQ=100><CTL=SYN><WND=8000><MSS=1000>")
	h.at(7 * time.Second)
	h.state(Closed)
	if !errors.Is(h.c.Err(), syscall.ETIMEDOUT) {
		t.Fatalf("Err = %v, want ETIMEDOUT", h.c.Err())
	}
}

// A lost SYN-ACK: the peer's SYN arrives again and is answered again.
func TestSynReceivedRetransmittedSYNGetsSynAckAgain(t *testing.T) {
	cfg := testConfig()
	h := &harness{t: t, c: NewListening(&cfg, localPort, 0, 100)}
	h.in("<SEQ=300><CTL=SYN><WND=10000><MSS=1000>",
		"<SEQ=100><ACK=301><CTL=SYN,ACK><WND=8000><MSS=1000>")
	h.in("<SEQ=300><CTL=SYN><WND=10000><MSS=1000>",
		"<SEQ=100><ACK=301><CTL=SYN,ACK><WND=8000><MSS=1000>")
	h.at(time.Second, "<SEQ=100><ACK=301><CTL=SYN,ACK><WND=8000><MSS=1000>")
}

// RFC 9293 §3.10.7.4: in SYN-RECEIVED an ACK outside SND.UNA < SEG.ACK =<
// SND.NXT is answered by <SEQ=SEG.ACK><CTL=RST>; one below and one above.
func TestSynReceivedAckOneBelowRangeGetsReset(t *testing.T) {
	cfg := testConfig()
	h := &harness{t: t, c: NewListening(&cfg, localPort, 0, 100)}
	h.in("<SEQ=300><CTL=SYN><WND=10000><MSS=1000>",
		"<SEQ=100><ACK=301><CTL=SYN,ACK><WND=8000><MSS=1000>")
	h.in("<SEQ=301><ACK=100><CTL=ACK><WND=10000>", "<SEQ=100><CTL=RST><WND=0>")
	h.state(SynReceived)
}

func TestSynReceivedAckOneAboveRangeGetsReset(t *testing.T) {
	cfg := testConfig()
	h := &harness{t: t, c: NewListening(&cfg, localPort, 0, 100)}
	h.in("<SEQ=300><CTL=SYN><WND=10000><MSS=1000>",
		"<SEQ=100><ACK=301><CTL=SYN,ACK><WND=8000><MSS=1000>")
	h.in("<SEQ=301><ACK=102><CTL=ACK><WND=10000>", "<SEQ=102><CTL=RST><WND=0>")
	h.state(SynReceived)
}

// RFC 9293 §3.10.7.2: in LISTEN a RST is ignored, an ACK draws a RST and
// anything without SYN is dropped.
func TestListenRSTIsIgnored(t *testing.T) {
	cfg := testConfig()
	h := &harness{t: t, c: NewListening(&cfg, localPort, 0, 100)}
	h.in("<SEQ=300><CTL=RST><WND=0>")
	h.state(Listen)
}

func TestListenACKGetsReset(t *testing.T) {
	cfg := testConfig()
	h := &harness{t: t, c: NewListening(&cfg, localPort, 0, 100)}
	h.in("<SEQ=300><ACK=555><CTL=ACK><WND=0>", "<SEQ=555><CTL=RST><WND=0>")
	h.state(Listen)
}

func TestListenNoFlagsIsDropped(t *testing.T) {
	cfg := testConfig()
	h := &harness{t: t, c: NewListening(&cfg, localPort, 0, 100)}
	h.in("<SEQ=300><CTL=><WND=0><DATA=10>")
	h.state(Listen)
	if h.c.Stats().DropBadFlags != 1 {
		t.Fatalf("DropBadFlags = %d, want 1", h.c.Stats().DropBadFlags)
	}
}

func TestSynFinIsDroppedInEveryState(t *testing.T) {
	cfg := testConfig()
	l := &harness{t: t, c: NewListening(&cfg, localPort, 0, 100)}
	l.in("<SEQ=300><CTL=FIN,SYN><WND=10000>")
	l.state(Listen)
	d := dialed(t, cfg)
	d.in("<SEQ=300><ACK=101><CTL=FIN,SYN,ACK><WND=10000>")
	d.state(SynSent)
	e := established(t)
	e.in("<SEQ=301><ACK=101><CTL=FIN,SYN,ACK><WND=10000>")
	e.state(Established)
	for _, h := range []*harness{l, d, e} {
		if h.c.Stats().DropBadFlags != 1 {
			t.Fatalf("%v: DropBadFlags = %d, want 1", h.c.state, h.c.Stats().DropBadFlags)
		}
	}
}

// RFC 9293 §3.10.7.1: a segment for no connection gets a RST shaped by
// its ACK bit, and a RST gets nothing.
func TestClosedSegmentsGetResetPerRFC(t *testing.T) {
	h := &harness{t: t}
	for _, tc := range []struct{ in, want string }{
		{"<SEQ=300><ACK=77><CTL=ACK><WND=0>", "<SEQ=77><CTL=RST><WND=0>"},
		{"<SEQ=300><CTL=SYN><WND=0>", "<SEQ=0><ACK=301><CTL=RST,ACK><WND=0>"},
		{"<SEQ=300><CTL=PSH><WND=0><DATA=5>", "<SEQ=0><ACK=305><CTL=RST,ACK><WND=0>"},
	} {
		s := parseSeg(t, tc.in)
		h.check(tc.in, ResetFor(&s, nil), []string{tc.want})
	}
	s := parseSeg(t, "<SEQ=300><CTL=RST><WND=0>")
	h.check("RST", ResetFor(&s, nil), nil)
}

// MSS of 0 or tiny in the SYN is clamped to the floor (RFC 9293 §3.7.1:
// 536 is always safe for IPv4).
func TestPeerMSSZeroOrTinyIsClampedToFloor(t *testing.T) {
	for _, mss := range []string{"", "<MSS=1>", "<MSS=40>"} {
		h := dialed(t, testConfig())
		h.in("<SEQ=300><ACK=101><CTL=SYN,ACK><WND=10000>"+mss, "<SEQ=101><ACK=301><CTL=ACK><WND=8000>")
		if h.c.SndMSS() != 536 {
			t.Fatalf("SYN-ACK %q: SndMSS = %d, want 536", mss, h.c.SndMSS())
		}
		h.write(600, "<SEQ=101><ACK=301><CTL=ACK><WND=8000><DATA=536>") // Nagle holds the 64-octet tail
		h.in("<SEQ=301><ACK=637><CTL=ACK><WND=10000>", "<SEQ=637><ACK=301><CTL=PSH,ACK><WND=8000><DATA=64>")
	}
}

func TestConfiguredMinMSSLowersTheFloor(t *testing.T) {
	cfg := testConfig()
	cfg.MinMSS = 100
	h := dialed(t, cfg)
	h.in("<SEQ=300><ACK=101><CTL=SYN,ACK><WND=10000><MSS=1>", "<SEQ=101><ACK=301><CTL=ACK><WND=8000>")
	if h.c.SndMSS() != 100 {
		t.Fatalf("SndMSS = %d, want 100", h.c.SndMSS())
	}
}

func TestPeerMSSAboveOursIsBoundedByOurs(t *testing.T) {
	h := dialed(t, testConfig())
	h.in("<SEQ=300><ACK=101><CTL=SYN,ACK><WND=10000><MSS=9000>", "<SEQ=101><ACK=301><CTL=ACK><WND=8000>")
	if h.c.SndMSS() != 1000 {
		t.Fatalf("SndMSS = %d, want 1000", h.c.SndMSS())
	}
}

// RFC 9293 §3.10.7.3: text on a SYN-ACK is processed once ESTABLISHED.
func TestSynAckCarryingDataIsAccepted(t *testing.T) {
	h := dialed(t, testConfig())
	h.in("<SEQ=300><ACK=101><CTL=SYN,ACK><WND=10000><MSS=1000><DATA=5>",
		"<SEQ=101><ACK=306><CTL=ACK><WND=7995>")
	h.readAll(301, 5)
}

// Data on a SYN in LISTEN is not acknowledged: RCV.NXT covers the SYN
// only, and the peer resends the data once synchronized.
func TestListenSynDataIsNotAcknowledged(t *testing.T) {
	cfg := testConfig()
	h := &harness{t: t, c: NewListening(&cfg, localPort, 0, 100)}
	h.in("<SEQ=300><CTL=SYN><WND=10000><MSS=1000><DATA=5>",
		"<SEQ=100><ACK=301><CTL=SYN,ACK><WND=8000><MSS=1000>")
}

// RFC 6298 §5.7: after a SYN timeout with no RTT sample, data starts with
// an RTO of 3 s.
func TestRTOIsThreeSecondsAfterSynTimeout(t *testing.T) {
	h := dialed(t, testConfig())
	h.at(time.Second, "<SEQ=100><CTL=SYN><WND=8000><MSS=1000>")
	h.in("<SEQ=300><ACK=101><CTL=SYN,ACK><WND=10000><MSS=1000>", "<SEQ=101><ACK=301><CTL=ACK><WND=8000>")
	h.write(10, "<SEQ=101><ACK=301><CTL=PSH,ACK><WND=8000><DATA=10>")
	if h.c.Deadline() != h.now+3*time.Second {
		t.Fatalf("data RTO deadline %v, want %v", h.c.Deadline(), h.now+3*time.Second)
	}
}
