package netlink

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// Netlink's wire format (RFC 3549 §2.2, include/uapi/linux/netlink.h): a
// stream of messages, each a 16-byte header (length, type, flags, sequence,
// port id) and a payload, padded to 4 bytes. rtnetlink payloads are a fixed
// struct followed by attributes, each a 4-byte (length, type) header and a
// value, also padded to 4 bytes. Everything is in the host's byte order.

// ErrMalformed is wrapped by every error about bytes the kernel sent that do
// not parse.
var ErrMalformed = errors.New("netlink: malformed message")

const (
	nlmsgHdrLen = unix.NLMSG_HDRLEN // 16
	rtaHdrLen   = unix.SizeofRtAttr // 4
)

var native = binary.NativeEndian

// align rounds n up to netlink's 4-byte alignment (NLMSG_ALIGN, RTA_ALIGN).
func align(n int) int { return (n + 3) &^ 3 }

// msgHeader is struct nlmsghdr.
type msgHeader struct {
	Len   uint32
	Type  uint16
	Flags uint16
	Seq   uint32
	Pid   uint32
}

// splitMessage returns the header and payload of the first message in b and
// what follows it. It checks that the message's length covers its header
// and fits in b; the padding after the last message may be missing.
func splitMessage(b []byte) (h msgHeader, payload, rest []byte, err error) {
	if len(b) < nlmsgHdrLen {
		return h, nil, nil, fmt.Errorf("%w: %d bytes left, a message header needs %d", ErrMalformed, len(b), nlmsgHdrLen)
	}
	h = msgHeader{
		Len:   native.Uint32(b[0:]),
		Type:  native.Uint16(b[4:]),
		Flags: native.Uint16(b[6:]),
		Seq:   native.Uint32(b[8:]),
		Pid:   native.Uint32(b[12:]),
	}
	if h.Len < nlmsgHdrLen || uint64(h.Len) > uint64(len(b)) {
		return h, nil, nil, fmt.Errorf("%w: message length %d with %d bytes left", ErrMalformed, h.Len, len(b))
	}
	payload = b[nlmsgHdrLen:h.Len]
	next := align(int(h.Len))
	if next > len(b) {
		next = len(b)
	}
	return h, payload, b[next:], nil
}

// splitAttr returns the type and value of the first attribute in b and what
// follows it. The type has NLA_F_NESTED and NLA_F_NET_BYTEORDER cleared.
func splitAttr(b []byte) (typ uint16, val, rest []byte, err error) {
	if len(b) < rtaHdrLen {
		return 0, nil, nil, fmt.Errorf("%w: %d bytes left, an attribute header needs %d", ErrMalformed, len(b), rtaHdrLen)
	}
	n := int(native.Uint16(b[0:]))
	typ = native.Uint16(b[2:]) &^ (unix.NLA_F_NESTED | unix.NLA_F_NET_BYTEORDER)
	if n < rtaHdrLen || n > len(b) {
		return 0, nil, nil, fmt.Errorf("%w: attribute %d of length %d with %d bytes left", ErrMalformed, typ, n, len(b))
	}
	next := align(n)
	if next > len(b) {
		next = len(b)
	}
	return typ, b[rtaHdrLen:n], b[next:], nil
}

// ackResult is a parsed NLMSG_ERROR message: Errno 0 is an acknowledgement.
type ackResult struct {
	Errno unix.Errno
	// Msg is the kernel's extended-ack text (NLMSGERR_ATTR_MSG), if any.
	Msg string
	// Seq is the sequence number of the request it answers, from the
	// echoed request header.
	Seq uint32
}

// parseAck parses the payload of an NLMSG_ERROR message whose header carried
// flags: a negative errno (or 0), the header of the request it answers, the
// rest of that request unless NLM_F_CAPPED, then extended-ack attributes if
// NLM_F_ACK_TLVS (include/uapi/linux/netlink.h, struct nlmsgerr).
func parseAck(payload []byte, flags uint16) (ackResult, error) {
	if len(payload) < 4+nlmsgHdrLen {
		return ackResult{}, fmt.Errorf("%w: error message of %d bytes, want at least %d", ErrMalformed, len(payload), 4+nlmsgHdrLen)
	}
	code := int32(native.Uint32(payload))
	if code > 0 || code < -4095 {
		return ackResult{}, fmt.Errorf("%w: error code %d is not a negative errno", ErrMalformed, code)
	}
	r := ackResult{Errno: unix.Errno(-code), Seq: native.Uint32(payload[4+8:])}
	echoed := nlmsgHdrLen
	if flags&unix.NLM_F_CAPPED == 0 {
		// The whole request is echoed; its header says how long it was.
		echoed = int(native.Uint32(payload[4:]))
		if echoed < nlmsgHdrLen || 4+echoed > len(payload) {
			return ackResult{}, fmt.Errorf("%w: echoed request of %d bytes in a %d-byte error message", ErrMalformed, echoed, len(payload))
		}
	}
	if flags&unix.NLM_F_ACK_TLVS == 0 {
		return r, nil
	}
	tlvs := payload[min(len(payload), 4+align(echoed)):]
	for len(tlvs) > 0 {
		typ, val, rest, err := splitAttr(tlvs)
		if err != nil {
			return ackResult{}, fmt.Errorf("extended ack: %w", err)
		}
		if typ == unix.NLMSGERR_ATTR_MSG {
			r.Msg = strings.TrimRight(string(val), "\x00")
		}
		tlvs = rest
	}
	return r, nil
}

// request builds one netlink request: a header, a fixed struct, attributes.
type request struct{ b []byte }

func newRequest(typ, flags uint16, fixed []byte) *request {
	r := &request{b: make([]byte, nlmsgHdrLen, 128)}
	native.PutUint16(r.b[4:], typ)
	native.PutUint16(r.b[6:], flags|unix.NLM_F_REQUEST|unix.NLM_F_ACK)
	r.b = append(r.b, fixed...)
	r.pad()
	return r
}

func (r *request) pad() {
	for len(r.b)%4 != 0 {
		r.b = append(r.b, 0)
	}
}

func (r *request) attr(typ uint16, val []byte) {
	var h [rtaHdrLen]byte
	native.PutUint16(h[0:], uint16(rtaHdrLen+len(val)))
	native.PutUint16(h[2:], typ)
	r.b = append(append(r.b, h[:]...), val...)
	r.pad()
}

func (r *request) attrU32(typ uint16, v uint32) {
	var b [4]byte
	native.PutUint32(b[:], v)
	r.attr(typ, b[:])
}

// attrString adds a NUL-terminated string attribute (IFLA_IFNAME).
func (r *request) attrString(typ uint16, s string) {
	r.attr(typ, append([]byte(s), 0))
}

// finish stamps length and sequence number and returns the bytes.
func (r *request) finish(seq uint32) []byte {
	native.PutUint32(r.b[0:], uint32(len(r.b)))
	native.PutUint32(r.b[8:], seq)
	return r.b
}

// ifInfo is the part of struct ifinfomsg (and its attributes) this package
// reads from an RTM_NEWLINK message.
func parseLink(payload []byte) (Link, error) {
	if len(payload) < unix.SizeofIfInfomsg {
		return Link{}, fmt.Errorf("%w: link message of %d bytes, want at least %d", ErrMalformed, len(payload), unix.SizeofIfInfomsg)
	}
	l := Link{
		Index: int(int32(native.Uint32(payload[4:]))),
		Flags: native.Uint32(payload[8:]),
	}
	attrs := payload[unix.SizeofIfInfomsg:]
	for len(attrs) > 0 {
		typ, val, rest, err := splitAttr(attrs)
		if err != nil {
			return Link{}, fmt.Errorf("link attributes: %w", err)
		}
		switch typ {
		case unix.IFLA_IFNAME:
			l.Name = strings.TrimRight(string(val), "\x00")
		case unix.IFLA_MTU:
			if len(val) != 4 {
				return Link{}, fmt.Errorf("%w: IFLA_MTU of %d bytes", ErrMalformed, len(val))
			}
			l.MTU = int(native.Uint32(val))
		case unix.IFLA_STATS64:
			// struct rtnl_link_stats64 begins rx_packets, tx_packets,
			// rx_bytes, tx_bytes, rx_errors, tx_errors, rx_dropped,
			// tx_dropped (u64 each); newer kernels append fields.
			if len(val) < 8*8 {
				return Link{}, fmt.Errorf("%w: IFLA_STATS64 of %d bytes", ErrMalformed, len(val))
			}
			u := func(i int) uint64 { return native.Uint64(val[8*i:]) }
			l.Stats = LinkStats{
				RxPackets: u(0), TxPackets: u(1), RxBytes: u(2), TxBytes: u(3),
				RxErrors: u(4), TxErrors: u(5), RxDropped: u(6), TxDropped: u(7),
			}
		}
		attrs = rest
	}
	return l, nil
}
