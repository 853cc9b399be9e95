// Package custody is the codec of the custody protocol between the gateway
// and a node (docs: the gateway contract, issue 7): the messages by which a
// gateway takes custody of the bytes a node sends to the outside (GRANT),
// hands it back when its memory is short (REVOKE, answered by REVOKED),
// reports a loss it repaired (LOSS) and gives up on a flow (FAIL).
//
// Each message travels as the payload of one IPv4 packet of protocol 253
// (RFC 3692's experimental number) on the flow's own fabric conn:
//
//	magic "UC" | version 1 | type (1 byte) | 4 reserved (zero) | fields
//
// all big endian. The fields are, by type: GRANT and REVOKE none; REVOKED
// a u32 sequence number (the node's SND.NXT when custody went off); LOSS
// two u32 (start and end of the lost range [start, end)); FAIL a u32 errno.
//
// This package only encodes and parses. It performs no I/O, keeps no
// state, reads no clock and never allocates while parsing; it must never
// act on a message (the node and the gateway do that). Parse rejects
// every malformed message with one of the sentinel errors below, never
// panics, and ignores the reserved bytes so that a later version may use
// them.
package custody

import (
	"encoding/binary"
	"errors"
	"strconv"
	"syscall"
)

// Proto is the IPv4 protocol number of custody records (RFC 3692:
// 253 is reserved for experimentation).
const Proto uint8 = 253

// Version is the protocol version this package speaks.
const Version = 1

// HeaderLen is the length of the fixed part of every message: magic,
// version, type and the reserved bytes.
const HeaderLen = 8

// MaxLen is the length of the longest message (LOSS).
const MaxLen = HeaderLen + 8

// The two magic bytes that start every message.
const (
	magic0 = 'U'
	magic1 = 'C'
)

// Type is a message type.
type Type uint8

// The message types.
const (
	// Grant (gateway → node): from now on the gateway keeps a copy of
	// every data segment the node sends on this flow.
	Grant Type = 1
	// Revoke (gateway → node): custody memory is short; the node must
	// retain its own bytes again and answer Revoked.
	Revoke Type = 2
	// Revoked (node → gateway): custody is off; Seq is the node's
	// SND.NXT at that moment. The gateway keeps custody of the bytes
	// below Seq and of none above.
	Revoked Type = 3
	// Loss (gateway → node): [Start, End) was lost and the gateway resent
	// it; the node's congestion control reacts as to its own loss.
	Loss Type = 4
	// Fail (gateway → node): the gateway gave up on the flow (too many
	// retransmissions); the node's connection fails with Errno.
	Fail Type = 5
)

var typeNames = [...]string{"Type(0)", "GRANT", "REVOKE", "REVOKED", "LOSS", "FAIL"}

func (t Type) String() string {
	if int(t) < len(typeNames) && t != 0 {
		return typeNames[t]
	}
	return "Type(" + strconv.Itoa(int(t)) + ")"
}

// fieldsLen returns the length of the fields of type t, and false for a
// type this version does not know.
func fieldsLen(t Type) (int, bool) {
	switch t {
	case Grant, Revoke:
		return 0, true
	case Revoked, Fail:
		return 4, true
	case Loss:
		return 8, true
	}
	return 0, false
}

// Message is one parsed message. Only the fields of its Type are
// meaningful; the others are zero after Parse and ignored by Append.
type Message struct {
	Type       Type
	Seq        uint32 // Revoked: the node's SND.NXT when custody went off
	Start, End uint32 // Loss: the lost range [Start, End), modulo 2^32
	Errno      uint32 // Fail: why the gateway gave up (a Linux errno)
}

// Errors returned by Parse and Append. They are sentinels returned as they
// are, so that a receiver can count bad messages by reason without
// allocating.
var (
	// ErrTruncated: fewer bytes than the fixed part or the type's fields.
	ErrTruncated = errors.New("custody: message truncated")
	// ErrTrailing: bytes after the type's fields.
	ErrTrailing = errors.New("custody: bytes after the message")
	// ErrBadMagic: the message does not start with "UC".
	ErrBadMagic = errors.New("custody: bad magic")
	// ErrVersion: a version other than 1.
	ErrVersion = errors.New("custody: unsupported version")
	// ErrUnknownType: a type this version does not define.
	ErrUnknownType = errors.New("custody: unknown message type")
	// ErrBadRange: a LOSS whose range is empty, or 2^31 octets or
	// longer (start is not before end in sequence space, RFC 9293 §3.4).
	ErrBadRange = errors.New("custody: LOSS range is empty or inverted")
	// ErrBadErrno: a FAIL with errno 0 (no reason).
	ErrBadErrno = errors.New("custody: FAIL without an errno")
)

// check validates the fields of m.
func (m *Message) check() error {
	switch m.Type {
	case Loss:
		if d := m.End - m.Start; d == 0 || d >= 1<<31 {
			return ErrBadRange
		}
	case Fail:
		if m.Errno == 0 {
			return ErrBadErrno
		}
	}
	return nil
}

// Len returns the encoded length of m, or 0 for an unknown type.
func (m *Message) Len() int {
	n, ok := fieldsLen(m.Type)
	if !ok {
		return 0
	}
	return HeaderLen + n
}

// Append appends the encoding of m to b. It refuses (returning b
// unchanged) an unknown type, an empty or inverted LOSS range and a FAIL
// without errno, so that no peer ever receives a message Parse rejects.
func (m Message) Append(b []byte) ([]byte, error) {
	if _, ok := fieldsLen(m.Type); !ok {
		return b, ErrUnknownType
	}
	if err := m.check(); err != nil {
		return b, err
	}
	b = append(b, magic0, magic1, Version, byte(m.Type), 0, 0, 0, 0)
	switch m.Type {
	case Revoked:
		b = binary.BigEndian.AppendUint32(b, m.Seq)
	case Loss:
		b = binary.BigEndian.AppendUint32(b, m.Start)
		b = binary.BigEndian.AppendUint32(b, m.End)
	case Fail:
		b = binary.BigEndian.AppendUint32(b, m.Errno)
	}
	return b, nil
}

// Parse parses one message, which must fill b exactly.
func Parse(b []byte) (Message, error) {
	var m Message
	if len(b) < HeaderLen {
		return m, ErrTruncated
	}
	if b[0] != magic0 || b[1] != magic1 {
		return m, ErrBadMagic
	}
	if b[2] != Version {
		return m, ErrVersion
	}
	t := Type(b[3])
	n, ok := fieldsLen(t)
	if !ok {
		return m, ErrUnknownType
	}
	// b[4:8] is reserved: written as zero, ignored on receipt.
	f := b[HeaderLen:]
	switch {
	case len(f) < n:
		return m, ErrTruncated
	case len(f) > n:
		return m, ErrTrailing
	}
	m.Type = t
	switch t {
	case Revoked:
		m.Seq = binary.BigEndian.Uint32(f)
	case Loss:
		m.Start = binary.BigEndian.Uint32(f)
		m.End = binary.BigEndian.Uint32(f[4:])
	case Fail:
		m.Errno = binary.BigEndian.Uint32(f)
	}
	if err := m.check(); err != nil {
		return Message{}, err
	}
	return m, nil
}

// Err returns the error a FAIL carries, as a syscall.Errno that
// errors.Is matches (ETIMEDOUT, say); nil for other types.
func (m *Message) Err() error {
	if m.Type != Fail || m.Errno == 0 {
		return nil
	}
	return syscall.Errno(m.Errno)
}

// String formats m as the contract writes it: "LOSS{start,end}" and so on.
func (m Message) String() string {
	s := m.Type.String()
	switch m.Type {
	case Revoked:
		return s + "{" + u32(m.Seq) + "}"
	case Loss:
		return s + "{" + u32(m.Start) + "," + u32(m.End) + "}"
	case Fail:
		return s + "{" + u32(m.Errno) + "}"
	}
	return s
}

func u32(v uint32) string { return strconv.FormatUint(uint64(v), 10) }
