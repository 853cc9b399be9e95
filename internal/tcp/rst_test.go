package tcp

import (
	"errors"
	"syscall"
	"testing"
)

// RFC 5961 §3.2: a RST exactly at RCV.NXT resets the connection.
func TestEstablishedRSTAtRcvNxtResets(t *testing.T) {
	h := established(t)
	h.in("<SEQ=301><CTL=RST><WND=0>")
	h.state(Closed)
	if !errors.Is(h.c.Err(), syscall.ECONNRESET) {
		t.Fatalf("Err = %v, want ECONNRESET", h.c.Err())
	}
	if _, err := h.c.Write([]byte("x")); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("Write after reset = %v, want ECONNRESET", err)
	}
}

// RFC 5961 §3.2: a RST in the window but not at RCV.NXT earns a challenge
// ACK and changes nothing.
func TestEstablishedRSTInWindowGetsChallengeAck(t *testing.T) {
	h := established(t)
	h.in("<SEQ=302><CTL=RST><WND=0>", "<SEQ=101><ACK=301><CTL=ACK><WND=8000>")
	h.state(Established)
	if s := h.c.Stats(); s.ChallengeACKs != 1 || s.DropRST != 1 {
		t.Fatalf("ChallengeACKs %d, DropRST %d; want 1, 1", s.ChallengeACKs, s.DropRST)
	}
}

// RFC 9293 §3.10.7.4: a RST outside the window is dropped silently.
func TestEstablishedRSTOutOfWindowIsDropped(t *testing.T) {
	h := established(t)
	h.in("<SEQ=9000><CTL=RST><WND=0>")
	h.in("<SEQ=300><CTL=RST><WND=0>")
	h.state(Established)
}

// RFC 5961 §4.2: a SYN in a synchronized state, in window or not, earns a
// challenge ACK.
func TestEstablishedSYNGetsChallengeAck(t *testing.T) {
	h := established(t)
	h.in("<SEQ=500><CTL=SYN><WND=1000>", "<SEQ=101><ACK=301><CTL=ACK><WND=8000>")
	h.in("<SEQ=1><CTL=SYN><WND=1000>", "<SEQ=101><ACK=301><CTL=ACK><WND=8000>")
	h.state(Established)
}

// RFC 5961 §7: challenge ACKs are rate-limited per connection.
func TestChallengeAcksAreRateLimitedPerConnection(t *testing.T) {
	h := established(t)
	other := established(t)
	for i := 0; i < 10; i++ {
		h.in("<SEQ=302><CTL=RST><WND=0>", "<SEQ=101><ACK=301><CTL=ACK><WND=8000>")
	}
	h.in("<SEQ=302><CTL=RST><WND=0>")
	// Another connection's budget is its own (CVE-2016-5696).
	other.in("<SEQ=302><CTL=RST><WND=0>", "<SEQ=101><ACK=301><CTL=ACK><WND=8000>")
	// A second later the budget is back.
	h.now += 1e9
	h.in("<SEQ=302><CTL=RST><WND=0>", "<SEQ=101><ACK=301><CTL=ACK><WND=8000>")
	if s := h.c.Stats(); s.ChallengeLimit != 1 {
		t.Fatalf("ChallengeLimit = %d, want 1", s.ChallengeLimit)
	}
}

// RFC 9293 §3.10.7.4 and RFC 5961 §5.2: an ACK of data never sent is
// challenged and its data is not accepted.
func TestAckAboveSndNxtIsChallengedAndDataDropped(t *testing.T) {
	h := established(t)
	h.in("<SEQ=301><ACK=5000><CTL=ACK><WND=10000><DATA=10>", "<SEQ=101><ACK=301><CTL=ACK><WND=8000>")
	if h.c.Readable() != 0 || h.c.Stats().DropBadAck != 1 {
		t.Fatalf("Readable %d, DropBadAck %d; want 0, 1", h.c.Readable(), h.c.Stats().DropBadAck)
	}
}

// RFC 5961 §5.2: an ACK older than SND.UNA - MAX.SND.WND is blind
// injection: challenge ACK, data dropped.
func TestAckBelowMaxSndWndIsChallengedAndDataDropped(t *testing.T) {
	h := established(t)
	// SND.UNA 101, MAX.SND.WND 10000: 101-10000 wraps to 4294957397.
	h.in("<SEQ=301><ACK=4294957000><CTL=ACK><WND=10000><DATA=10>", "<SEQ=101><ACK=301><CTL=ACK><WND=8000>")
	if h.c.Readable() != 0 {
		t.Fatalf("Readable = %d, want 0", h.c.Readable())
	}
	// Within MAX.SND.WND below SND.UNA the ACK is just old: data is taken.
	h.in("<SEQ=301><ACK=50><CTL=ACK><WND=10000><DATA=10>")
	if h.c.Readable() != 10 {
		t.Fatalf("Readable = %d, want 10", h.c.Readable())
	}
}

// RFC 9293 §3.10.7.4: a segment without ACK in a synchronized state is
// dropped.
func TestEstablishedSegmentWithNoFlagsIsDropped(t *testing.T) {
	h := established(t)
	h.in("<SEQ=301><CTL=><WND=10000><DATA=10>")
	h.in("<SEQ=301><CTL=PSH><WND=10000><DATA=10>")
	if h.c.Readable() != 0 || h.c.Stats().DropBadFlags != 2 {
		t.Fatalf("Readable %d, DropBadFlags %d; want 0, 2", h.c.Readable(), h.c.Stats().DropBadFlags)
	}
}

// RFC 9293 §3.10.7.4: RST in SYN-RECEIVED (reached from LISTEN) ends the
// embryonic connection.
func TestSynReceivedRSTCloses(t *testing.T) {
	cfg := testConfig()
	h := &harness{t: t, c: NewListening(&cfg, localPort, 0, 100)}
	h.in("<SEQ=300><CTL=SYN><WND=10000><MSS=1000>", "<SEQ=100><ACK=301><CTL=SYN,ACK><WND=8000><MSS=1000>")
	h.in("<SEQ=301><CTL=RST><WND=0>")
	h.state(Closed)
}

// RST in CLOSE-WAIT resets; in LAST-ACK, CLOSING and TIME-WAIT it just
// ends the connection (RFC 9293 §3.10.7.4).
func TestCloseWaitRSTResets(t *testing.T) {
	h := established(t)
	h.in("<SEQ=301><ACK=101><CTL=FIN,ACK><WND=10000>", "<SEQ=101><ACK=302><CTL=ACK><WND=8000>")
	h.in("<SEQ=302><CTL=RST><WND=0>")
	h.state(Closed)
	if !errors.Is(h.c.Err(), syscall.ECONNRESET) {
		t.Fatalf("Err = %v", h.c.Err())
	}
}

func TestTimeWaitRSTEndsQuietly(t *testing.T) {
	h := established(t)
	h.out = h.c.Close(h.now, h.out[:0])
	h.in("<SEQ=301><ACK=102><CTL=FIN,ACK><WND=10000>", "<SEQ=102><ACK=302><CTL=ACK><WND=8000>")
	h.in("<SEQ=302><CTL=RST><WND=0>")
	h.state(Closed)
	if h.c.Err() != nil {
		t.Fatalf("Err = %v", h.c.Err())
	}
}

// A Conn that has ended answers like the CLOSED state.
func TestClosedConnAnswersWithReset(t *testing.T) {
	h := established(t)
	h.in("<SEQ=301><CTL=RST><WND=0>")
	h.in("<SEQ=301><ACK=101><CTL=ACK><WND=10000><DATA=5>", "<SEQ=101><CTL=RST><WND=0>")
}
