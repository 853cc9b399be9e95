package cc

import (
	"errors"
	"math"
	"time"
)

// InfiniteSSThresh is the initial slow-start threshold: RFC 5681 §3.1 says
// it "SHOULD be set arbitrarily high (e.g., to the size of the largest
// possible advertised window)", so that slow start ends only on the first
// congestion event. It also caps the congestion window, so that a window
// grown over a very long lossless transfer never overflows.
const InfiniteSSThresh = math.MaxInt32

// DefaultMSS is used when Init or SetMSS is given a non-positive MSS: the
// default send MSS of RFC 9293 §3.7.1 when the peer sent no MSS option.
const DefaultMSS = 536

// abcLimit is RFC 3465's L: in slow start one ACK may grow the window by
// at most L segments. RFC 3465 §2.2 allows L = 2*SMSS, which credits the
// delayed ACKs of RFC 1122 (one ACK per two segments) fully, while a
// "stretch ACK" covering many segments (after ACK loss, or from a receiver
// that coalesces) cannot cause a large burst.
const abcLimit = 2

// Config configures a controller. The zero value is valid and gives the
// defaults.
type Config struct {
	// InitialWindow is the initial congestion window in segments. Zero
	// selects RFC 6928's rule, IW = min(10*SMSS, max(2*SMSS, 14600))
	// bytes: ten 1460-byte segments, which lets a typical short
	// request/response finish in one round trip (RFC 6928 §1; measured at
	// Google to cut web latency by about 10% with no harm to loss rates)
	// while the 14600-byte cap keeps the first burst the same size for
	// jumbo segments. Set it to 3 or 4 for RFC 5681 §3.1's more
	// conservative window on constrained paths, or higher inside a
	// lossless fabric where the window only guards the peer's ring.
	InitialWindow int
	// Pacing asks the engine to pace slow start at PacingRate (CUBIC
	// only; NewReno never paces). It also lifts HyStart++'s limit on
	// the growth per ACK (RFC 9406 §4.3: L = infinity when paced).
	Pacing bool
	// NoHyStart makes CUBIC's first slow start RFC 5681's, ending only
	// at the first loss, instead of RFC 9406's HyStart++.
	NoHyStart bool
	// NoFastConvergence turns off RFC 9438 §4.7's fast convergence,
	// which the RFC says a single flow alone on its path may do.
	NoFastConvergence bool
}

// Validate reports an error for a configuration no controller can use.
func (c Config) Validate() error {
	if c.InitialWindow < 0 {
		return errors.New("cc: InitialWindow is negative")
	}
	return nil
}

// NewReno is TCP's standard congestion control: RFC 5681 slow start and
// congestion avoidance, with RFC 3465 appropriate byte counting, driven by
// an engine that recovers losses the RFC 6582 / RFC 6675 way.
//
// Loss recovery is pipe-based: on a congestion event the window drops
// straight to the new threshold (cwnd = ssthresh) and stays there while the
// engine retransmits and sends new data whenever its estimate of the bytes
// in the network ("pipe", RFC 6675 §4) is below cwnd. So there is none of
// RFC 5681 §3.2's window inflation by one SMSS per duplicate ACK and
// deflation at the end; RFC 6675 shows the two send the same amount, and
// the pipe way needs no special case for partial ACKs (RFC 6582 §3.2's
// partial-acknowledgment response is the engine's job: retransmit the next
// hole and stay in recovery, which the controller sees as InRecovery).
// When recovery ends cwnd is already ssthresh, option (2) of RFC 6582
// §3.2's full-acknowledgment rule.
//
// The zero value is ready to use (with the default Config) once Init has
// been called. A NewReno belongs to one connection and is not safe for
// concurrent use; no method allocates.
type NewReno struct {
	cfg      Config
	mss      int
	cwnd     int
	ssthresh int

	// bytesAcked counts the bytes acknowledged in congestion avoidance
	// since cwnd last grew (RFC 3465 §2.1, RFC 5681 §3.1's byte counting).
	bytesAcked int

	// rtoBackoff is set by OnRTO and cleared by the next ACK of new data:
	// while it is set, a further timeout is the same segment timing out
	// again, and RFC 5681 §3.1 holds ssthresh constant.
	rtoBackoff bool

	// The window before the last congestion event or timeout, for Undo.
	canUndo       bool
	priorCwnd     int
	priorSSThresh int
}

var _ Controller = (*NewReno)(nil)

// NewNewReno returns a NewReno controller configured by cfg, or an error
// if cfg is invalid. Call Init before use.
func NewNewReno(cfg Config) (*NewReno, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &NewReno{cfg: cfg}, nil
}

// Name implements Controller.
func (r *NewReno) Name() string { return "newreno" }

// Init implements Controller: cwnd = IW (RFC 6928 unless configured) and
// ssthresh = InfiniteSSThresh (RFC 5681 §3.1).
func (r *NewReno) Init(now time.Duration, mss int) {
	if mss <= 0 {
		mss = DefaultMSS
	}
	r.mss = mss
	r.cwnd = r.initialWindow()
	r.ssthresh = InfiniteSSThresh
	r.bytesAcked = 0
	r.rtoBackoff = false
	r.canUndo = false
}

func (r *NewReno) initialWindow() int { return initialWindow(r.cfg, r.mss) }

// initialWindow is the window Init starts with: InitialWindow segments
// when configured, else RFC 6928 §2's min(10*SMSS, max(2*SMSS, 14600)).
func initialWindow(cfg Config, mss int) int {
	if n := cfg.InitialWindow; n > 0 {
		return min(n*mss, InfiniteSSThresh)
	}
	return min(10*mss, max(2*mss, 14600))
}

// SetMSS implements Controller. The window stays the same number of bytes
// (what the path was judged to carry has not changed) but never falls
// below one new segment, so the sender can always make progress, and a
// finite ssthresh stays at least two segments (RFC 5681 eq. 4's floor).
func (r *NewReno) SetMSS(mss int) {
	if mss <= 0 {
		mss = DefaultMSS
	}
	r.mss = mss
	r.cwnd = max(r.cwnd, mss)
	if r.ssthresh != InfiniteSSThresh {
		r.ssthresh = max(r.ssthresh, 2*mss)
	}
}

// CWnd implements Controller.
func (r *NewReno) CWnd() int { return r.cwnd }

// SSThresh implements Controller.
func (r *NewReno) SSThresh() int { return r.ssthresh }

// OnAck implements Controller.
func (r *NewReno) OnAck(ev *AckEvent) {
	r.rtoBackoff = false
	// No growth during loss recovery (RFC 6582, RFC 6675: the window is
	// ssthresh until recovery ends) nor when the application, not the
	// window, limited the sender (RFC 7661: the ACK says nothing about
	// whether a larger window would have been safe).
	if ev.InRecovery || ev.AppLimited || ev.Acked <= 0 {
		return
	}
	acked := ev.Acked
	if r.cwnd < r.ssthresh {
		// Slow start, RFC 5681 eq. 2 with RFC 3465 §2.2's L = 2*SMSS:
		// cwnd += min(N, L*SMSS). Growth stops at ssthresh; the bytes of
		// this ACK beyond it count towards congestion avoidance, so a
		// large ACK at the boundary is not lost.
		inc := min(acked, abcLimit*r.mss)
		if r.cwnd+inc <= r.ssthresh {
			r.cwnd += inc
			return
		}
		used := r.ssthresh - r.cwnd
		r.cwnd = r.ssthresh
		acked = inc - used
	}
	// Congestion avoidance, RFC 5681 §3.1's byte counting (RFC 3465
	// §2.1): one SMSS per cwnd's worth of acknowledged bytes, i.e. one
	// segment per round trip.
	r.bytesAcked += acked
	if r.bytesAcked >= r.cwnd {
		r.bytesAcked -= r.cwnd
		r.cwnd = min(r.cwnd+r.mss, InfiniteSSThresh)
	}
}

// save remembers the window for Undo.
func (r *NewReno) save() {
	r.canUndo = true
	r.priorCwnd = r.cwnd
	r.priorSSThresh = r.ssthresh
}

// halve is RFC 5681 eq. 4: ssthresh = max(FlightSize / 2, 2*SMSS).
func (r *NewReno) halve(inFlight int) int {
	return max(inFlight/2, 2*r.mss)
}

// OnCongestion implements Controller: RFC 5681 §3.2 steps 2 and 3 without
// inflation (see NewReno), ssthresh = max(FlightSize/2, 2*SMSS) and
// cwnd = ssthresh. An ECN echo is answered exactly like a loss (RFC 3168
// §6.1.2).
func (r *NewReno) OnCongestion(now time.Duration, inFlight int, ecn bool) {
	r.save()
	r.ssthresh = r.halve(inFlight)
	r.cwnd = r.ssthresh
	r.bytesAcked = 0
	r.rtoBackoff = false
}

// OnRecoveryEnd implements Controller. With pipe-based recovery cwnd is
// already ssthresh (option (2) of RFC 6582 §3.2's full-acknowledgment
// rule), so nothing changes;
// the saved window stays available to Undo, since a DSACK proving the
// recovery spurious may arrive after it ended.
func (r *NewReno) OnRecoveryEnd(now time.Duration) {}

// OnRTO implements Controller: RFC 5681 §3.1, ssthresh per eq. 4 and
// cwnd = LW = 1 SMSS, after which slow start rebuilds the window. When the
// timer expires again before any new data has been acknowledged, the same
// segment has timed out twice and ssthresh is held constant, as RFC 5681
// §3.1 requires (FlightSize would otherwise halve an already collapsed
// window); the window saved for Undo is then still the one from before
// the first timeout.
func (r *NewReno) OnRTO(now time.Duration, inFlight int) {
	if !r.rtoBackoff {
		r.save()
		r.ssthresh = r.halve(inFlight)
		r.rtoBackoff = true
	}
	r.cwnd = r.mss
	r.bytesAcked = 0
}

// Undo implements Controller: it restores the cwnd and ssthresh saved at
// the last congestion event or first timeout, keeping any larger values
// reached since (as Linux's undo does), and then forgets them, so a second
// Undo changes nothing.
func (r *NewReno) Undo(now time.Duration) {
	if !r.canUndo {
		return
	}
	r.cwnd = max(r.cwnd, r.priorCwnd)
	r.ssthresh = max(r.ssthresh, r.priorSSThresh)
	r.canUndo = false
	r.bytesAcked = 0
	r.rtoBackoff = false
}

// PacingRate implements Controller: NewReno does not pace.
func (r *NewReno) PacingRate() int64 { return 0 }
