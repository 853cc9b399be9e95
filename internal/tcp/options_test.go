package tcp

import (
	"errors"
	"syscall"
	"testing"
	"time"
)

// optConfig turns the RFC 7323 options on: a 1 MiB buffer ceiling makes
// our window-scale shift 5. Our TSval clock for ISS 100 reads 1810039517
// at t=0 (milliseconds plus the connection's offset).
func optConfig() Config {
	cfg := testConfig()
	cfg.NoTimestamps, cfg.NoWindowScale = false, false
	cfg.MaxRecvBuf = 1 << 20
	return cfg
}

func establishedWithOptions(t *testing.T) *harness {
	t.Helper()
	cfg := optConfig()
	h := &harness{t: t}
	h.c, h.out = Dial(0, &cfg, localPort, peerPort, 100, nil)
	h.check("SYN", h.out, []string{"<SEQ=100><CTL=SYN><WND=8000><MSS=1000><WS=5><TS=1810039517,0>"})
	h.now = 10 * time.Millisecond
	h.in("<SEQ=300><ACK=101><CTL=SYN,ACK><WND=10000><MSS=1000><WS=2><TS=5000,1810039517>",
		"<SEQ=101><ACK=301><CTL=ACK><WND=250><TS=1810039527,5000>")
	return h
}

// RFC 7323 §2: both sides offered window scaling, so windows after the
// SYN are shifted: ours by 5 (8000>>5 = 250), the peer's by 2.
func TestWindowScaleNegotiated(t *testing.T) {
	h := establishedWithOptions(t)
	h.in("<SEQ=301><ACK=101><CTL=ACK><WND=3000><TS=5001,1810039527>")
	if h.c.sndWnd != 12000 {
		t.Fatalf("SND.WND = %d, want 3000<<2 = 12000", h.c.sndWnd)
	}
}

// RFC 7323 §2.3: a shift above 14 is used as 14.
func TestWindowScaleAbove14IsClamped(t *testing.T) {
	cfg := optConfig()
	h := &harness{t: t}
	h.c, _ = Dial(0, &cfg, localPort, peerPort, 100, nil)
	h.in("<SEQ=300><ACK=101><CTL=SYN,ACK><WND=10000><MSS=1000><WS=20><TS=5000,1810039517>",
		"<SEQ=101><ACK=301><CTL=ACK><WND=250><TS=1810039517,5000>")
	if h.c.sndShift != 14 {
		t.Fatalf("send shift = %d, want 14", h.c.sndShift)
	}
}

// RFC 7323 §1.3: an option is used only if both SYNs carried it. A SYN
// without them gets a SYN-ACK without them and an unscaled window.
func TestPassiveOpenWithoutPeerOptionsUsesNone(t *testing.T) {
	cfg := optConfig()
	cfg.RecvBuf = 100000
	h := &harness{t: t, c: NewListening(&cfg, localPort, 0, 100)}
	h.in("<SEQ=300><CTL=SYN><WND=10000><MSS=1000>",
		"<SEQ=100><ACK=301><CTL=SYN,ACK><WND=65535><MSS=1000>")
	h.in("<SEQ=301><ACK=101><CTL=ACK><WND=10000>")
	h.write(10, "<SEQ=101><ACK=301><CTL=PSH,ACK><WND=65535><DATA=10>")
}

func TestPassiveOpenEchoesPeerOptions(t *testing.T) {
	cfg := optConfig()
	h := &harness{t: t, c: NewListening(&cfg, localPort, 0, 100)}
	h.in("<SEQ=300><CTL=SYN><WND=10000><MSS=1000><WS=0><TS=77,0>",
		"<SEQ=100><ACK=301><CTL=SYN,ACK><WND=8000><MSS=1000><WS=5><TS=1810039517,77>")
}

// RFC 6691: the timestamp option's 12 octets come out of the MSS.
func TestTimestampsShrinkSegmentPayload(t *testing.T) {
	h := establishedWithOptions(t)
	h.write(1000, "<SEQ=101><ACK=301><CTL=ACK><WND=250><TS=1810039527,5000><DATA=988>")
}

// RFC 7323 §5.3: PAWS. A segment whose TSval is older than TS.Recent is
// dropped and answered with an ACK.
func TestPAWSDropsOldTimestamp(t *testing.T) {
	h := establishedWithOptions(t)
	h.in("<SEQ=301><ACK=101><CTL=ACK><WND=3000><TS=4998,1810039527><DATA=10>",
		"<SEQ=101><ACK=301><CTL=ACK><WND=250><TS=1810039527,5000>")
	if h.c.Readable() != 0 || h.c.Stats().DropPAWS != 1 {
		t.Fatalf("Readable %d, DropPAWS %d; want 0, 1", h.c.Readable(), h.c.Stats().DropPAWS)
	}
}

// RFC 7323 §5.3 R1 uses modular comparison: a TSval that wrapped past 2^32
// is newer, not older.
func TestPAWSAcceptsTimestampWrappingPast2to32(t *testing.T) {
	cfg := optConfig()
	h := &harness{t: t}
	h.c, _ = Dial(0, &cfg, localPort, peerPort, 100, nil)
	h.in("<SEQ=300><ACK=101><CTL=SYN,ACK><WND=10000><MSS=1000><WS=2><TS=4294967295,1810039517>",
		"<SEQ=101><ACK=301><CTL=ACK><WND=250><TS=1810039517,4294967295>")
	h.in("<SEQ=301><ACK=101><CTL=ACK><WND=3000><TS=3,1810039517><DATA=10>")
	if h.c.Readable() != 10 {
		t.Fatalf("Readable = %d, want 10", h.c.Readable())
	}
}

// RFC 7323 §3.2: once negotiated, a non-RST segment without a timestamp is
// dropped; a RST without one is still processed.
func TestMissingTimestampIsDropped(t *testing.T) {
	h := establishedWithOptions(t)
	h.in("<SEQ=301><ACK=101><CTL=ACK><WND=3000><DATA=10>")
	if h.c.Readable() != 0 || h.c.Stats().DropNoTimestamp != 1 {
		t.Fatalf("Readable %d, DropNoTimestamp %d", h.c.Readable(), h.c.Stats().DropNoTimestamp)
	}
	h.in("<SEQ=301><CTL=RST><WND=0>")
	h.state(Closed)
}

// RFC 7323 §4.3: TS.Recent follows the newest in-sequence TSval, and our
// ACKs echo it.
func TestTimestampEchoFollowsTSRecent(t *testing.T) {
	h := establishedWithOptions(t)
	h.in("<SEQ=301><ACK=101><CTL=ACK><WND=3000><TS=6000,1810039527><DATA=1000>")
	h.in("<SEQ=1301><ACK=101><CTL=ACK><WND=3000><TS=6001,1810039527><DATA=1000>",
		"<SEQ=101><ACK=2301><CTL=ACK><WND=187><TS=1810039527,6000>")
}

// RFC 6191: a SYN may reuse a TIME-WAIT connection that used timestamps
// when its TSval is newer than TS.Recent, whatever its sequence number.
func TestTimeWaitReuseByTimestamp(t *testing.T) {
	h := establishedWithOptions(t)
	h.out = h.c.Close(h.now, h.out[:0])
	h.in("<SEQ=301><ACK=102><CTL=FIN,ACK><WND=3000><TS=5001,1810039527>",
		"<SEQ=102><ACK=302><CTL=ACK><WND=250><TS=1810039527,5001>")
	h.state(TimeWait)
	older := parseSeg(t, "<SEQ=1><CTL=SYN><WND=1000><TS=5000,0>")
	newer := parseSeg(t, "<SEQ=1><CTL=SYN><WND=1000><TS=5002,0>")
	if h.c.MayReuse(&older) {
		t.Fatal("MayReuse true for an older TSval")
	}
	if !h.c.MayReuse(&newer) {
		t.Fatal("MayReuse false for a newer TSval")
	}
}

// Whole connections whose sequence numbers wrap at 2^32, both directions
// (RFC 9293 §3.4: arithmetic is modulo 2^32).
func TestSequenceNumbersWrapAt2to32(t *testing.T) {
	cfg := testConfig()
	h := &harness{t: t}
	h.c, h.out = Dial(0, &cfg, localPort, peerPort, 4294967000, nil)
	h.check("SYN", h.out, []string{"<SEQ=4294967000><CTL=SYN><WND=8000><MSS=1000>"})
	h.in("<SEQ=4294966800><ACK=4294967001><CTL=SYN,ACK><WND=10000><MSS=1000>",
		"<SEQ=4294967001><ACK=4294966801><CTL=ACK><WND=8000>")
	h.write(2000,
		"<SEQ=4294967001><ACK=4294966801><CTL=ACK><WND=8000><DATA=1000>",
		"<SEQ=705><ACK=4294966801><CTL=PSH,ACK><WND=8000><DATA=1000>")
	h.in("<SEQ=4294966801><ACK=1705><CTL=ACK><WND=10000><DATA=1000>")
	h.in("<SEQ=505><ACK=1705><CTL=ACK><WND=10000><DATA=1000>",
		"<SEQ=1705><ACK=1505><CTL=ACK><WND=6000>")
	h.readAll(4294966801, 2000)
	if h.c.Deadline() != 0 {
		t.Fatalf("deadline %v with everything acknowledged", h.c.Deadline())
	}
	h.out = h.c.Close(h.now, h.out[:0])
	h.check("Close", h.out, []string{"<SEQ=1705><ACK=1505><CTL=FIN,ACK><WND=8000>"})
	h.in("<SEQ=1505><ACK=1706><CTL=FIN,ACK><WND=10000>", "<SEQ=1706><ACK=1506><CTL=ACK><WND=8000>")
	h.state(TimeWait)
}

// RFC 1122 §4.2.3.6: keepalive is off by default; when on, an idle
// connection is probed with <SEQ=SND.NXT-1> and fails after the probes go
// unanswered.
func TestKeepaliveProbesIdleConnectionThenTimesOut(t *testing.T) {
	cfg := testConfig()
	cfg.KeepAlive = 2 * time.Hour
	cfg.KeepAliveInterval = 75 * time.Second
	cfg.KeepAliveCount = 2
	h := dialed(t, cfg)
	h.in("<SEQ=300><ACK=101><CTL=SYN,ACK><WND=10000><MSS=1000>", "<SEQ=101><ACK=301><CTL=ACK><WND=8000>")
	h.at(2*time.Hour, "<SEQ=100><ACK=301><CTL=ACK><WND=8000>")
	// An answer resets the count and the idle timer.
	h.in("<SEQ=301><ACK=101><CTL=ACK><WND=10000>")
	h.at(2*time.Hour + 75*time.Second)
	h.at(4*time.Hour, "<SEQ=100><ACK=301><CTL=ACK><WND=8000>")
	h.at(4*time.Hour+75*time.Second, "<SEQ=100><ACK=301><CTL=ACK><WND=8000>")
	h.at(4*time.Hour + 150*time.Second)
	h.state(Closed)
	if !errors.Is(h.c.Err(), syscall.ETIMEDOUT) {
		t.Fatalf("Err = %v, want ETIMEDOUT", h.c.Err())
	}
}

func TestKeepaliveIsOffByDefault(t *testing.T) {
	h := established(t)
	if h.c.Deadline() != 0 {
		t.Fatalf("deadline %v on an idle connection without keepalive", h.c.Deadline())
	}
}

// RFC 7323 §4: after a retransmission Karn's rule leaves no timed
// segment, but the echoed timestamp still measures the round trip (50 ms
// here) and ends the backed-off RTO.
func TestTimestampRTTMeasuresAfterRetransmission(t *testing.T) {
	h := establishedWithOptions(t) // SRTT 10 ms from the handshake
	h.write(100, "<SEQ=101><ACK=301><CTL=PSH,ACK><WND=250><TS=1810039527,5000><DATA=100>")
	h.at(210*time.Millisecond, "<SEQ=101><ACK=301><CTL=PSH,ACK><WND=250><TS=1810039727,5000><DATA=100>")
	h.now = 260 * time.Millisecond
	h.in("<SEQ=301><ACK=201><CTL=ACK><WND=3000><TS=5001,1810039727>")
	// SRTT = 7/8·10 + 1/8·50 = 15 ms.
	if h.c.RTT() != 15*time.Millisecond {
		t.Fatalf("SRTT = %v, want 15ms", h.c.RTT())
	}
}

// One tick of PAWS slack (as Linux): data reordered behind a pure ACK
// from the next millisecond is not an old duplicate.
func TestPAWSAllowsOneTickOfReordering(t *testing.T) {
	h := establishedWithOptions(t)
	h.in("<SEQ=301><ACK=101><CTL=ACK><WND=3000><TS=4999,1810039527><DATA=10>")
	if h.c.Readable() != 10 {
		t.Fatalf("Readable = %d, want 10", h.c.Readable())
	}
}
