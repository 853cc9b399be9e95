package cc

import (
	"math"
	"slices"
	"testing"
	"time"
)

// CUBIC tests use SMSS = 1000 bytes (smss), so that windows read as
// segment counts, the unit of RFC 9438's formulas.

func newCubic(t *testing.T, cfg Config) *Cubic {
	t.Helper()
	c, err := NewCubic(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.Init(0, smss)
	return c
}

// growTo acknowledges single segments in slow start (no RTT samples, so
// HyStart++ sees nothing) until cwnd reaches segs segments.
func growTo(t *testing.T, c *Cubic, segs int) {
	t.Helper()
	for i := 0; c.CWnd() < segs*smss; i++ {
		if i > 100000 {
			t.Fatalf("cwnd stuck at %d", c.CWnd())
		}
		c.OnAck(&AckEvent{Acked: smss, InFlight: c.CWnd()})
	}
	if c.CWnd() != segs*smss {
		t.Fatalf("slow start overshot: cwnd %d, want %d", c.CWnd(), segs*smss)
	}
}

// ackClock plays a steady path from `from` until `until`: each round trip
// every segment of the window is acknowledged by its own ACK, the ACKs
// evenly spread over the RTT, each carrying an RTT sample. It returns the
// time of the last ACK.
func ackClock(c *Cubic, from, until, rtt time.Duration) time.Duration {
	now := from
	for now < until {
		n := max(c.CWnd()/smss, 1)
		step := rtt / time.Duration(n)
		for i := 0; i < n && now < until; i++ {
			now += step
			c.OnAck(&AckEvent{Now: now, Acked: smss, RTT: rtt, InFlight: c.CWnd()})
		}
	}
	return now
}

func near(got, want, tol float64) bool { return math.Abs(got-want) <= tol }

func TestCubicIsTheDefault(t *testing.T) {
	c, err := New("", Config{})
	if err != nil || c.Name() != "cubic" || DefaultName != "cubic" {
		t.Fatalf(`New("") = %v, %v; want a cubic controller`, c, err)
	}
	if got := Names(); !slices.Equal(got, []string{"cubic", "newreno"}) {
		t.Fatalf("Names() = %v, want [cubic newreno]", got)
	}
	if _, err := NewCubic(Config{InitialWindow: -1}); err == nil {
		t.Fatal("NewCubic accepted InitialWindow -1")
	}
}

func TestCubicInitialWindowIsIW10(t *testing.T) {
	c := newCubic(t, Config{})
	if c.CWnd() != 10000 || c.SSThresh() != inf {
		t.Fatalf("cwnd %d ssthresh %d, want 10000 and infinite", c.CWnd(), c.SSThresh())
	}
}

// RFC 9438 §4.6 (Figure 5): ssthresh = flight_size * β_cubic, cwnd =
// max(ssthresh, 2) on loss; §4.7: the first event sets W_max = cwnd.
// §4.2 (Figure 2): K = cubic_root((W_max - cwnd_epoch)/C), which for
// W_max = 100 and cwnd_epoch = 70 is cbrt(75) = 4.2171633 s.
func TestCubicLossSetsWMaxAndK(t *testing.T) {
	c := newCubic(t, Config{})
	growTo(t, c, 100)
	c.OnCongestion(time.Second, 100000, false)
	if c.CWnd() != 70000 || c.SSThresh() != 70000 {
		t.Fatalf("after loss with 100 segments in flight: cwnd %d ssthresh %d, want 70000 and 70000", c.CWnd(), c.SSThresh())
	}
	if c.wMax != 100 || c.cwndPrior != 100 {
		t.Fatalf("W_max %v cwnd_prior %v, want 100 and 100", c.wMax, c.cwndPrior)
	}
	c.OnRecoveryEnd(2 * time.Second)
	c.OnAck(&AckEvent{Now: 2 * time.Second, Acked: smss, InFlight: 70000})
	if c.tEpoch != 2*time.Second || c.cwndEpoch != 70 || !near(c.k, 4.2171633, 1e-7) {
		t.Fatalf("epoch: t_epoch %v cwnd_epoch %v K %v, want 2s, 70, 4.2171633", c.tEpoch, c.cwndEpoch, c.k)
	}
}

// RFC 9438 Figure 1, W_cubic(t) = C*(t-K)^3 + W_max, checked at chosen t
// for W_max = 100, cwnd_epoch = 70 (values worked out by hand from
// K = cbrt(75)); then the window of a flow ACK-clocked over a 100 ms path
// must follow the curve: it grows each RTT to W_cubic(t+RTT), so at t it
// is within a segment of W_cubic(t).
func TestCubicWindowFollowsWCubic(t *testing.T) {
	c := newCubic(t, Config{})
	growTo(t, c, 100)
	c.OnCongestion(0, 100000, false)
	c.OnRecoveryEnd(0)
	const rtt = 100 * time.Millisecond
	// The first ACK starts the epoch.
	c.OnAck(&AckEvent{Now: time.Second, Acked: smss, RTT: rtt, InFlight: 70000})
	epoch := time.Second
	for _, p := range []struct {
		t, w float64
	}{
		{0, 70},             // cwnd_epoch
		{1, 86.68076384},    // concave region
		{2, 95.64033569},    //
		{3, 99.27871555},    // approaching the plateau
		{4.217163327, 100},  // t = K: W_max
		{5, 100.19189934},   // convex region
		{6, 102.26670326},   //
		{10, 177.35399909},  // probing well beyond W_max
		{12, 288.57049510},  //
		{20, 1672.58879981}, //
	} {
		if got := c.wCubic(p.t); !near(got, p.w, 1e-6) {
			t.Errorf("W_cubic(%v) = %.8f, want %.8f", p.t, got, p.w)
		}
	}
	now := epoch
	for _, p := range []struct {
		t   time.Duration
		tol float64 // segments: the curve's rise over one RTT at t
	}{
		{1 * time.Second, 1.5},
		{2 * time.Second, 1},
		{3 * time.Second, 1},
		{5 * time.Second, 1},
		{6 * time.Second, 1},
		{10 * time.Second, 3},
	} {
		now = ackClock(c, now, epoch+p.t, rtt)
		want := c.wCubic(p.t.Seconds())
		if got := float64(c.CWnd()) / smss; !near(got, want, p.tol) {
			t.Errorf("t=%v: cwnd %.2f segments, want W_cubic(t) = %.2f ± %v", p.t, got, want, p.tol)
		}
	}
}

// RFC 9438 §4.3: on a short path Reno's AIMD would beat the curve, so
// cwnd follows W_est, which grows by α_cubic = 3(1-β)/(1+β) = 0.529
// segments per RTT from cwnd_epoch, and by one segment per RTT (α = 1)
// once it reaches cwnd_prior.
func TestCubicRenoFriendlyRegionOnShortRTT(t *testing.T) {
	c := newCubic(t, Config{})
	growTo(t, c, 100)
	c.OnCongestion(0, 100000, false)
	c.OnRecoveryEnd(0)
	const rtt = time.Millisecond
	c.OnAck(&AckEvent{Now: time.Second, Acked: smss, RTT: rtt, InFlight: 70000})
	now := ackClock(c, time.Second, time.Second+10*rtt, rtt)
	// Ten round trips: 70 + 10 × 0.529 ≈ 75.3 segments, while
	// W_cubic(0.01 s) is still 70.2.
	if got := float64(c.CWnd()) / smss; !near(got, 75.3, 0.3) {
		t.Fatalf("after 10 RTTs: cwnd %.2f segments, want W_est ≈ 75.3", got)
	}
	if w := c.wCubic(0.01); w > 70.3 {
		t.Fatalf("W_cubic(0.01) = %v: the test path is not in the Reno-friendly region", w)
	}
	if c.alpha != cubicAlpha {
		t.Fatalf("α_cubic %v before W_est reaches cwnd_prior, want %v", c.alpha, cubicAlpha)
	}
	// W_est reaches cwnd_prior = 100 after about 57 RTTs.
	now = ackClock(c, now, now+70*rtt, rtt)
	if c.alpha != 1 {
		t.Fatalf("α_cubic %v after W_est %.1f passed cwnd_prior 100, want 1", c.alpha, c.wEst)
	}
	before := float64(c.CWnd()) / smss
	ackClock(c, now, now+10*rtt, rtt)
	if grew := float64(c.CWnd())/smss - before; !near(grew, 10, 0.5) {
		t.Fatalf("with α = 1: grew %.2f segments in 10 RTTs, want 10 (Reno's one per RTT)", grew)
	}
}

// RFC 9438 §4.2: the target is at most 1.5*cwnd, however far the curve
// has run ahead, so one ACK of one segment adds at most half a segment.
func TestCubicTargetCappedAtOneAndAHalfCwnd(t *testing.T) {
	c := newCubic(t, Config{})
	growTo(t, c, 100)
	c.OnCongestion(0, 100000, false)
	c.OnRecoveryEnd(0)
	// t = 0: W_cubic(0) = 70 is below W_est = 70 + 0.529/70, so the
	// Reno-friendly rule sets cwnd = W_est = 70007.56 bytes.
	c.OnAck(&AckEvent{Now: time.Second, Acked: smss, RTT: 100 * time.Millisecond, InFlight: 70000})
	if c.CWnd() != 70007 {
		t.Fatalf("first ACK of the epoch: cwnd %d, want 70007 (W_est)", c.CWnd())
	}
	// t = 100 s: W_cubic(t+RTT) is astronomically high; the target is
	// 1.5 × 70.007 and the ACK adds (target-cwnd)/cwnd = 0.5 segment.
	c.OnAck(&AckEvent{Now: 101 * time.Second, Acked: smss, RTT: 100 * time.Millisecond, InFlight: 70000})
	if c.CWnd() != 70507 {
		t.Fatalf("ACK 100 s into the epoch: cwnd %d, want 70507 (+ half a segment)", c.CWnd())
	}
}

// RFC 9438 §4.7: a loss below the previous W_max lowers the plateau to
// cwnd*(1+β)/2, releasing bandwidth to newer flows; without fast
// convergence W_max is simply cwnd.
func TestCubicFastConvergence(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cfg     Config
		wantMax float64
	}{
		{"enabled", Config{}, 90 * 1.7 / 2}, // 76.5
		{"disabled", Config{NoFastConvergence: true}, 90},
	} {
		c := newCubic(t, tc.cfg)
		growTo(t, c, 100)
		c.OnCongestion(0, 100000, false) // W_max = 100, cwnd 70
		c.OnRecoveryEnd(0)
		for c.CWnd() < 90000 {
			c.OnAck(&AckEvent{Now: time.Second, Acked: smss, InFlight: c.CWnd()})
		}
		c.cwnd = 90000 // exactly 90 segments when the second loss comes
		c.OnCongestion(2*time.Second, 90000, false)
		if !near(c.wMax, tc.wantMax, 1e-9) || c.cwndPrior != 90 || c.CWnd() != 63000 || c.SSThresh() != 63000 {
			t.Errorf("%s: W_max %v cwnd_prior %v cwnd %d ssthresh %d, want W_max %v, 90, 63000, 63000",
				tc.name, c.wMax, c.cwndPrior, c.CWnd(), c.SSThresh(), tc.wantMax)
		}
	}
}

// RFC 9438 Figure 5's floors: cwnd >= 2 SMSS after a loss, >= 1 SMSS after
// an ECN echo, ssthresh >= 2 SMSS either way.
func TestCubicReductionFloors(t *testing.T) {
	for _, tc := range []struct {
		name           string
		flight         int
		ecn            bool
		cwnd, ssthresh int
	}{
		{"loss, 10 in flight", 10000, false, 7000, 7000},
		{"loss, 2 in flight", 2000, false, 2000, 2000},
		{"ECN, 1 in flight", 1000, true, 1000, 2000},
		{"ECN, 10 in flight", 10000, true, 7000, 7000},
	} {
		c := newCubic(t, Config{})
		c.OnCongestion(0, tc.flight, tc.ecn)
		if c.CWnd() != tc.cwnd || c.SSThresh() != tc.ssthresh {
			t.Errorf("%s: cwnd %d ssthresh %d, want %d and %d", tc.name, c.CWnd(), c.SSThresh(), tc.cwnd, tc.ssthresh)
		}
	}
}

func TestCubicNoGrowthInRecoveryOrWhenAppLimited(t *testing.T) {
	c := newCubic(t, Config{})
	c.OnAck(&AckEvent{Acked: 2000, InRecovery: true})
	c.OnAck(&AckEvent{Acked: 2000, AppLimited: true})
	if c.CWnd() != 10000 {
		t.Fatalf("cwnd %d after recovery and app-limited ACKs, want 10000", c.CWnd())
	}
}

// RFC 9438 §5.8: time spent application-limited does not count towards
// t, so the window does not leap when the application resumes.
func TestCubicAppLimitedTimeDoesNotAdvanceTheCurve(t *testing.T) {
	c := newCubic(t, Config{})
	growTo(t, c, 100)
	c.OnCongestion(0, 100000, false)
	c.OnRecoveryEnd(0)
	c.OnAck(&AckEvent{Now: time.Second, Acked: smss, InFlight: 70000})
	c.OnAck(&AckEvent{Now: 2 * time.Second, Acked: smss, AppLimited: true})
	c.OnAck(&AckEvent{Now: 12 * time.Second, Acked: smss, InFlight: 70000})
	if c.tEpoch != 11*time.Second {
		t.Fatalf("t_epoch %v after 10 s application-limited, want 11s", c.tEpoch)
	}
}

// RFC 9438 §4.8: a timeout is Reno's (cwnd = 1 SMSS) with ssthresh from
// β_cubic; a repeated timeout holds ssthresh; the next stage of
// congestion avoidance starts at its plateau, W_max = cwnd_epoch, K = 0.
func TestCubicRTO(t *testing.T) {
	c := newCubic(t, Config{})
	growTo(t, c, 20)
	c.OnRTO(0, 20000)
	if c.CWnd() != 1000 || c.SSThresh() != 14000 {
		t.Fatalf("RTO with 20 in flight: cwnd %d ssthresh %d, want 1000 and 14000", c.CWnd(), c.SSThresh())
	}
	c.OnRTO(0, 1000)
	if c.CWnd() != 1000 || c.SSThresh() != 14000 {
		t.Fatalf("repeated RTO: cwnd %d ssthresh %d, want 1000 and 14000 (held)", c.CWnd(), c.SSThresh())
	}
	for c.CWnd() < 14000 {
		c.OnAck(&AckEvent{Now: time.Second, Acked: smss, InFlight: c.CWnd()})
	}
	c.OnAck(&AckEvent{Now: 2 * time.Second, Acked: smss, InFlight: c.CWnd()})
	if c.cwndEpoch != 14 || c.wMax != 14 || c.k != 0 || c.wEst < 14 {
		t.Fatalf("stage after RTO: cwnd_epoch %v W_max %v K %v W_est %v, want 14, 14, 0, >= 14",
			c.cwndEpoch, c.wMax, c.k, c.wEst)
	}
	if c.hs.phase != ssOff {
		t.Fatal("HyStart++ still armed after a timeout; RFC 9406 §4.3 keeps it to the first slow start")
	}
}

// RFC 9438 §4.9: a congestion event later shown spurious (DSACK, RACK,
// F-RTO) is undone: cwnd, ssthresh, W_max, K and the epoch come back.
func TestCubicUndoRestoresTheCurve(t *testing.T) {
	c := newCubic(t, Config{})
	growTo(t, c, 100)
	c.OnCongestion(0, 100000, false)
	c.OnRecoveryEnd(0)
	c.OnAck(&AckEvent{Now: time.Second, Acked: smss, InFlight: 70000})
	k, wMax, epoch, cwnd := c.k, c.wMax, c.tEpoch, c.CWnd()
	// A second, spurious, event at 80 segments: fast convergence would
	// lower W_max to 80 × 0.85 = 68.
	c.cwnd = 80000
	c.OnCongestion(2*time.Second, 80000, false)
	if !near(c.wMax, 68, 1e-9) {
		t.Fatalf("W_max %v after the second event, want 68", c.wMax)
	}
	c.Undo(3 * time.Second)
	if c.CWnd() != 80000 || c.SSThresh() != 70000 || c.wMax != wMax || c.k != k || c.tEpoch != epoch || !c.epoch {
		t.Fatalf("after undo: cwnd %d ssthresh %d W_max %v K %v t_epoch %v, want 80000, 70000, %v, %v, %v (cwnd then was %d)",
			c.CWnd(), c.SSThresh(), c.wMax, c.k, c.tEpoch, wMax, k, epoch, cwnd)
	}
	c.Undo(4 * time.Second)
	if c.CWnd() != 80000 || c.SSThresh() != 70000 {
		t.Fatal("a second Undo changed the window")
	}
}

func TestCubicUndoOfFirstLossRestoresSlowStart(t *testing.T) {
	c := newCubic(t, Config{})
	growTo(t, c, 12)
	c.OnCongestion(0, 12000, false)
	c.Undo(0)
	if c.CWnd() != 12000 || c.SSThresh() != inf || c.hs.phase != ssStandard {
		t.Fatalf("cwnd %d ssthresh %d HyStart phase %d, want 12000, infinite, standard slow start", c.CWnd(), c.SSThresh(), c.hs.phase)
	}
}

func TestCubicUndoWithoutEventDoesNothing(t *testing.T) {
	c := newCubic(t, Config{})
	c.Undo(0)
	if c.CWnd() != 10000 || c.SSThresh() != inf {
		t.Fatalf("cwnd %d ssthresh %d, want 10000 and infinite", c.CWnd(), c.SSThresh())
	}
}

// hsRound plays one HyStart++ round of n ACKs of one segment each, every
// one with the given RTT sample and n segments in flight, so that each
// round is exactly n ACKs long (RFC 9406 §4.2's windowEnd).
func hsRound(c *Cubic, now *time.Duration, n int, rtt time.Duration) {
	for range n {
		*now += rtt / time.Duration(n)
		c.OnAck(&AckEvent{Now: *now, Acked: smss, RTT: rtt, InFlight: n * smss})
	}
}

// RFC 9406 §4.2, as a literal sequence: two rounds at 100 ms; a third at
// 112 ms, short of lastRoundMinRTT + RttThresh = 100 ms + max(4 ms,
// min(100/8 ms, 16 ms)) = 112.5 ms; a fourth at 127 ms, at least
// 112 + 14 ms, so after its 8th sample slow start ends and Conservative
// Slow Start begins, growing a quarter as fast; after CSS_ROUNDS = 5 rounds
// congestion avoidance starts with ssthresh = cwnd.
func TestHyStartExitsSlowStartOnRTTIncrease(t *testing.T) {
	c := newCubic(t, Config{})
	var now time.Duration
	hsRound(c, &now, 8, 100*time.Millisecond) // round 1: 10 → 18 segments
	hsRound(c, &now, 8, 100*time.Millisecond) // round 2: → 26
	if c.hs.phase != ssStandard || c.CWnd() != 26000 {
		t.Fatalf("after two flat rounds: phase %d cwnd %d, want standard slow start, 26000", c.hs.phase, c.CWnd())
	}
	hsRound(c, &now, 8, 112*time.Millisecond) // 112 < 112.5: no exit
	if c.hs.phase != ssStandard || c.CWnd() != 34000 {
		t.Fatalf("round at +12 ms: phase %d cwnd %d, want standard slow start, 34000", c.hs.phase, c.CWnd())
	}
	hsRound(c, &now, 8, 127*time.Millisecond) // 127 >= 112 + 14: exit
	if c.hs.phase != ssCSS || c.CWnd() != 42000 || c.hs.cssBaselineMinRTT != 127*time.Millisecond {
		t.Fatalf("round at +15 ms over the last: phase %d cwnd %d baseline %v, want CSS, 42000, 127ms",
			c.hs.phase, c.CWnd(), c.hs.cssBaselineMinRTT)
	}
	// CSS: each ACK of one segment adds a quarter segment.
	hsRound(c, &now, 8, 127*time.Millisecond)
	if c.CWnd() != 44000 || c.SSThresh() != inf {
		t.Fatalf("first CSS round: cwnd %d ssthresh %d, want 44000 and infinite", c.CWnd(), c.SSThresh())
	}
	for range 3 {
		hsRound(c, &now, 8, 127*time.Millisecond)
	}
	if c.hs.phase != ssCSS {
		t.Fatalf("CSS ended after %d rounds, want %d", c.hs.cssRounds, hsCSSRounds)
	}
	// The first ACK of the next round completes the fifth CSS round.
	hsRound(c, &now, 1, 127*time.Millisecond)
	if c.hs.phase != ssOff || c.CWnd() != 50250 || c.SSThresh() != 50250 {
		t.Fatalf("after 5 CSS rounds: phase %d cwnd %d ssthresh %d, want congestion avoidance, 50250, 50250",
			c.hs.phase, c.CWnd(), c.SSThresh())
	}
	// RFC 9438 §4.10: the stage begins with W_max = cwnd_epoch, K = 0.
	c.OnAck(&AckEvent{Now: now + time.Millisecond, Acked: smss, RTT: 125 * time.Millisecond, InFlight: 50250})
	if c.wMax != c.cwndEpoch || c.k != 0 || c.cwndPrior != 50.25 {
		t.Fatalf("first stage: W_max %v cwnd_epoch %v K %v cwnd_prior %v, want W_max = cwnd_epoch, K 0, cwnd_prior 50.25",
			c.wMax, c.cwndEpoch, c.k, c.cwndPrior)
	}
}

// RFC 9406 §4.2: in CSS, a round whose minimum RTT falls below the
// baseline shows the exit was spurious: back to standard slow start.
func TestHyStartSpuriousExitResumesSlowStart(t *testing.T) {
	c := newCubic(t, Config{})
	var now time.Duration
	hsRound(c, &now, 8, 100*time.Millisecond)
	hsRound(c, &now, 8, 120*time.Millisecond) // enters CSS, baseline 120 ms
	if c.hs.phase != ssCSS {
		t.Fatalf("phase %d, want CSS", c.hs.phase)
	}
	hsRound(c, &now, 8, 110*time.Millisecond)
	if c.hs.phase != ssStandard {
		t.Fatalf("phase %d after a round at 110 ms < baseline 120 ms, want standard slow start", c.hs.phase)
	}
}

// Fewer than N_RTT_SAMPLE = 8 samples in a round decide nothing.
func TestHyStartNeedsEightSamples(t *testing.T) {
	c := newCubic(t, Config{})
	var now time.Duration
	hsRound(c, &now, 7, 100*time.Millisecond)
	hsRound(c, &now, 7, 200*time.Millisecond)
	if c.hs.phase != ssStandard {
		t.Fatalf("phase %d after rounds of 7 samples, want standard slow start", c.hs.phase)
	}
}

// RFC 9406 §4.3: L = 8 without pacing, so a stretch ACK adds at most 8
// segments; with pacing there is no limit.
func TestHyStartGrowthLimitPerACK(t *testing.T) {
	c := newCubic(t, Config{})
	c.OnAck(&AckEvent{Acked: 20000, InFlight: 10000})
	if c.CWnd() != 18000 {
		t.Fatalf("unpaced stretch ACK of 20 segments: cwnd %d, want 18000", c.CWnd())
	}
	c = newCubic(t, Config{Pacing: true})
	c.OnAck(&AckEvent{Acked: 20000, InFlight: 10000})
	if c.CWnd() != 30000 {
		t.Fatalf("paced stretch ACK of 20 segments: cwnd %d, want 30000", c.CWnd())
	}
}

func TestCubicNoHyStartIsPlainSlowStart(t *testing.T) {
	c := newCubic(t, Config{NoHyStart: true})
	var now time.Duration
	hsRound(c, &now, 8, 100*time.Millisecond)
	hsRound(c, &now, 8, 200*time.Millisecond)
	if c.hs.phase != ssOff || c.CWnd() != 26000 {
		t.Fatalf("phase %d cwnd %d, want plain slow start to 26000", c.hs.phase, c.CWnd())
	}
}

func TestCubicPacingRate(t *testing.T) {
	c := newCubic(t, Config{Pacing: true})
	if r := c.PacingRate(); r != 0 {
		t.Fatalf("pacing rate %d before any RTT sample, want 0", r)
	}
	c.OnAck(&AckEvent{Acked: 0, RTT: 100 * time.Millisecond})
	if r := c.PacingRate(); r != 200000 {
		t.Fatalf("slow start, cwnd 10000, SRTT 100 ms: rate %d B/s, want 2×cwnd/SRTT = 200000", r)
	}
	c.OnCongestion(0, 10000, false)
	if r := c.PacingRate(); r != 0 {
		t.Fatalf("congestion avoidance: rate %d B/s, want 0 (only slow start is paced)", r)
	}
	c.OnRTO(0, 10000)
	if r := c.PacingRate(); r != 20000 {
		t.Fatalf("slow start after a timeout, cwnd 1000: rate %d B/s, want 2×cwnd/SRTT = 20000", r)
	}
	if r := newCubic(t, Config{}).PacingRate(); r != 0 {
		t.Fatalf("pacing rate %d without Config.Pacing, want 0", r)
	}
}

func TestCubicSetMSSKeepsTheCurveInBytes(t *testing.T) {
	c := newCubic(t, Config{})
	growTo(t, c, 100)
	c.OnCongestion(0, 100000, false)
	c.SetMSS(500)
	if c.wMax != 200 || c.cwndPrior != 200 || c.CWnd() != 70000 {
		t.Fatalf("after MSS 1000 → 500: W_max %v cwnd_prior %v cwnd %d, want 200, 200, 70000", c.wMax, c.cwndPrior, c.CWnd())
	}
}

func TestCubicWindowNeverOverflows(t *testing.T) {
	c := newCubic(t, Config{})
	c.Init(0, 1<<20)
	now := time.Duration(0)
	for range 5000 {
		now += time.Second
		c.OnAck(&AckEvent{Now: now, Acked: 1 << 30, InFlight: 1 << 30})
	}
	c.OnCongestion(now, InfiniteSSThresh, false)
	for range 5000 {
		now += time.Hour
		c.OnAck(&AckEvent{Now: now, Acked: 1 << 30, InFlight: 1 << 30})
	}
	if c.CWnd() > InfiniteSSThresh || c.CWnd() <= 0 {
		t.Fatalf("cwnd %d, want in (0, %d]", c.CWnd(), InfiniteSSThresh)
	}
}

func BenchmarkCubicOnAck(b *testing.B) {
	b.ReportAllocs()
	var c Controller = new(Cubic)
	c.Init(0, 1460)
	c.OnCongestion(0, 1<<20, false)
	ev := &AckEvent{Acked: 1460, RTT: 50 * time.Millisecond, InFlight: 1 << 20}
	for b.Loop() {
		ev.Now += 50 * time.Microsecond
		c.OnAck(ev)
	}
}
