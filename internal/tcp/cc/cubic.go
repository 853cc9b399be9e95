package cc

import (
	"math"
	"time"
)

// CUBIC's constants (RFC 9438 §4.1.1 and §4.3).
const (
	// cubicC scales the cubic function: with C = 0.4 a window of W_max
	// segments is regained K = cbrt(W_max*(1-β)/C) seconds after a loss
	// (§5 explains how 0.4 keeps CUBIC close to Reno on short paths).
	cubicC = 0.4
	// cubicBeta is β_cubic, the multiplicative decrease factor (§4.6).
	cubicBeta = 0.7
	// cubicAlpha is α_cubic of the Reno-friendly region (§4.3): the
	// additive increase that gives an AIMD(α, β) flow the same average
	// window as Reno's AIMD(1, 0.5), 3*(1-β)/(1+β).
	cubicAlpha = 3 * (1 - cubicBeta) / (1 + cubicBeta)
)

// HyStart++'s constants (RFC 9406 §4.3).
const (
	hsMinRTTThresh   = 4 * time.Millisecond
	hsMaxRTTThresh   = 16 * time.Millisecond
	hsMinRTTDivisor  = 8
	hsNRTTSample     = 8
	hsCSSGrowthDiv   = 4
	hsCSSRounds      = 5
	hsLimitNonPaced  = 8 // L: segments one ACK may add, when not paced
	hsInfiniteMinRTT = time.Duration(math.MaxInt64)
)

// Slow-start phases of HyStart++ (RFC 9406 §4.2).
type ssPhase uint8

const (
	ssStandard ssPhase = iota // standard slow start, watching for an RTT increase
	ssCSS                     // Conservative Slow Start after an RTT increase
	ssOff                     // HyStart++ done: later slow starts are RFC 5681's
)

// Cubic is CUBIC congestion control (RFC 9438), the default: the window
// grows as a cubic function of the time since the last congestion event,
// W_cubic(t) = C*(t-K)^3 + W_max (§4.2), concave up to the window where
// the last loss happened and convex beyond it, so that on paths with a
// large bandwidth-delay product it regains and then probes for bandwidth
// in a time that does not depend on the RTT. Where Reno would do better
// (short RTTs, small windows) it follows a Reno-friendly estimate (§4.3).
//
// The first slow start is HyStart++ (RFC 9406): it leaves slow start when
// the minimum RTT of a round grows by a threshold (the queue is filling),
// spends up to five rounds in Conservative Slow Start, and enters
// congestion avoidance before the burst of losses that plain slow start
// would cause by overshooting the path.
//
// Windows are kept in bytes; the RFC's formulas, which count segments
// and seconds, are evaluated in floating point with W = cwnd/SMSS.
//
// A Cubic belongs to one connection and is not safe for concurrent use;
// no method allocates.
type Cubic struct {
	cfg      Config
	mss      int
	cwnd     int
	ssthresh int
	// frac carries the fraction of a byte of window growth that the
	// integer cwnd could not take yet.
	frac float64

	// RFC 9438 §4.1.2's state, in segments and seconds.
	wMax      float64 // W_max
	cwndPrior float64 // cwnd_prior
	k         float64 // K, seconds
	cwndEpoch float64 // cwnd_epoch
	wEst      float64 // W_est
	alpha     float64 // α_cubic, raised to 1 once W_est reaches cwnd_prior (§4.3)
	tEpoch    time.Duration
	// epoch reports whether a congestion-avoidance stage has begun
	// (t_epoch, cwnd_epoch, K and W_est are set); a congestion event or
	// timeout clears it and the first congestion-avoidance ACK after it
	// starts the next stage.
	epoch bool
	// afterLoss reports whether the coming stage follows a congestion
	// event (W_max is the window of that event) rather than the end of a
	// slow start without one (§4.8, §4.10: W_max = cwnd_epoch, K = 0).
	afterLoss bool

	srtt time.Duration // smoothed RTT for W_cubic(t+RTT), from the ACKs' samples

	// appLimitedAt is when the sender became application-limited in
	// congestion avoidance (0: it is not): the time spent so does not
	// count towards t, so the window does not jump when data returns
	// (RFC 9438 §5.8).
	appLimitedAt time.Duration

	hs hyStart

	// rtoBackoff is set by OnRTO and cleared by the next ACK of new data
	// (a repeated timeout of the same segment holds ssthresh, RFC 5681
	// §3.1).
	rtoBackoff bool

	// The state before the last congestion event or first timeout, for
	// Undo (RFC 9438 §4.9).
	canUndo bool
	prior   cubicSnapshot
}

// cubicSnapshot is what Undo restores.
type cubicSnapshot struct {
	cwnd, ssthresh                    int
	wMax, cwndPrior, k, cwndEpoch, we float64
	alpha                             float64
	tEpoch                            time.Duration
	epoch, afterLoss                  bool
	hsPhase                           ssPhase
}

// hyStart is RFC 9406 §4.2's state. A round is one window of data: it
// ends when everything sent at its start has been acknowledged. The
// controller sees no sequence numbers, so it counts in bytes delivered:
// at the start of a round the bytes sent so far are delivered+in flight
// (windowEnd), and the round ends once delivered reaches that (the
// equivalent of SND.UNA passing the SND.NXT recorded at its start).
type hyStart struct {
	phase              ssPhase
	delivered          int64 // bytes acknowledged over the connection
	windowEnd          int64 // delivered count that ends the current round
	roundStarted       bool
	lastRoundMinRTT    time.Duration
	currentRoundMinRTT time.Duration
	rttSampleCount     int
	cssBaselineMinRTT  time.Duration
	cssRounds          int
}

var _ Controller = (*Cubic)(nil)

// NewCubic returns a CUBIC controller configured by cfg, or an error if
// cfg is invalid. Call Init before use.
func NewCubic(cfg Config) (*Cubic, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Cubic{cfg: cfg}, nil
}

// Name implements Controller.
func (c *Cubic) Name() string { return "cubic" }

// Init implements Controller: IW as for NewReno (RFC 6928 unless
// configured), ssthresh infinite, and HyStart++ armed for the first slow
// start (RFC 9406 §4.2).
func (c *Cubic) Init(now time.Duration, mss int) {
	cfg := c.cfg
	*c = Cubic{cfg: cfg}
	if mss <= 0 {
		mss = DefaultMSS
	}
	c.mss = mss
	c.cwnd = initialWindow(cfg, mss)
	c.ssthresh = InfiniteSSThresh
	c.alpha = cubicAlpha
	c.hs.reset()
	if cfg.NoHyStart {
		c.hs.phase = ssOff
	}
}

func (h *hyStart) reset() {
	*h = hyStart{phase: h.phase, delivered: h.delivered,
		lastRoundMinRTT: hsInfiniteMinRTT, currentRoundMinRTT: hsInfiniteMinRTT,
		cssBaselineMinRTT: hsInfiniteMinRTT}
}

// SetMSS implements Controller: the window keeps its size in bytes, at
// least one new segment, and a finite ssthresh stays at least two.
func (c *Cubic) SetMSS(mss int) {
	if mss <= 0 {
		mss = DefaultMSS
	}
	// The cubic state counts segments: rescale it so the curve keeps
	// its shape in bytes.
	if c.mss > 0 && c.mss != mss {
		r := float64(c.mss) / float64(mss)
		c.wMax *= r
		c.cwndPrior *= r
		c.cwndEpoch *= r
		c.wEst *= r
	}
	c.mss = mss
	c.cwnd = max(c.cwnd, mss)
	if c.ssthresh != InfiniteSSThresh {
		c.ssthresh = max(c.ssthresh, 2*mss)
	}
}

// CWnd implements Controller.
func (c *Cubic) CWnd() int { return c.cwnd }

// SSThresh implements Controller.
func (c *Cubic) SSThresh() int { return c.ssthresh }

// segs converts bytes to segments.
func (c *Cubic) segs(b int) float64 { return float64(b) / float64(c.mss) }

// wCubic is RFC 9438 Figure 1: W_cubic(t) = C*(t-K)^3 + W_max, in
// segments, t in seconds since t_epoch.
func (c *Cubic) wCubic(t float64) float64 {
	d := t - c.k
	return cubicC*d*d*d + c.wMax
}

// cubicK is RFC 9438 Figure 2: K = cubic_root((W_max - cwnd_epoch)/C),
// the time the curve takes to climb from cwnd_epoch back to W_max. A
// cwnd_epoch above W_max (after an Undo, or fast convergence on a tiny
// window) gives K = 0: the stage starts at the plateau.
func cubicK(wMax, cwndEpoch float64) float64 {
	if wMax <= cwndEpoch {
		return 0
	}
	return math.Cbrt((wMax - cwndEpoch) / cubicC)
}

// OnAck implements Controller.
func (c *Cubic) OnAck(ev *AckEvent) {
	c.rtoBackoff = false
	if ev.RTT > 0 {
		// RFC 6298 §2.3's smoothing, for the RTT of W_cubic(t+RTT).
		if c.srtt == 0 {
			c.srtt = ev.RTT
		} else {
			c.srtt += (ev.RTT - c.srtt) / 8
		}
	}
	if ev.Acked > 0 {
		c.hs.delivered += int64(ev.Acked)
	}
	if ev.InRecovery || ev.Acked <= 0 {
		return
	}
	if ev.AppLimited {
		// RFC 9438 §5.8 (and RFC 7661): an application-limited ACK says
		// nothing about a larger window; and the idle time must not
		// count towards t.
		if c.appLimitedAt == 0 {
			c.appLimitedAt = max(ev.Now, 1)
		}
		return
	}
	if c.appLimitedAt != 0 {
		if c.epoch && ev.Now > c.appLimitedAt {
			c.tEpoch += ev.Now - c.appLimitedAt
		}
		c.appLimitedAt = 0
	}
	if c.cwnd < c.ssthresh {
		c.slowStart(ev)
		return
	}
	c.congestionAvoidance(ev)
}

// slowStart grows the window on one ACK while cwnd < ssthresh: RFC 5681
// slow start with RFC 3465 byte counting, and during the first slow start
// RFC 9406's HyStart++.
func (c *Cubic) slowStart(ev *AckEvent) {
	limit := hsLimitNonPaced
	if c.cfg.Pacing {
		limit = math.MaxInt32 / 2 // RFC 9406 §4.3: L = infinity when paced
	}
	inc := min(ev.Acked, limit*c.mss)
	if c.hs.phase == ssOff {
		c.growSlowStart(inc)
		return
	}
	h := &c.hs
	// RFC 9406 §4.2: a round ends when the data outstanding at its
	// start has been acknowledged.
	newRound := !h.roundStarted || h.delivered >= h.windowEnd
	if newRound {
		if h.roundStarted && h.phase == ssCSS {
			h.cssRounds++
		}
		h.roundStarted = true
		h.windowEnd = h.delivered + int64(ev.InFlight)
		h.lastRoundMinRTT = h.currentRoundMinRTT
		h.currentRoundMinRTT = hsInfiniteMinRTT
		h.rttSampleCount = 0
	}
	if ev.RTT > 0 {
		h.currentRoundMinRTT = min(h.currentRoundMinRTT, ev.RTT)
		h.rttSampleCount++
	}
	switch h.phase {
	case ssStandard:
		c.growSlowStart(inc)
		if h.rttSampleCount >= hsNRTTSample && h.currentRoundMinRTT != hsInfiniteMinRTT &&
			h.lastRoundMinRTT != hsInfiniteMinRTT {
			thresh := max(hsMinRTTThresh, min(h.lastRoundMinRTT/hsMinRTTDivisor, hsMaxRTTThresh))
			if h.currentRoundMinRTT >= h.lastRoundMinRTT+thresh {
				// The queue is building: Conservative Slow Start.
				h.cssBaselineMinRTT = h.currentRoundMinRTT
				h.phase = ssCSS
				h.cssRounds = 0
			}
		}
	case ssCSS:
		c.frac += float64(inc) / hsCSSGrowthDiv
		c.takeFrac()
		if h.rttSampleCount >= hsNRTTSample && h.currentRoundMinRTT < h.cssBaselineMinRTT {
			// The RTT fell back: the exit was spurious, resume
			// standard slow start.
			h.cssBaselineMinRTT = hsInfiniteMinRTT
			h.phase = ssStandard
		} else if h.cssRounds >= hsCSSRounds {
			// RFC 9406 §4.2: after CSS_ROUNDS rounds, enter
			// congestion avoidance with ssthresh = cwnd; RFC 9438
			// §4.10: cwnd_prior = cwnd, and the first stage runs with
			// W_max = cwnd_epoch and K = 0.
			c.ssthresh = c.cwnd
			c.cwndPrior = c.segs(c.cwnd)
			c.afterLoss = false
			c.epoch = false
			h.phase = ssOff
		}
	}
}

// growSlowStart adds inc bytes, stopping at ssthresh; an ACK that crosses
// it gives the rest to congestion avoidance.
func (c *Cubic) growSlowStart(inc int) {
	if c.cwnd+inc < c.ssthresh || c.ssthresh == InfiniteSSThresh {
		c.cwnd = min(c.cwnd+inc, InfiniteSSThresh)
		return
	}
	c.cwnd = c.ssthresh
}

// takeFrac moves whole bytes of accumulated growth into cwnd.
func (c *Cubic) takeFrac() {
	if c.frac >= 1 {
		whole := math.Floor(c.frac)
		c.frac -= whole
		c.cwnd = int(min(float64(c.cwnd)+whole, InfiniteSSThresh))
	}
}

// startEpoch begins a congestion-avoidance stage (RFC 9438 §4.2): t_epoch,
// cwnd_epoch and W_est are the present; K and W_max depend on how the
// stage was reached.
func (c *Cubic) startEpoch(now time.Duration) {
	c.epoch = true
	c.tEpoch = now
	c.cwndEpoch = c.segs(c.cwnd)
	c.wEst = c.cwndEpoch // §4.3: W_est starts at cwnd_epoch
	c.alpha = cubicAlpha
	if c.wEst >= c.cwndPrior && c.cwndPrior > 0 {
		c.alpha = 1
	}
	if !c.afterLoss {
		// §4.8 (after a timeout) and §4.10 (after a slow start that
		// ended without loss): W_max is undefined or stale, so the
		// curve starts at its plateau, W_max = cwnd_epoch and K = 0.
		c.wMax = c.cwndEpoch
		c.k = 0
		return
	}
	c.k = cubicK(c.wMax, c.cwndEpoch)
}

// congestionAvoidance is RFC 9438 §§4.2–4.5 for one ACK.
func (c *Cubic) congestionAvoidance(ev *AckEvent) {
	if !c.epoch {
		c.startEpoch(ev.Now)
	}
	cwnd := c.segs(c.cwnd)
	// segments_acked, fractional for short ACKs, and at most L = 2 (RFC
	// 3465 §2.2's limit): an ACK that covers many segments at once (a
	// hole filled after loss recovery, a lost ACK) must not make the
	// window jump by half of itself.
	acked := min(c.segs(ev.Acked), abcLimit)
	t := (ev.Now - c.tEpoch).Seconds()

	// §4.3: the Reno-friendly estimate grows by α_cubic per window.
	c.wEst += c.alpha * acked / cwnd
	if c.alpha != 1 && c.wEst >= c.cwndPrior {
		c.alpha = 1
	}
	if c.wCubic(t) < c.wEst {
		// Reno-friendly region: cwnd = W_est (never shrinking on an ACK).
		if w := c.wEst * float64(c.mss); w > float64(c.cwnd) {
			c.cwnd = int(min(w, InfiniteSSThresh))
			c.frac = w - math.Floor(w)
		}
		return
	}
	// §4.4 and §4.5: concave and convex regions alike aim at
	// W_cubic(t+RTT), bounded to [cwnd, 1.5*cwnd] (§4.2), and grow by
	// (target-cwnd)/cwnd per segment acknowledged, at most two per ACK.
	// The RFC counts per ACK; counting acknowledged segments (RFC
	// 3465's byte counting) keeps a delayed-ACK receiver, which ACKs
	// every second segment, from halving the growth.
	rtt := c.srtt
	if rtt == 0 {
		rtt = ev.MinRTT
	}
	target := c.wCubic(t + rtt.Seconds())
	switch {
	case target < cwnd:
		target = cwnd
	case target > 1.5*cwnd:
		target = 1.5 * cwnd
	}
	c.frac += (target - cwnd) / cwnd * acked * float64(c.mss)
	c.takeFrac()
}

// save remembers the state for Undo.
func (c *Cubic) save() {
	c.canUndo = true
	c.prior = cubicSnapshot{cwnd: c.cwnd, ssthresh: c.ssthresh, wMax: c.wMax,
		cwndPrior: c.cwndPrior, k: c.k, cwndEpoch: c.cwndEpoch, we: c.wEst,
		alpha: c.alpha, tEpoch: c.tEpoch, epoch: c.epoch, afterLoss: c.afterLoss,
		hsPhase: c.hs.phase}
}

// reduce is RFC 9438 §4.6 (multiplicative decrease) with §4.7 (fast
// convergence), shared by congestion events and timeouts. It returns
// flight_size * β_cubic in bytes, before any floor.
func (c *Cubic) reduce(inFlight int) int {
	cwnd := c.segs(c.cwnd)
	// §4.7: a window below the last W_max means another flow is taking
	// bandwidth; release some by remembering a lower plateau.
	if !c.cfg.NoFastConvergence && cwnd < c.wMax {
		c.wMax = cwnd * (1 + cubicBeta) / 2
	} else {
		c.wMax = cwnd
	}
	c.cwndPrior = cwnd
	c.afterLoss = true
	c.epoch = false
	c.frac = 0
	// After the first congestion event slow start is RFC 5681's (RFC
	// 9406 §4.3: HyStart++ is for the initial slow start only).
	c.hs.phase = ssOff
	// §4.6: ssthresh = flight_size * β_cubic; the caller applies the
	// floors (cwnd's first, then ssthresh >= 2 SMSS, in Figure 5's order).
	// β_cubic = 7/10 in integers, so 90000 bytes give 63000, not the
	// 62999 of floating point.
	return inFlight/10*7 + inFlight%10*7/10
}

// OnCongestion implements Controller: RFC 9438 §4.6, with cwnd at least
// two segments after a loss and one after an ECN echo (RFC 3168 §6.1.2
// lets the window shrink to one segment when the network marked rather
// than dropped).
func (c *Cubic) OnCongestion(now time.Duration, inFlight int, ecn bool) {
	c.save()
	s := c.reduce(inFlight)
	floor := 2 * c.mss
	if ecn {
		floor = c.mss
	}
	c.cwnd = max(s, floor)
	c.ssthresh = max(s, 2*c.mss)
	c.rtoBackoff = false
}

// OnRecoveryEnd implements Controller. cwnd is already ssthresh (the
// engine's recovery is pipe-based, see NewReno); the stage of congestion
// avoidance begins with the next ACK. The saved state stays for Undo: a
// DSACK may prove the recovery spurious after it ended.
func (c *Cubic) OnRecoveryEnd(now time.Duration) {}

// OnRTO implements Controller: RFC 9438 §4.8, Reno's reaction (cwnd = 1
// SMSS, then slow start) with ssthresh from β_cubic; the next stage of
// congestion avoidance starts at its plateau (W_max = cwnd_epoch, K = 0)
// with W_est = cwnd_epoch. A repeated timeout of the same segment holds
// ssthresh (RFC 5681 §3.1).
func (c *Cubic) OnRTO(now time.Duration, inFlight int) {
	if !c.rtoBackoff {
		c.save()
		c.ssthresh = max(c.reduce(inFlight), 2*c.mss)
		c.rtoBackoff = true
	}
	c.afterLoss = false
	c.epoch = false
	c.cwnd = c.mss
	c.frac = 0
}

// Undo implements Controller: RFC 9438 §4.9, restore the state from
// before the spurious event (cwnd, ssthresh, W_max, K, the epoch and
// W_est), keeping a larger window reached since, once.
func (c *Cubic) Undo(now time.Duration) {
	if !c.canUndo {
		return
	}
	p := &c.prior
	cur := c.cwnd
	c.cwnd, c.ssthresh = max(cur, p.cwnd), max(c.ssthresh, p.ssthresh)
	c.wMax, c.cwndPrior, c.k, c.cwndEpoch, c.wEst = p.wMax, p.cwndPrior, p.k, p.cwndEpoch, p.we
	c.alpha, c.tEpoch, c.epoch, c.afterLoss = p.alpha, p.tEpoch, p.epoch, p.afterLoss
	c.hs.phase = p.hsPhase
	if c.hs.phase != ssOff {
		c.hs.reset()
	}
	c.canUndo = false
	c.rtoBackoff = false
	c.frac = 0
}

// PacingRate implements Controller. With Config.Pacing the controller
// asks for slow start to be paced at twice cwnd per SRTT (Linux's factor,
// which leaves room for the window to double each round trip). Slow start
// is where pacing matters: each ACK releases two or three segments at
// once, so bursts of up to half the window reach the bottleneck at the
// sender's line rate and overflow its queue before HyStart++ (which needs
// the queue to persist into the next round) can see the delay grow. In
// congestion avoidance the ACK clock already spaces segments at the
// bottleneck's rate; pacing there measured worse in the simulator (it
// delays retransmissions and slows the regrowth after a loss), so the
// rate is 0 then, as before an RTT is known and without Config.Pacing.
func (c *Cubic) PacingRate() int64 {
	if !c.cfg.Pacing || c.srtt <= 0 || c.cwnd >= c.ssthresh {
		return 0
	}
	return int64(2 * float64(c.cwnd) / c.srtt.Seconds())
}
