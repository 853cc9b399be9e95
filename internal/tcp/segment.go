package tcp

import (
	"strconv"

	"github.com/ultcp/ultcp/internal/wire"
)

// Segment is one TCP segment as the engine sees it: a parsed header and its
// payload. Ports travel in the header; IP addresses are the caller's
// business. A Segment handed out by the engine has a Payload that refers to
// engine memory (or to the caller's buffer given to WriteDirect) and is
// valid only until the next call on the same Conn or Listener.
type Segment struct {
	Hdr     wire.TCPHeader
	Payload []byte
	// ECN is the IP header's ECN field (RFC 3168 §5): the link sets it
	// from an arriving packet and copies it into an outgoing one. The
	// engine marks new data ECT(0) when ECN was agreed.
	ECN uint8
}

// The ECN codepoints of RFC 3168 §5.
const (
	ECNNotECT uint8 = 0
	ECNECT1   uint8 = 1
	ECNECT0   uint8 = 2
	ECNCE     uint8 = 3
)

// seqLen is SEG.LEN of RFC 9293 §3.4: payload octets plus one for SYN and
// one for FIN.
func (s *Segment) seqLen() uint32 {
	n := uint32(len(s.Payload))
	if s.Hdr.Flags&wire.FlagSYN != 0 {
		n++
	}
	if s.Hdr.Flags&wire.FlagFIN != 0 {
		n++
	}
	return n
}

// ResetFor appends the reset that RFC 9293 §3.10.7.1 prescribes for a
// segment that matches no connection (the CLOSED state): nothing for an
// incoming RST; <SEQ=SEG.ACK><CTL=RST> when the ACK bit is on; otherwise
// <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>. A stack calls it for segments
// its demultiplexer cannot place.
func ResetFor(seg *Segment, out []Segment) []Segment {
	h := &seg.Hdr
	if h.Flags&wire.FlagRST != 0 {
		return out
	}
	out = append(out, Segment{})
	r := &out[len(out)-1].Hdr
	r.SrcPort, r.DstPort = h.DstPort, h.SrcPort
	if h.Flags&wire.FlagACK != 0 {
		r.Seq = h.Ack
		r.Flags = wire.FlagRST
	} else {
		r.Ack = h.Seq + seg.seqLen()
		r.Flags = wire.FlagRST | wire.FlagACK
	}
	return out
}

// String formats the segment in RFC 9293's notation, for logs and tests:
// <SEQ=100><ACK=301><CTL=SYN,ACK><WND=65535><MSS=1460><DATA=5>. The ACK
// field appears only when the ACK bit is set; options (SACK blocks as
// <SACK=left-right,...>) and the urgent pointer only when present.
func (s *Segment) String() string {
	h := &s.Hdr
	b := make([]byte, 0, 96)
	b = append(b, "<SEQ="...)
	b = strconv.AppendUint(b, uint64(h.Seq), 10)
	b = append(b, '>')
	if h.Flags&wire.FlagACK != 0 {
		b = append(b, "<ACK="...)
		b = strconv.AppendUint(b, uint64(h.Ack), 10)
		b = append(b, '>')
	}
	b = append(b, "<CTL="...)
	first := true
	for i, name := range flagNames {
		if h.Flags&(1<<i) != 0 {
			if !first {
				b = append(b, ',')
			}
			b = append(b, name...)
			first = false
		}
	}
	b = append(b, "><WND="...)
	b = strconv.AppendUint(b, uint64(h.Window), 10)
	b = append(b, '>')
	o := &h.Options
	if o.MSS != 0 {
		b = append(b, "<MSS="...)
		b = strconv.AppendUint(b, uint64(o.MSS), 10)
		b = append(b, '>')
	}
	if o.HasWScale {
		b = append(b, "<WS="...)
		b = strconv.AppendUint(b, uint64(o.WScale), 10)
		b = append(b, '>')
	}
	if o.SACKPermitted {
		b = append(b, "<SACKOK>"...)
	}
	if o.HasTimestamp {
		b = append(b, "<TS="...)
		b = strconv.AppendUint(b, uint64(o.TSVal), 10)
		b = append(b, ',')
		b = strconv.AppendUint(b, uint64(o.TSEcr), 10)
		b = append(b, '>')
	}
	if o.NumSACK > 0 {
		b = append(b, "<SACK="...)
		for i := 0; i < int(min(o.NumSACK, wire.MaxSACKBlocks)); i++ {
			if i > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendUint(b, uint64(o.SACK[i].Left), 10)
			b = append(b, '-')
			b = strconv.AppendUint(b, uint64(o.SACK[i].Right), 10)
		}
		b = append(b, '>')
	}
	if h.Flags&wire.FlagURG != 0 || h.Urgent != 0 {
		b = append(b, "<UP="...)
		b = strconv.AppendUint(b, uint64(h.Urgent), 10)
		b = append(b, '>')
	}
	if s.ECN != 0 {
		b = append(b, [4]string{"", "<ECN=ECT1>", "<ECN=ECT0>", "<ECN=CE>"}[s.ECN&3]...)
	}
	if len(s.Payload) > 0 {
		b = append(b, "<DATA="...)
		b = strconv.AppendInt(b, int64(len(s.Payload)), 10)
		b = append(b, '>')
	}
	return string(b)
}

// flagNames are the control bits in their bit order (wire.FlagFIN first).
var flagNames = [8]string{"FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"}
