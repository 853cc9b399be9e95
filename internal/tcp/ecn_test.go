package tcp

import (
	"testing"
	"time"
)

// ECN (RFC 3168 §6.1) in literal segments. The harness's link would copy
// Segment.ECN to and from the IP header; here <ECN=...> shows it.

// establishedECN completes an ECN-setup handshake (§6.1.1): our SYN has
// ECE and CWR, the peer's SYN-ACK ECE alone.
func establishedECN(t *testing.T) *harness {
	t.Helper()
	cfg := testConfig()
	cfg.ECN = true
	h := &harness{t: t}
	h.c, h.out = Dial(0, &cfg, localPort, peerPort, 100, nil)
	h.check("SYN", h.out, []string{"<SEQ=100><CTL=SYN,ECE,CWR><WND=8000><MSS=1000>"})
	h.now = 10 * time.Millisecond
	h.in("<SEQ=300><ACK=101><CTL=SYN,ACK,ECE><WND=10000><MSS=1000>", "<SEQ=101><ACK=301><CTL=ACK><WND=8000>")
	if !h.c.ecnOK {
		t.Fatal("ECN not agreed")
	}
	return h
}

func TestECNNeedsBothSides(t *testing.T) {
	cfg := testConfig()
	cfg.ECN = true
	h := &harness{t: t}
	h.c, h.out = Dial(0, &cfg, localPort, peerPort, 100, nil)
	h.in("<SEQ=300><ACK=101><CTL=SYN,ACK><WND=10000><MSS=1000>", "<SEQ=101><ACK=301><CTL=ACK><WND=8000>")
	if h.c.ecnOK {
		t.Fatal("ECN agreed with a SYN-ACK without ECE")
	}
	// A passive open answers an ECN-setup SYN with ECE; without ECN
	// configured it answers plainly.
	p := &harness{t: t, c: NewListening(&cfg, localPort, 0, 100)}
	p.in("<SEQ=300><CTL=SYN,ECE,CWR><WND=10000><MSS=1000>", "<SEQ=100><ACK=301><CTL=SYN,ACK,ECE><WND=8000><MSS=1000>")
	plain := testConfig()
	q := &harness{t: t, c: NewListening(&plain, localPort, 0, 100)}
	q.in("<SEQ=300><CTL=SYN,ECE,CWR><WND=10000><MSS=1000>", "<SEQ=100><ACK=301><CTL=SYN,ACK><WND=8000><MSS=1000>")
}

// §6.1.2 and §6.1.5: new data is ECT(0); a retransmission is not.
func TestECNDataIsECTRetransmissionIsNot(t *testing.T) {
	h := establishedECN(t)
	h.write(1000, "<SEQ=101><ACK=301><CTL=PSH,ACK><WND=8000><ECN=ECT0><DATA=1000>")
	h.at(h.c.rtoAt, "<SEQ=101><ACK=301><CTL=PSH,ACK><WND=8000><DATA=1000>")
}

// §6.1.3: a CE mark on arriving data is echoed with ECE at once and on
// every ACK after, until a segment with CWR arrives.
func TestECNReceiverEchoesCEUntilCWR(t *testing.T) {
	h := establishedECN(t)
	s := parseSeg(t, "<SEQ=301><ACK=101><CTL=ACK><WND=10000><DATA=100>")
	s.ECN = ECNCE
	h.out = h.c.Input(h.now, &s, h.out[:0])
	h.check("CE data", h.out, []string{"<SEQ=101><ACK=401><CTL=ACK,ECE><WND=7900>"})
	h.in("<SEQ=401><ACK=101><CTL=ACK><WND=10000><DATA=1000>")
	h.in("<SEQ=1401><ACK=101><CTL=ACK><WND=10000><DATA=1000>", "<SEQ=101><ACK=2401><CTL=ACK,ECE><WND=5900>")
	h.in("<SEQ=2401><ACK=101><CTL=ACK,CWR><WND=10000><DATA=1000>")
	h.in("<SEQ=3401><ACK=101><CTL=ACK><WND=10000><DATA=1000>", "<SEQ=101><ACK=4401><CTL=ACK><WND=3900>")
	if st := h.c.Stats(); st.ECNCE != 1 {
		t.Fatalf("ECNCE %d, want 1", st.ECNCE)
	}
}

// §6.1.2: the sender answers ECE by reducing cwnd as for a loss, once per
// window, and sets CWR on its next new data segment.
func TestECNSenderReducesOncePerWindowAndSetsCWR(t *testing.T) {
	h := establishedECN(t)
	h.write(3000,
		"<SEQ=101><ACK=301><CTL=ACK><WND=8000><ECN=ECT0><DATA=1000>",
		"<SEQ=1101><ACK=301><CTL=ACK><WND=8000><ECN=ECT0><DATA=1000>",
		"<SEQ=2101><ACK=301><CTL=PSH,ACK><WND=8000><ECN=ECT0><DATA=1000>")
	before := h.c.CongestionWindow()
	h.in("<SEQ=301><ACK=1101><CTL=ACK,ECE><WND=10000>")
	after := h.c.CongestionWindow()
	if after >= before {
		t.Fatalf("cwnd %d after ECE, want below %d", after, before)
	}
	// A second echo for the same window changes nothing.
	h.in("<SEQ=301><ACK=2101><CTL=ACK,ECE><WND=10000>")
	if st := h.c.Stats(); st.ECNResponses != 1 || h.c.CongestionWindow() < after {
		t.Fatalf("ECN responses %d, cwnd %d; want 1 and no second cut below %d", st.ECNResponses, h.c.CongestionWindow(), after)
	}
	h.write(1000, "<SEQ=3101><ACK=301><CTL=PSH,ACK,CWR><WND=8000><ECN=ECT0><DATA=1000>")
}
