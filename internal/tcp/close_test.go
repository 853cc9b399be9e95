package tcp

import (
	"errors"
	"io"
	"syscall"
	"testing"
	"time"
)

// RFC 9293 §3.6, Figure 12: normal close, this side first, through
// FIN-WAIT-1, FIN-WAIT-2 and TIME-WAIT.
func TestActiveCloseThroughTimeWait(t *testing.T) {
	h := established(t)
	h.out = h.c.Close(h.now, h.out[:0])
	h.check("Close", h.out, []string{"<SEQ=101><ACK=301><CTL=FIN,ACK><WND=8000>"})
	h.state(FinWait1)
	h.in("<SEQ=301><ACK=102><CTL=ACK><WND=10000>")
	h.state(FinWait2)
	h.in("<SEQ=301><ACK=102><CTL=FIN,ACK><WND=10000>", "<SEQ=102><ACK=302><CTL=ACK><WND=8000>")
	h.state(TimeWait)
	if h.c.Deadline() != h.now+DefaultTimeWait {
		t.Fatalf("TIME-WAIT deadline %v, want %v", h.c.Deadline(), h.now+DefaultTimeWait)
	}
	h.at(h.now + DefaultTimeWait)
	h.state(Closed)
	if h.c.Err() != nil {
		t.Fatalf("Err = %v after a clean close", h.c.Err())
	}
}

// RFC 9293 §3.6: the passive side: CLOSE-WAIT, then LAST-ACK.
func TestPassiveCloseThroughLastAck(t *testing.T) {
	h := established(t)
	h.in("<SEQ=301><ACK=101><CTL=FIN,ACK><WND=10000>", "<SEQ=101><ACK=302><CTL=ACK><WND=8000>")
	h.state(CloseWait)
	if _, err := h.c.Read(make([]byte, 10)); err != io.EOF {
		t.Fatalf("Read after FIN = %v, want io.EOF", err)
	}
	h.out = h.c.Close(h.now, h.out[:0])
	h.check("Close", h.out, []string{"<SEQ=101><ACK=302><CTL=FIN,ACK><WND=8000>"})
	h.state(LastAck)
	h.in("<SEQ=302><ACK=102><CTL=ACK><WND=10000>")
	h.state(Closed)
	if h.c.Deadline() != 0 {
		t.Fatalf("deadline %v after LAST-ACK", h.c.Deadline())
	}
}

// RFC 9293 §3.6, Figure 13: simultaneous close through CLOSING.
func TestSimultaneousCloseThroughClosing(t *testing.T) {
	h := established(t)
	h.out = h.c.Close(h.now, h.out[:0])
	h.check("Close", h.out, []string{"<SEQ=101><ACK=301><CTL=FIN,ACK><WND=8000>"})
	h.in("<SEQ=301><ACK=101><CTL=FIN,ACK><WND=10000>", "<SEQ=102><ACK=302><CTL=ACK><WND=8000>")
	h.state(Closing)
	h.in("<SEQ=302><ACK=102><CTL=ACK><WND=10000>")
	h.state(TimeWait)
}

// A FIN that also acknowledges our FIN goes straight from FIN-WAIT-1 to
// TIME-WAIT.
func TestFinWait1FinAckingOurFinEntersTimeWait(t *testing.T) {
	h := established(t)
	h.out = h.c.Close(h.now, h.out[:0])
	h.in("<SEQ=301><ACK=102><CTL=FIN,ACK><WND=10000>", "<SEQ=102><ACK=302><CTL=ACK><WND=8000>")
	h.state(TimeWait)
}

// Half-close: after our FIN the peer may go on sending, and we read it.
func TestHalfCloseReceivesAfterOurFin(t *testing.T) {
	h := established(t)
	h.out = h.c.Close(h.now, h.out[:0])
	h.in("<SEQ=301><ACK=102><CTL=ACK><WND=10000>")
	h.state(FinWait2)
	h.in("<SEQ=301><ACK=102><CTL=ACK><WND=10000><DATA=1000>")
	h.in("<SEQ=1301><ACK=102><CTL=ACK><WND=10000><DATA=1000>", "<SEQ=102><ACK=2301><CTL=ACK><WND=6000>")
	h.readAll(301, 2000)
	if _, err := h.c.Write([]byte("x")); !errors.Is(err, syscall.EPIPE) {
		t.Fatalf("Write after Close = %v, want EPIPE", err)
	}
}

// Half-close the other way: in CLOSE-WAIT we may still send.
func TestHalfCloseSendsInCloseWait(t *testing.T) {
	h := established(t)
	h.in("<SEQ=301><ACK=101><CTL=FIN,ACK><WND=10000>", "<SEQ=101><ACK=302><CTL=ACK><WND=8000>")
	h.write(10, "<SEQ=101><ACK=302><CTL=PSH,ACK><WND=8000><DATA=10>")
	h.out = h.c.Close(h.now, h.out[:0])
	h.check("Close", h.out, []string{"<SEQ=111><ACK=302><CTL=FIN,ACK><WND=8000>"})
	h.in("<SEQ=302><ACK=112><CTL=ACK><WND=10000>")
	h.state(Closed)
}

// The FIN rides on the last data segment when both are queued.
func TestFinPiggybacksOnLastDataSegment(t *testing.T) {
	h := established(t)
	h.c.Write(make([]byte, 10))
	h.out = h.c.Close(h.now, h.out[:0])
	h.check("Close", h.out, []string{"<SEQ=101><ACK=301><CTL=FIN,PSH,ACK><WND=8000><DATA=10>"})
}

// A FIN ahead of a hole waits until the hole fills.
func TestOutOfOrderFinWaitsForTheHole(t *testing.T) {
	h := established(t)
	h.in("<SEQ=311><ACK=101><CTL=FIN,ACK><WND=10000><DATA=10>", "<SEQ=101><ACK=301><CTL=ACK><WND=8000>")
	h.state(Established)
	h.in("<SEQ=301><ACK=101><CTL=ACK><WND=10000><DATA=10>", "<SEQ=101><ACK=322><CTL=ACK><WND=7980>")
	h.state(CloseWait)
	h.readAll(301, 20)
}

// RFC 9293 §3.10.7.4: in TIME-WAIT a retransmitted FIN is ACKed and
// restarts the 2MSL timer.
func TestTimeWaitRetransmittedFinIsAckedAndRestartsTimer(t *testing.T) {
	h := established(t)
	h.out = h.c.Close(h.now, h.out[:0])
	h.in("<SEQ=301><ACK=102><CTL=FIN,ACK><WND=10000>", "<SEQ=102><ACK=302><CTL=ACK><WND=8000>")
	h.now += 30 * time.Second
	h.in("<SEQ=301><ACK=102><CTL=FIN,ACK><WND=10000>", "<SEQ=102><ACK=302><CTL=ACK><WND=8000>")
	if h.c.Deadline() != h.now+DefaultTimeWait {
		t.Fatalf("deadline %v, want %v", h.c.Deadline(), h.now+DefaultTimeWait)
	}
}

func TestTimeWaitDurationIsConfigurable(t *testing.T) {
	cfg := testConfig()
	cfg.TimeWait = 5 * time.Second
	h := dialed(t, cfg)
	h.in("<SEQ=300><ACK=101><CTL=SYN,ACK><WND=10000><MSS=1000>", "<SEQ=101><ACK=301><CTL=ACK><WND=8000>")
	h.out = h.c.Close(h.now, h.out[:0])
	h.in("<SEQ=301><ACK=102><CTL=FIN,ACK><WND=10000>", "<SEQ=102><ACK=302><CTL=ACK><WND=8000>")
	h.at(5 * time.Second)
	h.state(Closed)
}

// RFC 9293 §3.6.1 / RFC 1122 §4.2.2.13 without timestamps: a SYN may
// reopen a TIME-WAIT connection only with a sequence number beyond the
// old RCV.NXT.
func TestTimeWaitReuseBySequenceNumber(t *testing.T) {
	h := established(t)
	h.out = h.c.Close(h.now, h.out[:0])
	h.in("<SEQ=301><ACK=102><CTL=FIN,ACK><WND=10000>", "<SEQ=102><ACK=302><CTL=ACK><WND=8000>")
	old := parseSeg(t, "<SEQ=302><CTL=SYN><WND=1000>")
	newer := parseSeg(t, "<SEQ=90000><CTL=SYN><WND=1000>")
	if h.c.MayReuse(&old) {
		t.Fatal("MayReuse true for a SYN at the old RCV.NXT")
	}
	if !h.c.MayReuse(&newer) {
		t.Fatal("MayReuse false for a SYN beyond the old RCV.NXT")
	}
}

// Abort sends <SEQ=SND.NXT><CTL=RST> (RFC 9293 §3.10.5).
func TestAbortSendsReset(t *testing.T) {
	h := established(t)
	h.out = h.c.Abort(h.now, h.out[:0])
	h.check("Abort", h.out, []string{"<SEQ=101><CTL=RST><WND=0>"})
	h.state(Closed)
}

// Closing in SYN-SENT just deletes the TCB (RFC 9293 §3.10.4).
func TestCloseInSynSentEndsQuietly(t *testing.T) {
	h := dialed(t, testConfig())
	h.out = h.c.Close(h.now, h.out[:0])
	h.check("Close", h.out, nil)
	h.state(Closed)
}

// Close in SYN-RECEIVED: the FIN waits for ESTABLISHED, then goes.
func TestCloseInSynReceivedSendsFinAfterHandshake(t *testing.T) {
	cfg := testConfig()
	h := &harness{t: t, c: NewListening(&cfg, localPort, 0, 100)}
	h.in("<SEQ=300><CTL=SYN><WND=10000><MSS=1000>", "<SEQ=100><ACK=301><CTL=SYN,ACK><WND=8000><MSS=1000>")
	h.out = h.c.Close(h.now, h.out[:0])
	h.check("Close", h.out, nil)
	h.in("<SEQ=301><ACK=101><CTL=ACK><WND=10000>", "<SEQ=101><ACK=301><CTL=FIN,ACK><WND=8000>")
	h.state(FinWait1)
}

// A lost FIN is retransmitted by the timer.
func TestLostFinIsRetransmitted(t *testing.T) {
	h := established(t)
	h.out = h.c.Close(h.now, h.out[:0])
	h.at(h.now+200*time.Millisecond, "<SEQ=101><ACK=301><CTL=FIN,ACK><WND=8000>")
}

// FIN-WAIT-2 waits for the peer's FIN indefinitely (half-close) unless
// the stack sets FinWait2Timeout for an orphaned connection.
func TestFinWait2WaitsIndefinitelyByDefault(t *testing.T) {
	h := established(t)
	h.out = h.c.Close(h.now, h.out[:0])
	h.in("<SEQ=301><ACK=102><CTL=ACK><WND=10000>")
	h.state(FinWait2)
	if h.c.Deadline() != 0 {
		t.Fatalf("deadline %v in FIN-WAIT-2 without FinWait2Timeout", h.c.Deadline())
	}
}

func TestFinWait2TimeoutEndsOrphan(t *testing.T) {
	cfg := testConfig()
	cfg.FinWait2Timeout = 60 * time.Second
	h := dialed(t, cfg)
	h.in("<SEQ=300><ACK=101><CTL=SYN,ACK><WND=10000><MSS=1000>", "<SEQ=101><ACK=301><CTL=ACK><WND=8000>")
	h.out = h.c.Close(h.now, h.out[:0])
	h.in("<SEQ=301><ACK=102><CTL=ACK><WND=10000>")
	h.at(60 * time.Second)
	h.state(Closed)
}

// RFC 9293 §3.10.4: CLOSE in LISTEN deletes the TCB.
func TestCloseInListenEndsQuietly(t *testing.T) {
	cfg := testConfig()
	h := &harness{t: t, c: NewListening(&cfg, localPort, 0, 100)}
	h.out = h.c.Close(h.now, h.out[:0])
	h.check("Close", h.out, nil)
	h.state(Closed)
}

// RFC 9293 §3.10.7.4: a RST in LAST-ACK or CLOSING ends the connection
// without an error: the application already closed.
func TestLastAckRSTEndsQuietly(t *testing.T) {
	h := established(t)
	h.in("<SEQ=301><ACK=101><CTL=FIN,ACK><WND=10000>", "<SEQ=101><ACK=302><CTL=ACK><WND=8000>")
	h.out = h.c.Close(h.now, h.out[:0])
	h.state(LastAck)
	h.in("<SEQ=302><CTL=RST><WND=0>")
	h.state(Closed)
	if h.c.Err() != nil {
		t.Fatalf("Err = %v", h.c.Err())
	}
}

func TestClosingRSTEndsQuietly(t *testing.T) {
	h := established(t)
	h.out = h.c.Close(h.now, h.out[:0])
	h.in("<SEQ=301><ACK=101><CTL=FIN,ACK><WND=10000>", "<SEQ=102><ACK=302><CTL=ACK><WND=8000>")
	h.state(Closing)
	h.in("<SEQ=302><CTL=RST><WND=0>")
	h.state(Closed)
	if h.c.Err() != nil {
		t.Fatalf("Err = %v", h.c.Err())
	}
}
