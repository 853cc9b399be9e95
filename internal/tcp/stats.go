package tcp

// Stats are one connection's counters. They only ever grow; a stack sums
// them for its own totals. Every segment the engine drops is counted under
// exactly one Drop* reason.
type Stats struct {
	SegsIn, SegsOut   uint64 // segments received and emitted
	BytesIn, BytesOut uint64 // payload octets accepted in order and emitted (including retransmissions)

	Retransmits     uint64 // segments carrying sequence space already sent once
	FastRetransmits uint64 // retransmissions triggered by three duplicate ACKs (RFC 5681 §3.2)
	Timeouts        uint64 // retransmission-timer expirations (RFC 6298 §5)
	DupAcks         uint64 // duplicate ACKs as defined by RFC 5681 §2
	OutOfOrder      uint64 // data segments that arrived ahead of RCV.NXT and were queued
	WindowProbes    uint64 // zero-window probes sent (RFC 9293 §3.8.6.1)
	KeepAlives      uint64 // keepalive probes sent (RFC 1122 §4.2.3.6)
	ChallengeACKs   uint64 // challenge ACKs sent (RFC 5961 §§3–5)
	ChallengeLimit  uint64 // challenge ACKs suppressed by the per-connection rate limit (RFC 5961 §7)
	CustodyLosses   uint64 // losses reported by a custodian through ReportLoss
	RecvBufGrowths  uint64 // receive-buffer auto-tuning steps

	DropBadFlags    uint64 // SYN+FIN, or no SYN, RST or ACK where one is required
	DropOutOfWindow uint64 // unacceptable sequence numbers (RFC 9293 §3.10.7.4, first check)
	DropPAWS        uint64 // timestamp older than TS.Recent (RFC 7323 §5)
	DropNoTimestamp uint64 // no timestamp on a connection that negotiated them (RFC 7323 §3.2)
	DropBadAck      uint64 // ACK outside the acceptable range
	DropRST         uint64 // RSTs ignored: out of window, or in window but not exactly at RCV.NXT
	DropSYN         uint64 // SYNs in a synchronized state (answered with a challenge ACK)
	DropClosed      uint64 // segments arriving after the connection closed
	DropOOOFull     uint64 // out-of-order segments dropped because the reassembly table was full
	DropAfterFIN    uint64 // data beyond the peer's FIN, or in states where no more data may arrive
	DropBadSACK     uint64 // SACK blocks ignored: empty, or outside what we sent (not a drop of the segment)

	// Loss recovery (RFC 2018, 2883, 6675, 8985).
	DSACKsSent    uint64 // D-SACK blocks reported for duplicate arrivals
	DSACKsRcvd    uint64 // D-SACK blocks received
	SpuriousUndos uint64 // congestion responses undone because D-SACKs showed every retransmission unnecessary
	RACKLosses    uint64 // segments RACK marked lost
	TLPProbes     uint64 // tail loss probes sent
	TLPRecoveries uint64 // probes that repaired a loss (the controller was told)
	Rescues       uint64 // RFC 6675 rescue retransmissions
	ECNCE         uint64 // data segments that arrived marked CE (RFC 3168)
	ECNResponses  uint64 // congestion responses to ECN echoes (at most one per window)
}
