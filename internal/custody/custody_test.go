package custody

import (
	"bytes"
	"errors"
	"syscall"
	"testing"

	"github.com/ultcp/ultcp/internal/wire"
)

// The encodings of the contract, byte for byte: magic "UC", version 1,
// type, four reserved zero bytes, fields big endian.
var literals = []struct {
	name  string
	m     Message
	bytes []byte
}{
	{"GRANT", Message{Type: Grant},
		[]byte{'U', 'C', 1, 1, 0, 0, 0, 0}},
	{"REVOKE", Message{Type: Revoke},
		[]byte{'U', 'C', 1, 2, 0, 0, 0, 0}},
	{"REVOKED{16909060}", Message{Type: Revoked, Seq: 0x01020304},
		[]byte{'U', 'C', 1, 3, 0, 0, 0, 0, 0x01, 0x02, 0x03, 0x04}},
	{"LOSS{1000,2460}", Message{Type: Loss, Start: 1000, End: 2460},
		[]byte{'U', 'C', 1, 4, 0, 0, 0, 0, 0, 0, 0x03, 0xe8, 0, 0, 0x09, 0x9c}},
	// A range across the wrap of sequence space is valid (RFC 9293 §3.4).
	{"LOSS{4294967000,200}", Message{Type: Loss, Start: 4294967000, End: 200},
		[]byte{'U', 'C', 1, 4, 0, 0, 0, 0, 0xff, 0xff, 0xfe, 0xd8, 0, 0, 0, 0xc8}},
	{"FAIL{110}", Message{Type: Fail, Errno: 110},
		[]byte{'U', 'C', 1, 5, 0, 0, 0, 0, 0, 0, 0, 110}},
}

func TestAppendWritesTheContractBytes(t *testing.T) {
	for _, tc := range literals {
		got, err := tc.m.Append(nil)
		if err != nil {
			t.Fatalf("%s: Append: %v", tc.name, err)
		}
		if !bytes.Equal(got, tc.bytes) {
			t.Errorf("%s: Append = % x, want % x", tc.name, got, tc.bytes)
		}
		if tc.m.Len() != len(tc.bytes) {
			t.Errorf("%s: Len = %d, want %d", tc.name, tc.m.Len(), len(tc.bytes))
		}
	}
}

func TestParseReadsTheContractBytes(t *testing.T) {
	for _, tc := range literals {
		got, err := Parse(tc.bytes)
		if err != nil {
			t.Fatalf("%s: Parse: %v", tc.name, err)
		}
		if got != tc.m {
			t.Errorf("Parse(% x) = %+v, want %+v", tc.bytes, got, tc.m)
		}
		if got.String() != tc.name {
			t.Errorf("String = %q, want %q", got.String(), tc.name)
		}
	}
}

func TestParseIgnoresReservedBytes(t *testing.T) {
	got, err := Parse([]byte{'U', 'C', 1, 4, 0xaa, 0xbb, 0xcc, 0xdd, 0, 0, 0, 1, 0, 0, 0, 2})
	if err != nil || got != (Message{Type: Loss, Start: 1, End: 2}) {
		t.Fatalf("Parse = %+v, %v; want LOSS{1,2}", got, err)
	}
}

func TestParseRejectsMalformedMessages(t *testing.T) {
	for _, tc := range []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrTruncated},
		{"seven bytes", []byte{'U', 'C', 1, 1, 0, 0, 0}, ErrTruncated},
		{"bad magic", []byte{'U', 'D', 1, 1, 0, 0, 0, 0}, ErrBadMagic},
		{"version 2", []byte{'U', 'C', 2, 1, 0, 0, 0, 0}, ErrVersion},
		{"version 0", []byte{'U', 'C', 0, 1, 0, 0, 0, 0}, ErrVersion},
		{"type 0", []byte{'U', 'C', 1, 0, 0, 0, 0, 0}, ErrUnknownType},
		{"type 6", []byte{'U', 'C', 1, 6, 0, 0, 0, 0}, ErrUnknownType},
		{"GRANT with a field", []byte{'U', 'C', 1, 1, 0, 0, 0, 0, 9}, ErrTrailing},
		{"REVOKED without seq", []byte{'U', 'C', 1, 3, 0, 0, 0, 0, 0, 0, 1}, ErrTruncated},
		{"LOSS with one field", []byte{'U', 'C', 1, 4, 0, 0, 0, 0, 0, 0, 0, 1}, ErrTruncated},
		{"LOSS with trailing byte", []byte{'U', 'C', 1, 4, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2, 0}, ErrTrailing},
		{"LOSS empty", []byte{'U', 'C', 1, 4, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 5}, ErrBadRange},
		{"LOSS inverted", []byte{'U', 'C', 1, 4, 0, 0, 0, 0, 0, 0, 0, 6, 0, 0, 0, 5}, ErrBadRange},
		{"LOSS of 2^31", []byte{'U', 'C', 1, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0x80, 0, 0, 0}, ErrBadRange},
		{"FAIL errno 0", []byte{'U', 'C', 1, 5, 0, 0, 0, 0, 0, 0, 0, 0}, ErrBadErrno},
	} {
		m, err := Parse(tc.b)
		if err != tc.want {
			t.Errorf("%s: Parse(% x) error %v, want %v", tc.name, tc.b, err, tc.want)
		}
		if err != nil && m != (Message{}) {
			t.Errorf("%s: Parse returned %+v with its error, want the zero Message", tc.name, m)
		}
	}
}

func TestAppendRefusesInvalidMessages(t *testing.T) {
	prefix := []byte{7}
	for _, tc := range []struct {
		m    Message
		want error
	}{
		{Message{Type: 0}, ErrUnknownType},
		{Message{Type: 9}, ErrUnknownType},
		{Message{Type: Loss, Start: 10, End: 10}, ErrBadRange},
		{Message{Type: Fail}, ErrBadErrno},
	} {
		got, err := tc.m.Append(prefix)
		if err != tc.want || !bytes.Equal(got, prefix) {
			t.Errorf("Append(%+v) = % x, %v; want % x, %v", tc.m, got, err, prefix, tc.want)
		}
	}
}

func TestFailErrIsTheErrno(t *testing.T) {
	m := Message{Type: Fail, Errno: uint32(syscall.ETIMEDOUT)}
	if !errors.Is(m.Err(), syscall.ETIMEDOUT) {
		t.Fatalf("Err = %v, want ETIMEDOUT", m.Err())
	}
	if (&Message{Type: Grant}).Err() != nil {
		t.Fatal("GRANT carries an error")
	}
}

var (
	gw   = wire.IPv4Addr{10, 77, 0, 1}
	node = wire.IPv4Addr{10, 77, 0, 2}
)

// A LOSS from the gateway 10.77.0.1 to the node 10.77.0.2, as a fabric
// record: IPv4 without options, total length 36, DF, TTL 64, protocol
// 253, checksum zero.
var lossPacket = []byte{
	0x45, 0x00, 0x00, 0x24, 0x00, 0x00, 0x40, 0x00, 0x40, 0xfd, 0x00, 0x00,
	10, 77, 0, 1, 10, 77, 0, 2,
	'U', 'C', 1, 4, 0, 0, 0, 0, 0, 0, 0x03, 0xe8, 0, 0, 0x09, 0x9c,
}

func TestAppendPacketWritesAFabricRecord(t *testing.T) {
	got, err := AppendPacket(nil, gw, node, Message{Type: Loss, Start: 1000, End: 2460})
	if err != nil || !bytes.Equal(got, lossPacket) {
		t.Fatalf("AppendPacket = % x, %v; want % x", got, err, lossPacket)
	}
	if !IsPacket(got) {
		t.Fatal("IsPacket false for a custody record")
	}
}

func TestParsePacketReadsAFabricRecord(t *testing.T) {
	src, dst, m, err := ParsePacket(lossPacket)
	if err != nil {
		t.Fatal(err)
	}
	if src != gw || dst != node || m != (Message{Type: Loss, Start: 1000, End: 2460}) {
		t.Fatalf("ParsePacket = %v %v %+v", src, dst, m)
	}
}

func TestParsePacketRejectsOtherRecords(t *testing.T) {
	mod := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), lossPacket...)) }
	for _, tc := range []struct {
		name string
		b    []byte
		want error
	}{
		{"TCP", mod(func(b []byte) []byte { b[9] = 6; return b }), ErrNotCustody},
		{"padded", mod(func(b []byte) []byte { return append(b, 0) }), ErrBadLength},
		{"fragment", mod(func(b []byte) []byte { b[6] = 0x20; return b }), ErrFragment},
		{"short total", mod(func(b []byte) []byte { b[3] = 0x23; return b[:0x23] }), ErrTruncated},
		{"cut header", lossPacket[:19], wire.ErrTruncated},
		{"IPv6", mod(func(b []byte) []byte { b[0] = 0x65; return b }), wire.ErrBadVersion},
	} {
		if _, _, _, err := ParsePacket(tc.b); err != tc.want {
			t.Errorf("%s: error %v, want %v", tc.name, err, tc.want)
		}
	}
	if IsPacket(mod(func(b []byte) []byte { b[9] = 6; return b })) {
		t.Error("IsPacket true for TCP")
	}
}

func TestParseAllocatesNothing(t *testing.T) {
	n := testing.AllocsPerRun(100, func() {
		if _, _, _, err := ParsePacket(lossPacket); err != nil {
			t.Fatal(err)
		}
	})
	if n != 0 {
		t.Fatalf("ParsePacket allocates %v times", n)
	}
}

// FuzzParse checks that Parse never panics, and that whatever it accepts
// re-encodes to the same bytes (the reserved bytes zeroed), and that
// ParsePacket agrees with Parse on the payload.
func FuzzParse(f *testing.F) {
	for _, tc := range literals {
		f.Add(tc.bytes)
	}
	f.Add(lossPacket)
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Parse(b)
		if err == nil {
			enc, err := m.Append(nil)
			if err != nil {
				t.Fatalf("Append of parsed %+v: %v", m, err)
			}
			want := append([]byte(nil), b...)
			copy(want[4:8], []byte{0, 0, 0, 0})
			if !bytes.Equal(enc, want) {
				t.Fatalf("round trip % x -> %+v -> % x", b, m, enc)
			}
			pkt, err := AppendPacket(nil, gw, node, m)
			if err != nil {
				t.Fatal(err)
			}
			src, dst, m2, err := ParsePacket(pkt)
			if err != nil || src != gw || dst != node || m2 != m {
				t.Fatalf("packet round trip %+v -> %+v, %v", m, m2, err)
			}
		}
		_, _, _, _ = ParsePacket(b)
	})
}

func BenchmarkAppendPacket(b *testing.B) {
	buf := make([]byte, 0, MaxPacketLen)
	m := Message{Type: Loss, Start: 1000, End: 2460}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := AppendPacket(buf[:0], gw, node, m); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParsePacket(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, _, _, err := ParsePacket(lossPacket); err != nil {
			b.Fatal(err)
		}
	}
}
