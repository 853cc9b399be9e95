package tcp

import (
	"syscall"
	"time"
)

// ICMP errors about a connection (RFC 9293 §3.9.2.2, MUST-54..56; RFC 1122
// §4.2.3.9; RFC 5461, TCP's reaction to soft errors; RFC 5927, ICMP attacks
// against TCP; RFC 1191, path MTU discovery). The stack matches an ICMP
// error's quoted IP and TCP headers to a connection (addresses and ports)
// and hands the ICMP type, code, next-hop MTU and the quoted sequence
// number to ICMPError, which decides:
//
//   - the quoted sequence number must lie in SND.UNA =< SEQ < SND.NXT
//     (RFC 5927 §4.1): anything else is not about a segment in flight and
//     is ignored, which defeats blind ICMP forgeries;
//   - Source Quench is ignored (RFC 6633, MUST-55);
//   - "fragmentation needed and DF set" lowers the send MSS to fit the
//     next-hop MTU (RFC 1191 §6.1), never below Config.MinMSS (RFC 5927
//     §7.2: a forged tiny MTU must not make us send tiny segments) and
//     never upwards; the segment it reports is resent by the ordinary
//     retransmission timer (RFC 1191 §6.5);
//   - a hard error (protocol or port unreachable) in SYN-SENT aborts the
//     connection attempt (RFC 1122 §4.2.3.9: ECONNREFUSED);
//   - every other error is soft: it never aborts the connection
//     (MUST-56), and in a synchronized state hard errors are soft too
//     (RFC 5461 §4, RFC 5927 §5.2: a blind attacker could otherwise reset
//     any connection). The connection records it, and if it later times
//     out (retransmission, SYN or keepalive) with no progress since, it
//     reports the ICMP error instead of a bare ETIMEDOUT (RFC 1122
//     §4.2.3.9: "make the information available to the application").

// ICMP types and codes ICMPError understands (RFC 792, RFC 1812 §5.2.7.1).
const (
	ICMPTypeDestUnreachable = 3
	ICMPTypeSourceQuench    = 4
	ICMPTypeTimeExceeded    = 11
	ICMPTypeParamProblem    = 12

	ICMPCodeNetUnreachable   = 0
	ICMPCodeHostUnreachable  = 1
	ICMPCodeProtoUnreachable = 2
	ICMPCodePortUnreachable  = 3
	ICMPCodeFragNeeded       = 4
)

// ICMPAction is what ICMPError did.
type ICMPAction uint8

const (
	ICMPIgnored    ICMPAction = iota // not about a segment in flight, Source Quench, or nothing to do
	ICMPRecorded                     // a soft error, reported if the connection times out
	ICMPMSSLowered                   // fragmentation needed: the send MSS went down
	ICMPAborted                      // a hard error in SYN-SENT ended the connection attempt
)

var icmpActionNames = [...]string{"ignored", "recorded", "MSS lowered", "aborted"}

func (a ICMPAction) String() string {
	if int(a) < len(icmpActionNames) {
		return icmpActionNames[a]
	}
	return "ICMPAction(?)"
}

// icmpState is the connection's memory of ICMP errors.
type icmpState struct {
	softErr error  // the last soft error, nil if none
	softUna uint32 // SND.UNA when it arrived: progress since makes it stale
}

// ICMPError acts on an ICMP error of type typ and code whose quoted TCP
// header carried sequence number seq; mtu is the next-hop MTU of a
// "fragmentation needed" (0 if the router gave none). It sends nothing:
// an abort is reported through Err and State.
func (c *Conn) ICMPError(now time.Duration, typ, code uint8, mtu int, seq uint32) ICMPAction {
	switch c.state {
	case Closed, Listen, TimeWait:
		return ICMPIgnored
	}
	// RFC 5927 §4.1: only an error about data sent and not yet
	// acknowledged (sndMax is the RFC's SND.NXT).
	if seqLT(seq, c.sndUna) || !seqLT(seq, c.sndMax) {
		return ICMPIgnored
	}
	var err error
	switch typ {
	case ICMPTypeSourceQuench:
		return ICMPIgnored // RFC 6633: MUST-55
	case ICMPTypeDestUnreachable:
		switch code {
		case ICMPCodeFragNeeded:
			return c.icmpFragNeeded(mtu)
		case ICMPCodeProtoUnreachable, ICMPCodePortUnreachable:
			err = syscall.ECONNREFUSED
			if code == ICMPCodeProtoUnreachable {
				err = syscall.ENOPROTOOPT
			}
			if c.state == SynSent {
				c.enterClosed(err)
				return ICMPAborted
			}
		case ICMPCodeNetUnreachable:
			err = syscall.ENETUNREACH
		default:
			err = syscall.EHOSTUNREACH
		}
	case ICMPTypeTimeExceeded:
		err = syscall.EHOSTUNREACH
	case ICMPTypeParamProblem:
		err = syscall.EPROTO
	default:
		return ICMPIgnored
	}
	c.icmp = icmpState{softErr: err, softUna: c.sndUna}
	return ICMPRecorded
}

// icmpFragNeeded lowers the send MSS to what a next-hop MTU of mtu
// carries: the MTU less the IPv4 and TCP headers (20 + 20) and the
// timestamp option when it is in use, as the peer's MSS option is turned
// into sndMSS.
func (c *Conn) icmpFragNeeded(mtu int) ICMPAction {
	if mtu <= 0 {
		return ICMPIgnored // no next-hop MTU (RFC 1191 §5): nothing safe to lower to
	}
	mss := max(mtu-40, c.cfg.MinMSS)
	if c.tsOK {
		mss -= tsOptLen
	}
	if mss >= c.sndMSS {
		return ICMPIgnored
	}
	c.sndMSS = mss
	return ICMPMSSLowered
}

// SoftError returns the soft ICMP error the connection recorded, or nil.
func (c *Conn) SoftError() error { return c.icmp.softErr }

// timeoutErr is the error of a connection that timed out: a soft ICMP
// error recorded since the last progress (SND.UNA unchanged), or
// ETIMEDOUT.
func (c *Conn) timeoutErr() error {
	if c.icmp.softErr != nil && c.icmp.softUna == c.sndUna {
		return c.icmp.softErr
	}
	return syscall.ETIMEDOUT
}
