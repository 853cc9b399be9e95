package ultcp

import (
	"sync/atomic"
	"time"

	"github.com/ultcp/ultcp/internal/tcp"
)

// StackStats are a stack's counters, in the spirit of netstat -s. They
// only grow. Segment and drop counts sum the engine counters of every
// connection the stack has had, live or gone.
type StackStats struct {
	// Connections.
	ActiveOpens  uint64 // Dial attempts that sent a SYN
	PassiveOpens uint64 // connections accepted by the application
	AttemptFails uint64 // Dials that failed (refused, reset, timed out, cancelled)
	Established  uint64 // connections the application holds open now (a gauge)
	Closing      uint64 // connections the application closed that are still finishing (a gauge)

	// Segments, as the engines counted them (tcp.Stats summed).
	SegsIn, SegsOut   uint64
	BytesIn, BytesOut uint64
	Retransmits       uint64 // always 0 on the lossless fabric; kept for the gateway's links
	ResetsIn          uint64 // RST segments received
	ResetsOut         uint64 // RST segments sent
	Drops             tcp.Stats

	// The link.
	BadRecords uint64 // records that were not a valid packet for their ring (connection reset)
	NoListener uint64 // SYNs for a port nobody listens on (answered with RST)
	NoConn     uint64 // segments for no connection on a ring (answered with RST)
	DMARecords uint64 // DMA records sent (each may carry many segments' worth)
	// Addresses and ICMP (addrcheck.go, icmp.go).
	Martians   uint64 // SYNs discarded for a broadcast/multicast destination or an invalid source (MUST-57, MUST-63)
	ICMPErrors uint64 // ICMP errors for a connection handed to its engine (MUST-54)
	ICMPDrops  uint64 // ICMP packets on a ring that matched no connection state (RFC 5927 §4.1), or malformed

	// The progress engine.
	EngineWakeups uint64 // times the engine woke up
	FabricAccepts uint64 // fabric connections peers opened to this node
	Sleeps        uint64 // application calls that slept after spinning
}

type stackCounters struct {
	activeOpens, accepted, attemptFails              atomic.Uint64
	segsIn, segsOut, resetsIn, resetsOut             atomic.Uint64
	badRecords, noListener, noConn                   atomic.Uint64
	martians, icmpErrors, icmpDrops                  atomic.Uint64
	engineWakeups, sleeps, dmaRecords, fabricAccepts atomic.Uint64

	retired tcp.Stats // under Stack.mu: the engine counters of finished connections
}

// addStats adds b's counters to a.
func addStats(a *tcp.Stats, b *tcp.Stats) {
	a.SegsIn += b.SegsIn
	a.SegsOut += b.SegsOut
	a.BytesIn += b.BytesIn
	a.BytesOut += b.BytesOut
	a.Retransmits += b.Retransmits
	a.FastRetransmits += b.FastRetransmits
	a.Timeouts += b.Timeouts
	a.DupAcks += b.DupAcks
	a.OutOfOrder += b.OutOfOrder
	a.WindowProbes += b.WindowProbes
	a.KeepAlives += b.KeepAlives
	a.ChallengeACKs += b.ChallengeACKs
	a.ChallengeLimit += b.ChallengeLimit
	a.CustodyLosses += b.CustodyLosses
	a.RecvBufGrowths += b.RecvBufGrowths
	a.DropBadFlags += b.DropBadFlags
	a.DropOutOfWindow += b.DropOutOfWindow
	a.DropPAWS += b.DropPAWS
	a.DropNoTimestamp += b.DropNoTimestamp
	a.DropBadAck += b.DropBadAck
	a.DropRST += b.DropRST
	a.DropSYN += b.DropSYN
	a.DropClosed += b.DropClosed
	a.DropOOOFull += b.DropOOOFull
	a.DropAfterFIN += b.DropAfterFIN
}

// retire forgets a finished connection and keeps its counters.
func (s *Stack) retire(c *Conn) {
	st := c.tc.Stats()
	s.mu.Lock()
	addStats(&s.stats.retired, &st)
	s.mu.Unlock()
	s.unregister(c)
}

// Stats returns the stack's counters.
func (s *Stack) Stats() StackStats {
	s.mu.Lock()
	total := s.stats.retired
	live := make([]*Conn, 0, len(s.conns))
	for c := range s.conns {
		live = append(live, c)
	}
	s.mu.Unlock()
	var open, closing uint64
	for _, c := range live {
		c.mu.Lock()
		if !c.finished && c.lst == nil {
			st := c.tc.Stats()
			addStats(&total, &st)
			if c.appClosed {
				closing++
			} else {
				open++
			}
		}
		c.mu.Unlock()
	}
	k := &s.stats
	return StackStats{
		ActiveOpens: k.activeOpens.Load(), PassiveOpens: k.accepted.Load(), AttemptFails: k.attemptFails.Load(),
		Established: open, Closing: closing,
		SegsIn: total.SegsIn + k.segsIn.Load(), SegsOut: total.SegsOut + k.segsOut.Load(),
		BytesIn: total.BytesIn, BytesOut: total.BytesOut, Retransmits: total.Retransmits,
		ResetsIn: k.resetsIn.Load(), ResetsOut: k.resetsOut.Load(), Drops: total,
		BadRecords: k.badRecords.Load(), NoListener: k.noListener.Load(), NoConn: k.noConn.Load(),
		Martians: k.martians.Load(), ICMPErrors: k.icmpErrors.Load(), ICMPDrops: k.icmpDrops.Load(),
		DMARecords: k.dmaRecords.Load(), EngineWakeups: k.engineWakeups.Load(), FabricAccepts: k.fabricAccepts.Load(), Sleeps: k.sleeps.Load(),
	}
}

// ConnInfo describes one connection (the ss -ti of a Conn).
type ConnInfo struct {
	State          string        // RFC 9293 state name
	SndMSS         int           // payload bytes per segment sent
	CongestionWnd  int           // bytes
	SmoothedRTT    time.Duration // 0 before the first sample
	Readable       int           // received bytes waiting for Read
	RingSize       int           // each fabric ring's size
	RingOccupancy  int           // bytes sent into the peer's ring and not yet consumed
	PendingControl int           // control segments waiting for ring room
	DMA            bool          // the peer can pull from this process (DMA writes possible)
	Gateway        bool          // the connection goes through the fabric's gateway to the outside (gateway.go)
	Custody        bool          // the engine keeps nothing for retransmission: the fabric's or the gateway's custody (custody.go)
	Retained       int           // bytes the engine holds for retransmission, or written and not yet sent
	// RetainedInFlight and RetainedPeak count only what was sent and is
	// held for retransmission (not yet acknowledged, not in the gateway's
	// custody): now, and the most at once over the connection's life —
	// the node memory custody saves (issue #7's measurement).
	RetainedInFlight int
	RetainedPeak     int
	Stats            tcp.Stats // the engine's counters
}

// Info returns the connection's current state and counters.
func (c *Conn) Info() ConnInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	i := ConnInfo{
		State: c.tc.State().String(), SndMSS: c.tc.SndMSS(), CongestionWnd: c.tc.CongestionWindow(),
		SmoothedRTT: c.tc.RTT(), Readable: c.tc.Readable(), RingSize: c.fc.RingSize(),
		PendingControl: len(c.pending), DMA: c.fc.DMA(), Stats: c.tc.Stats(),
		Gateway: c.viaGateway(), Custody: c.tc.Custody(), Retained: c.tc.Retained(),
		RetainedInFlight: c.tc.RetainedInFlight(), RetainedPeak: c.tc.RetainedPeak(),
	}
	if !c.txBusy {
		i.RingOccupancy = c.fc.RingOccupancy()
	}
	return i
}
