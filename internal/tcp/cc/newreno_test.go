package cc

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// The tests use SMSS = 1000 bytes so that windows read as segment counts.
const smss = 1000

// event is one step of a scenario: something happens to the controller,
// then cwnd and ssthresh must have the literal values given.
type event struct {
	what         string
	do           func(r *NewReno)
	cwnd, ssthre int
}

const inf = InfiniteSSThresh

func ack(n int) func(*NewReno) {
	return func(r *NewReno) { r.OnAck(&AckEvent{Acked: n}) }
}
func ackInRecovery(n int) func(*NewReno) {
	return func(r *NewReno) { r.OnAck(&AckEvent{Acked: n, InRecovery: true}) }
}
func ackAppLimited(n int) func(*NewReno) {
	return func(r *NewReno) { r.OnAck(&AckEvent{Acked: n, AppLimited: true}) }
}
func congestion(flight int) func(*NewReno) {
	return func(r *NewReno) { r.OnCongestion(0, flight, false) }
}
func ecnEcho(flight int) func(*NewReno) {
	return func(r *NewReno) { r.OnCongestion(0, flight, true) }
}
func recoveryEnd() func(*NewReno) { return func(r *NewReno) { r.OnRecoveryEnd(0) } }
func rto(flight int) func(*NewReno) {
	return func(r *NewReno) { r.OnRTO(0, flight) }
}
func undo() func(*NewReno) { return func(r *NewReno) { r.Undo(0) } }

// run starts a NewReno with SMSS 1000 (IW10 = 10000 bytes) and plays the
// events, checking the window after each.
func run(t *testing.T, cfg Config, events []event) {
	t.Helper()
	r, err := NewNewReno(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r.Init(0, smss)
	for i, e := range events {
		e.do(r)
		if r.CWnd() != e.cwnd || r.SSThresh() != e.ssthre {
			t.Fatalf("step %d (%s): cwnd %d ssthresh %d, want cwnd %d ssthresh %d",
				i+1, e.what, r.CWnd(), r.SSThresh(), e.cwnd, e.ssthre)
		}
	}
}

func TestNewRenoInitialWindowIsIW10(t *testing.T) {
	for _, tc := range []struct{ mss, want int }{
		{536, 5360},        // 10 segments
		{1000, 10000},      // 10 segments
		{1460, 14600},      // 10 segments, the cap exactly
		{1500, 14600},      // capped at 14600 (9.7 segments)
		{8960, 17920},      // jumbo: 2 segments, max(2*SMSS, 14600)
		{65483, 130966},    // fabric: 2 segments
		{0, 5360},          // invalid MSS: RFC 9293's default 536
		{-1, 5360},         // likewise
		{1 << 20, 2 << 20}, // absurd MSS: still 2 segments, no overflow
	} {
		r := new(NewReno)
		r.Init(0, tc.mss)
		if r.CWnd() != tc.want || r.SSThresh() != inf {
			t.Errorf("MSS %d: IW %d ssthresh %d, want %d and %d", tc.mss, r.CWnd(), r.SSThresh(), tc.want, inf)
		}
	}
}

func TestNewRenoInitialWindowConfigurable(t *testing.T) {
	for _, tc := range []struct{ iw, mss, want int }{
		{1, 1460, 1460},
		{3, 1460, 4380}, // RFC 5681 §3.1 for 1095 < SMSS <= 2190
		{4, 1000, 4000},
		{64, 65483, 64 * 65483},
	} {
		r, err := NewNewReno(Config{InitialWindow: tc.iw})
		if err != nil {
			t.Fatal(err)
		}
		r.Init(0, tc.mss)
		if r.CWnd() != tc.want {
			t.Errorf("InitialWindow %d, MSS %d: cwnd %d, want %d", tc.iw, tc.mss, r.CWnd(), tc.want)
		}
	}
}

func TestNewRenoRejectsNegativeInitialWindow(t *testing.T) {
	if _, err := NewNewReno(Config{InitialWindow: -1}); err == nil {
		t.Fatal("NewNewReno accepted InitialWindow -1")
	}
	if _, err := New("newreno", Config{InitialWindow: -1}); err == nil {
		t.Fatal(`New("newreno") accepted InitialWindow -1`)
	}
}

// RFC 5681 §3.1 eq. 2 with RFC 3465 L = 2: each ACK grows cwnd by the
// bytes it acknowledged, at most 2*SMSS.
func TestNewRenoSlowStartAppropriateByteCounting(t *testing.T) {
	run(t, Config{}, []event{
		{"ACK of 1 segment", ack(1000), 11000, inf},
		{"delayed ACK of 2 segments", ack(2000), 13000, inf},
		{"stretch ACK of 5 segments: L caps growth at 2*SMSS", ack(5000), 15000, inf},
		{"ACK of 100 bytes", ack(100), 15100, inf},
		{"ACK of nothing new", ack(0), 15100, inf},
	})
}

// RFC 5681 §3.1: congestion avoidance adds one SMSS each time a full
// cwnd's worth of bytes has been acknowledged (one segment per RTT).
func TestNewRenoCongestionAvoidanceOneSegmentPerWindow(t *testing.T) {
	run(t, Config{}, []event{
		{"loss with 10 segments in flight", congestion(10000), 5000, 5000},
		{"ACK 1/5", ack(1000), 5000, 5000},
		{"ACK 2/5", ack(1000), 5000, 5000},
		{"ACK 3/5", ack(1000), 5000, 5000},
		{"ACK 4/5", ack(1000), 5000, 5000},
		{"ACK 5/5: a window acknowledged", ack(1000), 6000, 5000},
		{"3000 of the next 6000", ack(3000), 6000, 5000},
		{"6000 of 6000", ack(3000), 7000, 5000},
		{"stretch ACK of 7000: one segment, not more", ack(7000), 8000, 5000},
	})
}

// Slow start stops at ssthresh; the rest of the ACK counts towards
// congestion avoidance.
func TestNewRenoSlowStartEndsAtSSThresh(t *testing.T) {
	run(t, Config{}, []event{
		{"RTO with 9 segments in flight", rto(9000), 1000, 4500},
		{"ACK 2 segments", ack(2000), 3000, 4500},
		{"ACK 2 segments: capped at ssthresh, 500 bytes to CA", ack(2000), 4500, 4500},
		{"ACK 3000: CA counter reaches 3500 < 4500", ack(3000), 4500, 4500},
		{"ACK 1000: counter 4500 = cwnd", ack(1000), 5500, 4500},
	})
}

// RFC 5681 §3.2 eq. 4 on entering fast recovery, with no inflation
// (pipe-based recovery): cwnd = ssthresh = max(FlightSize/2, 2*SMSS), and
// no growth until recovery ends (RFC 6582).
func TestNewRenoFastRecoveryHalvesWithoutInflation(t *testing.T) {
	run(t, Config{}, []event{
		{"slow start to 20 segments", func(r *NewReno) {
			for range 5 {
				r.OnAck(&AckEvent{Acked: 2000})
			}
		}, 20000, inf},
		{"third duplicate ACK, 20 segments in flight", congestion(20000), 10000, 10000},
		{"partial ACK during recovery: no growth", ackInRecovery(3000), 10000, 10000},
		{"SACK of 8 segments during recovery: no growth", ackInRecovery(8000), 10000, 10000},
		{"full ACK ends recovery", recoveryEnd(), 10000, 10000},
		{"first ACK after recovery: CA", ack(10000), 11000, 10000},
	})
}

func TestNewRenoCongestionFloorIsTwoSegments(t *testing.T) {
	run(t, Config{}, []event{
		{"loss with 3 segments in flight", congestion(3000), 2000, 2000},
		{"loss with nothing in flight", congestion(0), 2000, 2000},
	})
}

// RFC 3168 §6.1.2: an ECN echo is treated like a loss.
func TestNewRenoECNEchoHalvesLikeLoss(t *testing.T) {
	run(t, Config{}, []event{
		{"ECN echo with 10 segments in flight", ecnEcho(10000), 5000, 5000},
	})
}

// RFC 7661: an application-limited ACK says nothing about a larger window.
func TestNewRenoNoGrowthWhenAppLimited(t *testing.T) {
	run(t, Config{}, []event{
		{"app-limited ACK in slow start", ackAppLimited(2000), 10000, inf},
		{"loss", congestion(10000), 5000, 5000},
		{"app-limited ACK in CA", ackAppLimited(5000), 5000, 5000},
	})
}

// RFC 5681 §3.1: on a timeout ssthresh = max(FlightSize/2, 2*SMSS) and
// cwnd = LW = 1 SMSS; a repeated timeout of the same segment holds
// ssthresh; after new data is acknowledged a timeout halves again.
func TestNewRenoRTOCollapsesToLossWindow(t *testing.T) {
	run(t, Config{}, []event{
		{"RTO with 16 segments in flight", rto(16000), 1000, 8000},
		{"same segment times out again (1 in flight)", rto(1000), 1000, 8000},
		{"and again", rto(1000), 1000, 8000},
		{"ACK of the retransmission: slow start", ack(1000), 2000, 8000},
		{"new timeout with 4 segments in flight", rto(4000), 1000, 2000},
	})
}

func TestNewRenoRTODuringRecovery(t *testing.T) {
	run(t, Config{}, []event{
		{"loss with 20 segments in flight", congestion(20000), 10000, 10000},
		{"RTO in recovery with 10 in flight", rto(10000), 1000, 5000},
	})
}

// Undo (RFC 2883 DSACK, RFC 5682 F-RTO, RFC 8985) restores the window of
// before the spurious event, once.
func TestNewRenoUndoAfterSpuriousFastRetransmit(t *testing.T) {
	run(t, Config{}, []event{
		{"slow start to 12 segments", ack(2000), 12000, inf},
		{"loss with 12 in flight", congestion(12000), 6000, 6000},
		{"recovery ends", recoveryEnd(), 6000, 6000},
		{"DSACK proves it spurious", undo(), 12000, inf},
		{"second undo does nothing", undo(), 12000, inf},
	})
}

func TestNewRenoUndoAfterSpuriousRTORestoresPreTimeoutWindow(t *testing.T) {
	run(t, Config{}, []event{
		{"loss", congestion(16000), 8000, 8000},
		{"CA growth", ack(8000), 9000, 8000},
		{"RTO", rto(9000), 1000, 4500},
		{"repeated RTO", rto(1000), 1000, 4500},
		{"spurious: undo to before the first RTO", undo(), 9000, 8000},
	})
}

func TestNewRenoUndoRestoresPreTimeoutWindowAfterRegrowth(t *testing.T) {
	run(t, Config{}, []event{
		{"RTO with 4 in flight", rto(4000), 1000, 2000},
		{"slow start", ack(1000), 2000, 2000},
		{"CA", ack(2000), 3000, 2000},
		{"undo: back to IW and infinite ssthresh", undo(), 10000, inf},
	})
}

func TestNewRenoUndoKeepsLargerCurrentWindow(t *testing.T) {
	run(t, Config{}, []event{
		{"loss with 20 in flight", congestion(20000), 10000, 10000},
		{"CA grows past the pre-loss 10000", ack(10000), 11000, 10000},
		{"undo keeps 11000, restores ssthresh", undo(), 11000, inf},
	})
}

func TestNewRenoUndoWithoutEventDoesNothing(t *testing.T) {
	run(t, Config{}, []event{
		{"undo before any congestion", undo(), 10000, inf},
	})
}

func TestNewRenoSetMSS(t *testing.T) {
	run(t, Config{}, []event{
		{"loss", congestion(10000), 5000, 5000},
		{"MSS drops to 500: same bytes", func(r *NewReno) { r.SetMSS(500) }, 5000, 5000},
		{"CA now grows by 500", ack(5000), 5500, 5000},
		{"MSS rises to 4000: ssthresh floor 2*SMSS", func(r *NewReno) { r.SetMSS(4000) }, 5500, 8000},
		{"RTO: LW is the new SMSS", rto(2000), 4000, 8000},
		{"invalid MSS: 536", func(r *NewReno) { r.SetMSS(0) }, 4000, 8000},
	})
}

func TestNewRenoWindowNeverOverflows(t *testing.T) {
	r := new(NewReno)
	r.Init(0, 1<<20)
	for range 5000 {
		r.OnAck(&AckEvent{Acked: 1 << 30})
	}
	if r.CWnd() > InfiniteSSThresh || r.CWnd() <= 0 {
		t.Fatalf("cwnd %d after huge ACKs, want in (0, %d]", r.CWnd(), InfiniteSSThresh)
	}
}

func TestNewRenoIdentity(t *testing.T) {
	r := new(NewReno)
	if r.Name() != "newreno" || r.PacingRate() != 0 {
		t.Fatalf("Name %q PacingRate %d, want \"newreno\" and 0", r.Name(), r.PacingRate())
	}
}

func TestNewReturnsFreshControllers(t *testing.T) {
	a, err := New("newreno", Config{})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := New("newreno", Config{})
	a.Init(0, 1000)
	b.Init(0, 1000)
	a.OnCongestion(0, 10000, false)
	if a.Name() != "newreno" || b.CWnd() != 10000 {
		t.Fatalf("controllers share state: a cwnd %d, b cwnd %d (want b untouched at 10000)", a.CWnd(), b.CWnd())
	}
}

func TestNewRejectsUnknownName(t *testing.T) {
	for _, name := range []string{"cubic2", "NewReno", "bbr"} {
		c, err := New(name, Config{})
		if err == nil || c != nil {
			t.Errorf("New(%q) = %v, %v; want nil and an error", name, c, err)
			continue
		}
		if !strings.Contains(err.Error(), "newreno") {
			t.Errorf("New(%q) error %q does not list the known names", name, err)
		}
	}
}

func TestNamesListsNewReno(t *testing.T) {
	if got := Names(); !slices.Contains(got, "newreno") {
		t.Fatalf("Names() = %v, want it to include newreno", got)
	}
}

func BenchmarkNewRenoOnAck(b *testing.B) {
	b.ReportAllocs()
	var c Controller = new(NewReno)
	c.Init(0, 1460)
	c.OnCongestion(0, 1<<20, false)
	ev := &AckEvent{Acked: 1460, RTT: time.Millisecond}
	for b.Loop() {
		c.OnAck(ev)
	}
}
