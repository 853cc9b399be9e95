package wire

// TCPFlags is the TCP control-bit octet (RFC 9293 §3.1, RFC 3168 §6.1).
type TCPFlags uint8

// TCP control bits, in their on-the-wire positions.
const (
	FlagFIN TCPFlags = 1 << iota
	FlagSYN
	FlagRST
	FlagPSH
	FlagACK
	FlagURG
	FlagECE
	FlagCWR
)

// Has reports whether every bit of x is set in f.
func (f TCPFlags) Has(x TCPFlags) bool { return f&x == x }

// SACKBlock is one block of a SACK option (RFC 2018 §3): the bytes
// [Left, Right) have been received.
type SACKBlock struct {
	Left, Right uint32
}

// MaxSACKBlocks is the most SACK blocks a TCP header can carry: 40 option
// bytes minus 2 for kind and length leave room for four 8-byte blocks.
const MaxSACKBlocks = 4

// TCPOptions is the parsed form of a TCP header's options. Absent options
// have their Has* flag false (MSS: zero means absent). Unknown options are
// skipped when parsing and never emitted.
type TCPOptions struct {
	MSS           uint16 // RFC 9293 §3.7.1; 0 when absent
	HasWScale     bool   // RFC 7323 §2
	WScale        uint8  // shift count as sent (receivers clamp to 14)
	SACKPermitted bool   // RFC 2018 §2
	NumSACK       uint8  // number of valid entries in SACK
	SACK          [MaxSACKBlocks]SACKBlock
	HasTimestamp  bool // RFC 7323 §3
	TSVal, TSEcr  uint32
}

// TCPHeader is the parsed form of a TCP header (RFC 9293 §3.1).
type TCPHeader struct {
	SrcPort, DstPort uint16
	Seq, Ack         uint32
	Flags            TCPFlags
	Window           uint16 // as on the wire, not scaled
	Checksum         uint16
	Urgent           uint16
	Options          TCPOptions
}
