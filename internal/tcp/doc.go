// Package tcp is ultcp's sans-I/O TCP engine: RFC 9293 with the modern
// extensions (RFC 7323 window scaling, timestamps and PAWS; RFC 6298
// retransmission timer; RFC 5961 blind-attack mitigations; RFC 1122 delayed
// ACK, Nagle and keepalive; RFC 6093 safe urgent-pointer handling; RFC 6191
// TIME-WAIT reuse; RFC 4987 SYN cookies; RFC 2018 SACK and RFC 2883 D-SACK;
// RFC 6675 loss recovery; RFC 8985 RACK-TLP; congestion control behind
// cc.Controller, CUBIC by default).
//
// A Conn is a plain value. It is driven by three calls that each take the
// current time and append the segments to send to a caller's slice:
//
//	out = c.Input(now, &seg, out[:0]) // a parsed segment arrived
//	out = c.Output(now, out[:0])      // the application wrote or read
//	out = c.OnTimer(now, out[:0])     // now >= c.Deadline()
//
// and an application side (Write, WriteDirect, Read, Peek, Discard, Close,
// Abort). Deadline reports the single earliest instant at which the
// connection wants OnTimer, so a stack's timing wheel holds one entry per
// connection. A Listener does the same for a listening port (backlog, SYN
// cookies) and hands out new Conns.
//
// ICMP errors about a connection come in through ICMPError (icmp.go): the
// stack matches the quoted addresses and ports, the engine checks the
// quoted sequence number and lowers the MSS, aborts a connection attempt
// or records a soft error to report if the connection times out.
//
// Time is a time.Duration since an epoch the caller chooses and must be
// monotonic. The package performs no I/O, reads no clock, starts no
// goroutines, takes no locks and computes no checksums: segments arrive
// already parsed and verified by the link, and leave as headers plus
// payload slices for the link to encode. A Conn is not safe for concurrent
// use; its owner serialises calls. The steady data path allocates nothing.
//
// Retransmission policy is per connection (see SetCustody): by default the
// engine keeps every sent byte until it is acknowledged and retransmits it
// itself; in custody mode the link takes the bytes when a segment is emitted
// and the engine keeps only the sequence accounting, learning of losses
// through ReportLoss and of failure through ReportFailure.
//
// Design notes (the why behind the shapes):
//
//   - Output is appended to a caller's []Segment and payloads point into
//     engine (or WriteDirect caller) memory until the next call: the
//     caller reuses one slice, so the steady state allocates nothing and
//     copies each payload once, into the link (see the benchmarks).
//   - Deadline is one number, the earliest of the RTO, delayed-ACK,
//     persist, keepalive and TIME-WAIT timers, so a stack's timing wheel
//     holds one entry per connection and idle connections cost nothing.
//   - RTT is measured by timing one segment per round trip with the
//     caller's clock (nanoseconds), not from RFC 7323 timestamps, whose
//     millisecond tick is useless on shared memory where a round trip is
//     a microsecond; timestamps still serve PAWS and are echoed.
//   - The receive buffer is a ring holding the window: out-of-order bytes
//     are written at their final place and only their ranges are kept,
//     so filling a hole copies nothing and Peek can lend the readable
//     span. The same ranges feed SACK generation (sack.go).
//   - The sender keeps one record per segment sent and not yet
//     acknowledged (scoreboard.go): its range, when it was last sent, and
//     whether it is SACKed or lost. Records make every loss detector
//     cheap: RACK (rack.go) compares send times, RFC 6675's DupThresh
//     counts SACKed records above a hole, a timeout marks the unSACKed
//     ones lost; the output path resends lost records first, whole, then
//     new data, while pipe < cwnd. They also time every ACK for the
//     controller (nanosecond RTT samples HyStart++ needs), while the RFC
//     6298 estimator keeps timing one segment per round trip.
//   - RACK-TLP needs timestamps to tell an ACK of a retransmission from
//     one of its original (RFC 8985 §6.2); without them the engine falls
//     back to RFC 6675's DupThresh rule, and without SACK to NewReno's
//     three duplicate ACKs and partial ACKs (RFC 6582).
package tcp
