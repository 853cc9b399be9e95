// Package cc holds ultcp's congestion controllers (RFC 5681 and successors)
// behind one small interface that the TCP engine drives.
//
// A controller sees events, never segments: the engine tells it how many
// bytes an ACK newly acknowledged, what RTT that ACK measured, and when a
// congestion event (loss, ECN echo, retransmission timeout) happened; the
// controller answers with a congestion window, a slow-start threshold and,
// if it wants one, a pacing rate. Like the engine, controllers are sans-I/O:
// time is passed in (a monotonic time.Duration since an epoch the caller
// chooses) and never read, and nothing here allocates after New.
package cc

import "time"

// AckEvent describes one ACK that moved the sender forward.
type AckEvent struct {
	Now      time.Duration // current time
	Acked    int           // bytes newly acknowledged (cumulatively or by SACK)
	RTT      time.Duration // RTT sample taken from this ACK (every ACK delivering a segment sent once); 0 when none (Karn's rule)
	MinRTT   time.Duration // smallest RTT seen on the connection; 0 when unknown
	InFlight int           // bytes outstanding and not SACKed after this ACK was processed
	// InRecovery is true while the engine is in loss recovery (RFC 6675,
	// RFC 6582): controllers must not grow the window then.
	InRecovery bool
	// AppLimited is true when the sender had less data than the window
	// allowed (RFC 7661): controllers should not grow the window on it.
	AppLimited bool
}

// Controller is one connection's congestion controller. The engine calls
// Init once, when the MSS is known, then the On* methods as events occur.
type Controller interface {
	// Name is the algorithm's short name ("newreno", "cubic").
	Name() string
	// Init sets the initial window (RFC 5681 §3.1, RFC 6928) for a
	// sender maximum segment size of mss bytes.
	Init(now time.Duration, mss int)
	// SetMSS tells the controller that the sender MSS changed (for
	// example after an ICMP "fragmentation needed").
	SetMSS(mss int)
	// CWnd is the congestion window in bytes.
	CWnd() int
	// SSThresh is the slow-start threshold in bytes.
	SSThresh() int
	// OnAck is called for every ACK that acknowledges new data.
	OnAck(ev *AckEvent)
	// OnCongestion is called once per congestion event (the start of fast
	// recovery, or an ECN echo at most once per window, RFC 3168 §6.1.2);
	// inFlight is the bytes outstanding when the event was detected
	// (RFC 5681's FlightSize), less those the receiver has SACKed: they
	// left the network, and counting them would let the reduced window
	// exceed the one that caused the loss.
	OnCongestion(now time.Duration, inFlight int, ecn bool)
	// OnRecoveryEnd is called when loss recovery ends (the recovery point
	// has been acknowledged).
	OnRecoveryEnd(now time.Duration)
	// OnRTO is called when the retransmission timer expires
	// (RFC 5681 §3.1, eq. 4; the window collapses to one segment).
	OnRTO(now time.Duration, inFlight int)
	// Undo reverts the effect of the most recent congestion event or
	// timeout, once the engine has proven it spurious (RFC 2883 DSACK,
	// RFC 8985, RFC 5682).
	Undo(now time.Duration)
	// PacingRate is the rate in bytes per second at which the controller
	// wants segments spaced; 0 means no pacing.
	PacingRate() int64
}
